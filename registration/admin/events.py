"""Events: create, edit, duplicate, cancel; their files and organisers."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required

from ..extensions import db
from ..models import Event, EventStatus, FileKind, Organiser
from ..services import accounts, files
from ..services import events as events_service
from ..services.errors import ServiceError, translated
from .forms import (
    AddOrganiserForm,
    CancelEventForm,
    CheckinForm,
    EventForm,
    FileForm,
)
from .views import _event_or_404, bp, require_button


def _me() -> Organiser:
    return current_user._get_current_object()


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
    elif events_service.add_organiser(event, organiser, actor=_me()):
        flash(_("%(email)s now organises this event.", email=organiser.email), "success")
    return redirect(url_for("admin.event_edit", slug=slug) + "#organisers")


@bp.post("/events/<slug>/organisers/<int:organiser_id>/remove")
@login_required
def organiser_remove(slug: str, organiser_id: int) -> Any:
    event = _event_or_404(slug)
    require_button()
    organiser = next((o for o in event.organisers if o.id == organiser_id), None)
    if organiser is None:
        abort(404)
    events_service.remove_organiser(event, organiser, actor=_me())
    return redirect(url_for("admin.event_edit", slug=slug) + "#organisers")


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


def _save_event(form: EventForm, event: Event | None, copy_of: Event | None = None) -> Event | None:
    """Create or update the event with the services' rules; problems go next to their fields.

    An update names every field the form shows: the title image's alternative text and credit
    (edited with the image), the questions and the files stay as they are."""
    zone = event.zone if event is not None else ZoneInfo(current_app.config["TIMEZONE"])
    record = form.to_record(zone)
    try:
        if event is None:
            data = events_service.parse_event(record, record["slug"])
            return events_service.create_event(data, actor=_me(), copy_of=copy_of)
        del record["slug"]  # the web address stays (links in emails and on websites)
        if event.status == EventStatus.CANCELLED:
            del record["status"]  # the form does not offer it: cancelled stays cancelled
        change = events_service.update_event(
            event, record, actor=_me(), notify=bool(form.notify.data),
            expected_version=int(form.version.data) if form.version.data else None,
        )  # fmt: skip
    except events_service.StaleVersion as exc:
        db.session.rollback()
        form.form_errors.append(str(exc))
        form.version.data = str(db.session.get_one(Event, event.id).version)
        return None
    except events_service.EventDataError as exc:
        db.session.rollback()
        for path, message in exc.fields:
            _show_on_form(form, path, message)
        return None
    except ServiceError as exc:
        db.session.rollback()
        _show_on_form(form, getattr(exc, "field", None), exc.message)
        return None
    if change.notified:
        flash(
            _("%(count)s participants will be told about the change.", count=change.notified),
            "success",
        )
    return change.event


@bp.route("/events/new", methods=["GET", "POST"])
@login_required
def event_new() -> Any:
    """A new event; ``?copy=<slug>`` starts from another event (the next workshop of a series):
    everything but the web address and the people, questions and files included."""
    form = EventForm()
    source = request.args.get("copy")
    original = _event_or_404(source) if source else None
    if request.method == "GET" and original is not None:
        form.fill_from(original)
        form.slug.data = events_service.free_slug(f"{original.slug}-kopie")
        form.status.data = "draft"
    if form.validate_on_submit():
        event = _save_event(form, None, copy_of=original)
        if event is not None:
            flash(_("The event has been created."), "success")
            return redirect(url_for("admin.event_edit", slug=event.slug))
    return render_template("admin/event_form.html", form=form, event=None, original=original), (
        422 if form.errors or form.form_errors else 200
    )


@bp.route("/events/<slug>/edit", methods=["GET", "POST"])
@login_required
def event_edit(slug: str) -> Any:
    event = _event_or_404(slug)
    form = EventForm()
    if request.method == "GET":
        form.fill_from(event)
        form.version.data = str(event.version)
        # Opting out of telling people about a new time or place is a deliberate choice.
        form.notify.data = events_service.has_participants(event)
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
    events_service.cancel_event(event, actor=_me(), notify=bool(form.notify.data))
    flash(_("The event has been cancelled."), "success")
    return redirect(url_for("admin.event_edit", slug=slug))


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
    try:
        events_service.add_file(
            event, FileKind(form.kind.data), upload.read(files.MAX_ATTACHMENT_BYTES + 1),
            upload.filename or "datei", actor=_me(), title=form.title.data or "",
            alt=form.alt.data or "", credit=form.credit.data or "",
        )  # fmt: skip
    except files.FileRejected as exc:
        flash(_("The file was not accepted: %(reason)s", reason=str(exc)), "error")
    else:
        flash(_("The file has been added."), "success")
    return redirect(url_for("admin.event_edit", slug=slug) + "#files")


@bp.post("/events/<slug>/files/<int:file_id>/remove")
@login_required
def file_remove(slug: str, file_id: int) -> Any:
    event = _event_or_404(slug)
    require_button()
    stored = next((f for f in event.files if f.id == file_id), None)
    if stored is None:
        abort(404)
    events_service.remove_file(event, stored, actor=_me())
    return redirect(url_for("admin.event_edit", slug=slug) + "#files")
