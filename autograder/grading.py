"""Grading a filled-in chapter notebook: read it, run its code in the sandbox, run the
chapter's check suites against it, and report per function and per sub-check."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
import warnings
from pathlib import Path

from autograder import oracle
from autograder.chapters import BY_NAME
from autograder.checks import suites
from autograder.student import KernelBackend, Student, StudentError
from autograder.suite import Result

if oracle.HAS_REFERENCE:  # the course's checkout: submissions run confined (instructors' official grades)
    from autograder.sandbox import Limits, Sandbox as LearnerProcess, SandboxError as ProcessError
else:  # the learner's kit: the learner's own code, on their own machine, in a plain child process
    from autograder.local import Limits, LocalProcess as LearnerProcess, LocalProcessError as ProcessError

DEMO_TAG = "demo"  # cells that only illustrate (plots, training runs): grading skips them
MAX_NOTEBOOK_BYTES = 100 << 20


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


def grade_in_kernel(qualified_name: str, answer) -> float:
    """Grade one answer object in the current process; print the report, return the score."""
    topic, name = qualified_name.split(".", 1)
    suite = suites(topic)[name]
    with quiet():
        results = suite.run(Student(KernelBackend({name: answer}), name))
    print(format_results(results))
    return round(sum(r.score for r in results), 6)


def format_results(results: list[Result]) -> str:
    lines, function = [], None
    for r in results:
        if r.function != function:
            function = r.function
            mine = [x for x in results if x.function == function]
            lines.append(f"{function}: {sum(x.score for x in mine):g} / {sum(x.max_score for x in mine):g} points")
        mark = "PASS" if r.passed else "FAIL"
        lines.append(f"  [{mark}] {r.check} ({r.max_score:g} pt)" + ("" if r.passed else f": {r.message}"))
    return "\n".join(lines)


def load_notebook(path: Path) -> dict:
    """Read a notebook as a dict in format 4 (older formats are upgraded); raises
    GradingError with the reason. Plain JSON here: importing nbformat costs seconds."""
    try:
        if Path(path).stat().st_size > MAX_NOTEBOOK_BYTES:
            raise GradingError(f"{path}: too large to grade (over {MAX_NOTEBOOK_BYTES >> 20} MiB; clear its outputs)")
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GradingError(f"{path}: no such file") from None
    except json.JSONDecodeError as error:
        raise GradingError(f"{path}: not a notebook (invalid JSON: {error})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise GradingError(f"{path}: cannot read it ({error})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("nbformat"), int):
        raise GradingError(f"{path}: not a notebook (no nbformat version)")
    if raw["nbformat"] < 4:
        import nbformat
        try:
            raw = nbformat.convert(nbformat.from_dict(raw), 4)
        except Exception as error:
            raise GradingError(f"{path}: not a valid notebook of format {raw['nbformat']} ({error})") from None
    cells = raw.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise GradingError(f"{path}: not a notebook (no list of cells)")
    if not isinstance(raw.get("metadata", {}), dict):
        raise GradingError(f"{path}: not a notebook (metadata is not a mapping)")
    return raw


def chapter_of(notebook, path: Path) -> str:
    """The chapter a notebook belongs to: from its metadata, else from its file name."""
    meta = notebook.get("metadata", {}).get("transformers_graded", {})
    if isinstance(meta, dict) and meta.get("chapter") in BY_NAME:
        return meta["chapter"]
    match = re.match(r"(\d\d)", Path(path).name)
    for chapter in BY_NAME:
        if match and chapter.startswith(match.group(1)):
            return chapter
    raise GradingError(f"{path}: cannot tell which chapter this is; pass --chapter (one of {', '.join(BY_NAME)})")


def submission_cells(notebook, skip_tags=(DEMO_TAG,)) -> list[str]:
    """The code the submission runs before grading: every code cell except cells tagged with
    one of ``skip_tags`` (demo cells) and nbgrader test cells; IPython magics and shell lines
    are commented out."""
    cells = []
    for cell in notebook["cells"]:
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        nbgrader = meta.get("nbgrader") if isinstance(meta.get("nbgrader"), dict) else {}
        tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
        skipped = any(isinstance(tag, str) and tag in skip_tags for tag in tags)
        if skipped or (nbgrader.get("grade") and not nbgrader.get("solution")):
            continue
        source = cell.get("source", "")
        source = "".join(map(str, source)) if isinstance(source, list) else str(source)
        cells.append("\n".join("# " + line if line.lstrip().startswith(("%", "!")) else line
                               for line in source.splitlines()))
    return cells


def grade_notebook(path, chapter: str | None = None, seed: int | None = None, limits: Limits | None = None) -> dict:
    """Grade one notebook in a sandbox; the report of ``python -m autograder grade --json``."""
    notebook = load_notebook(path)
    chapter = chapter or chapter_of(notebook, path)
    if chapter not in BY_NAME:
        raise GradingError(f"unknown chapter {chapter!r}; one of {', '.join(BY_NAME)}")
    results = grade_cells(submission_cells(notebook), chapter, seed=seed, limits=limits)
    return {"notebook": str(path), "chapter": chapter,
            "score": round(sum(r.score for r in results), 6),
            "max_score": sum(r.max_score for r in results),
            "tests": [r.__dict__ for r in results]}


def grade_cells(cells: list[str], chapter: str, names=None, seed: int | None = None, limits: Limits | None = None,
                hidden=()) -> list[Result]:
    """Run ``cells`` in a sandbox, then the suites of ``names`` (default: every graded name of
    the chapter) against it. A sandbox that dies while a function is checked (exit, crash,
    time limit) is restarted with the cells run again, so one broken function costs only its
    own points; when running the cells is what ends it, every function fails with the reason.
    ``hidden``: more folders the sandbox must not see (the course directory).
    Raises ProcessError when no sandbox can be started (a problem of the machine)."""
    limits = limits or Limits()
    topic = BY_NAME[chapter].topic
    chosen = suites(topic) if names is None else {name: suites(topic)[name] for name in names}
    deadline = time.monotonic() + limits.notebook_seconds
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
            missing = f"{name} could not be graded: {stopped}" if stopped else _missing(sandbox, name, cell_errors)
            if missing:
                results += [Result(name, c.name, 0.0, float(c.points), False, missing) for c in suite.checks]
            else:
                with quiet():
                    results += suite.run(Student(sandbox, name), seed)
    finally:
        sandbox.close()
    return results


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
