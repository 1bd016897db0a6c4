"""Attendee lists: stable URLs for bookmarks and scripts (every export is audit-logged)."""

from __future__ import annotations

from typing import Any

from flask import (
    Response,
    abort,
    request,
    stream_with_context,
)
from flask_login import current_user, login_required

from ..extensions import db
from ..models import (
    Attendance,
    Event,
    RegistrationStatus,
)
from ..services import audit, exports
from .views import _event_or_404, bp

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
