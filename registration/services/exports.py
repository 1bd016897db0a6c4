"""Attendee exports of an event: CSV, Excel, a sign-in sheet and name badges.

No HTTP here: a view picks the export, calls one of these functions and sends the result.
Labels follow the current locale (German by default, English with ``force_locale("en")``).
:func:`csv_lines` is a generator that reads the database as it is consumed: a view that streams
it needs ``stream_with_context``.

Rows are read in two steps so that memory stays small for large events whatever the sort order:
one streamed query fetches only the sort keys and decides the order in Python (names folded for
German sorting, which neither SQLite nor PostgreSQL collations do the same way); then the full
rows and their answers are loaded in chunks of :data:`CHUNK_SIZE` in that order, one query each
for the registrations and the answers of a chunk.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import xlsxwriter
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from sqlalchemy import select

from ..extensions import db
from ..formatting import event_when, mode_name, status_name
from ..models import (
    ACTIVE_STATUSES,
    Answer,
    Attendance,
    Event,
    Question,
    Registration,
    RegistrationStatus,
)
from . import answers, seats

#: Rows per database round trip (and the ``yield_per`` of the ordering query).
CHUNK_SIZE = 500
#: A CSV chunk is handed on once the buffer holds this many characters.
CSV_CHUNK_CHARS = 32 * 1024
#: Cells beginning with one of these are read as formulas by spreadsheet programs (OWASP CSV
#: injection); such cells get a leading apostrophe.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"

FONT_DIR = Path(__file__).resolve().parent.parent / "fonts"
FONT_FAMILY = "DejaVu"

_STATUS_ORDER = {
    RegistrationStatus.CONFIRMED: 0,
    RegistrationStatus.WAITLISTED: 1,
    RegistrationStatus.CANCELLED: 2,
}
_MODE_ORDER = {Attendance.ON_SITE: 0, Attendance.ONLINE: 1}
_FIXED_HEADERS = (
    _l("No."),
    _l("Last name"),
    _l("First name"),
    _l("Email"),
    _l("Organisation"),
    _l("Attendance"),
    _l("Status"),
    _l("Waiting list position"),
    _l("Registered"),
    _l("Confirmed at"),
    _l("Checked in"),
    _l("Joined online"),
)
#: Letters without a Unicode decomposition that should still sort with their base letter.
_EXTRA_FOLDS = str.maketrans(
    {"ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ı": "i", "æ": "ae", "œ": "oe"}
)


@dataclass(frozen=True, slots=True)
class ParticipantRow:
    """One registration as the exports show it; times are aware, in the event's zone."""

    #: Running number within the export, from 1.
    number: int
    last_name: str
    first_name: str
    email: str
    organisation: str
    attendance: Attendance
    status: RegistrationStatus
    #: Position on the waiting list of the participant's mode (waitlisted only).
    waitlist_position: int | None
    registered_at: datetime
    confirmed_at: datetime | None
    checked_in_at: datetime | None
    #: First use of the personal join link (online attendance).
    joined_at: datetime | None
    #: The answers to the event's custom questions, as text, in form order.
    answers: tuple[str, ...] = ()


def sort_key(text: str) -> str:
    """Case- and accent-insensitive key: "Ärger" sorts with "Arger", "Weiß" as "Weiss"."""
    decomposed = unicodedata.normalize("NFKD", text)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    return base.casefold().translate(_EXTRA_FOLDS)


# --- reading the rows ---------------------------------------------------------------------------


def _statuses(status: RegistrationStatus | str | None) -> tuple[RegistrationStatus, ...]:
    return ACTIVE_STATUSES if status is None else (RegistrationStatus(status),)


def _conditions(
    event: Event, statuses: Sequence[RegistrationStatus], mode: Attendance | None
) -> list[Any]:
    conditions = [Registration.event_id == event.id, Registration.status.in_(statuses)]
    if mode is not None:
        conditions.append(Registration.attendance == mode)
    return conditions


def questions_of(event: Event) -> list[Question]:
    """The event's custom questions in form order (one column each)."""
    return list(
        db.session.scalars(
            select(Question)
            .where(Question.event_id == event.id)
            .order_by(Question.position, Question.id)
        )
    )


def _export_order(event: Event, conditions: list[Any]) -> list[tuple[int, int | None]]:
    """(registration id, waiting-list position) in export order: confirmed (and cancelled) by
    name, the waiting list by position within each mode (on site first)."""
    stmt = (
        select(
            Registration.id,
            Registration.last_name,
            Registration.first_name,
            Registration.status,
            Registration.attendance,
            # The seats policy's position; the conditions keep each mode's list whole.
            seats.waitlist_rank().label("position"),
        )
        .where(*conditions)
        .execution_options(yield_per=CHUNK_SIZE)
    )
    keyed: list[tuple[tuple[Any, ...], int, int | None]] = []
    for row in db.session.execute(stmt):
        if row.status == RegistrationStatus.WAITLISTED:
            key = (_STATUS_ORDER[row.status], _MODE_ORDER[row.attendance], row.position)
            keyed.append((key, row.id, row.position))
            continue
        key = (
            _STATUS_ORDER[row.status],
            sort_key(row.last_name),
            sort_key(row.first_name),
            row.last_name,
            row.first_name,
            row.id,
        )
        keyed.append((key, row.id, None))
    keyed.sort(key=lambda item: item[0])
    return [(registration_id, position) for _key, registration_id, position in keyed]


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _answers_of(ids: Sequence[int]) -> dict[int, dict[int, Any]]:
    result: dict[int, dict[int, Any]] = {}
    stmt = select(Answer.registration_id, Answer.question_id, Answer.value).where(
        Answer.registration_id.in_(ids)
    )
    for registration_id, question_id, value in db.session.execute(stmt):
        result.setdefault(registration_id, {})[question_id] = value
    return result


def _local(value: datetime | None, zone: ZoneInfo) -> datetime | None:
    return None if value is None else value.astimezone(zone)


def _rows(
    event: Event,
    *,
    status: RegistrationStatus | str | None,
    attendance: Attendance | str | None,
    with_answers: bool,
) -> Iterator[ParticipantRow]:
    statuses = _statuses(status)
    mode = None if attendance is None else Attendance(attendance)
    order = _export_order(event, _conditions(event, statuses, mode))
    questions = questions_of(event) if with_answers else []
    zone = event.zone
    columns = (
        Registration.id,
        Registration.last_name,
        Registration.first_name,
        Registration.email,
        Registration.organisation,
        Registration.attendance,
        Registration.status,
        Registration.created_at,
        Registration.confirmed_at,
        Registration.checked_in_at,
        Registration.joined_at,
        Registration.anonymised_at,
    )
    anonymised = str(_l("Anonymised"))
    number = 0
    for chunk in _chunks(order, CHUNK_SIZE):
        ids = [registration_id for registration_id, _position in chunk]
        # Only the ids here: with the filters repeated, PostgreSQL's generic plan for the
        # prepared statement (psycopg prepares after five runs) scans the event's rows per chunk.
        stmt = select(*columns).where(Registration.id.in_(ids))
        found = {row.id: row for row in db.session.execute(stmt)}
        given = _answers_of(ids) if questions else {}
        for registration_id, position in chunk:
            row = found.get(registration_id)
            # A row that changed since the ordering query is left out rather than shown under
            # the wrong heading.
            if row is None or row.status not in statuses:
                continue
            if mode is not None and row.attendance != mode:
                continue
            number += 1
            values = given.get(registration_id, {})
            yield ParticipantRow(
                number=number,
                # GDPR: the row stays for the counts, the name is gone.
                last_name=row.last_name or (anonymised if row.anonymised_at else ""),
                first_name=row.first_name,
                email=row.email,
                organisation=row.organisation,
                attendance=row.attendance,
                status=row.status,
                waitlist_position=position,
                registered_at=row.created_at.astimezone(zone),
                confirmed_at=_local(row.confirmed_at, zone),
                checked_in_at=_local(row.checked_in_at, zone),
                joined_at=_local(row.joined_at, zone),
                answers=tuple(answers.display(q, values.get(q.id)) for q in questions),
            )


def participant_rows(
    event: Event,
    *,
    status: RegistrationStatus | str | None = None,
    attendance: Attendance | str | None = None,
) -> Iterator[ParticipantRow]:
    """The registrations of ``event`` in export order, streamed from the database.

    ``status`` (``confirmed``, ``waitlisted``, ``cancelled``; default: confirmed and waitlisted)
    and ``attendance`` (``on_site``, ``online``; default: both) filter; unknown values raise
    ``ValueError``. Confirmed and cancelled registrations come sorted by last and first name
    (ignoring case and accents), the waiting list by position within each mode.
    """
    return _rows(event, status=status, attendance=attendance, with_answers=True)


def column_headers(event: Event, questions: Iterable[Question] | None = None) -> list[str]:
    """The export columns in the current locale; custom questions by their label."""
    if questions is None:
        questions = questions_of(event)
    return [str(h) for h in _FIXED_HEADERS] + [q.label for q in questions]


Cell = str | int | datetime | None


class _Cells:
    """Turns a row into the values of the columns of :func:`column_headers`, with the names of
    modes and statuses looked up once per export in the current locale."""

    def __init__(self) -> None:
        self.modes = {mode: mode_name(mode) for mode in Attendance}
        self.statuses = {value: status_name(value) for value in RegistrationStatus}

    def __call__(self, row: ParticipantRow) -> list[Cell]:
        return [
            row.number,
            row.last_name,
            row.first_name,
            row.email,
            row.organisation,
            self.modes[row.attendance],
            self.statuses[row.status],
            row.waitlist_position,
            row.registered_at,
            row.confirmed_at,
            row.checked_in_at,
            row.joined_at,
            *row.answers,
        ]


# --- CSV ----------------------------------------------------------------------------------------


def neutralise_formula(cell: str) -> str:
    """Prefix ``'`` to a cell that a spreadsheet would otherwise run as a formula."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def _csv_time_format() -> str:
    # German Excel reads "09.12.2026 11:00" as a date; other locales read ISO 8601 best.
    return "%d.%m.%Y %H:%M" if str(get_locale() or "de").startswith("de") else "%Y-%m-%d %H:%M"


def csv_lines(
    event: Event,
    *,
    delimiter: str = ";",
    status: RegistrationStatus | str | None = None,
    attendance: Attendance | str | None = None,
) -> Iterator[str]:
    """The participants as CSV, chunk by chunk: a UTF-8 byte order mark and the header row first
    (so Excel detects the encoding), semicolons by default (German Excel's list separator).

    Every cell is text; cells that would start a formula get a leading apostrophe.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    time_format = _csv_time_format()
    cells = _Cells()

    def text(value: Cell) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            return value.strftime(time_format)
        return neutralise_formula(str(value))

    buffer.write(BOM)
    writer.writerow([neutralise_formula(h) for h in column_headers(event)])
    for row in participant_rows(event, status=status, attendance=attendance):
        writer.writerow([text(value) for value in cells(row)])
        if buffer.tell() >= CSV_CHUNK_CHARS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# --- Excel --------------------------------------------------------------------------------------

#: Column widths in characters: at least the header's, at most this.
MAX_COLUMN_WIDTH = 50
_DATE_WIDTH = 16


def write_xlsx(
    event: Event,
    output: str | IO[bytes],
    *,
    status: RegistrationStatus | str | None = None,
    attendance: Attendance | str | None = None,
) -> None:
    """Write the participants as an Excel workbook to ``output`` (a path or a binary file).

    One sheet per status asked for: "Confirmed" and "Waiting list" by default (both always
    present, even when empty), only the one sheet of ``status`` when given. Rows are written in
    order with XlsxWriter's ``constant_memory`` mode, so memory stays flat for large events.
    """
    workbook = xlsxwriter.Workbook(output, {"constant_memory": True})
    workbook.set_properties(
        {
            "title": event.title,
            "subject": _("List of participants"),
            "comments": event_when(event),
        }
    )
    styles = {
        "header": workbook.add_format(
            {"bold": True, "bg_color": "#DDEBF7", "bottom": 1, "valign": "top"}
        ),
        "date": workbook.add_format({"num_format": "dd.mm.yyyy hh:mm", "align": "left"}),
        "text": workbook.add_format({"valign": "top"}),
    }
    questions = questions_of(event)
    headers = column_headers(event, questions)
    for sheet_status in _statuses(status):
        sheet = workbook.add_worksheet(status_name(sheet_status))
        rows = participant_rows(event, status=sheet_status, attendance=attendance)
        _write_sheet(sheet, headers, rows, styles)
    workbook.close()


def xlsx_file(
    event: Event,
    *,
    status: RegistrationStatus | str | None = None,
    attendance: Attendance | str | None = None,
) -> bytes:
    """:func:`write_xlsx` into memory."""
    output = io.BytesIO()
    write_xlsx(event, output, status=status, attendance=attendance)
    return output.getvalue()


def _write_sheet(
    sheet: Any, headers: list[str], rows: Iterable[ParticipantRow], styles: dict[str, Any]
) -> None:
    cells = _Cells()
    # The filter button of the header takes about three characters' room.
    widths = [len(h) + 3 for h in headers]
    for col, header in enumerate(headers):
        sheet.write_string(0, col, header, styles["header"])
    last_row = 0
    for last_row, row in enumerate(rows, start=1):
        for col, value in enumerate(cells(row)):
            if value is None or value == "":
                continue
            if isinstance(value, datetime):
                # Excel has no time zones: the local wall-clock time of the event.
                sheet.write_datetime(last_row, col, value.replace(tzinfo=None), styles["date"])
                width = _DATE_WIDTH
            elif isinstance(value, int):
                sheet.write_number(last_row, col, value)
                width = len(str(value))
            else:
                # write_string, never write(): a cell starting with "=" stays text.
                sheet.write_string(last_row, col, value, styles["text"])
                width = max(len(line) for line in value.splitlines() or [""])
            if width > widths[col]:
                widths[col] = width
    # XlsxWriter writes the column widths when the workbook is closed, so they can be measured
    # while the rows stream through even in constant_memory mode.
    for col, width in enumerate(widths):
        sheet.set_column(col, col, min(width, MAX_COLUMN_WIDTH) + 1)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, last_row, len(headers) - 1)
    sheet.set_landscape()
    sheet.set_paper(9)  # A4
    sheet.repeat_rows(0)


# --- PDF ----------------------------------------------------------------------------------------


class _Document(FPDF):
    """An A4 document in DejaVu Sans (embedded, so every name prints as written)."""

    def __init__(self, orientation: str, event: Event, title: str) -> None:
        super().__init__(orientation=orientation, unit="mm", format="A4")
        self.event = event
        self.add_font(FONT_FAMILY, "", FONT_DIR / "DejaVuSans.ttf")
        self.add_font(FONT_FAMILY, "B", FONT_DIR / "DejaVuSans-Bold.ttf")
        self.set_font(FONT_FAMILY, "", 10)
        self.set_lang(str(get_locale() or "de"))
        self.set_title(title)
        self.set_subject(event.title)
        self.set_creator("workshop-registration")

    def fit(self, text: str, width: float, size: float, min_size: float, style: str = "") -> str:
        """Select the largest font size from ``size`` down to ``min_size`` (half points) at which
        ``text`` fits ``width`` mm and return the text; cut it with "…" if even the smallest is
        too wide."""
        text = " ".join(text.split())
        while True:
            self.set_font(FONT_FAMILY, style, size)
            if self.get_string_width(text) <= width or size - 0.5 < min_size:
                break
            size -= 0.5
        if self.get_string_width(text) <= width:
            return text
        low, high = 0, len(text)  # the longest prefix that fits with the ellipsis
        while low < high:
            middle = (low + high + 1) // 2
            if self.get_string_width(text[:middle].rstrip() + "…") <= width:
                low = middle
            else:
                high = middle - 1
        return text[:low].rstrip() + "…"

    def fitted_cell(
        self,
        width: float,
        height: float,
        text: str,
        size: float,
        min_size: float,
        *,
        style: str = "",
        **options: Any,
    ) -> None:
        """A cell whose text shrinks, then is cut, to stay inside its borders."""
        text = self.fit(text, width - 2 * self.c_margin, size, min_size, style)
        self.cell(width, height, text, **options)


def _place(event: Event) -> str:
    address = ", ".join(line.strip() for line in event.venue_address.splitlines() if line.strip())
    return ", ".join(part for part in (event.venue_name.strip(), address) if part)


class _SignInSheet(_Document):
    #: Column widths in mm (together the 267 mm between the margins of A4 landscape).
    COLUMNS = (14.0, 78.0, 95.0, 80.0)
    ROW_HEIGHT = 12.0
    HEAD_HEIGHT = 8.0

    def __init__(self, event: Event, mode: Attendance | None) -> None:
        super().__init__("landscape", event, _("List of participants"))
        self.set_margins(15, 12, 15)
        self.set_auto_page_break(True, margin=16)
        self.heading = _("List of participants")
        if mode is not None and len(event.modes) > 1:
            self.heading = f"{self.heading} – {mode_name(mode)}"
        self.when = event_when(event)
        self.place = _place(event)
        self.labels = (_("No."), _("Name"), _("Organisation"), _("Signature"))

    def header(self) -> None:
        width = self.epw
        self.fitted_cell(
            width, 8, self.heading, 16, 12, style="B", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        self.fitted_cell(
            width, 7, self.event.title, 13, 9, style="B", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        self.fitted_cell(width, 5.5, self.when, 10, 8, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if self.place:
            self.fitted_cell(width, 5.5, self.place, 10, 8, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(3)
        self.set_font(FONT_FAMILY, "B", 10)
        self.set_fill_color(221, 235, 247)
        for label, column in zip(self.labels, self.COLUMNS, strict=True):
            self.fitted_cell(column, self.HEAD_HEIGHT, label, 10, 7, style="B", border=1, fill=True)
        self.ln(self.HEAD_HEIGHT)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT_FAMILY, "", 8)
        self.set_text_color(90)
        self.cell(
            0, 5, _("Page %(page)s of %(pages)s", page=self.page_no(), pages="{nb}"), align="C"
        )
        self.set_text_color(0)

    def row(self, row: ParticipantRow) -> None:
        if self.will_page_break(self.ROW_HEIGHT):
            self.add_page()
        number, name, organisation, signature = self.COLUMNS
        height = self.ROW_HEIGHT
        self.fitted_cell(number, height, str(row.number), 10, 8, border=1, align="R")
        self.fitted_cell(name, height, f"{row.last_name}, {row.first_name}", 10, 7, border=1)
        self.fitted_cell(organisation, height, row.organisation, 10, 7, border=1)
        self.cell(signature, height, "", border=1, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def signin_sheet_pdf(event: Event, *, attendance: Attendance | str | None = "on_site") -> bytes:
    """The list to sign at the door: confirmed participants by name, with a signature column.

    A4 landscape; every page repeats the event's title, date and place and the column heads and
    says "page x of y". ``attendance=None`` lists every confirmed participant; for a hybrid
    event the heading names the mode listed.
    """
    pdf = _SignInSheet(event, None if attendance is None else Attendance(attendance))
    pdf.add_page()
    rows = _rows(
        event, status=RegistrationStatus.CONFIRMED, attendance=attendance, with_answers=False
    )
    for row in rows:
        pdf.row(row)
    return bytes(pdf.output())


class _Badges(_Document):
    CARD_WIDTH = 90.0
    CARD_HEIGHT = 55.0
    COLUMNS = 2
    ROWS = 4
    PADDING = 5.0

    def __init__(self, event: Event) -> None:
        super().__init__("portrait", event, _("Name badges"))
        self.set_auto_page_break(False)
        self.left = (self.w - self.COLUMNS * self.CARD_WIDTH) / 2
        self.top = (self.h - self.ROWS * self.CARD_HEIGHT) / 2

    @property
    def per_page(self) -> int:
        return self.COLUMNS * self.ROWS

    def badge(self, index: int, row: ParticipantRow) -> None:
        slot = index % self.per_page
        if slot == 0:
            self.add_page()
        x = self.left + (slot % self.COLUMNS) * self.CARD_WIDTH
        y = self.top + (slot // self.COLUMNS) * self.CARD_HEIGHT
        # Thin grey borders to cut along (shared edges are drawn twice, on the same line).
        self.set_draw_color(160)
        self.set_line_width(0.2)
        self.rect(x, y, self.CARD_WIDTH, self.CARD_HEIGHT)
        inner = self.CARD_WIDTH - 2 * self.PADDING
        lines = (
            (row.first_name, 24, 14, "B", 11.0, 10.0),
            (row.last_name, 20, 10, "B", 21.5, 9.0),
            (row.organisation, 11, 8, "", 32.5, 6.0),
        )
        for text, size, min_size, style, offset, height in lines:
            if not text:
                continue
            self.set_xy(x + self.PADDING, y + offset)
            self.fitted_cell(inner, height, text, size, min_size, style=style, align="C")
        self.set_text_color(90)
        self.set_xy(x + self.PADDING, y + self.CARD_HEIGHT - 9)
        self.fitted_cell(inner, 5, self.event.title, 8, 6, align="C")
        self.set_text_color(0)


def badges_pdf(
    event: Event,
    *,
    status: RegistrationStatus | str | None = RegistrationStatus.CONFIRMED,
    attendance: Attendance | str | None = None,
) -> bytes:
    """Name badges to cut out: eight 90 x 55 mm cards per A4 page (two across, four down),
    first and last name large, the organisation below, the event's title small; by name."""
    pdf = _Badges(event)
    rows = _rows(event, status=status, attendance=attendance, with_answers=False)
    for index, row in enumerate(rows):
        pdf.badge(index, row)
    if pdf.page == 0:
        pdf.add_page()  # no one to print: an empty sheet rather than an invalid file
    return bytes(pdf.output())
