"""Schemathesis against a live app: every operation of /api/v1/openapi.json, generated inputs
(valid and invalid), a bounded number of examples each. No server errors; status code, content
type and body as documented.

The app runs on a free port in a thread of this process (Werkzeug's server), on a fresh SQLite
database seeded with published events with questions, a draft, another organiser's event, a few
registrations and an API token. Generated slugs and manage tokens are mixed with the seeded ones,
so operations reach real events and registrations, not only 404s."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.serving import make_server

from registration import create_app
from registration.api.views import OPENAPI_PATH
from registration.extensions import db
from registration.models import EventFormat, EventStatus, Question, QuestionKind
from registration.services import api_tokens, signup
from registration.timeutil import utcnow

from .conftest import make_event
from .test_admin import make_organiser

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
#: Generated examples per operation (and generation mode); bounded so the test takes a minute or two.
MAX_EXAMPLES = 50
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def seed() -> dict[str, Any]:
    """Events with every kind of question, sign-ups on both modes, a token; returns what the
    generated requests may use."""
    start = utcnow() + timedelta(days=21)
    me = make_organiser("ich@example.org")
    other = make_organiser("andere@example.org")
    hybrid = make_event(
        slug="fachtagung", format=EventFormat.HYBRID, capacity_on_site=2, capacity_online=50,
        starts_at=start, venue_name="Volkshaus", dial_in_url="https://meet.example.org/raum",
    )  # fmt: skip
    hybrid.questions.extend(
        [
            Question(key="lunch", label="Mittagessen?", kind=QuestionKind.YES_NO, position=0),
            Question(
                key="diet",
                label="Ernährung",
                kind=QuestionKind.SINGLE_CHOICE,
                options=["vegetarisch", "vegan"],
                position=1,
            ),
            Question(
                key="topics",
                label="Themen",
                kind=QuestionKind.MULTIPLE_CHOICE,
                options=["Wohnen", "Verkehr", "Energie"],
                position=2,
            ),
            Question(key="note", label="Anmerkung", kind=QuestionKind.TEXT, position=3),
        ]
    )
    on_site = make_event(slug="werkstatt", capacity_on_site=1)
    draft = make_event(slug="entwurf", status=EventStatus.DRAFT)
    theirs = make_event(slug="fremde")
    for event in (hybrid, on_site, draft):
        event.organisers.append(me)
    theirs.organisers.append(other)
    db.session.commit()
    manage_tokens = []
    for n, (event, extra) in enumerate(
        [
            (hybrid, {"attendance": "on_site", "answers": {"lunch": True, "diet": "vegan"}}),
            (hybrid, {"attendance": "on_site", "answers": {"topics": ["Wohnen", "Energie"]}}),
            (hybrid, {"attendance": "on_site"}),  # waiting
            (hybrid, {"attendance": "online", "answers": {"note": "Grüße"}}),
            (on_site, {}),
            (on_site, {}),  # waiting
            (theirs, {}),
        ]
    ):
        data = signup.SignupData(
            email=f"p{n}@example.org", first_name=f"Vor{n}", last_name=f"Nach{n}",
            privacy_consent=True, **extra,
        )  # fmt: skip
        manage_tokens.append(signup.register(event, data).manage_token)
        db.session.commit()
    _token, secret = api_tokens.create(me, "schemathesis")
    db.session.commit()
    return {
        "secret": secret,
        "slugs": ["fachtagung", "werkstatt", "entwurf", "fremde"],
        "manage_tokens": manage_tokens,
    }


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp_path: Path = tmp_path_factory.mktemp("schemathesis")
    listener = socket.create_server((HOST, 0))
    port = listener.getsockname()[1]
    base_url = f"http://{HOST}:{port}"
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = create_app(
        "testing",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'api.sqlite'}",
        BASE_URL=base_url,
        SERVER_NAME=None,
        MAIL_SERVER=None,
        RATELIMIT_ENABLED=False,  # thousands of requests from one address on purpose
    )
    with app.app_context():
        db.create_all()
        seeded = seed()
    try:
        server = make_server(HOST, port, app, threaded=True, fd=listener.fileno())
    finally:
        listener.close()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    SEEDED.update(seeded)
    try:
        yield {"base_url": base_url, **seeded}
    finally:
        SEEDED.clear()
        server.shutdown()
        thread.join(timeout=10)
        with app.app_context():
            db.engine.dispose()
        monkeypatch.undo()


#: Loaded from the repository at collection time (the schema the live app serves is the same file,
#: see test_openapi.py); requests go to the live app.
schema = schemathesis.openapi.from_path(OPENAPI_PATH)
#: Filled by the ``live_api`` fixture before any case is generated.
SEEDED: dict[str, Any] = {}


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Half the time a seeded slug or manage token instead of a generated one, so operations
    reach real events and registrations, not only 404s."""
    for name, key in (("slug", "slugs"), ("token", "manage_tokens")):
        if path_parameters and name in path_parameters:
            # Deferred: the strategy is built at collection, before the fixture has seeded.
            seeded = st.deferred(lambda key=key: st.sampled_from(SEEDED.get(key) or ["-"]))
            return st.one_of(
                st.just(path_parameters),
                seeded.map(lambda value, n=name: {**path_parameters, n: value}),
            )
    return st.just(path_parameters)


def _plausible_event(body: dict[str, Any]) -> dict[str, Any]:
    """The generated event with the values no JSON Schema can express made right: an IANA zone,
    an end after the start, a dial-in URL, distinct slugs, questions with fitting options."""
    body = dict(body)
    if "timezone" in body:
        body["timezone"] = "Europe/Berlin"
    start = datetime(2031, 5, 4, 9, 30, tzinfo=UTC)
    if "starts_at" in body or "ends_at" in body:
        body["starts_at"] = start.isoformat()
        body["ends_at"] = (start + timedelta(hours=6)).isoformat()
    for key in ("registration_opens_at", "registration_closes_at"):
        if key in body:
            body[key] = None
    if isinstance(body.get("dial_in"), dict) and "url" in body["dial_in"]:
        body["dial_in"] = {**body["dial_in"], "url": "https://meet.example.org/raum"}
    if isinstance(body.get("contact"), dict) and "email" in body["contact"]:
        body["contact"] = {**body["contact"], "email": "info@example.org"}
    if "questions" in body:
        body["questions"] = [
            {"key": "diet", "label": "Ernährung", "kind": "single_choice",
             "options": ["vegetarisch", "vegan"]},
        ]  # fmt: skip
    if isinstance(body.get("slug"), str):
        body["slug"] = f"neu-{next(_numbers)}"
    return body


def _plausible_signup(body: dict[str, Any]) -> dict[str, Any]:
    """A generated sign-up with a fresh valid address and the consent given."""
    return {
        **body,
        "email": f"person{next(_numbers)}@example.org",
        "first_name": "Anna",
        "last_name": "Muster",
        "privacy_consent": True,
        "answers": {},
    }


_numbers = itertools.count(1)
_PLAUSIBLE = {
    ("POST", "/events"): _plausible_event,
    ("PATCH", "/events/{slug}"): _plausible_event,
    ("POST", "/events/{slug}/registrations"): _plausible_signup,
}


@schema.hook
def flatmap_body(context: Any, body: Any) -> Any:
    """Half the time a plausible variant of a generated event or sign-up, so that creating,
    changing and signing up succeed too and reach the database, not only the validation."""
    operation = context.operation
    key = (operation.method.upper(), operation.path) if operation is not None else None
    if key not in _PLAUSIBLE or not isinstance(body, dict):
        return st.just(body)
    return st.one_of(st.just(body), st.builds(lambda: _PLAUSIBLE[key](body)))


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_matches_its_openapi_document(case: Any, live_api: dict[str, Any]) -> None:
    case.call_and_validate(
        base_url=live_api["base_url"] + "/api/v1",
        headers={"Authorization": f"Bearer {live_api['secret']}"},
        checks=CHECKS,
        timeout=30,
    )
