"""The check-in QR code: the PNG shows exactly segno's modules, and sign-ups make it once."""

from __future__ import annotations

import struct
import zlib
from email import message_from_bytes, policy

import segno
from sqlalchemy import select

from registration import qrcode
from registration.extensions import db
from registration.models import EventFormat, OutboxMessage, Registration
from registration.notifications import build_message
from registration.services import signup

from .conftest import make_event


def decode_png(data: bytes) -> tuple[int, list[list[int]]]:
    """Width and rows of 0/1 pixels (1 = white) of a 1-bit greyscale PNG."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    position, idat, width = 8, b"", 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        tag = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(tag + body) == crc
        if tag == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (width, depth, colour) == (height, 1, 0)
        elif tag == b"IDAT":
            idat += body
        position += 12 + length
    raw, stride = zlib.decompress(idat), (width + 7) // 8 + 1
    rows = []
    for y in range(width):
        line = raw[y * stride : (y + 1) * stride]
        assert line[0] == 0  # no filter
        bits = "".join(f"{byte:08b}" for byte in line[1:])[:width]
        rows.append([int(b) for b in bits])
    return width, rows


def test_png_shows_the_modules_with_a_quiet_zone():
    code = segno.make("https://anmeldung.example.org/admin/c/1-abcdefghijklmnop", error="m")
    width, rows = decode_png(qrcode.png(code.matrix, scale=3, border=4))
    n = len(code.matrix)
    assert width == (n + 8) * 3
    for y in range(width):
        for x in range(width):
            r, c = y // 3 - 4, x // 3 - 4
            dark = 0 <= r < n and 0 <= c < n and code.matrix[r][c]
            assert rows[y][x] == (0 if dark else 1), (x, y)


def test_on_site_sign_ups_get_their_code_once_after_the_commit(app):
    event = make_event(format=EventFormat.HYBRID, capacity_online=5)
    on_site_result = signup.register(
        event,
        signup.SignupData("a@example.org", "A", "B", attendance="on_site", privacy_consent=True),
    )
    online_result = signup.register(
        event,
        signup.SignupData("b@example.org", "C", "D", attendance="online", privacy_consent=True),
    )
    on_site, online = on_site_result.registration, online_result.registration
    # Not while the event is locked: the code is made in a second step after the commit.
    assert on_site.checkin_qr is None
    db.session.commit()
    assert online_result.checkin_code is None
    signup.add_checkin_qr(on_site_result)
    signup.add_checkin_qr(online_result)
    db.session.expire_all()
    assert on_site.checkin_qr is not None and online.checkin_qr is None
    assert on_site.checkin_qr == qrcode.checkin_png(on_site)  # deterministic: same link
    signup.change_attendance(online, "on_site")
    assert online.checkin_qr is not None
    assert qrcode.checkin_url(on_site).endswith(f"/admin/c/{signup.checkin_token(on_site)}")


def test_the_api_sign_up_stores_the_code(app, client):
    event = make_event(capacity_on_site=1)
    first, second = (
        client.post(
            f"/api/v1/events/{event.slug}/registrations",
            json={"email": f"{n}@example.org", "first_name": "A", "last_name": n,
                  "privacy_consent": True},
        ).get_json()
        for n in ("first", "second")
    )  # fmt: skip
    assert (first["status"], second["status"]) == ("confirmed", "waitlisted")
    confirmed, waiting = (db.session.get(Registration, r["id"]) for r in (first, second))
    assert confirmed.checkin_qr == qrcode.checkin_png(confirmed)
    assert waiting.checkin_qr is None


def test_a_mail_never_goes_out_without_the_code(app):
    """A crash between the sign-up's commit and the second step leaves no code: the mail worker
    makes it, attaches it and stores it."""
    event = make_event()
    result = signup.register(
        event, signup.SignupData("a@example.org", "A", "B", privacy_consent=True)
    )
    db.session.commit()  # and add_checkin_qr() never runs
    row = db.session.scalars(select(OutboxMessage)).one()
    with app.test_request_context("/", base_url="http://localhost"):
        message = build_message(row)
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    (image,) = [p for p in parsed.walk() if p.get_content_type() == "image/png"]  # in the HTML
    registration = db.session.get(Registration, result.registration_id)
    assert image.get_content() == qrcode.checkin_png(registration)
    db.session.commit()
    db.session.expire_all()
    assert registration.checkin_qr == image.get_content()


def test_the_waiting_list_gets_its_code_when_promoted(app):
    event = make_event(capacity_on_site=1)
    results = [
        signup.register(event, signup.SignupData(f"{n}@example.org", "A", n, privacy_consent=True))
        for n in ("first", "second", "third")
    ]
    db.session.commit()
    for result in results:
        signup.add_checkin_qr(result)
    first, second, third = (result.registration for result in results)
    assert first.checkin_qr is not None
    assert second.status == "waitlisted" and second.checkin_qr is None  # no mail carries it yet
    signup.cancel(first)
    assert second.status == "confirmed"
    assert second.checkin_qr == qrcode.checkin_png(second)
    signup.confirm_anyway(third)
    assert third.checkin_qr == qrcode.checkin_png(third)


def test_the_form_and_the_back_office_store_the_code_too(app, client):
    from sqlalchemy import select

    from registration.models import Organiser
    from registration.services import accounts

    event = make_event(capacity_on_site=5)
    client.post(f"/events/{event.slug}", data={
        "email": "form@example.org", "first_name": "Änne", "last_name": "Form",
        "privacy_consent": "y",
    })  # fmt: skip
    organiser = Organiser(email="orga@example.org", is_admin=True)
    accounts.set_password(organiser, "richtig-geheim-1")
    db.session.add(organiser)
    db.session.commit()
    client.post("/admin/login", data={"email": "orga@example.org", "password": "richtig-geheim-1"})
    client.post(f"/admin/events/{event.slug}/participants/new", data={
        "email": "telefon@example.org", "first_name": "Jürgen", "last_name": "Telefon", "consent": "y",
    })  # fmt: skip
    db.session.expire_all()
    people = db.session.scalars(select(Registration).order_by(Registration.id)).all()
    assert [p.email for p in people] == ["form@example.org", "telefon@example.org"]
    for person in people:
        assert person.checkin_qr == qrcode.checkin_png(person)
