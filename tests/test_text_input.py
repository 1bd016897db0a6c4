"""Entered text: one validation path for the sign-up page and the API (the form's own rules),
one-line fields without any control character, line breaks in text answers stored as "\\n"
(DESIGN.md invariant 8: a clear message naming the field; control characters never reach a
mail header)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from registration.extensions import db
from registration.forms import ApiSignupForm, validate_api_signup
from registration.models import Answer, Question, QuestionKind, Registration

from .conftest import make_event
from .test_public import form_data, text_of

API = "/api/v1/events/werkstatt/registrations"
EN = {"Accept-Language": "en"}
CONTROL_MESSAGE = "Please remove the control characters from this field."


def api_body(**overrides: object) -> dict:
    values: dict[str, object] = {
        "email": "juergen@example.org",
        "first_name": "Jürgen",
        "last_name": "Weiß",
        "privacy_consent": True,
    }
    values.update(overrides)
    return values


def registrations() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Registration))


HEADER_INJECTIONS = [
    ("email", "a@example.org\r\nBcc: x@example.org"),
    ("email", "a@example.org\nBcc: x@example.org"),
    ("first_name", "Jürgen\r\nBcc: x"),
    ("first_name", "Jürgen\rBcc: x"),
    ("last_name", "Weiß\nX-Evil: 1"),
    ("organisation", "Stadt\u2028Jena"),  # a line separator
    ("organisation", "Stadt\x85Jena"),  # NEL, a C1 control
    ("first_name", "Tab\there"),
]


@pytest.mark.parametrize(("field", "value"), HEADER_INJECTIONS)
def test_the_api_refuses_line_breaks_in_one_line_fields_naming_the_field(client, app, field, value):
    make_event()
    response = client.post(API, json=api_body(**{field: value}), headers=EN)
    assert response.status_code == 422
    assert response.json["errors"][field][0] == CONTROL_MESSAGE
    assert registrations() == 0


@pytest.mark.parametrize(("field", "value"), HEADER_INJECTIONS)
def test_the_form_refuses_them_next_to_the_field(client, app, field, value):
    make_event()
    response = client.post("/events/werkstatt", data=form_data(1, **{field: value}), headers=EN)
    assert response.status_code == 422
    page = text_of(response)
    # The message sits in the field's own error element, which the input points to.
    assert re.search(f'id="{field}-error">.*{re.escape(CONTROL_MESSAGE)}', page)
    assert registrations() == 0


def text_question(event) -> Question:
    question = Question(event=event, key="note", label="Anmerkung", kind=QuestionKind.TEXT)
    db.session.add(question)
    db.session.commit()
    return question


def stored_answer() -> str:
    db.session.rollback()
    return db.session.scalars(select(Answer.value)).one()


def test_a_text_answer_from_the_form_is_stored_with_plain_line_breaks(client, app):
    text_question(make_event())
    response = client.post(
        "/events/werkstatt", data=form_data(1, q_note="Zeile 1\r\nZeile 2\rZeile 3\n")
    )
    assert response.status_code == 302, text_of(response)
    assert stored_answer() == "Zeile 1\nZeile 2\nZeile 3"


def test_a_text_answer_from_the_api_is_stored_with_plain_line_breaks(client, app):
    text_question(make_event())
    response = client.post(API, json=api_body(answers={"note": "eins\r\nzwei\tdrei"}))
    assert response.status_code == 201, response.json
    assert stored_answer() == "eins\nzwei\tdrei"


@pytest.mark.parametrize("value", ["eins\x00zwei", "eins\x1bzwei", "eins\u2029zwei", "\x9b"])
def test_other_control_characters_in_a_text_answer_are_refused(client, app, value):
    text_question(make_event())
    response = client.post(API, json=api_body(answers={"note": value}), headers=EN)
    assert response.status_code == 422
    assert response.json["errors"] == {"answers.note": [CONTROL_MESSAGE]}


def test_the_api_validates_with_the_form_itself(app):
    """validate_api_signup gives what ApiSignupForm's own validation gives: one rule set."""
    values = {"email": " name@example.org ", "first_name": "  Erika ", "language": "fr"}
    data, errors = validate_api_signup(values)
    assert data["email"] == "name@example.org" and data["first_name"] == "Erika"
    assert set(errors) == {"last_name", "language"}
    assert errors["last_name"] == ["Bitte geben Sie Ihren Nachnamen ein."]  # German first
    form = ApiSignupForm(MultiDict(values))
    assert not form.validate()
    assert errors == {name: [str(m) for m in msgs] for name, msgs in form.errors.items()}
