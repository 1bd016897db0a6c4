"""Calendar files (RFC 5545) with the icalendar library."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from functools import lru_cache
from urllib.parse import urlsplit

from flask import current_app, url_for
from flask_babel import gettext as _
from icalendar import Calendar, Timezone
from icalendar import Event as VEvent

from .models import Attendance, Event, EventFormat, EventStatus, Registration
from .timeutil import utcnow

PRODID = "-//workshop-registration//anmeldung//DE"


def event_url(event: Event) -> str:
    return current_app.config["BASE_URL"] + url_for("public.event", slug=event.slug)


def _host() -> str:
    return urlsplit(current_app.config["BASE_URL"]).hostname or "localhost"


def location(event: Event, attendance: Attendance | None = None) -> str:
    """The venue, or the word "Online" where the person attends online."""
    place = ", ".join(
        part for part in [event.venue_name, *event.venue_address.splitlines()] if part.strip()
    )
    if event.format == EventFormat.ONLINE or attendance == Attendance.ONLINE or not place:
        return _("Online")
    if event.format == EventFormat.HYBRID and attendance is None:
        return _("%(place)s (also online)", place=place)
    return place


def _vevent(event: Event, uid: str, attendance: Attendance | None, sequence: int = 0) -> VEvent:
    zone = event.zone
    vevent = VEvent()
    vevent.add("uid", uid)
    vevent.add("dtstamp", utcnow())
    vevent.add("dtstart", event.starts_at.astimezone(zone))
    vevent.add("dtend", event.ends_at.astimezone(zone))
    vevent.add("summary", event.title)
    vevent.add("location", location(event, attendance))
    vevent.add("url", event_url(event))
    description = [event.subtitle, event_url(event)]
    if event.contact_name or event.contact_email:
        description.append(
            _("Contact: %(contact)s", contact=" ".join(
                p for p in (event.contact_name, event.contact_email, event.contact_phone) if p
            ))
        )  # fmt: skip
    vevent.add("description", "\n".join(line for line in description if line))
    vevent.add("status", "CANCELLED" if event.status == EventStatus.CANCELLED else "CONFIRMED")
    vevent.add("sequence", sequence)
    vevent.add("last-modified", event.updated_at)
    return vevent


def _calendar(vevents: Iterable[VEvent], name: str | None = None) -> bytes:
    vevents = list(vevents)
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    if name:
        calendar.add("x-wr-calname", name)
    for vevent in vevents:
        calendar.add_component(vevent)
    if vevents:
        starts = [v.decoded("dtstart") for v in vevents]
        first, last = min(starts).year - 1, max(starts).year + 1
        for tzid in sorted({str(s.tzinfo) for s in starts}):
            calendar.add_component(_vtimezone(tzid, first, last))
    return calendar.to_ical()


@lru_cache(maxsize=64)
def _vtimezone(tzid: str, first_year: int, last_year: int) -> Timezone:
    """The zone's rules for the years around the events (not 1970-2038: a few lines instead of
    thousands). Built once per zone and years: every confirmation email carries one."""
    return Timezone.from_tzid(
        tzid, first_date=date(first_year, 1, 1), last_date=date(last_year, 12, 31)
    )


def event_calendar(event: Event) -> bytes:
    """The public calendar entry of an event."""
    return _calendar([_vevent(event, f"event-{event.id}@{_host()}", None, event.ics_sequence)])


def registration_calendar(registration: Registration) -> bytes:
    """A participant's own entry: a stable UID per registration (so an update replaces the
    entry), the location by their attendance, and the event's SEQUENCE."""
    event = registration.event
    uid = f"registration-{registration.id}@{_host()}"
    return _calendar([_vevent(event, uid, registration.attendance, event.ics_sequence)])


def feed(events: Iterable[Event], name: str) -> bytes:
    """A feed of several events (subscribe to it in a calendar program)."""
    return _calendar(
        [_vevent(e, f"event-{e.id}@{_host()}", None, e.ics_sequence) for e in events], name
    )
