"""Rate limits (Flask-Limiter) on the endpoints worth abusing: sign-ups, logins, the JSON API.

There is no default limit: pages, health checks and static files are never throttled. The limits
are attached here, by endpoint name, after the blueprints are registered, so the views stay
unaware of them:

- ``RATELIMIT_SIGNUP_PER_IP``: POSTs of the event page's form, the embed form and the API
  sign-up, per client address; sized so that a department behind one proxy address is not
  throttled, while a flood from one address is;
- ``RATELIMIT_SIGNUP_PER_TRUSTED_IP``: instead of that, for addresses in
  ``RATELIMIT_TRUSTED_NETWORKS`` (CIDRs: a state network, the city's own proxies);
- ``RATELIMIT_SIGNUP_PER_EMAIL``: the same three, per email address given, whoever sends it;
- ``RATELIMIT_SIGNUP_PER_EVENT``: the same three, per event, whoever sends them;
- ``RATELIMIT_LOGIN``: POSTs of the login and the password-forgot forms, per client address
  (each form counted on its own);
- ``RATELIMIT_API``: every request under /api/, per client address.

The sign-up limits are shared by the three ways to sign up, so a client throttled on the form
cannot carry on through the API. The client address is ``request.remote_addr`` (behind a reverse
proxy, ProxyFix sets it); IPv6 addresses count per /64 network, the block one household or
server usually gets. The counts live in memory unless ``RATELIMIT_STORAGE_URI`` names Redis, which
several app hosts need so they share one count; if Redis cannot be reached, each process counts in
memory until it can again (sign-ups keep working). In memory every process counts on its own: with
four gunicorn workers a client gets up to four times each limit, which the app says in its log
when it starts in production.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import time
from collections.abc import Callable
from functools import lru_cache

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse_many

#: Where the limiter lives on the app. Flask-Limiter keeps its storage on the Limiter object, so
#: each app gets its own (tests and the Redis check run several apps in one process).
EXTENSION_KEY = "registration.limiter"

SIGNUP_ENDPOINTS = ("public.event", "public.embed", "api.create_registration")
LOGIN_ENDPOINTS = ("admin.login", "admin.password_forgot")
API_BLUEPRINT = "api"

log = logging.getLogger(__name__)

LIMIT_SETTINGS = (
    "RATELIMIT_SIGNUP_PER_IP",
    "RATELIMIT_SIGNUP_PER_TRUSTED_IP",
    "RATELIMIT_SIGNUP_PER_EMAIL",
    "RATELIMIT_SIGNUP_PER_EVENT",
    "RATELIMIT_LOGIN",
    "RATELIMIT_API",
)


def client_key() -> str:
    """The client's address; for IPv6 its /64 network (one client usually holds a whole one)."""
    address = get_remote_address()
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is the IPv4 client 192.0.2.1
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def event_key() -> str:
    """The event a sign-up is for (its slug in the URL), whoever sends it."""
    return (request.view_args or {}).get("slug", "")


def email_key() -> str:
    """The email address a sign-up gives (form or JSON), compared case-insensitively."""
    value = request.form.get("email")
    if value is None and request.is_json:
        body = request.get_json(silent=True)
        value = body.get("email") if isinstance(body, dict) else None
    return value.strip().lower()[:254] if isinstance(value, str) else ""


@lru_cache(maxsize=16)
def _networks(setting: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part) for part in re.split(r"[\s,]+", setting) if part)


def is_trusted() -> bool:
    """Whether the client's address is in ``RATELIMIT_TRUSTED_NETWORKS``."""
    networks = _networks(current_app.config["RATELIMIT_TRUSTED_NETWORKS"])
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(get_remote_address())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _setting(name: str) -> Callable[[], str]:
    """The limit as configured on the app handling the request (read per request)."""
    return lambda: current_app.config[name]


def _check_settings(app: Flask) -> None:
    """A malformed limit would be skipped silently at request time: refuse to start instead."""
    for name in LIMIT_SETTINGS:
        value = app.config[name]
        try:
            parse_many(value)
        except ValueError as exc:
            raise RuntimeError(
                f"{name}={value!r} is not a rate limit; use e.g. '10/minute' or "
                f"'10/minute;50/hour' ({exc})."
            ) from None
    try:
        _networks(app.config["RATELIMIT_TRUSTED_NETWORKS"])
    except ValueError as exc:
        raise RuntimeError(
            f"RATELIMIT_TRUSTED_NETWORKS={app.config['RATELIMIT_TRUSTED_NETWORKS']!r}: {exc}; "
            "use networks such as '192.0.2.0/24 2001:db8::/32'."
        ) from None


def init_app(app: Flask) -> None:
    """Attach the limits. Call after every blueprint is registered (it wraps their views)."""
    if not app.config["RATELIMIT_ENABLED"]:
        return
    _check_settings(app)
    limiter = Limiter(
        client_key,
        storage_uri=app.config["RATELIMIT_STORAGE_URI"],
        key_prefix=app.config["RATELIMIT_KEY_PREFIX"],
        # The 429 answer sets Retry-After itself (errors.py), the same value as in its body.
        headers_enabled=False,
        # Redis down: count in this process rather than fail every sign-up with a 500.
        in_memory_fallback_enabled=True,
    )
    limiter.init_app(app)
    app.extensions[EXTENSION_KEY] = limiter
    if app.config["RATELIMIT_STORAGE_URI"].startswith("memory://") and not (
        app.debug or app.testing
    ):
        log.warning(
            "rate limits are counted in each process's memory: with several gunicorn workers "
            "or hosts a client gets that many times each limit; set RATELIMIT_STORAGE_URI "
            "(e.g. redis://localhost:6379/0) to count once for all"
        )

    signup_per_ip = limiter.shared_limit(
        _setting("RATELIMIT_SIGNUP_PER_IP"), scope="signup-ip", methods=["POST"],
        exempt_when=is_trusted,
    )  # fmt: skip
    signup_per_trusted_ip = limiter.shared_limit(
        _setting("RATELIMIT_SIGNUP_PER_TRUSTED_IP"), scope="signup-trusted-ip",
        methods=["POST"], exempt_when=lambda: not is_trusted(),
    )  # fmt: skip
    signup_per_email = limiter.shared_limit(
        _setting("RATELIMIT_SIGNUP_PER_EMAIL"), scope="signup-email", key_func=email_key,
        methods=["POST"], exempt_when=lambda: not email_key(),
    )  # fmt: skip
    signup_per_event = limiter.shared_limit(
        _setting("RATELIMIT_SIGNUP_PER_EVENT"),
        scope="signup-event",
        key_func=event_key,
        methods=["POST"],
    )
    login = limiter.limit(_setting("RATELIMIT_LOGIN"), methods=["POST"])
    api = limiter.shared_limit(_setting("RATELIMIT_API"), scope="api")

    views = app.view_functions
    for endpoint in [e for e in views if e.startswith(API_BLUEPRINT + ".")]:
        views[endpoint] = api(views[endpoint])
    for endpoint in SIGNUP_ENDPOINTS:
        views[endpoint] = signup_per_event(
            signup_per_email(signup_per_trusted_ip(signup_per_ip(views[endpoint])))
        )
    for endpoint in LOGIN_ENDPOINTS:
        views[endpoint] = login(views[endpoint])


def retry_after() -> int | None:
    """Seconds until the limit this request broke lets the client in again (in a 429 handler)."""
    limiter = current_app.extensions.get(EXTENSION_KEY)
    limit = limiter.current_limit if limiter is not None else None
    if limit is None:
        return None
    seconds = math.ceil(limit.window.reset_time - time.time())
    return min(max(1, seconds), limit.limit.get_expiry())
