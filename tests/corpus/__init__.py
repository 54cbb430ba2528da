"""The project's corpus of learner answers: plausible bugs and correct alternatives.

One module per chapter topic, ``tests/corpus/<topic>.py``, defines ``ENTRIES``, a list of
:class:`Entry`. Each entry's ``source`` is a notebook cell, as a learner would write it, that
defines one graded name; it replaces the answer cell that defines that name in the chapter's
released notebook (every other cell stays as released, so the chapter's imports and given
code are there). A bug must lose points (at least the sub-checks in ``fails``, with ``says``
in a failure message); an alternative must get full marks; and both grading paths (the
sandboxed ``python -m autograder grade`` and the notebook's grade cells) must agree.
"""

from __future__ import annotations

import importlib
import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    name: str  # the graded name the source defines
    label: str  # what this answer does, e.g. "no max subtraction"
    source: str  # the answer cell's code
    bug: bool
    fails: tuple[str, ...] = ()  # bugs: sub-checks that must fail
    says: str = ""  # bugs: a fragment one failure message must contain (the diagnosis)


def bug(name: str, label: str, source: str, fails=(), says: str = "") -> Entry:
    return Entry(name, label, textwrap.dedent(source).strip() + "\n", True, tuple(fails), says)


def alternative(name: str, label: str, source: str) -> Entry:
    return Entry(name, label, textwrap.dedent(source).strip() + "\n", False)


def entries(topic: str) -> list[Entry]:
    """The corpus of one topic (empty when it has none yet)."""
    try:
        return importlib.import_module(f"corpus.{topic}").ENTRIES
    except ModuleNotFoundError:
        return []
