"""The Chinese edition of a chapter, made from the English one: one source, code that cannot drift.

A chapter's translation is a catalogue, ``chapters/<lang>/<chapter>.json``, keyed by cell id:

    {"cell-00": {"markdown": {"en": "<the English cell>", "zh": "<its translation>"}},
     "cell-05": {"strings": [{"en": "<a docstring, dedented>", "zh": "..."}]},
     "78f37401": {"strings": [...], "caption": {"en": ..., "zh": ...}, "alt": {"en": ..., "zh": ...}}}

Markdown cells are translated whole. A code cell is never copied: the edition takes the English
cell and replaces only string literals, by value, with the catalogue's translation of them: the
docstrings (the exercise's contract), and in a cell the book shows without its code
(``remove-input``: a quiz or a concept figure) every literal with words in it (strings that are
not prose, such as colours, keep ``zh == en``). Literals inside f-strings stay English. A figure's
caption and alt text (``mystnb`` metadata) are translated like markdown.

An entry whose ``en`` is no longer the English cell's text is *stale*: :func:`problems` reports
it, as it reports a missing translation, so CI fails until a translator has looked at the change.
``python -m autograder.edition chapters/NN_x.ipynb`` writes the catalogue's skeleton: entries for
new text (``zh`` empty), entries of vanished cells dropped, everything else kept as it is.
"""

from __future__ import annotations

import ast
import copy
import inspect
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder import catalogue as catalogues
from autograder.messages import ENGLISH, LANGUAGES

TRANSLATED = tuple(lang for lang in LANGUAGES if lang != ENGLISH)  # the editions made from the English
WORDS = re.compile(r"[A-Za-z]{2}")


def catalogue_path(chapter: Path, lang: str) -> Path:
    """``chapters/02_attention.ipynb`` -> ``chapters/zh/02_attention.json``."""
    return chapter.parent / lang / f"{chapter.stem}.json"


@dataclass(frozen=True)
class Literal:
    """A string literal of a code cell: its value and where it sits (0-based line, byte columns)."""

    value: str
    docstring: bool
    start: tuple[int, int]
    end: tuple[int, int]

    @property
    def text(self) -> str:
        """What a translator reads: a docstring without its indentation, other strings as they are."""
        return inspect.cleandoc(self.value) if self.docstring else self.value


def literals(source: str, prose_only: bool) -> list[Literal]:
    """The cell's docstrings, and with ``prose_only`` False every other string literal with words
    in it (f-strings excluded: their parts have no reliable positions before Python 3.12)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
        and isinstance(node.body[0].value.value, str)
    }
    inside_fstrings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in inside_fstrings:
            continue
        docstring = id(node) in docstrings
        if docstring or (not prose_only and WORDS.search(node.value)):
            found.append(
                Literal(
                    node.value,
                    docstring,
                    (node.lineno - 1, node.col_offset),
                    (node.end_lineno - 1, node.end_col_offset),
                )
            )
    return sorted(found, key=lambda literal: literal.start)


def shown_without_code(cell) -> bool:
    """A cell the book shows by its output only (a quiz, a concept figure): its strings are prose."""
    return "remove-input" in cell.metadata.get("tags", [])


def english_units(cell) -> dict:
    """The translatable text of one cell, as catalogue entries with an empty ``zh``."""
    units = {}
    if cell.cell_type == "markdown":
        if cell.source.strip():
            units["markdown"] = {"en": cell.source, "zh": ""}
        return units
    if cell.cell_type != "code":
        return units
    texts = []
    for literal in literals(cell.source, prose_only=not shown_without_code(cell)):
        if literal.text not in texts:
            texts.append(literal.text)
    if texts:
        units["strings"] = [{"en": text, "zh": ""} for text in texts]
    figure = cell.metadata.get("mystnb", {})
    if "caption" in figure.get("figure", {}):
        units["caption"] = {"en": figure["figure"]["caption"], "zh": ""}
    if "alt" in figure.get("image", {}):
        units["alt"] = {"en": figure["image"]["alt"], "zh": ""}
    return units


def skeleton(notebook, old: dict) -> dict:
    """The catalogue for ``notebook``: ``old``'s entries where they still translate a cell's
    current text (or are stale: kept, for the translator to see), new text with an empty ``zh``."""
    catalogue = {}
    for cell in notebook.cells:
        units = english_units(cell)
        if not units:
            continue
        kept = old.get(cell.id, {})
        entry = {}
        for kind, unit in units.items():
            if kind == "strings":
                previous = {item["en"]: item for item in kept.get("strings", [])}
                entry[kind] = [previous.get(item["en"], item) for item in unit]
                # strings whose English changed: left in place, stale, until translated again
                entry[kind] += [item for en, item in previous.items() if en not in {i["en"] for i in unit}]
            else:
                entry[kind] = kept.get(kind, unit)
        catalogue[cell.id] = entry
    return catalogue


def problems(notebook, catalogue: dict) -> list[str]:
    """What keeps the catalogue from translating ``notebook``: text with no translation, and
    translations older than the English they translate (an empty list when complete)."""
    found = []
    for cell in notebook.cells:
        units = english_units(cell)
        entry = catalogue.get(cell.id, {})
        for kind, unit in units.items():
            if kind == "strings":
                known = {item["en"]: item["zh"] for item in entry.get("strings", [])}
                for item in unit:
                    if not known.get(item["en"]):
                        found.append(f"cell {cell.id}: no translation of the string {item['en'][:60]!r}")
                stale = [en for en in known if en not in {item["en"] for item in unit}]
                found += [f"cell {cell.id}: the string {en[:60]!r} is no longer in the cell (stale)" for en in stale]
            elif kind not in entry or not entry[kind].get("zh"):
                found.append(f"cell {cell.id}: no translation of its {kind}")
            elif entry[kind]["en"] != unit["en"]:
                found.append(f"cell {cell.id}: its {kind} changed since it was translated (stale)")
    found += [
        f"cell {cell_id}: no such cell in the chapter" for cell_id in set(catalogue) - {c.id for c in notebook.cells}
    ]
    return found


def _literal_source(literal: Literal, translation: str, indent: str) -> str:
    """Python source for a string whose value is ``translation``, in the style of the original."""
    if not literal.docstring:
        return json.dumps(translation, ensure_ascii=False)  # a JSON string is a valid Python literal
    lines = translation.split("\n")
    body = "\n".join([lines[0]] + [indent + line if line else line for line in lines[1:]])
    if literal.value.endswith("\n" + indent) or (literal.value.endswith("\n") and not indent):
        body += "\n" + indent
    return '"""' + body.replace("\\", "\\\\").replace('"""', '\\"""') + '"""'


def _docstring_indent(literal: Literal) -> str:
    lines = literal.value.split("\n")[1:]
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    if indents:
        return " " * min(indents)
    return " " * (len(lines[-1]) if lines and not lines[-1].strip() else 0)


def translate_code(source: str, translations: dict[str, str], prose_only: bool) -> str:
    """``source`` with each literal whose text ``translations`` holds replaced by its translation."""
    lines = [line.encode() for line in source.split("\n")]
    for literal in reversed(literals(source, prose_only)):
        translation = translations.get(literal.text)
        if not translation or translation == literal.text:
            continue
        (first, start), (last, end) = literal.start, literal.end
        new = _literal_source(literal, translation, _docstring_indent(literal)).encode()
        lines[first : last + 1] = (lines[first][:start] + new + lines[last][end:]).split(b"\n")
    translated = b"\n".join(lines).decode()
    assert _without_strings(translated) == _without_strings(source), "a translation changed the code"
    return translated


def _without_strings(source: str) -> str:
    """The code's syntax tree with every string literal blanked: what two editions must share."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


def same_code(english: str, translated: str) -> bool:
    """True when two code cells differ at most in their string literals."""
    return _without_strings(english) == _without_strings(translated)


def translated(notebook, catalogue: dict, lang: str):
    """A copy of ``notebook`` (a chapter, its student view or its rendered page) in ``lang``:
    cells matched by id, text without a translation left in English."""
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        entry = catalogue.get(cell.get("id"), {})
        if not entry:
            continue
        if cell.cell_type == "markdown" and entry.get("markdown", {}).get(lang):
            if entry["markdown"]["en"] == cell.source:
                cell.source = entry["markdown"][lang]
        elif cell.cell_type == "code":
            strings = {item["en"]: item[lang] for item in entry.get("strings", []) if item.get(lang)}
            cell.source = translate_code(cell.source, strings, prose_only=not shown_without_code(cell))
            figure = cell.metadata.get("mystnb", {})
            for kind, where in (("caption", "figure"), ("alt", "image")):
                if entry.get(kind, {}).get(lang) and figure.get(where, {}).get(kind) == entry[kind]["en"]:
                    figure[where][kind] = entry[kind][lang]
    notebook.metadata.setdefault("transformers_graded", {})["language"] = lang
    return notebook


def load(chapter: Path, lang: str) -> dict:
    return catalogues.read(catalogue_path(chapter, lang), {})


def save(chapter: Path, lang: str, catalogue: dict) -> Path:
    return catalogues.write(catalogue_path(chapter, lang), catalogue)


def main(argv: list[str]) -> int:
    """Update the catalogues of the chapters named in ``argv``; print what still needs translating."""
    status = 0
    for name in argv:
        chapter = Path(name)
        notebook = nbformat.read(chapter, as_version=4)
        for lang in TRANSLATED:
            catalogue = skeleton(notebook, load(chapter, lang))
            path = save(chapter, lang, catalogue)
            missing = problems(notebook, catalogue)
            print(f"{path}: {len(missing)} to translate")
            for problem in missing:
                print(f"  {problem}")
            status |= bool(missing)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
