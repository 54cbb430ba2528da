"""MyST markup as plain Markdown, for the learner notebooks that Jupyter and Colab show as they are.

The book (Jupyter Book, Sphinx) resolves the chapters' roles and directives; a hosted notebook shows
them raw (``{cite:p}`vaswani2017attention```). :func:`plain_markdown` rewrites one markdown cell:

- ``{cite:p}`a,b``` becomes "([Vaswani et al., 2017](url); [Bahdanau et al., 2015](url))" and
  ``{cite:t}`a``` "[Vaswani et al. (2017)](url)": author–year text from ``book/references.bib``,
  linked to the paper's URL or DOI (an arXiv preprint's id gives its abstract page); an entry with
  neither stays plain text.
- ``{doc}``, ``{ref}``, ``{numref}``: their explicit title (``{ref}`the title <label>```), else the
  page's or label's name; ``{doc}`../references``` links to the course's list of references.
- A directive fenced with backticks or colons (````` ```{note} `````) becomes a quoted paragraph
  that starts with its name in bold ("> **Note.** ...").
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIBLIOGRAPHY = ROOT / "book" / "references.bib"

ROLE = re.compile(r"\{(cite:p|cite:t|cite|doc|ref|numref|eq|term)\}`([^`]*)`")
DIRECTIVE = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}[ \t]*(?P<argument>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.M | re.S,
)
TITLED = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$", re.S)


def _latex_to_text(text: str) -> str:
    """``van Merri{\\"e}nboer`` as "van Merriënboer"."""
    from pybtex.richtext import Text

    return Text.from_latex(text).render_as("text")


@cache
def bibliography() -> dict[str, tuple[str, str, str | None]]:
    """{key: (authors as cited, year, URL or None)} for every entry of ``book/references.bib``."""
    from pybtex.database import parse_file

    entries = {}
    for key, entry in parse_file(str(BIBLIOGRAPHY)).entries.items():
        names = [_latex_to_text(" ".join(p.prelast_names + p.last_names)) for p in entry.persons.get("author", [])]
        authors = names[0] if len(names) == 1 else " and ".join(names) if len(names) == 2 else f"{names[0]} et al."
        fields = entry.fields
        arxiv = re.search(r"arXiv:(\d{4}\.\d{4,5})", fields.get("journal", "") + fields.get("note", ""))
        url = (
            fields.get("url")
            or (f"https://doi.org/{fields['doi']}" if "doi" in fields else None)
            or (f"https://arxiv.org/abs/{arxiv.group(1)}" if arxiv else None)
        )
        entries[key] = (authors, fields.get("year", "n.d."), url)
    return entries


def references_url(config: Path = ROOT / "_config.yml") -> str:
    """The course's list of references as the repository shows it (``book/references.bib``)."""
    repository = yaml.safe_load(Path(config).read_text())["repository"]
    return f"{repository['url'].rstrip('/')}/blob/{repository.get('branch', 'main')}/book/references.bib"


def _linked(text: str, url: str | None) -> str:
    return f"[{text}]({url})" if url else text


def _citation(kind: str, keys: str) -> str:
    cited = []
    for key in (k.strip() for k in keys.split(",")):
        if key not in bibliography():
            raise KeyError(f"{{cite}} of {key!r}, which is not in {BIBLIOGRAPHY.name}")
        authors, year, url = bibliography()[key]
        cited.append(_linked(f"{authors} ({year})", url) if kind == "cite:t" else _linked(f"{authors}, {year}", url))
    return "; ".join(cited) if kind == "cite:t" else f"({'; '.join(cited)})"


def _role(match: re.Match) -> str:
    kind, content = match.group(1), match.group(2)
    if kind.startswith("cite"):
        return _citation(kind, content)
    titled = TITLED.match(content)
    title, target = (titled["title"], titled["target"]) if titled else (None, content)
    if kind == "doc" and target.rstrip("/").endswith("references"):
        return _linked(title or "references", references_url())
    return title or target.rsplit("/", 1)[-1].replace("-", " ").replace("_", " ")


def _directive(match: re.Match) -> str:
    lines = [line for line in match["body"].splitlines() if not re.match(r"^:[\w-]+:", line)]  # its options
    heading = match["argument"].strip() or match["name"].replace("-", " ").capitalize()
    text = "\n".join(lines).strip()
    return "\n".join(f"> {line}".rstrip() for line in f"**{heading}.** {text}".splitlines())


def plain_markdown(source: str) -> str:
    """``source`` (a markdown cell's text) with MyST roles and directives written as plain Markdown."""
    return ROLE.sub(_role, DIRECTIVE.sub(_directive, source))
