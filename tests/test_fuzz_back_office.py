"""Fuzzing every form of the back office with generated input (hypothesis).

Every route of the back office that takes a form or a query gets generated field values (any
unicode with control characters, words that are no choice, numbers out of range, missing and
unknown fields): the answer is never a 5xx. The routes are taken from the blueprint itself, so a
new form is fuzzed without anyone remembering to add it.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registration.extensions import db
from registration.models import (
    EventFormat,
    Organiser,
    OutboxMessage,
    Question,
    QuestionKind,
    Registration,
)
from registration.services import api_tokens, signup

from .conftest import make_event
from .test_admin import PASSWORD, login, make_organiser

FUZZ = settings(
    max_examples=8,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Every field name the back office's forms and queries use, and a few nobody expects.
FIELDS = [
    "title", "subtitle", "slug", "format", "status", "starts_at", "ends_at", "venue_name",
    "venue_address", "description", "contact_name", "contact_email", "contact_phone",
    "capacity_on_site", "capacity_online", "waitlist_enabled", "registration_opens_at",
    "registration_closes_at", "dial_in_url", "dial_in_meeting_id", "dial_in_passcode",
    "dial_in_phone", "dial_in_instructions", "reminder_days_before", "dial_in_hours_before",
    "retention_days", "notify", "version", "subject", "body", "attendance", "action",
    "first_name", "last_name", "email", "organisation", "consent", "over_capacity", "label",
    "kind", "options", "required", "help_text", "name", "is_admin", "active", "direction",
    "q", "sort", "page", "password", "confirm", "current_password", "privacy_de",
    "privacy_en", "expires_days", "delimiter", "unknown_field",
]  # fmt: skip
#: Routes that end the session or the account the fuzzing runs with.
SKIPPED = {"admin.logout", "admin.account_active", "admin.password"}

WORDS = st.sampled_from(
    ["", "bogus", "0", "-1", "1", "2", "99999999999999999999", "1e9", "on_site", "online",
     "hybrid", "confirmed", "waitlisted", "cancelled", "draft", "published", "y", "up",
     "down", "undo", "send", "test", "preview", "2030-01-01T10:00", "2030-13-45T99:99",
     "a@example.org", "yes_no", "single_choice", "text", "null", "[]", "{}"]
)  # fmt: skip
#: Any text a browser can send (a form is UTF-8: no lone surrogates).
TEXT = st.characters(exclude_categories=("Cs",))
VALUES = st.one_of(WORDS, st.text(TEXT, max_size=60), st.text(TEXT, max_size=300))
FORM = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=12)


@pytest.fixture
def world(app: Flask) -> dict[str, Any]:
    """An admin's event with a waiting list, a question, an email in the outbox and a token."""
    admin = make_organiser("admin@example.org", admin=True)
    make_organiser("andere@example.org")
    event = make_event(slug="fuzz", format=EventFormat.HYBRID, capacity_on_site=1,
                       capacity_online=None)  # fmt: skip
    event.organisers.append(admin)
    event.questions.append(
        Question(key="walk", label="Spaziergang?", kind=QuestionKind.SINGLE_CHOICE,
                 options=["ja", "nein"], position=0)
    )  # fmt: skip
    db.session.commit()
    for n in range(2):
        signup.register(
            event,
            signup.SignupData(email=f"p{n}@example.org", first_name="P", last_name=str(n),
                              attendance="on_site", privacy_consent=True,
                              answers={"walk": "ja"}),
        )  # fmt: skip
    db.session.commit()
    token, _secret = api_tokens.create(admin, "Skript")
    db.session.commit()
    return {
        "slug": event.slug,
        "registration_id": db.session.scalars(db.select(Registration.id)).first(),
        "question_id": event.questions[0].id,
        "message_id": db.session.scalars(db.select(OutboxMessage.id)).first(),
        "organiser_id": db.session.scalars(
            db.select(Organiser.id).where(Organiser.email == "andere@example.org")
        ).one(),
        "token_id": token.id,
        "file_id": 1,
        "token": "abc",
    }


def routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, rule) of every back-office route with a form or a query."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or rule.endpoint in SKIPPED:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, rule.rule))
    return sorted(found)


def url_for_rule(rule: str, values: dict[str, Any]) -> str:
    url = rule
    for name, value in values.items():
        for converter in ("", "int:"):
            url = url.replace(f"<{converter}{name}>", str(value))
    assert "<" not in url, url
    return url


def test_no_back_office_form_answers_with_a_server_error(app, client, world):
    login(client, "admin@example.org", PASSWORD)
    all_routes = routes(app)
    assert len(all_routes) > 30  # the blueprint's routes were found

    for endpoint, method, rule in all_routes:
        fuzz_route(client, endpoint, method, url_for_rule(rule, world))


def fuzz_route(client: Any, endpoint: str, method: str, url: str) -> None:
    @FUZZ
    @given(data=FORM)
    def check(data: dict[str, str]) -> None:
        if method == "GET":
            response = client.get(url, query_string=data)
        else:
            response = client.open(url, method=method, data=data)
        assert response.status_code < 500, (endpoint, method, data)
        db.session.rollback()

    check()
