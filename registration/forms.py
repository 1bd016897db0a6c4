"""Input validation shared by the sign-up form and the JSON API."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import current_app, has_request_context, request
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.datastructures import CombinedMultiDict, MultiDict
from wtforms import (
    BooleanField,
    Field,
    Form,
    RadioField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields import SelectChoice
from wtforms.validators import (
    AnyOf,
    DataRequired,
    Email,
    InputRequired,
    Length,
    Optional,
    StopValidation,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from . import textrules
from .formatting import mode_name, seat_text
from .models import Attendance, Event, Question, QuestionKind
from .services import answers
from .services.seats import SeatStatus


def strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def normalise_newlines(value: Any) -> Any:
    """A filter for multi-line fields: a browser's textarea sends CRLF; we store "\\n"."""
    return textrules.normalise_newlines(value) if isinstance(value, str) else value


def no_control_characters(_form: Form, field: Field) -> None:
    """One-line fields: refuse every control character, line breaks included (the values end
    up in mail headers, file names and table cells; PostgreSQL cannot even store NUL), and lone
    surrogates from JSON escapes (no database can store those). textrules.py has the rule."""
    if isinstance(field.data, str) and not textrules.is_clean_line(field.data):
        raise ValidationError(_l("Please remove the control characters from this field."))


def clean_text(_form: Form, field: Field) -> None:
    """Multi-line text (after :func:`normalise_newlines`): line breaks and tabs, but no other
    control characters (textrules.py)."""
    if isinstance(field.data, str) and not textrules.is_clean_text(field.data):
        raise ValidationError(_l("Please remove the control characters from this field."))


def mailable_address(_form: Form, field: Field) -> None:
    """An address whose local part has letters beyond ASCII (``jürgen@…``) can only be mailed
    through a relay that takes SMTPUTF8 (``MAIL_SMTPUTF8``): otherwise refuse it here rather
    than accept a sign-up whose mails can never arrive. (A domain with umlauts has an ASCII
    form and is fine.)"""
    if (
        isinstance(field.data, str)
        and not field.data.rpartition("@")[0].isascii()
        and not current_app.config.get("MAIL_SMTPUTF8")
    ):
        raise ValidationError(
            _l(
                "Please use an address without umlauts or accents before the @ sign: our mail "
                "server cannot deliver to it."
            )
        )


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
            mailable_address,
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
    """The JSON API's sign-up fields: the API checks the JSON types, then validates the strings
    with this form (:func:`validate_api_signup`), the same rules as the sign-up page's."""

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


# --- The public sign-up form ----------------------------------------------------------------


class MultiCheckboxField(SelectMultipleField):
    """Checkboxes for a multiple choice (rendered by the template as a fieldset)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def answer_validator(question: Question) -> Callable[[Form, Field], None]:
    """Validate a custom question's field with the service's rules (one source of truth)."""

    def validate(_form: Form, field: Field) -> None:
        try:
            answers.check_answer(question, field.data)
        except answers.AnswerError as exc:
            raise StopValidation(str(exc.message)) from exc

    return validate


def question_field(question: Question) -> Field:
    label = question.label
    common: dict[str, Any] = {
        "description": question.help_text,
        "validators": [answer_validator(question)],
    }
    if question.kind == QuestionKind.TEXT:
        return TextAreaField(label, filters=[strip, normalise_newlines], **common)
    if question.kind == QuestionKind.SINGLE_CHOICE:
        return RadioField(
            label, choices=[SelectChoice(o) for o in question.options], validate_choice=False,
            **common,
        )  # fmt: skip
    if question.kind == QuestionKind.MULTIPLE_CHOICE:
        return MultiCheckboxField(
            label, choices=[SelectChoice(o) for o in question.options], validate_choice=False,
            **common,
        )  # fmt: skip
    return RadioField(
        label,
        choices=[SelectChoice("yes", _l("Yes")), SelectChoice("no", _l("No"))],
        validate_choice=False,
        **common,
    )


def question_field_name(question: Question) -> str:
    return f"q_{question.key}"


class BaseSignupForm(ParticipantFields, FlaskForm):
    """The fields every event's form has; :func:`signup_form_class` adds the event's own."""

    class Meta:
        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            """Read the posted form fields only. Flask-WTF would fill the form from a JSON body
            instead, and a JSON number or string there ended in a 500 (tests/test_fuzz.py)."""
            if formdata is None or hasattr(formdata, "getlist"):
                return formdata  # given explicitly
            if not has_request_context() or request.method != "POST":
                return None
            if request.files:
                return CombinedMultiDict((request.files, request.form))
            return request.form or None

    privacy_consent = BooleanField(
        _l("I agree that my details are processed to organise this event."),
        validators=[DataRequired(_l("Please agree to the privacy notice."))],
    )
    #: Honeypot: hidden from people (CSS and aria-hidden), filled in by naive bots.
    homepage = StringField(_l("Leave this field empty"))

    def validate_homepage(self, field: Field) -> None:
        if field.data:
            raise ValidationError(_l("Please leave this field empty."))

    def question_fields(self) -> list[Field]:
        return [self[question_field_name(q)] for q in self._questions]

    def page_order(self) -> list[Field]:
        """The fields in the order the page shows them (for the error summary)."""
        names = ["first_name", "last_name", "email", "organisation", "attendance"]
        names += [question_field_name(q) for q in self._questions]
        names += ["privacy_consent", "homepage"]
        return [self._fields[name] for name in names if name in self._fields]

    def answers_data(self) -> dict[str, Any]:
        return {q.key: self[question_field_name(q)].data for q in self._questions}

    _questions: list[Question] = []  # noqa: RUF012  (set per event class)


def signup_form_class(event: Event, seats: dict[Attendance, SeatStatus]) -> type[BaseSignupForm]:
    """The sign-up form for ``event``: attendance choice for hybrid events, its questions."""

    class SignupForm(BaseSignupForm):
        pass

    SignupForm._questions = list(event.questions)
    if len(event.modes) > 1:
        choices = [
            SelectChoice(
                mode.value, f"{mode_name(mode)} ({seat_text(seats[mode], event.waitlist_enabled)})"
            )
            for mode in event.modes
        ]
        SignupForm.attendance = RadioField(
            _l("How will you attend?"),
            choices=choices,
            validate_choice=False,
            validators=[
                InputRequired(_l("Please choose how you will attend.")),
                AnyOf(
                    [m.value for m in event.modes], message=_l("Please choose how you will attend.")
                ),
            ],
        )
    for question in event.questions:
        setattr(SignupForm, question_field_name(question), question_field(question))
    return SignupForm


class CancelForm(FlaskForm):
    """The confirmation step of a cancellation (CSRF-protected)."""


class AttendanceForm(FlaskForm):
    attendance = RadioField(
        _l("Attend"),
        choices=[SelectChoice(m.value) for m in Attendance],
        validators=[InputRequired(_l("Please choose how you will attend."))],
    )
    accept_waitlist = BooleanField(
        _l("Yes, put me on the waiting list for this kind of attendance.")
    )


def validate_api_signup(values: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Validate the API's sign-up strings (field name and value; a missing name was not sent)
    with :class:`ApiSignupForm`; returns the fields' data and the errors by field."""
    form = ApiSignupForm(MultiDict(values))
    form.validate()
    return form.data, {name: [str(m) for m in messages] for name, messages in form.errors.items()}
