"""The instructor workflow with the real nbgrader CLI and gradebook: course directory,
generate_assignment, three submissions, autograde, generate_feedback, export."""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from notebooks import filled_notebook, write

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "02_attention"
UNSCALED = """import math
import torch
from solutions.attention import softmax

def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)
    weights = softmax(scores)
    return weights @ v, weights
"""


BIN = Path(sys.executable).parent
STUDENTS = ("reference", "stub", "buggy", "demo_tagged_grade_cells")


def nbgrader(course: Path, *args):
    """Run the nbgrader CLI as an instructor would, in an activated environment (nbgrader
    runs `alembic` from PATH to create the gradebook)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        [str(BIN / "nbgrader"), *args], cwd=course, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    subprocess.run([sys.executable, "-m", "autograder", "course", str(course), ASSIGNMENT], check=True)
    nbgrader(course, "generate_assignment", ASSIGNMENT)
    release = course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    for student in STUDENTS:
        (course / "submitted" / student / ASSIGNMENT).mkdir(parents=True)
        (course / "submitted" / student / ASSIGNMENT / "timestamp.txt").write_text("2026-01-15 12:00:00.000000 UTC")
    submitted = {s: course / "submitted" / s / ASSIGNMENT / f"{ASSIGNMENT}.ipynb" for s in STUDENTS}
    shutil.copy(course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", submitted["reference"])
    shutil.copy(release, submitted["stub"])
    buggy = filled_notebook(
        release,
        {
            "scaled_dot_product_attention": UNSCALED,
            "softmax": "from solutions.attention import softmax",
            "causal_mask": "from solutions.attention import causal_mask",
        },
    )
    write(buggy, submitted["buggy"])
    demo_tagged = filled_notebook(release, {})
    for cell in demo_tagged.cells:
        if cell.metadata.get("nbgrader", {}).get("grade") and cell.cell_type == "code":
            cell.metadata["tags"] = ["demo"]  # the tag the course config skips
    write(demo_tagged, submitted["demo_tagged_grade_cells"])
    nbgrader(course, "autograde", ASSIGNMENT, "--create")
    nbgrader(course, "generate_feedback", ASSIGNMENT)
    nbgrader(course, "export")
    return course


def test_release_is_the_student_stub(course):
    text = (course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    assert "raise NotImplementedError()" in text and "BEGIN SOLUTION" not in text


def test_gradebook_holds_full_zero_and_partial_scores(course):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:

        def auto(student):
            submission = gradebook.find_submission(ASSIGNMENT, student)
            grades = [g for notebook in submission.notebooks for g in notebook.grades]
            return {g.name: g.auto_score for g in grades if g.auto_score is not None}, submission.max_score

        reference, max_score = auto("reference")
        stub, _ = auto("stub")
        buggy, _ = auto("buggy")
        demo_tagged, _ = auto("demo_tagged_grade_cells")
    assert max_score == 16  # 14 autograded points and the 2-point written answer
    assert reference == {"softmax_check": 3, "scaled_dot_product_attention_check": 9, "causal_mask_check": 2}
    assert sum(stub.values()) == 0
    assert buggy["softmax_check"] == 3 and buggy["causal_mask_check"] == 2
    assert 0 < buggy["scaled_dot_product_attention_check"] < 9
    # a stub whose grade cells are tagged "demo": the grade cells still run (a skipped one would pass)
    assert [demo_tagged[f"{f}_check"] for f in ("softmax", "scaled_dot_product_attention", "causal_mask")] == [0, 0, 0]


def test_plain_nbgrader_trusts_the_learners_kernel(course):
    """Why plain `nbgrader autograde` is not for grades that count: "buggy" imported two of its
    answers from the installed reference, and they scored (see the README)."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assert gradebook.find_grade("softmax_check", ASSIGNMENT, ASSIGNMENT, "buggy").auto_score == 3


def test_feedback_shows_the_checks_messages(course):
    html = (course / "feedback" / "buggy" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "not divided by sqrt(d_k)" in html
    assert "not implemented yet" in (course / "feedback" / "stub" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()


def test_export_writes_every_submission(course):
    rows = {r["student_id"]: r for r in csv.DictReader(open(course / "grades.csv"))}
    assert set(rows) == set(STUDENTS)
    assert float(rows["reference"]["raw_score"]) == 14 and float(rows["stub"]["raw_score"]) == 0
    assert 5 < float(rows["buggy"]["raw_score"]) < 14
