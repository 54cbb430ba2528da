"""Grades for Canvas: a CSV that Canvas's gradebook import accepts, as an nbgrader exporter.

    nbgrader export --exporter=autograder.canvas.CanvasExportPlugin [--to canvas_grades.csv]
    python -m autograder canvas [-o canvas_grades.csv]          (the same, from a course directory)

Canvas reads the student columns ``Student, ID, SIS User ID, SIS Login ID, Section`` (it
matches rows by ``ID``, its own user id, which nbgrader keeps as ``lms_user_id``, else by
``SIS User ID``, here the nbgrader student id), then one column per assignment, below a
``Points Possible`` row, as in Canvas's own gradebook export. A cell holds the score after
late penalties, manual grades of written answers included. A submission still waiting
for a manual grade, or none at all, leaves its cell empty, which Canvas's import reads as
"no change": a grade reaches Canvas once it is complete.

Names and ids come from the gradebook (learners' own names among them), and a spreadsheet opened on
this file runs a cell that starts with ``= + - @`` (or a tab or carriage return) as a formula. Such a
cell gets a leading ``'`` (OWASP's CSV-injection advice), unless it is a plain number such as ``-3.5``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import ExportPlugin

STUDENT_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def spreadsheet_text(value: str) -> str:
    """``value`` as a CSV cell that a spreadsheet shows as text, never runs as a formula."""
    value = str(value)
    if value.startswith(FORMULA_STARTS) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


class CanvasExportPlugin(ExportPlugin):
    """nbgrader's exporter interface (``--to``, ``--assignment``, ``--student`` select)."""

    def export(self, gradebook: Gradebook) -> None:
        target = self.to or "canvas_grades.csv"
        assignments = [a for a in gradebook.assignments if not self.assignment or a.name in self.assignment]
        students = [s for s in gradebook.students if not self.student or s.id in self.student]
        with open(target, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            rows = [
                STUDENT_COLUMNS + [a.name for a in assignments],
                ["Points Possible", "", "", "", ""] + [f"{a.max_score:g}" for a in assignments],
            ]
            for student in students:
                name = ", ".join(filter(None, [student.last_name, student.first_name])) or student.id
                rows.append(
                    [name, student.lms_user_id or "", student.id, "", ""]
                    + [_grade(gradebook, a.name, student.id) for a in assignments]
                )
            writer.writerows([spreadsheet_text(cell) for cell in row] for row in rows)
        self.log.info("Exported %d students' grades in %d assignments to %s", len(students), len(assignments), target)


def _grade(gradebook: Gradebook, assignment: str, student: str) -> str:
    """The cell: the score after the late penalty, or empty while incomplete or missing."""
    try:
        submission = gradebook.find_submission(assignment, student)
    except MissingEntry:
        return ""
    if submission.needs_manual_grade:
        return ""
    return f"{max(0.0, submission.score - (submission.late_submission_penalty or 0.0)):g}"


def export_canvas(course: Path, target: Path) -> Path:
    """Run the exporter on the gradebook of the course at ``course``."""
    from autograder.batch import course_directory

    coursedir, config = course_directory(Path(course).resolve())
    plugin = CanvasExportPlugin(config=config)
    plugin.to = str(Path(target).resolve())
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        plugin.export(gradebook)
    return Path(target)
