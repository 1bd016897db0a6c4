"""Load test: sign-ups and the event page under gunicorn on PostgreSQL, next to bare Flask.

One run creates a temporary PostgreSQL database, migrates it, and starts two gunicorn servers
with the settings the deploy guide recommends (deploy/gunicorn.conf.py; ``--workers``,
``--threads`` and ``--worker-class`` change them for both): the app (production config, a
generated SECRET_KEY, no mail worker, so emails only become outbox rows) and bench/bare_app.py
(the least a sign-up and a page can be on the same database). The same in-process client then
drives, in each of ``--rounds`` rounds, from 100 concurrent clients (each on a keep-alive
connection, or with ``--new-connections`` a new connection per request):

- 1,000 sign-ups over the JSON API against a new event with 200 on-site seats and a waiting
  list, and as many POSTs to the bare endpoint (one UPDATE of a capacity counter row and one
  INSERT, in one transaction);
- as many GETs of the rendered event page, and of a bare template of about the same size.

It reports requests per second and p50/p95/p99 latency (median over the rounds), the ratios
app / bare (target: at least 0.5 for both), and checks after every round that exactly 200 are
confirmed, the other 800 waitlisted in the order the server accepted them (ids are drawn under
the event lock), one outbox email per registration, and no 5xx. Exit status: 1 when an invariant
fails, 2 when a target is missed (never in ``--quick`` mode, which only proves the script works).

The rate limiter is off for the app (``RATELIMIT_ENABLED=false``): every request comes from one
IP address here, which a per-IP sign-up limit would (rightly) stop after a handful.

    .venv/bin/python bench/load_test.py [--rounds 3] [--clients 100] [--new-connections]
        [--workers N] [--threads N] [--worker-class sync|gthread]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres] [--only page] [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/load_test.py`

import argparse
import functools
import http.client
import itertools
import json
import os
import runpy
import secrets
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask_migrate import upgrade
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from bench.bare_app import SCHEMA as BARE_SCHEMA
from bench.seeding import bench_event
from registration import create_app
from registration.extensions import db
from registration.models import OutboxMessage, Registration, RegistrationStatus

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: What the deploy guide recommends; both servers run with it unless told otherwise.
GUNICORN_CONF = PROJECT_ROOT / "deploy" / "gunicorn.conf.py"
HOST = "127.0.0.1"
TARGET_RATIO = 0.5
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
STARTUP_TIMEOUT = 60.0
REQUEST_TIMEOUT = 120.0

#: A realistic event page: the sample conference's description (Markdown), venue and contact.
DESCRIPTION = """\
Städte und Gemeinden stehen angesichts der demographischen Entwicklung, zunehmender
Wohnungsknappheit in den Zentren und Leerstand im Umland vor Aufgaben, die keine Kommune allein
lösen kann. Das Verbundvorhaben **Interko2** erprobt, wie Stadt und Umland ihre Wohnungspolitik
gemeinsam planen.

## Programm

| Zeit | Thema |
| --- | --- |
| 09:30 | Ankommen, Kaffee |
| 10:00 | Begrüßung durch die Stadt Jena |
| 10:30 | Ergebnisse der Wohnungsmarktanalyse für die Region |
| 12:00 | Mittagspause |
| 13:00 | Werkstattgespräche in drei Gruppen |
| 15:30 | Ausblick und Verabschiedung |

Die Teilnahme ist kostenfrei. Bitte melden Sie sich bis zum 10. Dezember an; die Plätze im Saal
sind begrenzt, online ist Platz für alle.

- Für Verwaltung, Wohnungsunternehmen und Forschung
- Mit Mittagsimbiss für die Teilnehmenden vor Ort
- Barrierefreier Zugang über den Eingang Carl-Zeiß-Platz
"""


# --- database --------------------------------------------------------------------------------------


def admin_url(raw: str) -> str:
    url = make_url(raw)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


@contextmanager
def temporary_database(server_url: str) -> Iterator[str]:
    """Create an empty database next to ``server_url``'s; yield its URL; drop it afterwards."""
    admin = make_url(admin_url(server_url))
    name = f"registration_load_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


# --- servers ---------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(
    name: str, app_spec: str, env: dict[str, str], args: argparse.Namespace, workdir: Path
) -> Iterator[Server]:
    """Gunicorn with the deploy guide's settings (deploy/gunicorn.conf.py), changed only where
    ``--workers``/``--threads``/``--worker-class`` say so; stopped (SIGTERM) on exit."""
    server = Server(name, free_port(), workdir / f"{name}-gunicorn.log")
    # Settings from the developer's shell (FLASK_DEBUG, a real mail server) must not leak in.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "MAIL_"))}
    command = [
        sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF),
        *gunicorn_overrides(args), "--bind", f"{HOST}:{server.port}", app_spec,
    ]  # fmt: skip
    with server.log_path.open("wb") as log:
        server.proc = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env={**base, **env}, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield server
    finally:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


def gunicorn_overrides(args: argparse.Namespace) -> list[str]:
    """The command-line options that change the deploy configuration (none by default)."""
    options = []
    for flag, value in (
        ("--workers", args.workers), ("--threads", args.threads),
        ("--worker-class", args.worker_class),
    ):  # fmt: skip
        if value is not None:
            options += [flag, str(value)]
    return options


def deploy_settings(args: argparse.Namespace) -> tuple[str, int, int]:
    """Worker class, workers and threads the servers run with: deploy/gunicorn.conf.py as it
    evaluates here (WEB_CONCURRENCY, ... included), with the command line's changes."""
    conf = runpy.run_path(str(GUNICORN_CONF))
    worker_class = args.worker_class or conf.get("worker_class", "sync")
    workers = args.workers or conf.get("workers", 1)
    threads = args.threads or conf.get("threads", 1)
    return worker_class, workers, threads


def wait_until_up(server: Server, path: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    assert server.proc is not None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SystemExit(f"{server.name}: gunicorn exited:\n{server.log_tail()}")
        try:
            conn = http.client.HTTPConnection(HOST, server.port, timeout=2)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
        except OSError:
            status = 0
        if status == 200:
            return
        time.sleep(0.2)
    raise SystemExit(
        f"{server.name}: no answer within {STARTUP_TIMEOUT:.0f} s:\n{server.log_tail()}"
    )


# --- the client ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None


@dataclass
class Run:
    """What one batch of requests did, as the client saw it."""

    label: str
    seconds: float
    latencies: list[float]
    statuses: Counter[int]
    #: Decoded JSON bodies by request index (only when asked for).
    bodies: dict[int, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 or status == 0)


def drive(
    label: str,
    port: int,
    requests: list[Request],
    clients: int,
    *,
    keep_json: bool = False,
    new_connections: bool = False,
) -> Run:
    """Send ``requests`` from ``clients`` threads, each on its own keep-alive connection, or
    with ``new_connections`` on a new connection per request (as from a proxy that does not
    keep connections to gunicorn open, and as gunicorn's sync workers answer anyway).

    The clock runs from the moment all threads are connected and released together until the
    last answer is read; each latency is from sending a request to having read its answer.
    """
    headers_json = {"Content-Type": "application/json", "Accept-Language": "de"}
    headers_get = {"Accept-Language": "de"}
    next_index = itertools.count()  # next() on a count is atomic under the GIL
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    bodies: dict[int, Any] = {}
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
        conn.connect()
        barrier.wait()
        mine: list[tuple[int, float, int, bytes]] = []
        while (i := next(next_index)) < len(requests):
            req = requests[i]
            started = time.perf_counter()
            try:
                conn.request(
                    req.method, req.path, body=req.body,
                    headers=headers_json if req.body is not None else headers_get,
                )  # fmt: skip
                with conn.getresponse() as response:
                    status, raw = response.status, response.read()
                if new_connections:
                    conn.close()  # http.client connects again on the next request
            except (OSError, http.client.HTTPException) as exc:
                conn.close()  # a fresh connection for the next request; this one counts as failed
                conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
                status, raw = 0, repr(exc).encode()
            mine.append((i, time.perf_counter() - started, status, raw))
        conn.close()
        with lock:
            for i, seconds, status, raw in mine:
                latencies.append(seconds)
                statuses[status] += 1
                if status >= 500 or status == 0:
                    errors.append(f"{status}: {raw[:200]!r}")
                if keep_json:
                    bodies[i] = json.loads(raw) if status < 500 and raw else None

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return Run(label, seconds, latencies, statuses, bodies, errors)


# --- the scenario ----------------------------------------------------------------------------------


def signup_requests(slug: str, n: int, prefix: str) -> list[Request]:
    path = f"/api/v1/events/{slug}/registrations"
    return [Request("POST", path, json.dumps(person(prefix, i)).encode()) for i in range(n)]


def bare_signup_requests(n: int, prefix: str) -> list[Request]:
    return [Request("POST", "/signup", json.dumps(person(prefix, i)).encode()) for i in range(n)]


def person(prefix: str, i: int) -> dict[str, Any]:
    """The sign-up body for person ``i`` (the bare endpoint reads the same JSON)."""
    return {
        "email": f"{prefix}-p{i}@example.org", "first_name": "Erika", "last_name": f"Muster {i}",
        "organisation": "Stadt Jena", "language": "de", "privacy_consent": True,
    }  # fmt: skip


def create_event(app: Any, slug: str, seats: int) -> int:
    with app.app_context():
        event = bench_event(
            slug=slug, capacity_on_site=seats, waitlist_enabled=True,
            subtitle="Verbundvorhaben Interko2 · Jena / Saale-Holzland-Kreis",
            description=DESCRIPTION, contact_name="Wirtschaftsförderung Jena",
            contact_email="fachtagung-wohnen@example.org", contact_phone="+49 3641 49-0",
        )  # fmt: skip
        db.session.commit()
        return event.id


def reset_bare(engine: Any, seats: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE bare_signups"))
        conn.execute(text("DELETE FROM bare_capacity"))
        conn.execute(
            text("INSERT INTO bare_capacity (id, capacity, taken) VALUES (1, :c, 0)"), {"c": seats}
        )


def check_signups(app: Any, event_id: int, run: Run, n: int, seats: int) -> list[str]:
    """The invariants after a round of sign-ups; returns what is wrong (empty: all good)."""
    problems: list[str] = []
    if run.server_errors:
        problems.append(f"{run.server_errors} 5xx/failed requests, e.g. {run.errors[:3]}")
    if run.statuses != Counter({201: n}):
        problems.append(f"expected {n} x 201, got {dict(run.statuses)}")
    waiting = n - seats
    with app.app_context():
        rows = db.session.execute(
            select(Registration.id, Registration.status, Registration.waitlist_order)
            .where(Registration.event_id == event_id)
            .order_by(Registration.id)
        ).all()
        kinds: dict[int, list[str]] = {}
        for registration_id, kind in db.session.execute(
            select(OutboxMessage.registration_id, OutboxMessage.kind)
            .where(OutboxMessage.event_id == event_id)
            .order_by(OutboxMessage.id)
        ):
            kinds.setdefault(registration_id, []).append(kind)
    status_count = Counter(str(status) for _, status, _ in rows)
    if status_count != Counter(confirmed=seats, waitlisted=waiting):
        problems.append(f"expected {seats} confirmed and {waiting} waitlisted, got {status_count}")
    # Ids come from a sequence while the event row is locked, so they are the order in which
    # the server accepted the sign-ups: the first `seats` get a seat, the rest queue in id order.
    by_id = [status for _, status, _ in rows]
    if by_id != [RegistrationStatus.CONFIRMED] * seats + [RegistrationStatus.WAITLISTED] * waiting:
        problems.append("seats did not go to the first sign-ups the server accepted")
    waitlisted = [(rid, order) for rid, status, order in rows if status == "waitlisted"]
    orders = [order for _, order in waitlisted]
    if orders != sorted(orders) or len(set(orders)) != len(orders):
        problems.append("the waiting list is not in the order the server accepted sign-ups")
    position = {rid: rank for rank, (rid, _) in enumerate(waitlisted, start=1)}
    answered = {b["id"]: b.get("waitlist_position") for b in run.bodies.values() if b and "id" in b}
    if answered != {rid: position.get(rid) for rid, _, _ in rows}:
        problems.append("waiting-list positions in the answers do not match the database")
    expected = {
        rid: ["confirmation" if status == RegistrationStatus.CONFIRMED else "waitlisted"]
        for rid, status, _ in rows
    }
    if kinds != expected:
        wrong = [
            rid for rid in expected.keys() | kinds.keys() if kinds.get(rid) != expected.get(rid)
        ]
        problems.append(f"outbox: {len(wrong)} registrations without exactly their one email")
    return problems


def check_bare(engine: Any, run: Run, n: int) -> list[str]:
    problems = []
    if run.statuses != Counter({201: n}):
        problems.append(f"bare: expected {n} x 201, got {dict(run.statuses)} {run.errors[:3]}")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM bare_signups")).scalar_one()
    if rows != n:
        problems.append(f"bare: {rows} rows instead of {n}")
    return problems


def check_pages(run: Run, n: int) -> list[str]:
    if run.statuses != Counter({200: n}):
        return [f"{run.label}: expected {n} x 200, got {dict(run.statuses)} {run.errors[:3]}"]
    return []


# --- reporting -------------------------------------------------------------------------------------


def summary(runs: list[Run]) -> dict[str, float]:
    return {
        "rate": statistics.median(r.rate for r in runs),
        "p50": statistics.median(r.percentile(50) for r in runs),
        "p95": statistics.median(r.percentile(95) for r in runs),
        "p99": statistics.median(r.percentile(99) for r in runs),
    }


def print_pair(title: str, unit: str, app_runs: list[Run], bare_runs: list[Run]) -> float:
    app, bare = summary(app_runs), summary(bare_runs)
    print(f"\n{title}")
    for label, s, runs in (("app ", app, app_runs), ("bare", bare, bare_runs)):
        rounds = ", ".join(f"{r.rate:.0f}" for r in runs)
        print(
            f"  {label}  {s['rate']:7.0f} {unit}/s   p50 {s['p50'] * 1000:6.1f} ms   "
            f"p95 {s['p95'] * 1000:6.1f} ms   p99 {s['p99'] * 1000:6.1f} ms   (rounds: {rounds})"
        )
    ratio = app["rate"] / bare["rate"]
    per_round = ", ".join(
        f"{a.rate / b.rate:.2f}" for a, b in zip(app_runs, bare_runs, strict=True)
    )
    print(f"  ratio {ratio:.2f} (per round: {per_round}); target >= {TARGET_RATIO}")
    return ratio


# --- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL,
        help="PostgreSQL server to create the temporary database on (env BENCH_DATABASE_URL; "
        f"default {DEFAULT_DATABASE_URL})",
    )  # fmt: skip
    parser.add_argument("--signups", type=int, default=1000, help="sign-ups per round")
    parser.add_argument("--seats", type=int, default=200, help="on-site seats of the event")
    parser.add_argument("--pages", type=int, default=1000, help="page views per round")
    parser.add_argument("--clients", type=int, default=100, help="concurrent client threads")
    parser.add_argument(
        "--new-connections", action="store_true",
        help="a new TCP connection per request (default: one keep-alive connection per client)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, help="gunicorn worker processes (default: deploy/gunicorn.conf.py)"
    )
    parser.add_argument(
        "--threads", type=int, help="gunicorn threads per worker (default: deploy/gunicorn.conf.py)"
    )
    parser.add_argument(
        "--worker-class", help="gunicorn worker class (default: deploy/gunicorn.conf.py)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="measurements per kind (median)")
    parser.add_argument(
        "--only", choices=("signups", "page"),
        help="measure only the sign-ups or only the event page (targets judged for that part)",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true",
        help="a smoke run (60 sign-ups, 20 seats, 10 clients, 1 round); targets not judged",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.signups, args.seats, args.pages, args.clients, args.rounds = 60, 20, 60, 10, 1
    if args.seats >= args.signups:
        parser.error("--seats must be below --signups (the test needs a waiting list)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    worker_class, workers, threads = deploy_settings(args)
    changed = " (changed by the command line)" if gunicorn_overrides(args) else ""
    connections = "a new connection per request" if args.new_connections else "keep-alive"
    print(
        f"{args.signups} sign-ups ({args.seats} seats) and {args.pages} page views per round from "
        f"{args.clients} clients ({connections}), {args.rounds} round(s); both servers run "
        f"deploy/gunicorn.conf.py{changed}: {workers} {worker_class} worker(s) x {threads} "
        f"thread(s); {os.cpu_count()} CPU(s)"
    )
    send = functools.partial(drive, new_connections=args.new_connections)
    problems: list[str] = []
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="load-test-")))
        url = stack.enter_context(temporary_database(args.database_url))
        os.environ["INSTANCE_PATH"] = str(workdir / "instance")  # create_app() in this process
        local = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
        with local.app_context():
            upgrade()
        bare_engine = create_engine(url)
        stack.callback(bare_engine.dispose)
        with bare_engine.begin() as conn:
            conn.exec_driver_sql(BARE_SCHEMA)
        reset_bare(bare_engine, args.seats)
        create_event(local, "page", args.seats)
        warmup_id = create_event(local, "warmup", 10**6)

        app = stack.enter_context(
            gunicorn("app", "registration:create_app()", {
                "REGISTRATION_CONFIG": "production", "SECRET_KEY": secrets.token_hex(32),
                "DATABASE_URL": url, "INSTANCE_PATH": str(workdir / "server-instance"),
                "BASE_URL": "https://anmeldung.example.org",
                # All requests come from one IP address: a per-IP limit would stop the test.
                "RATELIMIT_ENABLED": "false",
            }, args, workdir)
        )  # fmt: skip
        wait_until_up(app, "/events/page")
        page = http.client.HTTPConnection(HOST, app.port)
        page.request("GET", "/events/page", headers={"Accept-Language": "de"})
        page_bytes = len(page.getresponse().read())
        page.close()
        bare = stack.enter_context(
            gunicorn("bare", "bench.bare_app:create_app()",
                     {"DATABASE_URL": url, "BARE_PAGE_BYTES": str(page_bytes)}, args, workdir)
        )  # fmt: skip
        wait_until_up(bare, "/page")

        # Warm-up: every worker imports, compiles its templates and opens its connections.
        warm = max(args.clients * 2, 100)
        if args.only == "page":
            warm_signups = 0
        else:
            warm_signups = warm
            send("warm-up", app.port, signup_requests("warmup", warm, "warm"), args.clients)
            send("warm-up", bare.port, bare_signup_requests(warm, "warm"), args.clients)
        send("warm-up", app.port, [Request("GET", "/events/page")] * warm, args.clients)
        send("warm-up", bare.port, [Request("GET", "/page")] * warm, args.clients)
        with local.app_context():  # the warm-up event must not leave work for the next rounds
            assert db.session.scalar(
                select(func.count()).where(Registration.event_id == warmup_id)
            ) == warm_signups  # fmt: skip

        runs: dict[str, list[Run]] = {"app": [], "bare": [], "app_page": [], "bare_page": []}
        for r in range(1, args.rounds + 1):
            slug = f"round-{r}"
            event_id = create_event(local, slug, args.seats)
            reset_bare(bare_engine, args.seats)

            def app_signups(slug: str = slug, event_id: int = event_id, r: int = r) -> None:
                run = send(
                    "app sign-ups", app.port, signup_requests(slug, args.signups, f"r{r}"),
                    args.clients, keep_json=True,
                )  # fmt: skip
                runs["app"].append(run)
                problems.extend(
                    f"round {r}: {p}"
                    for p in check_signups(local, event_id, run, args.signups, args.seats)
                )

            def bare_signups(r: int = r) -> None:
                run = send(
                    "bare sign-ups", bare.port, bare_signup_requests(args.signups, f"r{r}"),
                    args.clients,
                )  # fmt: skip
                runs["bare"].append(run)
                problems.extend(
                    f"round {r}: {p}" for p in check_bare(bare_engine, run, args.signups)
                )

            def app_pages(r: int = r) -> None:
                run = send(
                    "event page", app.port, [Request("GET", "/events/page")] * args.pages,
                    args.clients,
                )  # fmt: skip
                runs["app_page"].append(run)
                problems.extend(f"round {r}: {p}" for p in check_pages(run, args.pages))

            def bare_pages(r: int = r) -> None:
                run = send(
                    "bare page", bare.port, [Request("GET", "/page")] * args.pages, args.clients
                )
                runs["bare_page"].append(run)
                problems.extend(f"round {r}: {p}" for p in check_pages(run, args.pages))

            # Alternate who goes first, so that a slow spell on the machine hits both alike.
            steps: list[Callable[[], None]] = [app_signups, bare_signups, app_pages, bare_pages]
            if r % 2 == 0:
                steps = [bare_signups, app_signups, bare_pages, app_pages]
            if args.only == "page":
                steps = [s for s in steps if s not in (app_signups, bare_signups)]
            elif args.only == "signups":
                steps = [s for s in steps if s not in (app_pages, bare_pages)]
            for step in steps:
                step()
            measured = []
            if runs["app"]:
                measured.append(
                    f"sign-ups {runs['app'][-1].rate:.0f}/s vs bare {runs['bare'][-1].rate:.0f}/s"
                )
            if runs["app_page"]:
                measured.append(
                    f"page {runs['app_page'][-1].rate:.0f}/s vs bare "
                    f"{runs['bare_page'][-1].rate:.0f}/s"
                )
            print(f"round {r}: {'; '.join(measured)}", flush=True)
        if problems:
            for server in (app, bare):
                print(f"\n--- {server.name} log (tail) ---\n{server.log_tail()}")
        with local.app_context():
            db.engine.dispose()

    ratios: list[tuple[str, float]] = []
    if runs["app"]:
        ratios.append(("sign-up rate", print_pair(
            f"Sign-ups ({args.signups} per round, {args.clients} clients, median of {args.rounds})",
            "sign-ups", runs["app"], runs["bare"],
        )))  # fmt: skip
    if runs["app_page"]:
        ratios.append(("event page rate", print_pair(
            f"Event page ({page_bytes:,} bytes; bare template of the same size)",
            "pages", runs["app_page"], runs["bare_page"],
        )))  # fmt: skip

    print()
    if problems:
        print("Invariants: FAIL")
        for problem in problems:
            print(f"  - {problem}")
    elif not runs["app"]:
        print("Invariants: PASS (no 5xx; sign-ups not measured)")
    else:
        print(
            f"Invariants: PASS (each round: {args.seats} confirmed, {args.signups - args.seats} "
            "waitlisted in the order accepted, one outbox email per registration, no 5xx)"
        )
    missed = False
    for name, ratio in ratios:
        if args.quick:
            verdict = "not judged (--quick)"
        else:
            verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
            missed |= ratio < TARGET_RATIO
        print(f"Target {name} >= {TARGET_RATIO} x bare: {ratio:.2f} {verdict}")
    if problems:
        return 1
    return 2 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
