"""Security headers on every kind of response; HSTS only over HTTPS; ProxyFix only when configured."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, request

from registration.extensions import db
from registration.models import FileKind
from registration.services import files

from .conftest import make_event, make_test_app

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
ONE_YEAR = "max-age=31536000"


@pytest.fixture
def site(app: Flask) -> dict[str, str]:
    """One URL of each kind of response the app gives."""

    @app.get("/test-only/broken")
    def broken() -> str:
        raise RuntimeError("boom")

    app.config["PROPAGATE_EXCEPTIONS"] = False  # the real 500 page, as in production
    event = make_event(slug="werkstatt")
    stored = files.store(event, FileKind.ATTACHMENT, PNG, "plan.png", "Lageplan")
    db.session.commit()
    urls = {
        "html page": "/events/werkstatt",
        "json api": "/api/v1/events/werkstatt",
        "static file": "/static/css/site.css",
        "not found": "/no/such/page",
        "api not found": "/api/v1/events/nope",
        "server error": "/test-only/broken",
        "redirect": "/admin/",
        "uploaded file": f"/events/werkstatt/files/{stored.id}/{stored.filename}",
        "health": "/healthz",
    }
    db.session.commit()  # end the read transaction (SQLite: it would hold the write lock)
    return urls


EXPECTED_STATUS = {
    "not found": 404,
    "api not found": 404,
    "server error": 500,
    "redirect": 302,
}


def check_common_headers(response: Any) -> None:
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert headers["X-Request-ID"]


def test_every_kind_of_response_carries_the_headers_over_http_without_hsts(client, site):
    for kind, url in site.items():
        with client.get(url) as response:
            assert response.status_code == EXPECTED_STATUS.get(kind, 200), kind
            check_common_headers(response)
            assert "Strict-Transport-Security" not in response.headers, kind


def test_every_kind_of_response_carries_hsts_over_https(client, site):
    for kind, url in site.items():
        with client.get(url, base_url="https://localhost") as response:
            assert response.status_code == EXPECTED_STATUS.get(kind, 200), kind
            check_common_headers(response)
            assert response.headers["Strict-Transport-Security"] == ONE_YEAR, kind


def test_the_response_kinds_are_what_they_claim(client, site):
    """So the header tests above really cover each kind (not five 404 pages)."""
    kinds = {kind: client.get(url) for kind, url in site.items()}
    assert kinds["html page"].mimetype == "text/html"
    assert kinds["json api"].mimetype == "application/json"
    assert kinds["static file"].mimetype == "text/css"
    assert kinds["not found"].mimetype == "text/html"
    assert kinds["api not found"].get_json() == {"error": "not_found"}
    assert kinds["server error"].mimetype == "text/html"
    assert "/admin/login" in kinds["redirect"].headers["Location"]
    assert kinds["uploaded file"].mimetype == "image/png"
    assert kinds["uploaded file"].data == PNG
    for response in kinds.values():
        response.close()


def test_the_embed_page_is_frameable_only_by_configured_origins(app, client):
    make_event(slug="werkstatt")
    app.config["EMBED_ALLOWED_ORIGINS"] = "https://www.jena.de"
    response = client.get("/events/werkstatt/embed", base_url="https://localhost")
    assert (
        "frame-ancestors 'self' https://www.jena.de" in response.headers["Content-Security-Policy"]
    )
    assert "X-Frame-Options" not in response.headers
    assert response.headers["Strict-Transport-Security"] == ONE_YEAR
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def make_app(tmp_path, monkeypatch, **overrides: Any) -> Flask:
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    app = make_test_app(f"sqlite:///{tmp_path / 'proxy.sqlite'}", **overrides)

    @app.get("/test-only/whoami")
    def whoami() -> dict[str, str]:
        return {"addr": request.remote_addr or "", "scheme": request.scheme, "host": request.host}

    return app


FORWARDED = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "anmeldung.example.org",
}


def test_forwarded_headers_are_ignored_without_proxy_fix(tmp_path, monkeypatch):
    client = make_app(tmp_path, monkeypatch).test_client()
    response = client.get("/test-only/whoami", headers=FORWARDED)
    assert response.get_json() == {"addr": "127.0.0.1", "scheme": "http", "host": "localhost"}
    # A client cannot switch HSTS on (or pretend to be on HTTPS) by sending the header itself.
    assert "Strict-Transport-Security" not in response.headers


def test_proxy_fix_trusts_the_configured_headers(tmp_path, monkeypatch):
    app = make_app(
        tmp_path, monkeypatch, PROXY_FIX_X_FOR=1, PROXY_FIX_X_PROTO=1, PROXY_FIX_X_HOST=1
    )
    client = app.test_client()
    response = client.get("/test-only/whoami", headers=FORWARDED)
    assert response.get_json() == {
        "addr": "203.0.113.7",
        "scheme": "https",
        "host": "anmeldung.example.org",
    }
    assert response.headers["Strict-Transport-Security"] == ONE_YEAR

    plain = client.get("/test-only/whoami", headers={**FORWARDED, "X-Forwarded-Proto": "http"})
    assert plain.get_json()["scheme"] == "http"
    assert "Strict-Transport-Security" not in plain.headers
    # Only the proxy's own (last) entry is trusted: a client's spoofed first hop is not.
    spoofed = client.get("/test-only/whoami", headers={"X-Forwarded-For": "10.0.0.1, 203.0.113.7"})
    assert spoofed.get_json()["addr"] == "203.0.113.7"


def test_proxy_fix_settings_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PROXY_FIX_X_PROTO", "1")
    monkeypatch.setenv("HSTS_MAX_AGE", "600")
    monkeypatch.setenv("HSTS_INCLUDE_SUBDOMAINS", "true")
    client = make_app(tmp_path, monkeypatch).test_client()
    response = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert response.headers["Strict-Transport-Security"] == "max-age=600; includeSubDomains"
    assert client.get("/test-only/whoami", headers=FORWARDED).get_json()["host"] == "localhost"


def test_hsts_can_be_switched_off(tmp_path, monkeypatch):
    client = make_app(tmp_path, monkeypatch, HSTS_MAX_AGE=0).test_client()
    response = client.get("/healthz", base_url="https://localhost")
    assert "Strict-Transport-Security" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"
