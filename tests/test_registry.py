"""Every place that lists chapters agrees with the registry (``autograder/chapters.py``)."""

import importlib
import re

import nbformat
import pytest

from autograder.chapters import BY_NAME, CHAPTERS
from autograder.checks import suites
from notebooks import GRADE_CALL, ROOT, nbgrader_meta


def test_chapters_are_numbered_in_order_with_unique_names():
    assert [c.number for c in CHAPTERS] == list(range(1, len(CHAPTERS) + 1))
    assert len({c.topic for c in CHAPTERS}) == len(CHAPTERS)


def test_the_chapters_folder_holds_exactly_the_registered_notebooks():
    assert sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb")) == sorted(BY_NAME)


def test_the_table_of_contents_lists_the_chapters_in_order():
    toc = (ROOT / "_toc.yml").read_text()
    listed = re.findall(r"file: book/chapters/(\S+)", toc)
    assert listed == [c.name for c in CHAPTERS]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_modules_notebook_and_suites_agree_with_the_registry(chapter):
    reference = importlib.import_module(f"solutions.{chapter.topic}")
    importlib.import_module(f"alternatives.{chapter.topic}")
    chapter_suites = suites(chapter.topic)
    assert list(chapter_suites) == chapter.graded_names
    for name, points in chapter.graded:
        assert hasattr(reference, name), f"solutions.{chapter.topic} has no {name}"
        assert chapter_suites[name].max_score == points, f"{name}: registry says {points} points"
    notebook = nbformat.read(ROOT / "chapters" / f"{chapter.name}.ipynb", as_version=4)
    assert notebook.metadata["transformers_graded"]["chapter"] == chapter.name
    heading = next(c.source.splitlines()[0] for c in notebook.cells if c.cell_type == "markdown")
    assert heading == f"# Chapter {chapter.number} — {chapter.title}"
    graded = [
        (m.group(2), nbgrader_meta(c)["points"])
        for c in notebook.cells
        if (m := GRADE_CALL.search(c.source)) and nbgrader_meta(c).get("grade")
    ]
    assert graded == list(chapter.graded)
    assert {m.group(1) for c in notebook.cells if (m := GRADE_CALL.search(c.source))} == {chapter.topic}
