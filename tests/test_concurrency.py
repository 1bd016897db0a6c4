"""The capacity invariant under real concurrency: one event, many processes, many threads.

Gunicorn serves the app with 4 worker processes of 8 threads each, and 300 client threads sign up
for a 50-seat event at the same moment. However the requests interleave, exactly 50 get a seat,
the other 250 queue without gaps or repeats, every registration has its email in the outbox, and
parallel cancellations hand their seats to the head of the queue.
Runs on SQLite (``BEGIN IMMEDIATE``) and on PostgreSQL (row locks).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import select

from registration import create_app
from registration.extensions import db
from registration.models import (
    Event,
    EventFormat,
    EventStatus,
    OutboxMessage,
    Registration,
    RegistrationStatus,
)
from registration.timeutil import utcnow

from .databases import skip_or_fail_without_postgres, temporary_postgres_database

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SLUG = "ansturm"
CAPACITY = 50
SIGNUPS = 300
CANCELLATIONS = 10
#: Generous: on SQLite all writes queue for one lock, and a slow CI box must not fail spuriously.
REQUEST_TIMEOUT = 60.0
STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 15.0

T = TypeVar("T")
Response = tuple[int, dict[str, Any]]


# --- database and server -------------------------------------------------------------------------


def migrate_database(url: str) -> None:
    """Create the schema the way production does (Alembic), not with ``create_all``."""
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """An empty, migrated database that only this test uses."""
    # create_app() in this process must not touch the project's own instance/ folder.
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'concurrency.sqlite'}"
        migrate_database(url)
        yield url
        return
    skip_or_fail_without_postgres()
    with temporary_postgres_database("registration_concurrency") as url:
        migrate_database(url)
        yield url


@pytest.fixture
def local_app(database_url: str) -> Iterator[Flask]:
    """An app in the test process on the server's database, to arrange and to cross-check.

    Use it in short ``with local_app.app_context()`` blocks only: on SQLite an open session holds
    the write lock (``BEGIN IMMEDIATE``) and would stall the server.
    """
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url)
    yield app
    with app.app_context():
        db.engine.dispose()


@dataclass(frozen=True)
class Server:
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until_up(proc: subprocess.Popen[bytes], server: Server) -> None:
    """Poll the API until it answers; fail with gunicorn's output if it dies or never comes up."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited with {proc.returncode}:\n{server.log()}", pytrace=False)
        try:
            status, _ = call(server.port, "GET", "/api/v1/events", timeout=2.0)
        except OSError:  # not listening yet
            status = 0
        if status == 200:
            return
        time.sleep(0.1)
    pytest.fail(
        f"gunicorn did not answer within {STARTUP_TIMEOUT:.0f} s:\n{server.log()}", pytrace=False
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM for a graceful shutdown; SIGKILL if gunicorn hangs."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """Gunicorn with 4 worker processes x 8 threads, the production config, ``database_url``."""
    server = Server(port=free_port(), log_path=tmp_path / "gunicorn.log")
    # Settings from the developer's shell (FLASK_DEBUG, a real mail server) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "MAIL_"))}
    env.update(
        REGISTRATION_CONFIG="production",
        SECRET_KEY=secrets.token_hex(32),
        DATABASE_URL=database_url,
        INSTANCE_PATH=str(tmp_path / "server-instance"),
        BASE_URL=server.base_url,
        # Hundreds of sign-ups from one address: the per-address limit would stop them (the
        # limits have tests of their own in test_ratelimit.py).
        RATELIMIT_ENABLED="false",
    )
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "4",
        "--threads",
        "8",
        "--bind",
        f"{HOST}:{server.port}",
        "registration:create_app()",
    ]
    # Output goes to a file, not a pipe: a full pipe would block gunicorn, and we only read it
    # when something went wrong.
    with server.log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_up(proc, server)
            yield server
        finally:
            stop(proc)


# --- HTTP client ---------------------------------------------------------------------------------


def call(
    port: int,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    timeout: float = REQUEST_TIMEOUT,
) -> Response:
    """One request on its own connection; returns the status and the decoded JSON body."""
    headers = {"Connection": "close"}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=payload, headers=headers)
        with conn.getresponse() as response:
            status, raw = response.status, response.read()
    finally:
        conn.close()
    try:
        data = json.loads(raw)
    except ValueError:  # e.g. an HTML error page; keep it for the failure message
        data = {"raw": raw.decode(errors="replace")}
    return status, data


def all_at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Run every call in its own thread, released together by a barrier; results in order."""
    barrier = threading.Barrier(len(calls))

    def run(fn: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return fn()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(run, fn) for fn in calls]
        return [future.result() for future in futures]


def token_of(manage_url: str) -> str:
    return urlsplit(manage_url).path.rstrip("/").rsplit("/", 1)[-1]


def unexpected(responses: dict[int, Response], status: int) -> list[tuple[int, Response]]:
    """The responses (by person) that do not have ``status``, for a readable failure."""
    return [(i, r) for i, r in responses.items() if r[0] != status]


# --- the test ------------------------------------------------------------------------------------


def create_event(app: Flask) -> None:
    with app.app_context():
        start = utcnow() + timedelta(days=21)
        db.session.add(
            Event(
                slug=SLUG,
                title="Ansturm",
                format=EventFormat.ON_SITE,
                status=EventStatus.PUBLISHED,
                starts_at=start,
                ends_at=start + timedelta(hours=5, minutes=30),
                capacity_on_site=CAPACITY,
                waitlist_enabled=True,
            )
        )
        db.session.commit()


def db_state(app: Flask) -> tuple[dict[int, RegistrationStatus], dict[int, list[str]], list[int]]:
    """Status per registration id, outbox kinds per registration id, waiting ids in queue order."""
    with app.app_context():
        statuses = dict(db.session.execute(select(Registration.id, Registration.status)).all())
        kinds: dict[int, list[str]] = defaultdict(list)
        for registration_id, kind in db.session.execute(
            select(OutboxMessage.registration_id, OutboxMessage.kind).order_by(OutboxMessage.id)
        ):
            assert registration_id is not None
            kinds[registration_id].append(kind)
        queue = list(
            db.session.scalars(
                select(Registration.id)
                .where(Registration.status == RegistrationStatus.WAITLISTED)
                .order_by(Registration.waitlist_order)
            )
        )
    return statuses, dict(kinds), queue


def test_capacity_holds_under_concurrent_signups_and_cancellations(
    server: Server, local_app: Flask
) -> None:
    create_event(local_app)

    # 300 people sign up at the same moment.
    signup = partial(call, server.port, "POST", f"/api/v1/events/{SLUG}/registrations")
    bodies = [
        {
            "email": f"p{i}@example.org",
            "first_name": "Erika",
            "last_name": f"Muster{i}",
            "privacy_consent": True,
        }
        for i in range(SIGNUPS)
    ]
    signups = dict(enumerate(all_at_once([partial(signup, body) for body in bodies])))

    failed = unexpected(signups, 201)
    assert not failed, f"{len(failed)} sign-ups failed, e.g. {failed[:3]}\n{server.log()[-3000:]}"
    data = {i: body for i, (_, body) in signups.items()}
    status_count = Counter(d["status"] for d in data.values())
    assert status_count == {"confirmed": CAPACITY, "waitlisted": SIGNUPS - CAPACITY}
    confirmed = {i for i, d in data.items() if d["status"] == "confirmed"}
    position = {i: d["waitlist_position"] for i, d in data.items() if d["status"] == "waitlisted"}
    assert all(data[i]["waitlist_position"] is None for i in confirmed)
    assert sorted(position.values()) == list(range(1, SIGNUPS - CAPACITY + 1))
    assert all(d["manage_url"].startswith(server.base_url + "/") for d in data.values())
    reg_id = {i: d["id"] for i, d in data.items()}
    token = {i: token_of(d["manage_url"]) for i, d in data.items()}

    # The database agrees, and every registration has exactly its one email queued.
    statuses, kinds, queue = db_state(local_app)
    assert set(statuses) == set(reg_id.values())
    assert Counter(statuses.values()) == {
        RegistrationStatus.CONFIRMED: CAPACITY,
        RegistrationStatus.WAITLISTED: SIGNUPS - CAPACITY,
    }
    assert kinds == {
        reg_id[i]: ["confirmation" if i in confirmed else "waitlisted"] for i in range(SIGNUPS)
    }
    by_position = sorted(position, key=position.__getitem__)
    assert queue == [reg_id[i] for i in by_position]

    # Ten confirmed people cancel at the same moment; the first ten in the queue move up.
    cancelled_in_order = sorted(confirmed)[:CANCELLATIONS]
    cancelled = set(cancelled_in_order)
    cancel = [
        partial(call, server.port, "POST", f"/api/v1/registrations/{token[i]}/cancel")
        for i in cancelled_in_order
    ]
    cancellations = dict(zip(cancelled_in_order, all_at_once(cancel), strict=True))
    failed = unexpected(cancellations, 200)
    assert not failed, f"cancellations failed: {failed}\n{server.log()[-3000:]}"
    assert all(body == {"status": "cancelled"} for _, body in cancellations.values())

    promoted = {i for i, p in position.items() if p <= CANCELLATIONS}
    still_waiting = set(position) - promoted
    expected = {
        **dict.fromkeys(cancelled, ("cancelled", None)),
        **dict.fromkeys((confirmed - cancelled) | promoted, ("confirmed", None)),
        **{i: ("waitlisted", position[i] - CANCELLATIONS) for i in still_waiting},
    }

    # What every participant sees on their manage link (read in parallel to keep it quick).
    def lookup(i: int) -> Response:
        return call(server.port, "GET", f"/api/v1/registrations/{token[i]}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        lookups = dict(zip(range(SIGNUPS), pool.map(lookup, range(SIGNUPS)), strict=True))
    failed = unexpected(lookups, 200)
    assert not failed, f"look-ups failed: {failed[:3]}"
    seen = {i: (body["status"], body["waitlist_position"]) for i, (_, body) in lookups.items()}
    assert seen == expected
    assert sorted(p for s, p in seen.values() if s == "waitlisted") == list(
        range(1, SIGNUPS - CAPACITY - CANCELLATIONS + 1)
    )

    # And the database: still exactly 50 seats taken, the queue moved up by ten, emails queued.
    statuses, kinds, queue = db_state(local_app)
    assert Counter(statuses.values()) == {
        RegistrationStatus.CONFIRMED: CAPACITY,
        RegistrationStatus.WAITLISTED: SIGNUPS - CAPACITY - CANCELLATIONS,
        RegistrationStatus.CANCELLED: CANCELLATIONS,
    }
    assert {i for i in range(SIGNUPS) if statuses[reg_id[i]] == RegistrationStatus.CONFIRMED} == (
        confirmed - cancelled
    ) | promoted
    assert queue == [reg_id[i] for i in by_position[CANCELLATIONS:]]
    for i in promoted:
        assert kinds[reg_id[i]] == ["waitlisted", "promoted"], i
    for i in cancelled:
        assert kinds[reg_id[i]] == ["confirmation", "cancellation"], i
    for i in still_waiting:
        assert kinds[reg_id[i]] == ["waitlisted"], i
