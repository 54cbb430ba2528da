"""The project's corpus of learner answers: plausible bugs and correct alternatives.

One module per chapter topic, ``tests/corpus/<topic>.py``, defines ``ENTRIES``, a list of
:class:`Entry`. Each entry's ``source`` is a notebook cell, as a learner would write it, that
defines one graded name; it replaces the answer cell that defines that name in the chapter's
released notebook (every other cell stays as released, so the chapter's imports and given
code are there). A bug must lose points (at least the sub-checks in ``fails``, with ``says``
in a failure message); an alternative must get full marks; and both grading paths (the
sandboxed ``python -m autograder grade`` and the notebook's grade cells) must agree.

An *advised* answer (:func:`advised`) breaks a rule that only the learner's own process can
observe (it calls ``torch.softmax``, computes gradients with autograd, launches no Triton
kernel): the grader cannot give or take points for that, so it gets full marks, and the advice
sub-checks in ``advice`` (0 points) must fail with ``says`` in their message.
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
    says: str = ""  # bugs and advised answers: a fragment one failure message must contain (the diagnosis)
    advice: tuple[str, ...] = ()  # advised answers: the advice sub-checks that must fail (full marks still)


def bug(name: str, label: str, source: str, fails=(), says: str = "") -> Entry:
    return Entry(name, label, textwrap.dedent(source).strip() + "\n", True, tuple(fails), says)


def advised(name: str, label: str, source: str, advice=(), says: str = "") -> Entry:
    return Entry(name, label, textwrap.dedent(source).strip() + "\n", False, (), says, tuple(advice))


def alternative(name: str, label: str, source: str) -> Entry:
    return Entry(name, label, textwrap.dedent(source).strip() + "\n", False)


def entries(topic: str) -> list[Entry]:
    """The corpus of one topic (empty when it has none yet)."""
    try:
        return importlib.import_module(f"corpus.{topic}").ENTRIES
    except ModuleNotFoundError:
        return []
