"""GDPR in the back office (administrators only): a participant's data as JSON, erasure on
request, and the organisation's settings (the privacy notice)."""

from __future__ import annotations

import json
from typing import Any

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, Field, Form, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from ..extensions import db
from ..forms import strip
from ..models import Registration
from ..services import audit, privacy, settings
from ..timeutil import utcnow
from .exports import _download
from .views import _admin_only, _event_or_404, _registration_or_404, bp

#: Longest privacy notice (Markdown) accepted; real ones are a few thousand characters.
MAX_NOTICE = 50_000


def person_name(registration: Registration, last_first: bool = False) -> str:
    """A participant's name for back-office pages; "Anonymised" once the name is gone."""
    if not (registration.first_name or registration.last_name):
        return _("Anonymised") if registration.anonymised_at is not None else "–"
    if last_first:
        return ", ".join(n for n in (registration.last_name, registration.first_name) if n)
    return registration.full_name


bp.add_app_template_filter(person_name, "person_name")


# --- a participant's data: export and erasure -----------------------------------------------------


@bp.get("/events/<slug>/participants/<int:registration_id>/export.json")
@login_required
def participant_export(slug: str, registration_id: int) -> Any:
    """Everything stored about one person (a request for access, GDPR Art. 15), logged."""
    _admin_only()
    event = _event_or_404(slug)
    registration = _registration_or_404(event, registration_id)
    data = privacy.export_registration(registration)
    audit.record(current_user, "participant.export", event=event,
                 subject=privacy.subject_of(registration))  # fmt: skip
    db.session.commit()
    body = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    return _download(body, "application/json", f"{event.slug}-teilnehmer-{registration.id}.json")


class EraseForm(FlaskForm):
    confirm = BooleanField(
        _l("I confirm that this person's personal data is to be erased. This cannot be undone."),
        validators=[DataRequired(_l("Please confirm the erasure."))],
    )


@bp.route("/events/<slug>/participants/<int:registration_id>/erase", methods=["GET", "POST"])
@login_required
def participant_erase(slug: str, registration_id: int) -> Any:
    """Erasure on request (GDPR Art. 17): a confirmation page, then anonymise."""
    _admin_only()
    event = _event_or_404(slug)
    registration = _registration_or_404(event, registration_id)
    if registration.anonymised_at is not None:
        flash(_("The personal data of this registration has been erased already."), "success")
        return redirect(url_for("admin.participant", slug=slug, registration_id=registration_id))
    form = EraseForm()
    if form.validate_on_submit():
        result = privacy.erase_registration(registration, current_user)
        db.session.commit()
        message = _("The personal data has been erased.")
        if result.cancelled:
            message += " " + _(
                "The registration was cancelled; its place went to the waiting list."
            )
        flash(message, "success")
        return redirect(url_for("admin.participant", slug=slug, registration_id=registration_id))
    return render_template(
        "admin/participant_erase.html", event=event, registration=registration, form=form,
        will_cancel=registration.is_active and event.ends_at > utcnow(),
    ), (422 if form.errors else 200)  # fmt: skip


# --- the organisation's settings ----------------------------------------------------------------


def _text_without_control_characters(_form: Form, field: Field) -> None:
    """Line breaks and tabs are fine in a long text; other control characters are not."""
    if isinstance(field.data, str) and any(
        (ord(c) < 32 and c not in "\n\r\t") or ord(c) == 127 for c in field.data
    ):
        raise ValidationError(_l("Please remove the control characters from this field."))


class SettingsForm(FlaskForm):
    organisation_name = StringField(
        _l("Organisation (responsible for the data)"),
        filters=[strip],
        validators=[Length(max=200), _text_without_control_characters],
    )
    privacy_contact = TextAreaField(
        _l("Contact for data protection questions"),
        description=_l("Address, email or the data protection officer; shown on the page."),
        filters=[strip],
        validators=[Length(max=2000), _text_without_control_characters],
    )
    privacy_notice_de = TextAreaField(
        _l("Privacy notice in German"),
        description=_l("Markdown: # Heading, **bold**, - list, [link](https://...)."),
        filters=[strip],
        validators=[Length(max=MAX_NOTICE), _text_without_control_characters],
    )
    privacy_notice_en = TextAreaField(
        _l("Privacy notice in English"),
        description=_l("Shown to visitors who read the site in English."),
        filters=[strip],
        validators=[Length(max=MAX_NOTICE), _text_without_control_characters],
    )


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def settings_page() -> Any:
    """The organisation's privacy notice and contact (administrators only)."""
    _admin_only()
    stored = settings.get_many(settings.KEYS)
    form = SettingsForm(data=stored)
    if form.validate_on_submit():
        settings.update({key: form[key].data or "" for key in settings.KEYS}, current_user)
        db.session.commit()
        flash(_("The settings have been saved."), "success")
        return redirect(url_for("admin.settings_page"))
    return render_template("admin/settings.html", form=form), (422 if form.errors else 200)
