"""Back-office views. Every view that shows an event or a participant goes through
``_event_or_404``: another organiser's event is a 404, as if it did not exist (invariant 7)."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import (
    Blueprint,
    abort,
    g,
    render_template,
)
from flask_login import current_user, login_required
from sqlalchemy import select

from ..extensions import db, login_manager
from ..models import (
    Event,
    EventStatus,
    OutboxMessage,
    Registration,
    event_organisers,
)
from ..services import accounts
from ..services.seats import seat_status
from ..timeutil import utcnow
from .forms import CheckinForm

bp = Blueprint("admin", __name__, url_prefix="/admin")

PER_PAGE = 50


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


_Row = TypeVar("_Row", Registration, OutboxMessage)


def _of_event_or_404(model: type[_Row], event: Event, row_id: int) -> _Row:
    """A registration or outbox row of ``event``; any other is a 404, as if it did not exist."""
    row = db.session.get(model, row_id)
    if row is None or row.event_id != event.id:
        abort(404)
    return row


def _registration_or_404(event: Event, registration_id: int) -> Registration:
    return _of_event_or_404(Registration, event, registration_id)


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


def require_button() -> None:
    """A POST from one of the page's buttons (its form carries only the CSRF token)."""
    if not CheckinForm().validate_on_submit():
        abort(400)


def _admin_only() -> None:
    if not current_user.is_admin:
        abort(404)  # like every other page one may not see


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
