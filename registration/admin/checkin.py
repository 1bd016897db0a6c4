"""Check-in at the door: the list with one button per person, and the scanned QR code."""

from __future__ import annotations

from typing import Any

from flask import (
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from sqlalchemy import func, select

from ..extensions import db
from ..models import (
    Registration,
    RegistrationStatus,
)
from ..services import checkin, participants, signup
from ..services.errors import ServiceError
from .forms import CheckinForm
from .views import _event_or_404, _registration_or_404, bp


@bp.get("/events/<slug>/checkin")
@login_required
def checkin_list(slug: str) -> Any:
    """The list at the door: confirmed participants by name, one button each."""
    event = _event_or_404(slug)
    query = (request.args.get("q") or "").strip().lower()
    stmt = select(Registration).where(
        Registration.event_id == event.id, Registration.status == RegistrationStatus.CONFIRMED
    )
    if query:
        stmt = stmt.where(participants.search(query))
    people = db.session.scalars(
        stmt.order_by(func.lower(Registration.last_name), func.lower(Registration.first_name))
    ).all()
    return render_template(
        "admin/checkin.html", event=event, people=people, counts=checkin.counts(event), q=query
    )


@bp.post("/events/<slug>/checkin/<int:registration_id>")
@login_required
def checkin_toggle(slug: str, registration_id: int) -> Any:
    event = _event_or_404(slug)
    registration = _registration_or_404(event, registration_id)
    form = CheckinForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        if request.form.get("action") == "undo":
            checkin.undo(registration, current_user)
        else:
            checkin.check_in(registration, current_user)
    except ServiceError as exc:
        flash(str(exc), "error")
    return redirect(
        url_for("admin.checkin_list", slug=slug, q=request.args.get("q") or None)
        + f"#person-{registration.id}"
    )


@bp.get("/c/<token>")
@login_required  # anyone not logged in lands on the login page: the code reveals nothing
def checkin_scan(token: str) -> Any:
    """The personal QR code, scanned with an organiser's phone: checks the person in."""
    registration = signup.find_by_checkin_token(token)
    if registration is None or not current_user.can_manage(registration.event):
        abort(404)
    event = registration.event
    try:
        newly = checkin.check_in(registration, current_user)
    except ServiceError as exc:
        return render_template(
            "admin/checkin_scan.html", event=event, registration=registration, problem=str(exc)
        ), 409
    return render_template(
        "admin/checkin_scan.html", event=event, registration=registration, newly=newly,
        counts=checkin.counts(event), problem=None,
    )  # fmt: skip
