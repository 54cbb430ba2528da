"""`python -m autograder grade` end to end: a real subprocess, the sandbox, real notebooks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.chapters import BY_NAME
from notebooks import CHAPTERS as NOTEBOOKS
from notebooks import filled_notebook, student_notebook, write

ALTERNATIVES = Path(__file__).parent / "alternatives"
ATTENTION = next(p for p in NOTEBOOKS if p.stem == "02_attention")


def grade(path, *args):
    return subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(path), *args], capture_output=True, text=True, timeout=300
    )


def grade_json(path):
    run = grade(path, "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("chapter", NOTEBOOKS, ids=lambda p: p.stem)
def test_alternative_answers_get_full_marks_and_stub_gets_zero(chapter, tmp_path):
    """Correct code written differently, graded in the sandbox: full marks; the stub: 0."""
    alternative = ALTERNATIVES / f"{BY_NAME[chapter.stem].topic}.py"
    if not alternative.exists():
        pytest.skip("no alternative answers for this chapter yet")
    report = grade_json(write(filled_notebook(chapter, {"*": alternative.read_text()}), tmp_path / chapter.name))
    assert report["score"] == report["max_score"] > 0, [t["message"] for t in report["tests"] if not t["passed"]]
    stub = grade_json(write(student_notebook(chapter), tmp_path / f"stub_{chapter.name}"))
    assert stub["score"] == 0 and stub["max_score"] == report["max_score"]
    assert all("not implemented yet" in t["message"] for t in stub["tests"])


def test_partial_credit_report_names_the_bug(tmp_path):
    alternative = (ALTERNATIVES / "attention.py").read_text()
    unscaled = alternative.replace("* (1.0 / math.sqrt(q.shape[-1]))", "")
    path = write(filled_notebook(ATTENTION, {"*": unscaled}), tmp_path / "02_attention.ipynb")
    report = grade_json(path)
    assert set(report) >= {"notebook", "score", "max_score", "tests"}
    assert set(report["tests"][0]) == {"function", "check", "score", "max_score", "passed", "message", "advice"}
    by_function = {}
    for test in report["tests"]:
        by_function.setdefault(test["function"], []).append(test)
    assert all(t["passed"] for t in by_function["softmax"] + by_function["causal_mask"])
    lost = [t for t in by_function["scaled_dot_product_attention"] if not t["passed"]]
    assert lost and "not divided by sqrt(d_k)" in lost[0]["message"]
    assert 5 <= report["score"] < report["max_score"]
    text = grade(path)
    assert text.returncode == 0 and "[FAIL] matches_reference" in text.stdout and "Total:" in text.stdout


def test_a_renamed_function_is_reported_not_crashed(tmp_path):
    path = write(
        filled_notebook(ATTENTION, {"causal_mask": "def my_mask(n):\n    return None"}), tmp_path / "02_x.ipynb"
    )
    report = grade_json(path)
    causal = [t for t in report["tests"] if t["function"] == "causal_mask"]
    assert all(not t["passed"] and "causal_mask is not defined" in t["message"] for t in causal)


def test_old_nbformat_is_upgraded_and_graded(tmp_path):
    v3 = nbformat.v3.new_notebook(
        worksheets=[
            nbformat.v3.new_worksheet(
                cells=[nbformat.v3.new_code_cell(input=(ALTERNATIVES / "attention.py").read_text())]
            )
        ]
    )
    path = tmp_path / "02_attention.ipynb"
    path.write_text(nbformat.writes(v3, version=3))
    report = grade_json(path)
    assert report["score"] == report["max_score"]


DEEP_METADATA = '{"nbformat": 4, "nbformat_minor": 5, "cells": [], "metadata": {"x": ' + "[" * 500 + "]" * 500 + "}}"


@pytest.mark.parametrize(
    "content, reason",
    [
        (None, "no such file"),
        ("{not json", "invalid JSON"),
        ('{"cells": 3, "nbformat": 4}', "no list of cells"),
        ("[1, 2]", "not a notebook"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (DEEP_METADATA, "nested more than 100 levels deep"),
        ('{"nbformat": 4, "cells": [], "n": ' + "9" * 10_000 + "}", "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
    ],
    # short ids: pytest puts the test's id in PYTEST_CURRENT_TEST, and a 200 kB one makes exec fail (E2BIG)
    ids=["missing", "broken", "cells_not_a_list", "a_list", "deep_json", "deep_metadata", "huge_number", "not_utf8"],
)
def test_what_cannot_be_graded_exits_2_with_a_message(tmp_path, content, reason):
    path = tmp_path / "02_attention.ipynb"
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    run = grade(path)
    assert run.returncode == 2 and reason in run.stderr and "Traceback" not in run.stderr and not run.stdout


def test_a_directory_or_fifo_is_refused_without_blocking(tmp_path):
    (tmp_path / "02_attention.ipynb").mkdir()
    run = grade(tmp_path / "02_attention.ipynb")
    assert run.returncode == 2 and "is a directory, not a file" in run.stderr
    os.mkfifo(tmp_path / "02_pipe.ipynb")
    run = grade(tmp_path / "02_pipe.ipynb")  # a blocking open would hang until the 300 s timeout
    assert run.returncode == 2 and "is a FIFO (named pipe), not a file" in run.stderr


def test_unknown_chapter_needs_the_chapter_option(tmp_path):
    notebook = student_notebook(ATTENTION)
    notebook.metadata.pop("transformers_graded")
    notebook.cells = [c for c in notebook.cells if "grade(" not in c.source]  # nothing says which chapter
    path = write(notebook, tmp_path / "my_homework.ipynb")
    run = grade(path)
    assert run.returncode == 2 and "--chapter" in run.stderr and "nothing says" in run.stderr
    assert grade(path, "--chapter", "02_attention", "--json").returncode == 0


def test_a_chapter_in_the_metadata_that_disagrees_is_not_trusted(tmp_path):
    """Chapter 2's answers claiming to be chapter 1 (whose checks they would fail differently):
    the grade cells and the file name say chapter 2, so the learner is asked to choose."""
    notebook = filled_notebook(ATTENTION, {"*": (ALTERNATIVES / "attention.py").read_text()})
    notebook.metadata["transformers_graded"]["chapter"] = "01_before_transformers"
    path = write(notebook, tmp_path / "02_attention.ipynb")
    run = grade(path)
    assert run.returncode == 2 and not run.stdout
    assert "its metadata says 01_before_transformers" in run.stderr and "its grade cells say 02_attention" in run.stderr
    assert "--chapter" in run.stderr
    report = json.loads(grade(path, "--chapter", "02_attention", "--json").stdout)
    assert report["chapter"] == "02_attention" and report["score"] == report["max_score"]
