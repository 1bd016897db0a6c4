"""Logins under pressure: the lockout counts every attempt atomically, and a locked account, an
unknown address and a wrong password get the same answer after the same work."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from registration.extensions import db
from registration.models import AuditEntry, Organiser
from registration.services import accounts
from registration.timeutil import utcnow

from .test_admin import PASSWORD, make_organiser


def test_concurrent_wrong_passwords_check_at_most_five_and_lock_the_account(app):
    make_organiser("ich@example.org")
    attempts = 16
    barrier = threading.Barrier(attempts)
    answers: list[str] = []

    def wrong_password() -> None:
        with app.app_context():
            barrier.wait()
            try:
                accounts.authenticate("ich@example.org", "falsch-geraten")
            except accounts.LoginFailed as exc:
                answers.append(str(exc))
            finally:
                db.session.commit()
                db.session.remove()

    threads = [threading.Thread(target=wrong_password) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == attempts and len(set(answers)) == 1
    db.session.expire_all()
    actions = db.session.scalars(select(AuditEntry.action)).all()
    assert actions.count("login.failed") == accounts.MAX_FAILURES
    assert actions.count("login.locked") == attempts - accounts.MAX_FAILURES
    me = db.session.scalars(select(Organiser)).one()
    assert me.locked_until is not None and me.locked_until > utcnow()
    with pytest.raises(accounts.LoginFailed):  # even the right password waits now
        accounts.authenticate("ich@example.org", PASSWORD)


@pytest.mark.parametrize("case", ["unknown", "locked", "wrong"])
def test_every_refusal_checks_one_password_and_says_the_same(app, monkeypatch, case):
    me = make_organiser("ich@example.org")
    if case == "locked":
        me.locked_until = utcnow().replace(year=utcnow().year + 1)
        db.session.commit()
    checked: list[str] = []
    real_check = accounts.check_password_hash

    def counting_check(pwhash: str, password: str) -> bool:
        checked.append(pwhash)
        return real_check(pwhash, password)

    monkeypatch.setattr(accounts, "check_password_hash", counting_check)
    email = "niemand@example.org" if case == "unknown" else "ich@example.org"
    password = PASSWORD if case == "locked" else "falsch"
    with pytest.raises(accounts.LoginFailed) as refused:
        accounts.authenticate(email, password)
    assert len(checked) == 1  # the same work whatever the reason
    assert str(refused.value) == str(accounts.LoginFailed())
