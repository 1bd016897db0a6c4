"""Back-office views. Every view that shows an event or a participant goes through
``_event_or_404``: another organiser's event is a 404, as if it did not exist (invariant 7)."""

from __future__ import annotations

import smtplib
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from .. import notifications
from ..extensions import db, login_manager
from ..mailer import open_transport
from ..models import (
    Attendance,
    AuditEntry,
    Event,
    EventStatus,
    FileKind,
    Organiser,
    OutboxMessage,
    OutboxStatus,
    Registration,
    RegistrationStatus,
    event_organisers,
)
from ..services import accounts, audit, checkin, exports, files, messaging, outbox, signup
from ..services import events as events_service
from ..services.errors import InvalidInput, ServiceError, translated
from ..services.seats import seat_status
from ..timeutil import utcnow
from ..tokens import new_salt
from .forms import (
    AccountForm,
    AddOrganiserForm,
    CancelEventForm,
    CheckinForm,
    EventForm,
    FileForm,
    ForgotPasswordForm,
    LoginForm,
    MessageForm,
    ParticipantForm,
    PasswordForm,
    ResetPasswordForm,
)

bp = Blueprint("admin", __name__, url_prefix="/admin")

PER_PAGE = 50
SORTS = {
    "name": (func.lower(Registration.last_name), func.lower(Registration.first_name)),
    "organisation": (func.lower(Registration.organisation), func.lower(Registration.last_name)),
    "registered": (Registration.created_at,),
    "status": (Registration.status, Registration.waitlist_order),
}


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not send people to another site."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("admin.dashboard")


def visible_events() -> Any:
    """A select of the events the current organiser may see."""
    stmt = select(Event)
    if not current_user.is_admin:
        stmt = stmt.join(event_organisers).where(event_organisers.c.organiser_id == current_user.id)
    return stmt


def _event_or_404(slug: str) -> Event:
    event = db.session.scalars(visible_events().where(Event.slug == slug)).first()
    if event is None:
        abort(404)
    return event


def _registration_or_404(event: Event, registration_id: int) -> Registration:
    registration = db.session.get(Registration, registration_id)
    if registration is None or registration.event_id != event.id:
        abort(404)
    return registration


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("admin.dashboard"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            organiser = accounts.authenticate(form.email.data, form.password.data)
        except ServiceError as exc:
            db.session.commit()  # the failure count and the audit entry
            form.form_errors.append(str(exc))
        else:
            db.session.commit()
            login_user(organiser)
            return redirect(_safe_next(request.args.get("next")))
    return render_template("admin/login.html", form=form), 200 if not form.errors else 422


@bp.post("/logout")
@login_required
def logout() -> Any:
    logout_user()
    flash(_("You have been logged out."), "success")
    return redirect(url_for("admin.login"))


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password() -> Any:
    form = PasswordForm()
    organiser = current_user._get_current_object()
    if form.validate_on_submit():
        try:
            accounts.change_password(organiser, form.current_password.data, form.password.data)
        except InvalidInput as exc:
            db.session.rollback()
            for name, messages in exc.errors.items():
                form[name].errors = [*form[name].errors, *messages]
        else:
            db.session.commit()
            login_user(organiser)  # the session identifier changed with the password
            flash(_("Your password has been changed."), "success")
            return redirect(url_for("admin.dashboard"))
    return render_template("admin/password.html", form=form)


@bp.route("/password/forgot", methods=["GET", "POST"])
def password_forgot() -> Any:
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        accounts.request_reset(form.email.data, str(get_locale() or "de"))
        db.session.commit()
        flash(
            _("If an account exists for this address, we have sent a link to it. "
              "It works for one hour."),
            "success",
        )  # fmt: skip
        return redirect(url_for("admin.login"))
    return render_template("admin/password_forgot.html", form=form)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def password_reset(token: str) -> Any:
    organiser = notifications.organiser_for_reset_token(token)
    if organiser is None:
        flash(_("This link has expired or was used already. Please ask for a new one."), "error")
        return redirect(url_for("admin.password_forgot"))
    form = ResetPasswordForm()
    if form.validate_on_submit():
        accounts.reset_password(organiser, form.password.data)
        db.session.commit()
        flash(_("Your password has been changed. Please log in."), "success")
        return redirect(url_for("admin.login"))
    return render_template("admin/password_reset.html", form=form)


@bp.get("/")
@login_required
def dashboard() -> Any:
    events = list(db.session.scalars(visible_events().order_by(Event.starts_at)))
    now = utcnow()
    groups = {
        "upcoming": [e for e in events if e.status != EventStatus.DRAFT and e.ends_at > now],
        "drafts": [e for e in events if e.status == EventStatus.DRAFT],
        "past": [e for e in events if e.status != EventStatus.DRAFT and e.ends_at <= now][::-1],
    }
    return render_template(
        "admin/dashboard.html", groups=groups, seats=seat_status(events), now=now
    )


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
        like = f"%{query.lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(Registration.first_name).like(like),
                func.lower(Registration.last_name).like(like),
                Registration.email_key.like(like),
                func.lower(Registration.organisation).like(like),
            )
        )
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
        like = f"%{query}%"
        stmt = stmt.where(
            or_(
                func.lower(Registration.last_name).like(like),
                func.lower(Registration.first_name).like(like),
                func.lower(Registration.organisation).like(like),
            )
        )
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
        db.session.rollback()
        flash(str(exc), "error")
    else:
        db.session.commit()
    return redirect(
        url_for("admin.checkin_list", slug=slug, q=request.args.get("q") or None)
        + f"#person-{registration.id}"
    )


def _outbox_row_or_404(event: Event, message_id: int) -> OutboxMessage:
    message = db.session.get(OutboxMessage, message_id)
    if message is None or message.event_id != event.id:
        abort(404)
    return message


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
    if not CheckinForm().validate_on_submit():
        abort(400)
    if outbox.retry(message):
        audit.record(current_user, "email.retry", event=event, subject=f"outbox:{message.id}")
        db.session.commit()
        flash(_("The email will be sent again shortly."), "success")
    return redirect(url_for("admin.outbox_list", slug=slug, status=request.args.get("status")))


@bp.post("/events/<slug>/outbox/<int:message_id>/resend")
@login_required
def outbox_resend(slug: str, message_id: int) -> Any:
    event = _event_or_404(slug)
    message = _outbox_row_or_404(event, message_id)
    if not CheckinForm().validate_on_submit():
        abort(400)
    copy = outbox.resend(message)
    db.session.flush()
    audit.record(current_user, "email.resend", event=event, subject=f"outbox:{copy.id}")
    db.session.commit()
    flash(_("The email will be sent again shortly."), "success")
    if message.registration_id is not None:
        return redirect(
            url_for("admin.participant", slug=slug, registration_id=message.registration_id)
        )
    return redirect(url_for("admin.outbox_list", slug=slug))


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
        db.session.rollback()
        return render_template(
            "admin/checkin_scan.html", event=event, registration=registration, problem=str(exc)
        ), 409
    db.session.commit()
    return render_template(
        "admin/checkin_scan.html", event=event, registration=registration, newly=newly,
        counts=checkin.counts(event), problem=None,
    )  # fmt: skip


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


def _admin_only() -> None:
    if not current_user.is_admin:
        abort(404)  # like every other page one may not see


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
    if not CheckinForm().validate_on_submit():
        abort(400)
    try:
        accounts.set_active(organiser, request.form.get("active") == "1", actor=current_user)
    except ServiceError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        db.session.commit()
    return redirect(url_for("admin.accounts_list"))


@bp.post("/events/<slug>/organisers")
@login_required
def organiser_add(slug: str) -> Any:
    event = _event_or_404(slug)
    form = AddOrganiserForm()
    if not form.validate_on_submit():
        abort(400)
    organiser = accounts.find(form.email.data)
    if organiser is None or not organiser.active:
        flash(_("There is no active account for %(email)s.", email=form.email.data), "error")
    elif organiser not in event.organisers:
        event.organisers.append(organiser)
        audit.record(current_user, "event.organiser.add", event=event,
                     subject=f"organiser:{organiser.id}")  # fmt: skip
        db.session.commit()
        flash(_("%(email)s now organises this event.", email=organiser.email), "success")
    return redirect(url_for("admin.event_edit", slug=slug) + "#organisers")


@bp.post("/events/<slug>/organisers/<int:organiser_id>/remove")
@login_required
def organiser_remove(slug: str, organiser_id: int) -> Any:
    event = _event_or_404(slug)
    if not CheckinForm().validate_on_submit():
        abort(400)
    organiser = next((o for o in event.organisers if o.id == organiser_id), None)
    if organiser is None:
        abort(404)
    event.organisers.remove(organiser)
    audit.record(current_user, "event.organiser.remove", event=event,
                 subject=f"organiser:{organiser.id}")  # fmt: skip
    db.session.commit()
    return redirect(url_for("admin.event_edit", slug=slug) + "#organisers")


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
            result = signup.register(
                event, data, by_organiser=True, over_capacity=bool(form.over_capacity.data)
            )
        except InvalidInput as exc:
            db.session.rollback()
            for name, messages in exc.errors.items():
                (form[name].errors if name in form else form.form_errors).extend(messages)
        except ServiceError as exc:
            db.session.rollback()
            form.form_errors.append(str(exc))
        else:
            registration = result.registration
            audit.record(
                current_user, "participant.add", event=event,
                subject=f"registration:{registration.id}",
                details={"over_capacity": bool(form.over_capacity.data)},
            )  # fmt: skip
            db.session.commit()
            signup.add_checkin_qr(result)
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
            signup.update_details(
                registration, email=form.email.data, first_name=form.first_name.data,
                last_name=form.last_name.data, organisation=form.organisation.data or "",
            )  # fmt: skip
        except ServiceError as exc:
            db.session.rollback()
            form.email.errors = [*form.email.errors, str(exc)]
        else:
            audit.record(current_user, "participant.edit", event=event,
                         subject=f"registration:{registration.id}")  # fmt: skip
            db.session.commit()
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
    if not CheckinForm().validate_on_submit():
        abort(400)
    signup.cancel(registration)
    audit.record(current_user, "participant.cancel", event=event,
                 subject=f"registration:{registration.id}")  # fmt: skip
    db.session.commit()
    flash(_("The registration has been cancelled."), "success")
    return redirect(url_for("admin.participant", slug=slug, registration_id=registration_id))


@bp.post("/events/<slug>/participants/<int:registration_id>/confirm")
@login_required
def participant_confirm(slug: str, registration_id: int) -> Any:
    """From the waiting list to a seat even though the event is full."""
    event = _event_or_404(slug)
    registration = _registration_or_404(event, registration_id)
    if not CheckinForm().validate_on_submit():
        abort(400)
    try:
        signup.confirm_anyway(registration)
    except ServiceError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        audit.record(current_user, "participant.confirm_over_capacity", event=event,
                     subject=f"registration:{registration.id}")  # fmt: skip
        db.session.commit()
        flash(_("Confirmed beyond the capacity."), "success")
    return redirect(url_for("admin.participant", slug=slug, registration_id=registration_id))


# --- Events: create, edit, duplicate, cancel -----------------------------------------------------

#: Where a problem found by the import rules (path) is shown on the form (field).
_RECORD_FIELDS = {
    "venue.name": "venue_name", "venue.address": "venue_address",
    "contact.name": "contact_name", "contact.email": "contact_email",
    "contact.phone": "contact_phone", "capacity.on_site": "capacity_on_site",
    "capacity.online": "capacity_online", "dial_in.url": "dial_in_url",
    "dial_in.meeting_id": "dial_in_meeting_id", "dial_in.passcode": "dial_in_passcode",
    "dial_in.phone": "dial_in_phone", "dial_in.instructions": "dial_in_instructions",
    "waitlist": "waitlist_enabled",
}  # fmt: skip


def _show_on_form(form: EventForm, path: str | None, message: str) -> None:
    """A problem the import rules found at ``path`` (e.g. ``capacity.on_site``), translated, next
    to its field; above the form when no field shows that value."""
    target = form._fields.get(_RECORD_FIELDS.get(path, path)) if path else None
    if target is not None:
        target.errors = [*target.errors, translated(message)]
    else:
        form.form_errors.append(f"{path}: {translated(message)}" if path else translated(message))


def _save_event(form: EventForm, event: Event | None) -> Event | None:
    """Validate with the import rules and create or update; errors go onto the form."""
    zone = event.zone if event is not None else ZoneInfo(current_app.config["TIMEZONE"])
    record = form.to_record(zone)
    if event is not None:
        record["slug"] = event.slug  # the web address stays (links in emails and on websites)
        record["language"] = event.language
    try:
        data = events_service.parse_event(record, record["slug"])
    except events_service.EventDataError as exc:
        for path, message in exc.fields:
            _show_on_form(form, path, message)
        return None
    if (
        event is None
        and db.session.scalars(select(Event.id).where(Event.slug == data.slug)).first()
    ):
        form.slug.errors = [*form.slug.errors, _("This web address is taken already.")]
        return None
    before = (
        (event.starts_at, event.ends_at, event.venue_name, event.venue_address) if event else None
    )
    try:
        saved, created = events_service.upsert_event(data)
    except ServiceError as exc:
        db.session.rollback()
        _show_on_form(form, getattr(exc, "field", None), exc.message)
        return None
    if created:
        saved.organisers.append(current_user._get_current_object())
    audit.record(current_user, "event.create" if created else "event.update", event=saved)
    after = (saved.starts_at, saved.ends_at, saved.venue_name, saved.venue_address)
    if before is not None and before != after and form.notify.data:
        count = events_service.notify_participants(saved, "event_changed")
        flash(_("%(count)s participants will be told about the change.", count=count), "success")
    db.session.commit()
    return saved


@bp.route("/events/new", methods=["GET", "POST"])
@login_required
def event_new() -> Any:
    form = EventForm()
    source = request.args.get("copy")
    if request.method == "GET" and source:
        original = _event_or_404(source)
        form.fill_from(original)  # the next workshop of a series: all but dates and people
        form.slug.data = f"{original.slug}-kopie"
        form.status.data = "draft"
        for name in ("starts_at", "ends_at", "registration_opens_at", "registration_closes_at"):
            form[name].data = None
    if form.validate_on_submit():
        event = _save_event(form, None)
        if event is not None:
            flash(_("The event has been created."), "success")
            return redirect(url_for("admin.event_edit", slug=event.slug))
    return render_template("admin/event_form.html", form=form, event=None), (
        422 if form.errors or form.form_errors else 200
    )


@bp.route("/events/<slug>/edit", methods=["GET", "POST"])
@login_required
def event_edit(slug: str) -> Any:
    event = _event_or_404(slug)
    form = EventForm()
    if request.method == "GET":
        form.fill_from(event)
    form.slug.data = event.slug
    if form.validate_on_submit() and _save_event(form, event) is not None:
        flash(_("The changes have been saved."), "success")
        return redirect(url_for("admin.event_edit", slug=slug))
    return render_template(
        "admin/event_form.html", form=form, event=event, cancel_form=CancelEventForm(),
        organiser_form=AddOrganiserForm(formdata=None), action=CheckinForm(),
        file_form=FileForm(formdata=None),
    ), (422 if request.method == "POST" else 200)  # fmt: skip


@bp.post("/events/<slug>/cancel")
@login_required
def event_cancel(slug: str) -> Any:
    event = _event_or_404(slug)
    form = CancelEventForm()
    if not form.validate_on_submit():
        abort(400)
    count = events_service.cancel_event(event, notify=bool(form.notify.data))
    audit.record(current_user, "event.cancel", event=event, details={"notified": count})
    db.session.commit()
    flash(_("The event has been cancelled."), "success")
    return redirect(url_for("admin.event_edit", slug=slug))


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
            db.session.commit()
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
    count = len(
        messaging.recipients(
            event, status=form.status.data or None, attendance=form.attendance.data or None
        )
    )
    return render_template(
        "admin/message.html", event=event, form=form, preview=preview_mail, count=count
    ), (422 if form.errors else 200)


@bp.post("/events/<slug>/files")
@login_required
def file_upload(slug: str) -> Any:
    event = _event_or_404(slug)
    form = FileForm()
    if not form.validate_on_submit():
        for messages in form.errors.values():
            for message in messages:
                flash(str(message), "error")
        return redirect(url_for("admin.event_edit", slug=slug) + "#files")
    upload = form.file.data
    data = upload.read(files.MAX_ATTACHMENT_BYTES + 1)
    kind = FileKind(form.kind.data)
    try:
        stored = files.store(event, kind, data, upload.filename or "datei", form.title.data or "")
    except files.FileRejected as exc:
        db.session.rollback()
        flash(_("The file was not accepted: %(reason)s", reason=str(exc)), "error")
    else:
        if kind == FileKind.TITLE_IMAGE:
            event.title_image_alt = form.alt.data or ""
            event.title_image_credit = form.credit.data or ""
        audit.record(current_user, "event.file.add", event=event, subject=f"file:{stored.id}",
                     details={"name": stored.filename, "type": stored.content_type})  # fmt: skip
        db.session.commit()
        flash(_("The file has been added."), "success")
    return redirect(url_for("admin.event_edit", slug=slug) + "#files")


@bp.post("/events/<slug>/files/<int:file_id>/remove")
@login_required
def file_remove(slug: str, file_id: int) -> Any:
    event = _event_or_404(slug)
    if not CheckinForm().validate_on_submit():
        abort(400)
    stored = next((f for f in event.files if f.id == file_id), None)
    if stored is None:
        abort(404)
    audit.record(current_user, "event.file.remove", event=event, subject=f"file:{stored.id}")
    files.remove(stored)
    db.session.commit()
    return redirect(url_for("admin.event_edit", slug=slug) + "#files")


# --- Exports: stable URLs for bookmarks and scripts ----------------------------------------------


def _export_filters() -> dict[str, str | None]:
    """``status`` and ``attendance`` query filters; anything unknown is a clear 400."""
    filters: dict[str, str | None] = {}
    for name, allowed in (
        ("status", {s.value for s in RegistrationStatus}),
        ("attendance", {a.value for a in Attendance}),
    ):
        value = request.args.get(name) or None
        if value is not None and value not in allowed:
            abort(400, description=f"{name} must be one of {', '.join(sorted(allowed))}")
        filters[name] = value
    return filters


def _log_export(event: Event, kind: str, filters: dict[str, Any]) -> None:
    audit.record(current_user, f"export.{kind}", event=event, details=filters)
    db.session.commit()


def _download(body: Any, mimetype: str, filename: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"  # personal data: not in shared caches
    return response


@bp.get("/events/<slug>/export.csv")
@login_required
def export_csv(slug: str) -> Response:
    event = _event_or_404(slug)
    filters = _export_filters()
    delimiter = "," if request.args.get("delimiter") in (",", "comma") else ";"
    _log_export(event, "csv", {**filters, "delimiter": delimiter})
    lines = exports.csv_lines(event, delimiter=delimiter, **filters)
    return _download(
        stream_with_context(lines), "text/csv; charset=utf-8", f"{event.slug}-teilnehmende.csv"
    )


@bp.get("/events/<slug>/export.xlsx")
@login_required
def export_xlsx(slug: str) -> Response:
    event = _event_or_404(slug)
    filters = _export_filters()
    _log_export(event, "xlsx", filters)
    return _download(
        exports.xlsx_file(event, **filters),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        f"{event.slug}-teilnehmende.xlsx",
    )


@bp.get("/events/<slug>/export.pdf")
@login_required
def export_pdf(slug: str) -> Response:
    """The sign-in sheet ("Teilnehmerliste"): on-site participants unless asked otherwise."""
    event = _event_or_404(slug)
    filters = _export_filters()
    attendance = filters["attendance"] or ("online" if event.format == "online" else "on_site")
    _log_export(event, "signin_pdf", {"attendance": attendance})
    return _download(
        exports.signin_sheet_pdf(event, attendance=attendance),
        "application/pdf",
        f"{event.slug}-teilnehmerliste.pdf",
    )


@bp.get("/events/<slug>/badges.pdf")
@login_required
def export_badges(slug: str) -> Response:
    event = _event_or_404(slug)
    filters = _export_filters()
    status = filters["status"] or RegistrationStatus.CONFIRMED.value
    _log_export(event, "badges", {**filters, "status": status})
    return _download(
        exports.badges_pdf(event, status=status, attendance=filters["attendance"]),
        "application/pdf",
        f"{event.slug}-namensschilder.pdf",
    )


def init_app(app: Any) -> None:
    """Flask-Login: the user loader and where anonymous visitors are sent."""
    login_manager.init_app(app)
    login_manager.login_view = "admin.login"
    login_manager.login_message = None
    login_manager.session_protection = "basic"
    login_manager.user_loader(accounts.load_session_user)
    # Flask-Login caches the user on ``g``; an app context that outlives one request (tests,
    # nested contexts) must not carry one visitor's login into the next request.
    app.before_request(_forget_cached_user)


def _forget_cached_user() -> None:
    g.pop("_login_user", None)
