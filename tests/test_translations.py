"""German is the users' language: every text the code and the templates show has a German
translation in the catalogue (extracted the way ``make messages`` does)."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent


def used_messages() -> set[str]:
    """The msgids in the code and templates (singular forms), as ``make messages`` finds them."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    keywords = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None, "Message": None}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return {m for m in found if m}


def test_every_text_has_a_german_translation():
    path = ROOT / "registration/translations/de/LC_MESSAGES/messages.po"
    with path.open("rb") as file:
        catalogue = read_po(file)
    translated = {
        (m.id[0] if isinstance(m.id, tuple) else m.id)
        for m in catalogue
        if m.id and (all(m.string) if isinstance(m.string, tuple) else m.string)
    }
    missing = sorted(used_messages() - translated)
    assert missing == [], "no German translation (run `make messages`, then translate):\n" + (
        "\n".join(missing)
    )
