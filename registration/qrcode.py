"""The personal check-in QR code (segno builds the code; a small PNG writer draws it)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import segno
from flask import current_app

from . import tokens
from .models import Attendance, Registration


def checkin_url(registration: Registration) -> str:
    """The link in the QR code (built by hand: no request context needed, e.g. in the CLI)."""
    return _checkin_url(registration.id, registration.token_salt)


def _checkin_url(registration_id: int, token_salt: str) -> str:
    token = tokens.short_token(registration_id, token_salt, "checkin")
    return f"{current_app.config['BASE_URL']}/admin/c/{token}"


def checkin_png(registration: Registration) -> bytes:
    """The check-in link as a PNG QR code."""
    return checkin_png_for(registration.id, registration.token_salt)


def checkin_png_for(registration_id: int, token_salt: str) -> bytes:
    """:func:`checkin_png` from the two values it depends on (no loaded row needed). A fixed
    mask skips scoring all eight (a third of the time; still easy to scan)."""
    code = segno.make(_checkin_url(registration_id, token_salt), error="m", micro=False, mask=0)
    return png(code.matrix)


def ensure_checkin_qr(registration: Registration) -> None:
    """Make the code once for an on-site registration (up to three mails carry it). Stored with
    the caller's next flush."""
    if registration.attendance == Attendance.ON_SITE and registration.checkin_qr is None:
        registration.checkin_qr = checkin_png(registration)


def png(matrix: Sequence[Sequence[int]], scale: int = 4, border: int = 4) -> bytes:
    """A black-and-white PNG of a QR module matrix (1 = dark). segno's own PNG writer costs
    more than making the code; this one-bit image is a few lines of zlib."""
    size = (len(matrix) + 2 * border) * scale
    light_row = b"\x00" + b"\xff" * ((size + 7) // 8)
    lines = [light_row] * (border * scale)
    for modules in matrix:
        bits = "1" * (border * scale)
        bits += "".join(("0" if dark else "1") * scale for dark in modules)
        bits += "1" * (border * scale + (-size % 8))
        line = b"\x00" + int(bits, 2).to_bytes(len(bits) // 8, "big")
        lines.extend([line] * scale)
    lines.extend([light_row] * (border * scale))

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(lines), 6))
        + chunk(b"IEND", b"")
    )
