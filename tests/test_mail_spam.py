"""Every kind of mail through SpamAssassin's local rules: a confirmation with the check-in QR code
once scored 3.1-3.8 (an image with little HTML, a bare address in To) and risked the junk folder.

Needs the ``spamassassin`` command (Debian: ``apt-get install spamassassin``; the package ships
its rules, no ``sa-update`` needed). Without it the test is skipped, unless
``REQUIRE_SPAMASSASSIN=1`` (CI) makes that a failure. All mails go through one invocation
(``--mbox``), because starting SpamAssassin costs about a second.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select

from registration.extensions import db
from registration.models import OutboxMessage
from registration.notifications import QR_KINDS

from .conftest import make_event
from .smtp import inline_images
from .test_mail import register
from .test_mail_format import ALL_KINDS, LONG_SENDER, build, row_for, strict

#: Below this, no rule set of any receiving server should care (SpamAssassin's spam line is 5).
MAX_SCORE = 1.0
MBOX_SEPARATOR = b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n"


@pytest.fixture
def spamassassin() -> str:
    path = shutil.which("spamassassin")
    if path is None:
        reason = "the spamassassin command is not installed (apt-get install spamassassin)"
        if os.environ.get("REQUIRE_SPAMASSASSIN") == "1":
            pytest.fail(f"REQUIRE_SPAMASSASSIN=1 but {reason}")
        pytest.skip(reason)
    return path


def as_mbox(messages: list[bytes]) -> bytes:
    """mbox: a separator line before each message, LF line ends, body lines starting with
    "From " quoted (mboxrd)."""
    out = []
    for raw in messages:
        lines = raw.replace(b"\r\n", b"\n").split(b"\n")
        quoted = [b">" + line if re.match(rb">*From ", line) else line for line in lines]
        out.append(MBOX_SEPARATOR + b"\n".join(quoted) + b"\n")
    return b"".join(out)


def scores(spamassassin: str, messages: list[bytes], prefs: str) -> dict[str, tuple[float, str]]:
    """Message-ID -> (score, rules that hit), from SpamAssassin's local rules only."""
    result = subprocess.run(
        [spamassassin, "--local", "--test-mode", "--mbox", "--prefspath", prefs,
         "--cf", "use_bayes 0"],
        input=as_mbox(messages), capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    found = {}
    for chunk in result.stdout.split(MBOX_SEPARATOR):
        if not chunk.strip():
            continue
        checked = message_from_bytes(chunk, policy=policy.default)
        status = " ".join(str(checked["X-Spam-Status"]).split())
        score = re.search(r"score=(-?[0-9.]+)", status)
        rules = re.search(r"tests=(.*?)\s+(?:autolearn|version)=", status)
        assert score and rules, status
        found[str(checked["Message-ID"])] = (float(score.group(1)), rules.group(1).replace(" ", ""))
    return found


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the database plays no part
def test_every_kind_stays_far_below_the_spam_line(app, spamassassin, tmp_path):
    app.config["MAIL_DEFAULT_SENDER"] = LONG_SENDER
    messages = {kind: build(app, row_for(kind, email="jm@example.org")) for kind in ALL_KINDS}
    # The least text a mail with the QR code can have: SpamAssassin counts the HTML's length, and
    # an image with less than 3,200 characters of HTML scores up to 2.8 (HTML_IMAGE_ONLY_*).
    event = make_event(slug="kurz", title="Tag", contact_email="")
    for language in ("de", "en"):
        registration = register(
            event, language, first_name="Al", last_name="Li", email=f"{language}@example.org",
            language=language,
        )  # fmt: skip
        (row,) = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.registration_id == registration.id)
        )
        messages[f"confirmation, little text, {language}"] = build(app, row)
    prefs = tmp_path / "user_prefs"
    prefs.write_text("")  # no file in the home directory, no learnt scores
    checked = scores(spamassassin, [m.as_bytes() for m in messages.values()], str(prefs))
    by_kind = {kind: checked[message.msgId] for kind, message in messages.items()}
    assert len(by_kind) == len(ALL_KINDS) + 2
    assert all(inline_images(strict(messages[kind].as_bytes())) for kind in QR_KINDS)
    too_high = {kind: hit for kind, hit in by_kind.items() if hit[0] >= MAX_SCORE}
    assert too_high == {}, f"score >= {MAX_SCORE}: {too_high}"
