"""Pages for participants."""

from . import privacy as privacy  # registers its routes on the blueprint
from .views import bp

__all__ = ["bp"]
