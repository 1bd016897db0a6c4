"""A real SMTP server for tests (aiosmtpd on a free local port) that keeps what it receives.

Recipients starting with ``reject`` get a permanent 550, with ``later`` a temporary 451.

Faults: ``SMTPServer(on_data=...)`` calls ``on_data(n, message)`` for the n-th mail (from 1)
before the server answers DATA, in a thread of its own, so it may block on an Event or Barrier
the test controls (a slow relay). It returns ``None`` (accept: 250), an answer such as
``"451 4.3.0 busy"`` or ``"554 5.6.0 no"`` (refused, not kept), :data:`DROP`: the mail is
kept (the server has accepted it) and the connection closes without an answer, the fault that
leaves a client not knowing, or :data:`HANG_UP`: the connection closes and the mail is not
kept. ``smtputf8=True`` offers the SMTPUTF8 extension.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: ``on_data`` returns this to keep the mail and close the connection without answering.
DROP = "drop"
#: ``on_data`` returns this to close the connection without keeping the mail.
HANG_UP = "hang up"

OnData = Callable[[int, EmailMessage], str | None]


class RecordingHandler:
    def __init__(self, on_data: OnData | None = None) -> None:
        self.messages: list[EmailMessage] = []
        #: The bytes of each message as received (SMTPUTF8 headers are raw UTF-8).
        self.raw: list[bytes] = []
        #: The envelope recipients of each message (a Bcc header would add to these).
        self.envelope_recipients: list[list[str]] = []
        #: The MAIL FROM options of each message (e.g. ``SMTPUTF8``).
        self.mail_options: list[list[str]] = []
        self.lock = threading.Lock()
        self.on_data = on_data
        self.data_commands = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list
    ) -> str:
        if address.startswith("reject"):
            return "550 5.1.1 No such mailbox"
        if address.startswith("later"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        answer = None
        if self.on_data is not None:
            with self.lock:
                self.data_commands += 1
                n = self.data_commands
            # In a thread: the hook may wait for the test, and the other sessions go on.
            answer = await asyncio.to_thread(self.on_data, n, message)  # type: ignore[arg-type]
        if answer == HANG_UP:
            server.transport.abort()
            return "451 4.3.0 gone"  # nobody hears it: the connection is closed
        if answer is not None and answer != DROP:
            return answer
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.raw.append(envelope.content)
            self.envelope_recipients.append(list(envelope.rcpt_tos))
            self.mail_options.append(list(envelope.mail_options))
        if answer == DROP:
            server.transport.abort()  # accepted, but the client never hears so
        return "250 Message accepted for delivery"


class SMTPServer:
    """``start()``/``stop()`` a real SMTP server; ``messages`` holds the parsed mails."""

    def __init__(
        self,
        port: int | None = None,
        login: tuple[str, str] | None = None,
        *,
        on_data: OnData | None = None,
        smtputf8: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.handler = RecordingHandler(on_data)
        self.smtputf8 = smtputf8
        self.controller: Controller | None = None
        #: With a login, the server offers AUTH and records who logged in.
        self.login = login
        self.logins: list[str] = []

    @property
    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def envelope_recipients(self) -> list[list[str]]:
        with self.handler.lock:
            return list(self.handler.envelope_recipients)

    @property
    def raw(self) -> list[bytes]:
        with self.handler.lock:
            return list(self.handler.raw)

    @property
    def mail_options(self) -> list[list[str]]:
        with self.handler.lock:
            return list(self.handler.mail_options)

    def start(self) -> None:
        auth: dict[str, Any] = {}
        if self.login is not None:
            # Offered without TLS (a local test server); aiosmtpd warns when it is also
            # required, so the test checks that the client logged in.
            auth = {"authenticator": self._authenticate, "auth_require_tls": False}
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            enable_SMTPUTF8=self.smtputf8,
            **auth,
        )
        self.controller.start()

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        user, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append(user)
        return AuthResult(success=(user, password) == self.login, handled=False)

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]


def recipient(message: EmailMessage) -> str:
    """The address in To, without the name the mail carries next to it."""
    (address,) = message["To"].addresses
    return address.addr_spec


def inline_images(message: EmailMessage) -> list[EmailMessage]:
    """Images the HTML part shows (the parts with a Content-ID, in multipart/related)."""
    return [part for part in message.walk() if part["Content-ID"]]
