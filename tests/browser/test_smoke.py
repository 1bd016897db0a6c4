"""Smoke test of the browser set-up on the event list: content, no JavaScript, a11y, screenshots."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from .conftest import LiveServer

TITLE = "Werkstatt 21: Barrierefreie Formulare"


@pytest.fixture
def server(live_server: LiveServer) -> LiveServer:
    """The live server with one published event on the list."""
    live_server.make_event(slug="werkstatt-21", title=TITLE, venue_name="Rathaus Herzberg")
    return live_server


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_event_list_shows_event(server: LiveServer, page: Page) -> None:
    response = page.goto(server.url("/"))

    assert response is not None and response.status == 200
    assert page.locator("html").get_attribute("lang") == "de"
    assert page.get_by_role("heading", level=1).inner_text() == "Kommende Veranstaltungen"
    link = page.get_by_role("link", name=TITLE)
    assert link.get_attribute("href") == "/events/werkstatt-21"
    assert "Rathaus Herzberg" in page.locator(".event-card").inner_text()
    assert server.app.config["WTF_CSRF_ENABLED"] is True


def test_event_list_without_javascript(server: LiveServer, no_js_page: Page) -> None:
    # The context really runs no scripts: this title would change if it did.
    no_js_page.set_content("<title>before</title><script>document.title = 'after'</script>")
    assert no_js_page.title() == "before"

    no_js_page.goto("/")  # relative URLs go to the live server

    assert no_js_page.get_by_role("link", name=TITLE).is_visible()
    no_js_page.get_by_role("link", name=TITLE).click()
    assert no_js_page.url == server.url("/events/werkstatt-21")


@pytest.mark.parametrize(
    ("path", "lang"), [("/", "de"), ("/?lang=en", "en")], ids=["german", "english"]
)
def test_event_list_is_accessible(
    server: LiveServer,
    page: Page,
    assert_accessible: Callable[..., None],
    path: str,
    lang: str,
) -> None:
    page.goto(server.url(path))

    assert page.locator("html").get_attribute("lang") == lang
    assert_accessible(page, f"event list ({lang})")


def test_event_list_screenshots(
    server: LiveServer,
    page: Page,
    phone_page: Page,
    screenshot: Callable[[Page, str], Path],
) -> None:
    for name, current, width in [("index-desktop", page, 1280), ("index-phone", phone_page, 390)]:
        current.goto(server.url("/"))
        # No sideways scrolling at either width (WCAG 1.4.10 reflow).
        assert current.evaluate("document.documentElement.scrollWidth") <= width, name

        path = screenshot(current, name)

        assert png_size(path)[0] == width, name
