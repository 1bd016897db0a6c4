"""kill -9 of a real worker process mid-batch: each mail reaches its recipient, and at most one
mail (the one the worker was sending when it died) reaches it twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from registration.extensions import db
from registration.models import OutboxMessage, OutboxStatus
from registration.services import delivery
from registration.timeutil import utcnow

from .conftest import make_event
from .smtp import SMTPServer
from .test_mail import register

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def start_worker(database_url: str, port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    # Settings from the developer's shell (FLASK_DEBUG, a real mail server) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "MAIL_"))}
    env.update(
        REGISTRATION_CONFIG="testing",
        DATABASE_URL=database_url,
        INSTANCE_PATH=str(tmp_path / "worker-instance"),
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(port),
        MAIL_TIMEOUT="5",
        ANONYMISE_INTERVAL_SECONDS="0",
    )
    flask = Path(sys.executable).with_name("flask")
    with (tmp_path / "worker.log").open("wb") as log:
        return subprocess.Popen(
            [str(flask), "--app", "registration", "mail", "worker", "--interval", "0.5"],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)
def test_kill_9_mid_batch_sends_at_most_one_mail_twice(app, database_url, tmp_path):
    event = make_event(capacity_on_site=None)
    for n in range(60):
        register(event, n)
    killed = threading.Event()
    worker: list[subprocess.Popen[bytes]] = []

    def kill_on_the_30th(n: int, message) -> None:
        if n == 30:  # the server has the mail; the worker dies before it hears "250"
            worker[0].send_signal(signal.SIGKILL)
            worker[0].wait(10)
            killed.set()
        return None

    server = SMTPServer(on_data=kill_on_the_30th)
    server.start()
    try:
        worker.append(start_worker(database_url, server.port, tmp_path))
        assert killed.wait(60), (tmp_path / "worker.log").read_text()
        assert worker[0].returncode == -signal.SIGKILL
        # The dead worker's leases run out (ten minutes; here at once), then a worker finishes.
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.locked_until.is_not(None))
            .values(locked_until=utcnow())
        )
        db.session.commit()
        app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, MAIL_TIMEOUT=5)
        delivery.send_due()
    finally:
        if worker and worker[0].poll() is None:
            worker[0].kill()
            worker[0].wait(10)
        server.stop()
    counts = Counter(str(m["Message-ID"]) for m in server.messages)
    assert len(counts) == 60  # everybody got theirs
    duplicates = sum(c - 1 for c in counts.values())
    assert duplicates <= 1, counts.most_common(3)
    sent = select(func.count()).where(OutboxMessage.status == OutboxStatus.SENT)
    assert db.session.scalar(sent) == 60
