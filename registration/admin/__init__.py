"""The organisers' back office."""

from . import privacy as privacy  # registers its routes on the blueprint
from .views import bp, init_app

__all__ = ["bp", "init_app"]
