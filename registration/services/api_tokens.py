"""API tokens: bearer secrets an organiser creates for scripts; each acts with its organiser's
rights. Only a SHA-256 of the secret is stored, so the secret is shown exactly once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, select, update
from sqlalchemy.orm import joinedload

from .. import textrules
from ..extensions import db
from ..models import ApiToken, Organiser
from ..timeutil import utcnow
from . import audit
from .errors import InvalidInput

#: Every token starts with this, so a leaked one is easy to recognise (e.g. by secret scanners).
TOKEN_MARKER = "wsr_"  # noqa: S105 (a public marker, not a secret)
#: How many leading characters are kept to tell tokens apart ("wsr_" plus eight).
PREFIX_LENGTH = 12
#: ``last_used_at`` is written at most this often per token (no write on every request).
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_NAME_LENGTH = 100
MAX_EXPIRES_DAYS = 3650
#: Longer strings are never tokens; they are refused before hashing.
_MAX_TOKEN_LENGTH = 200


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def create(
    organiser: Organiser,
    name: str,
    *,
    expires_days: int | None = None,
    actor: Organiser | None = None,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token for ``organiser``: ``(row, secret)``. The secret is not stored anywhere, so
    the caller shows it once. Raises :class:`InvalidInput`; the caller commits."""
    now = now or utcnow()
    name = (name or "").strip()
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = [_l("Please give the token a name (what it is for).")]
    elif len(name) > MAX_NAME_LENGTH:
        errors["name"] = [_l("Please use at most %(num)d characters.", num=MAX_NAME_LENGTH)]
    elif not textrules.is_clean_line(name):
        errors["name"] = [_l("Please remove the control characters from this field.")]
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRES_DAYS:
        errors["expires_days"] = [
            _l("Please enter 1 to %(num)d days, or nothing.", num=MAX_EXPIRES_DAYS)
        ]
    if errors:
        raise InvalidInput(errors)
    secret = TOKEN_MARKER + secrets.token_urlsafe(32)
    token = ApiToken(
        organiser_id=organiser.id,
        name=name,
        token_hash=hash_token(secret),
        prefix=secret[:PREFIX_LENGTH],
        created_at=now,
        expires_at=now + timedelta(days=expires_days) if expires_days else None,
    )
    db.session.add(token)
    db.session.flush()
    audit.record(
        actor or organiser,
        "api_token.create",
        subject=f"api_token:{token.id}",
        details={"name": name, "prefix": token.prefix, "organiser": organiser.email},
    )
    return token, secret


def authenticate(secret: str, *, now: datetime | None = None) -> ApiToken | None:
    """The token ``secret`` belongs to if it may be used now, else ``None``: unknown, revoked,
    expired and tokens of deactivated accounts are all refused alike.

    Notes the use at most once per :data:`LAST_USED_RESOLUTION` (in its own small transaction,
    so a read-only request stays read-only otherwise)."""
    if not secret.startswith(TOKEN_MARKER) or len(secret) > _MAX_TOKEN_LENGTH:
        return None
    digest = hash_token(secret)
    # The lookup is by an index on the hash; comparing hashes cannot leak the secret.
    stmt = select(ApiToken).where(ApiToken.token_hash == digest)
    token = db.session.scalars(stmt.options(joinedload(ApiToken.organiser))).first()
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    now = now or utcnow()
    if not is_usable(token, now=now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        # Conditional, so concurrent requests write once; expire nothing else in the session.
        db.session.execute(
            update(ApiToken)
            .where(
                ApiToken.id == token.id,
                or_(
                    ApiToken.last_used_at.is_(None),
                    ApiToken.last_used_at <= now - LAST_USED_RESOLUTION,
                ),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    return token


def is_usable(token: ApiToken, *, now: datetime | None = None) -> bool:
    now = now or utcnow()
    if token.revoked_at is not None:
        return False
    if token.expires_at is not None and token.expires_at <= now:
        return False
    return token.organiser.active


def revoke(token: ApiToken, *, actor: Organiser | None, now: datetime | None = None) -> bool:
    """Revoke ``token`` (at once; it stays listed as revoked). Returns ``False`` when it already
    was. The caller commits."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = now or utcnow()
    audit.record(
        actor,
        "api_token.revoke",
        subject=f"api_token:{token.id}",
        details={"name": token.name, "prefix": token.prefix, "organiser": token.organiser.email},
    )
    return True


def list_tokens(organiser: Organiser | None = None) -> list[ApiToken]:
    """Tokens, newest first: ``organiser``'s, or everybody's."""
    stmt = select(ApiToken).options(joinedload(ApiToken.organiser))
    if organiser is not None:
        stmt = stmt.where(ApiToken.organiser_id == organiser.id)
    return list(db.session.scalars(stmt.order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def find(id_or_prefix: str) -> list[ApiToken]:
    """Tokens matching a numeric id or the start of a token (for the CLI)."""
    value = id_or_prefix.strip()
    if value.isdigit():
        token = db.session.get(ApiToken, int(value))
        return [token] if token is not None else []
    if len(value) < len(TOKEN_MARKER) + 2:
        return []
    if len(value) >= PREFIX_LENGTH:
        stmt = select(ApiToken).where(ApiToken.prefix == value[:PREFIX_LENGTH])
    else:
        stmt = select(ApiToken).where(ApiToken.prefix.startswith(value, autoescape=True))
    return list(db.session.scalars(stmt.order_by(ApiToken.id)))


def status(token: ApiToken, *, now: datetime | None = None) -> str:
    """``active``, ``revoked`` or ``expired`` (for lists)."""
    now = now or utcnow()
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"
