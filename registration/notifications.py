"""Emails, rendered when they are sent, from the current data (Indico's notifications pattern).

Each kind has a subject and a template pair ``templates/email/<kind>.txt`` and ``.html``;
``build_message`` decides whether the row still applies and renders it in the participant's
language. It returns ``None`` when the mail no longer applies (it is then skipped).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, render_template, url_for
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from flask_mail import Message

from . import ics
from .formatting import event_when
from .models import Attendance, EventStatus, OutboxMessage, Registration, RegistrationStatus
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
    "reminder": Kind(_l("Reminder: %(title)s on %(when)s"), calendar=True, confirmed_only=True),
    "dial_in": Kind(_l("Dial-in details: %(title)s"), confirmed_only=True),
    "dial_in_update": Kind(_l("New dial-in details: %(title)s"), confirmed_only=True),
    "event_changed": Kind(_l("Changes to %(title)s"), calendar=True),
    "event_cancelled": Kind(_l("Cancelled: %(title)s"), calendar=True),
}


def _base_url() -> str:
    return current_app.config["BASE_URL"]


def links(registration: Registration) -> dict[str, str]:
    base = _base_url()
    return {
        "manage_url": base + url_for("public.manage", token=signup.manage_token(registration)),
        "event_url": base + url_for("public.event", slug=registration.event.slug),
        "join_url": base
        + url_for("public.join", token=signup.personal_token(registration, "join")),
    }


def still_applies(row: OutboxMessage, registration: Registration) -> bool:
    """Whether the mail still makes sense now (it is rendered at send time, DESIGN.md)."""
    kind = KINDS[row.kind]
    event = registration.event
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


def build_message(row: OutboxMessage) -> Message | None:
    """The email for an outbox row, or ``None`` when it no longer applies."""
    registration = row.registration
    if registration is None or row.kind not in KINDS or not still_applies(row, registration):
        return None
    event = registration.event
    kind = KINDS[row.kind]
    with force_locale(registration.language or event.language or "de"):
        context: dict[str, Any] = {
            "registration": registration,
            "event": event,
            "kind": row.kind,
            "payload": row.payload or {},
            "position": signup.waitlist_position(registration),
            "show_dial_in": registration.attendance == Attendance.ONLINE
            and registration.status == RegistrationStatus.CONFIRMED
            and scheduling.dial_in_due(event, utcnow()),
            **links(registration),
        }
        message = Message(
            subject=str(kind.subject) % {"title": event.title, "when": event_when(event)},
            recipients=[registration.email],
            body=render_template(f"email/{row.kind}.txt", **context),
            html=render_template(f"email/{row.kind}.html", **context),
            reply_to=event.contact_email or None,
            sender=current_app.config["MAIL_DEFAULT_SENDER"],
            extra_headers={"Auto-Submitted": "auto-generated"},
        )
        if kind.calendar:
            message.attach(
                f"{event.slug}.ics",
                "text/calendar; method=PUBLISH",
                ics.registration_calendar(registration),
            )
    message.msgId = message_id(row)
    return message
