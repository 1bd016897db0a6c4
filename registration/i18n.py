"""Flask-Babel set-up: German first, English beside it."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, current_app, has_request_context, request, session, url_for
from flask_babel import get_locale, refresh

from .extensions import babel

log = logging.getLogger(__name__)

TRANSLATIONS_DIR = Path(__file__).parent / "translations"


def select_locale() -> Locale:
    """``?lang=`` (remembered in the session), else the browser's preference, else German."""
    return _locale(_select_language())


@functools.cache
def _locale(code: str) -> Locale:
    """Flask-Babel parses the selector's answer with ``Locale.parse``, which returns a Locale
    as it is and would otherwise build a new one for every request (it looks for data files)."""
    return Locale.parse(code)


def _select_language() -> str:
    if not has_request_context():  # CLI, worker, services under test
        return current_app.config["BABEL_DEFAULT_LOCALE"]
    languages = current_app.config["LANGUAGES"]
    requested = request.args.get("lang")
    if requested in languages:
        if not request.path.startswith("/api/"):
            session["lang"] = requested
        return requested
    remembered = session.get("lang") if not request.path.startswith("/api/") else None
    if remembered in languages:
        return remembered
    return (
        request.accept_languages.best_match(languages) or current_app.config["BABEL_DEFAULT_LOCALE"]
    )


def language_url(code: str) -> str:
    """The current page in another language (keeps the page's own parameters)."""
    if request.endpoint is None or request.url_rule is None or request.method != "GET":
        return f"{request.path}?lang={code}"
    args = {**request.args.to_dict(), **(request.view_args or {}), "lang": code}
    return url_for(request.endpoint, **args)


def compile_translations(directory: Path = TRANSLATIONS_DIR) -> list[Path]:
    """Compile every ``.po`` whose ``.mo`` is missing or older. Returns the files written.

    The build (``make``) runs this; the app runs it again at start so a plain ``pip install``
    deployment never serves untranslated pages. A read-only install is logged, not fatal.
    """
    written: list[Path] = []
    for po_path in sorted(directory.glob("*/LC_MESSAGES/*.po")):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file)
        try:
            with mo_path.open("wb") as mo_file:
                write_mo(mo_file, catalog)
        except OSError as exc:
            log.warning("cannot compile %s: %s", po_path, exc)
            continue
        written.append(mo_path)
    return written


def init_app(app: Flask) -> None:
    compile_translations()
    babel.init_app(
        app,
        locale_selector=select_locale,
        default_translation_directories=str(TRANSLATIONS_DIR),
    )
    app.jinja_env.globals["get_locale"] = get_locale
    app.jinja_env.globals["language_url"] = language_url
    # Flask-Babel caches the locale on the app context; a context that outlives one request
    # (tests, nested contexts) must not carry one reader's language into the next request.
    app.before_request(refresh)
