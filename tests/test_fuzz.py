"""Fuzzing the sign-up form and the JSON API with generated input (hypothesis).

Whatever comes in (any unicode including NUL, control characters and lone surrogates, huge
strings, missing fields, wrong JSON types, bodies that are not JSON, wrong content types, answers
of the wrong shape to every kind of question), the answer is never a 5xx; a 4xx names the field
(JSON) or shows a message (the form); and each request leaves either exactly one complete
registration (with its answers and its confirmation in the outbox) or nothing, and never an
orphan row.

One app (and database) per test: the examples run against it one after the other, so the checks
compare the database before and after each request. The example counts are kept modest so that
the file runs in well under a minute per database.
"""

from __future__ import annotations

import json
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from registration.extensions import db
from registration.models import (
    Answer,
    EventFormat,
    OutboxMessage,
    Question,
    QuestionKind,
    Registration,
)

from .conftest import make_event

FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the checkout
    # The app is created once per test (by the function-scoped fixture) on purpose: the examples
    # share it, and each check compares the database before and after its own request.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

URL_API = "/api/v1/events/fuzz/registrations"
URL_FORM = "/events/fuzz"
OPTIONS_FOOD = ["vegetarisch", "vegan", "Fleisch"]
OPTIONS_TOPICS = ["Wohnen", "Mobilität", "Arbeit"]
API_FIELDS = {"email", "first_name", "last_name", "organisation", "attendance", "language"}
API_ERROR_FIELDS = API_FIELDS | {"privacy_consent", "answers", "body"}


@pytest.fixture
def event(app) -> Any:
    """A hybrid event with one question of every kind (two of them required)."""
    event = make_event(
        slug="fuzz",
        format=EventFormat.HYBRID,
        capacity_on_site=3,
        capacity_online=None,
        waitlist_enabled=True,
    )
    event.questions.extend(
        [
            Question(key="walk", label="Stadtspaziergang?", kind=QuestionKind.YES_NO,
                     required=True, position=0),
            Question(key="food", label="Verpflegung", kind=QuestionKind.SINGLE_CHOICE,
                     required=True, options=OPTIONS_FOOD, position=1),
            Question(key="topics", label="Themen", kind=QuestionKind.MULTIPLE_CHOICE,
                     required=False, options=OPTIONS_TOPICS, position=2),
            Question(key="note", label="Anmerkungen", kind=QuestionKind.TEXT, required=False,
                     position=3),
        ]
    )  # fmt: skip
    db.session.commit()
    return event


# --- Strategies ----------------------------------------------------------------------------------

#: Hand-picked nasties that random text rarely hits.
NASTY = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x1b[31m",
    "\x7f",
    "\u202eevil",
    "\ufeff",
    "\u0130" * 10,
    "👩‍👩‍👧‍👦",
    "\r\n",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    '=HYPERLINK("x")',
    "../../etc/passwd",
    "%00",
    "yes",
    "on_site",
    "online",
    "vegan",
]
#: Lone surrogates: they can only arrive as JSON escapes, and no database can store them.
SURROGATES = ["\ud800", "a\udc80b", "\udfff"]


def huge(alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A long string without asking hypothesis to generate every character."""
    return st.builds(lambda c, n: c * n, alphabet, st.integers(101, 100_000))


def any_text(*, surrogates: bool) -> st.SearchStrategy[str]:
    alphabet = st.characters() if surrogates else st.characters(codec="utf-8")
    nasty = NASTY + (SURROGATES if surrogates else [])
    return st.one_of(
        st.text(alphabet, max_size=30),
        st.sampled_from(nasty),
        huge(st.sampled_from(["a", "ä", "\x00", "€", "𝄞"])),
    )


JSON_TEXT = any_text(surrogates=True)
FORM_TEXT = any_text(surrogates=False)
EMAILS = st.integers(0, 10_000).map(lambda n: f"fuzz{n}@example.org")
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), JSON_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(JSON_TEXT, inner, max_size=3),
    max_leaves=6,
)

VALID_API = {
    "first_name": st.just("Jürgen"),
    "last_name": st.just("Weiß"),
    "email": EMAILS,
    "organisation": st.just("Stadt Jena"),
    "attendance": st.sampled_from(["on_site", "online"]),
    "language": st.sampled_from(["de", "en"]),
    "privacy_consent": st.just(True),
}
VALID_ANSWERS = {
    "walk": st.sampled_from([True, False, "yes", "nein"]),
    "food": st.sampled_from(OPTIONS_FOOD),
    "topics": st.lists(st.sampled_from(OPTIONS_TOPICS), unique=True, max_size=3),
    "note": st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=50),
}

MISSING = object()


@st.composite
def corrupted(draw: Any, valid: dict[str, Any], wrong: st.SearchStrategy[Any]) -> dict[str, Any]:
    """Valid values, except for a few fields (often none, so that sign-ups get through too) that
    are wrong or missing; plus perhaps fields nobody asked for."""
    broken = draw(st.one_of(st.just(set()), st.sets(st.sampled_from(sorted(valid)), max_size=3)))
    values: dict[str, Any] = {}
    for name, strategy in valid.items():
        value = draw(st.one_of(wrong, st.just(MISSING)) if name in broken else strategy)
        if value is not MISSING:
            values[name] = value
    return values


#: Now and then an answer to a question the event does not have.
EXTRA_ANSWERS = st.one_of(
    st.just({}), st.just({}), st.dictionaries(JSON_TEXT, JSON_VALUES, max_size=1)
)


@st.composite
def api_bodies(draw: Any) -> Any:
    valid = {**VALID_API, "answers": corrupted(VALID_ANSWERS, JSON_VALUES)}
    body = draw(corrupted(valid, JSON_VALUES))
    if isinstance(body.get("answers"), dict):
        body["answers"].update(draw(EXTRA_ANSWERS))
    body.update(draw(st.dictionaries(JSON_TEXT, JSON_VALUES, max_size=1)))
    return body


def nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


RAW_BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    api_bodies().map(lambda b: json.dumps(b)[: len(json.dumps(b)) // 2].encode()),  # cut off
    st.integers(1, 100_000).map(nested),
    st.sampled_from([b"", b"null", b"NaN", b"1e999999", b'{"email": "\xff\xfe"}', b"\x00"]),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "application/octet-stream",
        "",
    ]
)

VALID_FORM = {
    "first_name": st.just("Jürgen"),
    "last_name": st.just("Weiß"),
    "email": EMAILS,
    "organisation": st.just("Stadt Jena"),
    "attendance": st.sampled_from(["on_site", "online"]),
    "privacy_consent": st.just("y"),
    "q_walk": st.sampled_from(["yes", "no"]),
    "q_food": st.sampled_from(OPTIONS_FOOD),
    "q_topics": st.lists(st.sampled_from(OPTIONS_TOPICS), unique=True, max_size=3),
    "q_note": st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=50),
}
FORM_WRONG = st.one_of(FORM_TEXT, st.lists(FORM_TEXT, min_size=2, max_size=3))


@st.composite
def form_bodies(draw: Any) -> dict[str, Any]:
    data = draw(corrupted(VALID_FORM, FORM_WRONG))
    if draw(st.integers(0, 9)) == 0:
        data["homepage"] = draw(FORM_TEXT)  # the honeypot
    data.update(draw(st.dictionaries(FORM_TEXT, FORM_TEXT, max_size=1)))
    return data


# --- Checks --------------------------------------------------------------------------------------


def snapshot() -> dict[str, Any]:
    """Row counts, and the rows that must never exist: orphans, registrations without mail."""

    def count(stmt: Any) -> int:
        return db.session.scalar(select(func.count()).select_from(stmt.subquery()))

    registration_ids = select(Registration.id)
    result = {
        "registrations": count(select(Registration.id)),
        "answers": count(select(Answer.id)),
        # A duplicate sign-up mails the registration's link again: that row is its only trace.
        "outbox": count(select(OutboxMessage.id).where(OutboxMessage.kind != "manage_link")),
        "orphan_answers": count(
            select(Answer.id).where(Answer.registration_id.not_in(registration_ids))
        ),
        "orphan_outbox": count(
            select(OutboxMessage.id).where(
                OutboxMessage.registration_id.is_not(None),
                OutboxMessage.registration_id.not_in(registration_ids),
            )
        ),
        "without_confirmation": count(
            select(Registration.id).where(
                ~select(OutboxMessage.id)
                .where(
                    OutboxMessage.registration_id == Registration.id,
                    OutboxMessage.kind.in_(["confirmation", "waitlisted"]),
                )
                .exists()
            )
        ),
        "last_id": db.session.scalar(select(func.max(Registration.id))) or 0,
    }
    db.session.rollback()  # end the read transaction before the next request
    return result


def assert_clean(after: dict[str, Any]) -> None:
    assert after["orphan_answers"] == 0
    assert after["orphan_outbox"] == 0
    assert after["without_confirmation"] == 0


def assert_complete(registration_id: int) -> None:
    """The new registration: its fields clean, its answers valid, its confirmation queued."""
    registration = db.session.get(Registration, registration_id)
    for value in (registration.first_name, registration.last_name, registration.organisation):
        assert not any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in value)
    assert 0 < len(registration.first_name) <= 100 and 0 < len(registration.last_name) <= 100
    assert "@" in registration.email and registration.privacy_consent_at is not None
    answers = {a.question.key: a.value for a in registration.answers}
    assert isinstance(answers["walk"], bool)
    assert answers["food"] in OPTIONS_FOOD
    assert set(answers.get("topics", [])) <= set(OPTIONS_TOPICS)
    assert isinstance(answers.get("note", ""), str) and len(answers.get("note", "")) <= 2000
    kinds = [m.kind for m in db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.registration_id == registration_id)
    )]  # fmt: skip
    assert kinds in (["confirmation"], ["waitlisted"])
    db.session.rollback()


def check(response: Any, before: dict[str, Any], created_status: int) -> None:
    hypothesis.event(f"HTTP {response.status_code}")  # --hypothesis-show-statistics shows the mix
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    after = snapshot()
    assert_clean(after)
    if response.status_code == created_status:
        assert after["registrations"] == before["registrations"] + 1
        assert after["last_id"] > before["last_id"]
        assert_complete(after["last_id"])
    else:
        assert 400 <= response.status_code < 500, response.status_code
        assert {k: after[k] for k in ("registrations", "answers", "outbox")} == {
            k: before[k] for k in ("registrations", "answers", "outbox")
        }


def check_api_error(response: Any) -> None:
    """A 4xx from the API is JSON and says what is wrong: the fields, or a message."""
    body = response.get_json(silent=True)
    assert isinstance(body, dict), response.get_data(as_text=True)[:300]
    if response.status_code == 422:
        errors = body["errors"]
        assert errors and all(
            name in API_ERROR_FIELDS or name.startswith("answers.") for name in errors
        ), errors
        assert all(messages and all(isinstance(m, str) and m for m in messages)
                   for messages in errors.values())  # fmt: skip
    else:
        assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body


def check_form_error(response: Any) -> None:
    """A 4xx from the form is a page that explains it (the error summary or an error page)."""
    page = response.get_data(as_text=True)
    if response.status_code == 422:
        assert 'class="error-summary"' in page
        assert '<li><a href="#' in page or "<li>" in page
    else:
        assert "<h1>" in page


# --- The tests -----------------------------------------------------------------------------------


@FUZZ
@given(body=api_bodies())
def test_api_sign_up_survives_generated_json(app, client, event, body):
    before = snapshot()
    response = client.post(URL_API, json=body)
    check(response, before, 201)
    if response.status_code != 201:
        check_api_error(response)


@FUZZ
@given(raw=RAW_BODIES, content_type=CONTENT_TYPES)
def test_api_sign_up_survives_any_body_and_content_type(app, client, event, raw, content_type):
    before = snapshot()
    response = client.post(URL_API, data=raw, headers={"Content-Type": content_type})
    check(response, before, 201)
    if response.status_code != 201:
        check_api_error(response)


@FUZZ
@given(data=form_bodies())
def test_form_sign_up_survives_generated_fields(app, client, event, data):
    before = snapshot()
    response = client.post(URL_FORM, data=data)
    check(response, before, 302)
    if response.status_code != 302:
        check_form_error(response)


FORM_ENCODED = form_bodies().map(
    lambda data: "&".join(f"{key}={value}" for key, value in data.items()).encode()
)


@FUZZ
@given(raw=st.one_of(RAW_BODIES, FORM_ENCODED), content_type=CONTENT_TYPES)
def test_form_sign_up_survives_any_body_and_content_type(app, client, event, raw, content_type):
    before = snapshot()
    response = client.post(URL_FORM, data=raw, headers={"Content-Type": content_type})
    check(response, before, 302)
    if response.status_code != 302:
        check_form_error(response)


# --- Regressions the fuzzing found ---------------------------------------------------------------


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_invalid_json_not_a_500(client, event, depth):
    """Python's JSON parser raises RecursionError on deep nesting; that used to be a 500."""
    for raw in (nested(depth), ('{"a":' * depth + "1" + "}" * depth).encode()):
        response = client.post(URL_API, data=raw, content_type="application/json")
        assert response.status_code == 400
        assert response.json["error"] == "invalid_json"
    assert snapshot()["registrations"] == 0


BASE_BODY = {
    "email": "anna@example.org",
    "first_name": "Anna",
    "last_name": "Schmidt",
    "attendance": "online",
    "privacy_consent": True,
    "answers": {"walk": True, "food": "vegan"},
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"first_name": "\ud800"}, "first_name"),
        ({"last_name": "Schmidt\udfff"}, "last_name"),
        ({"organisation": "a\udc80b"}, "organisation"),
        ({"answers": {"walk": True, "food": "vegan", "note": "Rollstuhl \ud83d"}}, "answers.note"),
    ],
)
def test_lone_surrogates_are_refused_by_field(client, event, change, field):
    """A lone surrogate (a JSON escape like "\\ud800") cannot be stored or mailed: it used to be
    a 500 in a name field and was stored in a text answer, to break exports and mails later."""
    response = client.post(URL_API, json={**BASE_BODY, **change}, headers={"Accept-Language": "en"})
    assert response.status_code == 422
    assert response.json["errors"][field] == [
        "Please remove the control characters from this field."
    ]
    assert snapshot()["registrations"] == 0
    assert client.post(URL_API, json=BASE_BODY).status_code == 201  # the same without it


@pytest.mark.parametrize(
    "raw", [b"0", b'" "', b"[1]", b"null", b'{"first_name": 1, "email": ["a"], "q_walk": {}}']
)
def test_a_json_body_sent_to_the_form_gets_the_form_errors(client, event, raw):
    """Flask-WTF filled the form from a JSON body: a number or string crashed it (a 500)."""
    response = client.post(URL_FORM, data=raw, content_type="application/json")
    assert response.status_code == 422
    assert 'class="error-summary"' in response.get_data(as_text=True)
    assert snapshot()["registrations"] == 0
