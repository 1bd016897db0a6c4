"""Test databases: a SQLite file per test, and a throw-away PostgreSQL database per run.

PostgreSQL is reached at TEST_DATABASE_URL (default: the local server, database ``test``); a new
database is created next to it for each run and dropped afterwards. Without a server the
PostgreSQL tests are skipped with the reason, unless REQUIRE_POSTGRES=1 (CI) makes them fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def admin_url() -> URL:
    url = make_url(os.environ.get("TEST_DATABASE_URL") or DEFAULT_ADMIN_URL)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def postgres_required() -> bool:
    return os.environ.get("REQUIRE_POSTGRES", "").lower() in {"1", "true", "yes"}


def postgres_unavailable_reason() -> str | None:
    """``None`` when the server answers, else why not."""
    url = admin_url()
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect means "not available"
        return f"PostgreSQL not reachable at {url.render_as_string(hide_password=True)}: {exc}"
    finally:
        engine.dispose()
    return None


def skip_or_fail_without_postgres() -> None:
    reason = postgres_unavailable_reason()
    if reason is None:
        return
    if postgres_required():
        pytest.fail(f"REQUIRE_POSTGRES is set but {reason}", pytrace=False)
    pytest.skip(f"{reason} (set TEST_DATABASE_URL; REQUIRE_POSTGRES=1 makes this an error)")


@contextmanager
def temporary_postgres_database(prefix: str = "registration_test") -> Iterator[str]:
    """Create an empty database on the test server; yield its URL; drop it afterwards."""
    admin = admin_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
