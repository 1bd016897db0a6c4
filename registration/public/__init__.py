"""Pages for participants."""

from . import privacy  # noqa: F401  (registers its views on bp)
from .views import bp

__all__ = ["bp"]
