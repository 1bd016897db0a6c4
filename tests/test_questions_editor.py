"""The back office's editor for the questions of the sign-up form, the preview of draft events
and the translated messages of the import rules on the event form."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from registration.extensions import db
from registration.models import Answer, AuditEntry, EventStatus, Question, QuestionKind
from registration.services import accounts, signup

from .conftest import make_event
from .test_admin import DE, event_form, login, setup  # noqa: F401  (setup is a fixture)

URL = "/admin/events/meine/questions"


def field_error(page: str, field: str) -> str:
    match = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', page, re.S)
    return match.group(1) if match else ""


def add(client, **values):
    data = {"label": "Frage", "kind": "text", "options": "", "help_text": ""}
    data.update(values)
    return client.post(URL, data=data, headers=DE)


def sign_up_with(event, n: int, answers: dict) -> None:
    signup.register(
        event,
        signup.SignupData(email=f"a{n}@example.org", first_name="Änne", last_name=f"Weiß{n}",
                          privacy_consent=True, answers=answers),
    )  # fmt: skip
    db.session.commit()


def questions_of(event) -> list[Question]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(Question).where(Question.event_id == event.id).order_by(Question.position)
        )
    )


def test_add_questions_of_every_kind_and_see_them_on_the_form(client, setup):  # noqa: F811
    login(client, "ich@example.org")
    assert "Noch keine Fragen." in client.get(URL, headers=DE).get_data(as_text=True)
    assert add(client, label="Teilnahme am Stadtrundgang?", kind="yes_no").status_code == 302
    response = add(client, label="Mittagessen", kind="single_choice", required="y",
                   options="vegetarisch\n\n  mit Fleisch \nvegan", help_text="Für die Planung")  # fmt: skip
    assert response.status_code == 302
    assert add(client, label="Mittagessen", kind="text").status_code == 302  # same label again

    event = setup["mine"]
    stored = questions_of(event)
    assert [(q.key, q.kind, q.position) for q in stored] == [
        ("teilnahme_am_stadtrundgang", QuestionKind.YES_NO, 0),
        ("mittagessen", QuestionKind.SINGLE_CHOICE, 1),
        ("mittagessen_2", QuestionKind.TEXT, 2),
    ]
    lunch = stored[1]
    assert lunch.options == ["vegetarisch", "mit Fleisch", "vegan"]
    assert lunch.required and lunch.help_text == "Für die Planung"

    public = client.get("/events/meine", headers=DE).get_data(as_text=True)
    assert public.index("Teilnahme am Stadtrundgang?") < public.index("Mittagessen")
    assert 'value="mit Fleisch"' in public
    actions = db.session.scalars(
        select(AuditEntry.subject).where(AuditEntry.action == "question.add")
    ).all()
    assert actions == ["question:teilnahme_am_stadtrundgang", "question:mittagessen",
                       "question:mittagessen_2"]  # fmt: skip


def test_invalid_questions_get_german_messages_next_to_the_field(client, setup):  # noqa: F811
    login(client, "ich@example.org")
    one_option = add(client, label="Essen", kind="single_choice", options="nur eins")
    page = one_option.get_data(as_text=True)
    assert one_option.status_code == 422
    assert "eine Auswahl braucht mindestens zwei Möglichkeiten" in field_error(page, "options")
    assert 'value="Essen"' in page  # what was typed stays

    repeated = add(client, label="Essen", kind="multiple_choice", options="a\na")
    assert "darf keine Möglichkeit doppelt enthalten" in field_error(
        repeated.get_data(as_text=True), "options"
    )
    no_label = add(client, label="  ", kind="text")
    assert "Bitte geben Sie die Frage ein." in field_error(no_label.get_data(as_text=True), "label")
    too_long = add(client, label="x" * 301)
    assert too_long.status_code == 422
    wrong_kind = add(client, label="Essen", kind="essay")
    assert wrong_kind.status_code == 422 and field_error(wrong_kind.get_data(as_text=True), "kind")
    assert questions_of(setup["mine"]) == []  # nothing half-written


def test_a_question_with_answers_keeps_its_kind_and_chosen_options(client, setup):  # noqa: F811
    login(client, "ich@example.org")
    add(
        client, label="Mittagessen", kind="single_choice", options="vegetarisch\nmit Fleisch\nvegan"
    )
    event = setup["mine"]
    lunch = questions_of(event)[0]
    sign_up_with(event, 1, {"mittagessen": "vegan"})
    url = f"{URL}/{lunch.id}/edit"
    page = client.get(url, headers=DE).get_data(as_text=True)
    assert "1 Person hat diese Frage beantwortet." in page
    assert "vegetarisch\nmit Fleisch\nvegan</textarea>" in page

    changed_kind = client.post(url, data={"label": "Mittagessen", "kind": "text"}, headers=DE)
    assert changed_kind.status_code == 422
    assert "Art der Antwort nicht mehr geändert werden" in field_error(
        changed_kind.get_data(as_text=True), "kind"
    )
    renamed = client.post(url, data={"label": "Mittagessen", "kind": "single_choice",
                                     "options": "vegetarisch\nmit Fleisch\nVegan"}, headers=DE)  # fmt: skip
    assert renamed.status_code == 422
    assert "„vegan“" in field_error(renamed.get_data(as_text=True), "options")

    ok = client.post(url, data={"label": "Ihr Mittagessen", "kind": "single_choice", "required": "y",
                                "options": "vegetarisch\nvegan\nglutenfrei"}, headers=DE)  # fmt: skip
    assert ok.status_code == 302
    lunch = questions_of(event)[0]
    assert (lunch.label, lunch.key, lunch.required) == ("Ihr Mittagessen", "mittagessen", True)
    assert lunch.options == ["vegetarisch", "vegan", "glutenfrei"]  # an unchosen one went
    assert db.session.scalar(select(Answer.value)) == "vegan"


def test_reorder_and_delete_with_a_confirmation(client, setup):  # noqa: F811
    login(client, "ich@example.org")
    for label in ("Erste", "Zweite", "Dritte"):
        add(client, label=label, kind="text")
    event = setup["mine"]
    first, second, third = questions_of(event)
    client.post(f"{URL}/{third.id}/move", data={"direction": "up"})
    client.post(f"{URL}/{first.id}/move", data={"direction": "up"})  # already first: no change
    assert [q.label for q in questions_of(event)] == ["Erste", "Dritte", "Zweite"]
    client.post(f"{URL}/{first.id}/move", data={"direction": "down"})
    assert [q.label for q in questions_of(event)] == ["Dritte", "Erste", "Zweite"]
    assert [q.position for q in questions_of(event)] == [0, 1, 2]

    sign_up_with(event, 1, {"zweite": "meine Antwort", "erste": "bleibt"})
    sign_up_with(event, 2, {"zweite": "noch eine", "dritte": "bleibt auch"})
    confirm = client.get(f"{URL}/{second.id}/delete", headers=DE).get_data(as_text=True)
    assert "2 Personen haben sie beantwortet." in confirm
    assert questions_of(event)[2].label == "Zweite"  # asking deletes nothing
    done = client.post(f"{URL}/{second.id}/delete", headers=DE, follow_redirects=True)
    assert "Die Frage und 2 Antworten wurden gelöscht." in done.get_data(as_text=True)
    assert [q.label for q in questions_of(event)] == ["Dritte", "Erste"]
    assert db.session.scalar(select(func.count()).select_from(Answer)) == 2  # the other two
    entry = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "question.delete")
    ).one()
    assert entry.details == {"answers": 2} and entry.subject == "question:zweite"


def test_questions_of_another_event_are_404_even_with_my_slug(client, setup):  # noqa: F811
    theirs = setup["theirs"]
    theirs.questions.append(Question(key="geheim", label="Geheim", kind=QuestionKind.TEXT))
    db.session.commit()
    question_id = theirs.questions[0].id
    login(client, "ich@example.org")
    assert client.get(f"{URL}/{question_id}/edit").status_code == 404
    assert client.post(f"{URL}/{question_id}/delete").status_code == 404
    assert client.post(f"{URL}/{question_id}/move", data={"direction": "up"}).status_code == 404
    assert len(questions_of(theirs)) == 1


def test_preview_of_a_draft_for_its_organisers_only(client, setup):  # noqa: F811
    from registration.models import FileKind
    from registration.services import files

    draft = make_event(slug="entwurf", title="Geheimer Entwurf", status=EventStatus.DRAFT)
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    image = files.store(draft, FileKind.TITLE_IMAGE, png, "titel.png", "")
    db.session.commit()
    image_url = f"/events/entwurf/files/{image.id}/{image.filename}"
    assert client.get("/events/entwurf").status_code == 404  # the public sees nothing
    assert client.get(image_url).status_code == 404
    assert client.get("/admin/events/entwurf/preview").status_code == 302  # to the login

    login(client, "ich@example.org")
    assert client.get("/admin/events/entwurf/preview").status_code == 404  # not my event
    assert client.get(image_url).status_code == 404
    draft.organisers.append(accounts.find("ich@example.org"))
    db.session.commit()
    preview = client.get("/admin/events/entwurf/preview", headers=DE)
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert "Geheimer Entwurf" in page and "Dieser Entwurf ist noch nicht öffentlich." in page
    assert re.search(r'<button type="submit" class="button primary" disabled', page)
    assert "In der Vorschau kann das Formular nicht abgeschickt werden." in page
    served = client.get(image_url)
    served.close()  # a file response
    assert served.status_code == 200
    assert client.get("/events/entwurf").status_code == 404  # still not public
    edit = client.get("/admin/events/entwurf/edit").get_data(as_text=True)
    assert "/admin/events/entwurf/preview" in edit


def test_event_form_shows_import_rule_messages_in_the_visitors_language(client, setup):  # noqa: F811
    login(client, "ich@example.org")
    form = event_form(dial_in_url="ftp://meet.example.org")
    german = client.post("/admin/events/new", data=form, headers=DE).get_data(as_text=True)
    assert "muss mit https:// oder http:// beginnen" in field_error(german, "dial_in_url")
    english = client.post("/admin/events/new", data=form, headers={"Accept-Language": "en"})
    assert "must start with https:// or http://" in field_error(
        english.get_data(as_text=True), "dial_in_url"
    )


def test_lowering_seats_below_the_confirmed_shows_next_to_the_field(client, setup):  # noqa: F811
    event = setup["mine"]
    for n in range(3):
        sign_up_with(event, n, {})
    login(client, "ich@example.org")
    local = event.starts_at.astimezone(event.zone)
    form = event_form(title="Meine Werkstatt", format="on_site", capacity_on_site="2",
                      starts_at=local.strftime("%Y-%m-%dT%H:%M"),
                      ends_at=local.replace(hour=23).strftime("%Y-%m-%dT%H:%M"), dial_in_url="")  # fmt: skip
    page = client.post("/admin/events/meine/edit", data=form, headers=DE).get_data(as_text=True)
    assert (
        "Die Plätze können nicht auf 2 gesenkt werden: 3 Personen haben bereits eine Zusage."
        in (field_error(page, "capacity_on_site"))
    )
    db.session.expire_all()
    assert event.capacity_on_site == 10


def test_retention_days_are_set_on_the_event_form(client, setup):  # noqa: F811
    login(client, "ich@example.org")
    assert client.post("/admin/events/new", data=event_form(retention_days="30")).status_code == 302
    assert client.post("/admin/events/new",
                       data=event_form(slug="ohne-angabe", retention_days="")).status_code == 302  # fmt: skip
    from registration.models import Event

    days = dict(db.session.execute(select(Event.slug, Event.retention_days)).all())
    assert days["werkstatt-22"] == 30 and days["ohne-angabe"] == 90
    page = client.get("/admin/events/werkstatt-22/edit").get_data(as_text=True)
    assert 'name="retention_days" value="30"' in page
