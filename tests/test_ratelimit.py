"""Rate limits: sign-ups per address and per event, logins, the API; the 429 page and JSON;
counts shared between app hosts through Redis.

The testing config turns rate limits off (other tests sign up hundreds of times from one
address). Here a second app with limits on runs against the ``app`` fixture's database, so the
database set-up and clean-up stay the fixture's. Limits are per hour or per day: a per-minute
window could roll over in the middle of a test on a busy machine.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from sqlalchemy import func, select

from config import ProductionConfig
from registration.extensions import db
from registration.models import Answer, OutboxMessage, Registration

from .conftest import make_event, make_test_app
from .test_admin import PASSWORD, make_organiser

DE = {"Accept-Language": "de-DE,de;q=0.9"}
EN = {"Accept-Language": "en-GB,en;q=0.9"}
API_SIGNUP = "/api/v1/events/{slug}/registrations"

#: Generous limits, so that each test only meets the one it lowers.
ROOMY = {
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_SIGNUP_PER_IP": "1000/hour",
    "RATELIMIT_SIGNUP_PER_TRUSTED_IP": "1000/hour",
    "RATELIMIT_SIGNUP_PER_EMAIL": "1000/hour",
    "RATELIMIT_SIGNUP_PER_EVENT": "1000/hour",
    "RATELIMIT_LOGIN": "1000/hour",
    "RATELIMIT_API": "1000/hour",
}


@pytest.fixture
def limited(app: Flask) -> Iterator[Callable[..., Flask]]:
    """``limited(RATELIMIT_X=...)``: an app with rate limits on, sharing ``app``'s database."""
    made: list[Flask] = []

    def make(**settings: Any) -> Flask:
        limited_app = make_test_app(app.config["SQLALCHEMY_DATABASE_URI"], **{**ROOMY, **settings})
        made.append(limited_app)
        return limited_app

    yield make
    for limited_app in made:
        with limited_app.app_context():
            db.engine.dispose()


def client_from(flask_app: Flask, address: str) -> Any:
    """A test client whose requests come from ``address``."""
    client = flask_app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def form(n: int) -> dict[str, str]:
    return {
        "first_name": "Jürgen",
        "last_name": f"Weiß{n}",
        "email": f"juergen{n}@example.org",
        "privacy_consent": "y",
    }


def api_body(n: int) -> dict[str, Any]:
    return {
        "email": f"api{n}@example.org",
        "first_name": "Anna",
        "last_name": f"Schmidt{n}",
        "privacy_consent": True,
    }


def counts() -> tuple[int, ...]:
    """Registrations, answers and outbox rows in the database."""
    result = tuple(
        db.session.scalar(select(func.count()).select_from(model))
        for model in (Registration, Answer, OutboxMessage)
    )
    db.session.rollback()  # end the read: on SQLite it would block the other app's writes
    return result


def status_of_get(client: Any, url: str) -> int:
    with client.get(url) as response:  # closes a streamed file
        return response.status_code


def retry_after_of(response: Any) -> int:
    value = int(response.headers["Retry-After"])
    assert 0 < value <= 3600
    return value


# --- Sign-ups ------------------------------------------------------------------------------------


def test_sign_ups_per_address_are_limited_and_the_throttled_one_writes_nothing(app, limited):
    make_event(capacity_on_site=100)
    client = client_from(limited(RATELIMIT_SIGNUP_PER_IP="3/hour"), "203.0.113.7")
    for n in range(3):
        assert client.post("/events/werkstatt", data=form(n)).status_code == 302
    before = counts()
    assert before == (3, 0, 3)

    throttled = client.post("/events/werkstatt", data=form(99), headers=DE)
    assert throttled.status_code == 429
    assert throttled.mimetype == "text/html"
    page = throttled.get_data(as_text=True)
    assert "<h1>Zu viele Anfragen</h1>" in page
    assert "Bitte versuchen Sie es in" in page
    retry_after_of(throttled)
    assert counts() == before  # no registration, no outbox row

    # another address is not affected, and looking at the page is never limited
    other = client_from(client.application, "203.0.113.8")
    assert other.post("/events/werkstatt", data=form(4)).status_code == 302
    assert client.get("/events/werkstatt").status_code == 200
    assert status_of_get(client, "/static/css/site.css") == 200


def test_a_throttled_form_says_when_to_try_again_in_english(app, limited):
    make_event()
    client = client_from(limited(RATELIMIT_SIGNUP_PER_IP="1/hour"), "203.0.113.7")
    client.post("/events/werkstatt", data=form(1))
    throttled = client.post("/events/werkstatt", data=form(2), headers=EN)
    assert throttled.status_code == 429
    page = throttled.get_data(as_text=True)
    assert "<h1>Too many requests</h1>" in page
    minutes = -(-retry_after_of(throttled) // 60)
    assert re.search(rf"Please try again in {minutes} minutes?\.", page)
    assert 'class="site-header"' in page


def test_the_embedded_form_is_limited_and_its_429_page_stays_bare(app, limited):
    make_event()
    client = client_from(limited(RATELIMIT_SIGNUP_PER_IP="1/hour"), "203.0.113.7")
    token_of = re.compile(r'name="form_token" value="([^"]+)"')
    token = token_of.search(client.get("/events/werkstatt/embed").get_data(as_text=True))[1]
    ok = client.post("/events/werkstatt/embed", data={**form(1), "form_token": token})
    assert ok.status_code == 302
    throttled = client.post(
        "/events/werkstatt/embed", data={**form(2), "form_token": token}, headers=DE
    )
    assert throttled.status_code == 429
    page = throttled.get_data(as_text=True)
    assert "Zu viele Anfragen" in page
    assert 'class="site-header"' not in page
    retry_after_of(throttled)


def test_form_and_api_share_the_sign_up_count_of_an_address(app, limited):
    make_event(capacity_on_site=100)
    client = client_from(limited(RATELIMIT_SIGNUP_PER_IP="2/hour"), "198.51.100.20")
    assert client.post("/events/werkstatt", data=form(1)).status_code == 302
    assert client.post(API_SIGNUP.format(slug="werkstatt"), json=api_body(2)).status_code == 201
    throttled = client.post(API_SIGNUP.format(slug="werkstatt"), json=api_body(3))
    assert throttled.status_code == 429
    assert client.post("/events/werkstatt", data=form(4)).status_code == 429
    assert counts()[0] == 2


def test_sign_ups_per_event_are_limited_across_addresses(app, limited):
    make_event(capacity_on_site=100)
    make_event(slug="andere", title="Andere Werkstatt", capacity_on_site=100)
    flask_app = limited(RATELIMIT_SIGNUP_PER_EVENT="4/hour")
    for n in range(4):
        response = client_from(flask_app, f"192.0.2.{n + 1}").post(
            "/events/werkstatt", data=form(n)
        )
        assert response.status_code == 302
    newcomer = client_from(flask_app, "192.0.2.200")
    throttled = newcomer.post(API_SIGNUP.format(slug="werkstatt"), json=api_body(9))
    assert throttled.status_code == 429
    assert throttled.json["error"] == "rate_limited"
    assert newcomer.post("/events/werkstatt", data=form(9)).status_code == 429
    # the same newcomer can still sign up for another event
    assert newcomer.post("/events/andere", data=form(9)).status_code == 302
    assert counts()[0] == 5


def test_only_sending_the_form_counts_not_reading_it(app, limited):
    make_event()
    client = client_from(limited(RATELIMIT_SIGNUP_PER_IP="1/hour"), "203.0.113.7")
    for _ in range(5):
        assert client.get("/events/werkstatt").status_code == 200
    assert client.post("/events/werkstatt", data=form(1)).status_code == 302


def test_an_ipv6_client_counts_per_64_network(app, limited):
    make_event(capacity_on_site=100)
    flask_app = limited(RATELIMIT_SIGNUP_PER_IP="1/hour")
    assert (
        client_from(flask_app, "2001:db8:1:2::10")
        .post("/events/werkstatt", data=form(1))
        .status_code
        == 302
    )
    # same /64, another interface identifier: the same client
    assert (
        client_from(flask_app, "2001:db8:1:2:aaaa::1")
        .post("/events/werkstatt", data=form(2))
        .status_code
        == 429
    )
    # the neighbouring /64 is someone else
    assert (
        client_from(flask_app, "2001:db8:1:3::10")
        .post("/events/werkstatt", data=form(3))
        .status_code
        == 302
    )


# --- Logins --------------------------------------------------------------------------------------


def test_login_attempts_per_address_are_limited(app, limited):
    make_organiser("ich@example.org")
    flask_app = limited(RATELIMIT_LOGIN="3/hour")
    client = client_from(flask_app, "203.0.113.50")
    for _ in range(3):
        wrong = client.post(
            "/admin/login", data={"email": "niemand@example.org", "password": "falsch"}
        )
        assert wrong.status_code == 422
    # even the right password waits: the limit is on attempts from the address
    throttled = client.post(
        "/admin/login", data={"email": "ich@example.org", "password": PASSWORD}, headers=DE
    )
    assert throttled.status_code == 429
    assert "Zu viele Anfragen" in throttled.get_data(as_text=True)
    retry_after_of(throttled)
    assert client.get("/admin/login").status_code == 200  # the form itself stays reachable
    elsewhere = client_from(flask_app, "203.0.113.51").post(
        "/admin/login", data={"email": "ich@example.org", "password": PASSWORD}
    )
    assert elsewhere.status_code == 302


def test_password_forgot_requests_are_limited(app, limited):
    client = client_from(limited(RATELIMIT_LOGIN="2/hour"), "203.0.113.50")
    for _ in range(2):
        response = client.post("/admin/password/forgot", data={"email": "wer@example.org"})
        assert response.status_code == 302
    throttled = client.post("/admin/password/forgot", data={"email": "wer@example.org"})
    assert throttled.status_code == 429
    assert counts()[2] == 0  # no reset mail for an unknown address, and none for the 429


# --- The API -------------------------------------------------------------------------------------


def test_the_api_is_limited_per_client_with_a_json_answer(app, limited):
    make_event()
    flask_app = limited(RATELIMIT_API="3/hour")
    client = client_from(flask_app, "198.51.100.9")
    assert client.get("/api/v1/events").status_code == 200
    assert client.get("/api/v1/events/werkstatt").status_code == 200
    assert client.get("/api/v1/events/unbekannt").status_code == 404  # counts as well
    throttled = client.get("/api/v1/events", headers=EN)
    assert throttled.status_code == 429
    assert throttled.mimetype == "application/json"
    body = throttled.json
    assert set(body) == {"error", "message", "retry_after"}
    assert body["error"] == "rate_limited"
    assert body["message"] == "Too many requests. Please try again later."
    assert body["retry_after"] == retry_after_of(throttled)
    german = client.post(API_SIGNUP.format(slug="werkstatt"), json=api_body(1), headers=DE)
    assert german.status_code == 429
    assert german.json["message"] == "Zu viele Anfragen. Bitte versuchen Sie es später erneut."
    assert counts()[0] == 0
    # pages are not part of the API budget
    assert client.get("/events/werkstatt").status_code == 200
    assert client_from(flask_app, "198.51.100.10").get("/api/v1/events").status_code == 200


def test_nothing_else_is_limited(app, limited):
    """No default limit: pages, files and calendar feeds never answer 429."""
    make_event()
    client = client_from(
        limited(
            RATELIMIT_SIGNUP_PER_IP="1/hour",
            RATELIMIT_SIGNUP_PER_EVENT="1/hour",
            RATELIMIT_LOGIN="1/hour",
            RATELIMIT_API="1/hour",
        ),
        "203.0.113.7",
    )
    for _ in range(3):
        for url in ("/", "/archive", "/events/werkstatt", "/events.ics", "/datenschutz", "/healthz",
                    "/static/css/site.css", "/admin/login"):  # fmt: skip
            assert status_of_get(client, url) == 200, url


def test_disabled_rate_limits_throttle_nothing(app, limited):
    make_event(capacity_on_site=100)
    client = client_from(
        limited(RATELIMIT_ENABLED=False, RATELIMIT_SIGNUP_PER_IP="1/hour"), "203.0.113.7"
    )
    for n in range(3):
        assert client.post("/events/werkstatt", data=form(n)).status_code == 302


# --- Settings ------------------------------------------------------------------------------------


def test_limits_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("RATELIMIT_SIGNUP_PER_IP", "5/minute;20/hour")
    monkeypatch.setenv("RATELIMIT_STORAGE_URI", "redis://cache.internal:6379/2")
    monkeypatch.setenv("RATELIMIT_ENABLED", "false")
    app = make_test_app(f"sqlite:///{tmp_path / 'x.sqlite'}")
    assert app.config["RATELIMIT_SIGNUP_PER_IP"] == "5/minute;20/hour"
    assert app.config["RATELIMIT_STORAGE_URI"] == "redis://cache.internal:6379/2"
    assert app.config["RATELIMIT_ENABLED"] is False
    assert "registration.limiter" not in app.extensions


def test_production_defaults_are_on_and_in_memory():
    settings = ProductionConfig.from_env({"SECRET_KEY": "x" * 32})
    assert settings["RATELIMIT_ENABLED"] is True
    assert settings["RATELIMIT_STORAGE_URI"] == "memory://"
    assert settings["RATELIMIT_SIGNUP_PER_IP"] == "120/minute;600/hour"
    assert settings["RATELIMIT_SIGNUP_PER_EMAIL"] == "5/minute;20/hour"
    assert settings["RATELIMIT_TRUSTED_NETWORKS"] == ""
    assert settings["RATELIMIT_SIGNUP_PER_EVENT"] == "600/minute"
    assert settings["RATELIMIT_LOGIN"] == "10/minute"
    assert settings["RATELIMIT_API"] == "120/minute"


def test_a_malformed_limit_refuses_to_start(monkeypatch, tmp_path):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="RATELIMIT_LOGIN='often' is not a rate limit"):
        make_test_app(
            f"sqlite:///{tmp_path / 'x.sqlite'}", RATELIMIT_ENABLED=True, RATELIMIT_LOGIN="often"
        )


# --- Shared storage ------------------------------------------------------------------------------

REDIS_URL = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"


def prefixed_keys(client: redis.Redis, prefix: str) -> list[bytes]:
    return list(client.scan_iter(match=f"*{prefix}*", count=1000))


@pytest.fixture
def redis_prefix() -> Iterator[tuple[redis.Redis, str]]:
    """A Redis client and a key prefix of this test's own; its keys are deleted afterwards.

    Skipped with the reason when Redis does not answer, unless REQUIRE_REDIS=1 (CI)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        reason = f"Redis not reachable at {REDIS_URL}: {exc}"
        if os.environ.get("REQUIRE_REDIS", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"REQUIRE_REDIS is set but {reason}", pytrace=False)
        pytest.skip(f"{reason} (set TEST_REDIS_URL; REQUIRE_REDIS=1 makes this an error)")
    prefix = f"registration-test-{uuid.uuid4().hex[:12]}"
    try:
        yield client, prefix
    finally:
        keys = prefixed_keys(client, prefix)
        if keys:
            client.delete(*keys)
        client.close()


def test_two_app_hosts_share_the_count_through_redis(app, limited, redis_prefix):
    redis_client, prefix = redis_prefix
    make_event(capacity_on_site=100)
    settings = {
        "RATELIMIT_STORAGE_URI": REDIS_URL,
        "RATELIMIT_KEY_PREFIX": prefix,
        "RATELIMIT_SIGNUP_PER_IP": "3/hour",
    }
    host_a, host_b = limited(**settings), limited(**settings)
    assert (
        host_a.extensions["registration.limiter"] is not host_b.extensions["registration.limiter"]
    )
    a = client_from(host_a, "203.0.113.7")
    b = client_from(host_b, "203.0.113.7")
    assert a.post("/events/werkstatt", data=form(1)).status_code == 302
    assert b.post("/events/werkstatt", data=form(2)).status_code == 302
    assert a.post(API_SIGNUP.format(slug="werkstatt"), json=api_body(3)).status_code == 201
    throttled = b.post("/events/werkstatt", data=form(4))
    assert throttled.status_code == 429
    retry_after_of(throttled)
    assert counts()[0] == 3
    # the count really is in Redis, under this deployment's prefix
    assert prefixed_keys(redis_client, prefix), "no rate-limit keys in Redis"

    # a host with the in-memory default does not see the shared count
    alone = client_from(limited(RATELIMIT_SIGNUP_PER_IP="3/hour"), "203.0.113.7")
    assert alone.post("/events/werkstatt", data=form(5)).status_code == 302


def test_an_unreachable_redis_does_not_break_sign_ups(app, limited):
    """Redis down: each process counts in memory instead; sign-ups go on, still limited."""
    make_event(capacity_on_site=100)
    flask_app = limited(
        RATELIMIT_STORAGE_URI="redis://127.0.0.1:9/0", RATELIMIT_SIGNUP_PER_IP="2/hour"
    )
    client = client_from(flask_app, "203.0.113.7")
    assert client.post("/events/werkstatt", data=form(1)).status_code == 302
    assert client.post("/events/werkstatt", data=form(2)).status_code == 302
    assert client.post("/events/werkstatt", data=form(3)).status_code == 429
    assert counts()[0] == 2


# --- Limits that fit public offices -----------------------------------------------------------

#: The limits as shipped (Config), not the roomy ones of the other tests.
SHIPPED = {
    name: getattr(ProductionConfig, name)
    for name in (
        "RATELIMIT_SIGNUP_PER_IP", "RATELIMIT_SIGNUP_PER_TRUSTED_IP",
        "RATELIMIT_SIGNUP_PER_EMAIL", "RATELIMIT_SIGNUP_PER_EVENT", "RATELIMIT_API",
    )
}  # fmt: skip


def test_a_department_behind_one_address_is_not_throttled_but_a_flood_is(app, limited):
    make_event(capacity_on_site=None)
    proxy = client_from(limited(**SHIPPED), "203.0.113.7")
    # 100 colleagues right after an internal invitation, half by the form, half by the API.
    for n in range(50):
        assert proxy.post("/events/werkstatt", data=form(n)).status_code == 302
        response = proxy.post(API_SIGNUP.format(slug="werkstatt"), json=api_body(n))
        assert response.status_code == 201, response.json
    # A script from the same address keeps going: it is stopped within the minute.
    answers = [
        proxy.post(API_SIGNUP.format(slug="werkstatt"), json=api_body(1000 + n)).status_code
        for n in range(40)
    ]
    assert 429 in answers and answers.count(201) <= 20


def test_one_email_address_is_limited_whatever_address_it_comes_from(app, limited):
    make_event(capacity_on_site=None)
    flask_app = limited(RATELIMIT_SIGNUP_PER_EMAIL="3/minute")
    emails = ["Dieselbe@Example.org", "dieselbe@example.org"] * 2  # one address, any case
    answers = [
        client_from(flask_app, f"198.51.100.{n}")
        .post(API_SIGNUP.format(slug="werkstatt"), json={**api_body(1), "email": email})
        .status_code
        for n, email in enumerate(emails, 1)
    ]
    assert answers[0] == 201 and answers[-1] == 429
    # Other people from those addresses are not held back.
    other = client_from(flask_app, "198.51.100.1")
    assert other.post("/events/werkstatt", data=form(7)).status_code == 302


def test_trusted_networks_get_the_higher_limit(app, limited):
    make_event(capacity_on_site=None)
    flask_app = limited(
        RATELIMIT_SIGNUP_PER_IP="2/hour",
        RATELIMIT_SIGNUP_PER_TRUSTED_IP="5/hour",
        RATELIMIT_TRUSTED_NETWORKS="203.0.113.0/24, 2001:db8::/32",
    )
    city = client_from(flask_app, "203.0.113.99")
    assert [city.post("/events/werkstatt", data=form(n)).status_code for n in range(6)] == [
        302, 302, 302, 302, 302, 429,
    ]  # fmt: skip
    outside = client_from(flask_app, "198.51.100.1")
    assert [outside.post("/events/werkstatt", data=form(10 + n)).status_code for n in range(3)] == [
        302, 302, 429,
    ]  # fmt: skip


def test_malformed_trusted_networks_refuse_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="RATELIMIT_TRUSTED_NETWORKS"):
        make_test_app(
            f"sqlite:///{tmp_path / 'x.sqlite'}", RATELIMIT_ENABLED=True,
            RATELIMIT_TRUSTED_NETWORKS="das-rathaus",
        )  # fmt: skip


def test_counting_in_memory_is_said_at_start_up(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    with caplog.at_level("WARNING", logger="registration.ratelimit"):
        make_test_app(url, RATELIMIT_ENABLED=True, TESTING=False)
    assert "counted in each process's memory" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="registration.ratelimit"):
        make_test_app(url, RATELIMIT_ENABLED=True, TESTING=False,
                      RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/0")  # fmt: skip
    assert "memory" not in caplog.text
