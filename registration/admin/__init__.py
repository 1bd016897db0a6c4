"""The organisers' back office."""

from .views import bp, init_app

__all__ = ["bp", "init_app"]
