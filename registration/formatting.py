"""Template filters: dates in the event's zone and the reader's language."""

from __future__ import annotations

from datetime import datetime

from babel.dates import format_date, format_time
from flask import Flask
from flask_babel import get_locale

from .models import Event


def event_when(event: Event) -> str:
    """E.g. "Mittwoch, 9. Dezember 2026, 11:00–16:30 Uhr" in the event's zone."""
    locale = str(get_locale() or "de")
    zone = event.zone
    start = event.starts_at.astimezone(zone)
    end = event.ends_at.astimezone(zone)
    day = format_date(start.date(), "full", locale=locale)
    times = (
        f"{format_time(start, 'HH:mm', locale=locale)}–{format_time(end, 'HH:mm', locale=locale)}"
    )
    if start.date() != end.date():
        end_day = format_date(end.date(), "full", locale=locale)
        times = f"{format_time(start, 'HH:mm', locale=locale)} – {end_day}, " + format_time(
            end, "HH:mm", locale=locale
        )
    suffix = " Uhr" if locale.startswith("de") else ""
    return f"{day}, {times}{suffix}"


def local_datetime(value: datetime, event: Event) -> str:
    locale = str(get_locale() or "de")
    local = value.astimezone(event.zone)
    day = format_date(local.date(), "medium", locale=locale)
    return f"{day} {format_time(local, 'HH:mm', locale=locale)}"


def init_app(app: Flask) -> None:
    app.add_template_filter(event_when, "event_when")
    app.add_template_filter(local_datetime, "local_datetime")
