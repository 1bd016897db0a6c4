"""A participant's way through the pages in a real browser: sign up, confirmation, manage,
cancel; with and without JavaScript; accessibility (axe, WCAG 2.1 A/AA) and screenshots of each
page at phone and desktop width, in German and English."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from registration.extensions import db
from registration.models import EventFormat, Question, QuestionKind, Registration

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from .conftest import LiveServer

LABELS = {
    "de": {
        "first": "Vorname",
        "last": "Nachname",
        "email": "E-Mail-Adresse",
        "consent": "Ich bin damit einverstanden",
        "submit": "Anmelden",
        "yes": "Ja",
        "walk": "Stadtspaziergang?",
        "manage": "Anmeldung verwalten",
    },
    "en": {
        "first": "First name",
        "last": "Last name",
        "email": "Email address",
        "consent": "I agree that my details",
        "submit": "Sign up",
        "yes": "Yes",
        "walk": "Stadtspaziergang?",
        "manage": "Manage your registration",
    },
}


@pytest.fixture
def server(live_server: LiveServer) -> LiveServer:
    """A published workshop with a required yes/no question, like the Herzberg Werkstatt."""
    event = live_server.make_event(
        slug="werkstatt-21",
        title="Mobilität, Wohnen und Arbeiten",
        subtitle="21. Werkstatt – Bündnis vor Ort",
        venue_name="Bürgerzentrum",
        venue_address="Markt 1\n04916 Herzberg (Elster)",
        contact_name="Geschäftsstelle",
        contact_email="buendnis@example.org",
        contact_phone="+49 30 1234567",
        description="## Programm\n\n| Zeit | Punkt |\n| --- | --- |\n| 11:00 | Begrüßung |",
        capacity_on_site=30,
    )
    with live_server.app_context():
        db.session.add(
            Question(event_id=event.id, key="walk", label="Stadtspaziergang?",
                     kind=QuestionKind.YES_NO, required=True)
        )  # fmt: skip
        db.session.commit()
    return live_server


def fill_form(page: Page, lang: str = "de", email: str = "erika@example.org") -> None:
    labels = LABELS[lang]
    page.get_by_label(labels["first"]).fill("Erika")
    page.get_by_label(labels["last"]).fill("Müßig")
    page.get_by_label(labels["email"]).fill(email)
    page.get_by_role("group", name=labels["walk"]).get_by_label(labels["yes"], exact=True).check()
    page.get_by_label(labels["consent"]).check()


def registrations(server: LiveServer) -> list[Registration]:
    with server.app_context():
        return list(db.session.scalars(select(Registration).order_by(Registration.id)))


def sign_up_and_cancel(page: Page, server: LiveServer) -> None:
    page.goto("/events/werkstatt-21")
    fill_form(page)
    page.get_by_role("button", name="Anmelden").click()

    assert page.get_by_role("heading", level=1).inner_text() == "Vielen Dank für Ihre Anmeldung"
    assert "Ihr Platz ist bestätigt." in page.content()
    assert "/events/werkstatt-21/thanks" in page.url
    (registration,) = registrations(server)
    assert (registration.first_name, registration.last_name) == ("Erika", "Müßig")

    page.get_by_role("link", name="Anmeldung verwalten").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Ihre Anmeldung"
    assert "Erika Müßig" in page.content() and "erika@example.org" in page.content()

    page.get_by_role("link", name="Anmeldung stornieren").click()
    assert "wirklich stornieren" in page.content()
    assert registrations(server)[0].status == "confirmed"  # the first click only asks
    page.get_by_role("button", name="Ja, Anmeldung stornieren").click()
    assert "Ihre Anmeldung wurde storniert." in page.content()
    assert registrations(server)[0].status == "cancelled"


def test_sign_up_confirm_manage_and_cancel(server: LiveServer, page: Page) -> None:
    sign_up_and_cancel(page, server)


def test_the_same_without_javascript(server: LiveServer, no_js_page: Page) -> None:
    sign_up_and_cancel(no_js_page, server)


def test_errors_next_to_fields_keep_the_values(server: LiveServer, no_js_page: Page) -> None:
    page = no_js_page
    page.goto("/events/werkstatt-21")
    page.get_by_label("Vorname").fill("Erika")
    page.get_by_label("E-Mail-Adresse").fill("keine-adresse")
    page.get_by_role("button", name="Anmelden").click()

    assert page.get_by_label("Vorname").input_value() == "Erika"
    email = page.get_by_label("E-Mail-Adresse")
    assert email.get_attribute("aria-invalid") == "true"
    described = page.locator(f"#{email.get_attribute('aria-describedby')}")
    assert "gültige E-Mail-Adresse" in described.inner_text()
    assert page.get_by_role("alert").get_by_role("link").count() >= 4  # summary links to fields
    assert registrations(server) == []


def test_waiting_list_button_follows_the_chosen_mode(live_server: LiveServer, page: Page) -> None:
    live_server.make_event(
        slug="fachtagung", format=EventFormat.HYBRID, capacity_on_site=0, capacity_online=50
    )
    page.goto("/events/fachtagung")
    button = page.locator("form.signup-form button[type=submit]")
    page.get_by_label("Vor Ort (ausgebucht – Warteliste)").check()
    assert button.inner_text() == "Auf die Warteliste"
    page.get_by_label("Online (noch 50 Plätze frei)").check()
    assert button.inner_text() == "Anmelden"


def test_print_view_drops_navigation_and_form(server: LiveServer, page: Page) -> None:
    page.goto("/events/werkstatt-21")
    page.emulate_media(media="print")
    assert not page.locator(".site-header").is_visible()
    assert not page.locator("#signup").is_visible()
    assert page.get_by_role("heading", level=1).is_visible()
    assert page.get_by_text("Begrüßung").is_visible()


def thanks_and_manage_urls(page: Page, lang: str) -> tuple[str, str]:
    page.goto(f"/events/werkstatt-21?lang={lang}")
    fill_form(page, lang, email=f"a11y-{lang}@example.org")
    page.get_by_role("button", name=LABELS[lang]["submit"]).click()
    thanks = page.url
    manage = page.get_by_role("link", name=LABELS[lang]["manage"]).get_attribute("href")
    return thanks, manage


@pytest.mark.parametrize("lang", ["de", "en"])
def test_pages_are_accessible_with_screenshots(
    server: LiveServer,
    new_page: Callable[..., Page],
    assert_accessible: Callable[..., None],
    screenshot: Callable[[Page, str], Path],
    lang: str,
) -> None:
    locale = "de-DE" if lang == "de" else "en-GB"
    desktop = new_page(locale=locale)
    phone = new_page(locale=locale, phone=True)
    thanks, manage = thanks_and_manage_urls(desktop, lang)

    def form_with_errors(page: Page) -> None:
        page.goto(f"/events/werkstatt-21?lang={lang}")
        page.get_by_role("button", name=LABELS[lang]["submit"]).click()
        assert page.get_by_role("alert").is_visible()

    pages: list[tuple[str, Callable[[Page], object]]] = [
        ("event-list", lambda p: p.goto(f"/?lang={lang}")),
        ("event-page", lambda p: p.goto(f"/events/werkstatt-21?lang={lang}")),
        ("form-errors", form_with_errors),
        ("success", lambda p: p.goto(thanks)),
        ("manage", lambda p: p.goto(f"{manage}?lang={lang}")),
    ]
    for name, open_page in pages:
        for width, current in (("desktop", desktop), ("phone", phone)):
            open_page(current)
            assert current.locator("html").get_attribute("lang") == lang, name
            assert_accessible(current, f"{name} ({lang}, {width})")
            screenshot(current, f"{name}-{lang}-{width}")
