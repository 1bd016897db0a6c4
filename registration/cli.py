"""Command-line interface: ``flask --app registration events|demo|users ...``."""

from __future__ import annotations

import json
import threading
from datetime import date
from pathlib import Path
from typing import Any

import click
from email_validator import EmailNotValidError, validate_email
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from . import worker
from .extensions import db
from .models import Event, Organiser
from .services import accounts, audit, demo
from .services.errors import InvalidInput, ServiceError
from .services.events import EventDataError, parse_event_file, upsert_event
from .timeutil import utcnow

events_cli = AppGroup("events", help="Create and update events.")
mail_cli = AppGroup("mail", help="Send the outbox: reminders, dial-in details, confirmations.")
users_cli = AppGroup("users", help="Manage back-office accounts.")


def import_document(document: Any, base_dir: Path | None = None) -> list[tuple[str, bool]]:
    """Validate and apply a whole import document in one transaction; all or nothing."""
    parsed = parse_event_file(document, base_dir)
    results: list[tuple[str, bool]] = []
    try:
        for data in parsed:
            event, created = upsert_event(data)
            results.append((event.slug, created))
    except ServiceError as exc:
        db.session.rollback()
        raise EventDataError([str(exc)]) from exc
    db.session.commit()
    return results


def _report(results: list[tuple[str, bool]]) -> None:
    for slug, created in results:
        click.echo(f"{'created' if created else 'updated'}: {slug}")


@events_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_events(file: Path) -> None:
    """Create or update (by slug) the events in FILE (JSON: {"events": [...]})."""
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{file}: not valid UTF-8 JSON: {exc}") from exc
    try:
        results = import_document(document, file.parent)
    except EventDataError as exc:
        raise click.ClickException(
            f"{file}: nothing was imported.\n" + "\n".join(f"  - {m}" for m in exc.messages)
        ) from exc
    _report(results)


@click.command("demo")
def demo_command() -> None:
    """Load the two sample events, dated a few weeks from today (safe to run again)."""
    document = demo.demo_document(date.today())
    with demo.assets_dir() as base_dir:
        _report(import_document(document, base_dir))


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
    if organiser not in event.organisers:
        event.organisers.append(organiser)
        audit.record(None, "event.organiser.add", event=event, subject=f"organiser:{organiser.id}")
    db.session.commit()
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


def init_app(app: Flask) -> None:
    app.cli.add_command(mail_cli)
    app.cli.add_command(events_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(demo_command)
