"""The baseline of the load test (bench/load_test.py): bare Flask on the same database.

Two endpoints that do the least a sign-up and an event page can do, served by gunicorn with the
same settings as the real app:

- ``POST /signup``: parse the JSON body, then one transaction with one UPDATE of a capacity
  counter row (the row lock every sign-up for an event queues for) and one INSERT of the person.
- ``GET /page``: one Jinja template rendered to about ``BARE_PAGE_BYTES`` bytes (the load test
  sets it to the size of the real event page), no database.

The tables (``bare_capacity``, ``bare_signups``) are created by the load test, not here.

    gunicorn 'bench.bare_app:create_app()'   # with DATABASE_URL set
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, render_template, request
from sqlalchemy import create_engine, text

from config import Config, _normalise_database_url

#: Filler for the page, German like the real one (the size, not the words, matters).
PARAGRAPH = (
    "Städte und Gemeinden stehen angesichts der demographischen Entwicklung vor der Aufgabe, "
    "Wohnraum für alle Generationen zu sichern. Die Fachtagung stellt Ergebnisse vor und lädt "
    "zum Austausch über interkommunale Zusammenarbeit ein."
)

SCHEMA = """
CREATE TABLE bare_capacity (id integer PRIMARY KEY, capacity integer NOT NULL,
                            taken integer NOT NULL DEFAULT 0);
CREATE TABLE bare_signups (id serial PRIMARY KEY, email varchar(254) NOT NULL,
                           first_name varchar(100) NOT NULL, last_name varchar(100) NOT NULL,
                           status varchar(20) NOT NULL, created_at timestamptz NOT NULL);
"""

UPDATE = text("UPDATE bare_capacity SET taken = taken + 1 WHERE id = 1 RETURNING taken, capacity")
INSERT = text(
    "INSERT INTO bare_signups (email, first_name, last_name, status, created_at) "
    "VALUES (:email, :first_name, :last_name, :status, now()) RETURNING id"
)


def create_app() -> Flask:
    app = Flask(__name__, template_folder=str(Path(__file__).parent / "templates"))
    # The engine options of the real app (pool_pre_ping); the same pool sizes by default.
    engine = create_engine(
        _normalise_database_url(os.environ["DATABASE_URL"]), **Config.SQLALCHEMY_ENGINE_OPTIONS
    )
    page_bytes = int(os.environ.get("BARE_PAGE_BYTES") or 12000)
    paragraphs = [PARAGRAPH] * max(1, page_bytes // (len(PARAGRAPH.encode()) + 8))

    @app.post("/signup")
    def signup() -> Any:
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("email"), str):
            return jsonify({"error": "invalid_json"}), 400
        with engine.begin() as conn:
            taken, capacity = conn.execute(UPDATE).one()
            status = "confirmed" if taken <= capacity else "waitlisted"
            new_id = conn.execute(
                INSERT,
                {
                    "email": body["email"],
                    "first_name": str(body.get("first_name", "")),
                    "last_name": str(body.get("last_name", "")),
                    "status": status,
                },
            ).scalar_one()
        return jsonify({"id": new_id, "status": status}), 201

    @app.get("/page")
    def page() -> Any:
        return render_template(
            "bare_page.html", title="Fachtagung Interkommunales Wohnen", paragraphs=paragraphs
        )

    return app
