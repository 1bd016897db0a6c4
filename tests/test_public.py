"""Public pages: list, event page, sign-up form, thanks, manage, calendar, embed, errors."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar
from sqlalchemy import func, select

from registration.extensions import db
from registration.models import (
    Answer,
    Event,
    EventFormat,
    EventStatus,
    FileKind,
    Question,
    QuestionKind,
    Registration,
    RegistrationStatus,
)
from registration.services import files, signup
from registration.timeutil import utcnow

from .conftest import make_event

DE = {"Accept-Language": "de-DE,de;q=0.9"}
EN = {"Accept-Language": "en-GB,en;q=0.9"}
WEDNESDAY = datetime(2030, 9, 18, 9, 0, tzinfo=UTC)  # 11:00 in Berlin (summer time)


def form_data(n: int = 1, **overrides: object) -> dict:
    data: dict[str, object] = {
        "first_name": "Jürgen",
        "last_name": f"Weiß{n}",
        "email": f"juergen{n}@example.org",
        "organisation": "Stadt Herzberg (Elster)",
        "privacy_consent": "y",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def registrations() -> list[Registration]:
    db.session.expire_all()
    return list(db.session.scalars(select(Registration).order_by(Registration.id)))


def text_of(response) -> str:
    return response.get_data(as_text=True)


def test_event_list_shows_upcoming_with_seat_status(client, app):
    make_event(
        slug="full",
        title="Volle Werkstatt",
        capacity_on_site=0,
        starts_at=utcnow() + timedelta(days=3),
    )
    make_event(slug="open", title="Offene Werkstatt", capacity_on_site=12)
    make_event(slug="draft", title="Entwurf", status=EventStatus.DRAFT)
    make_event(slug="cancelled", title="Abgesagte Tagung", status=EventStatus.CANCELLED)
    make_event(slug="old", title="Alte Werkstatt", starts_at=utcnow() - timedelta(days=30))
    page = text_of(client.get("/", headers=DE))
    assert "noch 12 Plätze frei" in page
    assert "ausgebucht – Warteliste" in page
    assert "Abgesagt" in page
    assert "Entwurf" not in page and "Alte Werkstatt" not in page
    assert page.index("Volle Werkstatt") < page.index("Offene Werkstatt")  # soonest first
    archive = text_of(client.get("/archive", headers=DE))
    assert "Alte Werkstatt" in archive and "Offene Werkstatt" not in archive


def test_closed_registration_is_shown_in_the_list(client, app):
    make_event(registration_closes_at=utcnow() - timedelta(hours=1))
    assert "Anmeldung geschlossen" in text_of(client.get("/", headers=DE))


def test_event_page_carries_everything_of_the_announcement(client, app):
    event = make_event(
        title="Mobilität, Wohnen und Arbeiten",
        subtitle="21. Werkstatt – Bündnis vor Ort",
        starts_at=WEDNESDAY,
        ends_at=WEDNESDAY + timedelta(hours=5, minutes=30),
        venue_name="Bürgerzentrum",
        venue_address="Markt 1\n04916 Herzberg (Elster)",
        contact_name="Geschäftsstelle",
        contact_email="buendnis@example.org",
        contact_phone="+49 30 123 45-6",
        description="## Programm\n\n| Zeit | Punkt |\n| --- | --- |\n| 11:00 | Begrüßung |\n\nMit **Stadtspaziergang**.",
        dial_in_url="https://meet.example.org/geheim",
        dial_in_passcode="pass-4711",
    )
    image = files.store(event, FileKind.TITLE_IMAGE, b"\x89PNG\r\n\x1a\n" + b"0" * 50, "titel.png")
    files.store(
        event, FileKind.ATTACHMENT, b"%PDF-1.4 flyer", "Flyer Fachtagung.pdf", "Save-the-Date-Flyer"
    )
    event.title_image_credit = "Bild: S. Bratge, Stadt Jena"
    event.title_image_alt = "Blick auf Herzberg"
    db.session.commit()

    response = client.get("/events/werkstatt", headers=DE)
    page = text_of(response)
    assert response.status_code == 200
    assert "21. Werkstatt – Bündnis vor Ort" in page
    assert "Mittwoch, 18. September 2030, 11:00–16:30 Uhr" in page
    assert "Bürgerzentrum" in page and "04916 Herzberg (Elster)" in page
    assert '<a href="mailto:buendnis@example.org">' in page
    assert 'href="tel:+4930123456"' in page
    assert "<h2>Programm</h2>" in page and "<td>Begrüßung</td>" in page
    assert "<strong>Stadtspaziergang</strong>" in page
    assert "Bild: S. Bratge, Stadt Jena" in page and 'alt="Blick auf Herzberg"' in page
    assert f"/events/werkstatt/files/{image.id}/titel.png" in page
    assert "Save-the-Date-Flyer" in page
    assert "/events/werkstatt.ics" in page
    assert "mailto:?subject=Mobilit%C3%A4t" in page
    assert "geheim" not in page and "pass-4711" not in page  # invariant 4
    assert "noch 10 Plätze frei" in page


def test_event_page_in_english(client, app):
    make_event(starts_at=WEDNESDAY, ends_at=WEDNESDAY + timedelta(hours=2))
    page = text_of(client.get("/events/werkstatt?lang=en"))
    assert "Wednesday, September 18, 2030, 11:00–13:00" in page
    assert "10 seats left" in page
    assert '<html lang="en">' in page
    # the choice is remembered for the next page
    assert '<html lang="en">' in text_of(client.get("/"))


def test_files_are_served_with_their_type_and_nosniff(client, app):
    event = make_event()
    pdf = files.store(
        event, FileKind.ATTACHMENT, b"%PDF-1.7 content", "../../etc/passwd.pdf", "Flyer"
    )
    db.session.commit()
    assert pdf.filename == "passwd.pdf"
    response = client.get(f"/events/werkstatt/files/{pdf.id}/passwd.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.data == b"%PDF-1.7 content"
    response.close()
    assert client.get(f"/events/werkstatt/files/{pdf.id}/other.pdf").status_code == 404
    assert client.get("/events/werkstatt/files/999/passwd.pdf").status_code == 404


@pytest.mark.parametrize(
    ("data", "name"),
    [(b"MZ\x90\x00 windows program", "flyer.pdf"), (b"<svg onload=alert(1)>", "bild.png")],
)
def test_files_are_checked_by_content_not_name(app, data, name):
    event = make_event()
    with pytest.raises(files.FileRejected):
        files.store(event, FileKind.ATTACHMENT, data, name)


def test_cancelled_event_says_so_and_takes_no_sign_ups(client, app):
    make_event(status=EventStatus.CANCELLED)
    page = text_of(client.get("/events/werkstatt", headers=DE))
    assert "Diese Veranstaltung wurde abgesagt." in page
    assert 'class="signup-form"' not in page
    response = client.post("/events/werkstatt", data=form_data(), headers=DE)
    assert response.status_code == 422
    assert registrations() == []


def test_draft_and_unknown_events_are_404_pages(client, app):
    make_event(status=EventStatus.DRAFT)
    for url in (
        "/events/werkstatt",
        "/events/nothing",
        "/events/nothing.ics",
        "/events/werkstatt/embed",
    ):
        response = client.get(url, headers=DE)
        assert response.status_code == 404
        assert "Seite nicht gefunden" in text_of(response)
        assert "Traceback" not in text_of(response)


def test_sign_up_redirects_to_a_confirmation_page(client, app):
    make_event()
    response = client.post("/events/werkstatt", data=form_data(), headers=DE)
    assert response.status_code == 302
    page = text_of(client.get(response.headers["Location"], headers=DE))
    assert "Vielen Dank für Ihre Anmeldung" in page
    assert "Ihr Platz ist bestätigt." in page
    assert "juergen1@example.org" in page
    assert "/calendar.ics" in page
    (registration,) = registrations()
    assert (registration.first_name, registration.last_name) == ("Jürgen", "Weiß1")
    assert registration.language == "de"
    assert registration.status == RegistrationStatus.CONFIRMED


def test_full_event_button_says_waiting_list_and_thanks_shows_the_position(client, app):
    make_event(capacity_on_site=1)
    client.post("/events/werkstatt", data=form_data(1))
    page = text_of(client.get("/events/werkstatt", headers=DE))
    assert "Auf die Warteliste" in page
    response = client.post("/events/werkstatt", data=form_data(2), headers=DE)
    thanks = text_of(client.get(response.headers["Location"], headers=DE))
    assert "Sie stehen auf der Warteliste, Platz 1." in thanks


def test_thanks_page_needs_a_valid_ticket(client, app):
    make_event()
    response = client.get("/events/werkstatt/thanks?ticket=forged")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/events/werkstatt")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"first_name": ""}, "first_name", "Bitte geben Sie Ihren Vornamen ein."),
        ({"last_name": "   "}, "last_name", "Bitte geben Sie Ihren Nachnamen ein."),
        ({"email": "kein-at-zeichen"}, "email", "Bitte geben Sie eine gültige E-Mail-Adresse ein"),
        ({"email": ""}, "email", "Bitte geben Sie Ihre E-Mail-Adresse ein."),
        (
            {"privacy_consent": None},
            "privacy_consent",
            "Bitte stimmen Sie der Datenschutzerklärung zu.",
        ),
        ({"organisation": "x" * 201}, "organisation", "höchstens 200 Zeichen"),
        ({"first_name": "Null\x00"}, "first_name", "Steuerzeichen"),
    ],
)
def test_form_errors_appear_next_to_the_field_and_keep_the_values(
    client, app, overrides, field, message
):
    make_event()
    response = client.post("/events/werkstatt", data=form_data(**overrides), headers=DE)
    page = text_of(response)
    assert response.status_code == 422
    error = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', page, re.S)
    assert error and message in error.group(1)
    assert f'aria-describedby="{field}-error"' in page or f"{field}-error" in page
    assert "Bitte prüfen Sie Ihre Angaben" in page  # the summary at the top
    if field != "last_name":
        assert 'value="Weiß1"' in page  # entered values are kept
    assert registrations() == []


def test_form_errors_in_english(client, app):
    make_event()
    page = text_of(client.post("/events/werkstatt", data=form_data(first_name=""), headers=EN))
    assert "Please enter your first name." in page


def test_duplicate_sign_up_is_explained_on_the_form(client, app):
    make_event()
    client.post("/events/werkstatt", data=form_data(email="Anna@example.org"))
    page = text_of(
        client.post("/events/werkstatt", data=form_data(email="anna@EXAMPLE.org"), headers=DE)
    )
    assert "bereits angemeldet" in page
    assert len(registrations()) == 1


def test_full_event_without_waiting_list_is_explained(client, app):
    make_event(capacity_on_site=1, waitlist_enabled=False)
    client.post("/events/werkstatt", data=form_data(1))
    page = text_of(client.post("/events/werkstatt", data=form_data(2), headers=DE))
    assert "ausgebucht" in page
    assert len(registrations()) == 1


def test_honeypot_stores_nothing(client, app):
    make_event()
    response = client.post("/events/werkstatt", data=form_data(homepage="http://spam.example"))
    assert response.status_code == 422
    assert registrations() == []


def test_hybrid_form_asks_for_attendance_with_seats_per_mode(client, app):
    make_event(format=EventFormat.HYBRID, capacity_on_site=0, capacity_online=30)
    page = text_of(client.get("/events/werkstatt", headers=DE))
    assert "Vor Ort (ausgebucht – Warteliste)" in page
    assert "Online (noch 30 Plätze frei)" in page
    missing = client.post("/events/werkstatt", data=form_data(), headers=DE)
    assert "Bitte wählen Sie, wie Sie teilnehmen." in text_of(missing)
    client.post("/events/werkstatt", data=form_data(attendance="online"))
    assert registrations()[0].attendance == "online"


def add_questions(event) -> list[Question]:
    questions = [
        Question(key="walk", label="Stadtspaziergang?", kind=QuestionKind.YES_NO, required=True, position=0),
        Question(key="food", label="Verpflegung", kind=QuestionKind.SINGLE_CHOICE, required=True,
                 options=["vegetarisch", "vegan"], position=1),
        Question(key="topics", label="Themen", kind=QuestionKind.MULTIPLE_CHOICE, required=False,
                 options=["Wohnen", "Mobilität", "Arbeit"], position=2),
        Question(key="note", label="Anmerkungen", kind=QuestionKind.TEXT, required=False, position=3),
    ]  # fmt: skip
    event.questions.extend(questions)
    db.session.commit()
    return questions


def test_custom_questions_are_asked_validated_and_stored(client, app):
    event = make_event()
    add_questions(event)
    page = text_of(client.get("/events/werkstatt", headers=DE))
    assert "Stadtspaziergang?" in page and "vegetarisch" in page and 'type="checkbox"' in page

    missing = client.post("/events/werkstatt", data=form_data(), headers=DE)
    assert missing.status_code == 422
    assert 'id="q_walk-error"' in text_of(missing) and 'id="q_food-error"' in text_of(missing)
    assert "Bitte beantworten Sie diese Frage." in text_of(missing)

    bad_choice = client.post(
        "/events/werkstatt", data=form_data(q_walk="yes", q_food="Schnitzel"), headers=DE
    )
    assert "Bitte wählen Sie eine der Möglichkeiten." in text_of(bad_choice)
    assert registrations() == []

    ok = client.post(
        "/events/werkstatt",
        data=form_data(
            q_walk="no", q_food="vegan", q_topics=["Arbeit", "Wohnen"], q_note=" Rollstuhl "
        ),
    )
    assert ok.status_code == 302
    answers = {a.question.key: a.value for a in db.session.scalars(select(Answer))}
    assert answers == {
        "walk": False,
        "food": "vegan",
        "topics": ["Wohnen", "Arbeit"],
        "note": "Rollstuhl",
    }


def test_api_answers_use_the_same_rules(client, app):
    event = make_event()
    add_questions(event)
    body = {"email": "a@example.org", "first_name": "A", "last_name": "B", "privacy_consent": True}
    missing = client.post("/api/v1/events/werkstatt/registrations", json=body)
    assert missing.status_code == 422
    assert set(missing.json["errors"]) == {"answers.walk", "answers.food"}
    unknown = client.post(
        "/api/v1/events/werkstatt/registrations",
        json={**body, "answers": {"walk": True, "food": "vegan", "colour": "blue"}},
    )
    assert "answers.colour" in unknown.json["errors"]
    wrong_type = client.post(
        "/api/v1/events/werkstatt/registrations", json={**body, "answers": [1]}
    )
    assert "answers" in wrong_type.json["errors"]
    ok = client.post(
        "/api/v1/events/werkstatt/registrations",
        json={**body, "answers": {"walk": True, "food": "vegan", "topics": ["Mobilität"]}},
    )
    assert ok.status_code == 201
    detail = client.get("/api/v1/events/werkstatt").json
    assert [q["key"] for q in detail["questions"]] == ["walk", "food", "topics", "note"]


def form_token_of(page: str) -> str:
    return re.search(r'name="form_token" value="([^"]+)"', page).group(1)


def expired_form_token(app, monkeypatch, slug: str = "werkstatt") -> str:
    """A token for ``slug`` signed longer ago than the form accepts."""
    from itsdangerous.timed import TimestampSigner

    from registration.public import views

    issued = int(time.time()) - views.FORM_TOKEN_MAX_AGE - 60
    with monkeypatch.context() as patch, app.test_request_context():
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: issued)
        event = db.session.scalars(select(Event).where(Event.slug == slug)).one()
        return views._form_token(event)


def test_the_form_carries_a_signed_token_instead_of_a_session(client, app):
    app.config["WTF_CSRF_ENABLED"] = True
    make_event()
    page = client.get("/events/werkstatt", headers=DE)
    assert 'name="csrf_token"' not in text_of(page)
    assert "Set-Cookie" not in page.headers  # showing the page needs no session
    token = form_token_of(text_of(page))
    accepted = client.post("/events/werkstatt", data=form_data(form_token=token), headers=DE)
    assert accepted.status_code == 302
    assert len(registrations()) == 1


@pytest.mark.parametrize("kind", ["missing", "forged", "expired", "other event's"])
def test_a_bad_form_token_says_expired_and_keeps_the_values(client, app, monkeypatch, kind):
    app.config["WTF_CSRF_ENABLED"] = True
    make_event()
    make_event(slug="andere", title="Andere Werkstatt")
    db.session.commit()
    other = form_token_of(text_of(client.get("/events/andere")))
    token = {
        "missing": None,
        "forged": "werkstatt.forged.signature",
        "expired": expired_form_token(app, monkeypatch),
        "other event's": other,
    }[kind]
    rejected = client.post("/events/werkstatt", data=form_data(form_token=token), headers=DE)
    assert rejected.status_code == 422
    page = text_of(rejected)
    assert "Das Formular ist abgelaufen" in page
    assert 'value="juergen1@example.org"' in page  # what was typed is still there
    assert registrations() == []
    # The page answered with a fresh token: sending again works.
    again = client.post(
        "/events/werkstatt", data=form_data(form_token=form_token_of(page)), headers=DE
    )
    assert again.status_code == 302
    assert len(registrations()) == 1


def sign_up(client, n=1, **overrides) -> str:
    """Sign up through the form; return the manage token."""
    response = client.post("/events/werkstatt", data=form_data(n, **overrides))
    assert response.status_code == 302, text_of(response)
    page = text_of(client.get(response.headers["Location"]))
    return re.search(r'href="/manage/([A-Za-z0-9_-]{43})"', page).group(1)


def test_manage_page_shows_the_registration(client, app):
    event = make_event()
    add_questions(event)
    token = sign_up(client, q_walk="yes", q_food="vegan", q_topics=["Wohnen"])
    page = text_of(client.get(f"/manage/{token}", headers=DE))
    assert "Ihre Anmeldung" in page
    assert "Jürgen Weiß1" in page and "juergen1@example.org" in page
    assert "Stadtspaziergang?" in page and "Ja" in page and "vegan" in page
    assert 'name="robots" content="noindex"' in page


def test_cancel_needs_a_confirmation_step_and_promotes(client, app):
    make_event(capacity_on_site=1)
    token = sign_up(client, 1)
    waiting_token = sign_up(client, 2)
    confirm = client.get(f"/manage/{token}/cancel", headers=DE)
    assert "Möchten Sie die Anmeldung von Jürgen Weiß1 wirklich stornieren?" in text_of(confirm)
    assert registrations()[0].status == RegistrationStatus.CONFIRMED  # GET changes nothing
    done = client.post(f"/manage/{token}/cancel", headers=DE)
    assert done.status_code == 302
    page = text_of(client.get(f"/manage/{token}", headers=DE))
    assert "Ihre Anmeldung wurde storniert." in page
    assert [r.status for r in registrations()] == ["cancelled", "confirmed"]
    assert "Ihr Platz ist bestätigt." in text_of(client.get(f"/manage/{waiting_token}", headers=DE))


def test_switch_attendance_with_free_seats(client, app):
    make_event(format=EventFormat.HYBRID, capacity_on_site=5, capacity_online=5)
    token = sign_up(client, attendance="on_site")
    response = client.post(f"/manage/{token}/attendance", data={"attendance": "online"}, headers=DE)
    assert response.status_code == 302
    assert "Ihre Teilnahmeart wurde geändert." in text_of(
        client.get(f"/manage/{token}", headers=DE)
    )
    assert registrations()[0].attendance == "online"


def test_switch_to_a_full_mode_asks_before_the_waiting_list(client, app):
    make_event(format=EventFormat.HYBRID, capacity_on_site=5, capacity_online=1)
    sign_up(client, 1, attendance="online")
    token = sign_up(client, 2, attendance="on_site")
    asked = client.post(f"/manage/{token}/attendance", data={"attendance": "online"}, headers=DE)
    assert asked.status_code == 409
    assert "Warteliste" in text_of(asked) and 'name="accept_waitlist"' in text_of(asked)
    assert registrations()[1].status == "confirmed"
    agreed = client.post(
        f"/manage/{token}/attendance", data={"attendance": "online", "accept_waitlist": "y"}
    )
    assert agreed.status_code == 302
    assert (registrations()[1].attendance, registrations()[1].status) == ("online", "waitlisted")


@pytest.mark.parametrize("token", ["x", "A" * 43, "%3Cscript%3E", "a" * 300])
def test_unknown_manage_token_is_a_friendly_404(client, app, token):
    for url in (f"/manage/{token}", f"/manage/{token}/cancel", f"/manage/{token}/calendar.ics"):
        response = client.get(url, headers=DE)
        assert response.status_code == 404
        assert "Seite nicht gefunden" in text_of(response)


def parse_ics(response) -> Calendar:
    assert response.mimetype == "text/calendar"
    return Calendar.from_ical(response.data)


def test_event_calendar_file_is_valid_and_in_the_right_zone(client, app):
    make_event(
        starts_at=WEDNESDAY, ends_at=WEDNESDAY + timedelta(hours=5, minutes=30),
        venue_name="Bürgerzentrum", venue_address="Markt 1\n04916 Herzberg (Elster)",
    )  # fmt: skip
    calendar = parse_ics(client.get("/events/werkstatt.ics"))
    assert str(calendar["method"]) == "PUBLISH"
    (vevent,) = calendar.walk("VEVENT")
    start = vevent.decoded("dtstart")
    assert str(start.tzinfo) == "Europe/Berlin" and (start.hour, start.minute) == (11, 0)
    assert start == WEDNESDAY
    assert vevent.decoded("dtend") == WEDNESDAY + timedelta(hours=5, minutes=30)
    assert str(vevent["location"]) == "Bürgerzentrum, Markt 1, 04916 Herzberg (Elster)"
    assert str(vevent["url"]) == "http://localhost/events/werkstatt"
    assert calendar.walk("VTIMEZONE")[0]["tzid"] == "Europe/Berlin"


def test_online_event_calendar_says_online(client, app):
    make_event(format=EventFormat.ONLINE, capacity_online=None, venue_name="")
    (vevent,) = parse_ics(client.get("/events/werkstatt.ics")).walk("VEVENT")
    assert str(vevent["location"]) == "Online"


def test_participants_calendar_follows_their_attendance(client, app):
    make_event(format=EventFormat.HYBRID, capacity_online=5, venue_name="Volkshaus Jena")
    token = sign_up(client, attendance="online")
    (vevent,) = parse_ics(client.get(f"/manage/{token}/calendar.ics")).walk("VEVENT")
    assert str(vevent["location"]) == "Online"
    assert str(vevent["uid"]).startswith(f"registration-{registrations()[0].id}@")


def test_calendar_feed_lists_upcoming_events(client, app):
    make_event(slug="a", title="Erste")
    make_event(slug="b", title="Zweite")
    make_event(slug="c", title="Entwurf", status=EventStatus.DRAFT)
    summaries = {str(e["summary"]) for e in parse_ics(client.get("/events.ics")).walk("VEVENT")}
    assert summaries == {"Erste", "Zweite"}


def test_pages_refuse_framing_except_the_embed(client, app):
    app.config["EMBED_ALLOWED_ORIGINS"] = (
        "https://www.jena.de, https://buendnis.example.org ; script-src *"
    )
    make_event()
    page = client.get("/events/werkstatt")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    embed = client.get("/events/werkstatt/embed")
    policy = embed.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://www.jena.de https://buendnis.example.org" in policy
    assert "script-src *" not in policy  # a malformed setting cannot inject directives
    assert "X-Frame-Options" not in embed.headers
    assert 'class="site-header"' not in text_of(embed)  # the form alone


def test_embed_form_signs_up_with_its_own_token(client, app):
    app.config["WTF_CSRF_ENABLED"] = True
    make_event()
    page = text_of(client.get("/events/werkstatt/embed"))
    token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
    forged = client.post("/events/werkstatt/embed", data=form_data(form_token="forged"), headers=DE)
    assert forged.status_code == 422 and "abgelaufen" in text_of(forged)
    ok = client.post("/events/werkstatt/embed", data=form_data(form_token=token), headers=DE)
    assert ok.status_code == 302 and "/embed/thanks" in ok.headers["Location"]
    thanks = client.get(ok.headers["Location"], headers=DE)
    assert "Vielen Dank" in text_of(thanks)
    assert "frame-ancestors 'self'" in thanks.headers["Content-Security-Policy"]
    assert len(registrations()) == 1


XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[klick](javascript:alert(1))",
    '<a href="javascript:alert(1)">x</a>',
    "<svg/onload=alert(1)>",
    '<iframe src="https://evil.example"></iframe>',
    '<a href="https://ok.example" onclick="alert(1)">ok</a>',
    '<div style="background:url(javascript:alert(1))">x</div>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<object data="data:text/html,<script>alert(1)</script>"></object>',
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    '<form action="https://evil.example"><input name=x></form>',
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<a href="&#106;avascript:alert(1)">x</a>',
    "<details open ontoggle=alert(1)>",
    "<<script>script>alert(1)<</script>/script>",
]


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_description_is_sanitised(client, app, payload):
    make_event(description=f"Text davor\n\n{payload}\n\nText danach")
    page = text_of(client.get("/events/werkstatt"))
    description = page.split('<div class="description">', 1)[1].split("</div>", 1)[0]
    lowered = description.lower()
    for forbidden in ("<script", "onerror", "onload", "onclick", "ontoggle", "javascript:", "<iframe",
                      "<object", "<form", "<base", "<meta", "<style", "style=", "data:text", "<svg"):  # fmt: skip
        assert forbidden not in lowered, (forbidden, description)
    assert "Text davor" in description


def test_safe_links_survive_sanitising(client, app):
    make_event(description="[Programm](https://example.org/programm) und <mailto:info@example.org>")
    page = text_of(client.get("/events/werkstatt"))
    assert 'href="https://example.org/programm"' in page
    assert 'rel="noopener noreferrer nofollow"' in page
    assert "mailto:info@example.org" in page


def test_error_pages_have_the_site_look(client, app):
    @app.get("/test-forbidden")
    def forbidden():
        from flask import abort

        abort(403)

    response = client.get("/test-forbidden", headers=DE)
    assert response.status_code == 403
    assert "Zugriff verweigert" in text_of(response) and 'class="site-header"' in text_of(response)


def test_500_page_without_stack_trace(database_url, tmp_path, monkeypatch):
    from .conftest import make_test_app

    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "i"))
    app = make_test_app(database_url, PROPAGATE_EXCEPTIONS=False)

    @app.get("/test-boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/test-boom", headers=DE)
    assert response.status_code == 500
    assert "Etwas ist schiefgelaufen" in text_of(response)
    assert "secret internals" not in text_of(response)
    with app.app_context():
        db.engine.dispose()


def test_privacy_notice_is_linked_from_the_form(client, app):
    make_event()
    assert 'href="/datenschutz"' in text_of(client.get("/events/werkstatt"))
    assert client.get("/datenschutz").status_code == 200


def test_nothing_half_written_when_the_service_refuses(client, app):
    make_event(capacity_on_site=0, waitlist_enabled=False)
    client.post("/events/werkstatt", data=form_data())
    assert db.session.scalar(select(func.count()).select_from(Registration)) == 0
    assert db.session.scalar(select(func.count()).select_from(Answer)) == 0


def test_manage_token_from_service_opens_the_page(client, app):
    event = make_event()
    result = signup.register(
        event, signup.SignupData("x@example.org", "X", "Y", privacy_consent=True)
    )
    db.session.commit()
    assert client.get(f"/manage/{result.manage_token}").status_code == 200
