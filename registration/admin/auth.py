"""Logging in and out, and passwords (changed, forgotten, reset)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import (
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from .. import notifications
from ..extensions import db
from ..services import accounts
from ..services.errors import InvalidInput, ServiceError
from .forms import (
    ForgotPasswordForm,
    LoginForm,
    PasswordForm,
    ResetPasswordForm,
)
from .views import bp


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not send people to another site."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("admin.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("admin.dashboard"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            organiser = accounts.authenticate(form.email.data, form.password.data)
        except ServiceError as exc:
            db.session.commit()  # the failure count and the audit entry
            form.form_errors.append(str(exc))
        else:
            db.session.commit()
            login_user(organiser)
            return redirect(_safe_next(request.args.get("next")))
    return render_template("admin/login.html", form=form), 200 if not form.errors else 422


@bp.post("/logout")
@login_required
def logout() -> Any:
    logout_user()
    flash(_("You have been logged out."), "success")
    return redirect(url_for("admin.login"))


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password() -> Any:
    form = PasswordForm()
    organiser = current_user._get_current_object()
    if form.validate_on_submit():
        try:
            accounts.change_password(organiser, form.current_password.data, form.password.data)
        except InvalidInput as exc:
            db.session.rollback()
            for name, messages in exc.errors.items():
                form[name].errors = [*form[name].errors, *messages]
        else:
            db.session.commit()
            login_user(organiser)  # the session identifier changed with the password
            flash(_("Your password has been changed."), "success")
            return redirect(url_for("admin.dashboard"))
    return render_template("admin/password.html", form=form)


@bp.route("/password/forgot", methods=["GET", "POST"])
def password_forgot() -> Any:
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        accounts.request_reset(form.email.data, str(get_locale() or "de"))
        db.session.commit()
        flash(
            _("If an account exists for this address, we have sent a link to it. "
              "It works for one hour."),
            "success",
        )  # fmt: skip
        return redirect(url_for("admin.login"))
    return render_template("admin/password_forgot.html", form=form)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def password_reset(token: str) -> Any:
    organiser = notifications.organiser_for_reset_token(token)
    if organiser is None:
        flash(_("This link has expired or was used already. Please ask for a new one."), "error")
        return redirect(url_for("admin.password_forgot"))
    form = ResetPasswordForm()
    if form.validate_on_submit():
        accounts.reset_password(organiser, form.password.data)
        db.session.commit()
        flash(_("Your password has been changed. Please log in."), "success")
        return redirect(url_for("admin.login"))
    return render_template("admin/password_reset.html", form=form)
