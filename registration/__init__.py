"""Workshop registration and participant management."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from config import Config, config_from_name

from . import (
    admin,
    cli,
    database,
    errors,
    formatting,
    health,
    i18n,
    jsonprovider,
    logs,
    ratelimit,
    security,
)
from .api import bp as api_bp
from .extensions import csrf
from .public import bp as public_bp

#: templates/, static/ and migrations/ sit next to the package (the design card's layout).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(config_class: type[Config] | str | None = None, **overrides: object) -> Flask:
    """Application factory.

    ``config_class`` is a class from config.py or its name; by default ``REGISTRATION_CONFIG``
    (``development``, ``testing`` or ``production``; production when unset). ``overrides``
    replace single settings (tests use this).
    """
    if config_class is None or isinstance(config_class, str):
        config_class = config_from_name(config_class or os.environ.get("REGISTRATION_CONFIG"))
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
        instance_path=os.environ.get("INSTANCE_PATH") or str(PROJECT_ROOT / "instance"),
    )
    app.config.update(config_class.from_env(instance_path=app.instance_path))
    app.config["MIGRATIONS_DIR"] = PROJECT_ROOT / "migrations"
    app.config.update(overrides)
    config_class.check(app.config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    logs.init_app(app)
    jsonprovider.init_app(app)
    database.init_app(app)
    csrf.init_app(app)
    i18n.init_app(app)
    errors.init_app(app)
    formatting.init_app(app)
    security.init_app(app)
    cli.init_app(app)
    admin.init_app(app)

    csrf.exempt(api_bp)  # the JSON API uses no cookies
    app.register_blueprint(public_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(admin.bp)
    health.init_app(app)
    ratelimit.init_app(app)  # last: it attaches the limits to the registered views
    return app
