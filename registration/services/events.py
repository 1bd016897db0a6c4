"""Creating and updating events from plain data (the JSON import and, later, the back office)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import Attendance, Event, EventFormat, EventStatus, modes_for_format
from ..timeutil import is_valid_timezone, utcnow
from .errors import CapacityConflict
from .signup import confirmed_count, lock_event, promote_all, waitlisted_count

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

_TOP_LEVEL_KEYS = {
    "slug", "title", "subtitle", "description", "format", "language", "starts_at", "ends_at",
    "timezone", "venue", "contact", "capacity", "waitlist", "registration_opens_at",
    "registration_closes_at", "status", "dial_in", "reminder_days_before", "dial_in_hours_before",
}  # fmt: skip
_VENUE_KEYS = {"name", "address"}
_CONTACT_KEYS = {"name", "email", "phone"}
_CAPACITY_KEYS = {"on_site", "online"}
_DIAL_IN_KEYS = {"url", "meeting_id", "passcode", "phone", "instructions"}


class EventDataError(Exception):
    """A file or record of event data is invalid; ``messages`` names event and field of each."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("\n".join(messages))


@dataclass
class EventData:
    """Validated attributes of one event, ready for :func:`upsert_event`."""

    slug: str
    attributes: dict[str, Any] = field(default_factory=dict)


class _Checker:
    """Collects messages for one record instead of stopping at the first."""

    def __init__(self, label: str, record: Mapping[str, Any]) -> None:
        self.label = label
        self.record = record
        self.messages: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.messages.append(f"{self.label}: {path}: {message}")

    def text(
        self, source: Mapping[str, Any], key: str, path: str, *, required: bool = False,
        max_length: int = 200,
    ) -> str:  # fmt: skip
        value = source.get(key)
        if value is None:
            if required:
                self.error(path, "is required")
            return ""
        if not isinstance(value, str):
            self.error(path, "must be a string")
            return ""
        value = value.strip()
        if required and not value:
            self.error(path, "must not be empty")
        if len(value) > max_length:
            self.error(path, f"is longer than {max_length} characters")
        if "\x00" in value:
            self.error(path, "contains a NUL character")
        return value

    def choice(self, key: str, choices: type, default: str | None = None) -> Any:
        value = self.record.get(key, default)
        allowed = [c.value for c in choices]
        if value not in allowed:
            self.error(key, f"must be one of {', '.join(allowed)} (got {value!r})")
            return None
        return choices(value)

    def moment(self, key: str, *, required: bool) -> datetime | None:
        value = self.record.get(key)
        if value is None:
            if required:
                self.error(key, "is required")
            return None
        if not isinstance(value, str):
            self.error(key, "must be an ISO 8601 date-time string")
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.error(key, f"is not an ISO 8601 date-time: {value!r}")
            return None
        if parsed.tzinfo is None:
            self.error(key, f"needs a UTC offset, e.g. 2026-12-09T11:00:00+01:00 (got {value!r})")
            return None
        return parsed

    def count(self, source: Mapping[str, Any], key: str, path: str, default: int | None) -> Any:
        value = source.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.error(path, f"must be a whole number of 0 or more (got {value!r})")
            return None
        return value

    def section(self, key: str, allowed: set[str]) -> Mapping[str, Any]:
        value = self.record.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.error(key, "must be an object")
            return {}
        for unknown in sorted(set(value) - allowed):
            self.error(f"{key}.{unknown}", "is not a known field")
        return value


def default_timezone() -> str:
    """The zone for events that name none: the ``TIMEZONE`` setting."""
    return current_app.config.get("TIMEZONE") or "Europe/Berlin"


def parse_event(record: Any, label: str) -> EventData:
    """Validate one event record of the import format; raises :class:`EventDataError`."""
    if not isinstance(record, Mapping):
        raise EventDataError([f"{label}: must be an object"])
    check = _Checker(label, record)
    for unknown in sorted(set(record) - _TOP_LEVEL_KEYS):
        check.error(unknown, "is not a known field")

    slug = check.text(record, "slug", "slug", required=True, max_length=80)
    if slug and not SLUG_RE.match(slug):
        check.error("slug", "may contain only a-z, 0-9 and single hyphens (e.g. werkstatt-21)")
    attrs: dict[str, Any] = {
        "title": check.text(record, "title", "title", required=True),
        "subtitle": check.text(record, "subtitle", "subtitle"),
        "description": check.text(record, "description", "description", max_length=50_000),
        "format": check.choice("format", EventFormat),
        "status": check.choice("status", EventStatus, default=EventStatus.DRAFT.value),
        "language": check.text(record, "language", "language", max_length=5) or "de",
    }
    if attrs["language"] not in ("de", "en"):
        check.error("language", "must be de or en")

    starts_at = check.moment("starts_at", required=True)
    ends_at = check.moment("ends_at", required=True)
    if starts_at and ends_at and ends_at <= starts_at:
        check.error("ends_at", "must be after starts_at")
    attrs["starts_at"], attrs["ends_at"] = starts_at, ends_at
    timezone = check.text(record, "timezone", "timezone", max_length=64) or default_timezone()
    if not is_valid_timezone(timezone):
        check.error("timezone", f"is not a known IANA time zone: {timezone!r}")
    attrs["timezone"] = timezone

    opens = check.moment("registration_opens_at", required=False)
    closes = check.moment("registration_closes_at", required=False)
    if opens and closes and closes <= opens:
        check.error("registration_closes_at", "must be after registration_opens_at")
    attrs["registration_opens_at"], attrs["registration_closes_at"] = opens, closes

    venue = check.section("venue", _VENUE_KEYS)
    attrs["venue_name"] = check.text(venue, "name", "venue.name")
    attrs["venue_address"] = check.text(venue, "address", "venue.address", max_length=1000)

    contact = check.section("contact", _CONTACT_KEYS)
    attrs["contact_name"] = check.text(contact, "name", "contact.name")
    attrs["contact_email"] = check.text(contact, "email", "contact.email", max_length=254)
    if attrs["contact_email"]:
        try:
            validate_email(attrs["contact_email"], check_deliverability=False)
        except EmailNotValidError as exc:
            check.error("contact.email", f"is not a valid email address ({exc})")
    attrs["contact_phone"] = check.text(contact, "phone", "contact.phone", max_length=50)

    capacity = check.section("capacity", _CAPACITY_KEYS)
    attrs["capacity_on_site"] = check.count(capacity, "on_site", "capacity.on_site", None)
    attrs["capacity_online"] = check.count(capacity, "online", "capacity.online", None)

    waitlist = record.get("waitlist", True)
    if not isinstance(waitlist, bool):
        check.error("waitlist", "must be true or false")
    attrs["waitlist_enabled"] = waitlist is True

    dial_in = check.section("dial_in", _DIAL_IN_KEYS)
    attrs["dial_in_url"] = check.text(dial_in, "url", "dial_in.url", max_length=500)
    if attrs["dial_in_url"] and not attrs["dial_in_url"].startswith(("https://", "http://")):
        check.error("dial_in.url", "must start with https:// or http://")
    attrs["dial_in_meeting_id"] = check.text(
        dial_in, "meeting_id", "dial_in.meeting_id", max_length=100
    )
    attrs["dial_in_passcode"] = check.text(dial_in, "passcode", "dial_in.passcode", max_length=100)
    attrs["dial_in_phone"] = check.text(dial_in, "phone", "dial_in.phone", max_length=1000)
    attrs["dial_in_instructions"] = check.text(
        dial_in, "instructions", "dial_in.instructions", max_length=5000
    )
    attrs["reminder_days_before"] = check.count(
        record, "reminder_days_before", "reminder_days_before", 2
    )
    attrs["dial_in_hours_before"] = check.count(
        record, "dial_in_hours_before", "dial_in_hours_before", 24
    )
    if attrs["reminder_days_before"] is None:
        attrs["reminder_days_before"] = 2
    if attrs["dial_in_hours_before"] is None:
        attrs["dial_in_hours_before"] = 24

    if check.messages:
        raise EventDataError(check.messages)
    return EventData(slug=slug, attributes=attrs)


def parse_event_file(document: Any) -> list[EventData]:
    """Validate a whole import document ``{"events": [...]}``; every problem is reported at once."""
    if not isinstance(document, Mapping) or not isinstance(document.get("events"), list):
        raise EventDataError(['the file must be a JSON object with a list "events"'])
    messages: list[str] = []
    parsed: list[EventData] = []
    seen: set[str] = set()
    for index, record in enumerate(document["events"]):
        slug = record.get("slug") if isinstance(record, Mapping) else None
        label = f"events[{index}]" + (f" ({slug})" if isinstance(slug, str) and slug else "")
        try:
            data = parse_event(record, label)
        except EventDataError as exc:
            messages.extend(exc.messages)
            continue
        if data.slug in seen:
            messages.append(f"{label}: slug: appears more than once in the file")
        seen.add(data.slug)
        parsed.append(data)
    if messages:
        raise EventDataError(messages)
    return parsed


def upsert_event(data: EventData) -> tuple[Event, bool]:
    """Create the event ``data.slug`` or update it. Returns ``(event, created)``.

    Raising a capacity promotes waiting participants at once; lowering it below the number of
    confirmed participants, or dropping a mode that has active participants, raises
    :class:`CapacityConflict` (nobody loses a confirmed seat silently).
    """
    event = db.session.scalars(select(Event).where(Event.slug == data.slug)).first()
    if event is None:
        event = Event(slug=data.slug, **data.attributes)
        db.session.add(event)
        db.session.flush()
        return event, True

    event = lock_event(event.id)
    attrs = data.attributes
    new_format = attrs["format"]
    for mode in Attendance:
        keeps_mode = mode in modes_for_format(new_format)
        confirmed = confirmed_count(event, mode)
        if not keeps_mode and (confirmed or waitlisted_count(event, mode)):
            raise CapacityConflict(
                f"{data.slug}: cannot drop {mode.value} attendance, "
                "participants are registered for it"
            )
        capacity = attrs["capacity_on_site" if mode == Attendance.ON_SITE else "capacity_online"]
        if keeps_mode and capacity is not None and capacity < confirmed:
            raise CapacityConflict(
                f"{data.slug}: capacity.{mode.value} {capacity} is below the {confirmed} "
                "participants already confirmed"
            )
    for key, value in attrs.items():
        setattr(event, key, value)
    event.updated_at = utcnow()
    db.session.flush()
    promote_all(event)
    return event, False
