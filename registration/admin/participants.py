"""An event's participants: the list, one person's details, and an organiser's changes
(phone sign-ups, corrections, cancellation, a seat past the capacity)."""

from __future__ import annotations

from typing import Any

from flask import (
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import func, select

from ..extensions import db
from ..models import (
    Attendance,
    OutboxMessage,
    Registration,
    RegistrationStatus,
)
from ..services import participants as participants_service
from ..services import signup
from ..services.errors import InvalidInput, ServiceError
from ..services.seats import seat_status
from .forms import ParticipantForm
from .views import PER_PAGE, _event_or_404, _registration_or_404, bp, require_button

SORTS = {
    "name": (func.lower(Registration.last_name), func.lower(Registration.first_name)),
    "organisation": (func.lower(Registration.organisation), func.lower(Registration.last_name)),
    "registered": (Registration.created_at,),
    "status": (Registration.status, Registration.waitlist_order),
}


@bp.get("/events/<slug>/participants")
@login_required
def participants(slug: str) -> Any:
    event = _event_or_404(slug)
    query = (request.args.get("q") or "").strip()
    status = request.args.get("status") or ""
    attendance = request.args.get("attendance") or ""
    sort = request.args.get("sort") if request.args.get("sort") in SORTS else "name"
    stmt = select(Registration).where(Registration.event_id == event.id)
    if query:
        stmt = stmt.where(participants_service.search(query))
    if status in {s.value for s in RegistrationStatus}:
        stmt = stmt.where(Registration.status == status)
    if attendance in {a.value for a in Attendance}:
        stmt = stmt.where(Registration.attendance == attendance)
    page = db.paginate(stmt.order_by(*SORTS[sort], Registration.id), per_page=PER_PAGE)
    return render_template(
        "admin/participants.html",
        event=event,
        page=page,
        seats=seat_status([event])[event.id],
        filters={"q": query, "status": status, "attendance": attendance, "sort": sort},
    )


@bp.get("/events/<slug>/participants/<int:registration_id>")
@login_required
def participant(slug: str, registration_id: int) -> Any:
    event = _event_or_404(slug)
    registration = _registration_or_404(event, registration_id)
    emails = db.session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.registration_id == registration.id)
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
    ).all()
    return render_template(
        "admin/participant.html", event=event, registration=registration, emails=emails
    )


# --- Participants by hand ------------------------------------------------------------------------


@bp.route("/events/<slug>/participants/new", methods=["GET", "POST"])
@login_required
def participant_new(slug: str) -> Any:
    """A sign-up taken by phone: the organiser confirms the consent, may go past capacity."""
    event = _event_or_404(slug)
    form = ParticipantForm()
    if form.validate_on_submit():
        data = signup.SignupData(
            email=form.email.data, first_name=form.first_name.data,
            last_name=form.last_name.data, organisation=form.organisation.data or "",
            attendance=form.attendance.data if len(event.modes) > 1 else None,
            privacy_consent=True, language=event.language,
        )  # fmt: skip
        try:
            registration = participants_service.add(
                event, data, actor=current_user._get_current_object(),
                over_capacity=bool(form.over_capacity.data),
            )  # fmt: skip
        except InvalidInput as exc:
            for name, messages in exc.errors.items():
                (form[name].errors if name in form else form.form_errors).extend(messages)
        except ServiceError as exc:
            form.form_errors.append(str(exc))
        else:
            flash(_("%(name)s has been added.", name=registration.full_name), "success")
            return redirect(
                url_for("admin.participant", slug=slug, registration_id=registration.id)
            )
    return render_template(
        "admin/participant_form.html", event=event, form=form, registration=None
    ), (422 if form.errors or form.form_errors else 200)


@bp.route("/events/<slug>/participants/<int:registration_id>/edit", methods=["GET", "POST"])
@login_required
def participant_edit(slug: str, registration_id: int) -> Any:
    event = _event_or_404(slug)
    registration = _registration_or_404(event, registration_id)
    if registration.anonymised_at is not None:  # nothing left to edit, and nothing to re-add
        flash(_("This person's data has been removed; it cannot be edited."), "error")
        return redirect(url_for("admin.participant", slug=slug, registration_id=registration_id))
    form = ParticipantForm(obj=registration if request.method == "GET" else None)
    form.consent.validators = []  # given at sign-up
    if form.validate_on_submit():
        try:
            participants_service.edit(
                registration, actor=current_user._get_current_object(), email=form.email.data,
                first_name=form.first_name.data, last_name=form.last_name.data,
                organisation=form.organisation.data or "",
            )  # fmt: skip
        except ServiceError as exc:
            form.email.errors = [*form.email.errors, str(exc)]
        else:
            flash(_("The changes have been saved."), "success")
            return redirect(
                url_for("admin.participant", slug=slug, registration_id=registration_id)
            )
    return render_template(
        "admin/participant_form.html", event=event, form=form, registration=registration
    ), (422 if form.errors else 200)


@bp.post("/events/<slug>/participants/<int:registration_id>/cancel")
@login_required
def participant_cancel(slug: str, registration_id: int) -> Any:
    event = _event_or_404(slug)
    registration = _registration_or_404(event, registration_id)
    require_button()
    participants_service.cancel(registration, actor=current_user._get_current_object())
    flash(_("The registration has been cancelled."), "success")
    return redirect(url_for("admin.participant", slug=slug, registration_id=registration_id))


@bp.post("/events/<slug>/participants/<int:registration_id>/confirm")
@login_required
def participant_confirm(slug: str, registration_id: int) -> Any:
    """From the waiting list to a seat even though the event is full."""
    event = _event_or_404(slug)
    registration = _registration_or_404(event, registration_id)
    require_button()
    try:
        participants_service.confirm_anyway(registration, actor=current_user._get_current_object())
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash(_("Confirmed beyond the capacity."), "success")
    return redirect(url_for("admin.participant", slug=slug, registration_id=registration_id))
