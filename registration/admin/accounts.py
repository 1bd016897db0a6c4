"""Accounts (administrators only) and the audit log."""

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
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import (
    AuditEntry,
    Organiser,
)
from ..services import accounts
from ..services.errors import ServiceError
from .forms import (
    AccountForm,
    CheckinForm,
)
from .views import PER_PAGE, _admin_only, _event_or_404, bp, require_button

# --- Audit log ----------------------------------------------------------------------------------


@bp.get("/events/<slug>/audit")
@login_required
def audit_event(slug: str) -> Any:
    event = _event_or_404(slug)
    page = db.paginate(
        select(AuditEntry).where(AuditEntry.event_id == event.id).order_by(AuditEntry.id.desc()),
        per_page=PER_PAGE,
    )
    return render_template("admin/audit.html", event=event, page=page)


@bp.get("/audit")
@login_required
def audit_all() -> Any:
    """Everything, logins included: administrators only."""
    _admin_only()
    page = db.paginate(select(AuditEntry).order_by(AuditEntry.id.desc()), per_page=PER_PAGE)
    return render_template("admin/audit.html", event=None, page=page)


# --- Accounts (admins) and the organisers of an event -------------------------------------------


@bp.route("/accounts", methods=["GET", "POST"])
@login_required
def accounts_list() -> Any:
    _admin_only()
    form = AccountForm()
    if form.validate_on_submit():
        try:
            accounts.invite(
                form.email.data, name=form.name.data or "", is_admin=bool(form.is_admin.data),
                actor=current_user, language=str(get_locale() or "de"),
            )  # fmt: skip
        except ServiceError as exc:
            db.session.rollback()
            form.email.errors = [*form.email.errors, str(exc)]
        else:
            db.session.commit()
            flash(_("The account has been created; an email with a link to choose a password "
                    "is on its way."), "success")  # fmt: skip
            return redirect(url_for("admin.accounts_list"))
    people = db.session.scalars(
        select(Organiser)
        .options(selectinload(Organiser.events))  # the event counts in one query
        .order_by(func.lower(Organiser.email))
    ).all()
    return render_template("admin/accounts.html", form=form, people=people, action=CheckinForm()), (
        422 if form.errors else 200
    )


@bp.post("/accounts/<int:organiser_id>/active")
@login_required
def account_active(organiser_id: int) -> Any:
    _admin_only()
    organiser = db.session.get(Organiser, organiser_id)
    if organiser is None:
        abort(404)
    require_button()
    try:
        accounts.set_active(organiser, request.form.get("active") == "1", actor=current_user)
    except ServiceError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        db.session.commit()
    return redirect(url_for("admin.accounts_list"))
