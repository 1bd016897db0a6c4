"""Events: the import format and its rules, and every change of an event.

The back office, the API and the CLI import all write events through the functions of the second
half of this module (:func:`create_event`, :func:`update_event`, :func:`cancel_event`,
:func:`import_events`, ...): each owns the validation (the import rules below), the notification
of participants, the audit entry and the commit, so the same change has the same effects from
every entry point (DESIGN.md invariant 9).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .. import textrules
from ..extensions import db
from ..models import (
    Answer,
    Attendance,
    Event,
    EventFile,
    EventFormat,
    EventStatus,
    FileKind,
    Organiser,
    Question,
    QuestionKind,
    Registration,
    modes_for_format,
)
from ..timeutil import is_valid_timezone, utcnow
from . import audit, files, outbox
from .errors import CapacityConflict, Message, ServiceError
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
    """Validated attributes of one event, ready for :func:`create_event`."""

    slug: str
    attributes: dict[str, Any] = field(default_factory=dict)
    #: Custom questions in form order; ``None`` leaves an existing event's questions alone.
    questions: list[dict[str, Any]] | None = None
    #: The files of the kinds in :attr:`file_kinds`: a title image given with a file, the
    #: attachments when the record lists them. Files of other kinds are left alone.
    files: list[FileData] = field(default_factory=list)
    file_kinds: frozenset[FileKind] = frozenset()


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
        max_length: int = 200, multiline: bool = False,
    ) -> str:  # fmt: skip
        """A text value, stripped. One-line values (they reach mail headers, file names and
        table cells) refuse every control character, line breaks included; ``multiline`` ones
        keep line breaks (CRLF and CR become LF) and tabs."""
        value = source.get(key)
        if value is None:
            if required:
                self.error(path, Message("is required"))
            return ""
        if not isinstance(value, str):
            self.error(path, Message("must be a string"))
            return ""
        value = textrules.normalise_newlines(value).strip() if multiline else value.strip()
        if required and not value:
            self.error(path, Message("must not be empty"))
        if len(value) > max_length:
            self.error(path, Message("is longer than %(limit)s characters", limit=max_length))
        if textrules.has_lone_surrogates(value):
            self.error(path, Message("is not valid Unicode text"))
        elif multiline and not textrules.is_clean_text(value):
            self.error(path, Message("contains control characters"))
        elif not multiline and not textrules.is_clean_line(value):
            self.error(path, Message("must be one line without control characters"))
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
        if not all(textrules.is_clean_line(o) for o in options):
            check.error(f"{path}.options", Message("must be one line without control characters"))
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


_CHOICE_KINDS = (QuestionKind.SINGLE_CHOICE, QuestionKind.MULTIPLE_CHOICE)


def chosen_options(question: Question) -> dict[str, int]:
    """How often each option of ``question`` was chosen."""
    counts: dict[str, int] = {}
    for value in db.session.scalars(select(Answer.value).where(Answer.question_id == question.id)):
        for option in value if isinstance(value, list) else [value]:
            if isinstance(option, str):
                counts[option] = counts.get(option, 0) + 1
    return counts


def _check_answers_kept(event: Event, questions: list[dict[str, Any]], label: str) -> None:
    """A question people have answered keeps its kind and every option someone chose:
    changing those would silently change what they answered. (Deleting a question, with its
    answers, is a separate and explicit step.) Raises :class:`EventDataError`."""
    check = _Checker(label, {})
    by_key = {values["key"]: (index, values) for index, values in enumerate(questions)}
    for question in event.questions:
        if question.key not in by_key:
            continue
        index, values = by_key[question.key]
        chosen = chosen_options(question)
        answered = chosen or db.session.scalar(
            select(func.count()).select_from(Answer).where(Answer.question_id == question.id)
        )
        if answered and values["kind"] != question.kind:
            check.error(
                f"questions[{index}].kind",
                Message(
                    "Participants have answered this question already, so its kind cannot change."
                ),
            )
        elif question.kind in _CHOICE_KINDS:
            missing = [option for option in chosen if option not in values["options"]]
            if missing:
                check.error(
                    f"questions[{index}].options",
                    Message(
                        "These options were chosen by participants and cannot be removed or "
                        "renamed: %(options)s",
                        options=", ".join(f"„{option}“" for option in missing),
                    ),
                )
    if check.messages:
        raise EventDataError(check.messages, check.fields)


def save_questions(
    event: Event,
    records: list[dict[str, Any]],
    *,
    actor: Organiser | None,
    action: str,
    subject: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Make ``records`` (the import format, in form order) the event's questions, checked by
    the import rules as a whole list and so that answers stay valid; audited as ``action``,
    committed. Raises :class:`EventDataError` with ``questions[i].field`` paths."""
    questions = parse_questions(records)
    event = lock_event(event.id)
    _check_answers_kept(event, questions, "questions")
    _apply_questions(event, questions)
    touch(event)
    audit.record(actor, action, event=event, subject=subject, details=details)
    db.session.commit()


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


def _parse_files(
    check: _Checker, base_dir: Path | None
) -> tuple[list[FileData], frozenset[FileKind]]:
    """The files a record names and their kinds. ``title_image`` without ``file`` changes only
    the alternative text and credit; without ``attachments`` the attachments stay."""
    image = check.section("title_image", _TITLE_IMAGE_KEYS)
    attachments = check.record.get("attachments")
    kinds: set[FileKind] = set()
    result: list[FileData] = []
    if image.get("file") is not None:
        kinds.add(FileKind.TITLE_IMAGE)
        data = _read_file(check, "title_image.file", image.get("file"), base_dir)
        if data is not None:
            result.append(FileData(FileKind.TITLE_IMAGE, data, str(image["file"])))
    if attachments is not None:
        kinds.add(FileKind.ATTACHMENT)
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
    return result, frozenset(kinds)


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
        "description": check.text(
            record, "description", "description", max_length=50_000, multiline=True
        ),
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
    attrs["venue_address"] = check.text(
        venue, "address", "venue.address", max_length=1000, multiline=True
    )

    contact = check.section("contact", _CONTACT_KEYS)
    attrs["contact_name"] = check.text(contact, "name", "contact.name")
    attrs["contact_email"] = check.text(contact, "email", "contact.email", max_length=254)
    if attrs["contact_email"]:
        try:
            # Replies go to it: an address the mail server cannot take is refused here.
            validate_email(
                attrs["contact_email"],
                check_deliverability=False,
                allow_smtputf8=bool(current_app.config.get("MAIL_SMTPUTF8")),
            )
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
    attrs["dial_in_phone"] = check.text(
        dial_in, "phone", "dial_in.phone", max_length=1000, multiline=True
    )
    attrs["dial_in_instructions"] = check.text(
        dial_in, "instructions", "dial_in.instructions", max_length=5000, multiline=True
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
    event_files, file_kinds = _parse_files(check, base_dir)

    if check.messages:
        raise EventDataError(check.messages, check.fields)
    return EventData(
        slug=slug,
        attributes=attrs,
        questions=questions,
        files=event_files,
        file_kinds=file_kinds,
    )


# --- The write path: every entry point (back office, API, CLI import) calls these -------------

#: Where each attribute of an event stands in the import format (``section.key`` for the
#: parts that are objects). An update changes exactly the attributes whose paths it names.
ATTRIBUTE_PATHS: dict[str, str] = {
    "title": "title", "subtitle": "subtitle", "description": "description",
    "format": "format", "status": "status", "language": "language",
    "starts_at": "starts_at", "ends_at": "ends_at", "timezone": "timezone",
    "registration_opens_at": "registration_opens_at",
    "registration_closes_at": "registration_closes_at",
    "venue_name": "venue.name", "venue_address": "venue.address",
    "contact_name": "contact.name", "contact_email": "contact.email",
    "contact_phone": "contact.phone",
    "capacity_on_site": "capacity.on_site", "capacity_online": "capacity.online",
    "waitlist_enabled": "waitlist",
    "dial_in_url": "dial_in.url", "dial_in_meeting_id": "dial_in.meeting_id",
    "dial_in_passcode": "dial_in.passcode", "dial_in_phone": "dial_in.phone",
    "dial_in_instructions": "dial_in.instructions",
    "reminder_days_before": "reminder_days_before",
    "dial_in_hours_before": "dial_in_hours_before", "retention_days": "retention_days",
    "title_image_alt": "title_image.alt", "title_image_credit": "title_image.credit",
}  # fmt: skip
#: The parts of a record that are objects: an update merges them key by key.
SECTIONS = ("venue", "contact", "capacity", "dial_in", "title_image")
#: A change of these is told to the participants (unless the organiser opts out).
NOTIFIED_ATTRIBUTES = ("starts_at", "ends_at", "venue_name", "venue_address")
#: A change of these changes the calendar entry: its SEQUENCE grows, so calendars move it.
CALENDAR_ATTRIBUTES = (
    "title", "subtitle", "starts_at", "ends_at", "venue_name", "venue_address", "format",
    "status", "contact_name", "contact_email", "contact_phone",
)  # fmt: skip


class SlugTaken(ServiceError):
    code = "slug_taken"
    default_message = _l("This web address is taken already.")
    field = "slug"


class StaleVersion(ServiceError):
    """The event changed since the caller read it (a stale form or ``If-Match``)."""

    code = "stale"
    default_message = _l(
        "This event has been changed in the meantime by someone else. Your entries have not "
        "been saved yet; saving again overwrites the other changes."
    )


def touch(event: Event) -> None:
    """Mark a change of the event by an organiser: a new version (ETag) and ``updated_at``."""
    event.version += 1
    event.updated_at = utcnow()


class SlugFixed(ServiceError):
    code = "slug_fixed"
    default_message = _l("The web address of an event cannot change.")
    field = "slug"


@dataclass(frozen=True)
class EventChange:
    """What an update did: the attributes it changed (old and new value) and how many
    participants it told."""

    event: Event
    changes: dict[str, tuple[Any, Any]]
    notified: int = 0

    @property
    def changed(self) -> list[str]:
        return sorted(self.changes)


def _moment(value: datetime | None, zone: Any) -> str | None:
    return value.astimezone(zone).isoformat() if value is not None else None


def event_record(event: Event) -> dict[str, Any]:
    """An event in the import format (times in the event's zone): what the API returns and
    what an update merges the named fields into."""
    zone = event.zone
    return {
        "slug": event.slug,
        "title": event.title,
        "subtitle": event.subtitle,
        "description": event.description,
        "format": str(event.format),
        "language": event.language,
        "status": str(event.status),
        "starts_at": _moment(event.starts_at, zone),
        "ends_at": _moment(event.ends_at, zone),
        "timezone": event.timezone,
        "venue": {"name": event.venue_name, "address": event.venue_address},
        "contact": {
            "name": event.contact_name,
            "email": event.contact_email,
            "phone": event.contact_phone,
        },
        "capacity": {"on_site": event.capacity_on_site, "online": event.capacity_online},
        "waitlist": event.waitlist_enabled,
        "registration_opens_at": _moment(event.registration_opens_at, zone),
        "registration_closes_at": _moment(event.registration_closes_at, zone),
        "dial_in": {
            "url": event.dial_in_url,
            "meeting_id": event.dial_in_meeting_id,
            "passcode": event.dial_in_passcode,
            "phone": event.dial_in_phone,
            "instructions": event.dial_in_instructions,
        },
        "reminder_days_before": event.reminder_days_before,
        "dial_in_hours_before": event.dial_in_hours_before,
        "retention_days": event.retention_days,
        "title_image": {"alt": event.title_image_alt, "credit": event.title_image_credit},
        "questions": [question_record(q) for q in event.questions],
    }


def named_attributes(fields: Mapping[str, Any]) -> set[str]:
    """The attributes a partial record names: ``{"venue": {"name": ...}}`` names only
    ``venue_name``; a section given as anything but an object names all of its keys."""
    named: set[str] = set()
    for attribute, path in ATTRIBUTE_PATHS.items():
        top, _, key = path.partition(".")
        if top not in fields:
            continue
        value = fields[top]
        if not key or not isinstance(value, Mapping) or key in value:
            named.add(attribute)
    return named


def _merge(record: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(record)
    for key, value in fields.items():
        if key in SECTIONS and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _check_seats_kept(event: Event, attrs: Mapping[str, Any]) -> None:
    """Refuse a format that drops a mode people hold, or a capacity below the confirmed
    participants: nobody loses a confirmed seat silently."""
    for mode in Attendance:
        keeps_mode = mode in modes_for_format(attrs["format"])
        confirmed = confirmed_count(event, mode)
        if not keeps_mode and (confirmed or waitlisted_count(event, mode)):
            raise CapacityConflict(
                Message(
                    "%(slug)s: cannot drop %(mode)s attendance, participants are registered for it",
                    slug=event.slug,
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
                    slug=event.slug,
                    mode=mode.value,
                    capacity=capacity,
                    confirmed=confirmed,
                ),
                field=f"capacity.{mode.value}",
            )


def create_event(
    data: EventData,
    *,
    actor: Organiser | None,
    via: Mapping[str, Any] | None = None,
    copy_of: Event | None = None,
    commit: bool = True,
) -> Event:
    """Create an event; its creator (if any) organises it. ``copy_of`` (duplicating): the
    questions, title image with its alternative text and credit, and attachments of that
    event come along unless ``data`` gives its own. Raises :class:`SlugTaken`."""
    if db.session.scalars(select(Event.id).where(Event.slug == data.slug)).first() is not None:
        raise SlugTaken()
    attributes = dict(data.attributes)
    if copy_of is not None and not (attributes.get("title_image_alt") or "").strip():
        attributes["title_image_alt"] = copy_of.title_image_alt
        attributes["title_image_credit"] = copy_of.title_image_credit
    event = Event(slug=data.slug, **attributes)
    db.session.add(event)
    try:
        with db.session.begin_nested():  # the same slug, created at the same moment
            db.session.flush()
    except IntegrityError as exc:
        raise SlugTaken() from exc
    if actor is not None:
        event.organisers.append(actor)
    questions = data.questions
    if questions is None and copy_of is not None:
        questions = parse_questions([question_record(q) for q in copy_of.questions])
    _apply_questions(event, questions)
    _apply_files(event, data.files, data.file_kinds)
    if copy_of is not None:
        for source in copy_of.files:
            if source.kind not in data.file_kinds:
                files.copy(source, event)
    audit.record(
        actor, "event.create", event=event,
        details={**(via or {}), **({"copy_of": copy_of.slug} if copy_of is not None else {})},
    )  # fmt: skip
    if commit:
        db.session.commit()
    return event


def update_event(
    event: Event,
    fields: Mapping[str, Any],
    *,
    actor: Organiser | None,
    notify: bool = True,
    via: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
    label: str | None = None,
    expected_version: int | None = None,
    commit: bool = True,
) -> EventChange:
    """Apply the fields of a (partial) import record to the event: exactly the attributes the
    record names, on the locked row; the others stay as they are.

    The whole event as it would be is checked by the import rules (:class:`EventDataError`
    naming each path). A raised capacity promotes waiting participants; a capacity below the
    confirmed participants is a :class:`CapacityConflict`. A changed start, end or venue tells
    confirmed and waiting participants with what changed, unless ``notify`` is false; status
    ``cancelled`` cancels the event (:func:`cancel_event`). The change is audited and, with
    ``commit``, committed. With ``expected_version``, an event changed since (another
    organiser, another request) raises :class:`StaleVersion` instead.
    """
    if "slug" in fields and fields["slug"] != event.slug:
        raise SlugFixed()
    event = lock_event(event.id)
    if expected_version is not None and expected_version != event.version:
        raise StaleVersion()
    record = event_record(event)
    if "questions" not in fields:
        del record["questions"]  # left as they are
    data = parse_event(_merge(record, fields), label or event.slug, base_dir)
    named = named_attributes(fields)
    wanted = {name: data.attributes[name] for name in named}
    cancelling = (
        wanted.get("status") == EventStatus.CANCELLED and event.status != EventStatus.CANCELLED
    )
    if cancelling:
        del wanted["status"]  # cancel_event does that, with its own mails
    changes = {
        name: (getattr(event, name), value)
        for name, value in wanted.items()
        if getattr(event, name) != value
    }
    if {"format", "capacity_on_site", "capacity_online"} & set(changes):
        _check_seats_kept(event, {**_current(event), **wanted})
    if data.questions is not None:
        _check_answers_kept(event, data.questions, label or event.slug)
    dial_in_changed = event.has_dial_in and any(name in changes for name in DIAL_IN_FIELDS)
    for name, (_old, new) in changes.items():
        setattr(event, name, new)
    if dial_in_changed:
        event.dial_in_revision += 1  # the next scheduling pass sends the update
    if any(name in changes for name in CALENDAR_ATTRIBUTES):
        event.ics_sequence += 1
    db.session.flush()
    also = [
        part
        for part, changed in (
            ("questions", _apply_questions(event, data.questions)),
            ("files", _apply_files(event, data.files, data.file_kinds)),
        )
        if changed
    ]
    if changes or also:
        touch(event)
    promote_all(event)
    notified = 0
    told = {name: changes[name] for name in NOTIFIED_ATTRIBUTES if name in changes}
    if told and notify and event.status != EventStatus.CANCELLED and not cancelling:
        notified = notify_participants(event, "event_changed", {"changes": _told(told)})
    if changes or also:
        audit.record(
            actor, "event.update", event=event,
            details={**(via or {}), "fields": [*sorted(changes), *also], "notified": notified},
        )  # fmt: skip
    if cancelling:
        cancel_event(event, actor=actor, notify=notify, via=via, commit=False)
    if commit:
        db.session.commit()
    return EventChange(event, changes, notified)


def _current(event: Event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in ATTRIBUTE_PATHS}


def _told(changes: Mapping[str, tuple[Any, Any]]) -> list[dict[str, Any]]:
    """The changes as the mail shows them (JSON for the outbox row's payload)."""

    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    return [
        {"field": name, "old": plain(old), "new": plain(new)}
        for name, (old, new) in changes.items()
    ]


def cancel_event(
    event: Event,
    *,
    actor: Organiser | None,
    notify: bool = True,
    via: Mapping[str, Any] | None = None,
    commit: bool = True,
) -> int:
    """Cancel an event (it stays visible, marked, and takes no sign-ups) and, unless
    ``notify`` is false, tell everyone registered. Cancelling twice does nothing the second
    time. Returns how many were told."""
    event = lock_event(event.id)
    if event.status == EventStatus.CANCELLED:
        return 0
    event.status = EventStatus.CANCELLED
    event.ics_sequence += 1
    touch(event)
    db.session.flush()
    notified = notify_participants(event, "event_cancelled") if notify else 0
    audit.record(actor, "event.cancel", event=event, details={**(via or {}), "notified": notified})
    if commit:
        db.session.commit()
    return notified


def import_events(
    document: Any,
    base_dir: Path | None = None,
    *,
    actor: Organiser | None = None,
    notify: bool = True,
    via: Mapping[str, Any] | None = None,
) -> list[tuple[str, bool]]:
    """Create or update (by slug) the events of an import document ``{"events": [...]}`` in
    one transaction: all or nothing. A new event needs a whole record; an update applies the
    fields its record names (see :func:`update_event`). Files named in the document are read
    relative to ``base_dir``. Returns ``(slug, created)`` per event; raises
    :class:`EventDataError` with every problem, each naming the event and the field."""
    if not isinstance(document, Mapping) or not isinstance(document.get("events"), list):
        raise EventDataError(['the file must be a JSON object with a list "events"'])
    messages: list[str] = []
    results: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for index, record in enumerate(document["events"]):
        slug = record.get("slug") if isinstance(record, Mapping) else None
        label = f"events[{index}]" + (f" ({slug})" if isinstance(slug, str) and slug else "")
        if isinstance(slug, str) and slug in seen:
            messages.append(f"{label}: slug: appears more than once in the file")
            continue
        seen.add(slug if isinstance(slug, str) else "")
        existing = (
            db.session.scalars(select(Event).where(Event.slug == slug)).first()
            if isinstance(slug, str) and slug
            else None
        )
        try:
            if existing is None:
                data = parse_event(record, label, base_dir)
                create_event(data, actor=actor, via=via, commit=False)
                results.append((data.slug, True))
            else:
                update_event(
                    existing, record, actor=actor, notify=notify, via=via, base_dir=base_dir,
                    label=label, commit=False,
                )  # fmt: skip
                results.append((existing.slug, False))
        except EventDataError as exc:
            messages.extend(exc.messages)
        except ServiceError as exc:
            messages.append(f"{label}: {exc}")
    if messages:
        db.session.rollback()
        raise EventDataError(messages)
    db.session.commit()
    return results


def notify_participants(event: Event, kind: str, payload: dict[str, Any] | None = None) -> int:
    """Queue ``kind`` ("event_changed", "event_cancelled") for every active participant, in
    one statement however many there are.

    Keyed by the calendar SEQUENCE the change produced, so a second change tells people again,
    while a retried transaction does not duplicate anything. Returns how many were queued."""
    return outbox.enqueue_for_each(
        kind,
        select(Registration.id, Registration.event_id).where(
            Registration.event_id == event.id,
            Registration.is_active,
            Registration.anonymised_at.is_(None),  # GDPR: no address left to write to
        ),
        str(event.ics_sequence),
        payload=payload,
    )


def add_organiser(event: Event, organiser: Organiser, *, actor: Organiser | None) -> bool:
    """Let ``organiser`` manage ``event``; commits. Returns whether anything changed."""
    if organiser in event.organisers:
        return False
    event.organisers.append(organiser)
    audit.record(actor, "event.organiser.add", event=event, subject=f"organiser:{organiser.id}")
    db.session.commit()
    return True


def remove_organiser(event: Event, organiser: Organiser, *, actor: Organiser | None) -> None:
    """``organiser`` no longer manages ``event``; commits."""
    event.organisers.remove(organiser)
    audit.record(actor, "event.organiser.remove", event=event, subject=f"organiser:{organiser.id}")
    db.session.commit()


def add_file(
    event: Event,
    kind: FileKind,
    data: bytes,
    filename: str,
    *,
    actor: Organiser | None,
    title: str = "",
    alt: str = "",
    credit: str = "",
) -> EventFile:
    """Store an uploaded title image (with its alternative text and credit) or attachment;
    commits. Raises :class:`files.FileRejected`."""
    try:
        stored = files.store(event, kind, data, filename, title)
    except files.FileRejected:
        db.session.rollback()
        raise
    if kind == FileKind.TITLE_IMAGE:
        event.title_image_alt, event.title_image_credit = alt, credit
    touch(event)
    audit.record(
        actor, "event.file.add", event=event, subject=f"file:{stored.id}",
        details={"name": stored.filename, "type": stored.content_type},
    )  # fmt: skip
    db.session.commit()
    return stored


def remove_file(event: Event, stored: EventFile, *, actor: Organiser | None) -> None:
    """Remove a title image or attachment; commits (the bytes go once the commit is done)."""
    audit.record(actor, "event.file.remove", event=event, subject=f"file:{stored.id}")
    files.remove(stored)
    touch(event)
    db.session.commit()


def _apply_questions(event: Event, questions: list[dict[str, Any]] | None) -> bool:
    """Make the event's questions those given: update by key, add new, delete the rest (their
    answers go with them). Returns whether anything changed."""
    if questions is None:
        return False
    changed = False
    existing = {q.key: q for q in event.questions}
    wanted = {q["key"] for q in questions}
    for key, question in existing.items():
        if key not in wanted:
            event.questions.remove(question)
            changed = True
    for values in questions:
        question = existing.get(values["key"])
        if question is None:
            event.questions.append(Question(**values))
            changed = True
            continue
        for name, value in values.items():
            if getattr(question, name) != value:
                setattr(question, name, value)
                changed = True
    db.session.flush()
    return changed


def _apply_files(event: Event, wanted: list[FileData], kinds: frozenset[FileKind]) -> bool:
    """Make the event's files of ``kinds`` those given; files already there (same name and
    size) are kept, so importing the same document twice stores nothing twice. Returns whether
    anything changed."""
    if not kinds:
        return False
    changed = False

    def same(stored: EventFile, new: FileData) -> bool:
        extension = Path(stored.filename).suffix
        return (
            stored.kind == new.kind
            and stored.size == len(new.data)
            and stored.filename == files.safe_filename(new.filename, extension)
        )

    for stored in [f for f in event.files if f.kind in kinds]:
        match = next((new for new in wanted if same(stored, new)), None)
        if match is None:
            files.remove(stored)
            changed = True
        elif stored.title != match.title:
            stored.title = match.title
            changed = True
    for new in wanted:
        if not any(same(stored, new) for stored in event.files):
            files.store(event, new.kind, new.data, new.filename, new.title)
            changed = True
    return changed


def free_slug(wanted: str) -> str:
    """``wanted``, or with ``-2``, ``-3``, ... when an event has that web address already."""
    taken = set(db.session.scalars(select(Event.slug).where(Event.slug.startswith(wanted))))
    candidate, number = wanted, 1
    while candidate in taken:
        number += 1
        candidate = f"{wanted}-{number}"
    return candidate


def has_participants(event: Event) -> bool:
    """Whether anybody holds a seat or a place on the waiting list."""
    return (
        db.session.scalars(
            select(Registration.id)
            .where(Registration.event_id == event.id, Registration.is_active)
            .limit(1)
        ).first()
        is not None
    )
