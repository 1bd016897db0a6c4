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
