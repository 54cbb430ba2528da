"""Step 1 of a batch: what the assignment holds (from the gradebook) and who submitted it.

Which grade cells exist, their points and what they check come from the gradebook (the
source notebook that ``nbgrader generate_assignment`` recorded), never from a student's
copy: a grade cell whose source calls ``grade("<topic>.<name>", name)`` is autograded by
that suite, scaled to the cell's points; any other grade cell is left for manual grading.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from autograder.chapters import BY_TOPIC
from autograder.checks import suites
from autograder.grading import GRADE_CALL
from autograder.sandbox import Limits


class BatchError(Exception):
    """The batch cannot run at all (no course, no such assignment); the message says why."""


@dataclass
class GradeCell:
    grade_id: str
    points: float
    function: str | None  # the graded name its grade("topic.name", name) call checks; None: graded by hand


@dataclass
class Plan:
    """What the gradebook says the assignment holds (trusted: from the source notebook)."""

    assignment: str
    chapter: str
    notebooks: dict[str, list[GradeCell]]
    db_url: str
    course: str
    config: Config = field(repr=False)

    def fingerprint(self) -> str:
        cells = {name: [asdict(c) for c in cells] for name, cells in self.notebooks.items()}
        return hashlib.sha256(json.dumps([self.chapter, cells], sort_keys=True).encode()).hexdigest()

    @property
    def functions(self) -> list[str]:
        """The graded names the assignment's grade cells check, in order."""
        return [c.function for cells in self.notebooks.values() for c in cells if c.function]


@dataclass
class Job:
    """Everything grading one submission needs, sent once to every worker."""

    plan: Plan
    release: Path  # release/<assignment>/: shown as feedback when a notebook cannot be read
    seed: int | None
    limits: Limits
    language: str | None = None  # --lang: the feedback's language for every notebook (default: each notebook's)


def course_directory(course: Path) -> tuple[CourseDirectory, Config]:
    """nbgrader's view of the course at ``course``, with its nbgrader_config.py."""
    config = Config()
    if (course / "nbgrader_config.py").exists():
        config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    coursedir = CourseDirectory(config=config)
    if "root" not in config.get("CourseDirectory", {}):
        coursedir.root = str(course)
    return coursedir, config


def make_plan(coursedir: CourseDirectory, config: Config, assignment: str) -> Plan:
    """The assignment's notebooks and grade cells, from the gradebook; BatchError if none."""
    database = Path(coursedir.db_url.removeprefix("sqlite:///"))
    if coursedir.db_url.startswith("sqlite:///") and not database.exists():
        raise BatchError(f"no gradebook at {database}; run `nbgrader generate_assignment {assignment}` first")
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        try:
            source = gradebook.find_assignment(assignment)
        except MissingEntry:
            raise BatchError(
                f"the gradebook has no assignment {assignment!r}; run `nbgrader generate_assignment {assignment}` first"
            ) from None
        topics, notebooks = set(), {}
        for notebook in source.notebooks:
            notebooks[notebook.name] = _grade_cells(gradebook, assignment, notebook, topics)
    if len(topics) != 1:
        raise BatchError(
            f"the grade cells of {assignment} must check exactly one chapter (they check {sorted(topics) or 'none'})"
        )
    chapter = BY_TOPIC[topics.pop()].name
    return Plan(assignment, chapter, notebooks, coursedir.db_url, coursedir.root, config)


def _grade_cells(gradebook: Gradebook, assignment: str, notebook, topics: set) -> list[GradeCell]:
    """The grade cells of one source notebook in their order; adds the topics they check to ``topics``."""
    order = {cell.name: index for index, cell in enumerate(notebook.source_cells)}
    cells = []
    for cell in sorted(notebook.grade_cells, key=lambda c: order.get(c.name, len(order))):
        text = gradebook.find_source_cell(cell.name, notebook.name, assignment).source
        match = GRADE_CALL.search(text) if cell.cell_type == "code" else None
        if match:
            topic, name = match.groups()
            if topic not in BY_TOPIC or name not in suites(topic):
                raise BatchError(
                    f'grade cell {cell.name} of {notebook.name} calls grade("{topic}.{name}"), which has no check suite'
                )
            topics.add(topic)
        cells.append(GradeCell(cell.name, float(cell.max_score), match.group(2) if match else None))
    return cells


def find_submissions(coursedir: CourseDirectory, assignment: str) -> dict[str, Path]:
    """student id -> submitted folder, found as nbgrader finds them (symbolic links
    included: reading the submission refuses them, with a reason)."""
    pattern = coursedir.format_path(coursedir.submitted_directory, "*", assignment)
    regex = re.compile(
        coursedir.format_path(coursedir.submitted_directory, "(?P<student_id>[^/]+)", assignment, escape=True) + "$"
    )
    excluded = set(filter(None, coursedir.student_id_exclude.split(",")))
    found = {}
    for folder in sorted(glob.glob(pattern)):
        match = regex.match(folder)
        if match and match["student_id"] not in excluded and (os.path.islink(folder) or os.path.isdir(folder)):
            found[match["student_id"]] = Path(folder)
    return found
