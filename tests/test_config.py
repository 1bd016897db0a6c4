"""Configuration comes from the environment at app creation; production refuses weak settings."""

from __future__ import annotations

import pytest

from config import DEV_SECRET_KEY, DevelopmentConfig, ProductionConfig, config_from_name
from registration import create_app


def test_environment_is_read_when_the_app_is_created(monkeypatch, tmp_path):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgres://user:pw@db.internal:5432/anmeldung")
    monkeypatch.setenv("BASE_URL", "https://anmeldung.example.org/")
    monkeypatch.setenv("MAIL_SERVER", "smtp.example.org")
    monkeypatch.setenv("MAIL_PORT", "587")
    monkeypatch.setenv("MAIL_USE_TLS", "true")
    monkeypatch.setenv("TIMEZONE", "Europe/Vienna")
    monkeypatch.setenv("SECRET_KEY", "a-long-enough-production-secret")
    app = create_app("production")
    assert app.config["SQLALCHEMY_DATABASE_URI"] == (
        "postgresql+psycopg://user:pw@db.internal:5432/anmeldung"
    )
    assert app.config["BASE_URL"] == "https://anmeldung.example.org"
    assert (app.config["MAIL_SERVER"], app.config["MAIL_PORT"]) == ("smtp.example.org", 587)
    assert app.config["MAIL_USE_TLS"] is True
    assert app.config["TIMEZONE"] == "Europe/Vienna"
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["DEBUG"] is False


def test_defaults_are_embedded(monkeypatch, tmp_path):
    for name in ("DATABASE_URL", "SECRET_KEY", "MAIL_SERVER", "BASE_URL", "TIMEZONE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    app = create_app("development")
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'registration.sqlite'}"
    assert app.config["MAIL_SERVER"] is None
    assert app.config["MAIL_FILE_DIR"] == str(tmp_path / "mail")
    assert app.config["BASE_URL"] == "http://127.0.0.1:5000"
    assert app.config["TIMEZONE"] == "Europe/Berlin"
    assert app.config["BABEL_DEFAULT_LOCALE"] == "de"


@pytest.mark.parametrize("key", [None, "", DEV_SECRET_KEY, "short"])
def test_production_refuses_a_missing_or_weak_secret_key(key):
    env = {} if key is None else {"SECRET_KEY": key}
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        ProductionConfig.from_env(env)


def test_production_refuses_debug():
    with pytest.raises(RuntimeError, match="FLASK_DEBUG"):
        ProductionConfig.from_env({"SECRET_KEY": "x" * 32, "FLASK_DEBUG": "1"})


def test_default_config_is_production_and_names_are_checked():
    assert config_from_name(None) is ProductionConfig
    assert config_from_name("Development") is DevelopmentConfig
    with pytest.raises(RuntimeError, match="REGISTRATION_CONFIG"):
        config_from_name("staging")


def test_from_env_does_not_touch_the_class():
    DevelopmentConfig.from_env({"SECRET_KEY": "one"})
    assert not hasattr(DevelopmentConfig, "SECRET_KEY")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SECRET_KEY": DEV_SECRET_KEY}, "SECRET_KEY"),
        ({"SECRET_KEY": "testing-secret-key"}, "SECRET_KEY"),
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"DEBUG": True}, "DEBUG"),
        ({"TESTING": True}, "TESTING"),
    ],
)
def test_production_checks_the_settings_after_overrides(monkeypatch, tmp_path, overrides, message):
    """create_app("production", DEBUG=True) must not slip past the environment checks."""
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("SECRET_KEY", "a-long-enough-production-secret")
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    with pytest.raises(RuntimeError, match=message):
        create_app("production", **overrides)


def test_production_refuses_debug_switched_on_by_the_flask_command(monkeypatch, tmp_path):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("SECRET_KEY", "a-long-enough-production-secret")
    monkeypatch.setenv("FLASK_DEBUG", "true")  # what `flask --debug` sets
    with pytest.raises(RuntimeError, match="FLASK_DEBUG"):
        create_app("production")


def test_production_keeps_cookies_on_https_and_sql_parameters_out_of_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("SECRET_KEY", "a-long-enough-production-secret")
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    monkeypatch.setenv("BASE_URL", "http://intranet.local")
    plain = create_app("production")
    assert plain.config["SESSION_COOKIE_SECURE"] is False
    monkeypatch.setenv("BASE_URL", "https://anmeldung.example.org")
    app = create_app("production")
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["REMEMBER_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["hide_parameters"] is True
    assert "hide_parameters" not in DevelopmentConfig.SQLALCHEMY_ENGINE_OPTIONS
    with app.test_request_context("/", base_url="https://anmeldung.example.org"):
        from flask import session

        session["lang"] = "en"
        response = app.make_response("ok")
        app.session_interface.save_session(app, session, response)
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_operations_settings_from_the_environment():
    settings = DevelopmentConfig.from_env(
        {
            "LOG_FORMAT": "Text",
            "LOG_LEVEL": "warning",
            "OUTBOX_STUCK_MINUTES": "30",
            "PROXY_FIX_X_FOR": "1",
            "PROXY_FIX_X_PROTO": "1",
            "PROXY_FIX_X_HOST": "2",
            "HSTS_MAX_AGE": "600",
            "HSTS_INCLUDE_SUBDOMAINS": "yes",
        }
    )
    assert (settings["LOG_FORMAT"], settings["LOG_LEVEL"]) == ("text", "WARNING")
    assert settings["OUTBOX_STUCK_MINUTES"] == 30
    assert (settings["PROXY_FIX_X_FOR"], settings["PROXY_FIX_X_PROTO"]) == (1, 1)
    assert settings["PROXY_FIX_X_HOST"] == 2
    assert (settings["HSTS_MAX_AGE"], settings["HSTS_INCLUDE_SUBDOMAINS"]) == (600, True)

    defaults = DevelopmentConfig.from_env({})
    assert (defaults["LOG_FORMAT"], defaults["LOG_LEVEL"]) == ("json", "INFO")
    assert defaults["PROXY_FIX_X_FOR"] == defaults["PROXY_FIX_X_PROTO"] == 0
    assert defaults["HSTS_MAX_AGE"] == 365 * 24 * 3600
    assert defaults["HSTS_INCLUDE_SUBDOMAINS"] is False
    with pytest.raises(RuntimeError, match="LOG_LEVEL"):
        DevelopmentConfig.from_env({"LOG_LEVEL": "loud"})


def test_the_lock_timeout_comes_from_the_environment(monkeypatch, tmp_path):
    from config import ProductionConfig

    assert ProductionConfig.from_env({"SECRET_KEY": "x" * 32})["SIGNUP_LOCK_TIMEOUT"] == 3.0
    settings = ProductionConfig.from_env({"SECRET_KEY": "x" * 32, "SIGNUP_LOCK_TIMEOUT": "0.5"})
    assert settings["SIGNUP_LOCK_TIMEOUT"] == 0.5
    for wrong in ("drei", "-1", "9999"):
        with pytest.raises(RuntimeError, match="SIGNUP_LOCK_TIMEOUT"):
            ProductionConfig.from_env({"SECRET_KEY": "x" * 32, "SIGNUP_LOCK_TIMEOUT": wrong})
