"""Step 3: grading one submission, in a worker process (no gradebook writes here).

Each notebook is read as Jupyter saves it (:func:`autograder.grading.parse_notebook`) and
sanitized, in a child process with a memory cap and a wall clock (:mod:`autograder.batch.capped`),
by nbgrader's own preprocessors (locked and grade cells restored from the
gradebook, deleted grade cells added back when ``OverwriteCells.add_missing_cells`` is set),
and its code graded in sandboxes (:func:`autograder.grading.grade_cells`). The autograded
notebook keeps the learner's written answers and has each autograded grade cell's output
replaced by the checks' report and its score. A notebook that cannot be read scores 0 with
the reason, and its feedback shows the released notebook with that reason in each grade cell.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader import utils as nbgrader_utils
from nbgrader.preprocessors import CheckCellMetadata, ClearOutput, DeduplicateIds, OverwriteCells, OverwriteKernelspec

from autograder.batch.capped import Exceeded, run_capped
from autograder.batch.plan import GradeCell, Job, Plan
from autograder.batch.submission import Submission, read_submission
from autograder.chapters import BY_NAME
from autograder.checks import suites
from autograder.grading import DEMO_TAG, GradingError, format_results, grade_cells, parse_notebook, submission_cells
from autograder.messages import language, translate
from autograder.suite import Result

SANITIZERS = (ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata)


@dataclass
class NotebookOutcome:
    grades: dict[str, float | None]  # grade_id -> auto score (None: graded by hand)
    comments: dict[str, str | None]  # grade_id of an answer cell -> auto comment
    tests: list[dict]  # Gradescope's test entries
    notebook: str | None  # the autograded notebook (JSON text); None: nothing to write
    problem: str | None = None  # why it could not be read (it scores 0)


@dataclass
class Outcome:
    """One graded submission, sent from a worker to the main process to be recorded."""

    student: str
    fingerprint: str
    timestamp: str | None  # the text of timestamp.txt as submitted
    notebooks: dict[str, NotebookOutcome] = field(default_factory=dict)
    seconds: float = 0.0
    problem: str | None = None  # the first reason a notebook could not be graded

    @property
    def tests(self) -> list[dict]:
        return [t for notebook in self.notebooks.values() for t in notebook.tests]


@dataclass
class Failure:
    """A submission the grader could not grade (its own fault or the machine's): no row is
    written, and the next run tries again."""

    student: str
    reason: str
    again: bool = False  # worth another try in this run (the machine was short of memory)


def grade_submission(job: Job, student: str, folder: Path) -> Outcome:
    """Every notebook of one submission, graded."""
    start = time.monotonic()
    submission = read_submission(student, Path(folder), job.plan.notebooks)
    outcome = Outcome(student, submission.fingerprint(job), submission.timestamp)
    for name in job.plan.notebooks:
        outcome.notebooks[name] = _grade_notebook(job, submission, name)
    outcome.problem = next((n.problem for n in outcome.notebooks.values() if n.problem), None)
    outcome.seconds = time.monotonic() - start
    return outcome


def _grade_notebook(job: Job, submission: Submission, name: str) -> NotebookOutcome:
    plan, cells = job.plan, job.plan.notebooks[name]
    auto, started = [c for c in cells if c.function], time.monotonic()
    try:
        notebook, code, note, unreadable = run_capped(_prepared, job, submission, name)
    except Exceeded as error:
        notebook, code, note, unreadable = None, [], None, f"{name}.ipynb: {error}"
    if unreadable:
        results = {c.function: _all_failed(plan, c.function, f"not graded: {unreadable}") for c in auto}
    else:
        names = [c.function for c in auto]
        graded = grade_cells(code, plan.chapter, names, job.seed, job.limits, hidden=[plan.course], started=started)
        results = {c.function: [r for r in graded if r.function == c.function] for c in auto}
    if notebook is None:  # feedback then shows the release, with the reason in each grade cell
        release = job.release / f"{name}.ipynb"
        notebook = nbformat.read(release, as_version=4) if release.exists() else None
    lang = language(job.language, notebook)
    grades, comments = _fill_in(notebook, cells, results, unreadable, note, lang)
    return NotebookOutcome(
        grades,
        comments,
        _tests(auto, results),
        nbformat.writes(notebook) if notebook is not None else None,
        unreadable,
    )


def _prepared(job: Job, submission: Submission, name: str):
    """Run in a capped child (:mod:`~autograder.batch.capped`): ``(the sanitized notebook or
    None, the code nbgrader would run, a note, None)``, or ``(None, [], None, why it cannot be
    read)``."""
    notebook, unreadable = _read(submission, name)
    if unreadable:
        return None, [], None, unreadable
    skip = {DEMO_TAG, job.plan.config.get("Execute", {}).get("skip_cells_with_tag", DEMO_TAG)}
    sanitized, note = _sanitized(job.plan, submission.student, name, notebook)
    code = submission_cells(notebook if sanitized is None else sanitized, skip_tags=skip)  # what nbgrader runs
    return sanitized, code, note, None


def _read(submission: Submission, name: str):
    """(the parsed notebook, None) or (None, why it cannot be read)."""
    if submission.problem:
        return None, submission.problem
    if submission.notebooks[name] is None:
        return None, f"{name}.ipynb was not submitted"
    try:
        return parse_notebook(submission.notebooks[name], f"{name}.ipynb"), None
    except GradingError as error:
        return None, str(error)


def _sanitized(plan: Plan, student: str, name: str, notebook):
    """(the notebook after nbgrader's sanitizing preprocessors, None); when its nbgrader
    metadata is too broken for them: (None, a note saying the code was graded anyway)."""
    resources = {
        "nbgrader": {"notebook": name, "assignment": plan.assignment, "student": student, "db_url": plan.db_url}
    }
    try:
        notebook = _without_duplicate_ids(copy.deepcopy(notebook))
        for preprocessor in SANITIZERS:
            notebook, resources = preprocessor(config=plan.config).preprocess(notebook, resources)
        return _shown(notebook), None
    except Exception as error:
        logging.getLogger("autograder").debug("sanitizing %s of %s failed", name, student, exc_info=True)
        return None, (
            f"the nbgrader metadata of {name}.ipynb is broken ({type(error).__name__}), "
            "so the feedback shows the released notebook; your code was graded"
        )


HIDING_TAGS = frozenset(
    {"remove-cell", "remove-input", "remove-output", "hide-cell", "hide-input", "hide-output"}
    | {"remove_cell", "remove_input", "remove_output", "hide_cell", "hide_input", "hide_output"}
)


def _shown(notebook):
    """The notebook with nothing that hides a cell's code or output from the feedback page and
    formgrader: nbconvert drops the source of a cell whose metadata says ``transient.remove_source``,
    Jupyter folds ``jupyter.source_hidden``/``outputs_hidden`` and ``collapsed`` cells, and Jupyter
    Book and nbconvert's TagRemovePreprocessor read hiding tags. What was graded is what is shown."""
    for cell in notebook.cells:
        cell.metadata.pop("transient", None)
        cell.metadata.pop("collapsed", None)
        jupyter = cell.metadata.get("jupyter")
        if isinstance(jupyter, dict):
            for key in ("source_hidden", "outputs_hidden"):
                jupyter.pop(key, None)
            if not jupyter:
                del cell.metadata["jupyter"]
        tags = cell.metadata.get("tags")
        if isinstance(tags, list) and HIDING_TAGS.intersection(map(str, tags)):
            cell.metadata.tags = [t for t in tags if t not in HIDING_TAGS]
    return notebook


def _without_duplicate_ids(notebook):
    """The notebook with one cell per grade_id (a cell copied in Jupyter keeps its nbgrader
    metadata): the last copy whose answer changed, else the last copy; the other copies stay as
    plain cells. nbgrader's DeduplicateIds would keep the last copy even when the answer was
    written in another, and leave the others an empty nbgrader mapping on which OverwriteCells
    fails, so the feedback would show the release and the written answer would be lost."""
    copies = {}
    for cell in notebook.cells:
        if nbgrader_utils.is_grade(cell) or nbgrader_utils.is_solution(cell) or nbgrader_utils.is_locked(cell):
            copies.setdefault(cell.metadata.nbgrader.get("grade_id"), []).append(cell)
    for cells in copies.values():
        answered = [
            c
            for c in cells
            if nbgrader_utils.is_solution(c)
            and c.metadata.nbgrader.get("checksum") != nbgrader_utils.compute_checksum(c)
        ]
        keep = (answered or cells)[-1]
        for cell in cells:
            if cell is not keep:
                del cell.metadata["nbgrader"]
    return notebook


def _fill_in(notebook, cells: list[GradeCell], results: dict, unreadable: str | None, note: str | None, lang: str):
    """Write the reports into the notebook's grade cells, in ``lang``; returns (grades, comments) by grade_id."""
    grades, comments = {}, {}
    for cell in notebook.cells if notebook is not None else []:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if nbgrader_utils.is_solution(cell) and not nbgrader_utils.is_task(cell):
            unanswered = meta.get("checksum") == nbgrader_utils.compute_checksum(cell)
            comment = f"Not graded: {unreadable}" if unreadable else "No response." if unanswered and not note else None
            comments[grade_id] = translate(comment, lang).text if comment else None
        spec = next((c for c in cells if c.grade_id == grade_id), None)
        if spec is None or not nbgrader_utils.is_grade(cell):
            continue
        if spec.function:
            grades[grade_id] = _write_report(cell, spec, results[spec.function], note, lang)
        elif nbgrader_utils.is_solution(cell) and not (unreadable or note):
            grades[grade_id] = nbgrader_utils.determine_grade(cell)[0]  # 0 when unanswered, else None: by hand
        else:
            grades[grade_id] = None  # graded by hand (a test cell this grader does not run, or unread)
    for spec in cells:
        grades.setdefault(spec.grade_id, _scaled(spec, results[spec.function]) if spec.function else None)
    return grades, comments


def _all_failed(plan: Plan, function: str, message: str) -> list[Result]:
    return suites(BY_NAME[plan.chapter].topic)[function].failed(message)


def _scaled(spec: GradeCell, results: list[Result]) -> float:
    """The cell's score: the suite's score scaled to the grade cell's points."""
    total = sum(r.max_score for r in results)
    return round(spec.points * sum(r.score for r in results) / total, 6) if total else 0.0


def _write_report(cell, spec: GradeCell, results: list[Result], note: str | None, lang: str) -> float:
    score = _scaled(spec, results)
    text = format_results(results, lang) + (f"\n({translate(note, lang).text})" if note else "")
    if spec.points != sum(r.max_score for r in results):
        text += "\n" + translate(f"Scaled to this cell's {spec.points:g} points: {score:g}", lang).text
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=text + "\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": repr(score)}, execution_count=1),
    ]
    cell.execution_count = 1
    return score


def _tests(auto: list[GradeCell], results: dict) -> list[dict]:
    """Gradescope's test entries, one per sub-check, scaled to the grade cells' points."""
    tests = []
    for spec in auto:
        total = sum(r.max_score for r in results[spec.function]) or 1.0
        for r in results[spec.function]:
            tests.append(
                {
                    "name": f"{r.function}: {r.check}",
                    "score": round(r.score * spec.points / total, 6),
                    "max_score": round(r.max_score * spec.points / total, 6),
                    "output": r.message,  # English: the class report (report.PROBLEMS) reads it
                    "visibility": "visible",
                }
            )
    return tests
