"""The back office: login, throttling, sessions, and that nobody sees another's events."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from registration.extensions import db
from registration.models import AuditEntry, EventFormat, Organiser
from registration.services import accounts, signup
from registration.timeutil import utcnow

from .conftest import make_event

PASSWORD = "richtig-geheim-1"
DE = {"Accept-Language": "de"}


def make_organiser(email: str, *, admin: bool = False) -> Organiser:
    organiser = Organiser(email=email, is_admin=admin)
    accounts.set_password(organiser, PASSWORD)
    db.session.add(organiser)
    db.session.commit()
    return organiser


def login(client, email: str, password: str = PASSWORD, **kwargs):
    return client.post("/admin/login", data={"email": email, "password": password}, **kwargs)


def register(event, n: int, **overrides) -> None:
    values = {"email": f"p{n}@example.org", "first_name": f"Vor{n}", "last_name": f"Nach{n}",
              "privacy_consent": True}  # fmt: skip
    values.update(overrides)
    signup.register(event, signup.SignupData(**values))
    db.session.commit()


@pytest.fixture
def setup(app):
    """Two organisers with one event each, and an admin."""
    mine = make_event(slug="meine", title="Meine Werkstatt")
    theirs = make_event(slug="fremde", title="Fremde Tagung")
    me = make_organiser("ich@example.org")
    other = make_organiser("andere@example.org")
    make_organiser("admin@example.org", admin=True)
    mine.organisers.append(me)
    theirs.organisers.append(other)
    db.session.commit()
    register(theirs, 1, first_name="Geheim", last_name="Person")
    return {"mine": mine, "theirs": theirs}


def test_login_page_has_the_documented_fields(client, app):
    app.config["WTF_CSRF_ENABLED"] = True
    page = client.get("/admin/login").get_data(as_text=True)
    for name in ('name="email"', 'name="password"', 'name="csrf_token"'):
        assert name in page


def test_login_and_logout(client, setup):
    assert client.get("/admin/").status_code == 302
    response = login(client, "Ich@Example.org")
    assert response.status_code == 302
    page = client.get("/admin/", headers=DE).get_data(as_text=True)
    assert "Meine Werkstatt" in page and "Fremde Tagung" not in page
    client.post("/admin/logout")
    assert client.get("/admin/").status_code == 302


def test_wrong_password_is_explained_and_logged(client, setup):
    response = login(client, "ich@example.org", "falsch", headers=DE)
    assert response.status_code == 422
    assert "E-Mail-Adresse oder das Passwort ist falsch" in response.get_data(as_text=True)
    unknown = login(client, "niemand@example.org", "falsch", headers=DE)
    assert "E-Mail-Adresse oder das Passwort ist falsch" in unknown.get_data(as_text=True)
    actions = db.session.scalars(select(AuditEntry.action)).all()
    assert actions.count("login.failed") == 1


def test_repeated_failures_lock_the_account_for_a_while(client, setup, clock):
    clock.now = utcnow()
    for _ in range(accounts.MAX_FAILURES):
        login(client, "ich@example.org", "falsch")
    locked = login(client, "ich@example.org", headers=DE)  # even the right password waits
    # The same answer as for a wrong password or an unknown address: nothing to learn from it.
    assert "E-Mail-Adresse oder das Passwort ist falsch" in locked.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302  # not logged in
    clock.advance(minutes=accounts.LOCK_MINUTES + 1)
    assert login(client, "ich@example.org").status_code == 302


def test_login_redirects_only_to_local_pages(client, setup):
    ok = login(client, "ich@example.org", query_string={"next": "/admin/events/meine/participants"})
    assert ok.headers["Location"] == "/admin/events/meine/participants"
    client.post("/admin/logout")
    evil = login(client, "ich@example.org", query_string={"next": "https://evil.example/"})
    assert evil.headers["Location"] == "/admin/"
    client.post("/admin/logout")
    evil = login(client, "ich@example.org", query_string={"next": "//evil.example/"})
    assert evil.headers["Location"] == "/admin/"


def test_changing_the_password_ends_other_sessions(app, setup):
    first, second = app.test_client(), app.test_client()
    login(first, "ich@example.org")
    login(second, "ich@example.org")
    bad = first.post("/admin/password", data={"current_password": "falsch", "password": "x" * 12,
                                              "confirm": "x" * 12}, headers=DE)  # fmt: skip
    assert "Das aktuelle Passwort ist falsch." in bad.get_data(as_text=True)
    short = first.post("/admin/password", data={"current_password": PASSWORD, "password": "kurz",
                                                "confirm": "kurz"}, headers=DE)  # fmt: skip
    assert "mindestens 10 Zeichen" in short.get_data(as_text=True)
    ok = first.post("/admin/password", data={"current_password": PASSWORD,
                                             "password": "ganz-neues-passwort", "confirm": "ganz-neues-passwort"})  # fmt: skip
    assert ok.status_code == 302
    assert first.get("/admin/").status_code == 200  # this session goes on
    assert second.get("/admin/").status_code == 302  # the other one is over
    assert login(app.test_client(), "ich@example.org", "ganz-neues-passwort").status_code == 302


def test_deactivated_accounts_cannot_log_in_or_stay_in(client, setup):
    login(client, "ich@example.org")
    me = accounts.find("ich@example.org")
    me.active = False
    db.session.commit()
    assert client.get("/admin/").status_code == 302
    assert login(client, "ich@example.org").status_code == 422


#: The only back-office pages for people who are not logged in.
PUBLIC_ADMIN_ENDPOINTS = {"admin.login", "admin.password_forgot", "admin.password_reset"}
#: Routes without an event in the URL, checked by their own tests.
NO_EVENT_IN_URL = {"admin.checkin_scan"}


def admin_routes(app) -> list[tuple[str, str]]:
    """Every back-office route with its method, filled in for the other organiser's event."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or rule.endpoint in PUBLIC_ADMIN_ENDPOINTS:
            continue
        values = {"slug": "fremde", "registration_id": 1, "message_id": 1, "organiser_id": 2, "file_id": 1,
                  "question_id": 1, "token": "1-AAAAAAAAAAAAAAAA", "token_id": 1}  # fmt: skip
        url = rule.build({k: v for k, v in values.items() if k in rule.arguments})[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, url))
    return routes


def test_every_back_office_route_needs_a_login(client, setup, app):
    routes = admin_routes(app)
    assert len(routes) >= 5
    for method, url in routes:
        response = client.open(url, method=method)
        assert response.status_code == 302, (method, url)
        assert response.headers["Location"].startswith("/admin/login"), (method, url)


def test_an_unrelated_organiser_gets_404_for_everything_of_another_event(client, setup, app):
    login(client, "ich@example.org")
    for method, url in admin_routes(app):
        if "/events/" not in url or url.endswith("/events/new"):
            continue
        response = client.open(url, method=method)
        assert response.status_code == 404, (method, url)
        assert "Geheim" not in response.get_data(as_text=True)


def test_admins_see_every_event(client, setup):
    login(client, "admin@example.org")
    page = client.get("/admin/").get_data(as_text=True)
    assert "Meine Werkstatt" in page and "Fremde Tagung" in page
    assert client.get("/admin/events/fremde/participants").status_code == 200


def test_a_participant_of_another_event_is_404_even_with_my_slug(client, setup):
    login(client, "ich@example.org")
    assert client.get("/admin/events/meine/participants/1").status_code == 404


def test_participant_list_search_filter_sort_and_paginate(client, setup):
    event = setup["mine"]
    event.format = EventFormat.HYBRID
    event.capacity_on_site, event.capacity_online = 60, 2
    db.session.commit()
    for n in range(55):
        register(event, n, last_name=f"Nach{n:02d}", organisation="Stadt Jena" if n % 2 else "Landkreis",
                 attendance="online" if n < 5 else "on_site")  # fmt: skip
    login(client, "ich@example.org")
    url = "/admin/events/meine/participants"
    first_page = client.get(url, headers=DE).get_data(as_text=True)
    assert "55 Teilnehmende gefunden." in first_page
    assert "Seite 1 von 2" in first_page
    names = re.findall(r">Nach(\d\d), Vor\d+<", first_page)
    assert names == sorted(names) and len(names) == 50
    assert "Nach54" in client.get(url, query_string={"page": 2}).get_data(as_text=True)
    search = client.get(url, query_string={"q": "nach07"}).get_data(as_text=True)
    assert re.findall(r">Nach(\d\d),", search) == ["07"]
    waiting = client.get(url, query_string={"status": "waitlisted"}, headers=DE).get_data(
        as_text=True
    )
    assert "3 Teilnehmende gefunden." in waiting
    online = client.get(url, query_string={"attendance": "online"}, headers=DE).get_data(
        as_text=True
    )
    assert "5 Teilnehmende gefunden." in online
    by_org = client.get(url, query_string={"sort": "organisation", "q": "nach0"}).get_data(
        as_text=True
    )
    assert by_org.index("Landkreis") < by_org.index("Stadt Jena")


def test_participant_detail_shows_answers_and_email_history(client, setup):
    register(setup["mine"], 1, first_name="Jürgen", last_name="Weiß")
    login(client, "ich@example.org")
    registration_id = db.session.scalars(select(signup.Registration.id).where(
        signup.Registration.last_name == "Weiß")).one()  # fmt: skip
    page = client.get(f"/admin/events/meine/participants/{registration_id}", headers=DE)
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Jürgen Weiß" in text and "confirmation" in text and "Wartet auf Versand" in text


def test_cli_adds_organisers_to_events(runner, setup):
    result = runner.invoke(args=["events", "add-organiser", "fremde", "ich@example.org"])
    assert result.exit_code == 0, result.output
    assert accounts.find("ich@example.org").can_manage(setup["theirs"])
    assert runner.invoke(args=["events", "add-organiser", "nope", "ich@example.org"]).exit_code != 0


def test_lock_expiry_is_reset_after_a_good_login(app, setup, clock):
    clock.now = utcnow()
    me = accounts.find("ich@example.org")
    me.failed_logins = accounts.MAX_FAILURES - 1
    db.session.commit()
    accounts.authenticate("ich@example.org", PASSWORD)
    assert (me.failed_logins, me.locked_until) == (0, None)
    me.locked_until = clock.now - timedelta(seconds=1)
    db.session.commit()
    assert accounts.authenticate("ich@example.org", PASSWORD) is me


def test_check_in_with_one_click_and_undo(client, setup):
    from registration.models import Registration

    event = setup["mine"]
    register(event, 1, first_name="Jürgen", last_name="Weiß")
    register(event, 2, first_name="Anna", last_name="Adler")
    login(client, "ich@example.org")
    page = client.get("/admin/events/meine/checkin", headers=DE).get_data(as_text=True)
    assert "0 von 2 eingecheckt" in page
    assert page.index("Adler, Anna") < page.index("Weiß, Jürgen")
    weiss = db.session.scalars(select(Registration).where(Registration.last_name == "Weiß")).one()

    response = client.post(f"/admin/events/meine/checkin/{weiss.id}", data={"action": "checkin"})
    assert response.status_code == 302 and response.headers["Location"].endswith(
        f"#person-{weiss.id}"
    )
    page = client.get("/admin/events/meine/checkin", headers=DE).get_data(as_text=True)
    assert "1 von 2 eingecheckt" in page and "anwesend seit" in page
    client.post(
        f"/admin/events/meine/checkin/{weiss.id}", data={"action": "checkin"}
    )  # twice: harmless
    client.post(f"/admin/events/meine/checkin/{weiss.id}", data={"action": "undo"})
    db.session.refresh(weiss)
    assert weiss.checked_in_at is None
    actions = db.session.scalars(
        select(AuditEntry.action).where(AuditEntry.action.like("checkin%"))
    ).all()
    assert actions == ["checkin", "checkin.undo"]
    search = client.get("/admin/events/meine/checkin", query_string={"q": "adl"}).get_data(
        as_text=True
    )
    assert "Adler, Anna" in search and "Weiß" not in search


def test_waiting_list_people_cannot_be_checked_in(client, setup):
    from registration.models import Registration

    event = setup["mine"]
    event.capacity_on_site = 0
    db.session.commit()
    register(event, 1)
    login(client, "ich@example.org")
    waiting = db.session.scalars(
        select(Registration).where(Registration.event_id == event.id)
    ).one()
    client.post(f"/admin/events/meine/checkin/{waiting.id}", data={"action": "checkin"})
    db.session.refresh(waiting)
    assert waiting.checked_in_at is None


def test_outbox_view_retry_and_resend(client, setup):
    from registration.models import OutboxMessage, OutboxStatus

    event = setup["mine"]
    register(event, 1)
    register(event, 2)
    first, second = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.event_id == event.id).order_by(OutboxMessage.id)
    ).all()
    first.status, first.last_error, first.attempts = OutboxStatus.FAILED, "550 No such mailbox", 1
    second.status = OutboxStatus.SENT
    db.session.commit()
    login(client, "ich@example.org")
    page = client.get("/admin/events/meine/outbox", headers=DE).get_data(as_text=True)
    assert "550 No such mailbox" in page and "Fehlgeschlagen: 1" in page
    failed_only = client.get(
        "/admin/events/meine/outbox", query_string={"status": "failed"}
    ).get_data(as_text=True)
    assert failed_only.count("<tr>") == 2  # header and the failed one

    client.post(f"/admin/events/meine/outbox/{first.id}/retry")
    db.session.refresh(first)
    assert first.status == OutboxStatus.PENDING and first.next_attempt_at <= utcnow()
    client.post(f"/admin/events/meine/outbox/{second.id}/resend")
    copies = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.dedupe_key.like(f"{second.dedupe_key}:resend:%"))
    ).all()
    assert len(copies) == 1 and copies[0].status == OutboxStatus.PENDING
    actions = db.session.scalars(
        select(AuditEntry.action).where(AuditEntry.action.like("email.%"))
    ).all()
    assert actions == ["email.retry", "email.resend"]


def test_exports_download_at_stable_urls_and_are_logged(client, setup):
    import csv
    import io

    from openpyxl import load_workbook
    from pypdf import PdfReader

    event = setup["mine"]
    event.capacity_on_site = 1
    db.session.commit()
    register(event, 1, first_name="Jürgen", last_name="Weiß", organisation="=HYPERLINK(1)")
    register(event, 2, first_name="Anna", last_name="Straße")
    login(client, "ich@example.org")

    response = client.get("/admin/events/meine/export.csv", headers=DE)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Cache-Control"] == "no-store"
    assert 'filename="meine-teilnehmende.csv"' in response.headers["Content-Disposition"]
    body = response.get_data()
    assert body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=";"))
    assert "Weiß" in rows[1] and "'=HYPERLINK(1)" in rows[1]

    waiting = client.get(
        "/admin/events/meine/export.csv", query_string={"status": "waitlisted", "delimiter": ","}
    )
    rows = list(csv.reader(io.StringIO(waiting.get_data().decode("utf-8-sig"))))
    assert len(rows) == 2 and "Straße" in rows[1]

    xlsx = client.get("/admin/events/meine/export.xlsx")
    workbook = load_workbook(io.BytesIO(xlsx.data), read_only=True)
    assert len(workbook.sheetnames) == 2
    workbook.close()

    pdf = client.get("/admin/events/meine/export.pdf")
    text = PdfReader(io.BytesIO(pdf.data)).pages[0].extract_text()
    assert pdf.mimetype == "application/pdf" and "Weiß" in text and "Straße" not in text

    badges = client.get("/admin/events/meine/badges.pdf")
    assert "Jürgen" in PdfReader(io.BytesIO(badges.data)).pages[0].extract_text()

    bad = client.get("/admin/events/meine/export.csv", query_string={"status": "everyone"})
    assert bad.status_code == 400 and "status must be one of" in bad.get_data(as_text=True)

    logged = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action.like("export.%")).order_by(AuditEntry.id)
    ).all()
    assert [e.action for e in logged] == [
        "export.csv",
        "export.csv",
        "export.xlsx",
        "export.signin_pdf",
        "export.badges",
    ]
    assert logged[1].details == {"status": "waitlisted", "attendance": None, "delimiter": ","}
    assert all(e.actor_email == "ich@example.org" and e.event_id == event.id for e in logged)


def event_form(**overrides) -> dict:
    values = {
        "title": "Werkstatt 22", "subtitle": "22. Werkstatt – Bündnis vor Ort", "slug": "werkstatt-22",
        "format": "hybrid", "status": "published", "starts_at": "2030-05-06T11:00",
        "ends_at": "2030-05-06T16:30", "venue_name": "Rathaus", "venue_address": "Markt 1\n04916 Herzberg",
        "description": "## Programm", "contact_email": "orga@example.org", "capacity_on_site": "2",
        "capacity_online": "", "waitlist_enabled": "y", "reminder_days_before": "2",
        "dial_in_hours_before": "24", "dial_in_url": "https://meet.example.org/w22",
    }  # fmt: skip
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def test_create_an_event_in_the_back_office(client, setup):
    from registration.models import Event

    login(client, "ich@example.org")
    assert client.get("/admin/events/new").status_code == 200
    response = client.post("/admin/events/new", data=event_form())
    assert response.status_code == 302, response.get_data(as_text=True)
    event = db.session.scalars(select(Event).where(Event.slug == "werkstatt-22")).one()
    assert event.starts_at.astimezone(event.zone).strftime("%d.%m.%Y %H:%M") == "06.05.2030 11:00"
    assert (event.capacity_on_site, event.capacity_online, event.waitlist_enabled) == (
        2,
        None,
        True,
    )
    assert [o.email for o in event.organisers] == ["ich@example.org"]
    assert "Werkstatt 22" in client.get("/admin/").get_data(as_text=True)
    assert client.get("/events/werkstatt-22").status_code == 200  # published
    assert db.session.scalars(
        select(AuditEntry.action).where(AuditEntry.action == "event.create")
    ).one()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"title": ""}, "title", "Bitte geben Sie einen Titel ein."),
        ({"slug": "Mit Leerzeichen"}, "slug", "Verwenden Sie nur a-z"),
        ({"slug": "meine"}, "slug", "bereits vergeben"),
        ({"ends_at": "2030-05-06T10:00"}, "ends_at", "Das Ende muss nach dem Beginn liegen."),
        (
            {"starts_at": "morgen"},
            "starts_at",
            "Kein gültiges Datum mit Zeit.",
        ),
        ({"capacity_on_site": "-3"}, "capacity_on_site", "Bitte geben Sie 0 oder mehr ein."),
        ({"contact_email": "kein-at"}, "contact_email", "gültige E-Mail-Adresse"),
        ({"dial_in_url": "ftp://x"}, "dial_in_url", "muss mit https:// oder http:// beginnen"),
        ({"retention_days": "5000"}, "retention_days", "Bitte geben Sie 0 bis 3650 ein."),
        ({"format": "festival"}, "format", ""),
    ],
)
def test_event_form_errors_next_to_the_field(client, setup, overrides, field, message):
    login(client, "ich@example.org")
    response = client.post("/admin/events/new", data=event_form(**overrides), headers=DE)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    error = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', page, re.S)
    assert error and message in error.group(1)
    assert 'value="Werkstatt 22"' in page or field == "title"  # values kept


def test_edit_keeps_seats_safe_and_notifies_on_request(client, setup):
    from registration.models import OutboxMessage, Registration

    event = setup["mine"]
    for n in range(3):
        register(event, n)  # capacity 10: all confirmed
    login(client, "ich@example.org")
    page = client.get("/admin/events/meine/edit").get_data(as_text=True)
    assert 'value="Meine Werkstatt"' in page
    local = event.starts_at.astimezone(event.zone)
    form = event_form(title="Meine Werkstatt", slug="ignored", format="on_site",
                      starts_at=local.strftime("%Y-%m-%dT%H:%M"),
                      ends_at=(local + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M"),
                      venue_name="", venue_address="", capacity_on_site="2", dial_in_url="")  # fmt: skip
    refused = client.post("/admin/events/meine/edit", data=form, headers=DE)
    assert (
        refused.status_code == 422
        and "3 Personen haben bereits eine Zusage" in refused.get_data(as_text=True)
    )

    moved = {**form, "capacity_on_site": "10", "starts_at": (local + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
             "ends_at": (local + timedelta(days=1, hours=5)).strftime("%Y-%m-%dT%H:%M")}  # fmt: skip
    assert client.post("/admin/events/meine/edit", data=moved).status_code == 302
    assert not db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "event_changed")
    ).all()
    db.session.refresh(event)
    assert event.slug == "meine"
    assert event.starts_at.astimezone(event.zone).strftime("%Y-%m-%dT%H:%M") == moved["starts_at"]

    back = {**moved, "starts_at": form["starts_at"], "ends_at": form["ends_at"], "notify": "y"}
    client.post("/admin/events/meine/edit", data=back)
    changed = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "event_changed")
    ).all()
    assert len(changed) == 3

    client.post("/admin/events/meine/cancel", data={"notify": "y"})
    db.session.refresh(event)
    assert event.status == "cancelled"
    assert (
        len(
            db.session.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == "event_cancelled")
            ).all()
        )
        == 3
    )
    assert db.session.scalars(select(Registration.status)).all().count("confirmed") >= 3


def test_message_participants_with_preview_test_and_send(app, client, setup):
    from registration.models import OutboxMessage
    from registration.worker import run_once

    from .smtp import SMTPServer, recipient

    server = SMTPServer()
    server.start()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port)
    try:
        event = setup["mine"]
        event.capacity_on_site = 1
        db.session.commit()
        register(event, 1)
        register(event, 2)  # waiting list
        login(client, "ich@example.org")
        data = {"subject": "Raumänderung", "body": "Wir treffen uns in **Saal 2**.", "status": ""}
        preview = client.post(
            "/admin/events/meine/message", data={**data, "action": "preview"}, headers=DE
        )
        text = preview.get_data(as_text=True)
        assert "Raumänderung" in text and "Saal 2" in text and "Empfänger: 2" in text
        assert (
            db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "message")).all()
            == []
        )

        client.post("/admin/events/meine/message", data={**data, "action": "test"})
        (test_mail,) = server.messages
        assert recipient(test_mail) == "ich@example.org" and test_mail["Subject"] == "Raumänderung"

        only_waiting = {**data, "status": "waitlisted", "action": "send"}
        response = client.post("/admin/events/meine/message", data=only_waiting)
        assert response.status_code == 302
        run_once()
        sent = [m for m in server.messages if m["Subject"] == "Raumänderung"][1:]
        assert [recipient(m) for m in sent] == ["p2@example.org"]
        html = sent[0].get_body(("html",)).get_content()
        assert "<strong>Saal 2</strong>" in html
        entry = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "message.send")
        ).one()
        assert entry.details["recipients"] == 1

        empty = client.post(
            "/admin/events/meine/message",
            data={"subject": "", "body": "", "action": "send"},
            headers=DE,
        )
        assert empty.status_code == 422 and "Bitte geben Sie einen Betreff ein." in empty.get_data(
            as_text=True
        )
    finally:
        server.stop()


def test_add_a_phone_sign_up_even_after_the_window_and_past_capacity(client, setup):
    from registration.models import OutboxMessage, Registration

    event = setup["mine"]
    event.capacity_on_site = 1
    event.registration_closes_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    login(client, "ich@example.org")
    person = {"first_name": "Jürgen", "last_name": "Weiß", "email": "j@example.org", "consent": "y"}
    no_consent = client.post(
        "/admin/events/meine/participants/new", data={**person, "consent": ""}, headers=DE
    )
    assert (
        no_consent.status_code == 422
        and "Bitte bestätigen Sie die Einwilligung." in no_consent.get_data(as_text=True)
    )
    assert client.post("/admin/events/meine/participants/new", data=person).status_code == 302
    second = {**person, "email": "zweite@example.org", "last_name": "Zweite"}
    client.post("/admin/events/meine/participants/new", data=second)
    third = {**person, "email": "dritte@example.org", "last_name": "Dritte", "over_capacity": "y"}
    client.post("/admin/events/meine/participants/new", data=third)
    duplicate = client.post("/admin/events/meine/participants/new", data=person, headers=DE)
    assert "bereits angemeldet" in duplicate.get_data(as_text=True)
    statuses = {
        r.last_name: r.status
        for r in db.session.scalars(select(Registration).where(Registration.event_id == event.id))
    }
    assert statuses == {"Weiß": "confirmed", "Zweite": "waitlisted", "Dritte": "confirmed"}
    assert db.session.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.id)).all()[-3:] == [
        "confirmation", "waitlisted", "confirmation"]  # fmt: skip


def test_confirm_anyway_edit_and_cancel_a_participant(client, setup):
    from registration.models import Registration

    event = setup["mine"]
    event.capacity_on_site = 1
    db.session.commit()
    register(event, 1)
    register(event, 2)
    login(client, "ich@example.org")
    first, waiting = db.session.scalars(
        select(Registration).where(Registration.event_id == event.id).order_by(Registration.id)
    ).all()

    page = client.get(f"/admin/events/meine/participants/{waiting.id}", headers=DE).get_data(
        as_text=True
    )
    assert "Trotzdem bestätigen (überschreitet die Kapazität)" in page
    client.post(f"/admin/events/meine/participants/{waiting.id}/confirm")
    db.session.refresh(waiting)
    assert waiting.status == "confirmed"

    taken = client.post(f"/admin/events/meine/participants/{waiting.id}/edit",
                        data={"first_name": "Neu", "last_name": "Name", "email": "P1@example.org"}, headers=DE)  # fmt: skip
    assert taken.status_code == 422 and "bereits angemeldet" in taken.get_data(as_text=True)
    client.post(f"/admin/events/meine/participants/{waiting.id}/edit",
                data={"first_name": "Neu", "last_name": "Name", "email": "neu@example.org"})  # fmt: skip
    db.session.refresh(waiting)
    assert (waiting.full_name, waiting.email_key) == ("Neu Name", "neu@example.org")

    client.post(f"/admin/events/meine/participants/{first.id}/cancel")
    db.session.refresh(first)
    assert first.status == "cancelled"
    actions = db.session.scalars(
        select(AuditEntry.action)
        .where(AuditEntry.action.like("participant.%"))
        .order_by(AuditEntry.id)
    ).all()
    assert actions == [
        "participant.confirm_over_capacity",
        "participant.edit",
        "participant.cancel",
    ]


def test_password_reset_by_email_link_works_once_and_expires(app, client, setup, clock):
    from registration.worker import run_once

    from .smtp import SMTPServer

    server = SMTPServer()
    server.start()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port)
    try:
        clock.now = utcnow()
        page = client.post(
            "/admin/password/forgot", data={"email": "niemand@example.org"}, headers=DE
        )
        assert page.status_code == 302
        client.post("/admin/password/forgot", data={"email": "ICH@example.org"}, headers=DE)
        run_once()
        (message,) = server.messages  # nothing for the unknown address, one for the account
        assert message["To"] == "ich@example.org" and message["Subject"] == "Passwort zurücksetzen"
        link = re.search(
            r"http://localhost(/admin/password/reset/\S+)",
            message.get_body(("plain",)).get_content(),
        ).group(1)

        assert client.get(link).status_code == 200
        short = client.post(link, data={"password": "kurz", "confirm": "kurz"}, headers=DE)
        assert "mindestens 10 Zeichen" in short.get_data(as_text=True)
        assert (
            client.post(
                link, data={"password": "ein-neues-passwort", "confirm": "ein-neues-passwort"}
            ).status_code
            == 302
        )
        assert login(client, "ich@example.org", "ein-neues-passwort").status_code == 302
        client.post("/admin/logout")
        again = client.get(link, headers=DE)  # used: the hash changed
        assert again.status_code == 302 and again.headers["Location"].endswith(
            "/admin/password/forgot"
        )

        client.post("/admin/password/forgot", data={"email": "ich@example.org"})
        run_once()
        late = re.search(
            r"http://localhost(/admin/password/reset/\S+)",
            server.messages[-1].get_body(("plain",)).get_content(),
        ).group(1)
        clock.advance(hours=2)
        assert client.get(late).status_code == 302  # expired
        assert client.get("/admin/password/reset/forged-token").status_code == 302
    finally:
        server.stop()


def test_admins_invite_and_deactivate_accounts_others_see_nothing(app, client, setup):
    from registration.models import OutboxMessage

    login(client, "ich@example.org")
    assert client.get("/admin/accounts").status_code == 404
    assert client.post("/admin/accounts/2/active", data={"active": "0"}).status_code == 404
    client.post("/admin/logout")

    login(client, "admin@example.org")
    page = client.get("/admin/accounts", headers=DE).get_data(as_text=True)
    assert "ich@example.org" in page and "andere@example.org" in page
    response = client.post(
        "/admin/accounts", data={"email": "Neu@Example.org", "name": "Neue Kollegin"}
    )
    assert response.status_code == 302
    new = accounts.find("neu@example.org")
    assert new is not None and not new.is_admin
    invitation = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "password_reset")
    ).one()
    assert invitation.payload["organiser_id"] == new.id
    taken = client.post("/admin/accounts", data={"email": "ich@example.org"}, headers=DE)
    assert "existiert bereits" in taken.get_data(as_text=True)

    other = accounts.find("andere@example.org")
    client.post(f"/admin/accounts/{other.id}/active", data={"active": "0"})
    db.session.refresh(other)
    assert other.active is False
    me = accounts.find("admin@example.org")
    client.post(f"/admin/accounts/{me.id}/active", data={"active": "0"})
    db.session.refresh(me)
    assert me.active is True  # not oneself


def test_organisers_add_and_remove_colleagues(client, setup):
    login(client, "ich@example.org")
    client.post("/admin/events/meine/organisers", data={"email": "andere@example.org"})
    other = accounts.find("andere@example.org")
    assert other.can_manage(setup["mine"])
    assert (
        client.post(
            "/admin/events/meine/organisers", data={"email": "niemand@example.org"}
        ).status_code
        == 302
    )
    client.post(f"/admin/events/meine/organisers/{other.id}/remove")
    db.session.expire_all()
    assert not accounts.find("andere@example.org").can_manage(setup["mine"])


def test_audit_log_pages(client, setup):
    login(client, "ich@example.org")
    client.get("/admin/events/meine/export.csv").close()
    page = client.get("/admin/events/meine/audit", headers=DE).get_data(as_text=True)
    assert "export.csv" in page and "ich@example.org" in page
    assert client.get("/admin/audit").status_code == 404  # administrators only
    client.post("/admin/logout")
    login(client, "admin@example.org")
    everything = client.get("/admin/audit").get_data(as_text=True)
    assert "login" in everything and "export.csv" in everything


def test_qr_code_in_the_confirmation_checks_in_only_for_the_events_organisers(app, client, setup):
    from email import message_from_bytes, policy

    from registration.models import OutboxMessage, Registration
    from registration.notifications import build_message

    event = setup["mine"]
    register(event, 1, first_name="Jürgen", last_name="Weiß")
    registration = db.session.scalars(
        select(Registration).where(Registration.event_id == event.id)
    ).one()
    row = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.registration_id == registration.id)
    ).one()
    with app.test_request_context("/", base_url="http://localhost"):
        parsed = message_from_bytes(build_message(row).as_bytes(), policy=policy.default)
    images = [p for p in parsed.walk() if p.get_content_type() == "image/png"]  # in the HTML
    assert len(images) == 1 and images[0]["Content-ID"] == "<checkin-qr>"
    assert images[0].get_content().startswith(b"\x89PNG")
    assert 'src="cid:checkin-qr"' in parsed.get_body(("html",)).get_content()
    url = f"/admin/c/{signup.checkin_token(registration)}"
    assert registration.checkin_qr == images[0].get_content()  # made once at sign-up
    assert len(url) < 40  # a small, quick QR code

    anonymous = client.get(url)
    assert anonymous.status_code == 302 and "/admin/login" in anonymous.headers["Location"]
    login(client, "andere@example.org")  # organises another event
    assert client.get(url).status_code == 404
    client.post("/admin/logout")
    login(client, "ich@example.org")
    scanned = client.get(url, headers=DE)
    assert scanned.status_code == 200 and "Eingecheckt." in scanned.get_data(as_text=True)
    again = client.get(url, headers=DE).get_data(as_text=True)
    assert "Bereits eingecheckt seit" in again
    db.session.refresh(registration)
    assert registration.checked_in_at is not None
    forged = url[:-1] + ("A" if url[-1] != "A" else "B")
    assert client.get(forged).status_code == 404


def test_upload_title_image_and_documents_checked_by_content(client, setup):
    import io

    from registration.models import EventFile

    login(client, "ich@example.org")
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    ok = client.post("/admin/events/meine/files", data={
        "file": (io.BytesIO(png), "titel.png"), "kind": "title_image",
        "alt": "Blick auf den Markt", "credit": "Foto: Stadt"}, content_type="multipart/form-data")  # fmt: skip
    assert ok.status_code == 302
    client.post("/admin/events/meine/files", data={
        "file": (io.BytesIO(b"%PDF-1.7 flyer"), "Flyer Tagung.pdf"), "kind": "attachment",
        "title": "Save-the-Date"}, content_type="multipart/form-data")  # fmt: skip
    exe = client.post("/admin/events/meine/files", data={
        "file": (io.BytesIO(b"MZ\x90\x00 program"), "flyer.pdf"), "kind": "attachment"},
        content_type="multipart/form-data", follow_redirects=True, headers=DE)  # fmt: skip
    assert "nicht angenommen" in exe.get_data(as_text=True)
    traversal = client.post("/admin/events/meine/files", data={
        "file": (io.BytesIO(b"%PDF-1.4 x"), "../../etc/passwd.pdf"), "kind": "attachment"},
        content_type="multipart/form-data")  # fmt: skip
    assert traversal.status_code == 302
    too_big_for_images = client.post("/admin/events/meine/files", data={
        "file": (io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"0" * (5 * 1024 * 1024)), "big.png"),
        "kind": "title_image"}, content_type="multipart/form-data", follow_redirects=True, headers=DE)  # fmt: skip
    assert "größer als 5 MB" in too_big_for_images.get_data(as_text=True)
    app = client.application
    app.config["MAX_CONTENT_LENGTH"] = 4096  # the request limit (16 MB by default), small here
    huge = client.post("/admin/events/meine/files", data={
        "file": (io.BytesIO(b"%PDF-" + b"0" * 8000), "big.pdf"), "kind": "attachment"},
        content_type="multipart/form-data", headers=DE)  # fmt: skip
    assert huge.status_code == 413 and "zu groß" in huge.get_data(as_text=True)
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024

    event = setup["mine"]
    db.session.refresh(event)
    stored = {
        f.filename: f
        for f in db.session.scalars(select(EventFile).where(EventFile.event_id == event.id))
    }
    assert set(stored) == {"titel.png", "Flyer-Tagung.pdf", "passwd.pdf"}
    assert (event.title_image_alt, event.title_image_credit) == (
        "Blick auf den Markt",
        "Foto: Stadt",
    )
    page = client.get("/events/meine").get_data(as_text=True)
    assert 'alt="Blick auf den Markt"' in page and "Save-the-Date" in page

    client.post(f"/admin/events/meine/files/{stored['passwd.pdf'].id}/remove")
    remaining = db.session.scalars(
        select(EventFile.filename).where(EventFile.event_id == event.id)
    ).all()
    assert sorted(remaining) == ["Flyer-Tagung.pdf", "titel.png"]
