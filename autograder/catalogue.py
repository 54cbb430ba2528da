"""Translation catalogues on disk, one format for all of them: UTF-8 JSON, indented by one space so
that a diff shows an entry per line. The messages (:mod:`autograder.messages`) and the book's pages
(:mod:`autograder.translated_book`) keep lists of ``{"en": text, <lang>: translation}`` in the order
of the English; a chapter's (:mod:`autograder.edition`) is an object keyed by cell id."""

from __future__ import annotations

import json
from pathlib import Path


def read(path: Path, empty: list | dict):
    """The catalogue at ``path``; a new one of ``empty``'s type (list or dict) when there is none yet."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else type(empty)()


def write(path: Path, catalogue) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(catalogue, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def skeleton(english: list[str], path: Path, lang: str) -> list[dict]:
    """The list for ``english`` (in its order): the entries of the catalogue at ``path`` that
    translate a text still there, an empty translation for each new text; vanished texts dropped."""
    old = {item["en"]: item for item in read(path, [])}
    return [old.get(text, {"en": text, lang: ""}) for text in english]


def stale(english: list[str], items: list[dict]) -> list[str]:
    """The texts ``items`` translate that ``english`` no longer has."""
    current = set(english)
    return [item["en"] for item in items if item["en"] not in current]
