"""The two ways a submission is graded, as the corpus test and the seed sweep use them.

- The sandbox path: :func:`autograder.grading.grade_cells`, the code ``python -m autograder
  grade`` runs (the CLI itself is exercised once per chapter by ``tests/test_corpus.py``).
- The grade-cell path: the submission's code cells executed in a fresh namespace, as a kernel
  runs them (an error in one cell does not stop the next, as in nbgrader's autograde), then
  ``autograder.grade("topic.name", obj)``, the call each grade cell makes. Each submission runs
  in a forked child, so no answer can change what the next one sees.

A verdict is a dict ``{(function, check): (passed, score, message)}``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import linecache
import os
import pickle
import re
import signal
from functools import cache
from pathlib import Path

import nbformat
from corpus import Entry

from autograder import confinement
from autograder.chapters import Chapter
from autograder.grading import grade_cells, load_notebook, submission_cells
from notebooks import ROOT, filled_notebook, is_answer, nbgrader_meta, student_notebook

REPORT_LINE = re.compile(r"^  \[(PASS|FAIL|ADVICE)\] (\w+) \(([\d.]+) pt\)(?:: (.*))?$")


def notebook_path(chapter: Chapter) -> Path:
    return ROOT / "chapters" / f"{chapter.name}.ipynb"


@cache
def answer_cell_id(chapter: Chapter, name: str) -> str:
    """The grade_id of the released notebook's answer cell that defines ``name``."""
    defines = re.compile(rf"^(?:def|class)\s+{re.escape(name)}\b|^{re.escape(name)}\s*=", re.MULTILINE)
    cells = [c for c in student_notebook(notebook_path(chapter)).cells if is_answer(c) and defines.search(c.source)]
    assert len(cells) == 1, f"{chapter.name}: {len(cells)} answer cells define {name}"
    return nbgrader_meta(cells[0])["grade_id"]


def write_submission(chapter: Chapter, answers: dict, path: Path) -> Path:
    """The released notebook with answer cells replaced (``answers``: grade_id -> source, or
    ``"*"``: see :func:`notebooks.filled_notebook`), written as Jupyter writes it."""
    nbformat.write(filled_notebook(notebook_path(chapter), answers), path)
    return path


def entry_answers(chapter: Chapter, entry: Entry) -> dict:
    return {answer_cell_id(chapter, entry.name): entry.source}


def cells_of(path: Path) -> list[str]:
    """The code a grader runs from the notebook at ``path`` (demo and grade cells skipped)."""
    return submission_cells(load_notebook(path))


def sandbox_verdict(cells: list[str], chapter: Chapter, names, seed=None) -> dict:
    return {
        (r.function, r.check): (r.passed, r.score, r.message)
        for r in grade_cells(cells, chapter.name, names=list(names), seed=seed)
    }


def parse_report(text: str) -> dict:
    """The verdict printed by ``autograder.grade`` (``format_results``), read back."""
    verdict, function, last = {}, None, None
    for line in text.splitlines():
        match = REPORT_LINE.match(line)
        if match:
            passed = match.group(1) == "PASS"
            last = (function, match.group(2))
            verdict[last] = (passed, float(match.group(3)) if passed else 0.0, match.group(4) or "passed")
        elif not line.startswith(" ") and ": " in line and line.endswith("points"):
            function = line.split(":", 1)[0]
        elif last is not None:  # a message that spans lines
            passed, score, message = verdict[last]
            verdict[last] = (passed, score, message + "\n" + line)
    return verdict


def run_like_a_kernel(cells: list[str]) -> dict:
    """Execute ``cells`` in a fresh namespace, as the kernel would; returns the namespace."""
    namespace = {"__name__": "__main__"}
    for index, source in enumerate(cells):
        filename = f"<cell {index}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            exec(compile(source, filename, "exec"), namespace)
        except BaseException:  # noqa: BLE001 - a kernel goes on with the next cell
            pass
    return namespace


def grade_cell(topic: str, name: str, namespace: dict) -> tuple[dict, float]:
    """What the grade cell of ``name`` does: ``autograder.grade`` on the namespace's object.
    Returns (verdict, the cell's score); a missing name fails like the cell's NameError."""
    from autograder import grade

    graded = namespace.get("__graded__", {})  # the object where its grade cell stands (grading.CAPTURE)
    if name not in graded and name not in namespace:
        return {}, 0.0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        score = grade(f"{topic}.{name}", graded.get(name, namespace.get(name)), namespace)
    return parse_report(out.getvalue()), score


def in_child(fn, *args, timeout=600):
    """``fn(*args)`` in a forked child (a fresh process image for the learner's code); returns
    its result, or raises RuntimeError when the child dies without one."""
    for module in confinement.PRELOAD:  # imported once, before forking, as the sandbox's fork server does
        importlib.import_module(module)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        signal.alarm(timeout)
        try:
            payload = pickle.dumps(("ok", fn(*args)))
        except BaseException as error:  # noqa: BLE001
            payload = pickle.dumps(("error", f"{type(error).__name__}: {error}"))
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"the grading child died without an answer ({fn.__name__})")
    status, value = pickle.loads(data)
    if status != "ok":
        raise RuntimeError(value)
    return value


def _kernel_verdicts(cells, topic, names):
    namespace = run_like_a_kernel(cells)
    return {name: grade_cell(topic, name, namespace) for name in names}


def kernel_verdict(cells: list[str], chapter: Chapter, names) -> tuple[dict, dict]:
    """(verdict, {name: the grade cell's score}) of the grade-cell path, in a forked child."""
    graded = in_child(_kernel_verdicts, cells, chapter.topic, list(names))
    verdict, scores = {}, {}
    for name, (name_verdict, score) in graded.items():
        verdict.update(name_verdict)
        scores[name] = score
    return verdict, scores
