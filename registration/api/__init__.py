"""JSON API v1: the contract other tools and our own benchmarks use."""

from .views import bp

__all__ = ["bp"]
