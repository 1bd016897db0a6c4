"""Custom questions: the rules for an answer, shared by the form, the API and the services."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_babel import lazy_gettext as _l

from ..extensions import db
from ..models import Answer, Question, QuestionKind
from ..textrules import is_clean_text, normalise_newlines
from .errors import InvalidInput

MAX_TEXT = 2000
_YES = {True, "yes", "ja", "true", "1"}
_NO = {False, "no", "nein", "false", "0"}


class AnswerError(ValueError):
    """An answer that breaks its question's rules; ``str()`` is the message for the person."""

    def __init__(self, message: Any) -> None:
        self.message = message
        super().__init__(str(message))


def _is_blank(value: Any) -> bool:
    return (
        value is None
        or value == ""
        or value == []
        or (isinstance(value, str) and not value.strip())
    )


def check_answer(question: Question, value: Any) -> Any:
    """Normalise ``value`` for ``question`` or raise :class:`AnswerError`.

    Returns ``None`` for an unanswered optional question. Text is stripped; a multiple choice is a
    list in the order of the options; yes/no is a bool (the form sends "yes"/"no").
    """
    if _is_blank(value):
        if question.required:
            raise AnswerError(_l("Please answer this question."))
        return None
    if question.kind == QuestionKind.TEXT:
        if not isinstance(value, str):
            raise AnswerError(_l("Please enter text."))
        # Line breaks stored as "\n" whether they came as CRLF (a form) or not (the API).
        value = normalise_newlines(value.strip())
        if len(value) > MAX_TEXT:
            raise AnswerError(_l("Please use at most %(max)d characters.", max=MAX_TEXT))
        if not is_clean_text(value):
            raise AnswerError(_l("Please remove the control characters from this field."))
        return value
    if question.kind == QuestionKind.SINGLE_CHOICE:
        if not isinstance(value, str) or value not in question.options:
            raise AnswerError(_l("Please choose one of the options."))
        return value
    if question.kind == QuestionKind.MULTIPLE_CHOICE:
        chosen = [value] if isinstance(value, str) else value
        if not isinstance(chosen, list) or any(
            not isinstance(v, str) or v not in question.options for v in chosen
        ):
            raise AnswerError(_l("Please choose from the options given."))
        return [option for option in question.options if option in chosen]
    # yes/no
    key = value.strip().lower() if isinstance(value, str) else value
    if isinstance(key, bool | str):
        if key in _YES:
            return True
        if key in _NO:
            return False
    raise AnswerError(_l("Please answer yes or no."))


def validate(questions: list[Question], raw: Mapping[str, Any] | None) -> dict[int, Any]:
    """All answers of a sign-up, by question id; raises :class:`InvalidInput` naming
    ``answers.<key>`` for each answer that breaks a rule (unknown keys included)."""
    raw = raw or {}
    errors: dict[str, list[str]] = {}
    by_key = {q.key: q for q in questions}
    for key in raw:
        if key not in by_key:
            errors[f"answers.{key}"] = [str(_l("This event has no such question."))]
    result: dict[int, Any] = {}
    for question in questions:
        try:
            value = check_answer(question, raw.get(question.key))
        except AnswerError as exc:
            errors[f"answers.{question.key}"] = [str(exc.message)]
            continue
        if value is not None:
            result[question.id] = value
    if errors:
        raise InvalidInput(errors)
    return result


def store(registration_id: int, answers: dict[int, Any]) -> None:
    """Store validated answers of a new registration (with the session's next flush)."""
    db.session.add_all(
        Answer(registration_id=registration_id, question_id=question_id, value=value)
        for question_id, value in answers.items()
    )


def display(question: Question, value: Any) -> str:
    """An answer as text for people (pages, exports)."""
    if value is None:
        return ""
    if question.kind == QuestionKind.YES_NO:
        return str(_l("Yes")) if value else str(_l("No"))
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)
