"""The mail worker: every few seconds, schedule what is due and send the outbox; every hour
(``ANONYMISE_INTERVAL_SECONDS``) anonymise the participants of events past their retention period.

``flask --app registration mail worker`` runs it until SIGTERM or Ctrl-C, which finish the
message in hand, write the results not yet recorded, and then stop. Several workers may run at
once on PostgreSQL; on SQLite one is enough (and more would only queue for the database lock).
"""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from datetime import datetime, timedelta
from types import FrameType

from flask import current_app

from .extensions import db
from .services import delivery, privacy, scheduling
from .timeutil import utcnow

log = logging.getLogger(__name__)


def run_once(*, should_stop: threading.Event | None = None) -> delivery.PassResult:
    """One pass: turn due reminders and dial-in mails into outbox rows, then send what is due."""
    stop = should_stop or threading.Event()
    scheduling.schedule_due()
    db.session.commit()
    return delivery.send_due(should_stop=stop.is_set)


class Anonymiser:
    """Runs the GDPR retention (``privacy.anonymise_due_events``) at most every ``every`` seconds
    of the application's clock; ``every <= 0`` never runs it."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.next_at: datetime | None = None

    def run_if_due(self) -> privacy.AnonymiseResult | None:
        now = utcnow()
        if self.every <= 0 or (self.next_at is not None and now < self.next_at):
            return None
        self.next_at = now + timedelta(seconds=self.every)  # a failure waits for the next turn
        result = privacy.anonymise_due_events(now)
        if result.events:
            log.info(
                "anonymised %d registrations of %d events past their retention period",
                result.registrations, len(result.events),
            )  # fmt: skip
        return result


def run_forever(interval: float = 5.0, stop: threading.Event | None = None) -> None:
    """Run passes until ``stop`` is set (by SIGTERM/SIGINT when run from the CLI)."""
    stop = stop or threading.Event()
    name = uuid.uuid4().hex[:8]
    anonymiser = Anonymiser(current_app.config.get("ANONYMISE_INTERVAL_SECONDS", 3600))
    log.info("mail worker %s started (every %.0f s)", name, interval)
    while not stop.is_set():
        try:
            anonymiser.run_if_due()
            result = run_once(should_stop=stop)
            if result.handled:
                log.info(
                    "sent %d, retry %d, failed %d, skipped %d",
                    result.sent, result.retry, result.failed, result.skipped,
                )  # fmt: skip
        except Exception:  # the database may be away for a moment: log, wait, try again
            log.exception("mail worker pass failed")
            db.session.rollback()
        finally:
            db.session.remove()
        stop.wait(interval)
    # Results the database could not take yet: one last try, or the log names the rows (their
    # mails went out; after the lease they would go out once more).
    ledger = delivery.ledger_for(current_app._get_current_object())  # type: ignore[attr-defined]
    try:
        ledger.flush()
    finally:
        db.session.remove()
    log.info("mail worker %s stopped", name)


def install_signal_handlers(stop: threading.Event) -> None:
    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the message in hand, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
