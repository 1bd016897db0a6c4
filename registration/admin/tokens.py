"""Back office: an organiser's API tokens (list, create, revoke). The secret of a new token is
shown once, on the page that answers the POST, and never stored."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import IntegerField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from ..extensions import db
from ..forms import strip
from ..models import ApiToken
from ..services import api_tokens
from ..services.errors import InvalidInput
from .views import bp


class TokenForm(FlaskForm):
    name = StringField(
        _l("Name"),
        filters=[strip],
        validators=[
            DataRequired(_l("Please give the token a name (what it is for).")),
            Length(max=api_tokens.MAX_NAME_LENGTH),
        ],
        description=_l("What the token is for, e.g. “Website import script”."),
    )
    expires_days = IntegerField(
        _l("Valid for (days)"),
        validators=[
            Optional(),
            NumberRange(
                min=1,
                max=api_tokens.MAX_EXPIRES_DAYS,
                message=_l("Please enter 1 to %(max)s days, or nothing."),
            ),
        ],
        description=_l("Empty: valid until revoked."),
    )


class RevokeTokenForm(FlaskForm):
    """Only the CSRF token."""


def _page(form: TokenForm, secret: str | None = None, created: ApiToken | None = None) -> Any:
    return render_template(
        "admin/tokens.html",
        form=form,
        tokens=api_tokens.list_tokens(current_user),
        revoke_form=RevokeTokenForm(formdata=None),
        status=api_tokens.status,
        secret=secret,
        created=created,
    )


@bp.route("/tokens", methods=["GET", "POST"])
@login_required
def tokens() -> Any:
    form = TokenForm()
    if form.validate_on_submit():
        try:
            token, secret = api_tokens.create(
                current_user, form.name.data, expires_days=form.expires_days.data
            )
        except InvalidInput as exc:
            db.session.rollback()
            for name, messages in exc.errors.items():
                field = form._fields.get(name)
                if field is not None:
                    field.errors = [*field.errors, *messages]
        else:
            db.session.commit()
            # Shown on this response only: no redirect (the secret must not travel in a
            # session cookie), and no copy in any cache.
            response = _page(TokenForm(formdata=None), secret=secret, created=token)
            return response, 201, {"Cache-Control": "no-store"}
    return _page(form), (422 if form.errors else 200)


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def token_revoke(token_id: int) -> Any:
    token = db.session.get(ApiToken, token_id)
    if token is None or token.organiser_id != current_user.id:
        abort(404)
    if not RevokeTokenForm().validate_on_submit():
        abort(400)
    if api_tokens.revoke(token, actor=current_user):
        db.session.commit()
        flash(_("The token “%(name)s” has been revoked.", name=token.name), "success")
    return redirect(url_for("admin.tokens"))
