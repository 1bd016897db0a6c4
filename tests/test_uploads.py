"""Upload abuse: the content decides the type, sizes are limited, names never reach the disk,
and files are served so that no browser runs them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from registration.extensions import db
from registration.models import Event, EventFile, Organiser
from registration.services import accounts, files

from .conftest import make_event

PASSWORD = "richtig-geheim-1"
DE = {"Accept-Language": "de"}
EN = {"Accept-Language": "en"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 200
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 200
PDF = b"%PDF-1.7\n% flyer\n"


@pytest.fixture
def organiser_client(app: Flask, client: FlaskClient) -> FlaskClient:
    event = make_event(slug="meine", title="Meine Werkstatt")
    organiser = Organiser(email="ich@example.org")
    accounts.set_password(organiser, PASSWORD)
    db.session.add(organiser)
    event.organisers.append(organiser)
    db.session.commit()
    client.post("/admin/login", data={"email": "ich@example.org", "password": PASSWORD})
    return client


def multipart(fields: dict[str, Any]) -> dict[str, Any]:
    """The body encoded in memory: the test client spools big bodies to a temporary file it
    never closes (a ResourceWarning, i.e. an error here)."""
    fields = {
        key: FileStorage(value[0], filename=value[1]) if isinstance(value, tuple) else value
        for key, value in fields.items()
    }
    boundary, body = encode_multipart(fields)
    return {"data": body, "content_type": f"multipart/form-data; boundary={boundary}"}


def upload(client: FlaskClient, data: bytes, name: str, kind: str = "attachment", **kw: Any):
    return client.post(
        "/admin/events/meine/files",
        **multipart({"file": (io.BytesIO(data), name), "kind": kind, **kw}),
        follow_redirects=True,
        headers=EN,
    )


def stored_files() -> list[EventFile]:
    db.session.expire_all()
    return list(db.session.scalars(select(EventFile).order_by(EventFile.id)))


def upload_dir(app: Flask) -> Path:
    return Path(app.config["UPLOAD_DIR"])


def files_on_disk(app: Flask) -> list[str]:
    folder = upload_dir(app)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    ("data", "name", "kind"),
    [
        (b"MZ\x90\x00\x03\x00\x00\x00" + b"\0" * 100, "flyer.pdf", "attachment"),  # an .exe
        (b"MZ\x90\x00\x03\x00\x00\x00" + b"\0" * 100, "titel.png", "title_image"),
        (PDF, "plan.png", "title_image"),  # a PDF is no title image, whatever its name
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "logo.png",
            "title_image",
        ),
        (b'<?xml version="1.0"?><svg onload="alert(1)"/>', "logo.svg", "attachment"),
        (b"<!DOCTYPE html><html><script>alert(1)</script></html>", "bild.jpg", "attachment"),
        (b"GIF89a" + b"\0" * 50, "anim.gif", "attachment"),
        (b"", "leer.pdf", "attachment"),
        (b"PK\x03\x04 zip with a macro", "einladung.docx", "attachment"),
    ],
)
def test_files_are_judged_by_their_bytes_not_their_names(app, organiser_client, data, name, kind):
    page = upload(organiser_client, data, name, kind).get_data(as_text=True)
    assert "The file was not accepted" in page
    assert f"{name}: only" in page
    assert stored_files() == []
    assert files_on_disk(app) == []


def test_a_pdf_named_png_is_stored_and_served_as_a_pdf(app, organiser_client):
    upload(organiser_client, PDF, "plan.png", title="Lageplan")
    (file,) = stored_files()
    assert (file.content_type, file.filename) == ("application/pdf", "plan.pdf")
    assert file.storage_name.endswith(".pdf")
    with organiser_client.get(f"/events/meine/files/{file.id}/plan.pdf") as response:
        assert response.status_code == 200
        assert response.mimetype == "application/pdf"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Disposition"] == "inline; filename=plan.pdf"


def test_an_image_named_exe_becomes_a_png(app, organiser_client):
    upload(organiser_client, PNG, "setup.exe")
    (file,) = stored_files()
    assert (file.content_type, file.filename) == ("image/png", "setup.png")


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../../etc/passwd.pdf", "passwd.pdf"),
        ("/etc/cron.d/evil.pdf", "evil.pdf"),
        ("..", "datei.pdf"),
        ("....//....//.pdf", "datei.pdf"),
        ("%2e%2e%2fevil.pdf", "2e-2e-2fevil.pdf"),
        ("Einladung Übersicht.pdf", "Einladung-Ubersicht.pdf"),
    ],
)
def test_uploaded_names_never_choose_a_path(app, organiser_client, tmp_path, name, shown):
    upload(organiser_client, PDF, name)
    (file,) = stored_files()
    assert file.filename == shown
    # On disk only a random name in the upload folder; nothing written anywhere else.
    assert files_on_disk(app) == [file.storage_name]
    assert len(file.storage_name) == 32 + len(".pdf")
    assert not (tmp_path / "passwd.pdf").exists() and not (tmp_path / "evil.pdf").exists()
    with organiser_client.get(f"/events/meine/files/{file.id}/{shown}") as response:
        assert response.status_code == 200 and response.data == PDF


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("..\\..\\windows\\system32\\evil.pdf", "evil.pdf"),
        ("C:\\Users\\x\\Flyer Tagung (2026).pdf", "Flyer-Tagung-2026.pdf"),
        ("\\\\server\\share\\a.pdf", "a.pdf"),
    ],
)
def test_windows_paths_lose_their_folders(name, safe):
    """Old browsers send the full Windows path (the test client cannot send backslashes)."""
    assert files.safe_filename(name, ".pdf") == safe


def test_file_urls_cannot_reach_other_files(app, organiser_client):
    upload(organiser_client, PDF, "flyer.pdf")
    (file,) = stored_files()
    other = make_event(slug="andere")
    for url in [
        f"/events/meine/files/{file.id}/..%2F..%2Fconfig.py",
        f"/events/meine/files/{file.id}/../../config.py",
        f"/events/meine/files/{file.id}/{file.storage_name}",
        f"/events/meine/files/{file.id}/FLYER.pdf",
        f"/events/{other.slug}/files/{file.id}/flyer.pdf",
        f"/events/meine/files/{file.id + 1}/flyer.pdf",
    ]:
        with organiser_client.get(url) as response:
            assert response.status_code == 404, url


def test_a_draft_events_files_are_not_public(app, organiser_client):
    upload(organiser_client, PDF, "flyer.pdf")
    (file,) = stored_files()
    event = db.session.scalars(select(Event).where(Event.slug == "meine")).one()
    event.status = "draft"
    db.session.commit()
    anonymous = app.test_client()
    with anonymous.get(f"/events/meine/files/{file.id}/flyer.pdf") as response:
        assert response.status_code == 404


def test_a_50_mb_upload_gets_a_clear_413_page_and_nothing_is_stored(app, organiser_client):
    assert app.config["MAX_CONTENT_LENGTH"] == 16 * 1024 * 1024  # the shipped limit
    huge = b"%PDF-1.7\n" + b"0" * (50 * 1024 * 1024)
    response = organiser_client.post(
        "/admin/events/meine/files",
        **multipart({"file": (io.BytesIO(huge), "huge.pdf"), "kind": "attachment"}),
        headers=DE,
    )
    assert response.status_code == 413
    page = response.get_data(as_text=True)
    assert "Die Datei ist zu groß" in page and "15 MB" in page
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert stored_files() == []
    assert files_on_disk(app) == []


@pytest.mark.parametrize(
    ("kind", "size", "limit"),
    [("title_image", 5 * 1024 * 1024 + 1, "5 MB"), ("attachment", 15 * 1024 * 1024 + 1, "15 MB")],
)
def test_per_kind_limits_below_the_request_limit(app, organiser_client, kind, size, limit):
    data = PNG + b"\0" * (size - len(PNG))
    page = upload(organiser_client, data, "gross.png", kind).get_data(as_text=True)
    assert f"gross.png: larger than {limit}" in page
    assert stored_files() == []
    assert files_on_disk(app) == []


def test_a_long_file_name_in_the_message_is_cut_short(app, organiser_client):
    name = "x" * 3000 + ".gif"
    response = upload(organiser_client, b"GIF89a", name)
    page = response.get_data(as_text=True)
    assert "x" * 77 + "..." in page and "x" * 200 not in page


@pytest.mark.parametrize(
    ("data", "name", "kind", "content_type"),
    [
        (PNG, "titel.png", "title_image", "image/png"),
        (JPEG, "foto.jpeg", "attachment", "image/jpeg"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\0" * 50, "bild.webp", "attachment", "image/webp"),
        (PDF, "flyer.pdf", "attachment", "application/pdf"),
    ],
)
def test_served_files_have_type_disposition_and_nosniff(
    app, organiser_client, data, name, kind, content_type
):
    upload(organiser_client, data, name, kind)
    (file,) = stored_files()
    anonymous = app.test_client()
    with anonymous.get(f"/events/meine/files/{file.id}/{file.filename}") as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == content_type
        assert response.headers["Content-Disposition"] == f"inline; filename={file.filename}"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.data == data
