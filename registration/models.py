"""The data model. Models carry small pure properties; they never commit."""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    ColumnElement,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    case,
    func,
    literal,
    not_,
    or_,
    text,
)
from sqlalchemy.ext.hybrid import hybrid_method, hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import TypeEngine

from .database import UTCDateTime
from .extensions import db
from .timeutil import utcnow


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    """Enum stored as its value in a VARCHAR with a CHECK constraint (portable, easy to migrate)."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class EventFormat(enum.StrEnum):
    ON_SITE = "on_site"
    ONLINE = "online"
    HYBRID = "hybrid"


class EventStatus(enum.StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    CANCELLED = "cancelled"


class Attendance(enum.StrEnum):
    ON_SITE = "on_site"
    ONLINE = "online"


class RegistrationStatus(enum.StrEnum):
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"


class QuestionKind(enum.StrEnum):
    TEXT = "text"
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    YES_NO = "yes_no"


class FileKind(enum.StrEnum):
    TITLE_IMAGE = "title_image"
    ATTACHMENT = "attachment"


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    #: Gave up: a permanent SMTP error or too many attempts (``last_error`` says why).
    FAILED = "failed"
    #: No longer applicable when its turn came (e.g. a reminder for a cancelled registration).
    SKIPPED = "skipped"


def modes_for_format(fmt: EventFormat) -> tuple[Attendance, ...]:
    """The attendance modes an event of format ``fmt`` offers."""
    if fmt == EventFormat.ON_SITE:
        return (Attendance.ON_SITE,)
    if fmt == EventFormat.ONLINE:
        return (Attendance.ONLINE,)
    return (Attendance.ON_SITE, Attendance.ONLINE)


def _sql_value(value: Any, type_: TypeEngine[Any] | None = None) -> Any:
    """``value`` for a hybrid's SQL form: expressions (columns, bound parameters) as they are,
    plain Python values as literals (a comparison of two Python values would be decided by
    Python, not by the query)."""
    if isinstance(value, ClauseElement):
        return value
    return literal(value.value if isinstance(value, enum.Enum) else value, type_ or String())


#: Statuses that hold a place (a seat or a place on the waiting list).
ACTIVE_STATUSES = (RegistrationStatus.CONFIRMED, RegistrationStatus.WAITLISTED)


#: Which organisers run which events (an event can have several).
event_organisers = Table(
    "event_organisers",
    db.metadata,
    Column("event_id", ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
    Column("organiser_id", ForeignKey("organisers.id", ondelete="CASCADE"), primary_key=True),
)


class Event(db.Model):
    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint(
            "capacity_on_site IS NULL OR capacity_on_site >= 0", name="capacity_on_site_positive"
        ),
        CheckConstraint(
            "capacity_online IS NULL OR capacity_online >= 0", name="capacity_online_positive"
        ),
        CheckConstraint("reminder_days_before >= 0", name="reminder_days_positive"),
        CheckConstraint("dial_in_hours_before >= 0", name="dial_in_hours_positive"),
        CheckConstraint("retention_days >= 0", name="retention_days_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: URL-safe identifier, part of every public link (``/events/<slug>``).
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    #: Series line shown above the title, e.g. "21. Werkstatt - Bündnis vor Ort".
    subtitle: Mapped[str] = mapped_column(String(200), default="")
    #: Markdown, rendered and sanitised for display.
    description: Mapped[str] = mapped_column(Text, default="")
    format: Mapped[EventFormat] = mapped_column(_enum(EventFormat, "event_format"))
    status: Mapped[EventStatus] = mapped_column(
        _enum(EventStatus, "event_status"), default=EventStatus.DRAFT
    )
    #: Language of the event's own texts; participants choose their own for emails.
    language: Mapped[str] = mapped_column(String(5), default="de")

    #: Start and end in UTC; shown in ``timezone``.
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: IANA zone name the event takes place in.
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Berlin")

    venue_name: Mapped[str] = mapped_column(String(200), default="")
    venue_address: Mapped[str] = mapped_column(Text, default="")

    contact_name: Mapped[str] = mapped_column(String(200), default="")
    contact_email: Mapped[str] = mapped_column(String(254), default="")
    contact_phone: Mapped[str] = mapped_column(String(50), default="")

    #: Seats for on-site attendance; ``None`` means unlimited.
    capacity_on_site: Mapped[int | None] = mapped_column(Integer)
    #: Seats for online attendance; ``None`` means unlimited.
    capacity_online: Mapped[int | None] = mapped_column(Integer)
    #: Whether a full mode takes further sign-ups onto a waiting list.
    waitlist_enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    #: Sign-up window; ``None`` opens at once / closes at the event's start.
    registration_opens_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    registration_closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    #: Dial-in details: sent to confirmed online participants only, never shown on a public page.
    dial_in_url: Mapped[str] = mapped_column(String(500), default="")
    dial_in_meeting_id: Mapped[str] = mapped_column(String(100), default="")
    dial_in_passcode: Mapped[str] = mapped_column(String(100), default="")
    dial_in_phone: Mapped[str] = mapped_column(Text, default="")
    dial_in_instructions: Mapped[str] = mapped_column(Text, default="")

    #: The reminder goes out this many days before the start (in the event's local time).
    reminder_days_before: Mapped[int] = mapped_column(Integer, default=2)
    #: Dial-in details go out this many hours before the start.
    dial_in_hours_before: Mapped[int] = mapped_column(Integer, default=24)
    #: Grows with every change of the dial-in details, so an update reaches those who had them.
    dial_in_revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    #: Grows with every change an organiser makes (the API's ETag, the back office's check
    #: that nobody changed the event since the form was opened).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: The calendar entry's SEQUENCE (RFC 5545): grows with every change of what the entry
    #: shows (time, place, title, cancellation), so calendars replace their copy.
    ics_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    #: Credit line and alternative text of the title image (the image itself is an EventFile).
    title_image_credit: Mapped[str] = mapped_column(String(200), default="", server_default="")
    title_image_alt: Mapped[str] = mapped_column(String(300), default="", server_default="")

    #: Participants' personal data is anonymised this many days after the event ends (GDPR).
    retention_days: Mapped[int] = mapped_column(Integer, default=90, server_default="90")
    #: When the participants of this event were anonymised (``None``: not yet).
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    registrations: Mapped[list[Registration]] = relationship(
        back_populates="event", cascade="all, delete-orphan", passive_deletes=True
    )
    questions: Mapped[list[Question]] = relationship(
        back_populates="event",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Question.position",
    )
    files: Mapped[list[EventFile]] = relationship(
        back_populates="event",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="EventFile.position",
    )
    #: The organisers who may see and manage this event (admins see every event).
    organisers: Mapped[list[Organiser]] = relationship(
        secondary=event_organisers, back_populates="events"
    )

    def __repr__(self) -> str:
        return f"<Event {self.slug}>"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    # --- The seats policy's rules about the event (services/seats.py uses them) -------------
    # Each rule is written once, as a hybrid: on an object it is Python, on the class it is the
    # SQL expression that services/decision.py composes into the sign-up's statement. The grid
    # test in tests/test_decision.py checks that both forms agree.

    @property
    def modes(self) -> tuple[Attendance, ...]:
        """The attendance modes this event offers."""
        return modes_for_format(self.format)

    @hybrid_method
    def offers(self, mode: Attendance | str, chosen: bool = True) -> bool:
        """Whether a sign-up for ``mode`` fits the event: a single-mode event's format has the
        mode's name; a hybrid event offers both, but the participant has to choose (``chosen``).
        """
        if self.format == EventFormat.HYBRID:
            return bool(chosen) and mode in (Attendance.ON_SITE, Attendance.ONLINE)
        return mode == self.format

    @offers.inplace.expression
    @classmethod
    def _offers_expression(cls, mode: Any, chosen: Any = True) -> ColumnElement[bool]:
        return or_(
            cls.format == _sql_value(mode),
            and_(cls.format == EventFormat.HYBRID, _sql_value(chosen, Boolean())),
        )

    @hybrid_method
    def capacity_for(self, mode: Attendance | str) -> int | None:
        """Seats for ``mode``; ``None`` means unlimited."""
        return self.capacity_on_site if mode == Attendance.ON_SITE else self.capacity_online

    @capacity_for.inplace.expression
    @classmethod
    def _capacity_for_expression(cls, mode: Any) -> ColumnElement[int | None]:
        return case(
            (_sql_value(mode) == Attendance.ON_SITE.value, cls.capacity_on_site),
            else_=cls.capacity_online,
        )

    @hybrid_property
    def closes_at(self) -> datetime:
        """The end of the sign-up window: its own, else the event's start."""
        return self.registration_closes_at or self.starts_at

    @closes_at.inplace.expression
    @classmethod
    def _closes_at_expression(cls) -> ColumnElement[datetime]:
        return func.coalesce(cls.registration_closes_at, cls.starts_at)

    @hybrid_method
    def is_open_at(self, moment: datetime) -> bool:
        """Whether the public's sign-ups are accepted at ``moment``: published, and within the
        sign-up window."""
        if self.status != EventStatus.PUBLISHED:
            return False
        if self.registration_opens_at is not None and moment < self.registration_opens_at:
            return False
        return moment < self.closes_at

    @is_open_at.inplace.expression
    @classmethod
    def _is_open_at_expression(cls, moment: Any) -> ColumnElement[bool]:
        moment = _sql_value(moment, UTCDateTime())
        return and_(
            cls.status == EventStatus.PUBLISHED,
            or_(cls.registration_opens_at.is_(None), cls.registration_opens_at <= moment),
            cls.closes_at > moment,
        )

    @hybrid_method
    def accepts_signups_at(self, moment: datetime, by_organiser: bool = False) -> bool:
        """Whether a sign-up is accepted at ``moment``: the public's within the window
        (:meth:`is_open_at`); an organiser's (a phone sign-up) at any time, unless cancelled."""
        if by_organiser:
            return self.status != EventStatus.CANCELLED
        return self.is_open_at(moment)

    @accepts_signups_at.inplace.expression
    @classmethod
    def _accepts_signups_at_expression(
        cls, moment: Any, by_organiser: Any = False
    ) -> ColumnElement[bool]:
        by_organiser = _sql_value(by_organiser, Boolean())
        return or_(
            and_(by_organiser, cls.status != EventStatus.CANCELLED),
            and_(not_(by_organiser), cls.is_open_at(moment)),
        )

    @property
    def is_open(self) -> bool:
        return self.is_open_at(utcnow())

    @property
    def title_image(self) -> EventFile | None:
        return next((f for f in self.files if f.kind == FileKind.TITLE_IMAGE), None)

    @property
    def attachments(self) -> list[EventFile]:
        return [f for f in self.files if f.kind == FileKind.ATTACHMENT]

    @property
    def has_dial_in(self) -> bool:
        return bool(self.dial_in_url or self.dial_in_meeting_id or self.dial_in_phone)


class Registration(db.Model):
    __tablename__ = "registrations"
    __table_args__ = (
        # Invariant 6: one active registration per event and address (case-insensitive).
        Index(
            "uq_registrations_event_email_active",
            "event_id",
            "email_key",
            unique=True,
            sqlite_where=text("status != 'cancelled'"),
            postgresql_where=text("status != 'cancelled'"),
        ),
        # Waiting-list order is unique within an event.
        UniqueConstraint(
            "event_id", "waitlist_order", name="uq_registrations_event_waitlist_order"
        ),
        Index("ix_registrations_event_status_mode", "event_id", "status", "attendance"),
        # An API client's Idempotency-Key names one sign-up per event.
        Index(
            "uq_registrations_event_idempotency_key",
            "event_id",
            "idempotency_key",
            unique=True,
            sqlite_where=text("idempotency_key IS NOT NULL"),
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        CheckConstraint(
            "status != 'waitlisted' OR waitlist_order IS NOT NULL", name="waitlisted_has_order"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    #: The address as the participant typed it.
    email: Mapped[str] = mapped_column(String(254))
    #: Lower-cased address: the key for "one active registration per address".
    email_key: Mapped[str] = mapped_column(String(254))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    organisation: Mapped[str] = mapped_column(String(200), default="")
    attendance: Mapped[Attendance] = mapped_column(_enum(Attendance, "attendance"))
    status: Mapped[RegistrationStatus] = mapped_column(
        _enum(RegistrationStatus, "registration_status")
    )
    #: Order of joining the event's waiting list (one sequence per event across modes; the
    #: position within a mode is derived from it). Kept after promotion as a record.
    waitlist_order: Mapped[int | None] = mapped_column(Integer)
    #: Language the participant reads emails in.
    language: Mapped[str] = mapped_column(String(5), default="de")
    #: When the participant agreed to the privacy notice.
    privacy_consent_at: Mapped[datetime] = mapped_column(UTCDateTime)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: First use of the personal join link: online attendance.
    joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the personal data was removed (retention or an erasure request); the row stays
    #: for the counts.
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    #: Random salt from which the personal links are derived with the server's secret key
    #: (see tokens.py); the links themselves are never stored.
    token_salt: Mapped[str] = mapped_column(String(32))
    #: The ``Idempotency-Key`` an API client sent with the sign-up, and a digest of its body:
    #: the same request sent again (after a lost answer) gets this registration's answer.
    idempotency_key: Mapped[str | None] = mapped_column(String(100))
    idempotency_hash: Mapped[str | None] = mapped_column(String(64))
    #: SHA-256 of the manage token, for looking a registration up by its link.
    manage_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The check-in QR code (a small PNG) of on-site participants: made once at sign-up, since
    #: up to three mails carry it and making it costs more than sending a mail.
    checkin_qr: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)

    event: Mapped[Event] = relationship(back_populates="registrations")
    answers: Mapped[list[Answer]] = relationship(
        back_populates="registration", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Registration {self.id} {self.status} {self.attendance}>"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @hybrid_property
    def is_active(self) -> bool:
        """Whether the registration holds a place (a seat or one on the waiting list)."""
        return self.status in ACTIVE_STATUSES

    @is_active.inplace.expression
    @classmethod
    def _is_active_expression(cls) -> ColumnElement[bool]:
        # "Not cancelled", the condition of the partial unique index on (event_id, email_key),
        # so that the index answers the duplicate check (tests/test_decision.py keeps the two
        # forms equal).
        return cls.status != RegistrationStatus.CANCELLED


class Question(db.Model):
    """A custom question an event asks on its sign-up form."""

    __tablename__ = "questions"
    __table_args__ = (UniqueConstraint("event_id", "key", name="uq_questions_event_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    #: Stable identifier within the event (import files and API answers use it), e.g. "lunch".
    key: Mapped[str] = mapped_column(String(40))
    #: Order on the form.
    position: Mapped[int] = mapped_column(Integer, default=0)
    label: Mapped[str] = mapped_column(String(300))
    help_text: Mapped[str] = mapped_column(String(500), default="")
    kind: Mapped[QuestionKind] = mapped_column(_enum(QuestionKind, "question_kind"))
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The choices of single and multiple choice questions, in order.
    options: Mapped[list[str]] = mapped_column(JSON, default=list)

    event: Mapped[Event] = relationship(back_populates="questions")

    def __repr__(self) -> str:
        return f"<Question {self.key}>"


class Answer(db.Model):
    """A participant's answer to a custom question."""

    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint("registration_id", "question_id", name="uq_answers_registration_question"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    registration_id: Mapped[int] = mapped_column(
        ForeignKey("registrations.id", ondelete="CASCADE"), index=True
    )
    question_id: Mapped[int] = mapped_column(
        ForeignKey("questions.id", ondelete="CASCADE"), index=True
    )
    #: A string (text, single choice), a list of strings (multiple choice) or a bool (yes/no).
    value: Mapped[Any] = mapped_column(JSON)

    registration: Mapped[Registration] = relationship(back_populates="answers")
    question: Mapped[Question] = relationship()


class EventFile(db.Model):
    """A title image or an attachment (e.g. a flyer) of an event, stored under instance/uploads."""

    __tablename__ = "event_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    kind: Mapped[FileKind] = mapped_column(_enum(FileKind, "file_kind"))
    #: Link text shown for an attachment, e.g. "Save-the-Date-Flyer".
    title: Mapped[str] = mapped_column(String(200), default="")
    #: Safe download name (ASCII letters, digits, dot, hyphen, underscore).
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    #: Name of the file under the uploads folder (random, never user input).
    storage_name: Mapped[str] = mapped_column(String(100), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    event: Mapped[Event] = relationship(back_populates="files")

    def __repr__(self) -> str:
        return f"<EventFile {self.kind} {self.filename}>"


class Organiser(UserMixin, db.Model):
    """A back-office account (created with ``flask users create``)."""

    __tablename__ = "organisers"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stored lower-cased; the login name.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    #: Werkzeug hash (scrypt).
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Failed logins in a row; enough of them lock the account for a while.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the password was last set (changing it ends all other sessions, see get_id).
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    events: Mapped[list[Event]] = relationship(
        secondary=event_organisers, back_populates="organisers"
    )

    def __repr__(self) -> str:
        return f"<Organiser {self.email}>"

    @property
    def is_active(self) -> bool:  # Flask-Login: deactivated accounts cannot log in
        return self.active

    def get_id(self) -> str:
        """Session identifier: the id plus a digest of the password hash (salted anew on every
        change), so a changed password ends every other session."""
        stamp = hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]
        return f"{self.id}:{stamp}"

    def can_manage(self, event: Event) -> bool:
        return self.is_admin or any(o.id == self.id for o in event.organisers)


class ApiToken(db.Model):
    """A bearer token for the JSON API; it acts with its organiser's rights."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    organiser_id: Mapped[int] = mapped_column(
        ForeignKey("organisers.id", ondelete="CASCADE"), index=True
    )
    #: What the token is for, e.g. "Website import script".
    name: Mapped[str] = mapped_column(String(100))
    #: SHA-256 of the token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The token's first characters, so people can tell their tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organiser: Mapped[Organiser] = relationship()

    def __repr__(self) -> str:
        return f"<ApiToken {self.prefix}>"


class Setting(db.Model):
    """A setting the organisation changes in the back office, e.g. the privacy notice text."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AuditEntry(db.Model):
    """Who did what and when: event edits, participant changes, exports, check-ins."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("organisers.id", ondelete="SET NULL"), index=True
    )
    #: Kept as text: the entry outlives the account.
    actor_email: Mapped[str] = mapped_column(String(254), default="")
    event_id: Mapped[int | None] = mapped_column(
        ForeignKey("events.id", ondelete="SET NULL"), index=True
    )
    #: e.g. "export.csv", "participant.cancel", "checkin", "login.failed"
    action: Mapped[str] = mapped_column(String(60))
    #: What it was done to, e.g. "registration:42".
    subject: Mapped[str] = mapped_column(String(100), default="")
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class OutboxMessage(db.Model):
    """An email to send, written in the same transaction as the change that needs it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next_attempt", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: What to send: confirmation, waitlisted, promoted, cancellation, reminder, dial_in, ...
    kind: Mapped[str] = mapped_column(String(40))
    registration_id: Mapped[int | None] = mapped_column(
        ForeignKey("registrations.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[int | None] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), index=True
    )
    #: Unique per email that must go out at most once, e.g. ``confirmation:42``.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    #: Extra data for rendering (e.g. an organiser's message); most kinds render from the rows.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[OutboxStatus] = mapped_column(
        _enum(OutboxStatus, "outbox_status"), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: A worker claimed the row until then (a lease: a crashed worker's rows come back).
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    registration: Mapped[Registration | None] = relationship()

    def __repr__(self) -> str:
        return f"<OutboxMessage {self.dedupe_key} {self.status}>"
