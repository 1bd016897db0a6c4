"""Pages for participants."""

from .views import bp

__all__ = ["bp"]
