"""The sample events shipped with the package, moved to dates a few weeks ahead."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

#: Days from today before which each demo event (in file order) must not start.
LEAD_DAYS = (18, 25)
_DATE_KEYS = ("starts_at", "ends_at", "registration_opens_at", "registration_closes_at")


def load_document() -> dict[str, Any]:
    text = resources.files("registration").joinpath("demo/events.json").read_text("utf-8")
    return json.loads(text)


def demo_document(today: date) -> dict[str, Any]:
    """The shipped sample events, each moved by whole weeks to start between its lead time and a
    week after that. Whole weeks keep the weekday; shifting the local wall time keeps 11:00 at
    11:00 across a daylight-saving change. The same ``today`` always gives the same dates."""
    document = load_document()
    for index, event in enumerate(document["events"]):
        zone = ZoneInfo(event.get("timezone") or "Europe/Berlin")
        start = datetime.fromisoformat(event["starts_at"]).astimezone(zone)
        earliest = today + timedelta(days=LEAD_DAYS[index % len(LEAD_DAYS)])
        weeks = -((start.date() - earliest).days // 7)  # ceil division: never before earliest
        for key in _DATE_KEYS:
            if event.get(key):
                local = datetime.fromisoformat(event[key]).astimezone(zone).replace(tzinfo=None)
                moved = (local + timedelta(weeks=weeks)).replace(tzinfo=zone)
                event[key] = moved.isoformat()
    return document


@contextmanager
def assets_dir() -> Iterator[Path]:
    """The folder of the demo's files (title image, flyer) as a real path."""
    with resources.as_file(resources.files("registration").joinpath("demo")) as path:
        yield Path(path)
