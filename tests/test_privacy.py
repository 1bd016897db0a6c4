"""GDPR retention: participants of past events are anonymised (worker, CLI), time-travelled with
the ``clock`` fixture; counts and anonymous statistics remain."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from registration import worker
from registration.extensions import db
from registration.models import (
    Answer,
    AuditEntry,
    Event,
    EventFormat,
    OutboxMessage,
    OutboxStatus,
    Question,
    QuestionKind,
    Registration,
)
from registration.services import audit, checkin, messaging, privacy, scheduling, signup
from registration.services.seats import seat_status

from .conftest import make_event
from .test_admin import login, make_organiser

RETENTION_DAYS = 30


@dataclass
class Workshop:
    event: Event
    #: Manage token by last name.
    tokens: dict[str, str]
    #: Registration id by last name.
    ids: dict[str, int]


def add_questions(event: Event) -> None:
    for position, (key, label, kind, options) in enumerate(
        [
            ("notes", "Anmerkungen", QuestionKind.TEXT, []),
            ("lunch", "Mittagessen", QuestionKind.SINGLE_CHOICE, ["vegan", "mit Fleisch"]),
            ("photos", "Fotos erlaubt?", QuestionKind.YES_NO, []),
            ("topics", "Themen", QuestionKind.MULTIPLE_CHOICE, ["Wohnen", "Energie"]),
        ]
    ):
        db.session.add(
            Question(event_id=event.id, key=key, position=position, label=label, kind=kind,
                     options=options)
        )  # fmt: skip
    db.session.commit()


PEOPLE = [
    # last name, attendance, answers
    ("Weiß", "on_site", {"notes": "Rollstuhl, bitte Rampe", "lunch": "vegan", "photos": "yes"}),
    ("Laue", "on_site", {"notes": "Ich heiße Laue", "topics": ["Wohnen", "Energie"]}),
    ("Muster", "on_site", {"lunch": "mit Fleisch", "photos": "no"}),  # waiting list
    ("Online", "online", {"notes": "komme später", "photos": "yes"}),
    ("Storno", "online", {}),  # cancels
]


def sign_up_everyone(event: Event) -> Workshop:
    tokens, ids = {}, {}
    for last, attendance, answers in PEOPLE:
        result = signup.register(
            event,
            signup.SignupData(
                email=f"{last.lower().replace('ß', 'ss')}@example.org", first_name="Erika", last_name=last,
                organisation=f"Amt {last}", attendance=attendance, privacy_consent=True,
                answers=answers,
            ),
        )  # fmt: skip
        db.session.commit()
        tokens[last], ids[last] = result.manage_token, result.registration.id
    signup.cancel(db.session.get(Registration, ids["Storno"]))
    db.session.commit()
    return Workshop(event, tokens, ids)


@pytest.fixture
def workshop(app, clock) -> Workshop:
    """A hybrid workshop three days ahead: two on site confirmed (one checked in later), one
    waiting, one online, one cancelled; answers of every kind; nothing sent yet."""
    event = make_event(
        slug="werkstatt", format=EventFormat.HYBRID, starts_at=clock.now + timedelta(days=3),
        capacity_on_site=2, capacity_online=5, retention_days=RETENTION_DAYS,
    )  # fmt: skip
    add_questions(event)
    return sign_up_everyone(event)


def reg(workshop: Workshop, last: str) -> Registration:
    db.session.expire_all()
    return db.session.get(Registration, workshop.ids[last])


def statistics(event: Event) -> dict:
    """Everything that must survive anonymisation."""
    db.session.expire_all()
    rows = db.session.scalars(
        select(Registration).where(Registration.event_id == event.id).order_by(Registration.id)
    ).all()
    return {
        "seats": seat_status([event])[event.id],
        "checkin": checkin.counts(event),
        "per_status_mode": Counter((r.status, r.attendance) for r in rows),
        "rows": [_kept(r) for r in rows],
    }


def _kept(r: Registration) -> tuple:
    return (
        r.id, r.status, r.attendance, r.waitlist_order, r.language, r.created_at,
        r.confirmed_at, r.cancelled_at, r.checked_in_at, r.joined_at, r.privacy_consent_at,
    )  # fmt: skip


def answers_by_key(registration_id: int) -> dict:
    return dict(
        db.session.execute(
            select(Question.key, Answer.value)
            .join(Answer, Answer.question_id == Question.id)
            .where(Answer.registration_id == registration_id)
        ).all()
    )


def pass_the_event_and_check_in(workshop: Workshop, clock) -> None:
    """The day: Weiß is checked in, the online participant joins; then the event ends."""
    clock.now = workshop.event.starts_at + timedelta(minutes=10)
    checkin.check_in(reg(workshop, "Weiß"), None)
    signup.record_join(reg(workshop, "Online"))
    db.session.commit()


def test_nothing_happens_before_the_retention_date_everything_after(app, client, workshop, clock):
    event = workshop.event
    pass_the_event_and_check_in(workshop, clock)
    due = event.ends_at + timedelta(days=RETENTION_DAYS)
    before = statistics(event)
    assert client.get(f"/manage/{workshop.tokens['Weiß']}").status_code == 200

    clock.now = due - timedelta(days=1)
    assert privacy.anonymise_due_events(clock.now).registrations == 0
    clock.now = due - timedelta(seconds=1)
    assert privacy.anonymise_due_events(clock.now).events == []
    weiss = reg(workshop, "Weiß")
    assert (weiss.last_name, weiss.email, weiss.anonymised_at) == (
        "Weiß",
        "weiss@example.org",
        None,
    )

    clock.now = due
    result = privacy.anonymise_due_events(clock.now)
    assert result.events == ["werkstatt"] and result.registrations == len(PEOPLE)

    db.session.expire_all()
    assert db.session.get(Event, event.id).anonymised_at == due
    for last, *_ in PEOPLE:
        person = reg(workshop, last)
        assert person.anonymised_at == due
        assert (person.first_name, person.last_name, person.organisation, person.email) == (
            "", "", "", ""
        )  # fmt: skip
        assert person.email_key == f"anonymised:{person.id}"
        assert person.checkin_qr is None
        # The personal links are dead: manage (by hash), join and check-in (by salt).
        assert client.get(f"/manage/{workshop.tokens[last]}").status_code == 404
    assert statistics(event) == before  # counts per status and mode, attendance, times


def test_choice_answers_remain_free_text_goes(app, workshop, clock):
    clock.now = privacy.retention_ends(workshop.event)
    privacy.anonymise_due_events(clock.now)
    db.session.expire_all()
    assert answers_by_key(workshop.ids["Weiß"]) == {"lunch": "vegan", "photos": True}
    assert answers_by_key(workshop.ids["Laue"]) == {"topics": ["Wohnen", "Energie"]}
    assert answers_by_key(workshop.ids["Muster"]) == {"lunch": "mit Fleisch", "photos": False}
    assert answers_by_key(workshop.ids["Online"]) == {"photos": True}
    texts = db.session.scalar(
        select(func.count())
        .select_from(Answer)
        .join(Question, Answer.question_id == Question.id)
        .where(Question.kind == QuestionKind.TEXT)
    )
    assert texts == 0


def test_old_join_and_checkin_links_stop_working(app, client, workshop, clock):
    online, weiss = reg(workshop, "Online"), reg(workshop, "Weiß")
    join = signup.personal_token(online, "join")
    code = signup.checkin_token(weiss)
    assert signup.find_by_personal_token(join, "join").id == online.id
    assert signup.find_by_checkin_token(code).id == weiss.id
    privacy.anonymise_event(workshop.event)
    db.session.expire_all()
    assert signup.find_by_personal_token(join, "join") is None
    assert signup.find_by_checkin_token(code) is None
    assert client.get(f"/join/{join}").status_code == 404


def test_pending_mails_are_skipped_and_mail_errors_lose_the_address(app, workshop, clock):
    """The confirmations never went out (the mail server was down) and the reminder is due:
    after anonymisation none of them is sent, and no error text keeps an address."""
    weiss = reg(workshop, "Weiß")
    failed = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.registration_id == weiss.id)
    ).first()
    failed.status = OutboxStatus.FAILED
    failed.last_error = "weiss@example.org: 550 b'5.1.1 <weiss@example.org> unknown (Weiß)'"
    clock.now = workshop.event.starts_at - timedelta(days=1)
    scheduling.schedule_due(clock.now)  # the reminders
    db.session.commit()
    reminders = select(func.count()).where(OutboxMessage.kind == "reminder")
    assert db.session.scalar(reminders) == 3  # the confirmed ones
    assert privacy.anonymise_event(workshop.event) == len(PEOPLE)

    db.session.expire_all()
    rows = db.session.scalars(select(OutboxMessage)).all()
    assert {r.kind for r in rows} >= {"confirmation", "reminder", "waitlisted"}
    assert all(r.status != OutboxStatus.PENDING for r in rows)
    assert all("@" not in r.last_error and "Weiß" not in r.last_error for r in rows)
    assert "550" in db.session.get(OutboxMessage, failed.id).last_error  # the reason stays
    result = worker.run_once()
    assert result.sent == 0
    assert all(r.sent_at is None for r in db.session.scalars(select(OutboxMessage)))


def test_audit_details_about_the_person_are_scrubbed(app, workshop, clock):
    weiss = reg(workshop, "Weiß")
    audit.record(
        None, "participant.note", event=workshop.event, subject=f"registration:{weiss.id}",
        details={"email": "weiss@example.org", "said": "Erika Weiß rief an", "seats": 2},
    )  # fmt: skip
    audit.record(None, "export.csv", event=workshop.event, details={"status": "confirmed"})
    db.session.commit()
    privacy.anonymise_event(workshop.event)
    db.session.expire_all()
    note = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "participant.note"))
    assert note.one().details == {"email": "[anonymised]", "said": "[anonymised] rief an",
                                  "seats": 2}  # fmt: skip
    export = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "export.csv"))
    assert export.one().details == {"status": "confirmed"}


def test_anonymising_is_idempotent(app, workshop, clock):
    clock.now = privacy.retention_ends(workshop.event) + timedelta(days=5)
    assert privacy.anonymise_due_events(clock.now).registrations == len(PEOPLE)
    first = statistics(workshop.event)
    logged = db.session.scalar(select(func.count()).select_from(AuditEntry))
    clock.advance(hours=1)
    again = privacy.anonymise_due_events(clock.now)
    assert (again.events, again.registrations) == ([], 0)
    assert privacy.anonymise_registration(reg(workshop, "Weiß")) is False
    assert privacy.anonymise_event(workshop.event) is None
    db.session.commit()
    assert statistics(workshop.event) == first
    assert db.session.scalar(select(func.count()).select_from(AuditEntry)) == logged
    assert reg(workshop, "Weiß").anonymised_at == privacy.retention_ends(
        workshop.event
    ) + timedelta(days=5)


def test_each_event_has_its_own_retention(app, clock):
    short = make_event(slug="kurz", starts_at=clock.now + timedelta(days=1), retention_days=0)
    long = make_event(slug="lang", starts_at=clock.now + timedelta(days=1), retention_days=365)
    for event in (short, long):
        signup.register(event, signup.SignupData(email="a@example.org", first_name="A",
                                                 last_name="B", privacy_consent=True))  # fmt: skip
    db.session.commit()
    clock.now = short.ends_at + timedelta(days=100)
    assert privacy.anonymise_due_events(clock.now).events == ["kurz"]
    clock.now = long.ends_at + timedelta(days=365)
    assert privacy.anonymise_due_events(clock.now).events == ["lang"]


def test_a_participant_added_after_the_anonymisation_is_anonymised_next_time(app, workshop, clock):
    clock.now = privacy.retention_ends(workshop.event)
    privacy.anonymise_due_events(clock.now)
    late = signup.register(
        workshop.event,
        signup.SignupData(email="spaet@example.org", first_name="Spät", last_name="Dran",
                          attendance="online", privacy_consent=True),
        by_organiser=True,
    ).registration  # fmt: skip
    db.session.commit()
    result = privacy.anonymise_due_events(clock.now)
    assert (result.events, result.registrations) == (["werkstatt"], 1)
    db.session.expire_all()
    assert db.session.get(Registration, late.id).email == ""


def test_anonymised_participants_get_no_organiser_messages_or_event_news(app, workshop):
    from registration.services import events as events_service

    privacy.anonymise_event(workshop.event)
    assert messaging.recipients(workshop.event, status=None, attendance=None) == []
    assert events_service.notify_participants(workshop.event, "event_changed") == 0


def test_two_workers_at_once_anonymise_each_person_once(app, workshop, clock):
    other = make_event(slug="zweite", starts_at=workshop.event.starts_at, retention_days=0)
    for n in range(3):
        signup.register(other, signup.SignupData(email=f"x{n}@example.org", first_name="X",
                                                 last_name=str(n), privacy_consent=True))  # fmt: skip
    db.session.commit()
    event_ids = sorted([workshop.event.id, other.id])
    clock.now = privacy.retention_ends(workshop.event)
    db.session.remove()  # SQLite: the test's own session must not hold the write lock
    barrier = threading.Barrier(2)
    results: list[privacy.AnonymiseResult] = []

    def run() -> None:
        with app.app_context():
            barrier.wait(timeout=10)
            results.append(privacy.anonymise_due_events(clock.now))
            db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 2
    assert sum(r.registrations for r in results) == len(PEOPLE) + 3
    assert sorted(slug for r in results for slug in r.events) == ["werkstatt", "zweite"]
    logged = db.session.scalars(
        select(AuditEntry.event_id).where(AuditEntry.action == "privacy.anonymise_event")
    ).all()
    assert sorted(logged) == event_ids
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(Registration)
            .where(Registration.anonymised_at.is_(None))
        )
        == 0
    )


# --- the worker ---------------------------------------------------------------------------------


def test_the_worker_anonymises_at_most_every_interval(app, workshop, clock):
    clock.now = privacy.retention_ends(workshop.event) - timedelta(minutes=30)
    anonymiser = worker.Anonymiser(every=3600)
    assert anonymiser.run_if_due().events == []  # runs at once on start: nothing due yet
    clock.advance(minutes=40)  # now due, but the next turn is in 20 minutes
    assert anonymiser.run_if_due() is None
    assert reg(workshop, "Weiß").anonymised_at is None
    clock.advance(minutes=20)
    assert anonymiser.run_if_due().registrations == len(PEOPLE)
    assert worker.Anonymiser(every=0).run_if_due() is None  # turned off


class OnePass(threading.Event):
    """Stops the worker loop after its first pass (``wait`` between passes sets it)."""

    def wait(self, timeout: float | None = None) -> bool:
        self.set()
        return True


def test_the_worker_loop_runs_the_retention(app, workshop, clock):
    clock.now = privacy.retention_ends(workshop.event) + timedelta(hours=1)
    db.session.commit()
    worker.run_forever(interval=0, stop=OnePass())
    assert reg(workshop, "Weiß").anonymised_at == clock.now
    db.session.expire_all()
    skipped = db.session.scalars(
        select(OutboxMessage.status).where(OutboxMessage.kind == "confirmation")
    ).all()
    assert skipped and set(skipped) == {OutboxStatus.SKIPPED}  # never sent to anyone


def test_the_worker_interval_is_a_setting(monkeypatch):
    from config import TestingConfig

    monkeypatch.setenv("ANONYMISE_INTERVAL_SECONDS", "600")
    assert TestingConfig.from_env()["ANONYMISE_INTERVAL_SECONDS"] == 600
    monkeypatch.delenv("ANONYMISE_INTERVAL_SECONDS")
    assert TestingConfig.from_env()["ANONYMISE_INTERVAL_SECONDS"] == 3600


# --- the CLI --------------------------------------------------------------------------------------


def test_cli_dry_run_then_due_events(app, runner, workshop, clock):
    clock.now = privacy.retention_ends(workshop.event) - timedelta(hours=1)
    out = runner.invoke(args=["privacy", "anonymise"])
    assert out.exit_code == 0 and "anonymised 0 registrations of 0 event(s)" in out.output
    clock.advance(hours=2)
    dry = runner.invoke(args=["privacy", "anonymise", "--dry-run"])
    assert "would anonymise 5 registrations of 1 event(s): werkstatt" in dry.output
    assert reg(workshop, "Weiß").anonymised_at is None
    done = runner.invoke(args=["privacy", "anonymise"])
    assert done.exit_code == 0, done.output
    assert "anonymised 5 registrations of 1 event(s): werkstatt" in done.output
    assert reg(workshop, "Weiß").email == ""


def test_cli_one_event_on_demand_asks_first(app, runner, workshop, clock):
    help_text = runner.invoke(args=["privacy", "anonymise", "--help"]).output
    assert "regardless of its retention date" in help_text
    refused = runner.invoke(args=["privacy", "anonymise", "--event", "werkstatt"], input="n\n")
    assert refused.exit_code != 0
    assert "has not ended" in refused.output  # the event is three days ahead
    assert reg(workshop, "Weiß").anonymised_at is None
    dry = runner.invoke(args=["privacy", "anonymise", "--event", "werkstatt", "--dry-run"])
    assert "would anonymise 5 registrations" in dry.output
    assert reg(workshop, "Weiß").anonymised_at is None
    confirmed = runner.invoke(args=["privacy", "anonymise", "--event", "werkstatt"], input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert "anonymised 5 registrations of 1 event(s): werkstatt" in confirmed.output
    assert reg(workshop, "Weiß").anonymised_at == clock.now
    again = runner.invoke(args=["privacy", "anonymise", "--event", "werkstatt", "--yes"])
    assert "anonymised 0 registrations" in again.output
    unknown = runner.invoke(args=["privacy", "anonymise", "--event", "gibtsnicht", "--yes"])
    assert unknown.exit_code != 0 and "no event 'gibtsnicht'" in unknown.output


# --- the back office with anonymised rows --------------------------------------------------------


def test_back_office_pages_and_exports_work_with_anonymised_rows(app, client, workshop, clock):
    organiser = make_organiser("orga@example.org")
    workshop.event.organisers.append(organiser)
    db.session.commit()
    clock.now = workshop.event.starts_at + timedelta(minutes=5)
    checkin.check_in(reg(workshop, "Weiß"), organiser)
    db.session.commit()
    privacy.anonymise_event(workshop.event)
    login(client, "orga@example.org")
    de = {"Accept-Language": "de"}
    base = "/admin/events/werkstatt"
    listing = client.get(f"{base}/participants", headers=de).get_data(as_text=True)
    assert listing.count("Anonymisiert") == len(PEOPLE)
    assert "Weiß" not in listing and "weiss@example.org" not in listing
    detail = client.get(f"{base}/participants/{workshop.ids['Weiß']}", headers=de)
    assert detail.status_code == 200 and "Anonymisiert" in detail.get_data(as_text=True)
    assert "Weiß" not in detail.get_data(as_text=True)
    checkin_page = client.get(f"{base}/checkin", headers=de).get_data(as_text=True)
    assert "Anonymisiert" in checkin_page
    for url in ("/admin/", f"{base}/outbox", f"{base}/audit", f"{base}/export.xlsx",
                f"{base}/export.pdf", f"{base}/badges.pdf"):  # fmt: skip
        response = client.get(url, headers=de)
        assert response.status_code == 200, url
        response.close()
    csv_text = client.get(f"{base}/export.csv", headers=de).get_data(as_text=True)
    assert csv_text.count("Anonymisiert") == 4  # the active ones, on site and online
    assert "Weiß" not in csv_text and "@" not in csv_text
    english = client.get(f"{base}/participants", headers={"Accept-Language": "en"})
    assert "Anonymised" in english.get_data(as_text=True)
