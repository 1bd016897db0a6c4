"""The organisers' back office: one module of views per concern, all on one blueprint."""

from . import (  # noqa: F401  (each registers its views on bp)
    accounts,
    auth,
    checkin,
    events,
    exports,
    messages,
    participants,
    privacy,
    questions,
    tokens,
)
from .views import bp, init_app

__all__ = ["bp", "init_app"]
