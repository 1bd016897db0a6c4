"""Time helpers: everything is stored in UTC and shown in the event's zone.

``utcnow`` is the one clock of the application; tests replace it (``set_clock``) to travel in time
instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

_clock: Callable[[], datetime] | None = None


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    now = _clock() if _clock is not None else datetime.now(UTC)
    return now.astimezone(UTC)


def set_clock(clock: Callable[[], datetime] | None) -> None:
    """Replace the clock (``None`` restores the real one). For tests and benchmarks."""
    global _clock
    _clock = clock


def is_valid_timezone(name: str) -> bool:
    if not name or name not in available_timezones():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def as_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; naive values are refused (a naive time has no meaning here)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: a time zone offset is required")
    return value.astimezone(UTC)
