"""The questions an event asks on its sign-up form, and the preview of an event page.

Questions are edited one at a time, but every change is checked by the import rules on the
event's whole list (:func:`registration.services.events.parse_questions`), so the editor, the
JSON import and the API accept exactly the same questions. A question that has answers keeps its
kind and the options people chose: changing those would silently change what they answered.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user, login_required
from sqlalchemy import func, select

from ..extensions import db
from ..forms import signup_form_class
from ..models import Answer, Event, Question, QuestionKind
from ..services import events as events_service
from ..services.errors import translated
from ..services.seats import seat_status
from .forms import CheckinForm, QuestionForm
from .views import _event_or_404, bp, require_button

#: Which form field shows a problem the import rules found in ``questions[i].<name>``.
_FIELD_OF = {"label": "label", "kind": "kind", "options": "options", "help": "help_text"}
_CHOICE_KINDS = (QuestionKind.SINGLE_CHOICE, QuestionKind.MULTIPLE_CHOICE)


def _question_or_404(event: Event, question_id: int) -> Question:
    question = db.session.get(Question, question_id)
    if question is None or question.event_id != event.id:
        abort(404)
    return question


def _answer_counts(event: Event) -> dict[int, int]:
    rows = db.session.execute(
        select(Answer.question_id, func.count())
        .join(Question, Question.id == Answer.question_id)
        .where(Question.event_id == event.id)
        .group_by(Answer.question_id)
    )
    return dict(rows.all())


_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


def key_for(label: str, taken: set[str]) -> str:
    """A stable key for a new question (exports and the API use it), made from its label:
    ``"Teilnahme am Stadtrundgang?"`` → ``teilnahme_am_stadtrundgang``."""
    text = unicodedata.normalize("NFKD", label.lower().translate(_UMLAUTS))
    text = text.encode("ascii", "ignore").decode()
    base = re.sub(r"[^a-z0-9]+", "_", text).strip("_")[:32].strip("_") or "question"
    key, number = base, 2
    while key in taken:
        key, number = f"{base}_{number}", number + 1
    return key


def _record_from_form(form: QuestionForm, key: str) -> dict[str, Any]:
    kind = form.kind.data
    return {
        "key": key,
        "label": form.label.data,
        "kind": kind,
        "required": bool(form.required.data),
        # Options typed for a text or yes/no question are dropped rather than refused.
        "options": form.option_list() if kind in _CHOICE_KINDS else [],
        "help": form.help_text.data or "",
    }


def _save(
    event: Event, form: QuestionForm, records: list[dict[str, Any]], index: int, **audit: Any
) -> bool:
    """Store the event's whole list through the service (the import rules, and answers stay
    valid); problems with the question at ``index`` go onto the form."""
    try:
        events_service.save_questions(event, records, actor=current_user, **audit)
    except events_service.EventDataError as exc:
        db.session.rollback()
        prefix = f"questions[{index}]."
        for path, message in exc.fields:
            name = _FIELD_OF.get(path.removeprefix(prefix)) if path.startswith(prefix) else None
            field = form._fields.get(name) if name else None
            if field is not None:
                field.errors = [*field.errors, translated(message)]
            else:
                form.form_errors.append(translated(message))
        return False
    return True


def _render_list(event: Event, form: QuestionForm, status: int = 200) -> Any:
    return render_template(
        "admin/questions.html",
        event=event,
        form=form,
        answers=_answer_counts(event),
        action=CheckinForm(formdata=None),
    ), status


@bp.route("/events/<slug>/questions", methods=["GET", "POST"])
@login_required
def questions(slug: str) -> Any:
    """The list of questions, with the form for a new one."""
    event = _event_or_404(slug)
    form = QuestionForm() if request.method == "POST" else QuestionForm(formdata=None)
    if request.method == "POST":
        if form.validate():
            records = [events_service.question_record(q) for q in event.questions]
            key = key_for(form.label.data, {r["key"] for r in records})
            records.append(_record_from_form(form, key))
            if _save(
                event, form, records, len(records) - 1, action="question.add",
                subject=f"question:{key}",
            ):  # fmt: skip
                flash(_("The question has been added."), "success")
                return redirect(url_for("admin.questions", slug=slug))
        db.session.rollback()
        return _render_list(event, form, 422)
    return _render_list(event, form)


@bp.route("/events/<slug>/questions/<int:question_id>/edit", methods=["GET", "POST"])
@login_required
def question_edit(slug: str, question_id: int) -> Any:
    event = _event_or_404(slug)
    question = _question_or_404(event, question_id)
    if request.method == "GET":
        form = QuestionForm(formdata=None, obj=question)
        form.kind.data = str(question.kind)
        form.options.data = "\n".join(question.options or [])
    else:
        form = QuestionForm()
        if form.validate():
            records = [events_service.question_record(q) for q in event.questions]
            index = next(i for i, q in enumerate(event.questions) if q.id == question.id)
            records[index] = _record_from_form(form, question.key)
            if _save(
                event, form, records, index, action="question.update",
                subject=f"question:{question.key}",
            ):  # fmt: skip
                flash(_("The question has been saved."), "success")
                return redirect(url_for("admin.questions", slug=slug))
        db.session.rollback()
    answered = _answer_counts(event).get(question.id, 0)
    return render_template(
        "admin/question_form.html", event=event, question=question, form=form, answered=answered
    ), (422 if request.method == "POST" else 200)


@bp.post("/events/<slug>/questions/<int:question_id>/move")
@login_required
def question_move(slug: str, question_id: int) -> Any:
    """One place up or down (``direction``)."""
    event = _event_or_404(slug)
    question = _question_or_404(event, question_id)
    require_button()
    step = -1 if request.form.get("direction") == "up" else 1
    order = list(event.questions)
    index = order.index(question)
    if 0 <= index + step < len(order):
        order[index], order[index + step] = order[index + step], order[index]
        events_service.save_questions(
            event, [events_service.question_record(q) for q in order], actor=current_user,
            action="question.move", subject=f"question:{question.key}",
        )  # fmt: skip
    return redirect(url_for("admin.questions", slug=slug) + f"#question-{question.id}")


@bp.route("/events/<slug>/questions/<int:question_id>/delete", methods=["GET", "POST"])
@login_required
def question_delete(slug: str, question_id: int) -> Any:
    """Asks first (saying how many answers go with it), then deletes."""
    event = _event_or_404(slug)
    question = _question_or_404(event, question_id)
    form = CheckinForm()
    answered = _answer_counts(event).get(question.id, 0)
    if request.method == "POST" and form.validate_on_submit():
        records = [
            events_service.question_record(q) for q in event.questions if q.id != question.id
        ]
        events_service.save_questions(
            event, records, actor=current_user, action="question.delete",
            subject=f"question:{question.key}", details={"answers": answered},
        )  # fmt: skip
        flash(
            ngettext(
                "The question and %(num)d answer have been deleted.",
                "The question and %(num)d answers have been deleted.",
                answered,
            )
            if answered
            else _("The question has been deleted."),
            "success",
        )
        return redirect(url_for("admin.questions", slug=slug))
    return render_template(
        "admin/question_delete.html", event=event, question=question, answered=answered, form=form
    )


@bp.get("/events/<slug>/preview")
@login_required
def event_preview(slug: str) -> Any:
    """The public page as it will look, also for drafts (which the public cannot see yet).
    The sign-up form is shown but cannot be sent."""
    event = _event_or_404(slug)
    seats = seat_status([event])[event.id]
    form = signup_form_class(event, seats)(meta={"csrf": False}, formdata=None)
    return render_template("public/event.html", event=event, seats=seats, form=form, preview=True)
