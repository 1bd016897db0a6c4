"""Input validation shared by the sign-up form and the JSON API."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from wtforms import Field, Form, StringField
from wtforms.validators import AnyOf, DataRequired, Email, Length, Optional, ValidationError

from .models import Attendance


def strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def no_control_characters(_form: Form, field: Field) -> None:
    """Refuse NUL and other control characters (PostgreSQL cannot even store NUL)."""
    if isinstance(field.data, str) and any(ord(c) < 32 or ord(c) == 127 for c in field.data):
        raise ValidationError(_l("Please remove the control characters from this field."))


class ParticipantFields:
    """Name, address and organisation: the fields every sign-up has (a mixin for forms)."""

    first_name = StringField(
        _l("First name"),
        filters=[strip],
        validators=[
            DataRequired(_l("Please enter your first name.")),
            Length(max=100, message=_l("Please use at most %(max)d characters.")),
            no_control_characters,
        ],
    )
    last_name = StringField(
        _l("Last name"),
        filters=[strip],
        validators=[
            DataRequired(_l("Please enter your last name.")),
            Length(max=100, message=_l("Please use at most %(max)d characters.")),
            no_control_characters,
        ],
    )
    email = StringField(
        _l("Email address"),
        filters=[strip],
        validators=[
            DataRequired(_l("Please enter your email address.")),
            Length(max=254, message=_l("Please use at most %(max)d characters.")),
            no_control_characters,
            Email(_l("Please enter a valid email address, e.g. name@example.org.")),
        ],
    )
    organisation = StringField(
        _l("Organisation"),
        filters=[strip],
        validators=[
            Optional(),
            Length(max=200, message=_l("Please use at most %(max)d characters.")),
            no_control_characters,
        ],
    )


class ApiSignupForm(ParticipantFields, Form):
    """The JSON API's sign-up fields (fed from the JSON body; the API checks types first)."""

    attendance = StringField(
        validators=[
            Optional(),
            AnyOf(
                [m.value for m in Attendance],
                message=_l("Please choose on site or online."),
            ),
        ]
    )
    language = StringField(
        validators=[Optional(), AnyOf(["de", "en"], message=_l("Please choose de or en."))]
    )
