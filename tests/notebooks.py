"""Helpers for tests that build submissions from the chapters' notebooks."""

import re
from pathlib import Path

import nbformat

from autograder.chapters import CHAPTERS as REGISTRY
from autograder.checks import suites
from autograder.release import student_view

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = [ROOT / "chapters" / f"{chapter.name}.ipynb" for chapter in REGISTRY]  # the notebooks, in order
GRADE_CALL = re.compile(r'grade\("(\w+)\.(\w+)", (\w+)\)')


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_answer(cell) -> bool:
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and meta.get("solution", False) and not meta.get("grade", False)


def student_notebook(chapter: Path) -> nbformat.NotebookNode:
    """The release a learner gets: stubs, no outputs."""
    return student_view(nbformat.read(chapter, as_version=4), keep_outputs=False)


def filled_notebook(chapter: Path, answers: dict) -> nbformat.NotebookNode:
    """The student release with answer cells replaced: ``answers`` maps an answer cell's
    grade_id to its new source; the special key ``"*"`` replaces the first answer cell
    (e.g. with a whole module of alternative answers) and empties the other ones."""
    notebook = student_notebook(chapter)
    answer_cells = [c for c in notebook.cells if is_answer(c)]
    for index, cell in enumerate(answer_cells):
        grade_id = nbgrader_meta(cell)["grade_id"]
        if grade_id in answers:
            cell.source = answers[grade_id]
        elif "*" in answers:
            cell.source = answers["*"] if index == 0 else "# defined above"
    return notebook


def write(notebook, path: Path) -> Path:
    """Save ``notebook`` as Jupyter does (sources as lists of lines on disk)."""
    nbformat.write(notebook, str(path))
    return path


def sub_check_count(topic: str) -> int:
    """How many sub-checks the graded names of a chapter topic have (each is one test in results.json)."""
    return sum(len(suite.checks) for suite in suites(topic).values())
