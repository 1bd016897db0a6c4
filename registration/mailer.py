"""Mail transports and the wire format.

Every email is built by the standard library's ``email`` package (``EmailMessage`` with the SMTP
policy, CRLF line ends): headers come from ``email.headerregistry.Address``, so names are encoded
and addresses are left alone however long they are, and the policy refuses any header value with
CR or LF. Subjects and display names pass through :func:`textrules.header_safe` first, so data
that slipped past the entry points' checks becomes a space instead of a failed mail. The email
package is slower than hand-assembled bytes (about 2.5 ms a mail here, most of it header
parsing and folding, which :class:`_BatchPolicy` does once per distinct value); that price buys
mails that parse without a defect (``tests/test_mail_format.py`` checks every kind with
``email.policy.strict``) and headers nobody has to fold by hand.

Structure (the HTML carries the same content as the text, and inline images sit next to it, which
is what mail clients and spam filters expect)::

    multipart/mixed
      multipart/alternative
        text/plain
        multipart/related          (only with inline images)
          text/html
          image/png                (Content-ID, shown by <img src="cid:...">)
      text/calendar, files ...     (attachments, RFC 2231 file names)

Without attachments the top level is the multipart/alternative itself.

SMTP goes through ``smtplib`` directly (with ``MAIL_TIMEOUT``, TLS/SSL and login from the
configuration); without ``MAIL_SERVER`` messages are written as ``.eml`` files. One transport is
opened per batch, so a batch shares one SMTP connection.

Addresses with a non-ASCII local part (``jürgen@example.org``) need SMTPUTF8 (RFC 6531) end to
end. With ``MAIL_SMTPUTF8`` on, such a mail is built with UTF-8 headers (the policy's
``utf8=True``) and sent with the ``SMTPUTF8`` option when the server offers it; a server that
does not offer it fails that one mail with the reason. With the setting off (the default) the
mail fails at once with the reason; every other mail is built and sent as before.
"""

from __future__ import annotations

import contextlib
import smtplib
from dataclasses import dataclass, field
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address, BaseHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import formatdate, parseaddr
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from flask import current_app, has_app_context

from .textrules import header_safe
from .timeutil import utcnow


class _BatchPolicy(EmailPolicy):
    """The SMTP policy (RFC 5322, CRLF) with a memory for header values.

    A batch repeats the same From, Reply-To, Subject and MIME headers hundreds of times, and
    parsing and folding header values is most of the cost of building a mail with the email
    package. Header objects are immutable and depend only on the name, the value and the
    policy, so one parsed (and one folded) value serves every message. Values with CR or LF
    still go to the parent, which refuses them.
    """

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if isinstance(value, Address):  # not hashable: keyed by its parts
            return name, _parsed_address(self, name, value.display_name, value.addr_spec)
        if type(value) is str and "\r" not in value and "\n" not in value:
            return name, _parsed(self, name, value)
        return super().header_store_parse(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        if isinstance(value, BaseHeader):  # a str: hashed and compared by its text
            return _folded(self, name, value)
        return super().fold_binary(name, value)


@lru_cache(maxsize=1024)
def _parsed(wire: _BatchPolicy, name: str, value: str) -> Any:
    return wire.header_factory(name, value)


@lru_cache(maxsize=1024)
def _parsed_address(wire: _BatchPolicy, name: str, display_name: str, addr_spec: str) -> Any:
    return wire.header_factory(name, Address(display_name, addr_spec=addr_spec))


@lru_cache(maxsize=1024)
def _folded(wire: _BatchPolicy, name: str, value: BaseHeader) -> bytes:
    return EmailPolicy.fold_binary(wire, name, value)


#: RFC 5322 with CRLF line ends; headers with CR/LF in a value are refused when set.
WIRE_POLICY = _BatchPolicy() + policy.SMTP
#: The same with UTF-8 headers (RFC 6532), only for mails sent with SMTPUTF8.
WIRE_POLICY_UTF8 = WIRE_POLICY.clone(utf8=True)


class SMTPUTF8Unavailable(ValueError):
    """This mail needs SMTPUTF8 and the server does not offer it (a fault of this mail, not of
    the connection: the next mail goes out over the same one)."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    #: ``maintype/subtype`` without parameters (those go to ``params``).
    content_type: str
    data: bytes
    #: Set for an image the HTML shows inline (``<img src="cid:...">``).
    content_id: str | None = None
    #: Content-Type parameters, e.g. ``{"method": "PUBLISH"}`` for a calendar entry.
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Email:
    """Everything of one email, before it becomes an ``EmailMessage``."""

    subject: str
    #: ``"Name <address>"`` or a bare address (``MAIL_DEFAULT_SENDER``).
    sender: str
    #: The recipient's address.
    to: str
    text: str
    html: str
    message_id: str
    #: The recipient's name, shown in To (mail clients and spam filters expect a name).
    to_name: str = ""
    reply_to: str | None = None
    reply_to_name: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


def parse_sender(value: str | tuple[str, str]) -> Address:
    """``MAIL_DEFAULT_SENDER`` as an address: ``"Name <addr>"``, a bare address, or a
    ``(name, addr)`` tuple. ``parseaddr`` keeps a parenthesised part of the name such as
    "Herzberg (Elster)", which a header parser would drop as a comment."""
    if isinstance(value, tuple | list):
        name, addr = value
    else:
        name, addr = parseaddr(value)
    if not addr or "@" not in addr:
        raise ValueError(f"not a mail address: {value!r}")
    return address(addr, name)


def address(addr: str, name: str = "", *, smtputf8: bool = False) -> Address:
    """An address header value; the name is made header-safe. ``Address`` parses the address
    and raises ``ValueError`` for anything but exactly one addr-spec (no CR/LF, no second
    address). An internationalised domain is written in its ASCII (IDNA) form, which every
    server takes. A non-ASCII local part needs SMTPUTF8 end to end: refused with a clear reason
    unless ``smtputf8`` (``MAIL_SMTPUTF8``) allows it."""
    local, at, domain = addr.strip().rpartition("@")
    if at and not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    if local.isascii():
        return Address(header_safe(name).strip(), addr_spec=f"{local}{at}{domain}")
    if not smtputf8:
        raise ValueError(f"non-ASCII local part (needs SMTPUTF8, MAIL_SMTPUTF8 is off): {addr!r}")
    # The email package's parser refuses a non-ASCII local part in an addr-spec; it checks
    # the shape with each such letter standing in as "x", and takes the parts as they are.
    stand_in = "".join(c if c.isascii() else "x" for c in local)
    try:
        Address(addr_spec=f"{stand_in}{at}{domain}")
    except HeaderParseError as exc:
        raise ValueError(f"not a mail address: {addr!r}") from exc
    if not local.isprintable():
        raise ValueError(f"not a mail address: {addr!r}")
    return Address(header_safe(name).strip(), username=local, domain=domain)


def needs_smtputf8(value: Address) -> bool:
    return not value.username.isascii()


def build(email: Email, *, smtputf8: bool = False) -> EmailMessage:
    """The ``EmailMessage`` for ``email`` (structure in the module docstring). With
    ``smtputf8`` an address with a non-ASCII local part is allowed, and its mail gets UTF-8
    headers."""
    sender = parse_sender(email.sender)
    recipient = address(email.to, email.to_name, smtputf8=smtputf8)
    reply_to = (
        address(email.reply_to, email.reply_to_name, smtputf8=smtputf8) if email.reply_to else None
    )
    utf8 = needs_smtputf8(recipient) or (reply_to is not None and needs_smtputf8(reply_to))
    msg = EmailMessage(policy=WIRE_POLICY_UTF8 if utf8 else WIRE_POLICY)
    msg["From"] = sender
    # As text: the header parser keeps a non-ASCII local part (noting a defect) where
    # ``Address(addr_spec=...)`` would refuse it; for ASCII addresses both are the same.
    msg["To"] = str(recipient) if utf8 else recipient
    msg["Subject"] = header_safe(email.subject)
    msg["Date"] = formatdate(utcnow().timestamp(), usegmt=True)
    msg["Message-ID"] = email.message_id
    if reply_to is not None:
        msg["Reply-To"] = str(reply_to) if utf8 else reply_to
    for name, value in email.headers.items():
        msg[name] = header_safe(value)

    inline = [a for a in email.attachments if a.content_id]
    files = [a for a in email.attachments if not a.content_id]
    # Quoted-printable keeps long lines (URLs, HTML) within the line limit and umlauts readable.
    msg.set_content(email.text, subtype="plain", cte="quoted-printable")
    msg.add_alternative(email.html, subtype="html", cte="quoted-printable")
    if inline:
        html_part = msg.get_payload()[1]
        for image in inline:
            maintype, subtype = image.content_type.split("/", 1)
            html_part.add_related(
                image.data, maintype, subtype, cid=f"<{image.content_id}>",
                disposition="inline", filename=header_safe(image.filename), params=image.params,
            )  # fmt: skip
    for attachment in files:
        maintype, subtype = attachment.content_type.split("/", 1)
        msg.add_attachment(
            attachment.data, maintype, subtype,
            filename=header_safe(attachment.filename), params=attachment.params,
        )  # fmt: skip
    return msg


class Message:
    """One email, built and serialised once, with its SMTP envelope."""

    def __init__(self, email: Email, *, smtputf8: bool | None = None) -> None:
        if smtputf8 is None:  # the setting, when there is an app (MAIL_SMTPUTF8)
            smtputf8 = has_app_context() and bool(current_app.config.get("MAIL_SMTPUTF8"))
        self.email = email
        self.mime = build(email, smtputf8=smtputf8)
        #: Sent with the SMTPUTF8 option (an address with a non-ASCII local part).
        self.smtputf8 = bool(self.mime.policy.utf8)
        #: Envelope addresses (the bounce address is the sender's).
        self.sender = self.mime["From"].addresses[0].addr_spec
        self.recipients = [self.mime["To"].addresses[0].addr_spec]
        self.msgId = email.message_id
        self._wire_bytes = self.mime.as_bytes()

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


class SMTPTransport:
    """One SMTP connection with a timeout, so a hanging server cannot stall the worker."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.server = config["MAIL_SERVER"]
        self.port = int(config.get("MAIL_PORT") or 25)
        self.use_tls = bool(config.get("MAIL_USE_TLS"))
        self.use_ssl = bool(config.get("MAIL_USE_SSL"))
        self.username = config.get("MAIL_USERNAME")
        self.password = config.get("MAIL_PASSWORD")
        self.timeout = config.get("MAIL_TIMEOUT", 30)
        self.host: smtplib.SMTP | None = None

    def __enter__(self) -> Self:
        host: smtplib.SMTP
        if self.use_ssl:
            host = smtplib.SMTP_SSL(self.server, self.port, timeout=self.timeout)
        else:
            host = smtplib.SMTP(self.server, self.port, timeout=self.timeout)
        try:
            if self.use_tls:
                host.starttls()
            if self.username and self.password:
                host.login(self.username, self.password)
        except BaseException:
            host.close()  # the socket is open already; do not leak it
            raise
        self.host = host
        return self

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
            self.host = None

    def send(self, message: Message) -> None:
        if self.host is None:
            raise RuntimeError("use the transport as a context manager")
        try:
            self.host.sendmail(
                message.sender,
                message.recipients,
                message.as_bytes(),
                mail_options=self._options(self.host, message),
            )
        except (smtplib.SMTPException, OSError):
            raise
        except Exception:
            # Failed between commands (e.g. an address smtplib cannot encode): end the open
            # transaction so the next message on this connection starts clean.
            # A broken connection shows at the next send.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self.host.rset()
            raise

    @staticmethod
    def _options(host: smtplib.SMTP, message: Message) -> list[str]:
        if not message.smtputf8:
            return []
        host.ehlo_or_helo_if_needed()
        if not host.has_extn("smtputf8"):
            raise SMTPUTF8Unavailable(
                "the mail server does not offer SMTPUTF8, which the address "
                f"{message.recipients[0]!r} needs"
            )
        # What smtplib's send_message adds for a message with UTF-8 headers (RFC 6531 3.4).
        return ["SMTPUTF8", "BODY=8BITMIME"] if host.has_extn("8bitmime") else ["SMTPUTF8"]


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
        return SMTPTransport(current_app.config)
    return FileTransport(Path(current_app.config["MAIL_FILE_DIR"]))
