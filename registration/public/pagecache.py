"""A short-lived per-process cache of public pages for anonymous visitors (PAGE_CACHE_SECONDS).

Rendering the event page costs about ten times a bare template (queries, translations, the
form), and every visitor without a cookie sees the same page for a given event and language. So
a rendered page is kept for ``PAGE_CACHE_SECONDS`` (default 5; 0 switches the cache off) and
served again to the next anonymous visitor in the same language.

What makes this safe:

- Only anonymous GETs without a query string are served from or put into the cache: no session
  cookie (so no flashed message, no chosen language, no logged-in organiser) and no
  remember-me cookie. Everyone else gets a fresh render. A response that touched the session
  (``session.modified``) or is not a plain 200 is never stored.
- The key is the endpoint, its URL values, the script root and the locale chosen for the request
  (from Accept-Language), so a German and an English visitor never get each other's page; the
  responses say ``Vary: Accept-Language, Cookie`` for caches on the way.
- Only the body is kept: the after-request hooks (security headers, request id, the log line)
  run for a cached response as for any other.
- The form token in a cached page stays valid far longer than the cache keeps it (a day).
- Staleness is bounded by the TTL. A commit in this process that changes an event, its
  questions, files or registrations empties the cache at once; another process's change shows
  after at most the TTL (the seat display may lag that long; the sign-up itself is authoritative).

Nothing in it must be shared between processes or hosts: it is a pure cache, so scaling out is
unaffected.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app, has_app_context, request, session
from flask_babel import get_locale
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, UOWTransaction

from ..database import PAGES_CHANGED
from ..models import Event, EventFile, Question, Registration

EXTENSION_KEY = "page_cache"

#: Objects whose change (in this process) makes cached pages stale at once.
WATCHED_MODELS = (Event, Registration, Question, EventFile)

#: At most this many pages are kept (events x languages); a full cache starts over.
MAX_ENTRIES = 512

#: How long a request waits for another thread's render of the same page before rendering it.
RENDER_WAIT_SECONDS = 2.0


class PageCache:
    """Rendered page bodies by key, each until its expiry time (``clock()`` seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        #: The time source; tests replace it to let entries expire without sleeping.
        self.clock = clock
        # Plain dict operations are atomic under the GIL, so the entries need no lock.
        self._entries: dict[Hashable, tuple[float, bytes]] = {}
        self._render_locks: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, body = entry
        if expires <= self.clock():
            self._entries.pop(key, None)
            return None
        return body

    def put(self, key: Hashable, body: bytes, seconds: float) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (self.clock() + seconds, body)

    def clear(self) -> None:
        self._entries.clear()

    @contextmanager
    def rendering(self, key: Hashable) -> Iterator[None]:
        """One thread renders a missing page while the others for the same page wait for it
        (then find it stored), instead of all rendering it at once when it expires. A slow
        render only makes the others wait so long, then they render themselves."""
        if len(self._render_locks) >= MAX_ENTRIES:
            self._render_locks.clear()
        lock = self._render_locks.setdefault(key, threading.Lock())
        locked = lock.acquire(timeout=RENDER_WAIT_SECONDS)
        try:
            yield
        finally:
            if locked:
                lock.release()

    def __len__(self) -> int:
        return len(self._entries)


def page_cache(app: Flask | None = None) -> PageCache:
    """The app's page cache (created on first use)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    cache = app.extensions.get(EXTENSION_KEY)
    if cache is None:
        cache = app.extensions[EXTENSION_KEY] = PageCache()
    return cache


def _anonymous_get() -> bool:
    """A GET that carries nothing personal: no query string, no session or remember cookie."""
    if request.method != "GET" or request.query_string:
        return False
    cookies = request.cookies
    if not cookies:
        return True
    config = current_app.config
    return (
        config["SESSION_COOKIE_NAME"] not in cookies
        and config.get("REMEMBER_COOKIE_NAME", "remember_token") not in cookies
    )


def cached(view: Callable[..., Any]) -> Callable[..., Any]:
    """Serve ``view``'s page from the cache to anonymous visitors (see the module docstring)."""

    @functools.wraps(view)
    def wrapper(**values: Any) -> Any:
        seconds = current_app.config.get("PAGE_CACHE_SECONDS") or 0
        if seconds <= 0 or not _anonymous_get():
            response = current_app.make_response(view(**values))
        else:
            cache = page_cache()
            key = (
                request.endpoint,
                request.script_root,
                tuple(sorted(values.items())),
                str(get_locale()),
            )
            body = cache.get(key)
            if body is None:
                with cache.rendering(key):
                    body = cache.get(key)  # rendered by another thread while this one waited
                    if body is None:
                        response = current_app.make_response(view(**values))
                        if (
                            response.status_code == 200
                            and not response.direct_passthrough
                            and not session.modified
                            and response.mimetype == "text/html"
                        ):
                            cache.put(key, response.get_data(), seconds)
            if body is not None:
                response = current_app.response_class(body, mimetype="text/html")
        if request.method == "GET":
            response.vary.update(("Accept-Language", "Cookie"))
        return response

    return wrapper


# --- Invalidation on this process's own changes ---------------------------------------------


def _note_changes(session: Session, _flush_context: UOWTransaction) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, WATCHED_MODELS):
            session.info[PAGES_CHANGED] = True
            return


def _clear_after_commit(session: Session) -> None:
    if session.info.pop(PAGES_CHANGED, False) and has_app_context():
        cache = current_app.extensions.get(EXTENSION_KEY)
        if cache is not None:
            cache.clear()


def init_app(app: Flask) -> None:
    page_cache(app)
    if not sa_event.contains(Session, "after_flush", _note_changes):
        sa_event.listen(Session, "after_flush", _note_changes)
        sa_event.listen(Session, "after_commit", _clear_after_commit)
