"""Event files (title image, attachments): checked by content, stored under a random name."""

from __future__ import annotations

import re
import secrets
import unicodedata
from pathlib import Path

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import Event, EventFile, FileKind

#: What may be uploaded: content type -> (magic bytes check, extension).
IMAGE_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
ATTACHMENT_TYPES = {**IMAGE_TYPES, "application/pdf": ".pdf"}
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_ATTACHMENT_BYTES = 15 * 1024 * 1024
_PENDING_DELETES = "event_files_to_delete"


class FileRejected(ValueError):
    """The file is not acceptable; the message says why (for organisers)."""


def sniff_content_type(data: bytes) -> str | None:
    """The type the bytes really are (names and browsers' claims are not trusted)."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def safe_filename(name: str, extension: str) -> str:
    """ASCII download name, no folders: 'Flyer Tagung (2026).pdf' -> 'Flyer-Tagung-2026.pdf'."""
    stem = Path(name.replace("\\", "/")).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_")[:80] or "datei"
    return stem + extension


def _shown_name(name: str) -> str:
    """The name as the organiser knows it, without folders and cut short (it goes into a flash
    message, i.e. the session cookie, which must stay small)."""
    name = Path(name.replace("\\", "/")).name
    return name if len(name) <= 80 else name[:77] + "..."


def upload_dir() -> Path:
    path = Path(current_app.config.get("UPLOAD_DIR") or Path(current_app.instance_path) / "uploads")
    path.mkdir(parents=True, exist_ok=True)
    return path


def path_of(file: EventFile) -> Path:
    return upload_dir() / file.storage_name


def store(event: Event, kind: FileKind, data: bytes, filename: str, title: str = "") -> EventFile:
    """Check and save a file for ``event``. A new title image replaces the old one."""
    content_type = sniff_content_type(data)
    allowed = IMAGE_TYPES if kind == FileKind.TITLE_IMAGE else ATTACHMENT_TYPES
    limit = MAX_IMAGE_BYTES if kind == FileKind.TITLE_IMAGE else MAX_ATTACHMENT_BYTES
    if content_type not in allowed:
        raise FileRejected(
            _l(
                "%(name)s: only %(types)s files are accepted",
                name=_shown_name(filename),
                types=", ".join(sorted(set(allowed.values()))),
            )
        )
    if len(data) > limit:
        raise FileRejected(
            _l(
                "%(name)s: larger than %(size)d MB",
                name=_shown_name(filename),
                size=limit // (1024 * 1024),
            )
        )
    extension = allowed[content_type]
    storage_name = secrets.token_hex(16) + extension
    (upload_dir() / storage_name).write_bytes(data)
    if kind == FileKind.TITLE_IMAGE and event.title_image is not None:
        remove(event.title_image)
    file = EventFile(
        kind=kind,
        title=title,
        filename=safe_filename(filename, extension),
        content_type=content_type,
        size=len(data),
        storage_name=storage_name,
        position=len(event.files),
    )
    event.files.append(file)
    db.session.flush()
    return file


def copy(source: EventFile, event: Event) -> EventFile:
    """A copy of another event's file for ``event`` (duplicating an event): its own bytes
    under a new name, so removing either leaves the other."""
    extension = Path(source.storage_name).suffix
    storage_name = secrets.token_hex(16) + extension
    (upload_dir() / storage_name).write_bytes(path_of(source).read_bytes())
    file = EventFile(
        kind=source.kind,
        title=source.title,
        filename=source.filename,
        content_type=source.content_type,
        size=source.size,
        storage_name=storage_name,
        position=len(event.files),
    )
    event.files.append(file)
    db.session.flush()
    return file


def remove(file: EventFile) -> None:
    """Delete a file's row now and its bytes once the transaction commits (so a rollback never
    leaves a row whose file is gone)."""
    db.session.info.setdefault(_PENDING_DELETES, []).append(path_of(file))
    file.event.files.remove(file)
    db.session.flush()


@sa_event.listens_for(Session, "after_commit")
def _delete_committed_removals(session: Session) -> None:
    for path in session.info.pop(_PENDING_DELETES, []):
        path.unlink(missing_ok=True)


@sa_event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back_removals(session: Session, _previous: object) -> None:
    session.info.pop(_PENDING_DELETES, None)
