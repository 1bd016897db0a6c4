"""Pages for participants: event list, event page with sign-up, manage page, calendar files."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select

from .. import ics
from ..extensions import csrf, db
from ..forms import AttendanceForm, CancelForm, signup_form_class
from ..models import Event, EventFile, EventStatus, Registration
from ..services import files, participants, signup
from ..services.errors import (
    Busy,
    DuplicateRegistration,
    InvalidInput,
    ModeFull,
    RegistrationClosed,
    ServiceError,
)
from ..services.seats import seat_status
from ..timeutil import utcnow
from . import pagecache

bp = Blueprint("public", __name__)
bp.record_once(lambda state: pagecache.init_app(state.app))

#: How long the link to the "thank you" page works (it shows the name and the status).
THANKS_MAX_AGE = 3600


def _visible_event_or_404(slug: str, *, preview: bool = False) -> Event:
    """A published or cancelled event; with ``preview``, also a draft for its organisers (the
    back office's preview shows its title image and documents)."""
    event = db.session.scalars(select(Event).where(Event.slug == slug)).first()
    if event is None:
        abort(404)
    if event.status == EventStatus.DRAFT and not (
        preview and current_user.is_authenticated and current_user.can_manage(event)
    ):
        abort(404)
    return event


def _registration_or_404(token: str) -> Registration:
    registration = signup.find_by_manage_token(token)
    if registration is None:
        abort(404)
    return registration


def _thanks_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="signup-thanks")


@bp.get("/")
def index() -> Any:
    """Upcoming events, soonest first (cancelled ones stay listed, marked)."""
    events = list(
        db.session.scalars(
            select(Event)
            .where(Event.status != EventStatus.DRAFT, Event.ends_at > utcnow())
            .order_by(Event.starts_at, Event.id)
        )
    )
    return render_template("public/index.html", events=events, seats=seat_status(events))


@bp.get("/archive")
def archive() -> Any:
    events = list(
        db.session.scalars(
            select(Event)
            .where(Event.status != EventStatus.DRAFT, Event.ends_at <= utcnow())
            .order_by(Event.starts_at.desc(), Event.id)
        )
    )
    return render_template("public/archive.html", events=events)


def _signup(event: Event, *, embed: bool) -> Any:
    """The sign-up form of an event page (or its embeddable copy): show, validate, register."""
    seats = seat_status([event])[event.id]
    # Both forms carry a signed form token instead of the session's CSRF token (see
    # `_form_token`), so showing the page touches no session and the page can be cached.
    form = signup_form_class(event, seats)(meta={"csrf": False})
    status = 422 if request.method == "POST" else 200
    headers: dict[str, str] = {}
    if request.method != "POST":
        pass
    elif _form_token_checked(embed=embed) and not _form_token_valid(event):
        form.form_errors.append(_("The form has expired. Please reload the page and try again."))
    elif not event.is_open:
        form.form_errors.append(str(RegistrationClosed()))
    elif form.validate():
        data = signup.SignupData(
            email=form.email.data,
            first_name=form.first_name.data,
            last_name=form.last_name.data,
            organisation=form.organisation.data or "",
            attendance=form.attendance.data if "attendance" in form else None,
            privacy_consent=bool(form.privacy_consent.data),
            language=str(get_locale() or "de"),
            answers=form.answers_data(),
        )
        try:
            result = signup.register(event, data, commit=True)
        except InvalidInput as exc:
            db.session.rollback()
            for name, messages in exc.errors.items():
                field_name = "q_" + name.removeprefix("answers.") if "." in name else name
                target = form._fields.get(field_name)
                if target is not None:
                    target.errors = [*target.errors, *messages]
                else:
                    form.form_errors.extend(messages)
        except Busy as exc:  # nothing written: the form keeps its values for another try
            db.session.rollback()
            form.form_errors.append(str(exc))
            headers["Retry-After"] = str(exc.retry_after)
            status = 503
        except DuplicateRegistration as exc:
            db.session.rollback()
            # Not a dead end: the registration's link goes to the address once more.
            if signup.answer_duplicate(event, data.email) is not None:
                form.form_errors.append(
                    _(
                        "You are registered for this event already. We have sent the link to "
                        "your registration to your email address again."
                    )
                )
            else:
                form.form_errors.append(str(exc))
        except ServiceError as exc:
            db.session.rollback()
            form.form_errors.append(str(exc))
        else:
            signup.add_checkin_qr(result)  # after the commit: outside the event lock
            ticket = _thanks_serializer().dumps(result.manage_token)
            endpoint = "public.embed_thanks" if embed else "public.thanks"
            return redirect(url_for(endpoint, slug=event.slug, ticket=ticket))
    return (
        render_template(
            "public/embed.html" if embed else "public/event.html",
            event=event,
            seats=seats,
            form=form,
            form_token=_form_token(event),
        ),
        status,
        headers,
    )


@bp.route("/events/<slug>", methods=["GET", "POST"])
@csrf.exempt  # carries its own signed form token, see `_form_token`
@pagecache.cached
def event(slug: str) -> Any:
    return _signup(_visible_event_or_404(slug), embed=False)


@bp.route("/events/<slug>/embed", methods=["GET", "POST"])
@csrf.exempt  # carries its own signed form token, see `_form_token`
@pagecache.cached
def embed(slug: str) -> Any:
    """The form alone, for an iframe on the organiser's website (see EMBED_ALLOWED_ORIGINS)."""
    return _signup(_visible_event_or_404(slug), embed=True)


#: How long a sign-up form's token is accepted: a form may stay open in a tab for hours.
FORM_TOKEN_MAX_AGE = 86400


def _form_token_serializer() -> URLSafeTimedSerializer:
    # The salt is the embed form's, where these tokens started: forms open in a tab stay valid.
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="embed-form")


def _form_token(event: Event) -> str:
    """The sign-up form's own token: the event's slug, signed and timestamped.

    The sign-up forms (event page and embed) use it instead of the session-based CSRF token.
    Browsers do not keep our session cookie inside a third-party iframe, so the embed could not
    use a session token at all; and without one, showing the event page needs no session, sets
    no cookie and can be cached for anonymous visitors (pagecache.py). It is safe because, like
    the JSON API, a sign-up needs no logged-in state that a forged cross-site POST could abuse:
    the token only proves that the form came from us, recently, for this event.
    """
    return _form_token_serializer().dumps(event.slug)


def _form_token_checked(*, embed: bool) -> bool:
    """The embed always checks its token; the event page when CSRF protection is on (tests
    switch it off with WTF_CSRF_ENABLED, as they do for every other form)."""
    return embed or bool(current_app.config.get("WTF_CSRF_ENABLED", True))


def _form_token_valid(event: Event) -> bool:
    try:
        slug = _form_token_serializer().loads(
            request.form.get("form_token", ""), max_age=FORM_TOKEN_MAX_AGE
        )
    except BadSignature:  # forged, or expired (SignatureExpired is a BadSignature)
        return False
    return slug == event.slug


def _thanks(slug: str, template: str) -> Any:
    event = _visible_event_or_404(slug)
    try:
        token = _thanks_serializer().loads(request.args.get("ticket", ""), max_age=THANKS_MAX_AGE)
    except BadSignature:
        return redirect(url_for("public.event", slug=slug))
    registration = signup.find_by_manage_token(token)
    if registration is None or registration.event_id != event.id:
        return redirect(url_for("public.event", slug=slug))
    return render_template(
        template,
        event=event,
        registration=registration,
        position=signup.waitlist_position(registration),
        manage_token=token,
    )


@bp.get("/events/<slug>/thanks")
def thanks(slug: str) -> Any:
    return _thanks(slug, "public/thanks.html")


@bp.get("/events/<slug>/embed/thanks")
def embed_thanks(slug: str) -> Any:
    return _thanks(slug, "public/embed_thanks.html")


def _ics_response(body: bytes, filename: str) -> Response:
    response = Response(body, mimetype="text/calendar")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/events/<slug>.ics")
def event_ics(slug: str) -> Response:
    event = _visible_event_or_404(slug)
    return _ics_response(ics.event_calendar(event), f"{event.slug}.ics")


@bp.get("/events.ics")
def events_ics() -> Response:
    events = db.session.scalars(
        select(Event)
        .where(Event.status != EventStatus.DRAFT, Event.ends_at > utcnow())
        .order_by(Event.starts_at, Event.id)
    )
    return _ics_response(ics.feed(events, _("Events and workshops")), "events.ics")


@bp.get("/events/<slug>/files/<int:file_id>/<filename>")
def event_file(slug: str, file_id: int, filename: str) -> Response:
    event = _visible_event_or_404(slug, preview=True)
    file = db.session.get(EventFile, file_id)
    if file is None or file.event_id != event.id or file.filename != filename:
        abort(404)
    path = files.path_of(file)
    if not path.is_file():
        abort(404)
    response = send_file(
        path,
        mimetype=file.content_type,
        download_name=file.filename,
        as_attachment=False,
        max_age=3600,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --- The participant's own registration ---------------------------------------------------------


def _manage_page(registration: Registration, token: str, **extra: Any) -> Any:
    return render_template(
        "public/manage.html",
        registration=registration,
        event=registration.event,
        token=token,
        position=signup.waitlist_position(registration),
        seats=seat_status([registration.event])[registration.event_id],
        attendance_form=extra.pop("attendance_form", None) or AttendanceForm(),
        **extra,
    )


@bp.get("/manage/<token>")
def manage(token: str) -> Any:
    return _manage_page(_registration_or_404(token), token)


@bp.route("/manage/<token>/cancel", methods=["GET", "POST"])
def cancel(token: str) -> Any:
    registration = _registration_or_404(token)
    form = CancelForm()
    if form.validate_on_submit():
        try:
            participants.cancel(registration, actor=None, via=participants.BY_PARTICIPANT)
        except Busy as exc:  # nothing changed; the page asks to try again
            flash(str(exc), "error")
            return redirect(url_for("public.cancel", token=token))
        flash(_("Your registration has been cancelled."), "success")
        return redirect(url_for("public.manage", token=token))
    return render_template(
        "public/cancel.html", registration=registration, event=registration.event, token=token,
        form=form,
    )  # fmt: skip


@bp.post("/manage/<token>/attendance")
def change_attendance(token: str) -> Any:
    registration = _registration_or_404(token)
    form = AttendanceForm()
    if not form.validate_on_submit():
        return _manage_page(registration, token, attendance_form=form), 422
    try:
        updated = signup.change_attendance(
            registration, form.attendance.data, accept_waitlist=bool(form.accept_waitlist.data)
        )
    except ModeFull:
        db.session.rollback()
        return _manage_page(
            registration, token, attendance_form=form, offer_waitlist=form.attendance.data
        ), 409
    except ServiceError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("public.manage", token=token))
    db.session.commit()
    if updated.status == "waitlisted":
        flash(_("You are now on the waiting list for this kind of attendance."), "success")
    else:
        flash(_("Your attendance has been changed."), "success")
    return redirect(url_for("public.manage", token=token))


@bp.get("/manage/<token>/calendar.ics")
def manage_ics(token: str) -> Response:
    registration = _registration_or_404(token)
    return _ics_response(ics.registration_calendar(registration), f"{registration.event.slug}.ics")


@bp.get("/join/<token>")
def join(token: str) -> Any:
    """A participant's personal join link (from the dial-in email): to the current dial-in URL.

    For anyone not confirmed online, or an unknown token, it is the plain 404 page: the link
    reveals nothing, not even whether the registration exists."""
    registration = signup.find_by_personal_token(token, "join")
    if registration is None or not signup.record_join(registration):
        db.session.rollback()
        abort(404)
    db.session.commit()
    event = registration.event
    if event.dial_in_url:
        response = redirect(event.dial_in_url, code=303)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
    return render_template("public/join.html", event=event)
