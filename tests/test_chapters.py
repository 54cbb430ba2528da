"""Every chapter notebook follows the conventions the grader, the book and nbgrader rely on,
and every check suite passes the reference and fails the stub on every sub-check."""

import importlib

import nbformat
import pytest
from conftest import messages, not_implemented, run_suite

from autograder.chapters import BY_NAME, CHAPTERS
from autograder.checks import suites
from notebooks import CHAPTERS as NOTEBOOKS
from notebooks import GRADE_CALL, is_answer, nbgrader_meta, student_notebook


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def chapter(request):
    return request.param


def test_notebook_is_committed_without_outputs(chapter):
    notebook = nbformat.read(chapter, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["transformers_graded"]["chapter"] == chapter.stem
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.source[:60]


def test_grade_cells_call_the_suites_with_their_points(chapter):
    notebook = nbformat.read(chapter, as_version=4)
    topic = BY_NAME[chapter.stem].topic
    graded = {}
    for cell in notebook.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            match = GRADE_CALL.search(cell.source)
            assert match, f'grade cell {meta["grade_id"]} does not call grade("topic.name", name)'
            assert match.group(1) == topic and match.group(2) == match.group(3)
            graded[match.group(2)] = meta["points"]
            assert meta["locked"]
    assert list(graded) == list(suites(topic)), "grade cells must follow the suites, in order"
    for name, points in graded.items():
        assert points == suites(topic)[name].max_score, f"{name}: cell points != suite points"


def test_answers_have_solution_regions_and_a_written_question(chapter):
    notebook = nbformat.read(chapter, as_version=4)
    answers = [c for c in notebook.cells if is_answer(c)]
    assert answers and all("### BEGIN SOLUTION" in c.source and "### END SOLUTION" in c.source for c in answers)
    written = [c for c in notebook.cells if c.cell_type == "markdown" and nbgrader_meta(c).get("grade")]
    assert written and all(nbgrader_meta(c)["points"] > 0 for c in written)


def test_student_view_holds_no_solution(chapter):
    topic = BY_NAME[chapter.stem].topic
    text = "\n".join(c.source for c in student_notebook(chapter).cells)
    assert "BEGIN SOLUTION" not in text and f"solutions.{topic}" not in text
    assert "raise NotImplementedError()" in text and "YOUR ANSWER HERE" in text


@pytest.mark.parametrize("topic", [c.topic for c in CHAPTERS])
def test_reference_and_alternative_full_marks_stub_fails_every_check(topic, seed):
    """On every grading seed: the reference and the correct alternative answers of
    ``tests/alternatives/<topic>.py`` pass every sub-check; a stub passes none."""
    reference = importlib.import_module(f"solutions.{topic}")
    alternative = importlib.import_module(f"alternatives.{topic}")
    for name, suite in suites(topic).items():
        assert all((c.points > 0) != c.advice for c in suite.checks)  # advice is worth 0, every other check more
        for answer in (getattr(reference, name), getattr(alternative, name)):
            results = run_suite(topic, name, answer, seed)
            assert all(r.passed for r in results), f"{answer.__module__}.{name}: {messages(results)}"
        assert not any(r.passed for r in run_suite(topic, name, not_implemented, seed))
