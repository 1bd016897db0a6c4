"""The organisers' back office."""

from . import questions  # noqa: F401  (registers its views on bp)
from .views import bp, init_app

__all__ = ["bp", "init_app"]
