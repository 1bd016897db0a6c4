"""Control characters are refused where text enters the back office and the command line, with
the message next to the field; multi-line text keeps its line breaks as LF."""

from __future__ import annotations

import re
from importlib import resources
from io import BytesIO

import pytest
from sqlalchemy import select

from registration.extensions import db
from registration.models import AuditEntry, Event, Organiser, OutboxMessage
from registration.services import signup
from registration.textrules import (
    header_safe,
    is_clean_line,
    is_clean_text,
    normalise_newlines,
)

from .conftest import make_event
from .test_admin import login, make_organiser

DE = {"Accept-Language": "de"}


@pytest.mark.parametrize(
    ("value", "line", "text"),
    [
        ("Jürgen Müßig-Öztürk", True, True),
        ("Markt 1\n04916 Herzberg", False, True),
        ("Spalte\tzwei", False, True),
        ("Hallo\r\nBcc: opfer@example.org", False, True),
        ("NUL\x00", False, False),
        ("Escape\x1b[31m", False, False),
        ("DEL\x7f", False, False),
        ("C1\x85", False, False),
        ("Zeile\u2028Trenner", False, False),
        ("halb\ud800", False, False),
    ],
)
def test_the_rule_for_one_line_and_multi_line_text(value, line, text):
    assert is_clean_line(value) is line
    assert is_clean_text(value) is text
    assert "\r" not in normalise_newlines(value)
    assert is_clean_line(header_safe(value)) or "\ud800" in value


@pytest.fixture
def organiser(app):
    me = make_organiser("ich@example.org", admin=True)
    event = make_event(slug="meine")
    event.organisers.append(me)
    db.session.commit()
    return me


def field_error(page: str, field: str) -> str:
    match = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', page, re.S)
    return match.group(1) if match else ""


def test_a_message_subject_with_a_line_break_is_refused_next_to_the_field(client, organiser):
    login(client, "ich@example.org")
    data = {"subject": "Hallo\r\nBcc: opfer@example.org", "body": "Text", "action": "send"}
    response = client.post("/admin/events/meine/message", data=data, headers=DE)
    assert response.status_code == 422
    assert "Steuerzeichen" in field_error(response.get_data(as_text=True), "subject")
    assert (
        db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "message")).all() == []
    )


def test_a_message_body_keeps_its_line_breaks_as_lf(client, organiser):
    event = db.session.scalars(select(Event).where(Event.slug == "meine")).one()
    signup.register(event, signup.SignupData(email="p@example.org", first_name="P",
                                             last_name="Q", privacy_consent=True))  # fmt: skip
    db.session.commit()
    login(client, "ich@example.org")
    data = {"subject": "Hallo", "body": "Zeile 1\r\nZeile 2\rZeile 3", "action": "send"}
    assert client.post("/admin/events/meine/message", data=data).status_code == 302
    row = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "message")).one()
    assert row.payload["body"] == "Zeile 1\nZeile 2\nZeile 3"
    bad = {**data, "body": "Text\x1b[31m"}
    response = client.post("/admin/events/meine/message", data=bad, headers=DE)
    assert response.status_code == 422
    assert "Steuerzeichen" in field_error(response.get_data(as_text=True), "body")


def test_an_account_name_with_a_line_break_is_refused(client, organiser):
    login(client, "ich@example.org")
    data = {"email": "neu@example.org", "name": "Neu\nBcc: x@example.org"}
    response = client.post("/admin/accounts", data=data, headers=DE)
    assert response.status_code == 422
    assert "Steuerzeichen" in field_error(response.get_data(as_text=True), "name")
    assert (
        db.session.scalars(select(Organiser).where(Organiser.email == "neu@example.org")).all()
        == []
    )


def test_the_command_line_refuses_a_name_with_a_line_break(runner, app):
    result = runner.invoke(
        args=["users", "create", "neu@example.org", "--name", "Neu\nZeile"],
        input="ein-langes-passwort\nein-langes-passwort\n",
    )
    assert result.exit_code != 0 and "--name" in result.output
    assert db.session.scalars(select(Organiser)).all() == []


def test_file_texts_refuse_control_characters(client, organiser):
    image = resources.files("registration").joinpath("demo/fachtagung-titelbild.jpg").read_bytes()
    login(client, "ich@example.org")
    response = client.post(
        "/admin/events/meine/files",
        data={"file": (BytesIO(image), "titel.jpg"), "kind": "title_image",
              "alt": "Blick\r\nauf den Markt", "credit": "Foto"},
        headers=DE, follow_redirects=True,
    )  # fmt: skip
    assert "Steuerzeichen" in response.get_data(as_text=True)
    assert (
        db.session.scalars(select(AuditEntry).where(AuditEntry.action == "event.file.add")).all()
        == []
    )
