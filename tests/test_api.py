"""JSON API v1: every status code of the contract."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from registration.extensions import db
from registration.models import EventFormat, EventStatus, OutboxMessage, Registration
from registration.timeutil import utcnow

from .conftest import make_event
from .openapi_check import watch_responses

URL = "/api/v1/events/{slug}/registrations"


@pytest.fixture(autouse=True)
def _responses_match_the_openapi_document(app):
    """Every API response of these tests is checked against the OpenAPI document."""
    yield from watch_responses(app)


def body(n: int = 1, **overrides: object) -> dict:
    values: dict[str, object] = {
        "email": f"teilnehmer{n}@example.org",
        "first_name": "Jürgen",
        "last_name": "Weiß",
        "organisation": "Landkreis Elbe-Elster",
        "privacy_consent": True,
    }
    values.update(overrides)
    return values


def sign_up(client, slug="werkstatt", **overrides):
    return client.post(URL.format(slug=slug), json=body(**overrides))


def rows() -> int:
    return db.session.scalar(select(func.count()).select_from(Registration))


def test_list_shows_published_upcoming_events_soonest_first(client, app):
    now = utcnow()
    make_event(slug="later", starts_at=now + timedelta(days=30))
    make_event(slug="sooner", starts_at=now + timedelta(days=3))
    make_event(slug="draft", status=EventStatus.DRAFT)
    make_event(slug="past", starts_at=now - timedelta(days=3))
    response = client.get("/api/v1/events")
    assert response.status_code == 200
    assert [e["slug"] for e in response.json["events"]] == ["sooner", "later"]


def test_event_detail_shape_and_no_dial_in(client, app):
    make_event(
        slug="fachtagung",
        format=EventFormat.HYBRID,
        capacity_on_site=2,
        capacity_online=None,
        venue_name="Volkshaus Jena",
        venue_address="Carl-Zeiß-Platz 15, 07743 Jena",
        dial_in_url="https://meet.example.org/secret-room",
        dial_in_passcode="geheim123",
        dial_in_meeting_id="999 888",
    )
    sign_up(client, "fachtagung", attendance="on_site")
    sign_up(client, "fachtagung", n=2, attendance="on_site")
    sign_up(client, "fachtagung", n=3, attendance="on_site")
    sign_up(client, "fachtagung", n=4, attendance="online")

    response = client.get("/api/v1/events/fachtagung")
    assert response.status_code == 200
    event = response.json
    assert event["slug"] == "fachtagung"
    assert event["format"] == "hybrid"
    assert event["timezone"] == "Europe/Berlin"
    assert event["starts_at"].endswith(("+01:00", "+02:00"))
    assert event["venue"] == {"name": "Volkshaus Jena", "address": "Carl-Zeiß-Platz 15, 07743 Jena"}
    assert event["registration_open"] is True
    assert event["seats"] == {
        "on_site": {"capacity": 2, "confirmed": 2, "available": 0, "waitlisted": 1},
        "online": {"capacity": None, "confirmed": 1, "available": None, "waitlisted": 0},
    }
    text = response.get_data(as_text=True)
    for secret in ("secret-room", "geheim123", "999 888"):
        assert secret not in text


def test_single_mode_event_lists_only_its_mode_and_null_venue(client, app):
    make_event(slug="online", format=EventFormat.ONLINE, capacity_online=100, venue_name="")
    event = client.get("/api/v1/events/online").json
    assert list(event["seats"]) == ["online"]
    assert event["venue"] is None


@pytest.mark.parametrize("status", [EventStatus.DRAFT, None])
def test_unknown_or_unpublished_event_is_404(client, app, status):
    if status is not None:
        make_event(slug="hidden", status=status)
    assert client.get("/api/v1/events/hidden").status_code == 404
    response = sign_up(client, "hidden")
    assert response.status_code == 404
    assert response.json == {"error": "not_found"}


def test_sign_up_confirmed_then_waitlisted(client, app):
    make_event(capacity_on_site=1)
    first = sign_up(client, n=1)
    assert first.status_code == 201
    assert first.json["status"] == "confirmed"
    assert first.json["attendance"] == "on_site"
    assert first.json["waitlist_position"] is None
    assert first.json["manage_url"].startswith("http://localhost/manage/")
    second = sign_up(client, n=2)
    assert second.status_code == 201
    assert (second.json["status"], second.json["waitlist_position"]) == ("waitlisted", 1)


def test_manage_url_token_reads_and_cancels_the_registration(client, app):
    make_event(capacity_on_site=1)
    mine = sign_up(client, n=1).json
    waiting = sign_up(client, n=2).json
    token = mine["manage_url"].rsplit("/", 1)[1]
    waiting_token = waiting["manage_url"].rsplit("/", 1)[1]

    own = client.get(f"/api/v1/registrations/{token}")
    assert own.status_code == 200
    assert own.json == {
        "id": mine["id"], "event": "werkstatt", "status": "confirmed",
        "attendance": "on_site", "waitlist_position": None,
    }  # fmt: skip
    assert client.get(f"/api/v1/registrations/{waiting_token}").json["waitlist_position"] == 1

    cancelled = client.post(f"/api/v1/registrations/{token}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json == {"status": "cancelled"}
    assert client.get(f"/api/v1/registrations/{token}").json["status"] == "cancelled"
    promoted = client.get(f"/api/v1/registrations/{waiting_token}").json
    assert (promoted["status"], promoted["waitlist_position"]) == ("confirmed", None)
    # Cancelling again is harmless.
    assert client.post(f"/api/v1/registrations/{token}/cancel").status_code == 200


def test_manage_page_link_works(client, app):
    make_event()
    manage_url = sign_up(client).json["manage_url"]
    page = client.get(manage_url.removeprefix("http://localhost"))
    assert page.status_code == 200
    assert "Jürgen Weiß" in page.get_data(as_text=True)


@pytest.mark.parametrize("token", ["nope", "A" * 43, "x" * 500, "%00", "..%2F..%2Fetc"])
def test_unknown_token_is_404(client, app, token):
    assert client.get(f"/api/v1/registrations/{token}").status_code == 404
    assert client.post(f"/api/v1/registrations/{token}/cancel").status_code == 404


def test_duplicate_is_409(client, app):
    make_event()
    sign_up(client, email="Anna@Example.org")
    response = sign_up(client, email="anna@example.ORG")
    assert response.status_code == 409
    assert response.json["error"] == "duplicate"
    assert rows() == 1


def test_full_without_waiting_list_is_409(client, app):
    make_event(capacity_on_site=1, waitlist_enabled=False)
    sign_up(client, n=1)
    response = sign_up(client, n=2)
    assert response.status_code == 409
    assert response.json["error"] == "full"
    assert rows() == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"status": EventStatus.CANCELLED},
        {"registration_closes_at": "past"},
        {"registration_opens_at": "future"},
    ],
)
def test_closed_registration_is_409(client, app, changes):
    now = utcnow()
    resolved = {
        key: (now - timedelta(hours=1) if value == "past" else now + timedelta(days=1))
        if value in ("past", "future")
        else value
        for key, value in changes.items()
    }
    make_event(**resolved)
    response = sign_up(client)
    assert response.status_code == 409
    assert response.json["error"] == "registration_closed"
    assert rows() == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"email": ""}, "email"),
        ({"email": "not-an-address"}, "email"),
        ({"email": "a@b"}, "email"),
        ({"email": None}, "email"),
        ({"email": 42}, "email"),
        ({"email": ["a@example.org"]}, "email"),
        ({"first_name": ""}, "first_name"),
        ({"first_name": "   "}, "first_name"),
        ({"first_name": "x" * 101}, "first_name"),
        ({"last_name": {"a": 1}}, "last_name"),
        ({"last_name": "Null\x00Byte"}, "last_name"),
        ({"organisation": "o" * 201}, "organisation"),
        ({"organisation": 3.5}, "organisation"),
        ({"privacy_consent": False}, "privacy_consent"),
        ({"privacy_consent": "true"}, "privacy_consent"),
        ({"privacy_consent": None}, "privacy_consent"),
        ({"attendance": "online"}, "attendance"),
        ({"attendance": "somewhere"}, "attendance"),
        ({"attendance": 1}, "attendance"),
        ({"language": "fr"}, "language"),
    ],
)
def test_invalid_input_is_422_naming_the_field(client, app, overrides, field):
    make_event()
    response = sign_up(client, **overrides)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"]
    assert all(isinstance(m, str) and m for m in response.json["errors"][field])
    assert rows() == 0
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_missing_consent_key_is_422(client, app):
    make_event()
    payload = body()
    del payload["privacy_consent"]
    response = client.post(URL.format(slug="werkstatt"), json=payload)
    assert response.status_code == 422
    assert "privacy_consent" in response.json["errors"]


def test_hybrid_event_requires_attendance(client, app):
    make_event(format=EventFormat.HYBRID, capacity_online=10)
    response = sign_up(client)
    assert response.status_code == 422
    assert "attendance" in response.json["errors"]
    assert sign_up(client, attendance="online").json["attendance"] == "online"


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"{", b"", b"\xff\xfe", b"null"],
    ids=["text", "broken", "empty", "bytes", "null"],
)
def test_body_that_is_not_json_is_400(client, app, raw):
    make_event()
    response = client.post(URL.format(slug="werkstatt"), data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_json"


@pytest.mark.parametrize("raw", [[1, 2], "text", 12, True])
def test_json_that_is_not_an_object_is_422(client, app, raw):
    make_event()
    response = client.post(URL.format(slug="werkstatt"), json=raw)
    assert response.status_code == 422
    assert "body" in response.json["errors"]


def test_validation_messages_follow_the_language(client, app):
    make_event()
    german = client.post(
        URL.format(slug="werkstatt"), json=body(first_name=""), headers={"Accept-Language": "de"}
    )
    english = client.post(
        URL.format(slug="werkstatt"), json=body(first_name=""), headers={"Accept-Language": "en"}
    )
    assert german.json["errors"]["first_name"] == ["Bitte geben Sie Ihren Vornamen ein."]
    assert english.json["errors"]["first_name"] == ["Please enter your first name."]


def test_language_is_stored(client, app):
    make_event()
    sign_up(client, language="en")
    assert db.session.scalars(select(Registration.language)).one() == "en"


def test_api_needs_no_csrf_token_even_with_csrf_on(client, app):
    app.config["WTF_CSRF_ENABLED"] = True  # CSRFProtect reads this on every request
    make_event()
    assert sign_up(client).status_code == 201


def test_unknown_api_route_and_method_answer_json(client, app):
    assert client.get("/api/v1/nothing").json == {"error": "not_found"}
    response = client.delete("/api/v1/events")
    assert response.status_code == 405
    assert response.json == {"error": "method_not_allowed"}
