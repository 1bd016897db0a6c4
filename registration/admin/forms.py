"""Back-office forms."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    Field,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    StringField,
    TextAreaField,
)
from wtforms.fields import SelectChoice
from wtforms.validators import (
    DataRequired,
    Email,
    EqualTo,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
    ValidationError,
)

from ..forms import (
    ParticipantFields,
    clean_text,
    mailable_address,
    no_control_characters,
    normalise_newlines,
    strip,
)
from ..models import Event, QuestionKind
from ..services.events import SLUG_RE


class LoginForm(FlaskForm):
    email = StringField(
        _l("Email address"),
        filters=[strip],
        validators=[DataRequired(_l("Please enter your email address.")), Length(max=254)],
    )
    password = PasswordField(
        _l("Password"), validators=[DataRequired(_l("Please enter your password."))]
    )


class ResetPasswordForm(FlaskForm):
    """A new password, typed twice (also the second half of :class:`PasswordForm`)."""

    password = PasswordField(
        _l("New password"),
        validators=[
            DataRequired(_l("Please enter a new password.")),
            Length(min=10, message=_l("Please use at least %(min)d characters.")),
        ],
    )
    confirm = PasswordField(
        _l("Repeat the new password"),
        validators=[EqualTo("password", message=_l("The two passwords differ."))],
    )


class PasswordForm(ResetPasswordForm):
    current_password = PasswordField(
        _l("Current password"), validators=[DataRequired(_l("Please enter your password."))]
    )


class CheckinForm(FlaskForm):
    """A button's form: the CSRF token is all it carries."""


class EventForm(FlaskForm):
    """Every field of an event; converted to the import format and checked by the same rules."""

    title = StringField(
        _l("Title"),
        filters=[strip],
        validators=[DataRequired(_l("Please enter a title.")), Length(max=200)],
    )
    subtitle = StringField(
        _l("Series line"),
        filters=[strip],
        validators=[Optional(), Length(max=200)],
        description=_l('Shown above the title, e.g. "21. Werkstatt – Bündnis vor Ort".'),
    )
    slug = StringField(
        _l("Web address"),
        filters=[strip, lambda v: v.lower() if isinstance(v, str) else v],
        validators=[
            DataRequired(_l("Please enter a web address.")),
            Length(max=80),
            Regexp(SLUG_RE, message=_l("Use only a-z, 0-9 and single hyphens.")),
        ],
        description=_l(
            "Part of the link to the event, e.g. werkstatt-21-herzberg. It cannot be changed later."
        ),
    )
    format = RadioField(
        _l("Format"),
        choices=[
            SelectChoice("on_site", _l("On site")),
            SelectChoice("online", _l("Online")),
            SelectChoice("hybrid", _l("Hybrid (on site and online)")),
        ],
        validators=[InputRequired(_l("Please choose a format."))],
    )
    status = RadioField(
        _l("Visibility"),
        choices=[
            SelectChoice("draft", _l("Draft (not public)")),
            SelectChoice("published", _l("Published")),
        ],
        default="draft",
        validators=[InputRequired()],
    )
    starts_at = DateTimeLocalField(
        _l("Starts"),
        format="%Y-%m-%dT%H:%M",
        validators=[InputRequired(_l("Please enter date and time of the start."))],
    )
    ends_at = DateTimeLocalField(
        _l("Ends"),
        format="%Y-%m-%dT%H:%M",
        validators=[InputRequired(_l("Please enter date and time of the end."))],
    )
    venue_name = StringField(_l("Venue"), filters=[strip], validators=[Optional(), Length(max=200)])
    venue_address = TextAreaField(
        _l("Address"), filters=[strip], validators=[Optional(), Length(max=1000)]
    )
    description = TextAreaField(
        _l("Description and programme"),
        filters=[strip],
        validators=[Optional(), Length(max=50_000)],
        description=_l(
            "Markdown: **bold**, lists with -, tables with |, links [text](https://...)."
        ),
    )
    contact_name = StringField(
        _l("Contact person or office"), filters=[strip], validators=[Optional(), Length(max=200)]
    )
    contact_email = StringField(
        _l("Contact email"),
        filters=[strip],
        validators=[
            Optional(),
            Length(max=254),
            Email(_l("Please enter a valid email address, e.g. name@example.org.")),
        ],
    )
    contact_phone = StringField(
        _l("Contact phone"), filters=[strip], validators=[Optional(), Length(max=50)]
    )
    capacity_on_site = IntegerField(
        _l("Seats on site"),
        validators=[Optional(), NumberRange(min=0, message=_l("Please enter 0 or more."))],
        description=_l("Empty means unlimited."),
    )
    capacity_online = IntegerField(
        _l("Seats online"),
        validators=[Optional(), NumberRange(min=0, message=_l("Please enter 0 or more."))],
        description=_l("Empty means unlimited."),
    )
    waitlist_enabled = BooleanField(_l("Waiting list when full"), default=True)
    registration_opens_at = DateTimeLocalField(
        _l("Registration opens"),
        format="%Y-%m-%dT%H:%M",
        validators=[Optional()],
        description=_l("Empty: at once."),
    )
    registration_closes_at = DateTimeLocalField(
        _l("Registration closes"),
        format="%Y-%m-%dT%H:%M",
        validators=[Optional()],
        description=_l("Empty: when the event starts."),
    )
    dial_in_url = StringField(
        _l("Meeting link"), filters=[strip], validators=[Optional(), Length(max=500)]
    )
    dial_in_meeting_id = StringField(
        _l("Meeting ID"), filters=[strip], validators=[Optional(), Length(max=100)]
    )
    dial_in_passcode = StringField(
        _l("Passcode"), filters=[strip], validators=[Optional(), Length(max=100)]
    )
    dial_in_phone = TextAreaField(
        _l("By phone"), filters=[strip], validators=[Optional(), Length(max=1000)]
    )
    dial_in_instructions = TextAreaField(
        _l("Instructions for online participants"),
        filters=[strip],
        validators=[Optional(), Length(max=5000)],
    )
    reminder_days_before = IntegerField(
        _l("Reminder (days before)"),
        default=2,
        validators=[
            InputRequired(),
            NumberRange(min=0, max=60, message=_l("Please enter 0 to 60.")),
        ],
        description=_l("0: no reminder."),
    )
    dial_in_hours_before = IntegerField(
        _l("Send dial-in details (hours before)"),
        default=24,
        validators=[
            InputRequired(),
            NumberRange(min=0, max=720, message=_l("Please enter 0 to 720.")),
        ],
    )
    retention_days = IntegerField(
        _l("Delete personal data (days after the event)"),
        default=90,
        validators=[
            Optional(),
            NumberRange(min=0, max=3650, message=_l("Please enter 0 to 3650.")),
        ],
        description=_l(
            "Then names, email addresses and free-text answers are removed; the counts stay. "
            "Empty: 90 days."
        ),
    )
    notify = BooleanField(_l("Tell the participants about a changed time or place by email"))
    #: The event's version when the form was opened: saving over a newer one is refused once.
    version = HiddenField(validators=[Optional(), Regexp(r"^[0-9]{1,9}$")])

    def validate_ends_at(self, field: Field) -> None:
        if self.starts_at.data and field.data and field.data <= self.starts_at.data:
            raise ValidationError(_l("The end must be after the start."))

    def to_record(self, zone: ZoneInfo) -> dict[str, Any]:
        """The import format of :mod:`registration.services.events` (validated again there)."""

        def moment(value: datetime | None) -> str | None:
            return value.replace(tzinfo=zone).isoformat() if value else None

        return {
            "slug": self.slug.data,
            "title": self.title.data,
            "subtitle": self.subtitle.data,
            "description": self.description.data,
            "format": self.format.data,
            "status": self.status.data,
            "starts_at": moment(self.starts_at.data),
            "ends_at": moment(self.ends_at.data),
            "timezone": str(zone),
            "venue": {"name": self.venue_name.data, "address": self.venue_address.data},
            "contact": {
                "name": self.contact_name.data,
                "email": self.contact_email.data,
                "phone": self.contact_phone.data,
            },
            "capacity": {
                "on_site": self.capacity_on_site.data,
                "online": self.capacity_online.data,
            },
            "waitlist": bool(self.waitlist_enabled.data),
            "registration_opens_at": moment(self.registration_opens_at.data),
            "registration_closes_at": moment(self.registration_closes_at.data),
            "dial_in": {
                "url": self.dial_in_url.data,
                "meeting_id": self.dial_in_meeting_id.data,
                "passcode": self.dial_in_passcode.data,
                "phone": self.dial_in_phone.data,
                "instructions": self.dial_in_instructions.data,
            },
            "reminder_days_before": self.reminder_days_before.data,
            "dial_in_hours_before": self.dial_in_hours_before.data,
            "retention_days": self.retention_days.data,  # None: the default
        }

    def fill_from(self, event: Event) -> None:
        """Show an event's values (times in its zone)."""
        for name in (
            "title",
            "subtitle",
            "slug",
            "format",
            "status",
            "venue_name",
            "venue_address",
            "description",
            "contact_name",
            "contact_email",
            "contact_phone",
            "capacity_on_site",
            "capacity_online",
            "waitlist_enabled",
            "dial_in_url",
            "dial_in_meeting_id",
            "dial_in_passcode",
            "dial_in_phone",
            "dial_in_instructions",
            "reminder_days_before",
            "dial_in_hours_before",
            "retention_days",
        ):
            self[name].data = getattr(event, name)
        self.format.data, self.status.data = str(event.format), str(event.status)
        for name in ("starts_at", "ends_at", "registration_opens_at", "registration_closes_at"):
            value = getattr(event, name)
            self[name].data = value.astimezone(event.zone).replace(tzinfo=None) if value else None


class CancelEventForm(FlaskForm):
    notify = BooleanField(_l("Tell the participants by email"), default=True)


class MessageForm(FlaskForm):
    subject = StringField(
        _l("Subject"),
        filters=[strip],
        validators=[
            DataRequired(_l("Please enter a subject.")),
            Length(max=200),
            no_control_characters,
        ],
    )
    body = TextAreaField(
        _l("Text"),
        filters=[normalise_newlines, strip],
        validators=[DataRequired(_l("Please enter a text.")), Length(max=20_000), clean_text],
        description=_l(
            "Markdown: **bold**, lists with -, links [text](https://...). Greeting, event "
            "details and the personal link are added."
        ),
    )
    status = RadioField(
        _l("To"),
        choices=[
            SelectChoice("", _l("Everyone registered (confirmed and waiting list)")),
            SelectChoice("confirmed", _l("Confirmed participants")),
            SelectChoice("waitlisted", _l("The waiting list")),
        ],
        default="",
        validate_choice=True,
    )
    attendance = RadioField(
        _l("Attendance"),
        choices=[
            SelectChoice("", _l("All")),
            SelectChoice("on_site", _l("On site")),
            SelectChoice("online", _l("Online")),
        ],
        default="",
        validate_choice=True,
    )


class ParticipantForm(ParticipantFields, FlaskForm):
    """A participant entered or corrected by an organiser (e.g. a phone sign-up)."""

    attendance = RadioField(
        _l("Attendance"),
        choices=[SelectChoice("on_site", _l("On site")), SelectChoice("online", _l("Online"))],
        default="on_site",
        validate_choice=True,
    )
    consent = BooleanField(
        _l("The person agreed to the processing of their details (privacy notice)."),
        validators=[DataRequired(_l("Please confirm the consent."))],
    )
    over_capacity = BooleanField(
        _l("Confirm even if the event is full (exceeds the capacity)"),
    )


class ForgotPasswordForm(FlaskForm):
    email = StringField(
        _l("Email address"),
        filters=[strip],
        validators=[DataRequired(_l("Please enter your email address.")), Length(max=254)],
    )


class AccountForm(FlaskForm):
    email = StringField(
        _l("Email address"),
        filters=[strip],
        validators=[
            DataRequired(_l("Please enter your email address.")),
            Length(max=254),
            Email(_l("Please enter a valid email address, e.g. name@example.org.")),
            mailable_address,
        ],
    )
    name = StringField(
        _l("Name"),
        filters=[strip],
        validators=[Optional(), Length(max=200), no_control_characters],
    )
    is_admin = BooleanField(_l("Administrator (manages accounts, sees every event)"))


class AddOrganiserForm(FlaskForm):
    email = StringField(
        _l("Email address of the account"),
        filters=[strip],
        validators=[DataRequired(_l("Please enter your email address.")), Length(max=254)],
    )


class FileForm(FlaskForm):
    """A title image or an attachment (the content decides what it is, not the name)."""

    file = FileField(_l("File"), validators=[FileRequired(_l("Please choose a file."))])
    kind = RadioField(
        _l("Use as"),
        choices=[
            SelectChoice("attachment", _l("Document (PDF or image)")),
            SelectChoice("title_image", _l("Title image (PNG, JPEG or WebP)")),
        ],
        default="attachment",
        validate_choice=True,
    )
    title = StringField(
        _l("Link text (documents)"),
        filters=[strip],
        validators=[Optional(), Length(max=200), no_control_characters],
    )
    alt = StringField(
        _l("Description of the image for screen readers (title image)"),
        filters=[strip],
        validators=[Optional(), Length(max=300), no_control_characters],
    )
    credit = StringField(
        _l("Credit line (title image)"),
        filters=[strip],
        validators=[Optional(), Length(max=200), no_control_characters],
    )


class QuestionForm(FlaskForm):
    """A custom question of the sign-up form (checked again by the import rules on saving)."""

    label = StringField(
        _l("Question"),
        filters=[strip],
        validators=[DataRequired(_l("Please enter the question.")), Length(max=300)],
        description=_l('e.g. "Will you join the city walk after lunch?"'),
    )
    kind = RadioField(
        _l("Kind of answer"),
        choices=[
            SelectChoice(QuestionKind.TEXT.value, _l("Free text")),
            SelectChoice(QuestionKind.YES_NO.value, _l("Yes or no")),
            SelectChoice(QuestionKind.SINGLE_CHOICE.value, _l("One of several options")),
            SelectChoice(QuestionKind.MULTIPLE_CHOICE.value, _l("Any of several options")),
        ],
        default=QuestionKind.TEXT.value,
        validators=[InputRequired(_l("Please choose the kind of answer."))],
    )
    options = TextAreaField(
        _l("Options (one per line)"),
        validators=[Optional(), Length(max=10_000)],
        description=_l("Only for questions with options; at least two."),
    )
    required = BooleanField(_l("An answer is required"))
    help_text = StringField(
        _l("Hint below the question"), filters=[strip], validators=[Optional(), Length(max=500)]
    )

    def option_list(self) -> list[str]:
        return [line.strip() for line in (self.options.data or "").splitlines() if line.strip()]
