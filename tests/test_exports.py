"""Attendee exports, read back with the tools an office would use: csv, openpyxl, pypdf."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest
from flask_babel import force_locale, gettext
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import event as sa_event

from registration.extensions import db
from registration.formatting import event_when
from registration.models import (
    EventFormat,
    Question,
    QuestionKind,
    Registration,
    RegistrationStatus,
)
from registration.services import exports, signup

from .conftest import make_event

CONFIRMED = [
    # first name, last name, organisation (sorted order: Ärger, Laue, weber, Weiß, Żółć)
    ("Jürgen", "Weiß", "Stadt Herzberg (Elster)"),
    ("Łukasz", "Żółć", "=1+1"),
    ("Zoë", "Ärger", "+49 30 1234567"),
    ("Bernd", "weber", "Landkreis Elbe-Elster"),
    ("Lisa", "Laue", ""),
]
WAITING = [("Erika", "Muster", "-x"), ("Ölaf", "Österreicher", "@SUM(A1)")]
QUESTIONS = [
    # key, label, kind, options
    ("lunch", "Mittagessen", QuestionKind.SINGLE_CHOICE, ["vegetarisch", "vegan", "mit Fleisch"]),
    ("photos", "Fotos erlaubt?", QuestionKind.YES_NO, []),
    ("topics", "Themen", QuestionKind.MULTIPLE_CHOICE, ["Wohnen", "Verkehr", "Energie"]),
]
ANSWERS = {
    "Weiß": {"lunch": "vegan", "photos": "yes", "topics": ["Energie", "Wohnen"]},
    "Żółć": {"photos": "no"},
}
EXPECTED_ANSWERS = {
    "Weiß": ["vegan", "Ja", "Wohnen, Energie"],
    "Żółć": ["", "Nein", ""],
}
#: Columns before the answers: No., names, email, organisation, attendance, status, position,
#: registered, confirmed, checked in, joined online.
FIXED = 12


def add_questions(event) -> None:
    for position, (key, label, kind, options) in enumerate(QUESTIONS):
        db.session.add(
            Question(
                event_id=event.id, key=key, position=position, label=label, kind=kind,
                options=options,
            )
        )  # fmt: skip
    db.session.commit()


def sign_up(event, first, last, organisation="", *, clock=None, answers=None, **extra):
    email = f"{exports.sort_key(first)}.{exports.sort_key(last)}@example.org"
    data = signup.SignupData(
        email=email, first_name=first, last_name=last, organisation=organisation,
        privacy_consent=True, answers=answers or {}, **extra,
    )  # fmt: skip
    result = signup.register(event, data)
    db.session.commit()
    if clock is not None:
        clock.advance(minutes=1)
    return result.registration


@pytest.fixture
def workshop(app, clock):
    """An on-site workshop in Berlin time: five confirmed, two waiting, one cancelled."""
    event = make_event(
        title="Werkstatt „Gemeinwohl“ in Weißenfels",
        capacity_on_site=len(CONFIRMED),
        venue_name="Bürgerhaus Weißenfels",
        venue_address="Marktstraße 1\n06667 Weißenfels",
        timezone="Europe/Berlin",
    )
    add_questions(event)
    people = {}
    for first, last, organisation in CONFIRMED + WAITING:
        people[last] = sign_up(
            event, first, last, organisation, clock=clock, answers=ANSWERS.get(last)
        )
    people["Storno"] = sign_up(event, "Carla", "Storno", "Weg e.V.", clock=clock)
    signup.cancel(people["Storno"])
    db.session.commit()
    people["Weiß"].checked_in_at = datetime(2026, 11, 23, 9, 45, tzinfo=clock.now.tzinfo)
    db.session.commit()
    return event


@contextmanager
def english(app) -> Iterator[None]:
    with app.test_request_context("/"), force_locale("en"):
        yield


def read_csv(chunks, delimiter=";") -> list[list[str]]:
    text = "".join(chunks)
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:], newline=""), delimiter=delimiter))


# --- participant rows ---------------------------------------------------------------------------


def test_rows_sorted_by_name_ignoring_case_and_accents_then_waiting_list(workshop):
    rows = list(exports.participant_rows(workshop))
    assert [r.last_name for r in rows] == [
        "Ärger", "Laue", "weber", "Weiß", "Żółć", "Muster", "Österreicher",
    ]  # fmt: skip
    assert [r.number for r in rows] == list(range(1, 8))
    assert [r.waitlist_position for r in rows] == [None] * 5 + [1, 2]
    assert {r.status for r in rows[:5]} == {RegistrationStatus.CONFIRMED}
    assert {r.status for r in rows[5:]} == {RegistrationStatus.WAITLISTED}

    weiss = rows[3]
    assert weiss.answers == ("vegan", "Ja", "Wohnen, Energie")
    assert rows[4].answers == ("", "Nein", "")
    assert rows[0].answers == ("", "", "")
    assert weiss.registered_at.tzinfo == workshop.zone
    # The clock starts at 09:00 UTC, 10:00 in Berlin; Weiß signed up first.
    assert weiss.registered_at.replace(tzinfo=None) == datetime(2026, 11, 2, 10, 0)
    assert weiss.confirmed_at == weiss.registered_at
    assert weiss.checked_in_at.replace(tzinfo=None) == datetime(2026, 11, 23, 10, 45)
    assert rows[5].confirmed_at is None and rows[5].joined_at is None


def test_sort_key_folds_umlauts_sharp_s_and_case():
    names = ["Zander", "Özdemir", "oswald", "Weiß", "Weiss", "Weis", "Łukasz", "Lutz", "Ärger"]
    assert sorted(names, key=exports.sort_key) == [
        "Ärger", "Łukasz", "Lutz", "oswald", "Özdemir", "Weis", "Weiß", "Weiss", "Zander",
    ]  # fmt: skip


def test_status_and_attendance_filters(workshop):
    def names(**filters):
        return [r.last_name for r in exports.participant_rows(workshop, **filters)]

    assert names(status="waitlisted") == ["Muster", "Österreicher"]
    assert names(status="cancelled") == ["Storno"]
    assert names(status="confirmed", attendance="online") == []
    assert len(names(attendance="on_site")) == 7
    # Numbers run within the export.
    assert [r.number for r in exports.participant_rows(workshop, status="waitlisted")] == [1, 2]
    with pytest.raises(ValueError):
        list(exports.participant_rows(workshop, status="everyone"))


def test_waiting_list_positions_count_within_each_mode(app):
    event = make_event(format=EventFormat.HYBRID, capacity_on_site=1, capacity_online=1)
    sign_up(event, "Anna", "Vorort", attendance="on_site")
    sign_up(event, "Bert", "Digital", attendance="online")
    sign_up(event, "Cleo", "Wartet", attendance="on_site")
    sign_up(event, "Dana", "Netz", attendance="online")
    sign_up(event, "Emil", "Auchda", attendance="on_site")

    waiting = list(exports.participant_rows(event, status="waitlisted"))
    assert [(r.last_name, r.attendance, r.waitlist_position) for r in waiting] == [
        ("Wartet", "on_site", 1),
        ("Auchda", "on_site", 2),
        ("Netz", "online", 1),
    ]
    online = list(exports.participant_rows(event, attendance="online"))
    assert [(r.last_name, r.waitlist_position) for r in online] == [("Digital", None), ("Netz", 1)]


def test_rows_are_loaded_in_chunks_without_a_query_per_person(app, monkeypatch):
    event = make_event(capacity_on_site=None)
    add_questions(event)
    for n in range(23):
        sign_up(event, "Erika", f"Muster{n:02d}")
    monkeypatch.setattr(exports, "CHUNK_SIZE", 10)
    assert event.title  # loaded again after the last commit, before counting

    selects: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    sa_event.listen(db.engine, "before_cursor_execute", count)
    try:
        rows = list(exports.participant_rows(event))
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", count)
    assert [r.last_name for r in rows] == [f"Muster{n:02d}" for n in range(23)]
    # Order query, questions, then registrations and answers per chunk of 10.
    assert len(selects) == 2 + 2 * math.ceil(23 / 10)


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_has_bom_semicolons_german_header_and_answers(workshop):
    chunks = list(exports.csv_lines(workshop))
    assert chunks[0].startswith("\ufeff")
    assert "".join(chunks).count("\ufeff") == 1
    assert chunks[0].splitlines()[0].count(";") == FIXED + len(QUESTIONS) - 1

    header, *rows = read_csv(chunks)
    # German by default (these labels come from the catalogue the sign-up form already uses).
    assert header[1:3] == ["Nachname", "Vorname"]
    assert header[4:6] == ["Organisation", "Teilnahme"]
    assert header[3] == gettext("Email")
    assert header[0] == gettext("No.")
    assert header[FIXED:] == ["Mittagessen", "Fotos erlaubt?", "Themen"]
    assert [r[1] for r in rows] == [
        "Ärger", "Laue", "weber", "Weiß", "Żółć", "Muster", "Österreicher",
    ]  # fmt: skip

    weiss = rows[3]
    assert weiss[:7] == [
        "4", "Weiß", "Jürgen", "jurgen.weiss@example.org", "Stadt Herzberg (Elster)", "Vor Ort",
        gettext("Confirmed"),
    ]  # fmt: skip
    assert weiss[7:FIXED] == ["", "02.11.2026 10:00", "02.11.2026 10:00", "23.11.2026 10:45", ""]
    assert weiss[FIXED:] == EXPECTED_ANSWERS["Weiß"]
    assert rows[4][FIXED:] == EXPECTED_ANSWERS["Żółć"]
    muster = rows[5]
    assert (muster[6], muster[7], muster[9]) == (gettext("Waiting list"), "1", "")
    assert rows[6][7] == "2"


def test_csv_comma_on_request(workshop):
    header, *rows = read_csv(exports.csv_lines(workshop, delimiter=","), delimiter=",")
    assert len(header) == FIXED + len(QUESTIONS)
    assert all(len(row) == len(header) for row in rows)
    assert rows[0][1:3] == ["Ärger", "Zoë"]


def test_csv_filters(workshop):
    _header, *waiting = read_csv(exports.csv_lines(workshop, status="waitlisted"))
    assert [(r[0], r[1], r[7]) for r in waiting] == [
        ("1", "Muster", "1"),
        ("2", "Österreicher", "2"),
    ]
    _header, *cancelled = read_csv(exports.csv_lines(workshop, status="cancelled"))
    assert [r[1] for r in cancelled] == ["Storno"]
    assert cancelled[0][6] == gettext("Cancelled")
    _header, *online = read_csv(exports.csv_lines(workshop, attendance="online"))
    assert online == []


def test_csv_neutralises_formulas(workshop):
    people = {r.last_name: r for r in db.session.scalars(db.select(Registration))}
    # Sign-up strips leading whitespace; a later edit could still store such values.
    people["Laue"].organisation = "\tTab-Verein"
    people["weber"].organisation = "\rCR GmbH"
    db.session.commit()

    _header, *rows = read_csv(exports.csv_lines(workshop))
    organisation = {r[1]: r[4] for r in rows}
    assert organisation["Żółć"] == "'=1+1"
    assert organisation["Ärger"] == "'+49 30 1234567"
    assert organisation["Muster"] == "'-x"
    assert organisation["Österreicher"] == "'@SUM(A1)"
    assert organisation["Laue"] == "'\tTab-Verein"
    assert organisation["weber"] == "'\rCR GmbH"
    assert organisation["Weiß"] == "Stadt Herzberg (Elster)"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+49 30 1234567", "'+49 30 1234567"),
        ("-x", "'-x"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Stadt Jena", "Stadt Jena"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_neutralise_formula(cell, expected):
    assert exports.neutralise_formula(cell) == expected


def test_csv_in_english(app, workshop):
    with english(app):
        header, *rows = read_csv(exports.csv_lines(workshop))
    assert header[:FIXED] == [
        "No.", "Last name", "First name", "Email", "Organisation", "Attendance", "Status",
        "Waiting list position", "Registered", "Confirmed at", "Checked in", "Joined online",
    ]  # fmt: skip
    weiss = rows[3]
    assert weiss[5:7] == ["On site", "Confirmed"]
    assert weiss[8] == "2026-11-02 10:00"
    assert weiss[FIXED:] == ["vegan", "Yes", "Wohnen, Energie"]
    assert rows[5][6] == "Waiting list"


def test_csv_streams_in_chunks(app, workshop, monkeypatch):
    monkeypatch.setattr(exports, "CSV_CHUNK_CHARS", 100)
    chunks = list(exports.csv_lines(workshop))
    assert len(chunks) > 3
    assert chunks[0].startswith("\ufeff") and all("\ufeff" not in c for c in chunks[1:])
    assert read_csv(chunks) == read_csv(exports.csv_lines(workshop))


# --- Excel --------------------------------------------------------------------------------------


def load(data: bytes):
    return load_workbook(io.BytesIO(data))


def test_xlsx_sheets_header_frozen_filter_and_dates(workshop):
    book = load(exports.xlsx_file(workshop))
    assert book.sheetnames == [gettext("Confirmed"), gettext("Waiting list")]
    assert book.properties.title == workshop.title
    confirmed, waiting = book.worksheets
    last_col = "O"  # 12 fixed columns and three questions

    header = [c.value for c in confirmed[1]]
    assert header[1:3] == ["Nachname", "Vorname"]
    assert header[4:6] == ["Organisation", "Teilnahme"]
    assert header[3] == gettext("Email")
    assert header[FIXED:] == ["Mittagessen", "Fotos erlaubt?", "Themen"]
    assert confirmed["B1"].font.b
    assert confirmed["B1"].fill.fgColor.rgb.endswith("DDEBF7")
    assert confirmed.freeze_panes == "A2"
    assert confirmed.auto_filter.ref == f"A1:{last_col}6"
    assert waiting.auto_filter.ref == f"A1:{last_col}3"

    assert [c.value for c in confirmed["B"][1:]] == ["Ärger", "Laue", "weber", "Weiß", "Żółć"]
    weiss = list(confirmed[5])
    assert weiss[0].value == 4 and weiss[0].data_type == "n"
    assert weiss[8].is_date
    assert weiss[8].value == datetime(2026, 11, 2, 10, 0)
    assert weiss[8].number_format == "dd.mm.yyyy hh:mm"
    assert weiss[10].value == datetime(2026, 11, 23, 10, 45)
    assert [c.value for c in weiss[FIXED:]] == EXPECTED_ANSWERS["Weiß"]
    assert confirmed["H2"].value is None  # no waiting-list position for confirmed people

    # A formula-like organisation stays a text cell.
    zolc = list(confirmed[6])
    assert (zolc[4].value, zolc[4].data_type) == ("=1+1", "s")
    assert [c.value for c in waiting["B"][1:]] == ["Muster", "Österreicher"]
    assert [c.value for c in waiting["H"][1:]] == [1, 2]
    assert waiting["E3"].value == "@SUM(A1)"


def test_xlsx_column_widths_follow_header_and_data_with_a_cap(workshop):
    people = {r.last_name: r for r in db.session.scalars(db.select(Registration))}
    people["Laue"].organisation = "Landesamt für Umwelt, Naturschutz und Geologie " * 4
    db.session.commit()
    sheet = load(exports.xlsx_file(workshop)).worksheets[0]
    width = {col: sheet.column_dimensions[col].width for col in "ABCDEI"}
    assert width["E"] == pytest.approx(exports.MAX_COLUMN_WIDTH + 1, abs=1)
    assert width["D"] > len("jurgen.weiss@example.org")  # wider than its header
    assert width["I"] >= 16  # a date
    assert width["B"] >= len("Nachname")


def test_xlsx_filters_choose_the_sheets(workshop):
    assert load(exports.xlsx_file(workshop, status="waitlisted")).sheetnames == [
        gettext("Waiting list")
    ]
    book = load(exports.xlsx_file(workshop, status="confirmed", attendance="online"))
    assert book.sheetnames == [gettext("Confirmed")]
    assert book.active.max_row == 1
    assert book.active.auto_filter.ref == "A1:O1"
    cancelled = load(exports.xlsx_file(workshop, status="cancelled")).worksheets[0]
    assert [c.value for c in cancelled["B"][1:]] == ["Storno"]


def test_xlsx_empty_waiting_list_still_has_its_sheet(app):
    event = make_event()
    sign_up(event, "Jürgen", "Weiß")
    book = load(exports.xlsx_file(event))
    assert book.sheetnames == [gettext("Confirmed"), gettext("Waiting list")]
    assert book.worksheets[1].max_row == 1


def test_xlsx_in_english(app, workshop):
    with english(app):
        book = load(exports.xlsx_file(workshop))
    assert book.sheetnames == ["Confirmed", "Waiting list"]
    header = [c.value for c in book.worksheets[0][1]]
    assert header[:3] == ["No.", "Last name", "First name"]
    assert book.worksheets[0]["N5"].value == "Yes"


def test_write_xlsx_into_a_file(workshop, tmp_path):
    path = tmp_path / "teilnehmende.xlsx"
    with path.open("wb") as output:
        exports.write_xlsx(workshop, output)
    assert load(path.read_bytes()).worksheets[0]["B2"].value == "Ärger"


# --- PDF: sign-in sheet -------------------------------------------------------------------------

A4_LONG, A4_SHORT = 841.89, 595.28  # points


def pdf_pages(data: bytes) -> list[str]:
    assert data.startswith(b"%PDF-")
    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def test_signin_sheet_lists_confirmed_on_site_people_by_name(app, workshop):
    data = exports.signin_sheet_pdf(workshop)
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (float(box.width), float(box.height)) == pytest.approx((A4_LONG, A4_SHORT), abs=0.5)

    text = reader.pages[0].extract_text()
    assert "Werkstatt „Gemeinwohl“ in Weißenfels" in text
    assert "Bürgerhaus Weißenfels, Marktstraße 1, 06667 Weißenfels" in text
    assert event_when(workshop) in text
    assert gettext("Page %(page)s of %(pages)s", page=1, pages=1) in text
    for label in ("Name", "Organisation", gettext("Signature"), gettext("No.")):
        assert label in text
    names = ["Ärger, Zoë", "Laue, Lisa", "weber, Bernd", "Weiß, Jürgen", "Żółć, Łukasz"]
    positions = [text.index(name) for name in names]
    assert positions == sorted(positions)
    for absent in ("Muster", "Österreicher", "Storno"):
        assert absent not in text
    assert "Stadt Herzberg (Elster)" in text


def test_signin_sheet_pages_and_footer_for_forty(app, clock):
    event = make_event(title="Fachtag", capacity_on_site=None, venue_name="Rathaus Jena")
    for n in range(40):
        sign_up(event, "Jürgen", f"Weiß-{n:02d}", "Stadt Jena")
    with english(app):
        pages = pdf_pages(exports.signin_sheet_pdf(event))
    assert len(pages) == 4  # twelve rows of 12 mm per landscape page
    for number, text in enumerate(pages, start=1):
        assert f"Page {number} of 4" in text
        assert "Fachtag" in text and "Rathaus Jena" in text  # the header on every page
        assert "Signature" in text
    everything = "\n".join(pages)
    assert all(everything.count(f"Weiß-{n:02d}, Jürgen") == 1 for n in range(40))
    assert pages[3].count("Weiß-") == 4


def test_signin_sheet_cuts_long_organisations(app):
    event = make_event()
    long_name = "Landesamt für Umwelt, Naturschutz und Geologie Mecklenburg-Vorpommern " * 2
    sign_up(event, "Jürgen", "Weiß", long_name.strip())
    text = pdf_pages(exports.signin_sheet_pdf(event))[0]
    assert long_name.strip() not in text
    assert "Landesamt für Umwelt" in text
    assert "…" in text


def test_signin_sheet_leaves_out_online_participants(app):
    event = make_event(format=EventFormat.HYBRID, capacity_online=5)
    sign_up(event, "Anna", "Vorort", attendance="on_site")
    sign_up(event, "Bert", "Digital", attendance="online")
    text = pdf_pages(exports.signin_sheet_pdf(event))[0]
    assert "Vorort, Anna" in text and "Digital" not in text
    assert f"{gettext('List of participants')} – Vor Ort" in text
    everyone = pdf_pages(exports.signin_sheet_pdf(event, attendance=None))[0]
    assert "Digital, Bert" in everyone


# --- PDF: badges --------------------------------------------------------------------------------


def test_badges_eight_per_page_one_name_each(app, clock):
    event = make_event(title="Werkstatt Jena", capacity_on_site=None)
    people = [
        ("Jürgen", "Weiß"), ("Łukasz", "Żółć"), ("Zoë", "Ärger"), ("Anna", "Albers"),
        ("Bernd", "Brüning"), ("Clara", "Çelik"), ("Dörte", "Dießner"), ("Emil", "Eßer"),
        ("Fritz", "Fuß"),
    ]  # fmt: skip
    for first, last in people:
        sign_up(event, first, last, f"Verein {last}")
    sign_up(event, "Nicht", "Bestätigt")  # confirmed too, then cancelled: no badge
    signup.cancel(
        db.session.scalars(db.select(Registration).filter_by(last_name="Bestätigt")).one()
    )
    db.session.commit()

    data = exports.badges_pdf(event)
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 2
    box = reader.pages[0].mediabox
    assert (float(box.width), float(box.height)) == pytest.approx((A4_SHORT, A4_LONG), abs=0.5)
    pages = [page.extract_text() for page in reader.pages]
    everything = "\n".join(pages)
    for first, last in people:
        assert everything.count(last) == 2  # the name and "Verein <name>"
        assert everything.count(first) == 1
    assert "Bestätigt" not in everything
    assert pages[0].count("Werkstatt Jena") == 8
    assert pages[1].count("Werkstatt Jena") == 1
    # By last name: Albers ... Fuß on the first page, Żółć alone on the second.
    assert "Żółć" in pages[1] and "Łukasz" in pages[1]


def test_badges_without_anyone_is_an_empty_sheet(app):
    event = make_event()
    assert len(pdf_pages(exports.badges_pdf(event))) == 1


# --- German labels ------------------------------------------------------------------------------

#: Every label of the exports with its German text (German is the default locale).
GERMAN = {
    "No.": "Nr.",
    "Last name": "Nachname",
    "First name": "Vorname",
    "Email": "E-Mail",
    "Organisation": "Organisation",
    "Attendance": "Teilnahme",
    "Status": "Status",
    "Waiting list position": "Wartelistenplatz",
    "Registered": "Angemeldet am",
    "Confirmed at": "Bestätigt am",
    "Checked in": "Eingecheckt",
    "Joined online": "Online teilgenommen",
    "Confirmed": "Bestätigt",
    "Waiting list": "Warteliste",
    "Cancelled": "Abgesagt",
    "On site": "Vor Ort",
    "List of participants": "Teilnehmerliste",
    "Name badges": "Namensschilder",
    "Name": "Name",
    "Signature": "Unterschrift",
    "Page %(page)s of %(pages)s": "Seite %(page)s von %(pages)s",
}


@pytest.mark.parametrize(("msgid", "german"), GERMAN.items())
def test_german_labels_of_the_exports(app, msgid, german):
    with app.test_request_context("/"), force_locale("de"):
        assert gettext(msgid) == german


def test_german_sign_in_sheet(app):
    with app.test_request_context("/"):
        event = make_event(capacity_on_site=None)
        for n in range(13):
            sign_up(event, "Jürgen", f"Weiß{n:02d}")
        pages = pdf_pages(exports.signin_sheet_pdf(event))
    assert "Seite 1 von 2" in pages[0] and "Seite 2 von 2" in pages[1]
    assert "Teilnehmerliste" in pages[0] and "Unterschrift" in pages[0]
    assert "Weiß12, Jürgen" in pages[1]
