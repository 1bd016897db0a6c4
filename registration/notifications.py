"""Emails, rendered when they are sent, from the current data (Indico's notifications pattern).

Each kind has a subject and a template pair ``templates/email/<kind>.txt`` and ``.html``;
``build_message`` decides whether the row still applies and renders it in the participant's
language. It returns ``None`` when the mail no longer applies (it is then skipped).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, render_template, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from . import ics, qrcode
from .extensions import db
from .formatting import event_when
from .mailer import Attachment, Email, Message
from .models import (
    Attendance,
    Event,
    EventStatus,
    Organiser,
    OutboxMessage,
    Registration,
    RegistrationStatus,
)
from .services import scheduling, signup
from .timeutil import utcnow


@dataclass(frozen=True)
class Kind:
    #: Subject with %(title)s and %(when)s, translated when the mail is rendered.
    subject: LazyString
    #: May go to a cancelled registration (only the cancellation itself).
    to_cancelled: bool = False
    #: Carries the calendar entry (.ics) of the registration.
    calendar: bool = False
    #: Only while the participant is confirmed (and the event published).
    confirmed_only: bool = False


KINDS: dict[str, Kind] = {
    "confirmation": Kind(_l("Registration confirmed: %(title)s"), calendar=True),
    "waitlisted": Kind(_l("Waiting list: %(title)s")),
    "promoted": Kind(_l("You have a seat: %(title)s"), calendar=True),
    "attendance_changed": Kind(_l("Attendance changed: %(title)s"), calendar=True),
    "cancellation": Kind(_l("Registration cancelled: %(title)s"), to_cancelled=True),
    #: Someone signed up again with a registered address: the personal link once more.
    "manage_link": Kind(_l("Your registration: %(title)s")),
    "reminder": Kind(_l("Reminder: %(title)s on %(when)s"), calendar=True, confirmed_only=True),
    "dial_in": Kind(_l("Dial-in details: %(title)s"), confirmed_only=True),
    "dial_in_update": Kind(_l("New dial-in details: %(title)s"), confirmed_only=True),
    "event_changed": Kind(_l("Changes to %(title)s"), calendar=True),
    "event_cancelled": Kind(_l("Cancelled: %(title)s"), calendar=True),
    #: An organiser's message; its subject is in the payload.
    "message": Kind(_l("%(subject)s")),
}


#: Mails that carry the personal check-in QR code (for confirmed on-site participants).
QR_KINDS = frozenset({"confirmation", "promoted", "attendance_changed", "reminder"})


def _shows_qr(kind: str, registration: Registration) -> bool:
    return (
        kind in QR_KINDS
        and registration.attendance == Attendance.ON_SITE
        and registration.status == RegistrationStatus.CONFIRMED
    )


def _base_url() -> str:
    return current_app.config["BASE_URL"]


def links(registration: Registration) -> dict[str, str]:
    base = _base_url()
    return {
        "manage_url": base + url_for("public.manage", token=signup.manage_token(registration)),
        "event_url": base + url_for("public.event", slug=registration.event.slug),
        "join_url": base
        + url_for("public.join", token=signup.personal_token(registration, "join")),
        "privacy_url": base + url_for("public.privacy"),
    }


def still_applies(row: OutboxMessage, registration: Registration) -> bool:
    """Whether the mail still makes sense now (it is rendered at send time, DESIGN.md)."""
    kind = KINDS[row.kind]
    event = registration.event
    if registration.anonymised_at is not None:
        return False  # GDPR: the address is gone (rows queued later than the anonymisation)
    if registration.status == RegistrationStatus.CANCELLED and not kind.to_cancelled:
        return False
    if kind.confirmed_only and (
        event.status != EventStatus.PUBLISHED or registration.status != RegistrationStatus.CONFIRMED
    ):
        return False
    if row.kind in ("dial_in", "dial_in_update"):
        if registration.attendance != Attendance.ONLINE or not event.has_dial_in:
            return False  # invariant 4: never to on-site participants
        if (row.payload or {}).get("revision", event.dial_in_revision) != event.dial_in_revision:
            return False  # a newer revision's mail carries the current details
    return row.kind != "waitlisted" or registration.status == RegistrationStatus.WAITLISTED


def message_id(row: OutboxMessage) -> str:
    """Stable per outbox row: a resend after a crash carries the same Message-ID."""
    host = urlsplit(_base_url()).hostname or "localhost"
    digest = hashlib.sha256(row.dedupe_key.encode()).hexdigest()[:12]
    return f"<outbox-{row.id}-{digest}@{host}>"


def _context(row: OutboxMessage, registration: Registration) -> dict[str, Any]:
    event = registration.event
    return {
        "registration": registration,
        "event": event,
        "kind": row.kind,
        "payload": row.payload or {},
        "position": (
            signup.waitlist_position(registration)
            if registration.status == RegistrationStatus.WAITLISTED
            else None
        ),
        "show_checkin_qr": _shows_qr(row.kind, registration),
        #: The HTML's <title> is the subject (a different title is a spam signal).
        "subject": subject_of(row, event),
        "calendar_file": f"{event.slug}.ics" if KINDS[row.kind].calendar else None,
        "show_dial_in": registration.attendance == Attendance.ONLINE
        and registration.status == RegistrationStatus.CONFIRMED
        and scheduling.dial_in_due(event, utcnow()),
        **links(registration),
    }


def _render(kind: str, context: dict[str, Any]) -> tuple[str, str]:
    return (
        render_template(f"email/{kind}.txt", **context),
        render_template(f"email/{kind}.html", **context),
    )


def _email(row: OutboxMessage, registration: Registration, text: str, html: str) -> Message:
    event = registration.event
    kind = KINDS[row.kind]
    attachments = []
    # Only those with a seat have the event in their calendar (those waiting got no entry).
    if kind.calendar and registration.status == RegistrationStatus.CONFIRMED:
        attachments.append(
            Attachment(
                f"{event.slug}.ics",
                "text/calendar",
                ics.registration_calendar(registration),
                params={"charset": "utf-8", "method": "PUBLISH"},
            )
        )
    if _shows_qr(row.kind, registration):
        # Normally made right after the sign-up (signup.add_checkin_qr); if that step did not
        # run (a crash after the commit), it is made now and stored with the worker's commit.
        qrcode.ensure_checkin_qr(registration)
        image = registration.checkin_qr
        attachments.append(Attachment("check-in.png", "image/png", image, "checkin-qr"))
    return Message(
        Email(
            subject=subject_of(row, event),
            sender=current_app.config["MAIL_DEFAULT_SENDER"],
            to=registration.email,
            to_name=registration.full_name,
            text=text,
            html=html,
            message_id=message_id(row),
            reply_to=event.contact_email or None,
            reply_to_name=event.contact_name or "",
            attachments=attachments,
            headers={"Auto-Submitted": "auto-generated"},
        )
    )


def subject_of(row: OutboxMessage, event: Event) -> str:
    payload = row.payload or {}
    return str(KINDS[row.kind].subject) % {
        "title": event.title,
        "when": event_when(event),
        "subject": payload.get("subject", ""),
    }


def preview(event: Event, registration: Registration, subject: str, body: str) -> Message:
    """An organiser's message as ``registration`` would get it, not stored (preview and test
    send). ``registration`` may be a transient object."""
    row = OutboxMessage(
        id=0, kind="message", dedupe_key=f"preview:{utcnow().timestamp()}",
        payload={"subject": subject, "body": body},
    )  # fmt: skip
    row.registration = registration
    with force_locale(_language(registration)):
        text, html = _render("message", _context(row, registration))
        return _email(row, registration, text, html)


def _language(registration: Registration) -> str:
    return registration.language or registration.event.language or "de"


def build_message(row: OutboxMessage) -> Message | None:
    """The email for an outbox row, or ``None`` when it no longer applies."""
    registration = row.registration
    if registration is None or row.kind not in KINDS or not still_applies(row, registration):
        return None
    with force_locale(_language(registration)):
        text, html = _render(row.kind, _context(row, registration))
        return _email(row, registration, text, html)


# --- Mails to organisers -------------------------------------------------------------------------

RESET_MAX_AGE = 3600


class _ClockSigner(TimestampSigner):
    """Timestamps from the application's clock (tests travel in time instead of sleeping)."""

    def get_timestamp(self) -> int:
        return int(utcnow().timestamp())


def _reset_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        current_app.config["SECRET_KEY"], salt="password-reset", signer=_ClockSigner
    )


def reset_token(organiser: Organiser) -> str:
    """Valid for an hour and only until the password changes (it carries a digest of the
    current hash), so it works once."""
    return _reset_serializer().dumps([organiser.id, organiser.get_id().split(":", 1)[1]])


def organiser_for_reset_token(token: str) -> Organiser | None:
    try:
        organiser_id, stamp = _reset_serializer().loads(token, max_age=RESET_MAX_AGE)
    except (BadSignature, ValueError, TypeError):
        return None
    organiser = db.session.get(Organiser, organiser_id) if isinstance(organiser_id, int) else None
    if organiser is None or not organiser.active or organiser.get_id() != f"{organiser_id}:{stamp}":
        return None
    return organiser


def _password_reset(row: OutboxMessage) -> Message | None:
    organiser = db.session.get(Organiser, (row.payload or {}).get("organiser_id", 0))
    if organiser is None or not organiser.active:
        return None
    language = (row.payload or {}).get("language") or "de"
    with force_locale(language):
        context = {
            "organiser": organiser,
            "reset_url": current_app.config["BASE_URL"]
            + url_for("admin.password_reset", token=reset_token(organiser)),
        }
        return Message(
            Email(
                subject=_("Reset your password"),
                sender=current_app.config["MAIL_DEFAULT_SENDER"],
                to=organiser.email,
                to_name=organiser.name or "",
                text=render_template("email/password_reset.txt", **context),
                html=render_template("email/password_reset.html", **context),
                message_id=message_id(row),
                headers={"Auto-Submitted": "auto-generated"},
            )
        )


#: Kinds that go to an organiser (no registration): kind -> builder.
ORGANISER_KINDS: dict[str, Callable[[OutboxMessage], Message | None]] = {
    "password_reset": _password_reset,
}


# --- Many at once -------------------------------------------------------------------------------


def build_messages(rows: list[OutboxMessage]) -> list[Message | Exception | None]:
    """The emails for many rows, in order (``None``: no longer applies; an exception: this row
    could not be rendered or built, and only this row fails).

    Every mail is rendered on its own from its own registration. (A shared rendering with
    stand-ins merged per person leaked one participant's data into the others' mails as soon
    as a template used a personal value the merge did not know about.)
    """
    results: list[Message | Exception | None] = []
    for row in rows:
        try:
            builder = ORGANISER_KINDS.get(row.kind, build_message)
            results.append(builder(row))
        except Exception as exc:  # one row must not stop the batch; recorded as failed
            results.append(exc)
    return results
