"""Template filters: dates in the event's zone and the reader's language."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from babel.numbers import format_decimal
from flask import Flask, current_app
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _

from .markup import render_markdown
from .models import Answer, Attendance, Event, EventFormat, EventStatus, RegistrationStatus
from .services import answers
from .services.seats import SeatStatus


def event_when(event: Event) -> str:
    """E.g. "Mittwoch, 9. Dezember 2026, 11:00–16:30 Uhr" in the event's zone."""
    locale = str(get_locale() or "de")
    zone = event.zone
    start = event.starts_at.astimezone(zone)
    end = event.ends_at.astimezone(zone)
    day = format_date(start.date(), "full", locale=locale)
    times = (
        f"{format_time(start, 'HH:mm', locale=locale)}–{format_time(end, 'HH:mm', locale=locale)}"
    )
    if start.date() != end.date():
        end_day = format_date(end.date(), "full", locale=locale)
        times = f"{format_time(start, 'HH:mm', locale=locale)} – {end_day}, " + format_time(
            end, "HH:mm", locale=locale
        )
    suffix = " Uhr" if locale.startswith("de") else ""
    return f"{day}, {times}{suffix}"


def local_datetime(value: datetime, event: Event) -> str:
    locale = str(get_locale() or "de")
    local = value.astimezone(event.zone)
    day = format_date(local.date(), "medium", locale=locale)
    return f"{day} {format_time(local, 'HH:mm', locale=locale)}"


def mode_name(mode: Attendance | str) -> str:
    return _("On site") if mode == Attendance.ON_SITE else _("Online")


def status_name(status: RegistrationStatus | str) -> str:
    return {
        RegistrationStatus.CONFIRMED: _("Confirmed"),
        RegistrationStatus.WAITLISTED: _("Waiting list"),
        RegistrationStatus.CANCELLED: _("Cancelled"),
    }[RegistrationStatus(status)]


def outbox_status_name(status: str) -> str:
    return {
        "pending": _("Waiting to be sent"),
        "sent": _("Sent"),
        "failed": _("Failed"),
        "skipped": _("Not needed any more"),
    }.get(str(status), str(status))


def format_name(event: Event) -> str:
    return {
        EventFormat.ON_SITE: _("On site"),
        EventFormat.ONLINE: _("Online"),
        EventFormat.HYBRID: _("Hybrid (on site and online)"),
    }[event.format]


def seat_text(status: SeatStatus, waitlist_enabled: bool) -> str:
    """E.g. "noch 12 Plätze frei", "ausgebucht – Warteliste", "ausgebucht"."""
    if status.available is None:
        return _("seats available")
    if status.available > 0:
        return ngettext("%(num)d seat left", "%(num)d seats left", status.available)
    return _("fully booked – waiting list") if waitlist_enabled else _("fully booked")


def event_state(event: Event, seats: dict[Attendance, SeatStatus]) -> str:
    """One line for the event list: cancelled, closed, or the seats of each mode."""
    if event.status == EventStatus.CANCELLED:
        return _("Cancelled")
    if not event.is_open:
        return _("Registration closed")
    texts = [seat_text(seats[mode], event.waitlist_enabled) for mode in event.modes]
    if len(texts) == 1:
        return texts[0]
    return " · ".join(
        f"{mode_name(mode)}: {text}" for mode, text in zip(event.modes, texts, strict=True)
    )


def tel_href(phone: str) -> str:
    """ "+49 3641 873-0030" -> "+4936418730030" for tel: links."""
    return "".join(c for c in phone if c.isdigit() or c == "+")


def filesize(size: int) -> str:
    locale = str(get_locale() or "de")
    if size < 1024 * 1024:
        return f"{format_decimal(max(size / 1024, 0.1), '#,##0.#', locale=locale)} KB"
    return f"{format_decimal(size / (1024 * 1024), '#,##0.#', locale=locale)} MB"


def answer_text(answer: Answer) -> str:
    return answers.display(answer.question, answer.value)


def _moment_text(value: datetime, other: datetime, event: Event) -> str:
    """A time of the event, with its date only when the date differs from ``other``'s."""
    locale = str(get_locale() or "de")
    local, other_local = value.astimezone(event.zone), other.astimezone(event.zone)
    time = format_time(local, "HH:mm", locale=locale)
    if locale.startswith("de"):
        time += " Uhr"
    if local.date() == other_local.date():
        return time
    return f"{format_date(local.date(), 'full', locale=locale)}, {time}"


def change_lines(changes: list[dict[str, Any]], event: Event) -> list[str]:
    """What an organiser changed, one line each, e.g. "Beginn – neu: 12:00 Uhr statt 11:00 Uhr"
    (``changes`` as the "event_changed" mail's payload has them)."""
    labels = {
        "starts_at": _("Start"),
        "ends_at": _("End"),
        "venue_name": _("Venue"),
        "venue_address": _("Address"),
    }
    lines = []
    for change in changes:
        name, old, new = change["field"], change["old"], change["new"]
        if name in ("starts_at", "ends_at"):
            old_time, new_time = datetime.fromisoformat(old), datetime.fromisoformat(new)
            old, new = (
                _moment_text(old_time, new_time, event),
                _moment_text(new_time, old_time, event),
            )
        else:
            old, new = (" ".join(str(v or "").split()) for v in (old, new))
        what = labels.get(name, name)
        if not old:
            lines.append(_("%(what)s – new: %(new)s", what=what, new=new))
        elif not new:
            lines.append(_("%(what)s – no longer: %(old)s", what=what, old=old))
        else:
            lines.append(
                _("%(what)s – new: %(new)s instead of %(old)s", what=what, new=new, old=old)
            )
    return lines


def utc_local(value: datetime) -> str:
    """A stored UTC time in the configured zone (for entries that belong to no event)."""
    locale = str(get_locale() or "de")
    local = value.astimezone(ZoneInfo(current_app.config["TIMEZONE"]))
    day = format_date(local.date(), "medium", locale=locale)
    return f"{day} {format_time(local, 'HH:mm:ss', locale=locale)}"


def init_app(app: Flask) -> None:
    app.add_template_filter(event_when, "event_when")
    app.add_template_filter(local_datetime, "local_datetime")
    app.add_template_filter(event_state, "event_state")
    app.add_template_filter(seat_text, "seat_text")
    app.add_template_filter(mode_name, "mode_name")
    app.add_template_filter(status_name, "status_name")
    app.add_template_filter(outbox_status_name, "outbox_status_name")
    app.add_template_filter(format_name, "format_name")
    app.add_template_filter(render_markdown, "markdown")
    app.add_template_filter(tel_href, "tel_href")
    app.add_template_filter(filesize, "filesize")
    app.add_template_filter(answer_text, "answer_text")
    app.add_template_filter(utc_local, "utc_local")
    app.add_template_global(change_lines, "change_lines")
