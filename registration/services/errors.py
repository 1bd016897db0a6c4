"""Domain errors. Each carries a machine code (used by the API) and a human message (translated)."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext
from flask_babel import lazy_gettext as _l


class Message(str):
    """A message in English (what the CLI and API clients get) that a page can show translated.

    ``Message("is longer than %(limit)s characters", limit=200)`` is the string
    "is longer than 200 characters"; :meth:`translated` gives it in the current locale. The
    msgids are extracted for the catalogues (``-k Message`` in the Makefile).
    """

    msgid: str
    params: dict[str, Any]

    def __new__(cls, msgid: str, **params: Any) -> Message:
        message = super().__new__(cls, msgid % params if params else msgid)
        message.msgid, message.params = msgid, params
        return message

    def translated(self) -> str:
        return gettext(self.msgid, **self.params)


def translated(message: object) -> str:
    """``message`` in the current locale when it is a :class:`Message`, else as it is."""
    return message.translated() if isinstance(message, Message) else str(message)


class ServiceError(Exception):
    """Base class: ``code`` is stable for API clients, ``str(exc)`` is for people."""

    code = "error"
    default_message = _l("The request could not be completed.")

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(str(self.message))

    def __str__(self) -> str:
        return str(self.message)


class InvalidInput(ServiceError):
    """Input that fails a rule of the domain; ``errors`` maps field names to messages."""

    code = "invalid"

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = {field: [str(m) for m in messages] for field, messages in errors.items()}
        first = next(iter(self.errors.values()), [""])[0]
        super().__init__(first)


class RegistrationClosed(ServiceError):
    code = "registration_closed"
    default_message = _l("Registration for this event is closed.")


class DuplicateRegistration(ServiceError):
    code = "duplicate"
    default_message = _l("This email address is already registered for this event.")


class IdempotencyKeyReused(InvalidInput):
    """An Idempotency-Key sent again with a different request."""

    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__(
            {"Idempotency-Key": [_l("This key was used for a different request already.")]}
        )


class EventFull(ServiceError):
    code = "full"
    default_message = _l("This event is fully booked.")


class ModeFull(ServiceError):
    """The target mode of a switch is full; the participant may agree to its waiting list."""

    code = "full"
    default_message = _l("There are no seats left for this kind of attendance.")


class NotActive(ServiceError):
    code = "not_active"
    default_message = _l("This registration has been cancelled.")


class CapacityConflict(ServiceError):
    code = "capacity_conflict"

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message)
        #: The import-format path of the value that conflicts, e.g. ``capacity.on_site``.
        self.field = field


class Busy(ServiceError):
    """The event stayed locked by another transaction for longer than the lock timeout
    (``SIGNUP_LOCK_TIMEOUT``): a clear "try again" instead of a queue of waiting requests.
    Nothing was written."""

    code = "busy"
    default_message = _l(
        "Many requests are being processed at the moment. Please try again in a moment."
    )

    def __init__(self, message: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(message)
        #: Seconds after which trying again makes sense (the ``Retry-After`` header).
        self.retry_after = retry_after
