"""`python -m autograder autograde` on a real nbgrader course: a class of hostile and broken
submissions graded into nbgrader's gradebook, then the real `nbgrader generate_feedback` and
`nbgrader export`; an interrupted run resumed without losing or duplicating a grade.

Each attack must leave its score where the same answers without the attack put it, and each
fault must cost only the functions it breaks, leaving other submissions, the course files
and the gradebook intact."""

import copy
import csv
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from classroom import CORRECT
from nbgrader.api import Gradebook

from autograder.course import create_course
from notebooks import filled_notebook, nbgrader_meta, sub_check_count, write

pytestmark = pytest.mark.xdist_group("batch_autograde")  # one course, graded once, in file order

ASSIGNMENT = "02_attention"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # nbgrader runs `alembic`
LIMITS = ["--call-seconds", "10", "--cell-seconds", "8", "--notebook-seconds", "120", "--memory-mb", "4096"]
FUNCTIONS = ("softmax", "scaled_dot_product_attention", "causal_mask")
POINTS = {"softmax": 3, "scaled_dot_product_attention": 9, "causal_mask": 2}

WRONG = {  # plausible bugs: partial credit, so an attack that raised it would show
    "softmax": "import torch\n\ndef softmax(x, dim=-1):\n    return x.exp() / x.exp().sum(dim=dim, keepdim=True)",
    "scaled_dot_product_attention": CORRECT["scaled_dot_product_attention"].replace(" / math.sqrt(q.shape[-1])", ""),
    "causal_mask": "def causal_mask(n):\n    return torch.ones(n, n, dtype=torch.bool).triu()",
}
TAMPERING = """
import builtins, torch
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.Tensor.__eq__ = lambda self, other: True
torch.testing.assert_close = lambda *args, **kwargs: None
builtins.grade = lambda *args, **kwargs: 100
def grade(*args, **kwargs):
    return 100
"""
LIARS = {
    "softmax": "import torch\nclass Liar(torch.Tensor):\n    def __eq__(self, other):\n        return True\n"
    "    @classmethod\n    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
    "        return True\n"
    "def softmax(x, dim=-1):\n    return torch.zeros_like(x).as_subclass(Liar)",
    "scaled_dot_product_attention": "class Anything:\n    def __eq__(self, other):\n        return True\n"
    "    def __getattr__(self, name):\n        return lambda *a, **k: True\n"
    "def scaled_dot_product_attention(q, k, v, mask=None):\n"
    "    return Anything(), Anything()",
    "causal_mask": "def causal_mask(n):\n    return Anything()",
}
STEALING = {
    "softmax": "from solutions.attention import softmax",
    "scaled_dot_product_attention": "import autograder.checks.attention\n"
    "from autograder.checks.attention import ref\n"
    "scaled_dot_product_attention = ref.scaled_dot_product_attention",
    "causal_mask": f"exec(open({str(Path(__file__).parent.parent / 'solutions' / 'attention.py')!r}).read())",
}
HOSTILE = """
import os, shutil, signal, time
COURSE = {course!r}
for action in (lambda: os.remove(os.path.join(COURSE, "gradebook.db")),
               lambda: open(os.path.join(COURSE, "gradebook.db"), "wb").write(b"gone"),
               lambda: shutil.rmtree(os.path.join(COURSE, "submitted")),
               lambda: shutil.rmtree(os.path.join(COURSE, "autograded")),
               lambda: open(os.path.join(COURSE, "source", "02_attention", "02_attention.ipynb"), "w").write("{{}}")):
    try:
        action()
    except OSError:
        pass
for target in [os.getppid(), -1] + [int(p) for p in os.listdir("/proc") if p.isdigit()]:
    try:
        if target != os.getpid():
            os.kill(target, signal.SIGKILL)
    except OSError:
        pass
forked = 0
try:
    while forked < 10_000:  # a fork bomb (its children sleep, to keep this test quiet)
        if os.fork() == 0:
            time.sleep(300)
            os._exit(0)
        forked += 1
except OSError:
    pass
for _ in range(100_000):
    print("flood " * 20)
"""


SLOW = {  # correct, but each call sleeps 4 s, under the 10 s per-call limit (and calls no slow softmax)
    name: "import time\n"
    + source.replace("softmax(scores)", "scores.softmax(-1)").replace("):\n", "):\n    time.sleep(4)\n", 1)
    for name, source in CORRECT.items()
}
SECRET = "TOP-SECRET 4f1c: a root-readable file a timestamp.txt link points at"


def answers(base, **changes):
    return {**base, **changes}


def with_cell(notebook, source, index=None):
    notebook = copy.deepcopy(notebook)
    cell = nbformat.v4.new_code_cell(source)
    notebook.cells.insert(len(notebook.cells) if index is None else index, cell)
    return notebook


def submissions(release: Path, course: Path) -> dict:
    """student id -> notebook (or raw text, or None for "submitted under another name")."""
    correct = filled_notebook(release, CORRECT)
    for cell in correct.cells:
        if nbgrader_meta(cell).get("grade_id") == "written_parallel_and_expensive":
            cell.source = "Scores are independent dot products, so one matrix product computes them all; N^2 of them."
    wrong = filled_notebook(release, WRONG)
    grade_cells_edited = with_cell(wrong, TAMPERING)
    for cell in grade_cells_edited.cells:
        meta = nbgrader_meta(cell)
        if meta.get("grade") and cell.cell_type == "code":
            cell.source, meta["points"] = "100", 100
    v3 = nbformat.v3.new_notebook(
        worksheets=[nbformat.v3.new_worksheet(cells=[nbformat.v3.new_code_cell(input="\n\n".join(CORRECT.values()))])]
    )
    return {
        "correct": correct,
        "stub": filled_notebook(release, {}),
        "wrong": wrong,
        "wrong_in_chinese": _in_chinese(wrong),
        "tampers_with_checks": grade_cells_edited,
        "returns_liars": filled_notebook(release, LIARS),
        "imports_the_reference": with_cell(filled_notebook(release, STEALING), "import autograder\nimport solutions"),
        "calls_sys_exit": with_cell(with_cell(correct, "import sys\nsys.exit(0)", 1), "raise SystemExit(1)"),
        "os_exit_in_function": filled_notebook(
            release, answers(CORRECT, causal_mask="import os\n\ndef causal_mask(n):\n    os._exit(1)")
        ),
        "os_exit_at_top": with_cell(correct, "import os\nos._exit(0)"),
        "runaway_functions": filled_notebook(
            release,
            answers(
                CORRECT,
                softmax="def softmax(x, dim=-1):\n    while True:\n        pass",
                scaled_dot_product_attention="import torch\n\ndef scaled_dot_product_attention(q, k, v, mask=None):\n"
                "    return torch.empty(2 ** 40), None",
                causal_mask=CORRECT["causal_mask"] + "\n\nimport builtins\n_print = builtins.print\n"
                "def causal_mask_(n):\n    for _ in range(10_000):\n        _print('x' * 1000)\n"
                "    return torch.ones(n, n, dtype=torch.bool).tril()\ncausal_mask = causal_mask_",
            ),
        ),
        "loops_at_top": with_cell(correct, "while True:\n    pass"),
        "hostile": with_cell(correct, HOSTILE.format(course=str(course))),
        "invalid_json": "{not json",
        "nbformat_3": nbformat.writes(v3, version=3),
        "deleted_grade_cells": _without_grade_cells(correct),
        "renamed_function": filled_notebook(
            release, answers(CORRECT, causal_mask=CORRECT["causal_mask"].replace("def causal_mask", "def my_mask"))
        ),
        "no_notebook": None,
        "notebook_is_a_directory": lambda path: (path.mkdir(), (path / "cells.json").write_text("{}")),
        "notebook_is_a_fifo": os.mkfifo,  # reading it would block the batch forever
        "notebook_links_to_a_classmate": lambda path: path.symlink_to(
            course / "submitted" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        ),
        "timestamp_links_elsewhere": _with_linked_timestamp(correct, course.parent / "secret.txt"),
        "deeply_nested_json": "[" * 100_000 + "]" * 100_000,
        "demo_tagged_grade_cells": _tagged_demo(filled_notebook(release, {})),
        "slow_under_the_limit": filled_notebook(release, SLOW),
    }


def _with_linked_timestamp(notebook, secret: Path):
    secret.write_text(SECRET)

    def submit_it(path):
        write(notebook, path)
        (path.parent / "timestamp.txt").unlink()
        (path.parent / "timestamp.txt").symlink_to(secret)

    return submit_it


def _tagged_demo(notebook):
    """Grade cells tagged as the course config's skipped tag: a skipped grade cell would pass."""
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        if nbgrader_meta(cell).get("grade") and cell.cell_type == "code":
            cell.metadata["tags"] = ["demo"]
    return notebook


def _without_grade_cells(notebook):
    notebook = copy.deepcopy(notebook)
    notebook.cells = [c for c in notebook.cells if not (nbgrader_meta(c).get("grade") and c.cell_type == "code")]
    return notebook


UNREADABLE = {  # student -> why the submission is not graded
    "notebook_is_a_directory": f"{ASSIGNMENT}.ipynb is a directory, not a file",
    "notebook_is_a_fifo": f"{ASSIGNMENT}.ipynb is a FIFO (named pipe), not a file",
    "notebook_links_to_a_classmate": f"{ASSIGNMENT}.ipynb is a symbolic link, not a file",
    "timestamp_links_elsewhere": "timestamp.txt is a symbolic link, not a file",
    "deeply_nested_json": "nested too deeply",
}
# Students whose scores are compared with another's rather than expected: "wrong" is the reference
COMPARED = {"wrong", "wrong_in_chinese", "tampers_with_checks", "slow_under_the_limit"}
EXPECTED = {  # student -> {function: score}, or a callable of the scores of "wrong"
    "correct": POINTS,
    "stub": {f: 0 for f in FUNCTIONS},
    "returns_liars": {f: 0 for f in FUNCTIONS},
    "imports_the_reference": {f: 0 for f in FUNCTIONS},
    "calls_sys_exit": POINTS,
    "os_exit_in_function": {**POINTS, "causal_mask": 0},
    "os_exit_at_top": {f: 0 for f in FUNCTIONS},
    "runaway_functions": {"softmax": 0, "scaled_dot_product_attention": 0, "causal_mask": 2},
    "loops_at_top": {f: 0 for f in FUNCTIONS},
    "hostile": POINTS,
    "invalid_json": {f: 0 for f in FUNCTIONS},
    "nbformat_3": POINTS,
    "deleted_grade_cells": POINTS,
    "renamed_function": {**POINTS, "causal_mask": 0},
    "no_notebook": {f: 0 for f in FUNCTIONS},
    **{student: {f: 0 for f in FUNCTIONS} for student in UNREADABLE},
    "demo_tagged_grade_cells": {f: 0 for f in FUNCTIONS},
}


def nbgrader(course: Path, *args):
    run = subprocess.run(
        [str(BIN / "nbgrader"), *args], cwd=course, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def autograde(course: Path, *args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "autograder", "autograde", ASSIGNMENT, *LIMITS, *args],
        cwd=course,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
        **kwargs,
    )


def submit(course: Path, student: str, notebook) -> Path:
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "timestamp.txt").write_text("2026-01-15 12:00:00.000000 UTC")
    if notebook is None:
        (folder / "my_homework.ipynb").write_text("{}")
    elif callable(notebook):
        notebook(folder / f"{ASSIGNMENT}.ipynb")
    elif isinstance(notebook, str):
        (folder / f"{ASSIGNMENT}.ipynb").write_text(notebook)
    else:
        write(notebook, folder / f"{ASSIGNMENT}.ipynb")
    return folder


def tree_digest(course: Path) -> dict:
    return {
        str(p.relative_to(course)): hashlib.sha256(p.read_bytes()).hexdigest()
        for top in ("source", "release", "submitted", "nbgrader_config.py")
        for p in ([course / top] if (course / top).is_file() else sorted((course / top).rglob("*")))
        if p.is_file()
    }


def auto_scores(course: Path) -> dict:
    """student -> {grade cell: auto_score} read back through nbgrader's Gradebook API."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return {
            s.student.id: {g.name: g.auto_score for n in s.notebooks for g in n.grades}
            for s in gradebook.find_assignment(ASSIGNMENT).submissions
        }


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    create_course(course, chapters=[ASSIGNMENT])
    nbgrader(course, "generate_assignment", ASSIGNMENT)
    release = course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    for student, notebook in submissions(release, course).items():
        submit(course, student, notebook)
    before = tree_digest(course)
    start = time.monotonic()
    run = autograde(course)
    seconds = time.monotonic() - start
    assert run.returncode == 0, run.stdout + run.stderr
    assert tree_digest(course) == before, "the batch (or a submission) changed the course's files"
    nbgrader(course, "generate_feedback", ASSIGNMENT)
    nbgrader(course, "export")
    return {"path": course, "output": run.stdout, "seconds": seconds}


def test_every_submission_is_graded_once(course):
    scores = auto_scores(course["path"])
    assert set(scores) == set(EXPECTED) | COMPARED
    assert f"graded {len(scores)}," in course["output"]
    connection = sqlite3.connect(course["path"] / "gradebook.db")
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert connection.execute("SELECT COUNT(*) FROM grade").fetchone() == (len(scores) * 4,)


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_scores_per_function(course, student):
    scores = auto_scores(course["path"])[student]
    assert {f: scores[f"{f}_check"] for f in FUNCTIONS} == EXPECTED[student]


def test_a_chinese_notebook_gets_the_same_scores_with_feedback_in_chinese(course):
    scores = auto_scores(course["path"])
    assert scores["wrong_in_chinese"] == scores["wrong"]

    def reports(student):
        notebook = nbformat.read(course["path"] / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4)
        return [
            "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            for cell in notebook.cells
            if cell.cell_type == "code" and nbgrader_meta(cell).get("grade_id", "").endswith("_check")
        ]

    english, chinese = reports("wrong"), reports("wrong_in_chinese")
    assert len(english) == len(chinese) == len(FUNCTIONS)
    for mine, theirs in zip(chinese, english):
        for zh, en in zip(mine.splitlines(), theirs.splitlines(), strict=True):
            assert re.findall(r"\] (\w+) \(", zh) == re.findall(r"\] (\w+) \(", en), (zh, en)  # the same sub-checks
            assert re.findall(r"[\d.]+", zh.split(":")[0]) == re.findall(r"[\d.]+", en.split(":")[0])  # scores
            assert ("[FAIL]" in en) == ("[未通过]" in zh) and ("[PASS]" in en) == ("[通过]" in zh), (zh, en)
            if "[FAIL]" in en:
                assert re.search(r"[\u4e00-\u9fff]", zh.split("分)", 1)[-1]), zh  # the diagnosis, in Chinese


def _in_chinese(notebook):
    """The same answers in a notebook of the Chinese edition (its metadata says so)."""
    notebook = copy.deepcopy(notebook)
    notebook.metadata.setdefault("transformers_graded", {})["language"] = "zh"
    return notebook


def test_tampering_does_not_raise_the_score_of_the_same_answers(course):
    scores = auto_scores(course["path"])
    wrong = {f: scores["wrong"][f"{f}_check"] for f in FUNCTIONS}
    assert 0 < sum(wrong.values()) < sum(POINTS.values())
    assert {f: scores["tampers_with_checks"][f"{f}_check"] for f in FUNCTIONS} == wrong


def test_written_answers_are_left_for_manual_grading(course):
    with Gradebook(f"sqlite:///{course['path'] / 'gradebook.db'}") as gradebook:
        correct = gradebook.find_grade("written_parallel_and_expensive", ASSIGNMENT, ASSIGNMENT, "correct")
        stub = gradebook.find_grade("written_parallel_and_expensive", ASSIGNMENT, ASSIGNMENT, "stub")
        assert correct.auto_score is None and correct.needs_manual_grade  # formgrader asks for a grade
        assert stub.auto_score == 0 and not stub.needs_manual_grade  # nbgrader's "no response" rule
        assert (
            gradebook.find_comment("written_parallel_and_expensive", ASSIGNMENT, ASSIGNMENT, "stub").auto_comment
            == "No response."
        )
        assert gradebook.find_submission(ASSIGNMENT, "correct").max_score == 16
    # saved as Jupyter saves it (sources as lists of lines), the answer survives nbgrader's sanitizing
    submitted = json.loads((course["path"] / "submitted" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    assert all(isinstance(cell["source"], list) for cell in submitted["cells"])
    autograded = course["path"] / "autograded" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert "Scores are independent dot products" in autograded.read_text()
    feedback = course["path"] / "feedback" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.html"
    assert "Scores are independent dot products" in feedback.read_text()


@pytest.mark.parametrize("student", sorted(UNREADABLE))
def test_a_submission_that_is_not_a_notebook_file_gets_a_not_graded_row(course, student):
    """Directories, FIFOs, symbolic links and deeply nested JSON: the student has a row with
    zero scores and the reason, in the gradebook, results.json, the feedback and the summary;
    the rest of the class was graded in the same run (test_every_submission_is_graded_once)."""
    reason = UNREADABLE[student]
    with Gradebook(f"sqlite:///{course['path'] / 'gradebook.db'}") as gradebook:
        comment = gradebook.find_comment("written_parallel_and_expensive", ASSIGNMENT, ASSIGNMENT, student)
        assert comment.auto_comment.startswith("Not graded: ") and reason in comment.auto_comment
    folder = course["path"] / "autograded" / student / ASSIGNMENT
    results = json.loads((folder / "results.json").read_text())
    assert results["score"] == 0 and reason in results["output"]
    assert all(reason in test["output"] for test in results["tests"])
    assert reason in (course["path"] / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert re.search(rf"{student}: 0 / 14 \(.* s\) not graded: .*{re.escape(reason)}", course["output"])


def test_symbolic_links_are_not_followed(course):
    """A notebook linked to a classmate's does not get the classmate's score, and a linked
    timestamp.txt does not copy the file it names into autograded/ or the feedback."""
    path = course["path"]
    assert sum(v or 0 for v in auto_scores(path)["notebook_links_to_a_classmate"].values()) == 0
    assert sum(v or 0 for v in auto_scores(path)["correct"].values()) == 14
    for top in ("autograded", "feedback"):
        for file in (path / top / "timestamp_links_elsewhere").rglob("*"):
            assert not file.is_file() or SECRET not in file.read_text()
    assert not (path / "autograded" / "timestamp_links_elsewhere" / ASSIGNMENT / "timestamp.txt").exists()


def test_slow_code_just_under_the_call_limit_costs_its_time_budget_not_the_notebooks(course):
    """Each call sleeps 4 s of the 10 s allowed per call: each function stops when its budget
    (10 x the reference's time + 10 s) is spent, not after the notebook's 120 s."""
    results = json.loads(
        (course["path"] / "autograded" / "slow_under_the_limit" / ASSIGNMENT / "results.json").read_text()
    )
    for function in FUNCTIONS:
        tests = [t for t in results["tests"] if t["name"].startswith(f"{function}:")]
        assert any(f"{function} is too slow" in t["output"] for t in tests), tests
        assert sum(t["score"] for t in tests) < POINTS[function]  # not all checks ran
    seconds = float(re.search(r"slow_under_the_limit: [\d.]+ / 14 \(([\d.]+) s\)", course["output"]).group(1))
    assert seconds < 90, seconds  # 3 budgets of about 10 s, restarts; the notebook's limit is 120 s
    assert "slow_under_the_limit" in course["output"].split("slowest: ")[1].splitlines()[0]


def test_messages_say_what_happened(course):
    def outputs(student):
        return json.loads((course["path"] / "autograded" / student / ASSIGNMENT / "results.json").read_text())

    messages = {s: " ".join(t["output"] for t in outputs(s)["tests"]) for s in EXPECTED}
    assert "took longer than 10 s" in messages["runaway_functions"]
    assert "ended the grading process" in messages["os_exit_at_top"]
    assert "took longer than 8 s" in messages["loops_at_top"]
    assert "invalid JSON" in messages["invalid_json"]
    assert "was not submitted" in messages["no_notebook"]
    assert "causal_mask is not defined" in messages["renamed_function"]
    assert "No module named 'solutions" in messages["imports_the_reference"]


def test_gradescope_results(course):
    results = json.loads((course["path"] / "autograded" / "wrong" / ASSIGNMENT / "results.json").read_text())
    assert set(results) >= {"score", "tests"}
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))
    assert len(results["tests"]) == sub_check_count("attention") and sum(t["max_score"] for t in results["tests"]) == 14
    for test in results["tests"]:
        assert set(test) == {"name", "score", "max_score", "output", "visibility"}
        assert test["visibility"] in ("visible", "hidden", "after_due_date", "after_published")


def test_nbgrader_feedback_and_export_read_the_gradebook(course):
    path = course["path"]
    html = (path / "feedback" / "runaway_functions" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "took longer than 10 s" in html and "attention.softmax" in html
    html = (path / "feedback" / "invalid_json" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "invalid JSON" in html
    rows = {r["student_id"]: r for r in csv.DictReader(open(path / "grades.csv"))}
    scores = auto_scores(path)
    for student, cells in scores.items():
        assert float(rows[student]["raw_score"]) == pytest.approx(sum(v or 0 for v in cells.values())), student


def test_an_interrupted_run_resumes_without_losing_or_duplicating_grades(course):
    path = course["path"]
    release = path / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    slow = filled_notebook(release, answers(CORRECT, causal_mask="def causal_mask(n):\n    while True:\n        pass"))
    for student, notebook in [("zz_1", filled_notebook(release, CORRECT)), ("zz_2", slow), ("zz_3", slow)]:
        submit(path, student, notebook)
    run = subprocess.Popen(
        [sys.executable, "-m", "autograder", "autograde", ASSIGNMENT, "--workers", "1", *LIMITS],
        cwd=path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    lines = []
    for line in run.stdout:  # kill the whole run as soon as the first submission is recorded
        lines.append(line)
        if "[1/3]" in line:
            os.killpg(run.pid, signal.SIGKILL)
            break
    run.wait()
    assert any("zz_1" in line for line in lines), lines
    interrupted = auto_scores(path)
    assert "zz_1" in interrupted and "zz_3" not in interrupted

    # meanwhile: a resubmission, and a submission whose results.json was lost after its commit
    submit(path, "stub", filled_notebook(release, CORRECT))
    (path / "autograded" / "correct" / ASSIGNMENT / "results.json").unlink()
    resumed = autograde(path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    graded = {line.split("]")[1].split(":")[0].strip() for line in resumed.stdout.splitlines() if "] " in line}
    assert graded == {"zz_2", "zz_3", "stub", "correct"}, resumed.stdout
    assert f"already graded {len(EXPECTED) + len(COMPARED) + 1 - 2}" in resumed.stdout  # all but stub, correct; zz_1
    scores = auto_scores(path)
    assert sum(scores["stub"][f"{f}_check"] for f in FUNCTIONS) == 14
    assert {f: scores["zz_2"][f"{f}_check"] for f in FUNCTIONS} == {**POINTS, "causal_mask": 0}
    connection = sqlite3.connect(path / "gradebook.db")
    assert connection.execute("SELECT COUNT(*) FROM submitted_assignment").fetchone() == (len(scores),)
    assert connection.execute("SELECT COUNT(*) FROM grade").fetchone() == (len(scores) * 4,)
