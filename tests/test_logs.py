"""Request logs: one structured line per request, a request id, errors with traceback, no secrets."""

from __future__ import annotations

import json
import logging
import re

import pytest
from flask import Flask

from registration import create_app, logs
from registration.extensions import db
from registration.services import signup
from registration.tokens import personal_token

from .conftest import make_event

EMAIL = "grace.hopper@example.org"


def request_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "registration.requests"]


def rendered(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as the app's handler writes it, JSON and text."""
    json_formatter, text_formatter = logs.make_formatter("json"), logs.make_formatter("text")
    lines = []
    for record in caplog.records:
        logs.RequestIdFilter().filter(record)
        lines.append(json_formatter.format(record))
        lines.append(text_formatter.format(record))
    return "\n".join(lines) + caplog.text


def test_one_json_line_per_request_with_the_request_fields(app, client, caplog):
    make_event(slug="werkstatt-21")
    caplog.set_level(logging.INFO, logger="registration")
    response = client.get("/events/werkstatt-21?utm_source=newsletter")
    assert response.status_code == 200
    (record,) = request_records(caplog)
    line = json.loads(logs.make_formatter("json").format(record))
    assert line["method"] == "GET"
    assert line["path"] == "/events/<slug>"
    assert line["endpoint"] == "public.event"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])
    assert response.headers["X-Request-ID"] == line["request_id"]
    assert line["level"] == "INFO" and line["logger"] == "registration.requests"
    assert "utm_source" not in json.dumps(line)


def test_the_handler_writes_json_by_default_and_text_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    handler = logs._handler()
    create_app("testing", SQLALCHEMY_DATABASE_URI=url)
    assert isinstance(handler.formatter, logs.JsonFormatter)
    assert logging.getLogger("registration").level == logging.INFO

    monkeypatch.setenv("LOG_FORMAT", "text")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    create_app("testing", SQLALCHEMY_DATABASE_URI=url)
    assert not isinstance(handler.formatter, logs.JsonFormatter)
    assert logging.getLogger("registration").level == logging.WARNING
    assert logs._handler() is handler  # one handler, however many apps
    assert logging.getLogger("registration").handlers.count(handler) == 1
    record = logging.LogRecord(
        "registration.requests", logging.INFO, __file__, 1, "GET %s 200", ("/healthz",), None
    )
    record.request_id = "abc123def456"
    assert handler.format(record).endswith(
        "INFO registration.requests [abc123def456] GET /healthz 200"
    )

    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(RuntimeError, match="LOG_FORMAT"):
        create_app("testing", SQLALCHEMY_DATABASE_URI=url)
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("LOG_LEVEL", "info")
    create_app("testing", SQLALCHEMY_DATABASE_URI=url)
    assert isinstance(handler.formatter, logs.JsonFormatter)


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("0f8fe3c8-6a1d-4d8e-9a53-5b8f1c7e2d11", True),
        ("3f9a0c51d2b84e6f9c1a7d3e5b2f8a40", True),
        ("short", False),
        ("has spaces in it", False),
        ("<script>alert(1)</script>", False),
        ("mail@example.org-123456", False),
        ("x" * 129, False),
    ],
)
def test_a_well_formed_incoming_request_id_is_kept_others_replaced(
    app, client, caplog, incoming, kept
):
    caplog.set_level(logging.INFO, logger="registration")
    response = client.get("/healthz", headers={"X-Request-ID": incoming})
    (record,) = request_records(caplog)
    if kept:
        assert response.headers["X-Request-ID"] == incoming == record.request_id
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
        assert record.request_id == response.headers["X-Request-ID"]


def test_each_request_gets_its_own_id(app, client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


def test_personal_links_and_addresses_never_reach_the_log(app, client, caplog):
    event = make_event(slug="werkstatt", capacity_on_site=10)
    result = signup.register(
        event,
        signup.SignupData(
            email=EMAIL, first_name="Grace", last_name="Hopper", privacy_consent=True
        ),
    )
    db.session.commit()
    registration = result.registration
    manage = result.manage_token
    join = personal_token(registration.id, registration.token_salt, "join")
    secrets = [manage, join.split(".")[1]]
    caplog.set_level(logging.INFO, logger="registration")

    assert client.get(f"/manage/{manage}?email={EMAIL}").status_code == 200
    client.get(f"/join/{join}")
    client.get(f"/api/v1/registrations/{manage}")
    client.get(f"/manage/{manage}/calendar.ics")
    client.get(f"/admin/password/reset/{manage}")
    client.get(f"/admin/c/{join}")
    assert client.get(f"/no/such/page/{manage}").status_code == 404
    client.get(f"/{EMAIL}")
    client.post(
        "/events/werkstatt",
        data={"email": EMAIL, "first_name": "Grace", "last_name": "Hopper", "privacy_consent": "y"},
    )

    paths = [r.path for r in request_records(caplog)]
    assert paths[:6] == [
        "/manage/<token>",
        "/join/<token>",
        "/api/v1/registrations/<token>",
        "/manage/<token>/calendar.ics",
        "/admin/password/reset/<token>",
        "/admin/c/<token>",
    ]
    assert paths[6:8] == ["/no/such/page/<masked>", "/<masked>"]
    assert len(paths) == 9
    text = rendered(caplog)
    for secret in [*secrets, EMAIL, "Hopper", "example.org"]:
        assert secret not in text


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/events/werkstatt-21-herzberg-elster", "/events/werkstatt-21-herzberg-elster"),
        ("/static/css/app.css", "/static/css/app.css"),
        ("/manage/q0NwY2m9xN3_vXh1b7kJp2T1rWcQm9eZl1sHfUaYb0Q", "/manage/<masked>"),
        ("/reset/3f9a0c51d2b84e6f9c1a7d3e5b2f8a40", "/reset/<masked>"),
        ("/x/a@b.de", "/x/<masked>"),
        ("/", "/"),
    ],
)
def test_paths_without_a_rule_are_masked(path, logged):
    assert logs.mask_path(path) == logged


@pytest.fixture
def failing_app(app: Flask) -> Flask:
    """The app with a view that fails, and Flask's production error handling (no propagation)."""

    @app.get("/broken/<token>")
    def broken(token: str) -> str:
        raise RuntimeError("the database fell over")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


def test_unhandled_errors_are_logged_with_request_id_and_traceback(failing_app, caplog):
    caplog.set_level(logging.INFO, logger="registration")
    secret = "q0NwY2m9xN3_vXh1b7kJp2T1rWcQm9eZl1sHfUaYb0Q"
    response = failing_app.test_client().get(
        f"/broken/{secret}", headers={"X-Request-ID": "req-4711-abcdef"}
    )
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "req-4711-abcdef"
    assert "RuntimeError" not in response.get_data(as_text=True)

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # ours only: Flask's own line would name the raw path
    line = json.loads(logs.make_formatter("json").format(errors[0]))
    assert line["request_id"] == "req-4711-abcdef"
    assert line["path"] == "/broken/<token>" and line["method"] == "GET"
    assert "RuntimeError: the database fell over" in line["traceback"]
    (access,) = request_records(caplog)[-1:]
    assert (access.status, access.request_id) == (500, "req-4711-abcdef")
    assert secret not in rendered(caplog)
