"""An nbgrader course directory made from the chapters, for instructors.

``python -m autograder course DIR`` creates::

    DIR/nbgrader_config.py              the settings below
    DIR/source/<chapter>/<chapter>.ipynb one assignment per chapter (chapters/ with the setup cell
                                         and given code: autograder.release, autograder.given)

after which the standard nbgrader commands run in DIR: ``nbgrader generate_assignment``,
``nbgrader autograde``, ``nbgrader generate_feedback``, ``nbgrader export``.

Plain ``nbgrader autograde`` runs a submission's code in the same kernel as the grade cells:
a submission can patch the checks or import the installed ``solutions`` package there. It
is for practice runs; ``python -m autograder autograde`` is the path for grades that count.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor

from autograder.chapters import CHAPTERS
from autograder.edition import load, translated
from autograder.given import with_given_code
from autograder.grading import DEMO_TAG
from autograder.release import with_setup_cell
from autograder.seeds import COURSE_CONFIG, PRACTICE_SEED, SEED_LINE, course_seed, draw_official_seed

CHAPTERS_DIR = Path(__file__).resolve().parent.parent / "chapters"

CONFIG = """\
# nbgrader settings for a "Transformers, Graded" course (written by `python -m autograder course`).
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.root = {root!r}
# Cells tagged "demo" only illustrate (plots, training runs): autograding does not run them,
# except grade cells, whatever their tags (RunGradeCells takes the tag off them first).
from nbgrader.converters import Autograde  # noqa: E402
c.Execute.skip_cells_with_tag = {demo!r}
c.Autograde.autograde_preprocessors = [
    "autograder.course.RunGradeCells",
    *Autograde.class_traits()["autograde_preprocessors"].make_dynamic_default(),
]
c.Execute.timeout = 120
# A submission that deleted a grade cell gets it back (graded, not flagged for manual grading).
c.OverwriteCells.add_missing_cells = True
# Formgrader and the feedback HTML render written answers, and the HTML that learners' code displayed,
# through autograder.safe_html: a learner's <script>, onerror= or javascript: link shows as text and never
# runs in the instructor's browser.
c.HTMLExporter.filters = {{
    "markdown2html": "autograder.safe_html.SafeMarkdown",
    "clean_html": "autograder.safe_html.clean_html",
}}
c.HTMLExporter.sanitize_html = True  # nbconvert's templates apply clean_html to outputs only when this is set
# Feedback pages load no script from elsewhere: nbconvert's MathJax-from-a-CDN macro is replaced.
from autograder.safe_html import TEMPLATE_BASEDIRS  # noqa: E402
c.HTMLExporter.extra_template_basedirs = TEMPLATE_BASEDIRS
# This course's private grading seed: official grades (`nbgrader autograde`, `python -m autograder
# autograde`, and `python -m autograder grade` run in this directory, which all read this file) draw the
# checks' inputs from it, never from the practice seed whose expected values the learners' kit holds.
# Keep this file away from learners.
import os  # noqa: E402
{seed_line}
"""


def create_course(
    root: Path, course_id: str = "transformers-graded", chapters: list[str] | None = None, lang: str = "en"
) -> list[str]:
    """Write the config and one source assignment per chapter, in the edition ``lang`` (its
    learners' feedback speaks that language); returns the assignment names."""
    root = Path(root).resolve()
    sources = [CHAPTERS_DIR / f"{c.name}.ipynb" for c in CHAPTERS if not chapters or c.name in chapters]
    root.mkdir(parents=True, exist_ok=True)
    kept = course_seed(root)
    seed = kept if kept is not None and kept != PRACTICE_SEED else draw_official_seed()
    (root / COURSE_CONFIG).write_text(
        CONFIG.format(course_id=course_id, root=str(root), demo=DEMO_TAG, seed_line=SEED_LINE.format(seed=seed))
    )
    for source in sources:
        folder = root / "source" / source.stem
        folder.mkdir(parents=True, exist_ok=True)
        notebook = with_given_code(nbformat.read(source, as_version=4))
        if lang != "en":
            notebook = translated(notebook, load(source, lang), lang)
        nbformat.write(with_setup_cell(notebook, lang), folder / source.name)
    return [s.stem for s in sources]


class RunGradeCells(NbGraderPreprocessor):
    """Takes the ``demo`` tag off every grade cell before nbgrader's ``Execute`` runs, so that
    ``Execute.skip_cells_with_tag`` skips only illustrations: nbgrader restores a grade cell's
    source from the gradebook but not its tags, and scores a skipped grade cell as passed."""

    def preprocess_cell(self, cell, resources, index):
        tags = cell.metadata.get("tags")
        if cell.metadata.get("nbgrader", {}).get("grade") and isinstance(tags, list) and DEMO_TAG in tags:
            cell.metadata["tags"] = [tag for tag in tags if tag != DEMO_TAG]
        return cell, resources
