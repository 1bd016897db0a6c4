"""The organisers' way through the back office in a real browser, with axe on every page."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from registration.extensions import db
from registration.models import Organiser
from registration.services import accounts

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from .conftest import LiveServer

PASSWORD = "sehr-geheimes-passwort"


@pytest.fixture
def organiser(live_server: LiveServer) -> str:
    with live_server.app_context():
        account = Organiser(email="orga@example.org")
        accounts.set_password(account, PASSWORD)
        db.session.add(account)
        db.session.commit()
    return "orga@example.org"


def log_in(page: Page, email: str) -> None:
    page.goto("/admin/login")
    page.get_by_label("E-Mail-Adresse").fill(email)
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()
    assert page.get_by_role("heading", name="Ihre Veranstaltungen").is_visible()


def test_create_publish_sign_up_check_in_and_export(
    live_server: LiveServer,
    organiser: str,
    new_page: Callable[..., Page],
    assert_accessible: Callable[..., None],
    screenshot: Callable[[Page, str], Path],
) -> None:
    page = new_page()
    log_in(page, organiser)
    assert_accessible(page, "dashboard")

    page.get_by_role("link", name="Neue Veranstaltung").click()
    assert_accessible(page, "new event form")
    page.get_by_role("textbox", name="Titel (Pflichtfeld)").fill("Werkstatt Mobilität")
    page.get_by_role("textbox", name="Webadresse (Pflichtfeld)").fill("werkstatt-mobilitaet")
    page.get_by_role("group", name="Format").get_by_label("Vor Ort", exact=True).check()
    page.get_by_label("Veröffentlicht").check()
    page.get_by_label("Beginn (Pflichtfeld)").fill("2030-09-18T11:00")
    page.get_by_label("Ende (Pflichtfeld)").fill("2030-09-18T16:30")
    page.get_by_label("Veranstaltungsort").fill("Bürgerzentrum Herzberg")
    page.get_by_label("Plätze vor Ort").fill("30")
    page.get_by_role("button", name="Veranstaltung anlegen").click()
    assert "Die Veranstaltung wurde angelegt." in page.content()
    screenshot(page, "admin-event-form-de-desktop")

    participant = new_page()
    participant.goto("/events/werkstatt-mobilitaet")
    participant.get_by_label("Vorname").fill("Jürgen")
    participant.get_by_label("Nachname").fill("Weiß")
    participant.get_by_label("E-Mail-Adresse").fill("juergen@example.org")
    participant.get_by_label("Ich bin damit einverstanden").check()
    participant.get_by_role("button", name="Anmelden").click()
    assert "Vielen Dank für Ihre Anmeldung" in participant.content()

    page.goto("/admin/")
    page.get_by_role("link", name="Werkstatt Mobilität").click()
    assert "Weiß, Jürgen" in page.content()
    assert_accessible(page, "participants")
    screenshot(page, "admin-participants-de-desktop")

    page.get_by_role("link", name="Check-in").first.click()
    page.get_by_role("button", name="Einchecken Jürgen Weiß").click()
    assert "1 von 1 eingecheckt" in page.content()
    assert_accessible(page, "check-in")
    page.get_by_role("button", name="Rückgängig Jürgen Weiß").click()
    assert "0 von 1 eingecheckt" in page.content()

    page.goto("/admin/events/werkstatt-mobilitaet/participants")
    for name, suffix in [("Excel (.xlsx)", ".xlsx"), ("CSV", ".csv"),
                         ("Unterschriftenliste (PDF)", ".pdf"), ("Namensschilder (PDF)", ".pdf")]:  # fmt: skip
        with page.expect_download() as info:
            page.get_by_role("link", name=name, exact=True).click()
        download = info.value
        assert download.suggested_filename.endswith(suffix)
        data = Path(download.path()).read_bytes()
        assert len(data) > 100
        if suffix == ".csv":
            assert "Weiß" in data.decode("utf-8-sig")
        if name.startswith("Unterschriften"):
            from pypdf import PdfReader

            assert "Weiß" in PdfReader(io.BytesIO(data)).pages[0].extract_text()


def test_back_office_pages_are_accessible_on_a_phone(
    live_server: LiveServer,
    organiser: str,
    new_page: Callable[..., Page],
    assert_accessible: Callable[..., None],
    screenshot: Callable[[Page, str], Path],
) -> None:
    event = live_server.make_event(slug="werkstatt", title="Werkstatt")
    with live_server.app_context():
        from registration.models import Event
        from registration.services import signup

        stored = db.session.get(Event, event.id)
        stored.organisers.append(accounts.find(organiser))
        db.session.commit()
        person = signup.register(stored, signup.SignupData(
            email="weiss@example.org", first_name="Jürgen", last_name="Weiß", privacy_consent=True,
        )).registration  # fmt: skip
        db.session.commit()
        participant = f"/admin/events/werkstatt/participants/{person.id}"
    page = new_page(phone=True)
    page.goto("/admin/login")
    assert_accessible(page, "login")
    log_in(page, organiser)
    with live_server.app_context():
        accounts.find(organiser).is_admin = True  # the accounts and audit pages too
        db.session.commit()
    for name, path in [
        ("admin-dashboard", "/admin/"),
        ("admin-edit", "/admin/events/werkstatt/edit"),
        ("admin-outbox", "/admin/events/werkstatt/outbox"),
        ("admin-password", "/admin/password"),
        ("admin-checkin", "/admin/events/werkstatt/checkin"),
        ("admin-message", "/admin/events/werkstatt/message"),
        ("admin-add-participant", "/admin/events/werkstatt/participants/new"),
        ("admin-audit", "/admin/events/werkstatt/audit"),
        ("admin-accounts", "/admin/accounts"),
        ("admin-forgot-password", "/admin/password/forgot"),
        ("admin-participant", participant),
        ("admin-erase", f"{participant}/erase"),
        ("admin-settings", "/admin/settings"),
        ("privacy-notice", "/datenschutz"),
        ("admin-tokens", "/admin/tokens"),
    ]:
        page.goto(path)
        assert_accessible(page, name)
        screenshot(page, f"{name}-de-phone")
    # A form with its errors shown, too.
    page.goto("/admin/events/werkstatt/message")
    page.get_by_role("button", name="Vorschau").click()
    assert page.get_by_role("alert").is_visible()
    assert_accessible(page, "admin-message-errors")
    # A new API token, shown once in a field to copy from.
    page.goto("/admin/tokens")
    page.locator("#name").fill("Website-Import")
    page.get_by_role("button", name="Token erstellen").click()
    assert page.locator("#new-token").input_value().startswith("wsr_")
    assert_accessible(page, "admin-tokens-created")


def test_questions_editor_and_preview_of_a_draft(
    live_server: LiveServer,
    organiser: str,
    new_page: Callable[..., Page],
    assert_accessible: Callable[..., None],
    screenshot: Callable[[Page, str], Path],
) -> None:
    from registration.models import EventStatus

    event = live_server.make_event(slug="entwurf", title="Werkstatt im Entwurf",
                                   status=EventStatus.DRAFT)  # fmt: skip
    with live_server.app_context():
        from registration.models import Event

        stored = db.session.get(Event, event.id)
        stored.organisers.append(accounts.find(organiser))
        db.session.commit()
    page = new_page(phone=True)
    log_in(page, organiser)
    page.goto("/admin/events/entwurf/edit")
    page.get_by_role("link", name="Fragen im Anmeldeformular").click()
    assert_accessible(page, "questions-empty")

    page.get_by_role("button", name="Frage hinzufügen").click()  # nothing filled in
    assert page.get_by_role("alert").is_visible()
    assert_accessible(page, "questions-errors")
    page.get_by_role("textbox", name="Frage (Pflichtfeld)").fill("Mittagessen")
    page.get_by_label("Eine von mehreren Möglichkeiten").check()
    page.get_by_role("textbox", name="Auswahlmöglichkeiten (eine pro Zeile)").fill(
        "vegetarisch\nvegan"
    )
    page.get_by_label("Eine Antwort ist Pflicht").check()
    page.get_by_role("button", name="Frage hinzufügen").click()
    assert page.get_by_text("Die Frage wurde hinzugefügt.").is_visible()
    page.get_by_role("textbox", name="Frage (Pflichtfeld)").fill("Teilnahme am Stadtrundgang?")
    page.get_by_label("Ja oder nein").check()
    page.get_by_role("button", name="Frage hinzufügen").click()
    page.get_by_role("button", name="Nach oben Teilnahme am Stadtrundgang?").click()
    items = page.locator(".question-list > li strong").all_inner_texts()
    assert items == ["Teilnahme am Stadtrundgang?", "Mittagessen"]
    assert_accessible(page, "questions")
    screenshot(page, "admin-questions-de-phone")

    page.get_by_role("link", name="Bearbeiten Mittagessen").click()
    assert_accessible(page, "question-edit")
    page.go_back()
    page.get_by_role("link", name="Löschen Teilnahme am Stadtrundgang?").click()
    assert_accessible(page, "question-delete")
    page.get_by_role("button", name="Frage löschen").click()
    assert page.get_by_text("Die Frage wurde gelöscht.").is_visible()

    page.get_by_role("link", name="Vorschau").click()
    assert page.get_by_text("Dieser Entwurf ist noch nicht öffentlich.").is_visible()
    assert page.get_by_role("group", name="Mittagessen").is_visible()
    assert page.get_by_role("button", name="Anmelden").is_disabled()
    assert_accessible(page, "preview")
    screenshot(page, "admin-preview-de-phone")
