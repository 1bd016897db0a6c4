"""Template filters: dates in the event's zone and the reader's language."""

from __future__ import annotations

from datetime import datetime
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
