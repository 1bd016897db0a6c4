"""Personal links (manage, join, check-in) for a registration.

A token is ``HMAC-SHA256(SECRET_KEY, purpose + salt)``, URL-safe base64 (256 bits). The database
holds only the random salt and, for look-ups, a SHA-256 of the manage token: a copy of the
database alone does not give anyone a working link. Emails rendered later recompute the token from
the salt. Rotating SECRET_KEY therefore invalidates links not yet sent; links already in people's
mailboxes keep working for the manage page because look-up is by hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from flask import current_app

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def new_salt() -> str:
    return secrets.token_hex(16)


def derive(salt: str, purpose: str) -> str:
    """The personal token for ``purpose`` ("manage", "join", "checkin") of the given salt."""
    key = current_app.config["SECRET_KEY"].encode()
    digest = hmac.new(key, f"{purpose}:{salt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    """Cheap shape check so malformed links never reach the database."""
    return bool(_TOKEN_RE.match(value))


def personal_token(registration_id: int, salt: str, purpose: str) -> str:
    """A link token that names its registration: ``<id>.<hmac>`` (join and check-in links)."""
    return f"{registration_id}.{derive(salt, purpose)}"


def split_personal_token(token: str) -> tuple[int, str] | None:
    """``(registration id, mac)`` of a well-formed personal token, else ``None``."""
    head, _, mac = token.partition(".")
    if not head.isdigit() or len(head) > 12 or not looks_like_token(mac):
        return None
    return int(head), mac


def matches(salt: str, purpose: str, mac: str) -> bool:
    return hmac.compare_digest(derive(salt, purpose), mac)


#: Check-in codes are printed as QR codes: a shorter MAC (96 bits) keeps the code small and
#: quick to scan. The link only works for organisers of the event anyway.
SHORT_MAC = 16


def short_token(registration_id: int, salt: str, purpose: str) -> str:
    return f"{registration_id}-{derive(salt, purpose)[:SHORT_MAC]}"


def split_short_token(token: str) -> tuple[int, str] | None:
    head, _, mac = token.partition("-")
    if not head.isdigit() or len(head) > 12 or not re.fullmatch(r"[A-Za-z0-9_-]{16}", mac):
        return None
    return int(head), mac


def matches_short(salt: str, purpose: str, mac: str) -> bool:
    return hmac.compare_digest(derive(salt, purpose)[:SHORT_MAC], mac)
