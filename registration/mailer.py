"""Mail transports and the wire format.

SMTP goes through Flask-Mail's connection (with a timeout); without MAIL_SERVER messages are
written as ``.eml`` files. One transport is opened per batch, so a batch shares one SMTP
connection.

Messages are assembled here as bytes (multipart/alternative text and HTML, optional attachments,
quoted-printable and base64 via binascii). The email package's generator re-measures and
re-folds every header of every part and cost more than rendering the templates; a notification
batch of hundreds of mails needs the plain, fixed structure below, which the tests parse back with
the email package.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import smtplib
from dataclasses import dataclass, field
from email.header import Header
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from flask import current_app
from flask_mail import Connection, sanitize_address
from flask_mail import Message as FlaskMailMessage

from .timeutil import utcnow

CRLF = b"\r\n"


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes
    #: Set for an image the HTML shows inline (``<img src="cid:...">``).
    content_id: str | None = None


@dataclass
class Email:
    """Everything of one email, before it becomes bytes."""

    subject: str
    sender: str
    to: str
    text: str
    html: str
    message_id: str
    reply_to: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=512)
def _address(value: str) -> str:
    return sanitize_address(value)


@lru_cache(maxsize=512)  # a batch repeats subject, sender and reply-to
def _header(name: str, value: str) -> bytes:
    if value.isascii() and len(name) + 2 + len(value) <= 78:
        return f"{name}: {value}".encode() + CRLF
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}".encode() + CRLF


def _qp(text: str) -> bytes:
    body = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"))
    return body.replace(b"\n", CRLF)


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF)


def assemble(email: Email) -> bytes:
    """RFC 5322/2045 bytes: multipart/mixed(multipart/alternative(text, html), attachments)."""
    token = secrets.token_hex(8)
    mixed, alternative = f"=_mixed_{token}", f"=_alt_{token}"
    parts = [
        _header("From", _address(email.sender)),
        _header("To", _address(email.to)),
        _header("Subject", email.subject),
        _header("Date", formatdate(localtime=False)),
        _header("Message-ID", email.message_id),
    ]
    if email.reply_to:
        parts.append(_header("Reply-To", _address(email.reply_to)))
    for name, value in email.headers.items():
        parts.append(_header(name, value))
    parts += [
        b"MIME-Version: 1.0" + CRLF,
        f'Content-Type: multipart/mixed; boundary="{mixed}"'.encode() + CRLF,
        CRLF,
        f"--{mixed}".encode() + CRLF,
        f'Content-Type: multipart/alternative; boundary="{alternative}"'.encode() + CRLF,
        CRLF,
    ]
    for subtype, content in (("plain", email.text), ("html", email.html)):
        parts += [
            f"--{alternative}".encode() + CRLF,
            f'Content-Type: text/{subtype}; charset="utf-8"'.encode() + CRLF,
            b"Content-Transfer-Encoding: quoted-printable" + CRLF,
            CRLF,
            _qp(content) + CRLF,
        ]
    parts.append(f"--{alternative}--".encode() + CRLF)
    for attachment in email.attachments:
        disposition = "inline" if attachment.content_id else "attachment"
        parts += [
            f"--{mixed}".encode() + CRLF,
            f"Content-Type: {attachment.content_type}".encode() + CRLF,
            b"Content-Transfer-Encoding: base64" + CRLF,
            f'Content-Disposition: {disposition}; filename="{attachment.filename}"'.encode() + CRLF,
        ]
        if attachment.content_id:
            parts.append(f"Content-ID: <{attachment.content_id}>".encode() + CRLF)
        parts += [CRLF, _b64(attachment.data)]
    parts.append(f"--{mixed}--".encode() + CRLF)
    return b"".join(parts)


class Message(FlaskMailMessage):
    """A Flask-Mail message whose bytes are assembled already (see :func:`assemble`)."""

    def __init__(self, email: Email) -> None:
        super().__init__(subject=email.subject, recipients=[email.to], sender=email.sender)
        self.email = email
        self.msgId = email.message_id
        self._wire_bytes = assemble(email)

    def as_bytes(self) -> bytes:
        return self._wire_bytes


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
        (self.directory / f"{stamp}-{local_id}.eml").write_bytes(message.as_bytes())


def open_transport() -> Transport:
    """The configured transport: SMTP when MAIL_SERVER is set, files otherwise."""
    if current_app.config.get("MAIL_SERVER"):
        return SMTPTransport(current_app.extensions["mail"])
    return FileTransport(Path(current_app.config["MAIL_FILE_DIR"]))
