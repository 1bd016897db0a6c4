"""Public pages (a first cut: the list, the event page and the manage page)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template
from sqlalchemy import select

from ..extensions import db
from ..models import Event, EventStatus
from ..services import signup
from ..services.seats import seat_status
from ..timeutil import utcnow

bp = Blueprint("public", __name__)


@bp.get("/")
def index() -> Any:
    events = list(
        db.session.scalars(
            select(Event)
            .where(Event.status != EventStatus.DRAFT, Event.ends_at > utcnow())
            .order_by(Event.starts_at, Event.id)
        )
    )
    return render_template("public/index.html", events=events, seats=seat_status(events))


@bp.get("/events/<slug>")
def event(slug: str) -> Any:
    event = db.session.scalars(select(Event).where(Event.slug == slug)).first()
    if event is None or event.status == EventStatus.DRAFT:
        abort(404)
    return render_template("public/event.html", event=event, seats=seat_status([event])[event.id])


@bp.get("/manage/<token>")
def manage(token: str) -> Any:
    registration = signup.find_by_manage_token(token)
    if registration is None:
        abort(404)
    return render_template(
        "public/manage.html",
        registration=registration,
        position=signup.waitlist_position(registration),
    )
