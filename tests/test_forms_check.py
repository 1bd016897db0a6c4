"""forms.check(): a form class's field rules without building the form (the JSON API's sign-up
validation) give what the form itself gives."""

from __future__ import annotations

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict
from wtforms import Form, IntegerField, StringField

from registration import create_app
from registration.forms import ApiSignupForm, check

FIELDS = ("email", "first_name", "last_name", "organisation", "attendance", "language")
SAMPLES = [
    "", " ", "  Erika  ", "name@example.org", " name@example.org ", "not an address", "de", "en",
    "fr", "on_site", "online", "x" * 100, "x" * 101, "y" * 201, f"{'a' * 250}@x.de",
    "Erika\x00", "Tab\there", "\ud800", "Zoë Müller-Lüdenscheidt",
]  # fmt: skip


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    database = tmp_path_factory.mktemp("check") / "test.sqlite"
    return create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{database}")


def as_text(errors: dict) -> dict[str, list[str]]:
    return {name: [str(m) for m in messages] for name, messages in errors.items()}


@settings(max_examples=300, deadline=None)
@given(
    values=st.dictionaries(
        st.sampled_from(FIELDS), st.one_of(st.sampled_from(SAMPLES), st.text(max_size=30))
    ),
    language=st.sampled_from(["de", "en"]),
)
def test_check_gives_what_the_form_gives(app: Flask, values: dict[str, str], language: str):
    with app.test_request_context(headers={"Accept-Language": language}):
        form = ApiSignupForm(formdata=MultiDict(values))
        form.validate()
        data, errors = check(ApiSignupForm, values)
        assert as_text(errors) == as_text(form.errors)
        assert data == {name: form[name].data for name in FIELDS}


def test_the_api_form_has_errors_to_compare(app: Flask):
    """The comparison above is not empty-handed: bad input gives errors in both."""
    with app.test_request_context(headers={"Accept-Language": "de"}):
        data, errors = check(ApiSignupForm, {"email": "nope", "language": "fr"})
    assert set(errors) == {"email", "first_name", "last_name", "language"}
    assert data["email"] == "nope"


def test_check_refuses_what_it_cannot_mirror():
    class WithNumber(Form):
        age = IntegerField()

    class WithInlineRule(Form):
        name = StringField()

        def validate_name(self, field):  # pragma: no cover - never called
            raise AssertionError

    for form_class in (WithNumber, WithInlineRule):
        with pytest.raises(TypeError):
            check(form_class, {})
