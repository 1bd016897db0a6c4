"""Response headers: a strict Content-Security-Policy and framing rules.

Every page refuses to be framed, except the embeddable sign-up form, which the sites named in
``EMBED_ALLOWED_ORIGINS`` (space- or comma-separated origins) may frame.
"""

from __future__ import annotations

import re

from flask import Flask, Response, current_app, request

EMBED_ENDPOINTS = frozenset({"public.embed", "public.embed_thanks"})

BASE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'"
)


_ORIGIN_RE = re.compile(r"^https?://(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?$")


def embed_origins() -> list[str]:
    """The configured origins; anything that is not a plain origin is ignored (and logged), so a
    setting can never inject other policy directives."""
    raw = current_app.config.get("EMBED_ALLOWED_ORIGINS") or ""
    origins = []
    for origin in raw.replace(",", " ").split():
        if _ORIGIN_RE.match(origin):
            origins.append(origin.rstrip("/"))
        else:
            current_app.logger.warning("EMBED_ALLOWED_ORIGINS: ignoring %r (not an origin)", origin)
    return origins


def set_security_headers(response: Response) -> Response:
    if request.endpoint in EMBED_ENDPOINTS:
        ancestors = " ".join(["'self'", *embed_origins()])
    else:
        ancestors = "'none'"
        response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault(
        "Content-Security-Policy", f"{BASE_POLICY}; frame-ancestors {ancestors}"
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    return response


def init_app(app: Flask) -> None:
    app.after_request(set_security_headers)
