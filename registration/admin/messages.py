"""Messages to an event's participants (preview, test, send) and the event's outbox."""

from __future__ import annotations

import smtplib
from typing import Any

from flask import (
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from .. import notifications
from ..extensions import db
from ..mailer import open_transport
from ..models import (
    Event,
    OutboxMessage,
    OutboxStatus,
    Registration,
    RegistrationStatus,
)
from ..services import messaging
from ..tokens import new_salt
from .forms import (
    CheckinForm,
    MessageForm,
)
from .views import PER_PAGE, _event_or_404, _of_event_or_404, bp, require_button


def _outbox_row_or_404(event: Event, message_id: int) -> OutboxMessage:
    return _of_event_or_404(OutboxMessage, event, message_id)


@bp.get("/events/<slug>/outbox")
@login_required
def outbox_list(slug: str) -> Any:
    """Every email of the event with its status, attempts and last error."""
    event = _event_or_404(slug)
    status = request.args.get("status") or ""
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.event_id == event.id)
        .options(selectinload(OutboxMessage.registration))  # one query for the names
    )
    if status in {s.value for s in OutboxStatus}:
        stmt = stmt.where(OutboxMessage.status == status)
    page = db.paginate(stmt.order_by(OutboxMessage.id.desc()), per_page=PER_PAGE)
    totals = dict(
        db.session.execute(
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.event_id == event.id)
            .group_by(OutboxMessage.status)
        ).all()
    )
    return render_template(
        "admin/outbox.html", event=event, page=page, totals=totals, status=status,
        form=CheckinForm(),
    )  # fmt: skip


@bp.post("/events/<slug>/outbox/<int:message_id>/retry")
@login_required
def outbox_retry(slug: str, message_id: int) -> Any:
    event = _event_or_404(slug)
    message = _outbox_row_or_404(event, message_id)
    require_button()
    if messaging.retry(event, message, current_user._get_current_object()):
        flash(_("The email will be sent again shortly."), "success")
    return redirect(url_for("admin.outbox_list", slug=slug, status=request.args.get("status")))


@bp.post("/events/<slug>/outbox/<int:message_id>/resend")
@login_required
def outbox_resend(slug: str, message_id: int) -> Any:
    event = _event_or_404(slug)
    message = _outbox_row_or_404(event, message_id)
    require_button()
    messaging.resend(event, message, current_user._get_current_object())
    flash(_("The email will be sent again shortly."), "success")
    if message.registration_id is not None:
        return redirect(
            url_for("admin.participant", slug=slug, registration_id=message.registration_id)
        )
    return redirect(url_for("admin.outbox_list", slug=slug))


# --- Messages to participants ---------------------------------------------------------------------


def _stand_in(event: Event, attendance: str | None) -> Registration:
    """The organiser as a participant, for preview and test send (never stored)."""
    organiser = current_user._get_current_object()
    registration = Registration(
        id=0, event_id=event.id, email=organiser.email, email_key=organiser.email,
        first_name=organiser.name or organiser.email.split("@")[0], last_name="",
        attendance=attendance or event.modes[0], status=RegistrationStatus.CONFIRMED,
        language=str(get_locale() or "de"), token_salt=new_salt(), manage_token_hash="",
    )  # fmt: skip
    set_committed_value(registration, "event", event)  # no backref: stays out of the session
    set_committed_value(registration, "answers", [])
    return registration


@bp.route("/events/<slug>/message", methods=["GET", "POST"])
@login_required
def message(slug: str) -> Any:
    """Write to participants: preview, a test to oneself, then send through the outbox."""
    event = _event_or_404(slug)
    form = MessageForm()
    preview_mail = None
    if form.validate_on_submit():
        status, attendance = form.status.data or None, form.attendance.data or None
        action = request.form.get("action", "preview")
        if action == "send":
            count = messaging.send(
                event, current_user, subject=form.subject.data, body=form.body.data,
                status=status, attendance=attendance,
            )  # fmt: skip
            flash(_("The message goes out to %(count)s participants.", count=count), "success")
            return redirect(url_for("admin.outbox_list", slug=slug))
        preview_mail = notifications.preview(
            event, _stand_in(event, attendance), form.subject.data, form.body.data
        )
        if action == "test":
            try:
                with open_transport() as transport:
                    transport.send(preview_mail)
            except (smtplib.SMTPException, OSError) as exc:
                flash(_("The test could not be sent: %(error)s", error=str(exc)), "error")
            else:
                flash(_("A test has been sent to %(email)s.", email=current_user.email), "success")
    # The count for the choice as it stands; a choice that is no choice counts everyone (its
    # error is shown next to it).
    invalid = bool(form.status.errors or form.attendance.errors)
    count = messaging.count_recipients(
        event,
        status=None if invalid else form.status.data or None,
        attendance=None if invalid else form.attendance.data or None,
    )
    return render_template(
        "admin/message.html", event=event, form=form, preview=preview_mail, count=count
    ), (422 if form.errors else 200)
