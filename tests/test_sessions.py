"""The session cookie's signing serializer is made once per key, and follows a key change."""

from __future__ import annotations

from flask import session

from registration.security import SessionInterface


def test_one_serializer_per_key_and_cookies_keep_working(app):
    interface = app.session_interface
    assert isinstance(interface, SessionInterface)
    first = interface.get_signing_serializer(app)
    assert interface.get_signing_serializer(app) is first

    @app.get("/_test/session/<value>")
    def remember(value: str) -> str:
        session["value"] = value
        return "ok"

    @app.get("/_test/session")
    def recall() -> str:
        return session.get("value", "-")

    client = app.test_client()
    client.get("/_test/session/one")
    assert client.get("/_test/session").text == "one"

    old_key = app.secret_key
    app.config["SECRET_KEY"] = "a-new-secret-key-for-this-test"
    assert interface.get_signing_serializer(app) is not first
    assert client.get("/_test/session").text == "-"  # signed with the old key: not accepted
    app.config["SECRET_KEY_FALLBACKS"] = [old_key]
    assert client.get("/_test/session").text == "one"  # the old key as a fallback: accepted
