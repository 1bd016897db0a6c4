"""API tokens: the service rules, the organiser API they open, the back-office page and the CLI."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from registration.extensions import db
from registration.models import (
    ApiToken,
    AuditEntry,
    Event,
    EventFormat,
    EventStatus,
    OutboxMessage,
    Question,
    QuestionKind,
    RegistrationStatus,
)
from registration.services import api_tokens, signup
from registration.services.errors import InvalidInput

from .conftest import make_event
from .openapi_check import watch_responses
from .test_admin import login, make_organiser


@pytest.fixture(autouse=True)
def _responses_match_the_openapi_document(app):
    """Every API response of these tests is checked against the OpenAPI document."""
    yield from watch_responses(app)


def register(event: Event, n: int, **overrides: object):
    values: dict[str, object] = {
        "email": f"p{n}@example.org", "first_name": f"Vor{n}", "last_name": f"Nach{n}",
        "privacy_consent": True,
    }  # fmt: skip
    values.update(overrides)
    result = signup.register(event, signup.SignupData(**values))
    db.session.commit()
    return result.registration


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def actions() -> list[str]:
    return list(db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


@pytest.fixture
def world(app):
    """Me with my event (a question, two sign-ups, one waiting), another organiser with theirs,
    an admin; a token for each."""
    me = make_organiser("ich@example.org")
    other = make_organiser("andere@example.org")
    admin = make_organiser("admin@example.org", admin=True)
    mine = make_event(slug="meine", capacity_on_site=1)
    theirs = make_event(slug="fremde")
    draft = make_event(slug="entwurf", status=EventStatus.DRAFT)
    mine.organisers.append(me)
    draft.organisers.append(me)
    theirs.organisers.append(other)
    mine.questions.append(
        Question(key="lunch", label="Mittagessen?", kind=QuestionKind.YES_NO, position=0)
    )
    db.session.commit()
    register(mine, 1, answers={"lunch": True})
    register(mine, 2)
    register(theirs, 3, first_name="Geheim")
    secrets = {}
    for who, organiser in (("me", me), ("other", other), ("admin", admin)):
        _token, secrets[who] = api_tokens.create(organiser, f"Skript {who}")
    db.session.commit()
    return {"me": me, "mine": mine, "theirs": theirs, "draft": draft, "secrets": secrets}


# --- the service ---------------------------------------------------------------------------------


def test_a_token_is_shown_once_and_only_its_hash_is_stored(app):
    me = make_organiser("ich@example.org")
    token, secret = api_tokens.create(me, "  Website-Import  ", expires_days=30)
    db.session.commit()
    assert re.fullmatch(r"wsr_[A-Za-z0-9_-]{43}", secret)
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert token.prefix == secret[:12]
    assert token.name == "Website-Import"
    assert token.expires_at - token.created_at == timedelta(days=30)
    stored = db.session.execute(select(ApiToken.__table__)).one()
    assert secret not in [str(value) for value in stored]
    entry = db.session.scalars(select(AuditEntry)).one()
    assert (entry.action, entry.actor_id, entry.subject) == (
        "api_token.create", me.id, f"api_token:{token.id}"
    )  # fmt: skip
    assert secret not in str(entry.details)
    assert api_tokens.authenticate(secret) == token


@pytest.mark.parametrize(
    ("name", "expires_days", "field"),
    [("", None, "name"), ("   ", None, "name"), ("x" * 101, None, "name"),
     ("Web\r\nsite", None, "name"), ("ok", 0, "expires_days"), ("ok", 3651, "expires_days")],
)  # fmt: skip
def test_creating_a_token_checks_name_and_lifetime(app, name, expires_days, field):
    me = make_organiser("ich@example.org")
    with pytest.raises(InvalidInput) as caught:
        api_tokens.create(me, name, expires_days=expires_days)
    assert field in caught.value.errors
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 0


def test_revoked_expired_and_deactivated_tokens_are_refused(app, clock):
    me = make_organiser("ich@example.org")
    revoked, revoked_secret = api_tokens.create(me, "revoked")
    _expiring, expiring_secret = api_tokens.create(me, "expiring", expires_days=1)
    _good, good_secret = api_tokens.create(me, "good")
    db.session.commit()
    assert api_tokens.revoke(revoked, actor=me) is True
    assert api_tokens.revoke(revoked, actor=me) is False  # once is enough
    db.session.commit()
    assert api_tokens.authenticate(revoked_secret) is None
    assert api_tokens.authenticate(expiring_secret) is not None
    clock.advance(days=1)
    assert api_tokens.authenticate(expiring_secret) is None
    assert api_tokens.authenticate(good_secret) is not None
    me.active = False
    db.session.commit()
    assert api_tokens.authenticate(good_secret) is None
    for wrong in ("", "wsr_", good_secret[:-1], good_secret + "x", "Bearer " + good_secret):
        assert api_tokens.authenticate(wrong) is None
    assert actions().count("api_token.revoke") == 1


def test_last_use_is_written_at_most_once_a_minute(app, clock):
    me = make_organiser("ich@example.org")
    token, secret = api_tokens.create(me, "script")
    db.session.commit()
    assert token.last_used_at is None
    first = clock.now
    api_tokens.authenticate(secret)
    db.session.expire_all()
    assert db.session.get(ApiToken, token.id).last_used_at == first
    clock.advance(seconds=30)
    api_tokens.authenticate(secret)
    db.session.expire_all()
    assert db.session.get(ApiToken, token.id).last_used_at == first
    clock.advance(seconds=31)
    api_tokens.authenticate(secret)
    db.session.expire_all()
    assert db.session.get(ApiToken, token.id).last_used_at == clock.now


# --- the API: authentication and whose events ----------------------------------------------------


@pytest.mark.parametrize(
    ("header", "invalid_token"),
    [(None, False), ("Basic aWNoOmdlaGVpbQ==", False), ("Bearer", False), ("Bearer nope", True),
     ("Bearer wsr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", True)],
)  # fmt: skip
def test_missing_or_invalid_token_is_401_with_a_bearer_challenge(
    client, world, header, invalid_token
):
    headers = {"Authorization": header} if header else {}
    for method, url in (
        ("GET", "/api/v1/events/meine/registrations"),
        ("POST", "/api/v1/events"),
        ("PATCH", "/api/v1/events/meine"),
    ):
        response = client.open(url, method=method, json={}, headers=headers)
        assert response.status_code == 401, (method, url)
        assert response.json["error"] == "unauthorized"
        assert response.json["message"]
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer")
        assert ('error="invalid_token"' in challenge) is invalid_token


def test_revoked_token_stops_working_at_once(client, world):
    secret = world["secrets"]["me"]
    url = "/api/v1/events/meine/registrations"
    assert client.get(url, headers=bearer(secret)).status_code == 200
    token = api_tokens.authenticate(secret)
    api_tokens.revoke(token, actor=world["me"])
    db.session.commit()
    assert client.get(url, headers=bearer(secret)).status_code == 401


def test_another_organisers_event_is_404_and_admins_reach_every_event(client, world):
    mine = bearer(world["secrets"]["me"])
    for method, url in (
        ("GET", "/api/v1/events/fremde/registrations"),
        ("PATCH", "/api/v1/events/fremde"),
        ("GET", "/api/v1/events/gibt-es-nicht/registrations"),
    ):
        response = client.open(url, method=method, json={"title": "Übernommen"}, headers=mine)
        assert response.status_code == 404, (method, url)
        assert response.json == {"error": "not_found"}
        assert "Geheim" not in response.get_data(as_text=True)
    assert db.session.get(Event, world["theirs"].id).title == "Werkstatt"
    admin = bearer(world["secrets"]["admin"])
    listed = client.get("/api/v1/events/fremde/registrations", headers=admin)
    assert [r["first_name"] for r in listed.json["registrations"]] == ["Geheim"]


# --- reading registrations -----------------------------------------------------------------------


def test_registrations_with_answers_positions_and_filters(client, world):
    headers = bearer(world["secrets"]["me"])
    response = client.get("/api/v1/events/meine/registrations", headers=headers)
    assert response.status_code == 200
    page = response.json
    assert (page["event"], page["total"], page["page"], page["pages"]) == ("meine", 2, 1, 1)
    first, second = page["registrations"]
    assert first["email"] == "p1@example.org"
    assert (first["status"], first["waitlist_position"]) == ("confirmed", None)
    assert first["answers"] == {"lunch": True}
    assert first["created_at"].endswith(("+01:00", "+02:00"))  # the event's zone
    assert (second["status"], second["waitlist_position"]) == ("waitlisted", 1)
    assert second["answers"] == {}

    waiting = client.get(
        "/api/v1/events/meine/registrations?status=waitlisted&attendance=on_site", headers=headers
    ).json
    assert [r["email"] for r in waiting["registrations"]] == ["p2@example.org"]
    paged = client.get("/api/v1/events/meine/registrations?per_page=1&page=2", headers=headers)
    assert [r["email"] for r in paged.json["registrations"]] == ["p2@example.org"]
    assert (paged.json["pages"], paged.json["per_page"]) == (2, 1)
    beyond = client.get("/api/v1/events/meine/registrations?page=9", headers=headers).json
    assert beyond["registrations"] == [] and beyond["total"] == 2
    # Reading personal data is logged like an export, with the token it used.
    entry = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "export.api").order_by(AuditEntry.id)
    ).first()
    assert entry.actor_id == world["me"].id and entry.event_id == world["mine"].id
    assert entry.details["token"] == world["secrets"]["me"][:12]


def test_draft_events_registrations_are_readable_by_their_organisers(client, world):
    response = client.get(
        "/api/v1/events/entwurf/registrations", headers=bearer(world["secrets"]["me"])
    )
    assert response.status_code == 200
    assert response.json["registrations"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [("page=0", "page"), ("page=x", "page"), ("per_page=201", "per_page"),
     ("per_page=-1", "per_page"), ("page=%EF%BC%91", "page"), ("status=deleted", "status"),
     ("attendance=moon", "attendance"), ("page=99999999999999999999", "page")],
)  # fmt: skip
def test_bad_query_parameters_are_422_naming_the_parameter(client, world, query, field):
    response = client.get(
        f"/api/v1/events/meine/registrations?{query}", headers=bearer(world["secrets"]["me"])
    )
    assert response.status_code == 422
    assert list(response.json["errors"]) == [field]


# --- creating and changing events ----------------------------------------------------------------


def new_event(**overrides: object) -> dict:
    record: dict[str, object] = {
        "slug": "werkstatt-22",
        "title": "22. Werkstatt",
        "format": "hybrid",
        "starts_at": "2030-03-10T10:00:00+01:00",
        "ends_at": "2030-03-10T16:00:00+01:00",
        "capacity": {"on_site": 2, "online": None},
        "venue": {"name": "Rathaus", "address": "Markt 1, 04916 Herzberg"},
        "questions": [{"key": "lunch", "label": "Mittagessen?", "kind": "yes_no"}],
        "status": "published",
    }
    record.update(overrides)
    return record


def test_create_an_event_the_creator_organises(client, world):
    headers = bearer(world["secrets"]["me"])
    response = client.post("/api/v1/events", json=new_event(), headers=headers)
    assert response.status_code == 201, response.json
    assert response.headers["Location"].endswith("/api/v1/events/werkstatt-22")
    body = response.json
    assert (body["slug"], body["format"], body["timezone"]) == (
        "werkstatt-22",
        "hybrid",
        "Europe/Berlin",
    )
    assert body["starts_at"] == "2030-03-10T10:00:00+01:00"
    assert body["capacity"] == {"on_site": 2, "online": None}
    assert body["seats"]["on_site"]["available"] == 2
    assert [q["key"] for q in body["questions"]] == ["lunch"]
    event = db.session.scalars(select(Event).where(Event.slug == "werkstatt-22")).one()
    assert [o.email for o in event.organisers] == ["ich@example.org"]
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "event.create")).one()
    assert (entry.actor_id, entry.event_id, entry.details["via"]) == (
        world["me"].id, event.id, "api"
    )  # fmt: skip
    # The public API shows it, and its registrations are the creator's to read.
    assert client.get("/api/v1/events/werkstatt-22").status_code == 200
    assert (
        client.get("/api/v1/events/werkstatt-22/registrations", headers=headers).status_code == 200
    )
    others = bearer(world["secrets"]["other"])
    assert (
        client.get("/api/v1/events/werkstatt-22/registrations", headers=others).status_code == 404
    )


@pytest.mark.parametrize(
    ("record", "fields"),
    [
        (new_event(slug="Nicht Gut"), ["slug"]),
        (new_event(slug="meine"), ["slug"]),
        (new_event(title=""), ["title"]),
        (new_event(format="zoom"), ["format"]),
        (new_event(ends_at="2030-03-10T09:00:00+01:00"), ["ends_at"]),
        (new_event(starts_at="2030-03-10T10:00:00"), ["starts_at"]),
        (new_event(capacity={"on_site": -1, "online": "viele"}), ["capacity.on_site", "capacity.online"]),
        (new_event(capacity={"on_site": 10**20}), ["capacity.on_site"]),
        (new_event(reminder_days_before=10**9), ["reminder_days_before"]),
        (new_event(starts_at="9999-12-31T23:00:00-05:00"), ["starts_at"]),
        (new_event(timezone="Mars/Olympus"), ["timezone"]),
        (new_event(contact={"email": "nope"}), ["contact.email"]),
        (new_event(questions=[{"key": "a", "label": "A", "kind": "single_choice"}]), ["questions[0].options"]),
        (new_event(title_image={"file": "../../etc/passwd"}), ["title_image.file"]),
        (new_event(colour="blue"), ["colour"]),
        (new_event(title="Null\x00Byte"), ["title"]),
        (new_event(title="Halb\ud800"), ["title"]),
    ],
)  # fmt: skip
def test_invalid_event_is_422_naming_each_field_and_writes_nothing(client, world, record, fields):
    before = db.session.scalar(select(func.count()).select_from(Event))
    response = client.post("/api/v1/events", json=record, headers=bearer(world["secrets"]["me"]))
    assert response.status_code == 422, response.json
    assert sorted(response.json["errors"]) == sorted(fields)
    assert db.session.scalar(select(func.count()).select_from(Event)) == before


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_event_body_must_be_a_json_object(client, world, method):
    url = "/api/v1/events" if method == "POST" else "/api/v1/events/meine"
    headers = {**bearer(world["secrets"]["me"]), "Content-Type": "application/json"}
    assert client.open(url, method=method, data=b"{", headers=headers).status_code == 400
    response = client.open(url, method=method, json=[1], headers=headers)
    assert response.status_code == 422 and "body" in response.json["errors"]


def test_patch_changes_only_the_fields_given(client, world):
    event = world["mine"]
    event.title_image_alt = "Das Rathaus"
    event.venue_address = "Markt 1"
    event.retention_days = 30
    db.session.commit()
    headers = bearer(world["secrets"]["me"])
    response = client.patch(
        "/api/v1/events/meine",
        json={"title": "Neuer Titel", "venue": {"name": "Bürgerhaus"}},
        headers=headers,
    )
    assert response.status_code == 200, response.json
    assert response.json["title"] == "Neuer Titel"
    assert response.json["venue"] == {"name": "Bürgerhaus", "address": "Markt 1"}
    db.session.expire_all()
    event = db.session.get(Event, event.id)
    assert (event.title, event.venue_name, event.venue_address) == (
        "Neuer Titel",
        "Bürgerhaus",
        "Markt 1",
    )
    assert event.title_image_alt == "Das Rathaus" and event.retention_days == 30
    assert response.json["retention_days"] == 30
    assert [q.key for q in event.questions] == ["lunch"]  # not given: kept, answers too
    assert event.format == EventFormat.ON_SITE and event.status == EventStatus.PUBLISHED
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "event.update")).one()
    assert entry.details["fields"] == ["title", "venue_name"]  # what changed


def test_patch_raising_capacity_promotes_and_lowering_below_confirmed_is_409(client, world):
    headers = bearer(world["secrets"]["me"])
    raised = client.patch(
        "/api/v1/events/meine", json={"capacity": {"on_site": 2}}, headers=headers
    )
    assert raised.status_code == 200
    assert raised.json["seats"]["on_site"] == {
        "capacity": 2, "confirmed": 2, "available": 0, "waitlisted": 0
    }  # fmt: skip
    statuses = client.get("/api/v1/events/meine/registrations", headers=headers).json
    assert [r["status"] for r in statuses["registrations"]] == ["confirmed", "confirmed"]
    promoted = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "promoted")
    ).all()
    assert len(promoted) == 1

    lowered = client.patch(
        "/api/v1/events/meine", json={"capacity": {"on_site": 1}, "title": "X"}, headers=headers
    )
    assert lowered.status_code == 409
    assert lowered.json["error"] == "capacity_conflict"
    assert "capacity.on_site 1" in lowered.json["message"]
    db.session.expire_all()
    event = db.session.get(Event, world["mine"].id)
    assert (event.capacity_on_site, event.title) == (2, "Werkstatt")  # nothing half-written


@pytest.mark.parametrize(
    ("patch", "field"),
    [({"slug": "anders"}, "slug"), ({"capacity": {"on_site": "zwei"}}, "capacity.on_site"),
     ({"venue": {"floor": 2}}, "venue.floor"), ({"venue": "Rathaus"}, "venue"),
     ({"starts_at": "2040-01-01T10:00:00+01:00"}, "ends_at"), ({"status": "gone"}, "status")],
)  # fmt: skip
def test_patch_checks_the_merged_event_like_the_import(client, world, patch, field):
    response = client.patch(
        "/api/v1/events/meine", json=patch, headers=bearer(world["secrets"]["me"])
    )
    assert response.status_code == 422
    assert field in response.json["errors"]
    db.session.expire_all()
    assert db.session.get(Event, world["mine"].id).slug == "meine"


def test_patch_questions_replace_the_list(client, world):
    headers = bearer(world["secrets"]["me"])
    questions = [{"key": "diet", "label": "Ernährung", "kind": "single_choice",
                  "options": ["vegetarisch", "vegan"]}]  # fmt: skip
    response = client.patch("/api/v1/events/meine", json={"questions": questions}, headers=headers)
    assert response.status_code == 200
    assert [q["key"] for q in response.json["questions"]] == ["diet"]


# --- the back office -----------------------------------------------------------------------------


def test_back_office_create_list_and_revoke_a_token(app, client, world):
    app.config["WTF_CSRF_ENABLED"] = True
    login_page = client.get("/admin/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login_page).group(1)
    client.post("/admin/login", data={"email": "ich@example.org", "password": "richtig-geheim-1",
                                      "csrf_token": csrf})  # fmt: skip
    page = client.get("/admin/tokens", headers={"Accept-Language": "de"})
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "API-Tokens" in text and "Skript me" in text and "Skript other" not in text

    empty = client.post("/admin/tokens", data={"name": "", "csrf_token": csrf})
    assert empty.status_code == 422
    assert "Bitte geben Sie dem Token einen Namen" in empty.get_data(as_text=True)

    created = client.post(
        "/admin/tokens", data={"name": "Website", "expires_days": "90", "csrf_token": csrf}
    )
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="new-token" value="(wsr_[^"]+)"', created.get_data(as_text=True)).group(
        1
    )
    assert (
        client.get("/api/v1/events/meine/registrations", headers=bearer(secret)).status_code == 200
    )
    # Shown once: the list afterwards has its prefix only.
    assert secret not in client.get("/admin/tokens").get_data(as_text=True)

    token = db.session.scalars(select(ApiToken).where(ApiToken.name == "Website")).one()
    url = f"/admin/tokens/{token.id}/revoke"
    assert client.post(url).status_code == 400  # no CSRF token
    response = client.post(url, data={"csrf_token": csrf})
    assert response.status_code == 302
    assert (
        client.get("/api/v1/events/meine/registrations", headers=bearer(secret)).status_code == 401
    )
    others = db.session.scalars(select(ApiToken).where(ApiToken.name == "Skript other")).one()
    assert (
        client.post(f"/admin/tokens/{others.id}/revoke", data={"csrf_token": csrf}).status_code
        == 404
    )
    assert db.session.get(ApiToken, others.id).revoked_at is None
    assert actions().count("api_token.revoke") == 1


def test_back_office_token_page_needs_a_login(client, world):
    response = client.get("/admin/tokens")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


def test_back_office_token_page_in_english(client, world):
    login(client, "ich@example.org")
    text = client.get("/admin/tokens", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "API tokens" in text and "Create token" in text


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_create_list_and_revoke(runner, app):
    make_organiser("ich@example.org")
    created = runner.invoke(
        args=[
            "tokens",
            "create",
            "--email",
            "Ich@Example.org",
            "--name",
            "Import",
            "--expires-days",
            "7",
        ]
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("wsr_")
    token = api_tokens.authenticate(secret)
    assert token is not None and token.name == "Import"

    listed = runner.invoke(args=["tokens", "list", "--email", "ich@example.org"])
    assert listed.exit_code == 0
    assert f"{token.id}\t{secret[:12]}...\tactive\tich@example.org\tImport" in listed.output
    assert secret not in listed.output

    revoked = runner.invoke(args=["tokens", "revoke", secret[:8]])
    assert revoked.exit_code == 0, revoked.output
    assert api_tokens.authenticate(secret) is None
    again = runner.invoke(args=["tokens", "revoke", str(token.id)])
    assert "revoked already" in again.output
    assert "revoked" in runner.invoke(args=["tokens", "list"]).output


@pytest.mark.parametrize(
    ("args", "message"),
    [(["create", "--email", "niemand@example.org", "--name", "x"], "no account"),
     (["create", "--email", "ich@example.org", "--name", " "], "name"),
     (["create", "--email", "ich@example.org", "--name", "x", "--expires-days", "0"], "--expires-days"),
     (["revoke", "wsr_nothing"], "no token"),
     (["list", "--email", "niemand@example.org"], "no account")],
)  # fmt: skip
def test_cli_errors_are_clear(runner, app, args, message):
    make_organiser("ich@example.org")
    result = runner.invoke(args=["tokens", *args])
    assert result.exit_code != 0
    assert message in result.output


def test_waitlist_position_counts_per_mode(client, app):
    me = make_organiser("ich@example.org")
    event = make_event(format=EventFormat.HYBRID, capacity_on_site=0, capacity_online=0)
    event.organisers.append(me)
    db.session.commit()
    register(event, 1, attendance="online")
    register(event, 2, attendance="on_site")
    register(event, 3, attendance="online")
    _token, secret = api_tokens.create(me, "x")
    db.session.commit()
    rows = client.get("/api/v1/events/werkstatt/registrations", headers=bearer(secret)).json
    positions = [(r["attendance"], r["waitlist_position"]) for r in rows["registrations"]]
    assert positions == [("online", 1), ("on_site", 1), ("online", 2)]
    assert all(r["status"] == RegistrationStatus.WAITLISTED for r in rows["registrations"])
