"""Response headers: a strict Content-Security-Policy, framing rules, HSTS; the reverse proxy.

Every page refuses to be framed, except the embeddable sign-up form, which the sites named in
``EMBED_ALLOWED_ORIGINS`` (space- or comma-separated origins) may frame.

Behind a reverse proxy, ``PROXY_FIX_X_FOR`` / ``_X_PROTO`` / ``_X_HOST`` / ``_X_PORT`` /
``_X_PREFIX`` say how many proxies set each ``X-Forwarded-*`` header (werkzeug's ProxyFix); with
the default 0 the headers are ignored, so a client cannot claim to be on HTTPS or another address.
``Strict-Transport-Security`` goes out with every response to a request that came over HTTPS
(directly or, with ``PROXY_FIX_X_PROTO``, at the proxy), never over plain http, where browsers
ignore it anyway and it would only mislead.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from flask import Flask, Response, current_app, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from itsdangerous import URLSafeTimedSerializer

EMBED_ENDPOINTS = frozenset({"public.embed", "public.embed_thanks"})

BASE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'"
)


_ORIGIN_RE = re.compile(r"^https?://(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?$")


def embed_origins() -> list[str]:
    """The configured origins; anything that is not a plain origin is ignored (and logged), so a
    setting can never inject other policy directives."""
    raw = current_app.config.get("EMBED_ALLOWED_ORIGINS") or ""
    origins = []
    for origin in raw.replace(",", " ").split():
        if _ORIGIN_RE.match(origin):
            origins.append(origin.rstrip("/"))
        else:
            current_app.logger.warning("EMBED_ALLOWED_ORIGINS: ignoring %r (not an origin)", origin)
    return origins


#: The headers of every page that may not be framed (all but the embed), worked out once.
NOT_FRAMED = (
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", f"{BASE_POLICY}; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
)


def set_security_headers(response: Response) -> Response:
    """Each header unless the view set its own (e.g. the join link's Referrer-Policy)."""
    if request.endpoint in EMBED_ENDPOINTS:
        ancestors = " ".join(["'self'", *embed_origins()])
        defaults: tuple[tuple[str, str], ...] = (
            ("Content-Security-Policy", f"{BASE_POLICY}; frame-ancestors {ancestors}"),
            *NOT_FRAMED[2:],
        )
    else:
        defaults = NOT_FRAMED
    if request.is_secure and (hsts := hsts_value()):
        defaults = (*defaults, ("Strict-Transport-Security", hsts))
    headers = response.headers
    present = {name.lower() for name, _ in headers.items()}
    for name, value in defaults:
        if name.lower() not in present:
            headers.add(name, value)
    return response


def hsts_value() -> str | None:
    """The Strict-Transport-Security value from HSTS_MAX_AGE (0: no header)."""
    max_age = current_app.config.get("HSTS_MAX_AGE", 365 * 24 * 3600)
    if not max_age:
        return None
    value = f"max-age={int(max_age)}"
    if current_app.config.get("HSTS_INCLUDE_SUBDOMAINS"):
        value += "; includeSubDomains"
    return value


#: ProxyFix's arguments and the settings that give them.
PROXY_FIX_SETTINGS = {
    "x_for": "PROXY_FIX_X_FOR",
    "x_proto": "PROXY_FIX_X_PROTO",
    "x_host": "PROXY_FIX_X_HOST",
    "x_port": "PROXY_FIX_X_PORT",
    "x_prefix": "PROXY_FIX_X_PREFIX",
}


def install_proxy_fix(app: Flask) -> None:
    """Trust the configured number of proxies' X-Forwarded-* headers (none by default)."""
    counts = {arg: int(app.config.get(key) or 0) for arg, key in PROXY_FIX_SETTINGS.items()}
    if any(counts.values()):
        app.wsgi_app = ProxyFix(app.wsgi_app, **counts)  # type: ignore[method-assign]


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed session cookies, with the signing serializer made once for the current
    keys instead of on every request (it showed in every request's profile, also of requests
    without a cookie)."""

    def __init__(self) -> None:
        self._serializer: tuple[tuple[object, ...], URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._serializer
        if cached is None or cached[0] != keys:  # made anew when a key changes
            cached = self._serializer = (keys, super().get_signing_serializer(app))
        return cached[1]


def init_app(app: Flask) -> None:
    app.session_interface = SessionInterface()
    install_proxy_fix(app)
    app.after_request(set_security_headers)
