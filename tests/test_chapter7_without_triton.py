"""Chapter 7 where `import triton` fails (macOS, Windows: Triton publishes Linux wheels only).

A ``sitecustomize`` on PYTHONPATH puts ``sys.modules["triton"] = None``, so every ``import triton``
in that process raises ImportError, as on a Mac. The committed learner notebook, with the chapter's
own answers in its answer cells, then runs top to bottom in a real Jupyter kernel: the Triton cells
say what they need and skip the launch, the Triton exercise's check cell scores it 0 with that
reason, and every other exercise gets full marks. ``grade`` reports the same.
"""

import ast
import json
import os
import re
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from notebooks import ROOT, is_answer, nbgrader_meta

NEEDS = "needs Linux with Triton, or a hosted notebook"
CHAPTER = "07_flash_attention.ipynb"
SOLUTION_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\n", re.M)


@pytest.fixture
def without_triton(tmp_path, monkeypatch):
    """This test's environment (and so its kernels' and subprocesses') cannot import Triton."""
    folder = tmp_path / "no_triton"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text("import sys\n\nsys.modules['triton'] = None  # as on macOS and Windows\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))
    return folder


def _definitions(source: str) -> dict[str, str]:
    """{name: its source, decorators included} for the top-level functions, classes and constants
    (``NEG_INF = ...``) of ``source``."""
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            first = node.decorator_list[0] if node.decorator_list else node
            found[node.name] = "\n".join(lines[first.lineno - 1 : node.end_lineno])
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = "\n".join(lines[node.lineno - 1 : node.end_lineno])
    return found


def answered_learner_notebook() -> nbformat.NotebookNode:
    """notebooks/07 with each answer cell holding the reference's definitions of what that cell
    defines in the chapter (the module's private helpers go first): correct answers written cell by
    cell, as a learner does, with no `import triton` of their own."""
    reference = _definitions((ROOT / "solutions" / "flash_attention.py").read_text())
    chapter = nbformat.read(ROOT / "chapters" / CHAPTER, as_version=4)
    cells = {nbgrader_meta(c)["grade_id"]: list(_definitions(c.source)) for c in chapter.cells if is_answer(c)}
    helpers = [name for name in reference if not any(name in names for names in cells.values())]
    notebook = nbformat.read(ROOT / "notebooks" / CHAPTER, as_version=4)
    for index, cell in enumerate(c for c in notebook.cells if is_answer(c)):
        names = (helpers if index == 0 else []) + cells[nbgrader_meta(cell)["grade_id"]]
        cell.source = "\n\n\n".join(reference[name] for name in names)
    return notebook


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def test_triton_cannot_be_imported_in_this_environment(without_triton):
    run = subprocess.run([sys.executable, "-c", "import triton"], capture_output=True, text=True, timeout=120)
    assert (
        run.returncode == 1 and "import of triton halted" in run.stderr
    )  # the test below would prove nothing otherwise


def test_chapter_7_runs_top_to_bottom_and_its_triton_part_says_what_it_needs(without_triton, tmp_path):
    notebook = answered_learner_notebook()
    path = tmp_path / CHAPTER
    nbformat.write(notebook, path)
    NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    # execute() raises CellExecutionError at the first cell that fails: every cell ran.
    code = [c for c in notebook.cells if c.cell_type == "code"]
    setup = next(c for c in code if "import triton" in c.source)
    assert NEEDS in text_of(setup)
    kernel_cell = next(c for c in code if "def flash_attention_kernel" in c.source)
    assert f"flash_attention_kernel {NEEDS}" in text_of(kernel_cell)
    warmup = next(c for c in code if "def softmax_rows_kernel" in c.source)
    assert "largest difference" not in text_of(warmup)
    scores = {}
    for cell in code:
        if nbgrader_meta(cell).get("grade") and not nbgrader_meta(cell).get("solution"):
            name = re.search(r'grade\("flash_attention\.(\w+)"', cell.source).group(1)
            (result,) = [o for o in cell.outputs if o.output_type == "execute_result"]
            scores[name] = (float(result["data"]["text/plain"]), text_of(cell))
    triton_score, triton_report = scores.pop("flash_attention_triton")
    assert triton_score == 0 and NEEDS in triton_report and "not attempted" in triton_report
    assert "not defined" not in triton_report
    for name, (score, report) in scores.items():
        assert "[FAIL]" not in report, (name, report)
        assert score > 0
    quiz = next(c for c in code if "display_quiz" in c.source)
    assert any(o.output_type == "display_data" for o in quiz.outputs)

    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(path), "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    by_function = {}
    for test in report["tests"]:
        by_function.setdefault(test["function"], []).append(test)
    triton_tests = by_function.pop("flash_attention_triton")
    assert all(not t["passed"] and NEEDS in t["message"] and "not defined" not in t["message"] for t in triton_tests)
    failed = [t for tests in by_function.values() for t in tests if not t["passed"] and not t["advice"]]
    assert not failed, failed
    assert report["score"] == report["max_score"] - sum(t["max_score"] for t in triton_tests)
