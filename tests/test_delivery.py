"""Delivery under faults: nobody gets a mail twice because a relay was slow or a commit failed
(DESIGN.md invariant 3), and at most one mail per fault when the connection or the worker dies
between the server's acceptance and the record of it."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from registration.extensions import db
from registration.models import OutboxMessage, OutboxStatus
from registration.services import delivery

from .conftest import make_event, make_test_app
from .smtp import DROP, HANG_UP, SMTPServer, recipient
from .test_mail import register

postgresql_only = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)


def outbox() -> list[OutboxMessage]:
    db.session.expire_all()
    return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def queue_confirmations(n: int) -> None:
    event = make_event(capacity_on_site=None)
    for i in range(n):
        register(event, i)


def deliveries(*servers: SMTPServer) -> Counter[str]:
    """How often each Message-ID reached any of the servers."""
    return Counter(str(m["Message-ID"]) for server in servers for m in server.messages)


def worker_pass() -> delivery.PassResult | None:
    """One pass as ``worker.run_forever`` runs it: an exception is logged and the loop goes on."""
    try:
        return delivery.send_due()
    except Exception:
        db.session.rollback()
        return None
    finally:
        db.session.remove()


def use(app, server: SMTPServer, timeout: int = 5) -> None:
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, MAIL_TIMEOUT=timeout)


# --- Slow relay, two workers ----------------------------------------------------------------------


@postgresql_only
@pytest.mark.parametrize(
    "timeout",
    [
        pytest.param(30, id="claim-bounded-by-MAIL_TIMEOUT"),
        pytest.param(5, id="lease-renewed"),  # 600 s / 5 s covers the whole batch: renewal
    ],
)
def test_a_slow_relay_does_not_make_a_second_worker_send_the_batch_again(
    app, database_url, clock, timeout
):
    """Worker A's relay takes 6.5 s per mail (on the test clock), so 100 mails outlast the
    10-minute lease. When A has been at it for longer than that, worker B runs a pass: it may
    take nothing that A is sending or has sent."""
    queue_confirmations(100)
    tick = threading.Lock()
    a_is_late, b_is_done = threading.Event(), threading.Event()

    def slow(n: int, message) -> None:
        with tick:
            clock.advance(seconds=6.5)
        if n == 95:  # 617.5 s after A began: its first lease has run out
            a_is_late.set()
            assert b_is_done.wait(60)
        return None

    slow_relay, fast_relay = SMTPServer(on_data=slow), SMTPServer()
    slow_relay.start()
    fast_relay.start()
    app_a = make_test_app(database_url)
    use(app_a, slow_relay, timeout)
    use(app, fast_relay, timeout)
    totals: list[delivery.PassResult] = []

    def worker_a() -> None:
        with app_a.app_context():
            try:
                totals.append(delivery.send_due(batch_size=100, worker="A"))
            finally:
                db.session.remove()
                db.engine.dispose()

    thread = threading.Thread(target=worker_a)
    thread.start()
    try:
        assert a_is_late.wait(60)
        b = delivery.send_due(batch_size=100, worker="B")
        b_is_done.set()
        thread.join(60)
    finally:
        b_is_done.set()
        slow_relay.stop()
        fast_relay.stop()
    assert b.sent == 0 and fast_relay.messages == []
    assert totals and totals[0].sent == 100
    counts = deliveries(slow_relay, fast_relay)
    assert len(counts) == 100 and set(counts.values()) == {1}
    assert {row.status for row in outbox()} == {OutboxStatus.SENT}


def test_a_claim_takes_no_more_than_the_lease_covers_at_the_timeout(app, clock):
    assert delivery.claim_limit(100, 30) == 20  # 600 s lease / 30 s per mail
    assert delivery.claim_limit(100, 5) == 100
    assert delivery.claim_limit(100, 3600) == 1
    queue_confirmations(30)
    app.config["MAIL_TIMEOUT"] = 30
    assert len(delivery.claim(100, clock.now, "w")) == 20
    assert len(delivery.claim(100, clock.now, "w")) == 10


def test_each_result_is_committed_when_the_server_has_answered(app, clock):
    """While the third mail is with the server, the first two are recorded as sent already."""
    queue_confirmations(4)
    seen: list[list[str]] = []
    sending_third, release = threading.Event(), threading.Event()

    def hold_third(n: int, message) -> None:
        if n == 3:
            sending_third.set()
            assert release.wait(30)
        return None

    server = SMTPServer(on_data=hold_third)
    server.start()
    use(app, server)
    engine = db.engine

    def look() -> None:  # another connection, as a second worker or the back office sees it
        assert sending_third.wait(30)
        with engine.connect() as conn:
            seen.append(list(conn.scalars(text("SELECT status FROM outbox ORDER BY id")).all()))
        release.set()

    looker = threading.Thread(target=look)
    looker.start()
    try:
        assert delivery.send_due().sent == 4
    finally:
        release.set()
        looker.join(30)
        server.stop()
    assert seen == [["sent", "sent", "pending", "pending"]]


@postgresql_only
def test_a_renewal_finds_rows_taken_over_and_does_not_send_them(app, clock):
    """A mail that stalls longer than the lease (a fault: longer than MAIL_TIMEOUT allows): worker
    B takes the batch over meanwhile. A, back, renews, sees the rows are no longer its own and
    stops. Only the mail in A's hand at the stall can reach its recipient twice."""
    queue_confirmations(10)
    stalled, b_is_done = threading.Event(), threading.Event()

    def stall_first(n: int, message) -> None:
        if n == 1:
            clock.advance(minutes=11)
            stalled.set()
            assert b_is_done.wait(60)
        return None

    relay_a, relay_b = SMTPServer(on_data=stall_first), SMTPServer()
    relay_a.start()
    relay_b.start()
    app_a = make_test_app(app.config["SQLALCHEMY_DATABASE_URI"])
    use(app_a, relay_a)
    use(app, relay_b)
    totals: list[delivery.PassResult] = []

    def worker_a() -> None:
        with app_a.app_context():
            try:
                totals.append(delivery.send_due(worker="A"))
            finally:
                db.session.remove()
                db.engine.dispose()

    thread = threading.Thread(target=worker_a)
    thread.start()
    try:
        assert stalled.wait(60)
        assert delivery.send_due(worker="B").sent == 10
        b_is_done.set()
        thread.join(60)
    finally:
        b_is_done.set()
        relay_a.stop()
        relay_b.stop()
    assert totals and totals[0].sent == 1
    counts = deliveries(relay_a, relay_b)
    assert len(counts) == 10
    assert sorted(counts.values()) == [1] * 9 + [2]  # the stalled one, nothing else
    assert {row.status for row in outbox()} == {OutboxStatus.SENT}


# --- The database goes away mid-batch -------------------------------------------------------------


@postgresql_only
def test_a_database_restart_mid_batch_does_not_send_the_batch_again(app, clock):
    """While the server takes the 40th mail, PostgreSQL goes away: every connection of the
    worker is terminated and no new one is let in (a restart in progress). The mails accepted
    before were recorded one by one; the 40th, which cannot be recorded, stops the pass and is
    remembered; when the database is back it is written before anything else is sent."""
    queue_confirmations(100)
    name = db.engine.url.database
    # ALLOW_CONNECTIONS cannot be changed from inside the database itself.
    admin = create_engine(db.engine.url.set(database="postgres"), poolclass=NullPool)

    def restart_database(n: int, message) -> None:
        if n == 40:
            with admin.begin() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
        return None

    def database_is_back() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))

    server = SMTPServer(on_data=restart_database)
    server.start()
    use(app, server)
    try:
        first = worker_pass()
        assert first is not None and first.errors and first.sent == 40
        ledger = delivery.ledger_for(app)
        assert len(ledger) == 1  # the 40th: accepted, not yet written
        assert worker_pass().handled == 0  # still away: nothing is sent
        database_is_back()
        clock.advance(minutes=11)  # the leases the worker could not give back have run out
        worker_pass()
        worker_pass()
        assert len(ledger) == 0
    finally:
        database_is_back()
        admin.dispose()
        server.stop()
    counts = deliveries(server)
    assert len(counts) == 100 and set(counts.values()) == {1}
    assert {row.status for row in outbox()} == {OutboxStatus.SENT}


def test_a_pass_that_cannot_record_sends_nothing_new(app, clock, monkeypatch):
    """Results kept from a failed commit are written first; while that fails, nothing goes out."""
    queue_confirmations(3)
    server = SMTPServer()
    server.start()
    use(app, server)
    ledger = delivery.ledger_for(app)
    (row_id,) = delivery.claim(1, clock.now, "w")
    ledger.add(delivery.outcome(row_id, 0, "sent", clock.now))  # as if its commit had failed
    real_flush = delivery.Ledger.flush
    monkeypatch.setattr(delivery.Ledger, "flush", lambda self: False)  # the database is away
    try:
        result = delivery.send_due()
        assert result.errors and result.handled == 0
        assert server.messages == []
        monkeypatch.setattr(delivery.Ledger, "flush", real_flush)
        assert delivery.send_due().sent == 2  # the remembered row is written, not sent again
    finally:
        server.stop()
    assert len(server.messages) == 2 and len(ledger) == 0
    assert {row.status for row in outbox()} == {OutboxStatus.SENT}


# --- The honest bound: a connection that dies after the server accepted -------------------------


def test_accepted_then_dropped_goes_out_once_more_and_only_that_one(app, clock):
    queue_confirmations(5)
    server = SMTPServer(on_data=lambda n, message: DROP if n == 3 else None)
    server.start()
    use(app, server)
    try:
        first = delivery.send_due()
        assert (first.sent, first.retry) == (2, 1)  # the dropped one waits its back-off
        assert delivery.send_due().sent == 2  # the two not tried yet: at once
        clock.advance(minutes=1)
        assert delivery.send_due().sent == 1
    finally:
        server.stop()
    counts = deliveries(server)
    assert len(counts) == 5
    assert sorted(counts.values()) == [1, 1, 1, 1, 2]
    assert {row.status for row in outbox()} == {OutboxStatus.SENT}


# --- One row's trouble stays with that row --------------------------------------------------------


def test_a_mail_that_makes_the_server_hang_up_does_not_hold_back_the_others(app, clock):
    """The first mail makes the server close the connection, every time. It waits its
    back-off; the others, not tried yet, go out on the next pass, seconds later."""
    queue_confirmations(5)
    server = SMTPServer(
        on_data=lambda n, message: HANG_UP if recipient(message).startswith("person0@") else None
    )
    server.start()
    use(app, server)
    try:
        first = delivery.send_due()
        assert (first.sent, first.retry) == (0, 1) and first.errors
        assert delivery.send_due().sent == 4
        clock.advance(minutes=1)
        assert delivery.send_due().retry == 1  # still refused, alone
    finally:
        server.stop()
    rows = outbox()
    assert [r.status for r in rows] == ["pending"] + ["sent"] * 4
    assert rows[0].attempts == 2 and "SMTPServerDisconnected" in rows[0].last_error
    assert sorted(recipient(m) for m in server.messages) == [
        f"person{n}@example.org" for n in range(1, 5)
    ]


def test_temporary_and_permanent_answers_to_data_mark_only_that_row(app, clock):
    queue_confirmations(4)
    answers = {2: "451 4.7.1 Greylisted, try again", 3: "554 5.6.0 Message refused"}
    server = SMTPServer(on_data=lambda n, message: answers.get(n))
    server.start()
    use(app, server)
    try:
        result = delivery.send_due()
    finally:
        server.stop()
    assert (result.sent, result.retry, result.failed) == (2, 1, 1)
    rows = outbox()
    assert [r.status for r in rows] == ["sent", "pending", "failed", "sent"]
    assert "451" in rows[1].last_error and rows[1].attempts == 1
    assert "554" in rows[2].last_error and "Message refused" in rows[2].last_error
    assert sorted(recipient(m) for m in server.messages) == [
        "person0@example.org",
        "person3@example.org",
    ]


# --- Addresses with a non-ASCII local part (SMTPUTF8) ---------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # transport, not database
def test_smtputf8_delivers_a_non_ascii_local_part_when_allowed_and_offered(app, clock):
    app.config["MAIL_SMTPUTF8"] = True
    event = make_event(capacity_on_site=None)
    register(event, 1, email="jürgen@example.org", first_name="Jürgen")
    register(event, 2)
    server = SMTPServer(smtputf8=True)
    server.start()
    use(app, server)
    try:
        assert delivery.send_due().sent == 2
    finally:
        server.stop()
    assert server.envelope_recipients == [["jürgen@example.org"], ["person2@example.org"]]
    utf8_options, ascii_options = server.mail_options
    assert "SMTPUTF8" in utf8_options and "SMTPUTF8" not in ascii_options  # only where needed
    # RFC 6532: the header carries the address as UTF-8, not an encoded word.
    raw = server.raw[0]
    assert "To: Jürgen Muster1 <jürgen@example.org>".encode() in raw
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0]  # no encoded words in any header
    assert {row.status for row in outbox()} == {OutboxStatus.SENT}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_smtputf8_allowed_but_not_offered_fails_that_row_with_the_reason(app, clock):
    app.config["MAIL_SMTPUTF8"] = True
    event = make_event(capacity_on_site=None)
    register(event, 1, email="jürgen@example.org")
    register(event, 2)
    server = SMTPServer(smtputf8=False)
    server.start()
    use(app, server)
    try:
        result = delivery.send_due()
    finally:
        server.stop()
    assert (result.sent, result.failed, result.retry) == (1, 1, 0)
    failed = outbox()[0]
    assert failed.status == OutboxStatus.FAILED
    assert "does not offer SMTPUTF8" in failed.last_error
    assert [recipient(m) for m in server.messages] == ["person2@example.org"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_smtputf8_off_fails_the_row_at_once_even_if_the_server_offers_it(app, clock):
    assert app.config["MAIL_SMTPUTF8"] is False  # the default
    event = make_event(capacity_on_site=None)
    register(event, 1, email="jürgen@example.org")
    server = SMTPServer(smtputf8=True)
    server.start()
    use(app, server)
    try:
        assert delivery.send_due().failed == 1
    finally:
        server.stop()
    assert "MAIL_SMTPUTF8 is off" in outbox()[0].last_error
    assert server.messages == []


def test_a_stopping_worker_writes_the_results_it_still_holds(app, clock):
    from registration import worker

    queue_confirmations(1)
    (row_id,) = delivery.claim(1, clock.now, "w")
    delivery.ledger_for(app).add(delivery.outcome(row_id, 0, "sent", clock.now))
    stop = threading.Event()
    stop.set()  # SIGTERM came before the database was back
    worker.run_forever(0, stop)
    (row,) = outbox()
    assert row.status == OutboxStatus.SENT and row.locked_until is None
