"""Mail transports: SMTP through Flask-Mail, or ``.eml`` files when no MAIL_SERVER is set.

One transport is opened per batch, so a batch of messages shares one SMTP connection.
"""

from __future__ import annotations

import smtplib
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from flask import current_app
from flask_mail import Connection, Message

from .timeutil import utcnow


class Transport(Protocol):
    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def send(self, message: Message) -> None: ...


class SMTPTransport(Connection):
    """Flask-Mail's connection with a timeout, so a hanging server cannot stall the worker."""

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        timeout = current_app.config.get("MAIL_TIMEOUT", 30)
        host: smtplib.SMTP | smtplib.SMTP_SSL
        if self.mail.use_ssl:
            host = smtplib.SMTP_SSL(self.mail.server, self.mail.port, timeout=timeout)
        else:
            host = smtplib.SMTP(self.mail.server, self.mail.port, timeout=timeout)
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.host is not None:
            try:
                self.host.quit()
            except (smtplib.SMTPException, OSError):
                self.host.close()  # the server is gone already; nothing to say goodbye to


class FileTransport:
    """Writes each message as an .eml file (the embedded default: see what would be sent)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __enter__(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def send(self, message: Message) -> None:
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
        local_id = message.msgId.strip("<>").split("@", 1)[0]
        path = self.directory / f"{stamp}-{local_id}.eml"
        path.write_bytes(message.as_bytes())


def open_transport() -> Transport:
    """The configured transport: SMTP when MAIL_SERVER is set, files otherwise."""
    if current_app.config.get("MAIL_SERVER"):
        return SMTPTransport(current_app.extensions["mail"])
    return FileTransport(Path(current_app.config["MAIL_FILE_DIR"]))
