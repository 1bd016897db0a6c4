"""Domain errors. Each carries a machine code (used by the API) and a human message (translated)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l


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
