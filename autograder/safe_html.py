"""Markdown rendered for formgrader and the feedback HTML, without the learner's script.

nbgrader's formgrade and feedback templates render every markdown cell (a written answer among
them) with ``markdown2html`` and never sanitize it, so ``<script>``, ``onerror=`` or a
``javascript:`` link in an answer would run in the instructor's formgrader page (with their Jupyter
token) and in the feedback page. The course's nbgrader_config.py (autograder/course.py) replaces
that filter with ``SafeMarkdown``: the same rendering, then ``clean_html``, an allowlist of the tags
and attributes markdown produces. Any other tag is escaped, so the instructor reads its literal text;
event handlers and script URLs are dropped. ``clean_html`` also replaces nbconvert's filter of that
name, which the templates apply to the HTML that learners' code displayed (``sanitize_html``).
Maths stays TeX text for MathJax, which nbconvert loads with its ``Safe`` extension. The notebooks
themselves are untouched.
"""

from __future__ import annotations

import bleach
from bleach.css_sanitizer import CSSSanitizer
from bs4 import BeautifulSoup
from jinja2 import pass_context
from traitlets.config import LoggingConfigurable

TAGS = frozenset(
    {"p", "br", "hr", "div", "span", "em", "strong", "b", "i", "u", "s", "del", "ins", "sub", "sup", "mark"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "code", "kbd", "samp", "var"}
    | {"ul", "ol", "li", "dl", "dt", "dd", "a", "img", "abbr", "details", "summary"}
    | {"table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption"}
)
PROTOCOLS = frozenset({"http", "https", "mailto", "data"})
CSS = CSSSanitizer(allowed_css_properties=["text-align"])  # mistune aligns table columns with style=


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    """Classes anywhere; ids only on headings (markdown's anchors), so an answer cannot take the
    ids formgrader's own script looks up; links, but not to data: pages; images only embedded."""
    url = value.strip().lower()
    return (
        name in ("class", "title")
        or (name == "id" and tag in ("h1", "h2", "h3", "h4", "h5", "h6"))
        or (tag == "a" and name == "href" and not url.startswith("data:"))
        or (tag == "img" and name == "src" and url.startswith("data:image/"))
        or (tag == "img" and name in ("alt", "width", "height"))
        or (tag == "ol" and name == "start")
        or (tag == "details" and name == "open")
        or (tag in ("th", "td") and name in ("style", "align", "colspan", "rowspan"))
    )


def clean_html(html: str) -> str:
    """``html`` with every tag outside ``TAGS`` escaped to text, and images that are not embedded too
    (a remote one would load from the instructor's browser); every unsafe attribute is dropped."""
    soup = BeautifulSoup(html, "html.parser")
    for image in soup.find_all("img"):
        if not image.get("src", "").strip().lower().startswith("data:image/"):
            image.replace_with(str(image))  # a text node: escaped when written out
    return bleach.clean(
        str(soup), tags=TAGS, attributes=_allowed_attribute, protocols=PROTOCOLS, css_sanitizer=CSS, strip_comments=True
    )


@pass_context
def _render_clean(self, context, source: str) -> str:
    return clean_html(self.parent.markdown2html(context, source))


class SafeMarkdown(LoggingConfigurable):
    """The ``markdown2html`` filter of the HTMLExporter it is registered on (its parent: attachments,
    anchors and highlighting as usual), followed by ``clean_html``.

    Registered with ``c.HTMLExporter.filters = {"markdown2html": "autograder.safe_html.SafeMarkdown"}``."""

    __call__ = _render_clean
    jinja_pass_arg = _render_clean.jinja_pass_arg  # Jinja reads it from the instance it calls
