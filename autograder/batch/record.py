"""Step 4: recording one graded submission (in the main process: the only writer of the
gradebook and of ``autograded/``), as ``nbgrader autograde`` records it.

- the gradebook: the submission, its ``auto_score`` per grade cell, auto comments ("No
  response.", or "Not graded: <reason>") and late penalties, committed in **one transaction
  per submission**;
- ``autograded/<student>/<assignment>/<notebook>.ipynb`` and ``timestamp.txt``;
- ``autograded/<student>/<assignment>/results.json``: the same scores in Gradescope's format
  (``{"score", "tests": [{"name", "score", "max_score", "output", "visibility"}], ...}``),
  written last: it marks the submission as done.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nbgrader import utils as nbgrader_utils
from nbgrader.api import Comment, Grade, Gradebook, MissingEntry, SubmittedAssignment, SubmittedNotebook
from nbgrader.preprocessors import AssignLatePenalties

from autograder.batch.grade import Outcome
from autograder.batch.plan import Plan


def record(gradebook: Gradebook, plan: Plan, outcome: Outcome, destination: Path):
    """One transaction for the submission's grades, then the autograded files, results.json last."""
    try:
        gradebook.find_student(outcome.student)
    except MissingEntry:
        gradebook.add_student(outcome.student)
    db = gradebook.db
    try:
        submission = _submission(gradebook, plan.assignment, outcome.student)
        submission.timestamp = _parse_timestamp(outcome.timestamp) or submission.timestamp
        notebooks = {n.name: n for n in submission.notebooks}
        for name, result in outcome.notebooks.items():
            grades = {g.name: g for g in notebooks[name].grades}
            for grade_id, score in result.grades.items():
                grades[grade_id].auto_score = score
                grades[grade_id].needs_manual_grade = grades[grade_id].manual_score is not None or score is None
            comments = {c.name: c for c in notebooks[name].comments}
            for grade_id, text in result.comments.items():
                if grade_id in comments:
                    comments[grade_id].auto_comment = text
        db.flush()
        _late_penalties(gradebook, plan, submission)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    _write_files(plan, outcome, destination)


def _write_files(plan: Plan, outcome: Outcome, destination: Path):
    destination.mkdir(parents=True, exist_ok=True)
    for name, result in outcome.notebooks.items():
        if result.notebook is not None:
            _write_atomically(destination / f"{name}.ipynb", result.notebook)
    if outcome.timestamp is not None:  # the text read from the submission, never a copy of what a path names
        _write_atomically(destination / "timestamp.txt", outcome.timestamp)
    results = {
        "score": round(sum(t["score"] for t in outcome.tests), 6),
        "execution_time": round(outcome.seconds, 2),
        "tests": outcome.tests,
        "extra_data": {"student": outcome.student, "assignment": plan.assignment, "fingerprint": outcome.fingerprint},
    }
    if outcome.problem:
        results["output"] = f"Not graded: {outcome.problem}"
    _write_atomically(destination / "results.json", json.dumps(results, indent=1))


def _parse_timestamp(text: str | None):
    """The submission time nbgrader recorded, None when absent or not a time."""
    try:
        return nbgrader_utils.parse_utc(text.strip()) if text else None
    except (ValueError, OverflowError):
        return None


def _submission(gradebook: Gradebook, assignment: str, student: str) -> SubmittedAssignment:
    """The submission's rows, created as ``Gradebook.add_submission`` does but not committed."""
    try:
        return gradebook.find_submission(assignment, student)
    except MissingEntry:
        pass
    source, learner = gradebook.find_assignment(assignment), gradebook.find_student(student)
    with gradebook.db.no_autoflush:
        submission = SubmittedAssignment(assignment=source, student=learner)
        for notebook in source.notebooks:
            submitted = SubmittedNotebook(notebook=notebook, assignment=submission)
            for cell in notebook.grade_cells:
                Grade(cell_id=cell.id, notebook=submitted)
            for cell in notebook.solution_cells:
                Comment(cell_id=cell.id, notebook=submitted)
            for cell in notebook.task_cells:
                Comment(cell_id=cell.id, notebook=submitted)
                Grade(cell_id=cell.id, notebook=submitted)
        gradebook.db.add(submission)
    gradebook.db.flush()
    return submission


def _late_penalties(gradebook: Gradebook, plan: Plan, submission: SubmittedAssignment):
    """What nbgrader's AssignLatePenalties does, with the plugin the course configured."""
    assigner = AssignLatePenalties(config=plan.config)
    assigner.init_plugin()
    for notebook in submission.notebooks:
        notebook.late_submission_penalty = None
        if submission.total_seconds_late > 0:
            gradebook.db.expire(notebook, ["score"])  # the score of the grades just written
            penalty = assigner.plugin_inst.late_submission_penalty(
                submission.student.id, notebook.score, submission.total_seconds_late
            )
            if penalty is not None:
                notebook.late_submission_penalty = min(max(penalty, 0), notebook.score)


def _write_atomically(path: Path, text: str):
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def is_done(gradebook: Gradebook, plan: Plan, student: str, destination: Path, expected: str) -> bool:
    """Graded before, from the same files and plan, with a score for every autograded cell."""
    try:
        extra = json.loads((destination / "results.json").read_text()).get("extra_data", {})
        if extra.get("fingerprint") != expected:
            return False
        submission = gradebook.find_submission(plan.assignment, student)
    except (OSError, ValueError, AttributeError, MissingEntry):
        return False
    auto = {c.grade_id for cells in plan.notebooks.values() for c in cells if c.function}
    scored = {g.name for n in submission.notebooks for g in n.grades if g.auto_score is not None}
    return auto <= scored
