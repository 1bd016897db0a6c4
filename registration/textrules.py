"""The one rule for text that enters the system (forms, the API, the import, the CLI).

One-line values (names, titles, subjects, addresses) may contain no control character at all:
they end up in mail headers, file names and table cells. Multi-line values (descriptions,
addresses, messages) keep line breaks and tabs, with every CRLF or lone CR turned into "\\n" (a
browser's textarea sends CRLF), and refuse every other control character.
"""

from __future__ import annotations

import re

#: C0 controls, DEL, C1 controls, and the Unicode line and paragraph separators (which split
#: lines for ``str.splitlines`` and for some mail clients).
_ONE_LINE_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: The same, less line feed and tab (checked after CRLF and CR became line feeds).
_MULTI_LINE_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def normalise_newlines(value: str) -> str:
    """CRLF and lone CR become LF."""
    return value.replace("\r\n", "\n").replace("\r", "\n")


def has_lone_surrogates(value: str) -> bool:
    """Lone UTF-16 surrogates (only a JSON escape such as ``"\\ud800"`` produces them) have no
    UTF-8 form: no database, export or email can take them."""
    return _SURROGATES.search(value) is not None


def is_clean_line(value: str) -> bool:
    """Whether a one-line value is free of control characters and lone surrogates."""
    return _ONE_LINE_FORBIDDEN.search(value) is None and not has_lone_surrogates(value)


def is_clean_text(value: str) -> bool:
    """Whether a multi-line value (after :func:`normalise_newlines`) is free of control
    characters other than line feed and tab, and of lone surrogates."""
    return _MULTI_LINE_FORBIDDEN.search(
        normalise_newlines(value)
    ) is None and not has_lone_surrogates(value)


def header_safe(value: str) -> str:
    """A value for a mail header or a file name: every control character and line separator
    becomes a space. The second line of defence; input was refused at the door already."""
    return _ONE_LINE_FORBIDDEN.sub(" ", value)
