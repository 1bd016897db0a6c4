"""API views: parse JSON, call a service, commit once, answer JSON."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, current_app, g, jsonify, request, url_for
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload, selectinload

from ..extensions import db
from ..forms import validate_api_signup
from ..models import (
    Answer,
    ApiToken,
    Attendance,
    Event,
    EventStatus,
    Organiser,
    Registration,
    RegistrationStatus,
)
from ..services import api_tokens, audit, events, participants, seats, signup
from ..services.errors import Busy, DuplicateRegistration, InvalidInput, ServiceError
from ..services.events import EventDataError, question_record
from ..services.seats import SeatStatus, seat_status
from ..timeutil import utcnow
from .records import event_record, registration_record

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
        "questions": [question_record(q) for q in event.questions],
    }


def _public_event_or_404(slug: str) -> Event:
    event = db.session.scalars(select(Event).where(Event.slug == slug)).first()
    if event is None or event.status == EventStatus.DRAFT:
        abort(404)
    return event


#: A sign-up's event with its questions (the answers are checked against them) in one query,
#: built once.
_SIGNUP_EVENT = (
    select(Event).where(Event.slug == bindparam("slug")).options(joinedload(Event.questions))
)


def _signup_event_or_404(slug: str) -> Event:
    event = db.session.scalars(_SIGNUP_EVENT, {"slug": slug}).unique().first()
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


def etag(event: Event) -> str:
    """The event's version as an entity tag: send it back in ``If-Match`` with a PATCH."""
    return f"v{event.version}"


@bp.get("/events/<slug>")
def get_event(slug: str) -> Any:
    event = _public_event_or_404(slug)
    response = jsonify(event_json(event, seat_status([event])[event.id]))
    response.set_etag(etag(event))
    return response


def _parse_signup(body: Any) -> signup.SignupData:
    """Type-check the JSON body, then validate it with the sign-up form's rules (ApiSignupForm);
    raise InvalidInput naming the fields."""
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
    fields, field_errors = validate_api_signup(
        {name: body[name] for name in _TEXT_FIELDS if isinstance(body.get(name), str)}
    )
    for name, messages in field_errors.items():
        errors.setdefault(name, messages)
    if errors:
        raise InvalidInput(errors)
    return signup.SignupData(
        email=fields["email"],
        first_name=fields["first_name"],
        last_name=fields["last_name"],
        organisation=fields["organisation"] or "",
        attendance=fields["attendance"] or None,
        privacy_consent=True,
        language=fields["language"] or str(get_locale() or "de"),
        answers=raw_answers or {},
    )


#: What an Idempotency-Key may look like (a UUID or any other printable token).
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,100}$")


def _idempotency(body: Any) -> signup.Idempotency | None:
    """The request's ``Idempotency-Key`` with a digest of its body; raise InvalidInput for a
    malformed key."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise InvalidInput(
            {"Idempotency-Key": [_l("Use 1 to 100 visible ASCII characters, e.g. a UUID.")]}
        )
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return signup.Idempotency(key, hashlib.sha256(canonical.encode("utf-8", "replace")).hexdigest())


def _signup_answer(registration: Registration) -> Any:
    """The 201 answer of a sign-up, from the stored registration (a repeated request)."""
    return jsonify(
        {
            "id": registration.id,
            "status": str(registration.status),
            "attendance": str(registration.attendance),
            "waitlist_position": signup.waitlist_position(registration),
            "manage_url": manage_url(signup.manage_token(registration)),
        }
    ), 201


def _repeated(event: Event, idempotency: signup.Idempotency) -> Any | None:
    """The answer to a request sent again with its Idempotency-Key: the original sign-up's,
    or a 422 when the key came with a different body. ``None``: the key is new."""
    existing = signup.find_by_idempotency_key(event, idempotency.key)
    if existing is None:
        return None
    if existing.idempotency_hash != idempotency.digest:
        return _validation_error(
            {"Idempotency-Key": [_l("This key was used for a different request already.")]}
        )
    return _signup_answer(existing)


@bp.post("/events/<slug>/registrations")
def create_registration(slug: str) -> Any:
    """Sign up. With an ``Idempotency-Key`` header a request sent again (its answer was lost)
    gets the first one's answer within 24 hours instead of a second sign-up. Signing up again
    with a registered address mails that registration's link to the address once more."""
    event = _signup_event_or_404(slug)
    body = request.get_json(force=True, silent=True)
    if body is None:
        return _error(400, "invalid_json", "The request body must be JSON.")
    idempotency = None
    try:
        idempotency = _idempotency(body)
        if idempotency is not None:
            repeated = _repeated(event, idempotency)
            if repeated is not None:
                return repeated
        # A key that named a sign-up more than 24 hours ago is not stored again.
        stored = (
            None
            if idempotency is None or signup.key_expired(event, idempotency.key)
            else idempotency
        )
        data = _parse_signup(body)
        result = signup.register(event, data, commit=True, idempotency=stored)
    except InvalidInput as exc:
        db.session.rollback()
        if idempotency is not None and exc.code == "idempotency_key_reused":
            return _repeated(event, idempotency) or _validation_error(exc.errors)
        return _validation_error(exc.errors)
    except Busy as exc:  # the event's lock was not granted in time: nothing written
        db.session.rollback()
        response, status = _error(503, exc.code, str(exc))
        return response, status, {"Retry-After": str(exc.retry_after)}
    except DuplicateRegistration as exc:
        db.session.rollback()
        if idempotency is not None and (repeated := _repeated(event, idempotency)):
            return repeated  # the same request, sent twice at the same moment
        return _duplicate(event, data, exc)
    except ServiceError as exc:
        db.session.rollback()
        return _error(409, exc.code, str(exc))
    signup.add_checkin_qr(result)
    # From the values in hand: the committed row is not read again.
    return (
        jsonify(
            {
                "id": result.registration_id,
                "status": str(result.status),
                "attendance": str(result.attendance),
                "waitlist_position": result.waitlist_position,
                "manage_url": manage_url(result.manage_token),
            }
        ),
        201,
    )


def _duplicate(event: Event, data: signup.SignupData, exc: DuplicateRegistration) -> Any:
    """409 ``duplicate`` with the existing registration's state; its link goes to the address
    (never into the answer: whoever knows an address must not get its registration)."""
    existing = signup.answer_duplicate(event, data.email)
    if existing is None:
        return _error(409, exc.code, str(exc))
    message = _l(
        "You are registered for this event already. We have sent the link to your "
        "registration to your email address again."
    )
    return jsonify(
        {
            "error": exc.code,
            "message": str(message),
            "status": str(existing.status),
            "attendance": str(existing.attendance),
            "waitlist_position": signup.waitlist_position(existing),
        }
    ), 409


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
    participants.cancel(registration, actor=None, via=participants.BY_PARTICIPANT)
    return jsonify({"status": "cancelled"})


# --- The OpenAPI document ------------------------------------------------------------------------

#: Hand-written and kept in the repository; tests check it against the routes and the responses.
OPENAPI_PATH = Path(__file__).with_name("openapi.json")


@functools.cache
def openapi_document() -> str:
    return OPENAPI_PATH.read_text(encoding="utf-8")


@bp.get("/openapi.json")
def openapi() -> Any:
    return Response(openapi_document(), mimetype="application/json")


# --- Organiser API: bearer tokens ----------------------------------------------------------------


def _unauthorized(token_given: bool) -> Any:
    challenge = 'Bearer realm="api"'
    if token_given:
        challenge += ', error="invalid_token"'
        message = _l("The API token is unknown, revoked or expired.")
    else:
        message = _l("This request needs an API token: Authorization: Bearer <token>.")
    response = jsonify({"error": "unauthorized", "message": str(message)})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = challenge
    return response


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let the request through with a usable ``Authorization: Bearer`` token; ``g.api_token``
    and ``g.api_organiser`` are then set. Otherwise 401 with a ``WWW-Authenticate`` challenge."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scheme, _, secret = request.headers.get("Authorization", "").strip().partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            return _unauthorized(token_given=False)
        token = api_tokens.authenticate(secret)
        if token is None:
            return _unauthorized(token_given=True)
        g.api_token = token
        g.api_organiser = token.organiser
        return view(*args, **kwargs)

    return wrapper


def _actor() -> Organiser:
    return g.api_organiser


def _token_details(**details: Any) -> dict[str, Any]:
    token: ApiToken = g.api_token
    return {"via": "api", "token": token.prefix, **details}


def _managed_event_or_404(slug: str) -> Event:
    """The event if the token's organiser may manage it; any other event does not exist."""
    event = db.session.scalars(select(Event).where(Event.slug == slug)).first()
    if event is None or not _actor().can_manage(event):
        abort(404)
    return event


_WHOLE_NUMBER = re.compile(r"^[0-9]{1,7}$")
MAX_PER_PAGE = 200


def _page_args() -> tuple[int, int, str | None, str | None]:
    """``page``, ``per_page``, ``status``, ``attendance`` from the query; raise InvalidInput."""
    errors: dict[str, list[str]] = {}

    def number(name: str, default: int, largest: int) -> int:
        raw = request.args.get(name)
        if raw is None:
            return default
        if not _WHOLE_NUMBER.match(raw) or not 1 <= int(raw) <= largest:
            errors[name] = [_l("Please give a whole number from 1 to %(num)d.", num=largest)]
            return default
        return int(raw)

    def choice(name: str, allowed: list[str]) -> str | None:
        raw = request.args.get(name)
        if raw is not None and raw not in allowed:
            errors[name] = [_l("Must be one of: %(choices)s.", choices=", ".join(allowed))]
            return None
        return raw

    page = number("page", 1, 1_000_000)
    per_page = number("per_page", 50, MAX_PER_PAGE)
    status = choice("status", [s.value for s in RegistrationStatus])
    attendance = choice("attendance", [a.value for a in Attendance])
    if errors:
        raise InvalidInput(errors)
    return page, per_page, status, attendance


def _waitlist_positions(event: Event) -> dict[int, int]:
    """Position on the waiting list (per mode, 1-based) of everyone waiting, in one query."""
    return seats.waitlist_positions(event.id)


@bp.get("/events/<slug>/registrations")
@token_required
def list_registrations(slug: str) -> Any:
    """An event's registrations (every status, drafts' too) with the answers; logged like an
    export, since it hands out personal data (invariant 7)."""
    event = _managed_event_or_404(slug)
    try:
        page_number, per_page, status, attendance = _page_args()
    except InvalidInput as exc:
        return _validation_error(exc.errors)
    stmt = select(Registration).where(Registration.event_id == event.id)
    if status is not None:
        stmt = stmt.where(Registration.status == status)
    if attendance is not None:
        stmt = stmt.where(Registration.attendance == attendance)
    stmt = stmt.options(selectinload(Registration.answers).selectinload(Answer.question)).order_by(
        Registration.created_at, Registration.id
    )
    page = db.paginate(stmt, page=page_number, per_page=per_page, error_out=False)
    positions = _waitlist_positions(event)
    zone = event.zone
    filters = {"status": status, "attendance": attendance, "page": page_number}
    audit.record(_actor(), "export.api", event=event, details=_token_details(**filters))
    db.session.commit()
    return jsonify(
        {
            "event": event.slug,
            "registrations": [
                registration_record(r, zone, positions.get(r.id)) for r in page.items
            ],
            "page": page_number,
            "per_page": per_page,
            "total": page.total,
            "pages": page.pages,
        }
    )


def _event_data_error(exc: EventDataError) -> Any:
    errors: dict[str, list[str]] = {}
    for path, message in exc.fields:
        errors.setdefault(path, []).append(message)
    if not errors:
        errors["body"] = [message.split(": ", 1)[-1] for message in exc.messages]
    return _validation_error(errors)


def _organiser_event_json(event: Event) -> dict[str, Any]:
    return {**event_record(event), "seats": _seats_json(seat_status([event])[event.id])}


def _json_object() -> tuple[dict[str, Any] | None, Any]:
    """The request's JSON object, or ``(None, error response)``."""
    body = request.get_json(force=True, silent=True)
    if body is None:
        return None, _error(400, "invalid_json", "The request body must be JSON.")
    if not isinstance(body, dict):
        return None, _validation_error({"body": [_l("The request body must be a JSON object.")]})
    return body, None


def _slug_taken() -> Any:
    return _validation_error({"slug": [_l("This web address is taken already.")]})


def _notify_flag(body: dict[str, Any]) -> bool:
    """``"notify": false`` in the body: participants are not told about this change."""
    notify = body.pop("notify", True)
    if not isinstance(notify, bool):
        raise InvalidInput({"notify": [_l("Must be true or false.")]})
    return notify


@bp.post("/events")
@token_required
def create_event() -> Any:
    """Create an event from a record of the import format; its creator organises it."""
    body, problem = _json_object()
    if body is None:
        return problem
    try:
        data = events.parse_event(body, "event")
        event = events.create_event(data, actor=_actor(), via=_token_details())
    except EventDataError as exc:
        return _event_data_error(exc)
    except events.SlugTaken:
        db.session.rollback()
        return _slug_taken()
    response = jsonify(_organiser_event_json(event))
    response.status_code = 201
    response.headers["Location"] = url_for("api.update_event", slug=event.slug)
    response.set_etag(etag(event))
    return response


def _expected_version() -> int | None:
    """The version an ``If-Match`` header names (``None``: no header or ``*``); a tag that
    is no version of this event can never match, so it is a stale version too."""
    if not request.if_match or request.if_match.star_tag:
        return None
    for tag in request.if_match.as_set(include_weak=False):
        if re.fullmatch(r"v[0-9]{1,9}", tag):
            return int(tag[1:])
    return 0  # versions start at 1


@bp.patch("/events/<slug>")
@token_required
def update_event(slug: str) -> Any:
    """Change the fields of an event that the body names, with the rules of the import and
    the back office (services/events.py): a raised capacity promotes waiting participants, a
    capacity below the confirmed count is refused (409), a changed time or place tells the
    participants unless ``"notify": false``. With ``If-Match`` (the ETag of an earlier answer)
    a change made since is a 412 instead of being overwritten."""
    event = _managed_event_or_404(slug)
    body, problem = _json_object()
    if body is None:
        return problem
    try:
        notify = _notify_flag(body)
        events.update_event(
            event, body, actor=_actor(), notify=notify, via=_token_details(),
            expected_version=_expected_version(),
        )  # fmt: skip
    except events.StaleVersion as exc:
        db.session.rollback()
        return _error(412, exc.code, str(exc))
    except InvalidInput as exc:
        return _validation_error(exc.errors)
    except EventDataError as exc:
        db.session.rollback()
        return _event_data_error(exc)
    except events.SlugFixed as exc:
        db.session.rollback()
        return _validation_error({"slug": [str(exc)]})
    except ServiceError as exc:
        db.session.rollback()
        return _error(409, exc.code, str(exc))
    response = jsonify(_organiser_event_json(event))
    response.set_etag(etag(event))
    return response
