"""API views: parse JSON, call a service, commit once, answer JSON."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request, url_for
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from ..extensions import db
from ..forms import ApiSignupForm
from ..models import Event, EventStatus, Registration
from ..services import signup
from ..services.errors import InvalidInput, ServiceError
from ..services.seats import SeatStatus, seat_status
from ..timeutil import utcnow

bp = Blueprint("api", __name__, url_prefix="/api/v1")

_TEXT_FIELDS = ("email", "first_name", "last_name", "organisation", "attendance", "language")


def _seats_json(seats: dict[Any, SeatStatus]) -> dict[str, dict[str, int | None]]:
    return {
        str(mode): {
            "capacity": status.capacity,
            "confirmed": status.confirmed,
            "available": status.available,
            "waitlisted": status.waitlisted,
        }
        for mode, status in seats.items()
    }


def event_json(event: Event, seats: dict[Any, SeatStatus]) -> dict[str, Any]:
    """The public view of an event. Never the dial-in details."""
    zone = event.zone
    return {
        "slug": event.slug,
        "title": event.title,
        "subtitle": event.subtitle,
        "format": str(event.format),
        "starts_at": event.starts_at.astimezone(zone).isoformat(),
        "ends_at": event.ends_at.astimezone(zone).isoformat(),
        "timezone": event.timezone,
        "venue": (
            {"name": event.venue_name, "address": event.venue_address}
            if event.venue_name or event.venue_address
            else None
        ),
        "status": str(event.status),
        "registration_open": event.is_open,
        "seats": _seats_json(seats),
        "questions": [
            {
                "key": q.key,
                "label": q.label,
                "help": q.help_text,
                "kind": str(q.kind),
                "required": q.required,
                "options": list(q.options or []),
            }
            for q in event.questions
        ],
    }


def _public_event_or_404(slug: str) -> Event:
    event = db.session.scalars(select(Event).where(Event.slug == slug)).first()
    if event is None or event.status == EventStatus.DRAFT:
        abort(404)
    return event


def _error(status: int, code: str, message: str) -> tuple[Any, int]:
    return jsonify({"error": code, "message": message}), status


def _validation_error(errors: dict[str, list[str]]) -> tuple[Any, int]:
    return jsonify(
        {"errors": {field: [str(m) for m in msgs] for field, msgs in errors.items()}}
    ), 422


def manage_url(token: str) -> str:
    return current_app.config["BASE_URL"] + url_for("public.manage", token=token)


@bp.get("/events")
def list_events() -> Any:
    """Published events that have not ended, soonest first."""
    events = list(
        db.session.scalars(
            select(Event)
            .where(Event.status == EventStatus.PUBLISHED, Event.ends_at > utcnow())
            .order_by(Event.starts_at, Event.id)
        )
    )
    seats = seat_status(events)
    return jsonify({"events": [event_json(e, seats[e.id]) for e in events]})


@bp.get("/events/<slug>")
def get_event(slug: str) -> Any:
    event = _public_event_or_404(slug)
    return jsonify(event_json(event, seat_status([event])[event.id]))


def _parse_signup(body: Any) -> signup.SignupData:
    """Type-check the JSON body, then validate it with the form's rules; raise InvalidInput."""
    if not isinstance(body, dict):
        raise InvalidInput({"body": [_l("The request body must be a JSON object.")]})
    errors: dict[str, list[str]] = {}
    for name in _TEXT_FIELDS:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            errors[name] = [_l("This field must be a string.")]
    raw_answers = body.get("answers")
    if raw_answers is not None and not isinstance(raw_answers, dict):
        errors["answers"] = [_l("Answers must be an object of question key and answer.")]
    consent = body.get("privacy_consent")
    if consent is not True:
        errors["privacy_consent"] = [_l("Please agree to the privacy notice (true).")]
    formdata = MultiDict(
        {name: body[name] for name in _TEXT_FIELDS if isinstance(body.get(name), str)}
    )
    form = ApiSignupForm(formdata=formdata)
    if not form.validate():
        for name, messages in form.errors.items():
            errors.setdefault(name, list(messages))
    if errors:
        raise InvalidInput(errors)
    return signup.SignupData(
        email=form.email.data,
        first_name=form.first_name.data,
        last_name=form.last_name.data,
        organisation=form.organisation.data or "",
        attendance=form.attendance.data or None,
        privacy_consent=True,
        language=form.language.data or str(get_locale() or "de"),
        answers=raw_answers or {},
    )


@bp.post("/events/<slug>/registrations")
def create_registration(slug: str) -> Any:
    event = _public_event_or_404(slug)
    body = request.get_json(force=True, silent=True)
    if body is None:
        return _error(400, "invalid_json", "The request body must be JSON.")
    try:
        data = _parse_signup(body)
        result = signup.register(event, data)
    except InvalidInput as exc:
        db.session.rollback()
        return _validation_error(exc.errors)
    except ServiceError as exc:
        db.session.rollback()
        return _error(409, exc.code, str(exc))
    db.session.commit()
    registration = result.registration
    return (
        jsonify(
            {
                "id": registration.id,
                "status": str(registration.status),
                "attendance": str(registration.attendance),
                "waitlist_position": result.waitlist_position,
                "manage_url": manage_url(result.manage_token),
            }
        ),
        201,
    )


def _registration_or_404(token: str) -> Registration:
    registration = signup.find_by_manage_token(token)
    if registration is None:
        abort(404)
    return registration


@bp.get("/registrations/<token>")
def get_registration(token: str) -> Any:
    registration = _registration_or_404(token)
    return jsonify(
        {
            "id": registration.id,
            "event": registration.event.slug,
            "status": str(registration.status),
            "attendance": str(registration.attendance),
            "waitlist_position": signup.waitlist_position(registration),
        }
    )


@bp.post("/registrations/<token>/cancel")
def cancel_registration(token: str) -> Any:
    registration = _registration_or_404(token)
    signup.cancel(registration)
    db.session.commit()
    return jsonify({"status": "cancelled"})
