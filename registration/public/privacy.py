"""The privacy notice page: the text the organisation set in the back office, in the visitor's
language (or the other one), or a neutral default while there is none."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, url_for
from flask_babel import get_locale

from ..markup import render_markdown
from ..services import settings
from .views import bp


@bp.get("/datenschutz")
def privacy() -> Any:
    locale = "en" if str(get_locale()) == "en" else "de"
    other = "en" if locale == "de" else "de"
    values = settings.get_many(settings.KEYS)
    language, text = locale, values[settings.PRIVACY_NOTICE[locale]]
    if not text:
        language, text = other, values[settings.PRIVACY_NOTICE[other]]
    return render_template(
        "public/privacy.html",
        notice=render_markdown(text),
        # A text in the other language is marked as such (screen readers switch voices).
        notice_lang=language if language != locale else None,
        organisation=values[settings.ORGANISATION_NAME],
        contact=values[settings.PRIVACY_CONTACT],
    )


@bp.get("/privacy")
def privacy_alias() -> Any:
    """The English address (and the one links used before) leads to the same page."""
    return redirect(url_for("public.privacy"), code=301)
