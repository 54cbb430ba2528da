"""An nbgrader course directory made from the chapters, for instructors.

``python -m autograder course DIR`` creates::

    DIR/nbgrader_config.py              the settings below
    DIR/source/<chapter>/<chapter>.ipynb one assignment per chapter (a copy of chapters/)

after which the standard nbgrader commands run in DIR: ``nbgrader generate_assignment``,
``nbgrader autograde``, ``nbgrader generate_feedback``, ``nbgrader export``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from autograder.chapters import CHAPTERS

CHAPTERS_DIR = Path(__file__).resolve().parent.parent / "chapters"

CONFIG = '''\
# nbgrader settings for a "Transformers, Graded" course (written by `python -m autograder course`).
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.root = {root!r}
# Cells tagged "demo" only illustrate (plots, training runs): autograding does not run them.
c.Execute.skip_cells_with_tag = "demo"
c.Execute.timeout = 120
# A submission that deleted a grade cell gets it back (graded, not flagged for manual grading).
c.OverwriteCells.add_missing_cells = True
'''


def create_course(root: Path, course_id: str = "transformers-graded", chapters: list[str] | None = None) -> list[str]:
    """Write the config and one source assignment per chapter; returns the assignment names."""
    root = Path(root).resolve()
    sources = [CHAPTERS_DIR / f"{c.name}.ipynb" for c in CHAPTERS if not chapters or c.name in chapters]
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(CONFIG.format(course_id=course_id, root=str(root)))
    for source in sources:
        folder = root / "source" / source.stem
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / source.name)
    return [s.stem for s in sources]
