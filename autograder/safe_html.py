"""Markdown rendered for formgrader and the feedback HTML, without the learner's script, in bounded time.

nbgrader's formgrade and feedback templates render every markdown cell (a written answer among
them) with ``markdown2html`` and never sanitize it, so ``<script>``, ``onerror=`` or a
``javascript:`` link in an answer would run in the instructor's formgrader page (with their Jupyter
token) and in the feedback page. The course's nbgrader_config.py (autograder/course.py) replaces
that filter with ``SafeMarkdown``: the same rendering, then ``clean_html``, an allowlist of the tags
and attributes markdown produces. Any other tag is escaped, so the instructor reads its literal text;
event handlers and script URLs are dropped, also when a tab or control character splits their scheme
(browsers delete those before reading a URL). ``clean_html`` also replaces nbconvert's filter of that
name, which the templates apply to the HTML that learners' code displayed (``sanitize_html``).

Rendering is bounded: mistune, html5lib and the allowlist each take time quadratic in the length of some
inputs (175 KiB of ``\\begin{a}`` or of nested ``<div>`` took tens of seconds), and feedback is written
one student after another. So a markdown cell longer than ``CELL_CHARACTERS``, and every markdown cell
after the notebook's first ``NOTEBOOK_CHARACTERS``, is shown as escaped plain text (linear time) under a
note saying why; a displayed HTML output longer than ``OUTPUT_CHARACTERS`` is replaced by a note. The
chapters' own markdown is at most 3.7 KiB a cell and 23 KiB a notebook.

Feedback pages load no script from elsewhere: ``TEMPLATE_BASEDIRS`` (set as the HTMLExporter's
``extra_template_basedirs``) puts this package's ``templates/feedback/mathjax.html.j2`` before
nbconvert's, whose macro loaded MathJax from a CDN; maths stays TeX text. The class ``mermaid``, which
would hand an answer's text to mermaid.js where a page loads it, is taken off learners' markup.
The notebooks themselves are untouched.
"""

from __future__ import annotations

import html
import importlib.util
import re
from pathlib import Path

import bleach
from bleach.css_sanitizer import CSSSanitizer
from bleach.html5lib_shim import Filter
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
CELL_CHARACTERS = 8 * 1024  # a markdown cell longer than this is shown as plain text
NOTEBOOK_CHARACTERS = 64 * 1024  # markdown cells after this many characters of a notebook: plain text
OUTPUT_CHARACTERS = 16 * 1024  # a displayed HTML output longer than this is not shown
TEMPLATE_BASEDIRS = [
    str(Path(__file__).resolve().parent / "templates"),  # feedback/mathjax.html.j2: no MathJax from a CDN
    str(Path(importlib.util.find_spec("nbgrader").origin).parent / "server_extensions" / "formgrader" / "templates"),
]
_UNSEEN = re.compile(r"[\x00-\x20\x7f]+")  # what a browser ignores (or strips) inside a URL's scheme
_SCRIPT_CLASSES = frozenset({"mermaid"})  # classes a page's script would pick up and run on


def _url(value: str) -> str:
    """``value`` as a browser reads a URL's scheme: entities decoded (the allowlist sees them raw), tabs,
    newlines and control characters gone, lower case."""
    return _UNSEEN.sub("", html.unescape(value)).lower()


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    """Classes anywhere; ids only on headings (markdown's anchors), so an answer cannot take the
    ids formgrader's own script looks up; links, but not to data: or script pages; images only embedded."""
    url = _url(value)
    return (
        name in ("class", "title")
        or (name == "id" and tag in ("h1", "h2", "h3", "h4", "h5", "h6"))
        or (tag == "a" and name == "href" and not url.startswith(("data:", "javascript:", "vbscript:")))
        or (tag == "img" and name == "src" and url.startswith("data:image/"))
        or (tag == "img" and name in ("alt", "width", "height"))
        or (tag == "ol" and name == "start")
        or (tag == "details" and name == "open")
        or (tag in ("th", "td") and name in ("style", "align", "colspan", "rowspan"))
    )


class _Finish(Filter):
    """After the allowlist: an image whose source was dropped (not embedded: a remote one would load from
    the reader's browser) becomes text, and classes that a page's script acts on are taken off."""

    def __iter__(self):
        for token in super().__iter__():
            attributes = token.get("data") if token["type"] in ("StartTag", "EmptyTag") else None
            if attributes is None:
                yield token
                continue
            if token["name"] == "img" and (None, "src") not in attributes:
                alt = attributes.get((None, "alt"), "")
                yield {"type": "Characters", "data": f"[image not shown: {alt}]" if alt else "[image not shown]"}
                continue
            if (None, "class") in attributes:
                kept = [c for c in attributes[(None, "class")].split() if c.lower() not in _SCRIPT_CLASSES]
                attributes[(None, "class")] = " ".join(kept)
            yield token


_CLEANER = bleach.Cleaner(
    tags=TAGS,
    attributes=_allowed_attribute,
    protocols=PROTOCOLS,
    css_sanitizer=CSS,
    strip_comments=True,
    filters=[_Finish],
)


def clean_html(text: str) -> str:
    """``text`` (HTML) with every tag outside ``TAGS`` escaped to text, images that are not embedded
    shown as text, and every unsafe attribute dropped; over ``OUTPUT_CHARACTERS``, a note instead."""
    if len(text) > OUTPUT_CHARACTERS:
        return _note(
            f"An HTML output of {len(text) / 1024:.0f} KiB is not shown here (over {OUTPUT_CHARACTERS // 1024} KiB)."
        )
    return _CLEANER.clean(text)


def plain_text(source: str, why: str) -> str:
    """``source`` shown as it was written (escaped, in linear time), below a note saying ``why``."""
    return _note(why) + f'<pre class="autograder-plain-text">{html.escape(source)}</pre>'


def _note(text: str) -> str:
    return f'<p class="autograder-note"><em>{html.escape(text)}</em></p>'


def rendered_sources(cells) -> set[str]:
    """The sources of the markdown cells that are rendered as Markdown: each at most ``CELL_CHARACTERS``,
    in order until the notebook's ``NOTEBOOK_CHARACTERS`` are spent."""
    kept, spent = set(), 0
    for cell in cells:
        if cell.get("cell_type") != "markdown" or len(cell.get("source", "")) > CELL_CHARACTERS:
            continue
        spent += len(cell.source)
        if spent > NOTEBOOK_CHARACTERS:
            break
        kept.add(cell.source)
    return kept


@pass_context
def _render_clean(self, context, source: str) -> str:
    if len(source) > CELL_CHARACTERS:
        return plain_text(
            source,
            f"This cell ({len(source) / 1024:.0f} KiB) is longer than the {CELL_CHARACTERS // 1024} KiB "
            "rendered as Markdown; it is shown as written.",
        )
    notebook = context.get("nb")
    if notebook is not None:
        if self._notebook is not notebook:
            self._notebook, self._rendered = notebook, rendered_sources(notebook.get("cells", []))
        if source not in self._rendered and any(source == c.get("source") for c in notebook.get("cells", [])):
            return plain_text(
                source,
                f"The notebook's markdown is longer than the {NOTEBOOK_CHARACTERS // 1024} KiB rendered as "
                "Markdown; this cell is shown as written.",
            )
    return _CLEANER.clean(self.parent.markdown2html(context, source))


class SafeMarkdown(LoggingConfigurable):
    """The ``markdown2html`` filter of the HTMLExporter it is registered on (its parent: attachments,
    anchors and highlighting as usual), followed by ``clean_html``, within the size limits above.

    Registered with ``c.HTMLExporter.filters = {"markdown2html": "autograder.safe_html.SafeMarkdown"}``."""

    _notebook = None  # the notebook being rendered, and which of its markdown cells render as Markdown
    _rendered: set[str] = set()
    __call__ = _render_clean
    jinja_pass_arg = _render_clean.jinja_pass_arg  # Jinja reads it from the instance it calls
