"""GDPR in the back office and on the public site: a participant's data as JSON, erasure on
request (administrators only, audit-logged) and the privacy notice the organisation writes."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from registration.extensions import db
from registration.models import (
    AuditEntry,
    OutboxMessage,
    OutboxStatus,
    Question,
    QuestionKind,
    Registration,
    RegistrationStatus,
    Setting,
)
from registration.services import outbox, signup

from .conftest import make_event
from .test_admin import login, make_organiser

DE = {"Accept-Language": "de"}
EN = {"Accept-Language": "en"}


def sign_up(event, n: int, **answers) -> Registration:
    result = signup.register(
        event,
        signup.SignupData(
            email=f"person{n}@example.org", first_name="Erika", last_name=f"Muster{n}",
            organisation="Stadt Jena", privacy_consent=True, answers=answers,
        ),
    )  # fmt: skip
    db.session.commit()
    return result.registration


@pytest.fixture
def full_event(app):
    """One seat, taken by person 1 (with answers), person 2 waiting; an organiser and an admin."""
    event = make_event(slug="werkstatt", capacity_on_site=1)
    for position, (key, label, kind, options) in enumerate(
        [("notes", "Anmerkungen", QuestionKind.TEXT, []),
         ("lunch", "Mittagessen", QuestionKind.SINGLE_CHOICE, ["vegan", "mit Fleisch"])]
    ):  # fmt: skip
        db.session.add(Question(event_id=event.id, key=key, position=position, label=label,
                                kind=kind, options=options))  # fmt: skip
    organiser = make_organiser("orga@example.org")
    make_organiser("admin@example.org", admin=True)
    event.organisers.append(organiser)
    db.session.commit()
    first = sign_up(event, 1, notes="Bitte vegane Kekse", lunch="vegan")
    second = sign_up(event, 2)
    return {"event": event, "first": first.id, "second": second.id}


def url(full_event, name: str, which: str = "first") -> str:
    return f"/admin/events/werkstatt/participants/{full_event[which]}/{name}"


# --- export --------------------------------------------------------------------------------------


def test_admins_download_everything_stored_about_a_person(client, full_event):
    outbox.enqueue("message", db.session.get(Registration, full_event["first"]),
                   payload={"subject": "Anreise", "body": "Bitte Bus nehmen"})  # fmt: skip
    db.session.commit()
    login(client, "admin@example.org")
    response = client.get(url(full_event, "export.json"))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Cache-Control"] == "no-store"
    data = json.loads(response.get_data(as_text=True))
    person = data["registration"]
    assert (person["first_name"], person["last_name"], person["email"]) == (
        "Erika", "Muster1", "person1@example.org"
    )  # fmt: skip
    assert person["status"] == "confirmed" and person["organisation"] == "Stadt Jena"
    assert data["event"]["slug"] == "werkstatt"
    assert {a["question"]: a["value"] for a in data["answers"]} == {
        "Anmerkungen": "Bitte vegane Kekse", "Mittagessen": "vegan"
    }  # fmt: skip
    kinds = {e["kind"]: e for e in data["emails"]}
    assert set(kinds) == {"confirmation", "message"}
    assert kinds["message"]["subject"] == "Anreise" and kinds["confirmation"]["status"] == "pending"
    db.session.expire_all()
    logged = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "participant.export")
    ).one()
    assert logged.actor_email == "admin@example.org"
    assert logged.subject == f"registration:{full_event['first']}"
    again = json.loads(client.get(url(full_event, "export.json")).get_data(as_text=True))
    assert [e["action"] for e in again["audit_log"]] == ["participant.export"]


def test_organisers_of_the_event_get_404_for_export_and_erasure(client, full_event):
    login(client, "orga@example.org")
    page = client.get(f"/admin/events/werkstatt/participants/{full_event['first']}", headers=DE)
    assert page.status_code == 200
    assert "export.json" not in page.get_data(as_text=True)
    assert "/erase" not in page.get_data(as_text=True)
    assert client.get(url(full_event, "export.json")).status_code == 404
    assert client.get(url(full_event, "erase")).status_code == 404
    assert client.post(url(full_event, "erase"), data={"confirm": "y"}).status_code == 404
    db.session.expire_all()
    assert db.session.get(Registration, full_event["first"]).anonymised_at is None
    assert client.get("/admin/settings").status_code == 404
    assert 'href="/admin/settings"' not in page.get_data(as_text=True)


def test_admins_see_the_buttons(client, full_event):
    login(client, "admin@example.org")
    page = client.get(f"/admin/events/werkstatt/participants/{full_event['first']}", headers=DE)
    text = page.get_data(as_text=True)
    assert url(full_event, "export.json") in text and url(full_event, "erase") in text
    assert 'href="/admin/settings"' in text


def test_not_logged_in_is_sent_to_the_login(client, full_event):
    for method, target in (("GET", url(full_event, "export.json")), ("POST", url(full_event, "erase")),
                           ("GET", "/admin/settings"), ("POST", "/admin/settings")):  # fmt: skip
        response = client.open(target, method=method)
        assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


# --- erasure -------------------------------------------------------------------------------------


def test_erasure_needs_confirmation_frees_the_seat_and_sends_no_cancellation(client, full_event):
    login(client, "admin@example.org")
    page = client.get(url(full_event, "erase"), headers=DE)
    assert page.status_code == 200
    assert "keine Stornierungs-E-Mail" in page.get_data(as_text=True)
    unconfirmed = client.post(url(full_event, "erase"), data={}, headers=DE)
    assert unconfirmed.status_code == 422
    assert "Bitte bestätigen Sie die Löschung." in unconfirmed.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Registration, full_event["first"]).anonymised_at is None

    done = client.post(url(full_event, "erase"), data={"confirm": "y"}, headers=DE)
    assert done.status_code == 302
    db.session.expire_all()
    erased = db.session.get(Registration, full_event["first"])
    assert erased.anonymised_at is not None and erased.status == RegistrationStatus.CANCELLED
    assert (erased.first_name, erased.last_name, erased.email) == ("", "", "")
    assert [a.question.key for a in erased.answers] == ["lunch"]
    promoted = db.session.get(Registration, full_event["second"])
    assert promoted.status == RegistrationStatus.CONFIRMED  # the waiting list moved up
    mails = {
        (m.registration_id, m.kind): m.status for m in db.session.scalars(select(OutboxMessage))
    }
    assert mails[(promoted.id, "promoted")] == OutboxStatus.PENDING
    assert mails[(erased.id, "cancellation")] == OutboxStatus.SKIPPED  # never sent
    assert mails[(erased.id, "confirmation")] == OutboxStatus.SKIPPED
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "participant.erase"))
    entry = entry.one()
    assert entry.actor_email == "admin@example.org"
    assert entry.details == {"cancelled": True, "promoted": 1}

    shown = client.get(f"/admin/events/werkstatt/participants/{erased.id}", headers=DE)
    text = shown.get_data(as_text=True)
    assert "Anonymisiert" in text and "Muster1" not in text and "person1@" not in text
    leftover = client.get(url(full_event, "export.json")).get_data(as_text=True)
    assert "person1" not in leftover and "Muster1" not in leftover and "Kekse" not in leftover
    assert json.loads(leftover)["answers"][0]["value"] == "vegan"
    again = client.post(url(full_event, "erase"), data={"confirm": "y"}, headers=DE)
    assert again.status_code == 302
    assert db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "participant.erase")
    ).all() == [entry]


def test_after_the_event_erasure_keeps_the_status_for_the_statistics(client, full_event, clock):
    clock.now = db.session.get(Registration, full_event["first"]).event.ends_at + timedelta(days=1)
    login(client, "admin@example.org")
    page = client.get(url(full_event, "erase"), headers=DE).get_data(as_text=True)
    assert "keine Stornierungs-E-Mail" not in page
    client.post(url(full_event, "erase"), data={"confirm": "y"})
    db.session.expire_all()
    erased = db.session.get(Registration, full_event["first"])
    assert erased.status == RegistrationStatus.CONFIRMED and erased.anonymised_at == clock.now
    assert db.session.get(Registration, full_event["second"]).status == "waitlisted"


def test_erasure_form_needs_the_csrf_token(app, client, full_event):
    app.config["WTF_CSRF_ENABLED"] = True
    login_page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login_page).group(1)
    client.post("/admin/login", data={"email": "admin@example.org", "password": "richtig-geheim-1",
                                      "csrf_token": token})  # fmt: skip
    forged = client.post(url(full_event, "erase"), data={"confirm": "y"})
    assert forged.status_code == 400
    db.session.expire_all()
    assert db.session.get(Registration, full_event["first"]).anonymised_at is None
    page = client.get(url(full_event, "erase")).get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    assert client.post(url(full_event, "erase"), data={"confirm": "y", "csrf_token": token}
                       ).status_code == 302  # fmt: skip
    db.session.expire_all()
    assert db.session.get(Registration, full_event["first"]).anonymised_at is not None


# --- the privacy notice --------------------------------------------------------------------------

NOTICE_DE = "# Datenschutz\n\nWir speichern **nur** das Nötige.<script>alert(1)</script>"
NOTICE_EN = "We store [only what is needed](https://example.org/x).\n\n<img src=x onerror=alert(1)>"


def save_settings(client, **values):
    data = {"organisation_name": "", "privacy_contact": "", "privacy_notice_de": "",
            "privacy_notice_en": ""}  # fmt: skip
    data.update(values)
    return client.post("/admin/settings", data=data, headers=DE)


def test_admins_set_the_privacy_notice_and_visitors_read_it_in_their_language(client, full_event):
    default = client.get("/datenschutz", headers=DE).get_data(as_text=True)
    assert "noch nicht veröffentlicht" in default
    assert "has not published" in client.get("/datenschutz", headers=EN).get_data(as_text=True)

    login(client, "admin@example.org")
    form = client.get("/admin/settings", headers=DE)
    assert form.status_code == 200 and "Datenschutzerklärung auf Deutsch" in form.get_data(
        as_text=True
    )
    saved = save_settings(client, organisation_name="Stadt Jena", privacy_contact="Am Anger 15\n07743 Jena",
                          privacy_notice_de=NOTICE_DE, privacy_notice_en=NOTICE_EN)  # fmt: skip
    assert saved.status_code == 302
    assert "gespeichert" in client.get("/admin/settings", headers=DE).get_data(as_text=True)
    stored = dict(db.session.execute(select(Setting.key, Setting.value)).all())
    assert stored["privacy_notice_de"] == NOTICE_DE
    logged = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "settings.update"))
    assert set(logged.one().details["keys"]) == {
        "privacy_notice_de", "privacy_notice_en", "organisation_name", "privacy_contact"
    }  # fmt: skip
    client.post("/admin/logout")

    german = client.get("/datenschutz", headers=DE).get_data(as_text=True)
    assert "<h2>Datenschutz</h2>" in german and "<strong>nur</strong>" in german
    assert "<script>" not in german.split("</footer>")[0] and "alert(1)" not in german
    assert "Stadt Jena" in german and "Am Anger 15<br>07743 Jena" in german
    assert "noch nicht veröffentlicht" not in german
    english = client.get("/datenschutz", headers=EN).get_data(as_text=True)
    assert 'href="https://example.org/x"' in english and "only what is needed" in english
    assert "onerror" not in english and "<img" not in english
    assert "<strong>nur</strong>" not in english
    assert client.get("/datenschutz?lang=en").get_data(as_text=True).count("only what is") == 1


def test_a_notice_in_one_language_is_shown_in_both(client, full_event):
    login(client, "admin@example.org")
    save_settings(client, privacy_notice_de="Nur auf Deutsch.")
    english = client.get("/datenschutz", headers=EN).get_data(as_text=True)
    assert 'lang="de"' in english and "Nur auf Deutsch." in english
    assert "has not published" not in english
    save_settings(client, privacy_notice_en="English only.")
    german = client.get("/datenschutz", headers=DE).get_data(as_text=True)
    assert '<div class="description" lang="en">' in german and "English only." in german


def test_settings_are_admin_only_and_checked(app, client, full_event):
    login(client, "orga@example.org")
    assert client.get("/admin/settings").status_code == 404
    assert save_settings(client, privacy_notice_de="Gekapert").status_code == 404
    assert db.session.get(Setting, "privacy_notice_de") is None
    client.post("/admin/logout")
    login(client, "admin@example.org")
    bad = save_settings(client, privacy_notice_de="x" * 50_001, organisation_name="A\x00B")
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert "Steuerzeichen" in text and "50000" in text.replace(".", "")
    assert db.session.get(Setting, "privacy_notice_de") is None


def test_settings_form_needs_the_csrf_token(app, client, full_event):
    app.config["WTF_CSRF_ENABLED"] = True
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    client.post("/admin/login", data={"email": "admin@example.org", "password": "richtig-geheim-1",
                                      "csrf_token": token})  # fmt: skip
    forged = save_settings(client, privacy_notice_de="Gefälscht")
    assert forged.status_code == 400  # CSRFProtect refuses it before the view
    assert db.session.get(Setting, "privacy_notice_de") is None
    form = client.get("/admin/settings").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form).group(1)
    assert save_settings(client, privacy_notice_de="Echt", csrf_token=token).status_code == 302
    assert db.session.get(Setting, "privacy_notice_de").value == "Echt"


def test_the_notice_is_linked_from_the_footer_and_the_consent(client, full_event):
    event_page = client.get("/events/werkstatt", headers=DE).get_data(as_text=True)
    form = event_page.split('class="signup-form"')[1].split("</form>")[0]
    assert 'href="/datenschutz"' in form
    footer = event_page.split('class="site-footer"')[1]
    assert 'href="/datenschutz"' in footer
    alias = client.get("/privacy")
    assert alias.status_code == 301 and alias.headers["Location"].endswith("/datenschutz")


def test_an_erased_person_cannot_be_edited(client, full_event):
    login(client, "admin@example.org")
    client.post(url(full_event, "erase"), data={"confirm": "y"})
    edit = f"/admin/events/werkstatt/participants/{full_event['first']}/edit"
    for response in (client.get(edit, headers=DE),
                     client.post(edit, data={"email": "neu@example.org", "first_name": "Neu",
                                             "last_name": "Person"}, headers=DE)):  # fmt: skip
        assert response.status_code == 302
        assert response.headers["Location"].endswith(f"/participants/{full_event['first']}")
    db.session.expire_all()
    erased = db.session.get(Registration, full_event["first"])
    assert (erased.email, erased.first_name) == ("", "")
