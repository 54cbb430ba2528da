"""Grading a filled-in chapter notebook: read it, run its code in the sandbox, run the
chapter's check suites against it, and report per function and per sub-check."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from autograder import oracle
from autograder.chapters import BY_NAME, BY_TOPIC, CHAPTERS
from autograder.checks import suites
from autograder.files import NotAFile, read_file
from autograder.messages import language, term, translate
from autograder.student import KernelBackend, Student, StudentError
from autograder.suite import Result

if TYPE_CHECKING:  # imported where needed: nbformat costs seconds
    import nbformat

if oracle.HAS_REFERENCE:  # the course's checkout: submissions run confined (instructors' official grades)
    from autograder.sandbox import Limits
    from autograder.sandbox import Sandbox as LearnerProcess
    from autograder.sandbox import SandboxError as ProcessError  # noqa: F401 (for the CLI)
else:  # the learner's kit: the learner's own code, on their own machine, in a plain child process
    from autograder.local import Limits
    from autograder.local import LocalProcess as LearnerProcess
    from autograder.local import LocalProcessError as ProcessError  # noqa: F401 (for the CLI)

DEMO_TAG = "demo"  # cells that only illustrate (plots, training runs): grading skips them
MAX_NOTEBOOK_BYTES = 100 << 20
MAX_NESTING = 100  # how deeply a notebook's JSON may nest (Jupyter's own stay under 20 levels)
# How many objects and lists a notebook's JSON may hold: the chapters hold about 200, a notebook
# with its outputs a few thousand; nbformat, nbgrader and a deep copy cost ~70 µs and ~2 kB each
# (560,000 tiny objects in 4.3 MiB of metadata took a worker 40 s and 1.2 GB).
MAX_CONTAINERS = 50_000
GRADE_CALL = re.compile(r"""\bgrade\(\s*["'](\w+)\.(\w+)["']\s*,""")  # a grade cell's grade("topic.name", name)
# Where a grade cell stands, the graded object is kept in ``__graded__`` (read first by the calling protocol).
CAPTURE = 'if {name!r} in globals(): globals().setdefault("__graded__", {{}})[{name!r}] = {name}'
# A graded function's time budget for all its checks together, in the sandbox: this many times
# what the reference takes to pass the same checks in this process, plus a floor (a fresh sandbox
# imports what the first calls need: Triton, sympy for a first backward).
BUDGET_FACTOR = 10
BUDGET_FLOOR = 10.0
CELLS_ALLOWANCE = 20.0  # what a notebook's budget adds to its functions' for running its cells and restarts


class GradingError(Exception):
    """The notebook could not be graded at all (the message says why)."""


def quiet():
    """Silence warnings and stderr, Python's and the process's file descriptor 2 (where
    torch's C++ warnings go): nbgrader scores a grade cell that writes to stderr as 0."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(_fd_to_devnull(2))
    return stack


@contextlib.contextmanager
def _fd_to_devnull(fd: int):
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def grade_in_kernel(qualified_name: str, answer, namespace: dict | None = None) -> float:
    """Grade one answer object in the current process; print the report, return the score.
    ``namespace``: the notebook's, where the graded names the suite ``depends_on`` are found."""
    topic, name = qualified_name.split(".", 1)
    suite = suites(topic)[name]
    given = {d.function: namespace[d.function] for d in suite.depends_on if d.function in (namespace or {})}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the sandbox: measured CPU times (and their ratios) mean the same in both paths
    try:
        with quiet():
            results = suite.run(Student(KernelBackend({**given, name: answer}), name))
    finally:
        torch.set_num_threads(threads)
    print(format_results(results))
    return round(sum(r.score for r in results), 6)


def format_results(results: list[Result], lang: str | None = None) -> str:
    """The report a learner reads, in ``lang`` (default: :func:`messages.language`)."""
    lang = lang or language()
    lines, function = [], None
    for r in results:
        if r.function != function:
            function = r.function
            mine = [x for x in results if x.function == function]
            score, most = sum(x.score for x in mine), sum(x.max_score for x in mine)
            lines.append(f"{function}: {score:g} / {most:g} " + term("points", lang))
        mark = term("PASS", lang) if r.passed else term("ADVICE", lang) if r.advice else term("FAIL", lang)
        because = "" if r.passed else ": " + translate(r.message, lang).text
        lines.append(f"  [{mark}] {r.check} ({r.max_score:g} " + term("pt", lang) + ")" + because)
    return "\n".join(lines)


def load_notebook(path) -> nbformat.NotebookNode:
    """Read the learner's own notebook at ``path`` (symbolic links followed: it is theirs;
    a directory or FIFO is refused, not waited on); see :func:`parse_notebook`. Raises
    GradingError with the reason."""
    try:
        data = read_file(Path(path).resolve(), MAX_NOTEBOOK_BYTES)
    except FileNotFoundError:
        raise GradingError(f"{path}: no such file") from None
    except (NotAFile, OSError) as error:
        raise GradingError(f"{path}: {error}") from None
    return parse_notebook(data, str(path))


def import_nbformat():
    """nbformat, imported only once a notebook is read, and without jsonschema's optional checker of IRI
    formats: its package (``rfc3987_syntax``) compiles 39 grammars when imported, 1.2 s of the 5 s a
    learner waited for ``grade``, and nbformat's schema has no IRI format. Where jsonschema is already
    imported, nothing changes; afterwards the package imports as usual for anyone who asks."""
    blocked = "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules
    if blocked:
        sys.modules["rfc3987_syntax"] = None  # jsonschema imports it inside `with suppress(ImportError)`
    try:
        import nbformat
    finally:
        if blocked:
            del sys.modules["rfc3987_syntax"]
    return nbformat


def parse_notebook(data: bytes, name: str) -> nbformat.NotebookNode:
    """The notebook in ``data`` as nbformat reads it: format 4 (older formats are upgraded),
    sources and outputs saved as lists of lines (as Jupyter saves them) joined into strings.
    Raises GradingError, naming ``name``, for anything that is not a notebook, including
    JSON nested too deeply for the grader to handle safely."""
    nbformat = import_nbformat()
    try:
        raw = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError; so are huge numbers
        raise GradingError(f"{name}: not a notebook (invalid JSON: {error})") from None
    except RecursionError:
        raise GradingError(f"{name}: not a notebook (its JSON is nested too deeply)") from None
    depth, containers = _shape(raw)
    if depth > MAX_NESTING:
        raise GradingError(f"{name}: not a notebook (its JSON is nested more than {MAX_NESTING} levels deep)")
    if containers > MAX_CONTAINERS:
        where = max(raw, key=lambda key: _shape(raw[key])[1]) if isinstance(raw, dict) and raw else "the notebook"
        raise GradingError(
            f"{name}: too many JSON objects and lists to grade (over {MAX_CONTAINERS:,}, most of them in its "
            f"{where!r}; a notebook Jupyter saves holds a few thousand): clear its outputs and extra metadata"
        )
    version = raw.get("nbformat") if isinstance(raw, dict) else None
    if not isinstance(version, int) or version not in nbformat.versions:
        raise GradingError(f"{name}: not a notebook (no nbformat version this grader reads)")
    _check_structure(raw, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            notebook = nbformat.versions[version].to_notebook_json(raw, minor=raw.get("nbformat_minor", 0))
            notebook = nbformat.convert(notebook, 4)
    except Exception as error:
        raise GradingError(f"{name}: not a valid notebook of format {version} ({type(error).__name__})") from None
    _check_structure(notebook, name)
    return notebook


def _shape(value) -> tuple[int, int]:
    """(how deeply lists and dicts nest in ``value``, how many there are), iteratively (no
    recursion limit); stops counting past :data:`MAX_NESTING` levels or :data:`MAX_CONTAINERS`."""
    if not isinstance(value, (dict, list)):
        return 0, 0
    deepest, count, stack = 0, 1, [(value, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            break
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, (dict, list)):
                count += 1
                if count > MAX_CONTAINERS:
                    return deepest, count
                stack.append((child, depth + 1))
    return deepest, count


def _check_structure(notebook: dict, name: str):
    if notebook.get("nbformat", 4) < 4:
        return  # format 3 keeps its cells in worksheets; checked after the upgrade
    cells = notebook.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise GradingError(f"{name}: not a notebook (no list of cells)")
    if not isinstance(notebook.get("metadata", {}), dict):
        raise GradingError(f"{name}: not a notebook (metadata is not a mapping)")


def chapter_of(notebook, path) -> str:
    """The chapter a notebook belongs to, from what it says three ways: the chapter its grade
    cells check (``grade("<topic>.<name>", ...)`` calls), its file name (``NN_...``) and its
    metadata. They must agree; raises GradingError, asking for ``--chapter``, when they
    disagree or say nothing."""
    claims = {}
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            for topic, _ in GRADE_CALL.findall(str(cell.get("source", ""))):
                chapter = BY_TOPIC[topic].name if topic in BY_TOPIC else topic
                claims.setdefault("its grade cells say", set()).add(chapter)
    number = re.match(r"(\d\d)_", Path(path).name)
    named = [c.name for c in CHAPTERS if number and c.number == int(number.group(1))]
    if named:
        claims["its file name says"] = set(named)
    meta = notebook.get("metadata", {}).get("transformers_graded", {})
    if isinstance(meta, dict) and meta.get("chapter") is not None:
        claims["its metadata says"] = {str(meta["chapter"])}
    said = set().union(*claims.values())
    if len(said) == 1 and said <= set(BY_NAME):
        return said.pop()
    which = "; ".join(f"{claim} {', '.join(sorted(chapters))}" for claim, chapters in claims.items())
    raise GradingError(
        f"{path}: cannot tell which chapter this is ({which or 'nothing says'}); "
        f"pass --chapter (one of {', '.join(BY_NAME)})"
    )


def submission_cells(notebook, skip_tags=(DEMO_TAG,)) -> list[str]:
    """The code the submission runs before grading: every code cell except cells tagged with
    one of ``skip_tags`` (demo cells) and nbgrader test cells, which become a line that keeps
    the graded object as it is there (see :data:`CAPTURE`); IPython magics and shell lines are
    commented out."""
    cells = []
    for cell in notebook["cells"]:
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        nbgrader = meta.get("nbgrader") if isinstance(meta.get("nbgrader"), dict) else {}
        tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
        skipped = any(isinstance(tag, str) and tag in skip_tags for tag in tags)
        source = cell.get("source", "")
        source = "".join(map(str, source)) if isinstance(source, list) else str(source)
        if nbgrader.get("grade") and not nbgrader.get("solution"):
            # A grade cell checks the object its name has at that point of the notebook, as nbgrader's
            # kernel does; a later cell that redefines the name does not change what is graded.
            cells += [CAPTURE.format(name=name) for _, name in GRADE_CALL.findall(source)]
            continue
        if skipped:
            continue
        cells.append(
            "\n".join("# " + line if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
        )
    return cells


def grade_notebook(path, chapter: str | None = None, seed: int | None = None, limits: Limits | None = None) -> dict:
    """Grade one notebook in a sandbox; the report of ``python -m autograder grade --json``.
    ``chapter`` (``--chapter``) overrides what the notebook says (see :func:`chapter_of`)."""
    notebook = load_notebook(path)
    chapter = chapter or chapter_of(notebook, path)
    if chapter not in BY_NAME:
        raise GradingError(f"unknown chapter {chapter!r}; one of {', '.join(BY_NAME)}")
    results = grade_cells(submission_cells(notebook), chapter, seed=seed, limits=limits)
    return {
        "notebook": str(path),
        "chapter": chapter,
        "language": language(notebook=notebook),
        "score": round(sum(r.score for r in results), 6),
        "max_score": sum(r.max_score for r in results),
        "tests": [r.__dict__ for r in results],
    }


def grade_cells(
    cells: list[str],
    chapter: str,
    names=None,
    seed: int | None = None,
    limits: Limits | None = None,
    hidden=(),
    started: float | None = None,
) -> list[Result]:
    """Run ``cells`` in a sandbox, then the suites of ``names`` (default: every graded name of
    the chapter) against it. The checks of one function share its :func:`time_budget`; once it
    is spent, the function's remaining checks fail as too slow. A sandbox that dies while a
    function is checked (exit, crash, time limit) is restarted with the cells run again, so one
    broken function costs only its own points; when running the cells is what ends it, every
    function fails with the reason. Everything (the cells, each restart, every check) shares
    one :func:`notebook_budget`; once it is spent, the functions not graded yet fail with that
    reason; ``started``: the ``time.monotonic()`` when grading the notebook began (reading it
    counts too; default: now). ``hidden``: more folders the sandbox must not see (the course
    directory). Raises ProcessError when no sandbox can be started (a problem of the machine), including
    :class:`~autograder.sandbox.MachineShortOfMemory` when the host's memory pressure, not the
    submission's own limit, killed the sandbox (grade it again later)."""
    topic = BY_NAME[chapter].topic
    chosen = suites(topic) if names is None else {name: suites(topic)[name] for name in names}
    limits = dataclasses.replace(limits or Limits(), notebook_seconds=notebook_budget(topic, chosen, limits))
    deadline = (time.monotonic() if started is None else started) + limits.notebook_seconds
    sandbox = LearnerProcess(limits, hidden=hidden, deadline=deadline)  # given code comes with the notebook
    results, stopped = [], None  # stopped: why running the cells ended the sandbox (it would again)
    try:
        for name, suite in chosen.items():
            if not sandbox.running and not stopped and time.monotonic() < deadline:
                sandbox.close()
                sandbox.start()
                cell_errors = _run_cells(sandbox, cells)
                if not sandbox.running:
                    stopped = f"running the notebook stopped: {cell_errors[0]}"
            if stopped:
                missing = f"{name} could not be graded: {stopped}"
            elif not sandbox.running:  # the budget was spent while an earlier function was checked
                missing = f"{name} could not be graded: {_spent(limits)}"
            else:  # a suite that cannot run here (chapter 7's Triton part without Triton) is not attempted
                missing = suite.unmet() or _missing(sandbox, name, cell_errors)
            if missing:
                results += suite.failed(missing)
            else:
                with quiet():
                    results += suite.run(Student(Budgeted(sandbox, name, time_budget(topic, name)), name), seed)
            _raise_if_the_machine_was_short_of_memory(sandbox)
    finally:
        sandbox.close()
    return results


def notebook_budget(topic: str, chosen: dict, limits: Limits | None) -> float:
    """Seconds that grading one notebook may take in all (running its cells, every restart
    after a crash, every check): its functions' :func:`time_budget` together plus
    :data:`CELLS_ALLOWANCE`, or the cells' limit (``setup_seconds``) if that is more; never more
    than ``notebook_seconds``. Chapter 2's is 60 s (the cells' limit) on a quiet machine."""
    limits = limits or Limits()
    functions = sum(time_budget(topic, name) for name in chosen) + CELLS_ALLOWANCE
    return min(limits.notebook_seconds, max(limits.setup_seconds, functions))


def _spent(limits: Limits) -> str:
    return (
        f"grading this notebook took longer than {limits.notebook_seconds:.0f} s in total (its cells, each "
        "restart after a crash and every check share that budget), so it was stopped; look for slow or sleeping code"
    )


def _raise_if_the_machine_was_short_of_memory(sandbox: LearnerProcess):
    why = getattr(sandbox, "killed_by_host_pressure", None)  # the learner's kit never knows
    if why:
        from autograder.sandbox import MachineShortOfMemory

        raise MachineShortOfMemory(why)


class Budgeted:
    """The sandbox as the checks of one graded function see it: each request may take at most
    what is left of the function's time budget (and at most the per-call limit); once the
    budget is spent, every further request fails at once with a "too slow" message."""

    def __init__(self, sandbox: LearnerProcess, name: str, seconds: float):
        self.sandbox, self.end = sandbox, time.monotonic() + seconds
        self.spent = (
            f"{name} is too slow: its checks together took longer than its time budget of {seconds:.0f} s "
            f"({BUDGET_FACTOR} times what the reference takes, plus {BUDGET_FLOOR:g} s), so the remaining "
            f"checks of {name} were stopped; look for loops that repeat work or sleep"
        )

    def request(self, message, seconds: float | None = None):
        left = self.end - time.monotonic()
        if left <= 0:
            raise StudentError(self.spent)
        limit = seconds or self.sandbox.limits.call_seconds
        try:
            return self.sandbox.request(message, min(limit, left))
        except StudentError:
            if left < limit and time.monotonic() >= self.end:
                raise StudentError(self.spent) from None
            raise


_reference_seconds: dict[tuple[str, str], float] = {}  # (topic, name) -> seconds, measured once per process


def time_budget(topic: str, name: str) -> float:
    """Seconds that all the checks of ``topic.name`` together may take in the sandbox:
    ``BUDGET_FACTOR`` times :func:`reference_seconds`, plus ``BUDGET_FLOOR``."""
    return BUDGET_FACTOR * reference_seconds(topic, name) + BUDGET_FLOOR


def reference_seconds(topic: str, name: str) -> float:
    """What the reference takes to pass the checks of ``topic.name`` in this process, measured
    on first use (a warm-up run, then a timed one) and kept for the life of the process (the
    batch measures before it forks its workers, so they inherit it). In the learner's kit, what
    it took on the machine that built the kit (recorded by ``make kit``)."""
    if (topic, name) not in _reference_seconds:
        if not oracle.HAS_REFERENCE:
            _reference_seconds[topic, name] = oracle.recorded_seconds(f"{topic}.{name}")
            return _reference_seconds[topic, name]
        reference = getattr(importlib.import_module(f"solutions.{topic}"), name)
        suite, threads = suites(topic)[name], torch.get_num_threads()
        torch.set_num_threads(1)  # as in the sandbox
        try:
            with quiet():
                for _ in range(2):
                    start = time.monotonic()
                    suite.run(Student(KernelBackend({name: reference}), name))
        finally:
            torch.set_num_threads(threads)
        _reference_seconds[topic, name] = time.monotonic() - start
    return _reference_seconds[topic, name]


def _run_cells(sandbox: LearnerProcess, cells):
    try:
        return sandbox.run_cells(cells)
    except StudentError as error:
        return [str(error)]


def _missing(sandbox: LearnerProcess, name: str, cell_errors) -> str | None:
    """Why ``name`` cannot be graded (not defined), or None when it can."""
    try:
        if sandbox.request({"op": "has", "name": name, "target": (name, [])}):
            return None
        reason = f"{name} is not defined in the notebook (was its cell deleted, or the name changed?)"
    except StudentError as error:
        reason = f"{name} could not be graded: {error}"
    errors = [e for e in cell_errors if e]
    return reason + (f"; running the notebook gave: {errors[0]}" if errors else "")
