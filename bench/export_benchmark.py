"""Benchmark: the attendee exports of an event with N participants and two custom questions.

Reports seconds and peak memory of reading the rows alone and of the CSV, Excel and sign-in sheet
(PDF) exports, next to a plain ``csv.writer`` writing the same rows, already in memory, to a
StringIO, in the same run. Each
export runs twice: once timed (nothing traced), once under tracemalloc for its peak of Python
allocations (tracing slows Python down, so its time is not the one reported). "rss +" is how far
the process's resident high-water mark (ru_maxrss) rose during the timed run: 0 when the export
stayed below an earlier peak.

    .venv/bin/python -m bench.export_benchmark [--participants 10000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pypdf import PdfReader
from sqlalchemy import insert, select

from bench.seeding import bench_event, registration_row
from registration import create_app
from registration.extensions import db
from registration.models import (
    Answer,
    Event,
    Question,
    QuestionKind,
    Registration,
)
from registration.services import exports
from registration.timeutil import utcnow

FIRST_NAMES = ["Jürgen", "Zoë", "Łukasz", "Anna", "Björn", "Dörte", "Emil", "Ines", "Özlem", "Karl"]
LAST_NAMES = ["Weiß", "Müller", "Żółć", "Ärger", "Schulz", "Groß", "Neumann", "Öztürk", "Lange"]
ORGANISATIONS = [
    "Stadt Jena",
    "Landkreis Elbe-Elster",
    "Stadtverwaltung Herzberg (Elster), Fachbereich Bauen und Stadtentwicklung",
    "Landesamt für Umwelt, Naturschutz und Geologie Mecklenburg-Vorpommern",
    "",
]
LUNCH = ["vegetarisch", "vegan", "mit Fleisch"]


def seed(n: int) -> Event:
    """One on-site event, two questions, n confirmed registrations with answers (bulk)."""
    rng = random.Random(2026)
    event = bench_event()
    lunch = Question(
        event_id=event.id, key="lunch", position=0, label="Mittagessen",
        kind=QuestionKind.SINGLE_CHOICE, options=LUNCH,
    )  # fmt: skip
    needs = Question(
        event_id=event.id, key="needs", position=1, label="Barrierefreiheit", kind=QuestionKind.TEXT
    )
    db.session.add_all([lunch, needs])
    db.session.flush()
    now = utcnow()
    rows = [
        registration_row(
            event, i, now,
            first_name=rng.choice(FIRST_NAMES), last_name=f"{rng.choice(LAST_NAMES)} {i}",
            organisation=rng.choice(ORGANISATIONS), created_at=now - timedelta(minutes=n - i),
            checked_in_at=now if i % 3 == 0 else None,
        )
        for i in range(n)
    ]  # fmt: skip
    db.session.execute(insert(Registration), rows)
    ids = db.session.scalars(select(Registration.id).order_by(Registration.id)).all()
    answers = []
    for i, rid in enumerate(ids):
        answers.append({"registration_id": rid, "question_id": lunch.id, "value": LUNCH[i % 3]})
        if i % 4 == 0:
            answers.append(
                {"registration_id": rid, "question_id": needs.id, "value": "Rollstuhlplatz"}
            )
    db.session.execute(insert(Answer), answers)
    db.session.commit()
    return event


@dataclass
class Result:
    name: str
    seconds: float
    peak_bytes: int
    rss_growth_kib: int
    size: str


def measure(name: str, run: Callable[[], Any], describe: Callable[[Any], str]) -> Result:
    db.session.expire_all()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    output = run()
    seconds = time.perf_counter() - started
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    size = describe(output)
    del output

    db.session.expire_all()
    tracemalloc.start()
    output = run()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del output
    return Result(name, seconds, peak, rss_growth, size)


def mib(n: float) -> str:
    return f"{n / (1024 * 1024):7.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=10_000)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-exports-"))
    app = create_app(
        "testing",
        SQLALCHEMY_DATABASE_URI=args.database_url or f"sqlite:///{workdir / 'bench.sqlite'}",
    )
    with app.app_context():
        db.drop_all()
        db.create_all()
        event = seed(args.participants)
        dialect = db.engine.dialect.name

        def csv_export() -> bytes:
            # Encoded chunk by chunk, as a streaming view sends it.
            return b"".join(chunk.encode("utf-8") for chunk in exports.csv_lines(event))

        results = [
            measure(
                "rows only",
                lambda: sum(1 for _row in exports.participant_rows(event)),
                lambda count: f"{count:,} rows read and sorted (participant_rows)",
            ),
            measure("CSV export", csv_export, lambda data: f"{len(data) / 1024:,.0f} KiB"),
            measure(
                "Excel export",
                lambda: exports.xlsx_file(event),
                lambda data: f"{len(data) / 1024:,.0f} KiB",
            ),
            measure(
                "sign-in sheet PDF",
                lambda: exports.signin_sheet_pdf(event),
                lambda data: (
                    f"{len(data) / 1024:,.0f} KiB, {len(PdfReader(io.BytesIO(data)).pages)} pages"
                ),
            ),
        ]

        # Baseline input: the same cells, in memory before the clock starts.
        text = "".join(exports.csv_lines(event))
        rows = list(csv.reader(io.StringIO(text[1:], newline=""), delimiter=";"))
        assert len(rows) == args.participants + 1

        def plain_csv() -> str:
            buffer = io.StringIO()
            writer = csv.writer(buffer, delimiter=";")
            writer.writerows(rows)
            return buffer.getvalue()

        baseline = measure(
            "plain csv.writer", plain_csv, lambda data: f"{len(data.encode()) / 1024:,.0f} KiB"
        )
        db.session.remove()  # ends the read transaction (on SQLite it holds the write lock)
        db.drop_all()
        db.engine.dispose()

    print(f"participants: {args.participants} ({dialect}), two custom questions")
    print(f"{'':20} {'seconds':>8} {'peak (tracemalloc)':>19} {'rss +':>11}  output")
    for r in [*results, baseline]:
        print(
            f"{r.name:20} {r.seconds:8.2f} {mib(r.peak_bytes):>19} "
            f"{mib(r.rss_growth_kib * 1024):>11}  {r.size}"
        )
    print(f"CSV export / plain csv.writer: {results[1].seconds / baseline.seconds:.1f}x the time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
