"""Organisers write Markdown; pages show it as sanitised HTML (no script, no handlers, safe
links)."""

from __future__ import annotations

from functools import lru_cache

import markdown
import nh3
from markupsafe import Markup

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "b", "i", "u", "s", "del", "ins", "mark", "small", "sub",
    "sup",
    "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd", "blockquote", "code", "pre",
    "a", "abbr", "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title", "hreflang"}, "abbr": {"title"}, "th": {"scope"}}
URL_SCHEMES = {"http", "https", "mailto", "tel"}


def sanitise(html: str) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def render_markdown(text: str | None) -> Markup:
    """Markdown (with tables) to HTML that is safe to put on a page. A top-level "# Heading"
    becomes h2: the page's h1 is the event title."""
    if not text:
        return Markup("")
    return Markup(_render(text))  # noqa: S704  (sanitised in _render)


@lru_cache(maxsize=256)
def _render(text: str) -> str:
    """The sanitised HTML of ``text``. Remembered: an event page shows the same description to
    every visitor, and converting it cost more than the rest of the page (bench/load_test.py).
    The text is the key, so an edited description is converted afresh."""
    html = (
        markdown.markdown(text, extensions=["tables", "sane_lists"], output_format="html")
        .replace("<h1>", "<h2>")
        .replace("</h1>", "</h2>")
    )
    return sanitise(html)
