"""Settings the organisation changes in the back office (key/value text in ``Setting``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select

from ..extensions import db
from ..models import Organiser, Setting
from ..timeutil import utcnow
from . import audit

#: The privacy notice (Markdown) per language.
PRIVACY_NOTICE = {"de": "privacy_notice_de", "en": "privacy_notice_en"}
#: Who is responsible for the data (shown on the privacy notice page).
ORGANISATION_NAME = "organisation_name"
#: How to reach them or their data protection officer (address, email; plain text).
PRIVACY_CONTACT = "privacy_contact"

KEYS = (*PRIVACY_NOTICE.values(), ORGANISATION_NAME, PRIVACY_CONTACT)


def get_many(keys: Iterable[str]) -> dict[str, str]:
    """The values of ``keys``; an unset key is ``""``."""
    keys = list(keys)
    found = dict(
        db.session.execute(select(Setting.key, Setting.value).where(Setting.key.in_(keys))).all()
    )
    return {key: found.get(key) or "" for key in keys}


def get(key: str) -> str:
    return get_many([key])[key]


def update(values: Mapping[str, str], actor: Organiser | None) -> list[str]:
    """Store ``values`` and log which keys changed (not the texts: they are in the table).
    Returns the changed keys; the caller commits."""
    current = get_many(values)
    changed = [key for key, value in values.items() if value != current[key]]
    now = utcnow()
    for key in changed:
        setting = db.session.get(Setting, key)
        if setting is None:
            db.session.add(Setting(key=key, value=values[key], updated_at=now))
        else:
            setting.value, setting.updated_at = values[key], now
    if changed:
        audit.record(actor, "settings.update", details={"keys": changed})
    return changed
