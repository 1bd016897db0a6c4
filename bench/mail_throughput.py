"""Benchmark: deliver N confirmation emails from the outbox to a local SMTP server.

Correctness first: every mail is rendered on its own from its own registration and built by the
standard library's email package (see registration/mailer.py); a sample of what the server
received is parsed back with ``email.policy.strict`` and must be free of defects and addressed
to the right person, or the run fails whatever its speed.

Then speed: messages per second of the real worker path (claim, render from the database, build,
send over one connection per batch, record) next to plain smtplib sending the same N
pre-rendered messages over one connection, in the same run against the same server. Target: at
least a tenth of smtplib's rate (smtplib alone does no work but the socket writes).

    .venv/bin/python -m bench.mail_throughput [--messages 5000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import smtplib
import sys
import tempfile
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller
from sqlalchemy import insert, select

from bench.seeding import bench_event, registration_row
from registration import create_app
from registration.extensions import db
from registration.models import OutboxMessage, Registration
from registration.notifications import build_message
from registration.qrcode import ensure_checkin_qr
from registration.services import delivery
from registration.timeutil import utcnow
from tests.smtp import free_port

TARGET_RATIO = 0.1
#: Every SAMPLE-th message the server receives is kept and checked after the run.
SAMPLE = 50


class CountingHandler:
    """Accepts everything, counts, and keeps a sample (the server must not be the bottleneck)."""

    def __init__(self) -> None:
        self.count = 0
        self.sample: list[tuple[list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.count += 1
            if self.count % SAMPLE == 0:
                self.sample.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def check_sample(sample: list[tuple[list[str], bytes]]) -> list[str]:
    """Problems in the sampled mails: parser defects, or a To that is not the envelope's."""
    problems = []
    for recipients, raw in sample:
        message = message_from_bytes(raw, policy=policy.strict)
        defects = [d for part in message.walk() for d in part.defects]
        defects += [d for name, value in message.items() for d in getattr(value, "defects", ())]
        if defects:
            problems.append(f"{recipients}: {defects}")
        (to,) = message["To"].addresses
        number = to.addr_spec.removeprefix("p").split("@")[0]
        if [to.addr_spec] != recipients or to.display_name != f"Erika Muster {number}":
            problems.append(f"{recipients}: To is {message['To']}")
    return problems


def seed(n: int) -> list[int]:
    """One event, n confirmed registrations, n pending confirmation rows (bulk, not measured)."""
    event = bench_event(contact_name="Wirtschaftsförderung Jena", contact_email="orga@example.org")
    now = utcnow()
    rows = [registration_row(event, i, now) for i in range(n)]
    db.session.execute(insert(Registration), rows)
    ids = [r.id for r in db.session.query(Registration.id).order_by(Registration.id)]
    # Sign-ups make the check-in QR code (registration.qrcode.ensure_checkin_qr); so does this.
    for registration in db.session.scalars(select(Registration)):
        ensure_checkin_qr(registration)
    db.session.flush()
    db.session.execute(
        insert(OutboxMessage),
        [
            {"kind": "confirmation", "registration_id": rid, "event_id": event.id,
             "dedupe_key": f"confirmation:{rid}", "status": "pending", "attempts": 0,
             "next_attempt_at": now, "last_error": "", "created_at": now}
            for rid in ids
        ],
    )  # fmt: skip
    db.session.commit()
    return ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--batch-size", type=int, default=200)
    args = parser.parse_args()

    handler = CountingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-mail-"))
    app = create_app(
        "testing",
        SQLALCHEMY_DATABASE_URI=args.database_url or f"sqlite:///{workdir / 'bench.sqlite'}",
        MAIL_SERVER="127.0.0.1", MAIL_PORT=port, BASE_URL="https://anmeldung.example.org",
    )  # fmt: skip
    try:
        with app.app_context():
            db.drop_all()
            db.create_all()
            seed(args.messages)

            # Baseline input: the same messages, rendered beforehand (not measured).
            rows = db.session.query(OutboxMessage).order_by(OutboxMessage.id).all()
            with app.test_request_context("/", base_url=app.config["BASE_URL"]):
                prepared = [
                    (m.sender, m.recipients, m.as_bytes()) for m in map(build_message, rows)
                ]
            db.session.expire_all()

            started = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port) as conn:
                for sender, recipients, data in prepared:
                    conn.sendmail(sender, list(recipients), data)
            smtplib_seconds = time.perf_counter() - started
            assert handler.count == args.messages
            handler.sample.clear()  # only the worker's mails are checked

            started = time.perf_counter()
            result = delivery.send_due(batch_size=args.batch_size)
            outbox_seconds = time.perf_counter() - started
            assert result.sent == args.messages, result
            assert handler.count == 2 * args.messages
            dialect = db.engine.dialect.name
            db.drop_all()
            db.engine.dispose()
    finally:
        controller.stop()

    problems = check_sample(handler.sample)
    smtplib_rate = args.messages / smtplib_seconds
    outbox_rate = args.messages / outbox_seconds
    ratio = outbox_rate / smtplib_rate
    print(f"messages:            {args.messages} ({dialect}, batch size {args.batch_size})")
    print(
        f"plain smtplib:       {smtplib_rate:8.0f} msg/s  ({smtplib_seconds:.2f} s, pre-rendered)"
    )
    print(
        f"outbox worker:       {outbox_rate:8.0f} msg/s  ({outbox_seconds:.2f} s, render + send + record)"
    )
    print(f"ratio:               {ratio:8.2f}  (target >= {TARGET_RATIO})")
    print(f"checked:             {len(handler.sample)} sampled mails, {len(problems)} problems")
    for problem in problems[:10]:
        print(f"  {problem}")
    if problems:
        print("WRONG MAIL")
        return 2
    print("PASS" if ratio >= TARGET_RATIO else "BELOW TARGET")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
