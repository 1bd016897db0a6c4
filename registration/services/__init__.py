"""Domain services: the only code that changes a registration's status.

Services flush but never commit: the caller (a view, the API, the CLI) commits once, so a service's
changes and the outbox rows they need land in one transaction or not at all.
"""
