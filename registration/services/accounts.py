"""Organiser accounts: logging in (slowed down after failures), passwords."""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import Organiser, OutboxMessage
from ..timeutil import utcnow
from . import audit
from .errors import InvalidInput, ServiceError

log = logging.getLogger(__name__)

#: After this many failures in a row the account waits LOCK_MINUTES before the next try.
MAX_FAILURES = 5
LOCK_MINUTES = 15
MIN_PASSWORD_LENGTH = 10
#: A hash to check against when the address is unknown, so both cases take the same time.
_DUMMY_HASH = generate_password_hash("not a real password")


class LoginFailed(ServiceError):
    """A wrong password, an unknown address or a locked account: one answer for all three, so
    nobody learns which addresses have accounts."""

    code = "login_failed"
    default_message = _l(
        "The email address or the password is wrong. After five failed attempts in a row, an "
        "account is locked for 15 minutes."
    )


def find(email: str) -> Organiser | None:
    return db.session.scalars(
        select(Organiser).where(func.lower(Organiser.email) == email.strip().lower())
    ).first()


def authenticate(email: str, password: str, *, now: datetime | None = None) -> Organiser:
    """The account for these credentials, or :class:`LoginFailed`. Failures are counted and
    logged (without the password); the caller commits.

    Each attempt is counted in the database *before* its password is checked (one UPDATE that
    only an unlocked account passes), so concurrent attempts queue on the account's row and at
    most :data:`MAX_FAILURES` passwords are checked in a row, however many arrive at once.
    Unknown and locked accounts cost a password check too: every answer takes as long."""
    now = now or utcnow()
    organiser = find(email)
    if organiser is None:
        check_password_hash(_DUMMY_HASH, password)
        log.warning("failed login for unknown account %r", email[:254])
        raise LoginFailed()
    attempt = db.session.execute(
        update(Organiser)
        .where(
            Organiser.id == organiser.id,
            or_(Organiser.locked_until.is_(None), Organiser.locked_until <= now),
        )
        .values(failed_logins=Organiser.failed_logins + 1)
        .returning(Organiser.failed_logins)
        .execution_options(synchronize_session=False)
    ).scalar()
    if attempt is None:
        check_password_hash(_DUMMY_HASH, password)
        audit.record(organiser, "login.locked")
        log.warning("login for locked account %s", organiser.email)
        raise LoginFailed()
    if organiser.active and check_password_hash(organiser.password_hash, password):
        _set_failures(organiser, 0, None)
        audit.record(organiser, "login")
        return organiser
    if attempt >= MAX_FAILURES:
        _set_failures(organiser, 0, now + timedelta(minutes=LOCK_MINUTES))
    audit.record(organiser, "login.failed")
    log.warning("failed login for %s", organiser.email)
    raise LoginFailed()


def _set_failures(organiser: Organiser, failures: int, locked_until: datetime | None) -> None:
    db.session.execute(
        update(Organiser)
        .where(Organiser.id == organiser.id)
        .values(failed_logins=failures, locked_until=locked_until)
        .execution_options(synchronize_session=False)
    )
    # The object shows what the row holds now.
    set_committed_value(organiser, "failed_logins", failures)
    set_committed_value(organiser, "locked_until", locked_until)


def set_password(organiser: Organiser, password: str, *, now: datetime | None = None) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            {"password": [_l("Please use at least %(num)d characters.", num=MIN_PASSWORD_LENGTH)]}
        )
    organiser.password_hash = generate_password_hash(password)
    organiser.password_changed_at = now or utcnow()


def change_password(organiser: Organiser, current: str, new: str) -> None:
    if not check_password_hash(organiser.password_hash, current):
        raise InvalidInput({"current_password": [_l("The current password is wrong.")]})
    set_password(organiser, new)
    audit.record(organiser, "password.change")


def load_session_user(session_id: str) -> Organiser | None:
    """Flask-Login's user loader: ``<id>:<password stamp>`` (see Organiser.get_id)."""
    head, _, stamp = session_id.partition(":")
    if not head.isdigit():
        return None
    organiser = db.session.get(Organiser, int(head))
    if organiser is None or not organiser.active or organiser.get_id() != f"{head}:{stamp}":
        return None
    return organiser


def request_reset(email: str, language: str) -> None:
    """Queue a password-reset mail if the account exists (the caller says the same either way,
    so the form does not reveal which addresses have accounts). The caller commits."""
    organiser = find(email)
    if organiser is None or not organiser.active:
        log.info("password reset asked for unknown or inactive account %r", email[:254])
        return
    db.session.add(
        OutboxMessage(
            kind="password_reset",
            dedupe_key=f"password_reset:{organiser.id}:{uuid.uuid4().hex}",
            payload={"organiser_id": organiser.id, "language": language},
        )
    )
    audit.record(organiser, "password.reset_requested")


def reset_password(organiser: Organiser, password: str) -> None:
    set_password(organiser, password)
    organiser.failed_logins, organiser.locked_until = 0, None
    audit.record(organiser, "password.reset")


class AccountExists(ServiceError):
    code = "exists"
    default_message = _l("An account for this address exists already.")


def invite(email: str, *, name: str, is_admin: bool, actor: Organiser, language: str) -> Organiser:
    """A new account with an unusable random password; the person chooses one through the
    password-reset link that is mailed to them (the caller commits)."""
    if find(email) is not None:
        raise AccountExists()
    organiser = Organiser(email=email.strip().lower(), name=name, is_admin=is_admin)
    set_password(organiser, secrets.token_urlsafe(32))
    db.session.add(organiser)
    db.session.flush()
    audit.record(actor, "account.create", subject=f"organiser:{organiser.id}",
                 details={"email": organiser.email, "admin": is_admin})  # fmt: skip
    request_reset(organiser.email, language)
    return organiser


def set_active(organiser: Organiser, active: bool, *, actor: Organiser) -> None:
    if organiser.id == actor.id and not active:
        raise InvalidInput({"account": [_l("You cannot deactivate your own account.")]})
    organiser.active = active
    audit.record(actor, "account.activate" if active else "account.deactivate",
                 subject=f"organiser:{organiser.id}")  # fmt: skip
