"""The organisers' back office."""

from . import tokens  # registers the API token pages on the blueprint
from .views import bp, init_app

__all__ = ["bp", "init_app", "tokens"]
