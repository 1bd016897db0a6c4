"""Browser tests: a live server, Debian's Chromium driven by Playwright, axe-core, screenshots.

Browser tests run on SQLite only: each test gets a fresh app with its own SQLite file (schema from
``db.create_all()``) served by a threaded Werkzeug server on 127.0.0.1; CSRF protection stays on,
so forms are tested as participants use them. Every test in this folder is marked ``slow``
(``make test-fast`` and ``pytest -m "not slow"`` leave them out).

Needed: Chromium at /usr/bin/chromium (``apt-get install chromium``; Playwright never downloads a
browser here: do not run ``playwright install``), the ``playwright`` package (dev extra) and
``node_modules/axe-core/axe.min.js`` (``npm ci``). Without one of them the tests are skipped with
the reason; ``REQUIRE_BROWSER=1`` (CI) turns the skip into a failure.

A test::

    def test_event_page(live_server, page, assert_accessible, screenshot):
        live_server.make_event(slug="x", title="Werkstatt")
        page.goto(live_server.url("/events/x"))      # or page.goto("/events/x")
        assert_accessible(page)
        screenshot(page, "event-page")

Pages: ``page`` (desktop 1280x900, German), ``phone_page`` (390x844, touch), ``no_js_page``
(JavaScript off), or ``new_page(...)`` for any mix (``locale="en-GB"``, ``phone=True``,
``java_script_enabled=False``, any other ``browser.new_context`` option). Each page has its own
browser context (cookies, session); one Chromium serves the whole run. After a failed test every
open page is saved to ``<screenshot dir>/failures/``.

Content Security Policy: axe is injected with ``frame.evaluate(<axe.min.js source>)``. Playwright
evaluates through the DevTools protocol, which the page's CSP does not govern, so axe runs under
``script-src 'self'`` (and Trusted Types) while the page keeps its real CSP. ``add_script_tag``
would insert an inline ``<script>``, which such a CSP blocks; ``bypass_csp=True`` would make that
work but also switch the CSP off for the page under test and hide violations.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from registration import create_app
from registration.extensions import db
from registration.models import Event

from ..conftest import make_event

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
except ImportError as exc:  # reported as the skip reason
    PLAYWRIGHT_IMPORT_ERROR: str | None = str(exc)
    PlaywrightError = Exception  # type: ignore[assignment,misc]
else:
    PLAYWRIGHT_IMPORT_ERROR = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BROWSER_TESTS = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
AXE_JS = PROJECT_ROOT / "node_modules" / "axe-core" / "axe.min.js"
#: The WCAG 2.1 A and AA rules; best practices and AAA are left out.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
HOST = "127.0.0.1"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
#: Playwright waits up to 30 s by default; a local server answers in milliseconds.
TIMEOUT_MS = 10_000


# --- prerequisites and marks ---------------------------------------------------------------------


def browser_required() -> bool:
    return os.environ.get("REQUIRE_BROWSER", "").lower() in {"1", "true", "yes"}


@functools.cache
def browser_unavailable_reason() -> str | None:
    """``None`` when Playwright, Chromium and axe-core are all there, else what is missing."""
    missing = []
    if PLAYWRIGHT_IMPORT_ERROR is not None:
        missing.append(
            f"the playwright package ({PLAYWRIGHT_IMPORT_ERROR}; pip install -e '.[dev]')"
        )
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if not AXE_JS.is_file():
        missing.append(f"{AXE_JS.relative_to(PROJECT_ROOT)} (npm ci)")
    return "missing " + ", ".join(missing) if missing else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder ``slow`` (before ``-m`` deselects)."""
    for item in items:
        if BROWSER_TESTS in item.path.parents:
            item.add_marker(pytest.mark.slow)


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture(autouse=True)
def _browser_prerequisites() -> None:
    """Skip (or, with REQUIRE_BROWSER=1, fail) before any server or browser is started."""
    reason = browser_unavailable_reason()
    if reason is None:
        return
    if browser_required():
        pytest.fail(f"REQUIRE_BROWSER is set but browser tests are {reason}", pytrace=False)
    pytest.skip(f"browser tests {reason} (REQUIRE_BROWSER=1 makes this an error)")


# --- the live server -----------------------------------------------------------------------------


@dataclass
class LiveServer:
    """The app under test, served on ``base_url`` from a thread of this process.

    The test and the server share the process, so ``set_clock`` (the ``clock`` fixture) applies to
    the pages too.
    """

    app: Flask
    base_url: str

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` (which starts with ``/``)."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        return self.base_url + path

    @contextmanager
    def app_context(self) -> Iterator[Flask]:
        """Work with the database directly: ``with live_server.app_context(): ...``."""
        with self.app.app_context():
            yield self.app

    def make_event(self, **overrides: Any) -> Event:
        """An event as ``tests.conftest.make_event`` makes it (published, three weeks ahead).

        The returned object is detached: its columns can be read, relationships cannot.
        """
        with self.app.app_context():
            event = make_event(**overrides)
            db.session.refresh(event)
            return event


@pytest.fixture
def live_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """A fresh app and SQLite database per test, served over HTTP until the test ends."""
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    # Bind first so the app can be created with its real address in BASE_URL.
    listener = socket.create_server((HOST, 0))
    port = listener.getsockname()[1]
    base_url = f"http://{HOST}:{port}"
    app = create_app(
        "testing",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'browser.sqlite'}",
        BASE_URL=base_url,
        SERVER_NAME=None,
        WTF_CSRF_ENABLED=True,
        MAIL_SERVER=None,  # mail goes to files under the test's instance folder
    )
    with app.app_context():
        db.create_all()
    try:
        server = make_server(HOST, port, app, threaded=True, fd=listener.fileno())
    finally:
        listener.close()  # the server holds its own duplicate of the socket
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"live-server-{port}",
        daemon=True,
    )
    thread.start()
    try:
        yield LiveServer(app=app, base_url=base_url)
    finally:
        server.shutdown()  # serve_forever returns and closes the listening socket
        thread.join(timeout=10)
        with app.app_context():
            db.engine.dispose()


# --- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Debian Chromium for the whole run."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(
    request: pytest.FixtureRequest, browser: Browser, live_server: LiveServer
) -> Iterator[Callable[..., Page]]:
    """A factory of pages, each in a new browser context pointed at the live server.

    ``new_page(locale="de-DE", phone=False, java_script_enabled=True, **context_options)``;
    relative URLs (``page.goto("/")``) go to the live server.
    """
    contexts: list[BrowserContext] = []

    def factory(
        *,
        locale: str = "de-DE",
        phone: bool = False,
        java_script_enabled: bool = True,
        **context_options: Any,
    ) -> Page:
        options: dict[str, Any] = {
            "base_url": live_server.base_url,
            "locale": locale,
            "timezone_id": "Europe/Berlin",
            "java_script_enabled": java_script_enabled,
            "viewport": DESKTOP,
        }
        if phone:
            options.update(viewport=PHONE, is_mobile=True, has_touch=True)
        options.update(context_options)
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield factory

    if request.node.stash.get(_CALL_FAILED, False):
        _save_failure_screenshots(request.node.name, contexts)
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    """Desktop (1280x900), German, JavaScript on."""
    return new_page()


@pytest.fixture
def phone_page(new_page: Callable[..., Page]) -> Page:
    """Phone (390x844, mobile, touch), German, JavaScript on."""
    return new_page(phone=True)


@pytest.fixture
def no_js_page(new_page: Callable[..., Page]) -> Page:
    """Desktop, German, JavaScript off."""
    return new_page(java_script_enabled=False)


# --- accessibility -------------------------------------------------------------------------------

_AXE_RUN = """async (tags) => {
  const results = await axe.run(document, {
    runOnly: {type: 'tag', values: tags},
    resultTypes: ['violations'],
  });
  const selector = (target) => target
    .map((part) => Array.isArray(part) ? part.join(' >> ') : part)
    .join(' -> ');
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    helpUrl: v.helpUrl,
    targets: v.nodes.map((node) => selector(node.target)),
    summary: v.nodes.length ? v.nodes[0].failureSummary : '',
  }));
}"""


@functools.cache
def _axe_source() -> str:
    # The trailing expression makes the evaluation's result plain ``undefined``.
    return AXE_JS.read_text(encoding="utf-8") + "\n;undefined"


def inject_axe(page: Page) -> None:
    """Load axe-core into every frame of ``page`` (not subject to the page's CSP; see above)."""
    for frame in page.frames:
        if frame.is_detached():
            continue
        try:
            if not frame.evaluate("() => typeof window.axe === 'object'"):
                frame.evaluate(_axe_source())
        except PlaywrightError:
            if frame is page.main_frame:
                raise  # a child frame that went away meanwhile is no error


def check_accessibility(page: Page, context_label: str | None = None) -> None:
    """Run axe-core's WCAG 2.1 A/AA rules on the current page; fail with a readable summary."""
    inject_axe(page)
    violations: list[dict[str, Any]] = page.evaluate(_AXE_RUN, AXE_TAGS)
    if not violations:
        return
    lines = [
        f"{len(violations)} accessibility violation(s) on {context_label or page.url} "
        f"(axe-core, {', '.join(AXE_TAGS)}):"
    ]
    for v in violations:
        targets = v["targets"]
        shown = ", ".join(targets[:5]) + (
            f" and {len(targets) - 5} more" if len(targets) > 5 else ""
        )
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']}")
        lines.append(f"    {len(targets)} element(s): {shown}")
        if v["summary"]:
            lines.extend("    " + line for line in v["summary"].splitlines())
        lines.append(f"    {v['helpUrl']}")
    pytest.fail("\n".join(lines), pytrace=False)


@pytest.fixture
def assert_accessible() -> Callable[..., None]:
    """``assert_accessible(page, "event page, English")``: axe-core WCAG 2.1 AA check."""
    return check_accessibility


# --- screenshots ---------------------------------------------------------------------------------


def screenshot_dir() -> Path:
    """``$SCREENSHOT_DIR``, else test-artifacts/screenshots/ in the checkout (git-ignored)."""
    configured = os.environ.get("SCREENSHOT_DIR")
    return Path(configured) if configured else PROJECT_ROOT / "test-artifacts" / "screenshots"


def take_screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG as ``<screenshot dir>/<name>.png`` and return its path."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"screenshot name must be a plain file name without extension: {name!r}")
    directory = screenshot_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=path, full_page=True, animations="disabled")
    return path


@pytest.fixture
def screenshot() -> Callable[[Page, str], Path]:
    """``screenshot(page, "event-page")`` -> test-artifacts/screenshots/event-page.png."""
    return take_screenshot


def _save_failure_screenshots(test_name: str, contexts: list[BrowserContext]) -> None:
    directory = screenshot_dir() / "failures"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", test_name).strip("_")
    pages = [p for context in contexts for p in context.pages]
    for number, failed_page in enumerate(pages, start=1):
        suffix = f"-{number}" if len(pages) > 1 else ""
        with suppress(PlaywrightError):
            directory.mkdir(parents=True, exist_ok=True)
            failed_page.screenshot(path=directory / f"{stem}{suffix}.png", full_page=True)
