"""Creating and updating events from plain data (the JSON import and, later, the back office)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import (
    ACTIVE_STATUSES,
    Attendance,
    Event,
    EventFile,
    EventFormat,
    EventStatus,
    FileKind,
    Question,
    QuestionKind,
    Registration,
    modes_for_format,
)
from ..timeutil import is_valid_timezone, utcnow
from . import files, outbox
from .errors import CapacityConflict, Message
from .signup import confirmed_count, lock_event, promote_all, waitlisted_count

#: Participants' personal data is anonymised this many days after the event by default (GDPR).
DEFAULT_RETENTION_DAYS = 90
MAX_RETENTION_DAYS = 3650

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

_TOP_LEVEL_KEYS = {
    "slug", "title", "subtitle", "description", "format", "language", "starts_at", "ends_at",
    "timezone", "venue", "contact", "capacity", "waitlist", "registration_opens_at",
    "registration_closes_at", "status", "dial_in", "reminder_days_before", "dial_in_hours_before",
    "questions", "title_image", "attachments", "retention_days",
}  # fmt: skip
DIAL_IN_FIELDS = (
    "dial_in_url", "dial_in_meeting_id", "dial_in_passcode", "dial_in_phone",
    "dial_in_instructions",
)  # fmt: skip
_QUESTION_KEYS = {"key", "label", "kind", "required", "options", "help"}
_TITLE_IMAGE_KEYS = {"file", "alt", "credit"}
_ATTACHMENT_KEYS = {"file", "title"}
QUESTION_KEY_RE = re.compile(r"^[a-z0-9_]{1,40}$")
_VENUE_KEYS = {"name", "address"}
_CONTACT_KEYS = {"name", "email", "phone"}
_CAPACITY_KEYS = {"on_site", "online"}
_DIAL_IN_KEYS = {"url", "meeting_id", "passcode", "phone", "instructions"}
#: The database's INTEGER; larger numbers would fail on insert instead of being explained.
_MAX_INT = 2_147_483_647
#: Dates outside these years are typing mistakes (and year 1 or 9999 overflow in time zones).
_YEARS = (1900, 2999)


def _is_encodable(value: str) -> bool:
    """False for lone surrogates (JSON allows "\\ud800"; no database can store it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class EventDataError(Exception):
    """A file or record of event data is invalid; ``messages`` names event and field of each."""

    def __init__(self, messages: list[str], fields: list[tuple[str, str]] | None = None) -> None:
        self.messages = messages
        #: ``(path, message)`` of each problem, e.g. ``("capacity.on_site", "must be ...")``.
        self.fields = fields or []
        super().__init__("\n".join(messages))


@dataclass
class FileData:
    kind: FileKind
    data: bytes
    filename: str
    title: str = ""


@dataclass
class EventData:
    """Validated attributes of one event, ready for :func:`upsert_event`."""

    slug: str
    attributes: dict[str, Any] = field(default_factory=dict)
    #: Custom questions in form order; ``None`` leaves an existing event's questions alone.
    questions: list[dict[str, Any]] | None = None
    #: Title image and attachments; ``None`` leaves an existing event's files alone.
    files: list[FileData] | None = None


class _Checker:
    """Collects messages for one record instead of stopping at the first."""

    def __init__(self, label: str, record: Mapping[str, Any]) -> None:
        self.label = label
        self.record = record
        self.messages: list[str] = []
        self.fields: list[tuple[str, str]] = []

    def error(self, path: str, message: str) -> None:
        self.messages.append(f"{self.label}: {path}: {message}")
        self.fields.append((path, message))

    def text(
        self, source: Mapping[str, Any], key: str, path: str, *, required: bool = False,
        max_length: int = 200,
    ) -> str:  # fmt: skip
        value = source.get(key)
        if value is None:
            if required:
                self.error(path, Message("is required"))
            return ""
        if not isinstance(value, str):
            self.error(path, Message("must be a string"))
            return ""
        value = value.strip()
        if required and not value:
            self.error(path, Message("must not be empty"))
        if len(value) > max_length:
            self.error(path, Message("is longer than %(limit)s characters", limit=max_length))
        if "\x00" in value:
            self.error(path, Message("contains a NUL character"))
        elif not _is_encodable(value):
            self.error(path, Message("is not valid Unicode text"))
        return value

    def choice(self, key: str, choices: type, default: str | None = None) -> Any:
        value = self.record.get(key, default)
        allowed = [c.value for c in choices]
        if value not in allowed:
            self.error(
                key,
                Message(
                    "must be one of %(choices)s (got %(value)s)",
                    choices=", ".join(allowed),
                    value=repr(value),
                ),
            )
            return None
        return choices(value)

    def moment(self, key: str, *, required: bool) -> datetime | None:
        value = self.record.get(key)
        if value is None:
            if required:
                self.error(key, Message("is required"))
            return None
        if not isinstance(value, str):
            self.error(key, Message("must be an ISO 8601 date-time string"))
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.error(key, Message("is not an ISO 8601 date-time: %(value)s", value=repr(value)))
            return None
        if parsed.tzinfo is None:
            self.error(
                key,
                Message(
                    "needs a UTC offset, e.g. 2026-12-09T11:00:00+01:00 (got %(value)s)",
                    value=repr(value),
                ),
            )
            return None
        if not _YEARS[0] <= parsed.year <= _YEARS[1]:
            self.error(
                key,
                Message(
                    "must be between the years %(first)s and %(last)s",
                    first=_YEARS[0],
                    last=_YEARS[1],
                ),
            )
            return None
        return parsed

    def count(
        self, source: Mapping[str, Any], key: str, path: str, default: int | None,
        maximum: int = _MAX_INT,
    ) -> Any:  # fmt: skip
        value = source.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
            self.error(
                path,
                Message(
                    "must be a whole number from 0 to %(maximum)s (got %(value)s)",
                    maximum=maximum,
                    value=repr(value),
                ),
            )
            return None
        return value

    def section(self, key: str, allowed: set[str]) -> Mapping[str, Any]:
        value = self.record.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.error(key, Message("must be an object"))
            return {}
        for unknown in sorted(set(value) - allowed):
            self.error(f"{key}.{unknown}", Message("is not a known field"))
        return value


def default_timezone() -> str:
    """The zone for events that name none: the ``TIMEZONE`` setting."""
    return current_app.config.get("TIMEZONE") or "Europe/Berlin"


def _parse_questions(check: _Checker) -> list[dict[str, Any]] | None:
    raw = check.record.get("questions")
    if raw is None:
        return None
    if not isinstance(raw, list):
        check.error("questions", Message("must be a list"))
        return None
    questions: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        path = f"questions[{index}]"
        if not isinstance(item, Mapping):
            check.error(path, Message("must be an object"))
            continue
        for unknown in sorted(set(item) - _QUESTION_KEYS):
            check.error(f"{path}.{unknown}", Message("is not a known field"))
        key = check.text(item, "key", f"{path}.key", required=True, max_length=40)
        if key and not QUESTION_KEY_RE.match(key):
            check.error(f"{path}.key", Message("may contain only a-z, 0-9 and _ (e.g. lunch)"))
        if key in seen:
            check.error(f"{path}.key", Message("%(key)s appears more than once", key=repr(key)))
        seen.add(key)
        kind = item.get("kind")
        if kind not in [k.value for k in QuestionKind]:
            check.error(
                f"{path}.kind",
                Message(
                    "must be one of %(choices)s", choices=", ".join(k.value for k in QuestionKind)
                ),
            )
        options = item.get("options") or []
        if not isinstance(options, list) or not all(
            isinstance(o, str) and o.strip() and len(o) <= 200 for o in options
        ):
            check.error(
                f"{path}.options", Message("must be a list of texts (at most 200 characters)")
            )
            options = []
        options = [o.strip() for o in options]
        if len(set(options)) != len(options):
            check.error(f"{path}.options", Message("must not repeat an option"))
        is_choice = kind in (QuestionKind.SINGLE_CHOICE, QuestionKind.MULTIPLE_CHOICE)
        if is_choice and len(options) < 2:
            check.error(f"{path}.options", Message("a choice needs at least two options"))
        if not is_choice and options:
            check.error(f"{path}.options", Message("only choice questions have options"))
        required = item.get("required", False)
        if not isinstance(required, bool):
            check.error(f"{path}.required", Message("must be true or false"))
        questions.append(
            {
                "key": key,
                "label": check.text(item, "label", f"{path}.label", required=True, max_length=300),
                "help_text": check.text(item, "help", f"{path}.help", max_length=500),
                "kind": kind,
                "required": required is True,
                "options": options,
                "position": index,
            }
        )
    return questions


def parse_questions(items: Any) -> list[dict[str, Any]]:
    """Validate a list of questions in the import format (the back office's question editor
    builds the whole list); raises :class:`EventDataError` with ``questions[i].field`` paths."""
    check = _Checker("questions", {"questions": items})
    questions = _parse_questions(check) or []
    if check.messages:
        raise EventDataError(check.messages, check.fields)
    return questions


def question_record(question: Question) -> dict[str, Any]:
    """A stored question in the import format (for :func:`parse_questions`)."""
    return {
        "key": question.key,
        "label": question.label,
        "kind": str(question.kind),
        "required": question.required,
        "options": list(question.options or []),
        "help": question.help_text,
    }


def apply_questions(event: Event, questions: list[dict[str, Any]]) -> None:
    """Make ``questions`` (validated by :func:`parse_questions`) the event's questions."""
    _apply_questions(event, questions)


def _read_file(check: _Checker, path: str, name: Any, base_dir: Path | None) -> bytes | None:
    if not isinstance(name, str) or not name.strip():
        check.error(path, "must name a file")
        return None
    if base_dir is None:
        check.error(path, "files can only be imported from a file on disk")
        return None
    file_path = (base_dir / name).resolve()
    try:
        return file_path.read_bytes()
    except OSError as exc:
        check.error(path, f"cannot read {name!r}: {exc.strerror or exc}")
        return None


def _parse_files(check: _Checker, base_dir: Path | None) -> list[FileData] | None:
    image = check.section("title_image", _TITLE_IMAGE_KEYS)
    attachments = check.record.get("attachments")
    if not image and attachments is None:
        return None
    result: list[FileData] = []
    if image:
        data = _read_file(check, "title_image.file", image.get("file"), base_dir)
        if data is not None:
            result.append(FileData(FileKind.TITLE_IMAGE, data, str(image["file"])))
    if attachments is not None and not isinstance(attachments, list):
        check.error("attachments", Message("must be a list"))
        attachments = []
    for index, item in enumerate(attachments or []):
        path = f"attachments[{index}]"
        if not isinstance(item, Mapping):
            check.error(path, Message("must be an object"))
            continue
        for unknown in sorted(set(item) - _ATTACHMENT_KEYS):
            check.error(f"{path}.{unknown}", Message("is not a known field"))
        title = check.text(item, "title", f"{path}.title", required=True)
        data = _read_file(check, f"{path}.file", item.get("file"), base_dir)
        if data is not None:
            result.append(FileData(FileKind.ATTACHMENT, data, str(item["file"]), title))
    for file in result:
        allowed = files.IMAGE_TYPES if file.kind == FileKind.TITLE_IMAGE else files.ATTACHMENT_TYPES
        limit = (
            files.MAX_IMAGE_BYTES
            if file.kind == FileKind.TITLE_IMAGE
            else files.MAX_ATTACHMENT_BYTES
        )
        if files.sniff_content_type(file.data) not in allowed:
            check.error(file.filename, f"is not one of {', '.join(sorted(set(allowed.values())))}")
        elif len(file.data) > limit:
            check.error(file.filename, f"is larger than {limit // (1024 * 1024)} MB")
    return result


def parse_event(record: Any, label: str, base_dir: Path | None = None) -> EventData:
    """Validate one event record of the import format; raises :class:`EventDataError`.

    Files named in the record (title image, attachments) are read relative to ``base_dir``."""
    if not isinstance(record, Mapping):
        raise EventDataError([f"{label}: must be an object"])
    check = _Checker(label, record)
    for unknown in sorted(set(record) - _TOP_LEVEL_KEYS):
        check.error(unknown, Message("is not a known field"))

    slug = check.text(record, "slug", "slug", required=True, max_length=80)
    if slug and not SLUG_RE.match(slug):
        check.error(
            "slug", Message("may contain only a-z, 0-9 and single hyphens (e.g. werkstatt-21)")
        )
    attrs: dict[str, Any] = {
        "title": check.text(record, "title", "title", required=True),
        "subtitle": check.text(record, "subtitle", "subtitle"),
        "description": check.text(record, "description", "description", max_length=50_000),
        "format": check.choice("format", EventFormat),
        "status": check.choice("status", EventStatus, default=EventStatus.DRAFT.value),
        "language": check.text(record, "language", "language", max_length=5) or "de",
    }
    if attrs["language"] not in ("de", "en"):
        check.error("language", Message("must be de or en"))

    starts_at = check.moment("starts_at", required=True)
    ends_at = check.moment("ends_at", required=True)
    if starts_at and ends_at and ends_at <= starts_at:
        check.error("ends_at", Message("must be after starts_at"))
    attrs["starts_at"], attrs["ends_at"] = starts_at, ends_at
    timezone = check.text(record, "timezone", "timezone", max_length=64) or default_timezone()
    if not is_valid_timezone(timezone):
        check.error(
            "timezone", Message("is not a known IANA time zone: %(value)s", value=repr(timezone))
        )
    attrs["timezone"] = timezone

    opens = check.moment("registration_opens_at", required=False)
    closes = check.moment("registration_closes_at", required=False)
    if opens and closes and closes <= opens:
        check.error("registration_closes_at", Message("must be after registration_opens_at"))
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
            check.error(
                "contact.email",
                Message("is not a valid email address (%(reason)s)", reason=str(exc)),
            )
    attrs["contact_phone"] = check.text(contact, "phone", "contact.phone", max_length=50)

    capacity = check.section("capacity", _CAPACITY_KEYS)
    attrs["capacity_on_site"] = check.count(capacity, "on_site", "capacity.on_site", None)
    attrs["capacity_online"] = check.count(capacity, "online", "capacity.online", None)

    waitlist = record.get("waitlist", True)
    if not isinstance(waitlist, bool):
        check.error("waitlist", Message("must be true or false"))
    attrs["waitlist_enabled"] = waitlist is True

    dial_in = check.section("dial_in", _DIAL_IN_KEYS)
    attrs["dial_in_url"] = check.text(dial_in, "url", "dial_in.url", max_length=500)
    if attrs["dial_in_url"] and not attrs["dial_in_url"].startswith(("https://", "http://")):
        check.error("dial_in.url", Message("must start with https:// or http://"))
    attrs["dial_in_meeting_id"] = check.text(
        dial_in, "meeting_id", "dial_in.meeting_id", max_length=100
    )
    attrs["dial_in_passcode"] = check.text(dial_in, "passcode", "dial_in.passcode", max_length=100)
    attrs["dial_in_phone"] = check.text(dial_in, "phone", "dial_in.phone", max_length=1000)
    attrs["dial_in_instructions"] = check.text(
        dial_in, "instructions", "dial_in.instructions", max_length=5000
    )
    # The limits of the back-office form (and far within what date arithmetic can do).
    attrs["reminder_days_before"] = check.count(
        record, "reminder_days_before", "reminder_days_before", 2, maximum=60
    )
    attrs["dial_in_hours_before"] = check.count(
        record, "dial_in_hours_before", "dial_in_hours_before", 24, maximum=720
    )
    if attrs["reminder_days_before"] is None:
        attrs["reminder_days_before"] = 2
    if attrs["dial_in_hours_before"] is None:
        attrs["dial_in_hours_before"] = 24
    retention = check.count(record, "retention_days", "retention_days", DEFAULT_RETENTION_DAYS)
    if retention is not None and retention > MAX_RETENTION_DAYS:
        check.error(
            "retention_days", Message("must be at most %(limit)s", limit=MAX_RETENTION_DAYS)
        )
    attrs["retention_days"] = DEFAULT_RETENTION_DAYS if retention is None else retention

    image = record.get("title_image")
    image = image if isinstance(image, Mapping) else {}
    attrs["title_image_alt"] = check.text(image, "alt", "title_image.alt", max_length=300)
    attrs["title_image_credit"] = check.text(image, "credit", "title_image.credit")
    questions = _parse_questions(check)
    event_files = _parse_files(check, base_dir)

    if check.messages:
        raise EventDataError(check.messages, check.fields)
    return EventData(slug=slug, attributes=attrs, questions=questions, files=event_files)


def parse_event_file(document: Any, base_dir: Path | None = None) -> list[EventData]:
    """Validate a whole import document ``{"events": [...]}``; every problem is reported at once.

    ``base_dir`` is the folder files named in the document are read from."""
    if not isinstance(document, Mapping) or not isinstance(document.get("events"), list):
        raise EventDataError(['the file must be a JSON object with a list "events"'])
    messages: list[str] = []
    parsed: list[EventData] = []
    seen: set[str] = set()
    for index, record in enumerate(document["events"]):
        slug = record.get("slug") if isinstance(record, Mapping) else None
        label = f"events[{index}]" + (f" ({slug})" if isinstance(slug, str) and slug else "")
        try:
            data = parse_event(record, label, base_dir)
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
        _apply_questions(event, data.questions)
        _apply_files(event, data.files)
        return event, True

    event = lock_event(event.id)
    attrs = data.attributes
    new_format = attrs["format"]
    for mode in Attendance:
        keeps_mode = mode in modes_for_format(new_format)
        confirmed = confirmed_count(event, mode)
        if not keeps_mode and (confirmed or waitlisted_count(event, mode)):
            raise CapacityConflict(
                Message(
                    "%(slug)s: cannot drop %(mode)s attendance, participants are registered for it",
                    slug=data.slug,
                    mode=mode.value,
                ),
                field="format",
            )
        capacity = attrs["capacity_on_site" if mode == Attendance.ON_SITE else "capacity_online"]
        if keeps_mode and capacity is not None and capacity < confirmed:
            raise CapacityConflict(
                Message(
                    "%(slug)s: capacity.%(mode)s %(capacity)s is below the %(confirmed)s "
                    "participants already confirmed",
                    slug=data.slug,
                    mode=mode.value,
                    capacity=capacity,
                    confirmed=confirmed,
                ),
                field=f"capacity.{mode.value}",
            )
    dial_in_changed = event.has_dial_in and any(
        getattr(event, key) != attrs[key] for key in DIAL_IN_FIELDS
    )
    for key, value in attrs.items():
        setattr(event, key, value)
    if dial_in_changed:
        event.dial_in_revision += 1  # the next scheduling pass sends the update
    event.updated_at = utcnow()
    db.session.flush()
    _apply_questions(event, data.questions)
    _apply_files(event, data.files)
    promote_all(event)
    return event, False


def _apply_questions(event: Event, questions: list[dict[str, Any]] | None) -> None:
    """Make the event's questions those given: update by key, add new, delete the rest (their
    answers go with them)."""
    if questions is None:
        return
    existing = {q.key: q for q in event.questions}
    wanted = {q["key"] for q in questions}
    for key, question in existing.items():
        if key not in wanted:
            event.questions.remove(question)
    for values in questions:
        question = existing.get(values["key"])
        if question is None:
            event.questions.append(Question(**values))
        else:
            for name, value in values.items():
                setattr(question, name, value)
    db.session.flush()


def _apply_files(event: Event, wanted: list[FileData] | None) -> None:
    """Make the event's files those given; files already there (same name and size) are kept,
    so importing the same document twice stores nothing twice."""
    if wanted is None:
        return

    def same(stored: EventFile, new: FileData) -> bool:
        extension = Path(stored.filename).suffix
        return (
            stored.kind == new.kind
            and stored.size == len(new.data)
            and stored.filename == files.safe_filename(new.filename, extension)
        )

    for stored in list(event.files):
        match = next((new for new in wanted if same(stored, new)), None)
        if match is None:
            files.remove(stored)
        else:
            stored.title = match.title
    for new in wanted:
        if not any(same(stored, new) for stored in event.files):
            files.store(event, new.kind, new.data, new.filename, new.title)


def notify_participants(event: Event, kind: str, payload: dict[str, Any] | None = None) -> int:
    """Queue ``kind`` ("event_changed", "event_cancelled") for every active participant.

    Each call is its own notification (keyed by the event's change time), so a second change
    tells people again, while a retried transaction does not duplicate anything."""
    stamp = int(event.updated_at.timestamp())
    active = db.session.scalars(
        select(Registration).where(
            Registration.event_id == event.id,
            Registration.status.in_(ACTIVE_STATUSES),
            Registration.anonymised_at.is_(None),  # GDPR: no address left to write to
        )
    ).all()
    for registration in active:
        outbox.enqueue_keyed(
            kind, registration, f"{kind}:{registration.id}:{stamp}", payload=payload
        )
    return len(active)


def cancel_event(event: Event, *, notify: bool) -> int:
    """Cancel an event (it stays visible, marked, and takes no sign-ups); optionally tell
    everyone registered. Returns how many were notified."""
    event = lock_event(event.id)
    event.status = EventStatus.CANCELLED
    event.updated_at = utcnow()
    db.session.flush()
    return notify_participants(event, "event_cancelled") if notify else 0
