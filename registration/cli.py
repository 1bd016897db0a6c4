"""Command-line interface: ``flask --app registration events|demo|users ...``."""

from __future__ import annotations

import json
import threading
from datetime import date
from pathlib import Path

import click
from email_validator import EmailNotValidError, validate_email
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from . import textrules, worker
from .extensions import db
from .models import Event, EventStatus, Organiser
from .services import accounts, api_tokens, demo, events, privacy
from .services.errors import InvalidInput
from .services.events import EventDataError
from .timeutil import utcnow

events_cli = AppGroup("events", help="Create and update events.")
mail_cli = AppGroup("mail", help="Send the outbox: reminders, dial-in details, confirmations.")
users_cli = AppGroup("users", help="Manage back-office accounts.")
tokens_cli = AppGroup("tokens", help="Manage API tokens (they act with their organiser's rights).")


def _report(results: list[tuple[str, bool]]) -> None:
    for slug, created in results:
        click.echo(f"{'created' if created else 'updated'}: {slug}")


#: How the CLI shows up in the audit log.
VIA_CLI = {"via": "cli"}


@events_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--notify/--no-notify", default=True, show_default=True,
    help="Tell participants by email when an update changes an event's time or place, or "
    "cancels it.",
)  # fmt: skip
def import_events(file: Path, notify: bool) -> None:
    """Create or update (by slug) the events in FILE (JSON: {"events": [...]}).

    An update changes the fields a record names and leaves the others as they are."""
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{file}: not valid UTF-8 JSON: {exc}") from exc
    try:
        results = events.import_events(document, file.parent, notify=notify, via=VIA_CLI)
    except EventDataError as exc:
        raise click.ClickException(
            f"{file}: nothing was imported.\n" + "\n".join(f"  - {m}" for m in exc.messages)
        ) from exc
    _report(results)


@events_cli.command("cancel")
@click.argument("slug")
@click.option(
    "--notify/--no-notify", default=True, show_default=True,
    help="Tell everyone registered by email.",
)  # fmt: skip
def cancel_event(slug: str, notify: bool) -> None:
    """Cancel the event SLUG: it stays visible, marked as cancelled, and takes no sign-ups."""
    event = db.session.scalars(select(Event).where(Event.slug == slug)).first()
    if event is None:
        raise click.ClickException(f"no event {slug!r}")
    if event.status == EventStatus.CANCELLED:
        click.echo(f"{slug} was cancelled already")
        return
    told = events.cancel_event(event, actor=None, notify=notify, via=VIA_CLI)
    click.echo(f"cancelled: {slug} ({told} participants told)")


@click.command("demo")
def demo_command() -> None:
    """Load the two sample events, dated a few weeks from today (safe to run again)."""
    document = demo.demo_document(date.today())
    with demo.assets_dir() as base_dir:
        # Sample data: reloading it moves its dates along, which is no news for anyone.
        _report(events.import_events(document, base_dir, notify=False, via=VIA_CLI))


@users_cli.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="May manage accounts and see every event.")
@click.option("--name", default="", help="Display name.")
@click.password_option(help="Prompted for (or read from stdin) when not given.")
def create_user(email: str, admin: bool, name: str, password: str) -> None:
    """Create a back-office account for EMAIL."""
    try:
        email = validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise click.BadParameter(str(exc), param_hint="EMAIL") from exc
    if not textrules.is_clean_line(name):
        raise click.BadParameter("must be one line without control characters", param_hint="--name")
    if accounts.find(email) is not None:
        raise click.ClickException(f"an account for {email} exists already")
    organiser = Organiser(email=email, name=name, is_admin=admin, created_at=utcnow())
    try:
        accounts.set_password(organiser, password)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc), param_hint="password") from exc
    db.session.add(organiser)
    db.session.commit()
    click.echo(f"created {'admin' if admin else 'organiser'} {email}")


@events_cli.command("add-organiser")
@click.argument("slug")
@click.argument("email")
def add_organiser(slug: str, email: str) -> None:
    """Let the account EMAIL see and manage the event SLUG."""
    event = db.session.scalars(select(Event).where(Event.slug == slug)).first()
    if event is None:
        raise click.ClickException(f"no event {slug!r}")
    organiser = accounts.find(email)
    if organiser is None:
        raise click.ClickException(f"no account {email!r} (create it with: users create)")
    events.add_organiser(event, organiser, actor=None)
    click.echo(f"{organiser.email} organises {event.slug}")


@mail_cli.command("worker")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between passes.")
def mail_worker(interval: float) -> None:
    """Run until stopped (SIGTERM finishes the message in hand)."""
    stop = threading.Event()
    worker.install_signal_handlers(stop)
    worker.run_forever(interval, stop)


@mail_cli.command("send-due")
def mail_send_due() -> None:
    """One pass (for cron): schedule what is due, send it, exit."""
    result = worker.run_once()
    click.echo(
        f"sent {result.sent}, retry {result.retry}, failed {result.failed}, "
        f"skipped {result.skipped}"
    )
    if result.errors:
        click.echo("mail server problem: " + result.errors[0], err=True)


privacy_cli = AppGroup("privacy", help="GDPR: anonymise participants' personal data.")


@privacy_cli.command("anonymise")
@click.option(
    "--event", "slug", default=None,
    help="Anonymise this event's participants NOW, whatever its retention date.",
)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Only report what would be anonymised.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (with --event).")
def privacy_anonymise(slug: str | None, dry_run: bool, yes: bool) -> None:
    """Anonymise the participants of events whose retention period is over (what the mail worker
    does every hour; run it from cron if you use `mail send-due` instead of the worker).

    Names, organisation, email address, free-text answers and personal links are removed; counts,
    status, attendance and choice answers stay. With --event the given event is anonymised now,
    regardless of its retention date (after a confirmation unless --yes).
    """
    if slug is None:
        result = privacy.anonymise_due_events(utcnow(), dry_run=dry_run)
        verb = "would anonymise" if dry_run else "anonymised"
        click.echo(
            f"{verb} {result.registrations} registrations of {len(result.events)} event(s)"
            + (f": {', '.join(result.events)}" if result.events else "")
        )
        return
    event = db.session.scalars(select(Event).where(Event.slug == slug)).first()
    if event is None:
        raise click.ClickException(f"no event {slug!r}")
    pending = privacy.count_pending(event)
    if dry_run:
        click.echo(f"would anonymise {pending} registrations of 1 event(s): {event.slug}")
        return
    if not yes:
        warning = (
            f"Anonymise the {pending} registrations of {event.slug!r} now"
            f" (retention date {privacy.retention_ends(event):%Y-%m-%d})?"
        )
        if event.ends_at > utcnow():
            warning += " The event has not ended: its participants lose their links and mails."
        click.confirm(warning + " This cannot be undone.", abort=True)
    done = privacy.anonymise_event(event, wait=True)
    click.echo(f"anonymised {done or 0} registrations of 1 event(s): {slug}")


@tokens_cli.command("create")
@click.option("--email", required=True, help="The organiser the token acts for.")
@click.option("--name", required=True, help="What the token is for.")
@click.option(
    "--expires-days", type=int, default=None, help="Valid for N days (default: until revoked)."
)
def tokens_create(email: str, name: str, expires_days: int | None) -> None:
    """Create a token and print it (the only time it is shown)."""
    organiser = accounts.find(email)
    if organiser is None:
        raise click.ClickException(f"no account {email!r} (create it with: users create)")
    if not organiser.active:
        raise click.ClickException(f"the account {organiser.email} is deactivated")
    try:
        token, secret = api_tokens.create(organiser, name, expires_days=expires_days)
    except InvalidInput as exc:
        db.session.rollback()
        field, messages = next(iter(exc.errors.items()))
        raise click.BadParameter(messages[0], param_hint=f"--{field.replace('_', '-')}") from exc
    db.session.commit()
    click.echo(f"created token {token.id} ({token.prefix}...) for {organiser.email}", err=True)
    click.echo("it is shown only this once:", err=True)
    click.echo(secret)


@tokens_cli.command("list")
@click.option("--email", default=None, help="Only this organiser's tokens.")
def tokens_list(email: str | None) -> None:
    """List tokens: id, prefix, status, organiser, name, last use."""
    organiser = None
    if email is not None:
        organiser = accounts.find(email)
        if organiser is None:
            raise click.ClickException(f"no account {email!r}")
    for token in api_tokens.list_tokens(organiser):
        last_used = token.last_used_at.isoformat(timespec="minutes") if token.last_used_at else "-"
        click.echo(
            f"{token.id}\t{token.prefix}...\t{api_tokens.status(token)}\t"
            f"{token.organiser.email}\t{token.name}\tlast used {last_used}"
        )


@tokens_cli.command("revoke")
@click.argument("token")
def tokens_revoke(token: str) -> None:
    """Revoke the token with this id or prefix."""
    matches = api_tokens.find(token)
    if not matches:
        raise click.ClickException(f"no token {token!r}")
    if len(matches) > 1:
        raise click.ClickException(f"{token!r} matches {len(matches)} tokens; give the id")
    found = matches[0]
    if api_tokens.revoke(found, actor=None):
        db.session.commit()
        click.echo(f"revoked token {found.id} ({found.prefix}...) of {found.organiser.email}")
    else:
        click.echo(f"token {found.id} ({found.prefix}...) was revoked already")


def init_app(app: Flask) -> None:
    app.cli.add_command(mail_cli)
    app.cli.add_command(events_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(demo_command)
    app.cli.add_command(privacy_cli)
    app.cli.add_command(tokens_cli)
