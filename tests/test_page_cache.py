"""The page cache of the event page for anonymous visitors (registration/public/pagecache.py)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask, template_rendered
from sqlalchemy import text

from registration.extensions import db
from registration.models import EventStatus, Organiser
from registration.public.pagecache import page_cache
from registration.services import accounts

from .conftest import make_event

DE = {"Accept-Language": "de-DE,de;q=0.9"}
EN = {"Accept-Language": "en-GB,en;q=0.9"}
TTL = 5


class FakeClock:
    """The cache's time source, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cache_clock(app: Flask) -> FakeClock:
    app.config["PAGE_CACHE_SECONDS"] = TTL
    clock = FakeClock()
    page_cache(app).clock = clock
    return clock


@contextmanager
def rendered(app: Flask) -> Iterator[list[str]]:
    """The names of the templates rendered inside the block."""
    names: list[str] = []

    def record(_sender: Flask, template: Any, **_extra: Any) -> None:
        names.append(template.name)

    template_rendered.connect(record, app)
    try:
        yield names
    finally:
        template_rendered.disconnect(record, app)


def get(app: Flask, path: str = "/events/werkstatt", **kwargs: Any) -> Any:
    """A GET from a new visitor: a fresh client without cookies."""
    return app.test_client().get(path, **kwargs)


def test_an_anonymous_visitor_gets_the_cached_page_without_a_render(app, cache_clock):
    make_event(title="Werkstatt Wohnen")
    with rendered(app) as names:
        first = get(app, headers=DE)
        second = get(app, headers=DE)
    assert first.status_code == second.status_code == 200
    assert names == ["public/event.html"]  # the second visitor got the stored page
    assert second.get_data() == first.get_data()
    assert "Werkstatt Wohnen" in second.get_data(as_text=True)


def test_no_cookie_and_vary_on_the_event_page(app, cache_clock):
    make_event()
    for response in (get(app, headers=DE), get(app, headers=DE)):  # rendered, then cached
        assert "Set-Cookie" not in response.headers
        assert {"Accept-Language", "Cookie"} <= set(response.vary)


def test_cached_responses_keep_every_security_header(app, cache_clock):
    app.config["EMBED_ALLOWED_ORIGINS"] = "https://www.jena.de"
    make_event()
    get(app, headers=DE)
    get(app, "/events/werkstatt/embed", headers=DE)
    with rendered(app) as names:
        page = get(app, headers=DE)
        embed = get(app, "/events/werkstatt/embed", headers=DE)
        secure = get(app, headers=DE, base_url="https://localhost")
    assert names == []  # all three came from the cache
    for response in (page, embed, secure):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in embed.headers
    assert "frame-ancestors 'self' https://www.jena.de" in embed.headers["Content-Security-Policy"]
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
    assert page.headers["X-Request-ID"] != secure.headers["X-Request-ID"]


def test_german_and_english_visitors_never_get_each_others_page(app, cache_clock):
    make_event()
    with rendered(app) as names:
        german = [get(app, headers=DE) for _ in range(2)]
        english = [get(app, headers=EN) for _ in range(2)]
        german.append(get(app, headers=DE))
    assert names == ["public/event.html"] * 2  # one render per language
    for response in german:
        assert '<html lang="de">' in response.get_data(as_text=True)
        assert "Anmeldung" in response.get_data(as_text=True)
    for response in english:
        assert '<html lang="en">' in response.get_data(as_text=True)
        assert "Registration" in response.get_data(as_text=True)


def test_a_chosen_language_in_the_session_gets_its_own_render(app, cache_clock):
    make_event()
    get(app, headers=DE)  # the German page is cached
    visitor = app.test_client()
    visitor.get("/events/werkstatt?lang=en", headers=DE)  # the language link: remembered
    with rendered(app) as names:
        page = visitor.get("/events/werkstatt", headers=DE)
    assert names == ["public/event.html"]
    assert '<html lang="en">' in page.get_data(as_text=True)


def test_a_flashed_message_is_shown_not_a_cached_page(app, cache_clock):
    make_event()
    get(app, headers=DE)
    visitor = app.test_client()
    with visitor.session_transaction() as session:
        session["_flashes"] = [("success", "Ihre Anmeldung wurde storniert.")]
    with rendered(app) as names:
        page = visitor.get("/events/werkstatt", headers=DE)
    assert names == ["public/event.html"]
    assert "Ihre Anmeldung wurde storniert." in page.get_data(as_text=True)
    # ... and that page, made for one visitor, is not served to the next.
    assert "storniert" not in get(app, headers=DE).get_data(as_text=True)


def test_a_logged_in_organiser_gets_a_fresh_page(app, cache_clock):
    make_event()
    organiser = Organiser(email="orga@example.org")
    accounts.set_password(organiser, "richtig-geheim-1")
    db.session.add(organiser)
    db.session.commit()
    get(app, headers=DE)
    client = app.test_client()
    login = client.post(
        "/admin/login", data={"email": "orga@example.org", "password": "richtig-geheim-1"}
    )
    assert login.status_code == 302
    with rendered(app) as names:
        client.get("/events/werkstatt", headers=DE)
    assert names == ["public/event.html"]


def test_a_query_string_is_never_served_from_the_cache(app, cache_clock):
    make_event()
    get(app, headers=DE)
    with rendered(app) as names:
        get(app, "/events/werkstatt?utm_source=newsletter", headers=DE)
    assert names == ["public/event.html"]


def test_a_change_in_this_process_shows_at_once(app, cache_clock):
    event = make_event(title="Alter Titel")
    assert "Alter Titel" in get(app, headers=DE).get_data(as_text=True)
    event.title = "Neuer Titel"
    db.session.commit()
    assert "Neuer Titel" in get(app, headers=DE).get_data(as_text=True)
    event.status = EventStatus.DRAFT  # unpublished: gone at once
    db.session.commit()
    assert get(app, headers=DE).status_code == 404


def test_a_sign_up_updates_the_seats_on_the_next_view(app, cache_clock):
    make_event(capacity_on_site=1, waitlist_enabled=True)
    assert "noch 1 Platz frei" in get(app, headers=DE).get_data(as_text=True)
    signed_up = app.test_client().post(
        "/events/werkstatt",
        data={"first_name": "Jürgen", "last_name": "Weiß", "email": "jw@example.org",
              "privacy_consent": "y"},
        headers=DE,
    )  # fmt: skip
    assert signed_up.status_code == 302
    page = get(app, headers=DE).get_data(as_text=True)
    assert "noch 1 Platz frei" not in page
    assert "Auf die Warteliste" in page


def test_another_process_change_shows_after_the_ttl(app, cache_clock):
    make_event(title="Alter Titel")
    db.session.commit()
    get(app, headers=DE)
    # Plain SQL changes no ORM object, so nothing tells the cache: as if another process did it.
    db.session.execute(text("UPDATE events SET title = 'Neuer Titel'"))
    db.session.commit()
    cache_clock.now += TTL - 0.5
    assert "Alter Titel" in get(app, headers=DE).get_data(as_text=True)
    cache_clock.now += 1
    assert "Neuer Titel" in get(app, headers=DE).get_data(as_text=True)


def test_the_form_token_in_a_cached_page_signs_up(app, cache_clock):
    app.config["WTF_CSRF_ENABLED"] = True
    make_event()
    get(app, headers=DE)
    cache_clock.now += TTL - 1
    page = get(app, headers=DE).get_data(as_text=True)
    token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
    response = app.test_client().post(
        "/events/werkstatt",
        data={"first_name": "Jürgen", "last_name": "Weiß", "email": "jw@example.org",
              "privacy_consent": "y", "form_token": token},
        headers=DE,
    )  # fmt: skip
    assert response.status_code == 302


def test_zero_seconds_switches_the_cache_off(app, cache_clock):
    app.config["PAGE_CACHE_SECONDS"] = 0
    make_event()
    with rendered(app) as names:
        get(app, headers=DE)
        get(app, headers=DE)
    assert names == ["public/event.html"] * 2
    assert len(page_cache(app)) == 0


def test_unknown_events_are_not_cached(app, cache_clock):
    assert get(app, "/events/gibt-es-nicht", headers=DE).status_code == 404
    assert len(page_cache(app)) == 0
    make_event(slug="gibt-es-nicht")
    db.session.commit()
    assert get(app, "/events/gibt-es-nicht", headers=DE).status_code == 200


def test_visitors_arriving_together_wait_for_one_render(app, cache_clock):
    make_event()
    db.session.commit()
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def visit() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.get("/events/werkstatt", headers=DE).status_code)

    with rendered(app) as names:
        threads = [threading.Thread(target=visit) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert statuses == [200] * 8
    assert names == ["public/event.html"]  # not eight renders when the page expired
