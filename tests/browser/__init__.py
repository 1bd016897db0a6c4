"""Browser tests: Playwright drives Debian's Chromium against a live server; axe-core checks a11y.

Fixtures and helpers are in ``conftest.py``. These tests run on SQLite only and are all marked
``slow``.
"""
