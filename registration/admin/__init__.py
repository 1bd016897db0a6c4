"""The organisers' back office."""

from . import privacy, questions, tokens  # noqa: F401  (register their views on bp)
from .views import bp, init_app

__all__ = ["bp", "init_app"]
