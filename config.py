"""Configuration classes.

Values come from the environment when the app is created (``Config.from_env``), never at import
time, so tests and several app instances in one process can each have their own settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

#: The insecure key the development config falls back to; production refuses to start with it.
DEV_SECRET_KEY = "dev-insecure-change-me"  # noqa: S105


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(value: str | None, default: int | None) -> int | None:
    if value is None or value.strip() == "":
        return default
    return int(value)


def _seconds(name: str, value: str | None, default: float) -> float:
    if value is None or value.strip() == "":
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 600:
        raise RuntimeError(f"{name} must be a number of seconds from 0 to 600, not {value!r}.")
    return seconds


def _choice(name: str, value: str | None, choices: tuple[str, ...], default: str) -> str:
    if value is None or value.strip() == "":
        return default
    value = value.strip().lower()
    if value not in choices:
        raise RuntimeError(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value


def _operations_settings(env: dict[str, str]) -> dict[str, Any]:
    """Logging, health checks and what sits in front of the app (reverse proxy, HTTPS)."""
    return {
        "LOG_FORMAT": _choice("LOG_FORMAT", env.get("LOG_FORMAT"), ("json", "text"), "json"),
        "LOG_LEVEL": _choice(
            "LOG_LEVEL",
            env.get("LOG_LEVEL"),
            ("debug", "info", "warning", "error", "critical"),
            "info",
        ).upper(),
        # /readyz fails when a due email waited longer than this (no worker is running).
        "OUTBOX_STUCK_MINUTES": _int(env.get("OUTBOX_STUCK_MINUTES"), 15),
        # How long a sign-up or an organiser's change waits for an event's row lock before it
        # answers "busy, try again" (PostgreSQL; 0 waits for ever).
        "SIGNUP_LOCK_TIMEOUT": _seconds("SIGNUP_LOCK_TIMEOUT", env.get("SIGNUP_LOCK_TIMEOUT"), 3.0),
        # How many proxies in front of the app set X-Forwarded-For / -Proto / -Host (0: none,
        # the headers are ignored; werkzeug's ProxyFix trusts exactly this many).
        "PROXY_FIX_X_FOR": _int(env.get("PROXY_FIX_X_FOR"), 0),
        "PROXY_FIX_X_PROTO": _int(env.get("PROXY_FIX_X_PROTO"), 0),
        "PROXY_FIX_X_HOST": _int(env.get("PROXY_FIX_X_HOST"), 0),
        "PROXY_FIX_X_PORT": _int(env.get("PROXY_FIX_X_PORT"), 0),
        "PROXY_FIX_X_PREFIX": _int(env.get("PROXY_FIX_X_PREFIX"), 0),
        # Strict-Transport-Security on HTTPS responses (0 switches the header off).
        "HSTS_MAX_AGE": _int(env.get("HSTS_MAX_AGE"), 365 * 24 * 3600),
        "HSTS_INCLUDE_SUBDOMAINS": _bool(env.get("HSTS_INCLUDE_SUBDOMAINS")),
    }


def _normalise_database_url(url: str) -> str:
    """Accept ``postgres://`` URLs (as hosting providers hand out) and use the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


class Config:
    """Settings shared by every environment."""

    NAME = "base"
    DEBUG = False
    TESTING = False

    SQLALCHEMY_TRACK_MODIFICATIONS = False
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict[str, Any]] = {"pool_pre_ping": True}

    BABEL_DEFAULT_LOCALE = "de"
    BABEL_DEFAULT_TIMEZONE = "UTC"
    LANGUAGES = ("de", "en")

    #: Largest request body (uploads); larger ones get a clear 413 page.
    MAX_CONTENT_LENGTH = 16 * 1024 * 1024

    WTF_CSRF_TIME_LIMIT = None  # a sign-up form may stay open in a tab for hours

    #: How long a rendered event page is served again to anonymous visitors in the same
    #: language (seconds; 0: off). registration/public/pagecache.py explains why that is safe.
    PAGE_CACHE_SECONDS = 5

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"

    #: How often the mail worker anonymises the participants of events past their retention
    #: period (GDPR); 0 turns it off (then run ``flask privacy anonymise`` from cron).
    ANONYMISE_INTERVAL_SECONDS = 3600

    #: Rate limits (Flask-Limiter notation, ";" between several). Environment variables of the
    #: same name override each; see registration/ratelimit.py for where they apply.
    RATELIMIT_ENABLED = True
    #: Sized for public offices: a whole department reaches the internet through one address
    #: (a city's proxy), and 100 colleagues may sign up within minutes of an invitation. A flood
    #: from one address is still stopped; one person is held back by the limit per email.
    RATELIMIT_SIGNUP_PER_IP = "120/minute;600/hour"
    #: Addresses in RATELIMIT_TRUSTED_NETWORKS (a state network, the city's own proxies).
    RATELIMIT_SIGNUP_PER_TRUSTED_IP = "1200/minute"
    #: The same email address, whichever address it comes from.
    RATELIMIT_SIGNUP_PER_EMAIL = "5/minute;20/hour"
    RATELIMIT_SIGNUP_PER_EVENT = "600/minute"
    RATELIMIT_LOGIN = "10/minute"
    RATELIMIT_API = "120/minute"
    #: CIDR networks (space or comma separated) whose addresses get the trusted sign-up limit.
    RATELIMIT_TRUSTED_NETWORKS = ""

    @classmethod
    def from_env(
        cls, environ: dict[str, str] | None = None, instance_path: str = "instance"
    ) -> dict:
        """Build the settings dictionary from ``environ`` (default: ``os.environ``)."""
        env = dict(os.environ if environ is None else environ)
        settings = {key: getattr(cls, key) for key in dir(cls) if key.isupper()}
        instance = Path(instance_path)
        settings.update(
            SECRET_KEY=env.get("SECRET_KEY") or cls.default_secret_key(),
            SQLALCHEMY_DATABASE_URI=_normalise_database_url(
                env.get("DATABASE_URL") or f"sqlite:///{instance / 'registration.sqlite'}"
            ),
            BASE_URL=(env.get("BASE_URL") or "http://127.0.0.1:5000").rstrip("/"),
            TIMEZONE=env.get("TIMEZONE") or "Europe/Berlin",
            MAIL_SERVER=env.get("MAIL_SERVER") or None,
            MAIL_PORT=_int(env.get("MAIL_PORT"), 25),
            MAIL_USE_TLS=_bool(env.get("MAIL_USE_TLS")),
            MAIL_USE_SSL=_bool(env.get("MAIL_USE_SSL")),
            MAIL_USERNAME=env.get("MAIL_USERNAME") or None,
            MAIL_PASSWORD=env.get("MAIL_PASSWORD") or None,
            MAIL_DEFAULT_SENDER=env.get("MAIL_DEFAULT_SENDER") or "anmeldung@localhost",
            MAIL_FILE_DIR=env.get("MAIL_FILE_DIR") or str(instance / "mail"),
            MAIL_TIMEOUT=_int(env.get("MAIL_TIMEOUT"), 30),
            # The relay is known to accept SMTPUTF8: addresses with a non-ASCII local part
            # (jürgen@example.org) can be mailed, and the sign-up form may accept them.
            MAIL_SMTPUTF8=_bool(env.get("MAIL_SMTPUTF8")),
            UPLOAD_DIR=env.get("UPLOAD_DIR") or str(instance / "uploads"),
            EMBED_ALLOWED_ORIGINS=env.get("EMBED_ALLOWED_ORIGINS") or "",
        )
        settings["ANONYMISE_INTERVAL_SECONDS"] = _int(
            env.get("ANONYMISE_INTERVAL_SECONDS"), cls.ANONYMISE_INTERVAL_SECONDS
        )
        settings.update(_operations_settings(env))
        settings.update(cls._ratelimit_settings(env))
        settings["PAGE_CACHE_SECONDS"] = _int(env.get("PAGE_CACHE_SECONDS"), cls.PAGE_CACHE_SECONDS)
        return settings

    @classmethod
    def _ratelimit_settings(cls, env: dict[str, str]) -> dict[str, Any]:
        """Rate limits: counted in memory unless RATELIMIT_STORAGE_URI names a shared store
        (``redis://host:6379/0``), which several app hosts need so they share one count."""
        settings: dict[str, Any] = {
            "RATELIMIT_ENABLED": _bool(env.get("RATELIMIT_ENABLED"), cls.RATELIMIT_ENABLED),
            "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI") or "memory://",
            "RATELIMIT_KEY_PREFIX": env.get("RATELIMIT_KEY_PREFIX") or "registration",
        }
        for name in (
            "SIGNUP_PER_IP", "SIGNUP_PER_TRUSTED_IP", "SIGNUP_PER_EMAIL", "SIGNUP_PER_EVENT",
            "LOGIN", "API", "TRUSTED_NETWORKS",
        ):  # fmt: skip
            key = f"RATELIMIT_{name}"
            settings[key] = env.get(key) or getattr(cls, key)
        return settings

    @classmethod
    def default_secret_key(cls) -> str | None:
        return None

    @classmethod
    def check(cls, settings: Mapping[str, Any]) -> None:
        """Refuse settings this environment must not run with (after overrides are applied)."""


class DevelopmentConfig(Config):
    """A laptop: SQLite in instance/, mail written to files, debug on."""

    NAME = "development"
    DEBUG = True

    @classmethod
    def default_secret_key(cls) -> str | None:
        return DEV_SECRET_KEY


class TestingConfig(Config):
    NAME = "testing"
    TESTING = True
    WTF_CSRF_ENABLED = False
    #: Off so that a page reflects a change at once; tests/test_page_cache.py turns it on.
    PAGE_CACHE_SECONDS = 0
    #: Off so that tests signing up hundreds of times from 127.0.0.1 are not throttled;
    #: tests/test_ratelimit.py turns it on.
    RATELIMIT_ENABLED = False

    @classmethod
    def default_secret_key(cls) -> str | None:
        return "testing-secret-key"


class ProductionConfig(Config):
    """Production: a real SECRET_KEY is required, debug is never on."""

    NAME = "production"

    #: Never accepted as a production key: the development and testing defaults.
    KNOWN_KEYS = frozenset({DEV_SECRET_KEY, "testing-secret-key"})

    #: Bound parameters stay out of error messages and so out of the logs (they hold addresses).
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict[str, Any]] = {
        **Config.SQLALCHEMY_ENGINE_OPTIONS,
        "hide_parameters": True,
    }

    @classmethod
    def from_env(
        cls, environ: dict[str, str] | None = None, instance_path: str = "instance"
    ) -> dict:
        settings = super().from_env(environ, instance_path)
        env = os.environ if environ is None else environ
        if _bool(env.get("FLASK_DEBUG")):
            raise RuntimeError("FLASK_DEBUG must not be on in production.")
        settings["SESSION_COOKIE_SECURE"] = settings["BASE_URL"].startswith("https://")
        settings["REMEMBER_COOKIE_SECURE"] = settings["SESSION_COOKIE_SECURE"]
        cls.check(settings)
        return settings

    @classmethod
    def check(cls, settings: Mapping[str, Any]) -> None:
        key = settings.get("SECRET_KEY")
        if not key or key in cls.KNOWN_KEYS or len(key) < 16:
            raise RuntimeError(
                "SECRET_KEY is missing or too weak (at least 16 characters needed). Set it in the "
                "environment, e.g. "
                "SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))'). "
                "For a local trial run use REGISTRATION_CONFIG=development (what `make run` does)."
            )
        if settings.get("DEBUG") or settings.get("TESTING"):
            raise RuntimeError("DEBUG and TESTING must not be on in production.")


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_name(name: str | None) -> type[Config]:
    """The config class for ``REGISTRATION_CONFIG`` (default: production, the safe choice)."""
    key = (name or "production").strip().lower()
    try:
        return CONFIGS[key]
    except KeyError:
        raise RuntimeError(
            f"Unknown REGISTRATION_CONFIG {name!r}; use one of {', '.join(CONFIGS)}."
        ) from None
