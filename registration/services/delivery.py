"""Sending the outbox: claim due rows, render, send over one connection, record each result.

Claiming takes a lease (``locked_until``) in a short transaction of its own: on PostgreSQL with
``FOR UPDATE SKIP LOCKED``, so any number of workers share the rows without taking one twice; on
SQLite transactions are serialised anyway (one worker is enough there). Sending happens outside
any transaction, so the database is never locked while a mail server thinks.

What keeps a mail from going out twice (DESIGN.md invariant 3):

- Each result is committed as soon as the server has answered for that mail, not at the end of
  the batch, so a slow relay or a failed commit cannot leave a whole batch unrecorded.
- The lease is renewed while a batch is sent (when half of it is used up), and a claim never
  takes more rows than the lease covers if every mail took ``MAIL_TIMEOUT``. A renewal that
  finds a row no longer ours (its lease expired and another worker took it) drops the row.
- A result that cannot be committed (the database went away) stays in the process's memory
  (:class:`Ledger`) and is written before anything else is sent; until then no pass sends.

What remains: the server accepts a mail and the connection dies before its answer, or the
worker is killed between the answer and the commit. That mail goes out again after the lease
(with the same Message-ID, so mail clients can spot the copy): at most one mail per such fault.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import smtplib
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Connection, Update, bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import selectinload

from .. import notifications
from ..extensions import db
from ..mailer import Message, Transport, open_transport
from ..models import OutboxMessage, OutboxStatus, Registration
from ..timeutil import utcnow

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=10)
MAX_ATTEMPTS = 10
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=6)


@dataclass
class PassResult:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.sent + self.retry + self.failed + self.skipped

    def add(self, other: PassResult) -> None:
        for name in ("sent", "retry", "failed", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)


class TransientError(Exception):
    """Try again later (connection refused, timeout, 4xx)."""


class PermanentError(Exception):
    """Do not try again (5xx for this recipient)."""


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, 8 ... minutes, at most six hours."""
    return min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), LONGEST_RETRY)


def classify(exc: BaseException) -> Exception:
    """Map an SMTP or network error to transient or permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in exc.recipients.values()]
        text = "; ".join(f"{addr}: {code} {msg!r}" for addr, (code, msg) in exc.recipients.items())
        if codes and all(code >= 500 for code in codes):
            return PermanentError(text)
        return TransientError(text)
    if isinstance(exc, smtplib.SMTPResponseException):
        message = f"{exc.smtp_code} {exc.smtp_error!r}"
        return PermanentError(message) if exc.smtp_code >= 500 else TransientError(message)
    return TransientError(f"{type(exc).__name__}: {exc}")


# --- Results that must not be forgotten ---------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """The result of one row, as the column values to write."""

    row_id: int
    kind: str  # sent, skipped, failed, retry
    values: dict[str, Any]


def outcome(row_id: int, attempts: int, kind: str, now: datetime, error: str = "") -> Outcome:
    """The columns to write for ``kind``; ``attempts`` is the row's count before this try."""
    values: dict[str, Any] = {"locked_until": None}
    if kind == "sent":
        values.update(status=OutboxStatus.SENT, sent_at=now, last_error="", attempts=attempts + 1)
    elif kind == "skipped":
        values.update(status=OutboxStatus.SKIPPED, last_error=error)
    elif kind == "failed":
        values.update(status=OutboxStatus.FAILED, last_error=error, attempts=attempts + 1)
    elif attempts + 1 >= MAX_ATTEMPTS:
        values.update(
            status=OutboxStatus.FAILED,
            attempts=attempts + 1,
            last_error=f"gave up after {attempts + 1} attempts: {error}",
        )
    else:
        values.update(
            attempts=attempts + 1, last_error=error, next_attempt_at=now + backoff(attempts + 1)
        )
    return Outcome(row_id, kind, values)


class Ledger:
    """Results of this process not yet committed (one per app, shared by its threads).

    A mail the server accepted must be recorded before anything else is sent: forgetting it
    would send it again after the lease. So a failed commit keeps the results here, the pass
    stops, and the next pass writes them first (:meth:`flush`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, Outcome] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)

    def add(self, result: Outcome) -> None:
        with self._lock:
            self._waiting[result.row_id] = result

    def flush(self, conn: Connection | None = None) -> bool:
        """Write and commit every waiting result (on ``conn`` if given, a connection a batch
        holds); False (and all kept) when the database fails."""
        with self._lock:
            if not self._waiting:
                return True
            try:
                # A connection, not the session: a session's commit expires every object it
                # holds, which per mail would cost more than the mail.
                with _transaction(conn) as conn:
                    for result in self._waiting.values():
                        stmt = _record_statement(frozenset(result.values), result.kind != "sent")
                        conn.execute(stmt, {"row_id": result.row_id, **result.values})
            except SQLAlchemyError as exc:
                log.error(
                    "cannot record the results of outbox rows %s (kept, written before "
                    "anything else is sent): %s",
                    sorted(self._waiting), exc,
                )  # fmt: skip
                return False
            self._waiting.clear()
            return True


@functools.cache
def _record_statement(columns: frozenset[str], only_pending: bool) -> Update:
    """The UPDATE that writes one result, built once per shape (it runs once per mail)."""
    table = OutboxMessage.__table__
    stmt = update(table).where(table.c.id == bindparam("row_id"))
    if only_pending:
        # Another worker may have sent the row after our lease ran out; a late "retry" must
        # not undo that. "sent" is written whatever happened: the mail did go out.
        stmt = stmt.where(table.c.status == OutboxStatus.PENDING)
    return stmt.values({name: bindparam(name, type_=table.c[name].type) for name in columns})


@contextlib.contextmanager
def _transaction(conn: Connection | None) -> Iterator[Connection]:
    if conn is None:
        with db.engine.begin() as own:
            yield own
    else:
        with conn.begin():
            yield conn


def ledger_for(app: Flask) -> Ledger:
    """The app's ledger: per app, so two apps in one process (tests) never mix their rows."""
    ledger = app.extensions.get("outbox_ledger")
    if ledger is None:
        ledger = app.extensions.setdefault("outbox_ledger", Ledger())
    return ledger


def _rollback() -> None:
    try:
        db.session.rollback()
    except SQLAlchemyError:  # the connection is gone already; the pool replaces it
        log.debug("rollback failed", exc_info=True)


# --- Claiming and the lease ---------------------------------------------------------------------


def claim_limit(batch_size: int, timeout: float | None) -> int:
    """At most as many rows as one lease covers if every mail took ``MAIL_TIMEOUT``, so even
    without a renewal no row's lease runs out while it waits its turn in the batch."""
    per_mail = max(float(timeout or 0), 1.0)
    return max(1, min(batch_size, int(LEASE.total_seconds() // per_mail)))


def claim(batch_size: int, now: datetime, worker: str) -> list[int]:
    """Lease up to ``batch_size`` due rows (fewer, see :func:`claim_limit`) to this worker;
    commits. Returns their ids."""
    limit = claim_limit(batch_size, current_app.config.get("MAIL_TIMEOUT"))
    stmt = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == OutboxStatus.PENDING,
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(db.session.scalars(stmt))
    if ids:
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(locked_until=now + LEASE)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    log.debug("worker %s claimed %d rows", worker, len(ids))
    return ids


class Lease:
    """The rows of one batch and the lease they carry. The ``locked_until`` a claim wrote is
    the token: a row whose value changed was taken over by another worker."""

    def __init__(self, until: datetime | None) -> None:
        self.until = until

    def due_for_renewal(self, now: datetime) -> bool:
        return self.until is not None and now >= self.until - LEASE / 2

    def renew(self, ids: list[int], now: datetime) -> set[int] | None:
        """Extend the lease of ``ids``; returns those still ours, ``None`` if the database
        failed (the caller stops: what it cannot hold, it must not send)."""
        new = now + LEASE
        try:
            db.session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id.in_(ids),
                    OutboxMessage.status == OutboxStatus.PENDING,
                    OutboxMessage.locked_until == self.until,
                )
                .values(locked_until=new)
                .execution_options(synchronize_session=False)
            )
            held = set(
                db.session.scalars(
                    select(OutboxMessage.id).where(
                        OutboxMessage.id.in_(ids), OutboxMessage.locked_until == new
                    )
                )
            )
            db.session.commit()
        except SQLAlchemyError as exc:
            _rollback()
            log.error("cannot renew the lease of %d outbox rows: %s", len(ids), exc)
            return None
        self.until = new
        return held

    def give_back(self, ids: list[int]) -> None:
        """Rows not sent go back to the queue now instead of when the lease runs out."""
        if not ids or self.until is None:
            return
        try:
            db.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids), OutboxMessage.locked_until == self.until)
                .values(locked_until=None)
                .execution_options(synchronize_session=False)
            )
            db.session.commit()
        except SQLAlchemyError as exc:  # they come back when the lease runs out
            _rollback()
            log.warning("cannot give back %d outbox rows: %s", len(ids), exc)


def _load(ids: list[int]) -> list[OutboxMessage]:
    rows = db.session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .options(
            selectinload(OutboxMessage.registration).selectinload(Registration.event),
            selectinload(OutboxMessage.registration).undefer(Registration.checkin_qr),
            selectinload(OutboxMessage.registration).selectinload(Registration.answers),
        )
        .order_by(OutboxMessage.id)
    )
    return list(rows)


# --- Sending ------------------------------------------------------------------------------------


def send_batch(
    ids: list[int],
    *,
    clock: Callable[[], datetime] = utcnow,
    should_stop: Callable[[], bool] = lambda: False,
) -> PassResult:
    """Send the claimed rows over one connection, committing each result as it comes.

    Each mail is rendered and built on its own; an error in one (a template, the data, a
    message the transport refuses) fails that row with the reason and the batch goes on.
    A failure of the connection itself (refused, timeout, dropped) puts the row in hand and all
    rows not yet sent back for a later attempt. A result that cannot be committed stops the
    batch (the ledger keeps it). Rows left when ``should_stop`` turns true are given back at
    once (SIGTERM finishes the message in hand, not the batch)."""
    result = PassResult()
    ledger = ledger_for(current_app._get_current_object())  # type: ignore[attr-defined]
    rows = _load(ids)
    lease = Lease(max((r.locked_until for r in rows if r.locked_until), default=None))
    # Plain values: each commit expires the ORM objects, and reloading them would cost a query.
    attempts = {row.id: row.attempts for row in rows}
    queue = [row.id for row in rows]
    in_hand: int | None = None
    base_url = current_app.config["BASE_URL"]
    with current_app.test_request_context("/", base_url=base_url):
        messages = dict(zip(queue, notifications.build_messages(rows), strict=True))
    del rows
    try:
        # Ends the read transaction (and keeps a check-in code made while rendering): no
        # transaction stays open while the mail server thinks.
        db.session.commit()
    except SQLAlchemyError as exc:
        _rollback()
        result.errors.append(f"database: {type(exc).__name__}")
        lease.give_back(queue)
        return result
    try:
        # One connection for the batch's records: a checkout (and its ping) per mail costs.
        with db.engine.connect() as records, open_transport() as transport:
            while queue and not should_stop():
                if lease.due_for_renewal(clock()):
                    held = lease.renew(queue, clock())
                    if held is None:
                        result.errors.append("cannot renew the lease (database)")
                        break
                    queue = [row_id for row_id in queue if row_id in held]
                    if not queue:
                        break
                in_hand = row_id = queue[0]
                done = _send_one(row_id, attempts[row_id], messages[row_id], transport, clock)
                in_hand = None
                queue.pop(0)
                ledger.add(done)
                _count(result, done.kind)
                if not ledger.flush(records):  # stop: nothing new goes out before it is written
                    result.errors.append("cannot record results (database)")
                    break
    except (smtplib.SMTPException, OSError) as exc:
        error = str(classify(exc))
        # Mid-batch, the mail in hand takes the blame and waits its back-off; the rows not
        # tried yet go back untouched, so a mail that makes the server hang up cannot hold
        # the others back (if the server is really down, the next pass finds out).
        # Without a mail in hand the connection itself failed: every row waits.
        blamed = [in_hand] if in_hand is not None else list(queue)
        log.warning(
            "mail server failed, %d messages wait for the next attempt: %s", len(blamed), error
        )
        now = clock()
        for row_id in blamed:
            ledger.add(outcome(row_id, attempts[row_id], "retry", now, error))
            result.retry += 1
        queue = [row_id for row_id in queue if row_id not in blamed]
        result.errors.append(error)
        if not ledger.flush():
            result.errors.append("cannot record results (database)")
    finally:
        lease.give_back(queue)
    return result


def _count(result: PassResult, kind: str) -> None:
    setattr(result, kind, getattr(result, kind) + 1)


def ids_of(rows: list[OutboxMessage]) -> list[int]:
    return [row.id for row in rows]


def _send_one(
    row_id: int,
    attempts: int,
    message: Message | Exception | None,
    transport: Transport,
    clock: Callable[[], datetime],
) -> Outcome:
    if isinstance(message, Exception):  # a template bug or bad data must not block the queue
        log.error("cannot render outbox row %s: %r", row_id, message)
        error = f"render error: {type(message).__name__}: {message}"
        return outcome(row_id, attempts, "failed", clock(), error)
    if message is None:
        return outcome(row_id, attempts, "skipped", clock(), "no longer applicable")
    try:
        transport.send(message)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
        # The server answered for this message; the connection is fine for the next one.
        error = classify(exc)
        kind = "failed" if isinstance(error, PermanentError) else "retry"
        return outcome(row_id, attempts, kind, clock(), str(error))
    except (smtplib.SMTPException, OSError):
        raise  # the connection itself: send_batch puts this row and the rest back
    except Exception as exc:  # this message cannot be sent (its data); the next one can
        log.error("cannot send outbox row %s: %r", row_id, exc)
        error = f"send error: {type(exc).__name__}: {exc}"
        return outcome(row_id, attempts, "failed", clock(), error)
    return outcome(row_id, attempts, "sent", clock())


def send_due(
    *,
    batch_size: int = 100,
    clock: Callable[[], datetime] = utcnow,
    should_stop: Callable[[], bool] = lambda: False,
    worker: str | None = None,
) -> PassResult:
    """Send everything that is due now, batch after batch. Returns the totals.

    Results a previous pass could not record are written first; if that still fails, nothing
    is claimed or sent in this pass."""
    worker = worker or uuid.uuid4().hex[:8]
    total = PassResult()
    if not ledger_for(current_app._get_current_object()).flush():  # type: ignore[attr-defined]
        total.errors.append("cannot record earlier results (database); not sending")
        return total
    while not should_stop():
        ids = claim(batch_size, clock(), worker)
        if not ids:
            break
        batch = send_batch(ids, clock=clock, should_stop=should_stop)
        total.add(batch)
        if batch.errors:  # the server or the database is away: stop, the rows wait their turn
            break
    return total
