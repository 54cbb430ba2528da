"""Submissions that attack the grader from inside their own sandbox, graded with the real
`python -m autograder autograde` into a real nbgrader gradebook.

The learner's code runs in the same process as the child's reply loop, and reaches its
modules through the stack (``sys._getframe(1).f_globals`` of a cell is
``autograder.protocol``'s), so it can rewrite any reply. Each forged reply must cost only
the submission's own points, with a message: never its grade row (a crash in the grader),
never gigabytes of report, never another student's grade. A cell copied in Jupyter keeps
its nbgrader metadata; the written answer in one of two copies must reach `autograded/`
and formgrader. Processes that spin in sessions of their own get the CPU of one core, not
the machine's, so the submissions graded beside them keep their time."""

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from classroom import ASSIGNMENT, CORRECT, ENV, nbgrader
from nbgrader.api import Gradebook

from autograder.course import create_course
from autograder.leaderboard import leaderboard
from autograder.sandbox import Limits, Sandbox
from notebooks import filled_notebook, nbgrader_meta, write

pytestmark = pytest.mark.xdist_group("hostile_submissions")  # one course, graded once

WRITTEN = "written_parallel_and_expensive"
LIMITS = ["--call-seconds", "10", "--cell-seconds", "8", "--notebook-seconds", "120", "--memory-mb", "4096"]
FUNCTIONS = ("softmax", "scaled_dot_product_attention", "causal_mask")
POINTS = {"softmax": 3, "scaled_dot_product_attention": 9, "causal_mask": 2}
NONE = dict.fromkeys(FUNCTIONS, 0)
NO_MASK = {**CORRECT, "causal_mask": "# causal_mask: not done"}

REWRITE_REPLIES = """
import sys
_wire = sys._getframe(1).f_globals["wire"]  # the child's reply loop is autograder.protocol.serve
_encode, _count = _wire.encode, [0]
def _forged(message_id, reply):
    _count[0] += 1
    return {forged}
_wire.encode = _forged
"""
ATTACKS = {  # student -> (answers, a cell added at the end)
    # the reply to "run the cells" is 5, not a list of errors; causal_mask missing makes the grader read it
    "forged_cell_errors": (
        NO_MASK,
        REWRITE_REPLIES.format(forged='_encode(message_id, {"ok": True, "value": 5} if _count[0] == 1 else reply)'),
    ),
    # every reply after the cells ran is a 15 MB error text (12 sub-checks: 190 MB of report)
    "forged_huge_errors": (
        CORRECT,
        REWRITE_REPLIES.format(
            forged='_encode(message_id, reply if _count[0] == 1 else {"ok": False, "error": "E" * (15 << 20)})'
        ),
    ),
    # a cell whose exception message is 15 MB, quoted in the message of the function it leaves undefined
    "huge_cell_error": (NO_MASK, "raise ValueError('V' * (15 << 20))"),
    # a frame whose empty tensor has a shape torch cannot hold
    "overflowing_shape": (
        CORRECT,
        REWRITE_REPLIES.format(
            forged="[__import__('struct').pack('<4sIQ', b'AGW1', len(_head(message_id)), 0), _head(message_id)]"
        ).replace(
            "_wire.encode = _forged",
            "import json\ndef _head(message_id):\n"
            "    return json.dumps({'id': message_id, 'value': {'tensor': 0}, "
            "'tensors': [['float32', [0, 2 ** 63], 0]]}).encode()\n_wire.encode = _forged",
        ),
    ),
}
ANSWER = "One matrix product computes every score at once; there are N^2 of them."
HTML_ANSWER = "<script>alert('grader')</script><img src=x onerror=alert(1)>\n\n**N^2** scores. " + "More. " * 150_000


SEED_HUNT = """
import glob, os
def causal_mask(n):
    found = ["HUNTED", *(f"{{k}}={{v}}" for k, v in os.environ.items())]
    for path in [*glob.glob("/proc/*/environ"), *glob.glob("/proc/*/cmdline"), {config!r}, "/proc/1/root" + {config!r}]:
        try:
            found.append(open(path, "rb").read().decode(errors="replace"))
        except OSError as error:
            found.append(type(error).__name__)
    raise ValueError(" ".join(found))
"""


def submissions(release: Path) -> dict:
    correct = filled_notebook(release, CORRECT)
    config = str(release.parent.parent.parent / "nbgrader_config.py")
    notebooks = {
        "correct": correct,
        "seed_hunt": filled_notebook(release, {**CORRECT, "causal_mask": SEED_HUNT.format(config=config)}),
    }
    for student, (answers, cell) in ATTACKS.items():
        notebook = filled_notebook(release, answers)
        notebook.cells.append(nbformat.v4.new_code_cell(cell))
        notebooks[student] = notebook
    notebooks["written_answer_in_a_copied_cell"] = _copied_written_cell(correct)
    notebooks["html_written_answer"] = _answered(correct, HTML_ANSWER)
    return notebooks


def _answered(notebook, text):
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        if nbgrader_meta(cell).get("grade_id") == WRITTEN:
            cell.source = text
    return notebook


def _copied_written_cell(notebook):
    """The written-answer cell copied in Jupyter (metadata and all); the answer is in the first copy."""
    notebook = copy.deepcopy(notebook)
    index = next(i for i, c in enumerate(notebook.cells) if nbgrader_meta(c).get("grade_id") == WRITTEN)
    stub = copy.deepcopy(notebook.cells[index])
    stub.id = "copied-written-answer"
    notebook.cells[index].source = ANSWER
    notebook.cells.insert(index + 1, stub)
    return notebook


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    create_course(course, chapters=[ASSIGNMENT])
    nbgrader(course, "generate_assignment", ASSIGNMENT)
    release = course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    for student, notebook in submissions(release).items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / "timestamp.txt").write_text("2026-01-15 12:00:00.000000 UTC")
        write(notebook, folder / f"{ASSIGNMENT}.ipynb")
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "autograde", ASSIGNMENT, *LIMITS],
        cwd=course,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    nbgrader(course, "generate_feedback", ASSIGNMENT)
    return {"path": course, "run": run}


def results(course, student) -> dict:
    return json.loads((course["path"] / "autograded" / student / ASSIGNMENT / "results.json").read_text())


def scores(course, student) -> dict:
    tests = results(course, student)["tests"]
    return {f: sum(t["score"] for t in tests if t["name"].startswith(f"{f}:")) for f in FUNCTIONS}


def test_every_submission_gets_its_grade_row(course):
    run = course["run"]
    assert run.returncode == 0 and "could not grade 0" in run.stdout, run.stdout + run.stderr
    assert f"graded {len(ATTACKS) + 4}," in run.stdout


@pytest.mark.parametrize(
    "student, expected, says",
    [
        ("correct", POINTS, "passed"),
        ("forged_cell_errors", {**POINTS, "causal_mask": 0}, "sent back something that is not a reply"),
        ("forged_huge_errors", NONE, "EEEE"),
        ("huge_cell_error", {**POINTS, "causal_mask": 0}, "running the notebook gave: ValueError: VVVV"),
        ("overflowing_shape", NONE, "is not one torch can hold"),
    ],
)
def test_a_forged_reply_costs_the_submission_its_points_with_a_message(course, student, expected, says):
    assert scores(course, student) == pytest.approx(expected)
    assert any(says in t["output"] for t in results(course, student)["tests"])


@pytest.mark.parametrize("student", ["forged_huge_errors", "huge_cell_error"])
def test_huge_learner_texts_are_capped_in_every_report(course, student):
    folder = course["path"] / "autograded" / student / ASSIGNMENT
    assert (folder / "results.json").stat().st_size < 200_000
    assert (folder / f"{ASSIGNMENT}.ipynb").stat().st_size < 1_000_000
    feedback = course["path"] / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
    assert feedback.stat().st_size < 2_000_000


def test_the_private_seed_is_nowhere_a_submission_can_read(course):
    """Not in its environment, not in any process's it can see, not in the course's config:
    what its code found comes back in its failure message, which holds no seed."""
    seed = re.search(r'"AUTOGRADER_SEED", "(\d+)"', (course["path"] / "nbgrader_config.py").read_text()).group(1)
    outputs = " ".join(t["output"] for t in results(course, "seed_hunt")["tests"])
    assert "HUNTED" in outputs and "PATH=/usr/bin:/bin" in outputs  # the hunt ran and reported
    assert seed not in outputs
    assert scores(course, "seed_hunt") == pytest.approx({**POINTS, "causal_mask": 0})


def test_a_written_answer_in_a_copied_cell_reaches_formgrader(course):
    student = "written_answer_in_a_copied_cell"
    assert scores(course, student) == pytest.approx(POINTS)
    with Gradebook(f"sqlite:///{course['path'] / 'gradebook.db'}") as gradebook:
        grade = gradebook.find_grade(WRITTEN, ASSIGNMENT, ASSIGNMENT, student)
        assert grade.auto_score is None and grade.needs_manual_grade
    autograded = nbformat.read(course["path"] / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4)
    answer = [c for c in autograded.cells if nbgrader_meta(c).get("grade_id") == WRITTEN]
    assert [c.source for c in answer] == [ANSWER]  # the one cell formgrader shows for the grade
    feedback = course["path"] / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
    assert ANSWER in feedback.read_text()


def test_a_large_written_answer_with_html_is_kept_verbatim_for_manual_grading(course):
    student = "html_written_answer"
    assert scores(course, student) == pytest.approx(POINTS)
    with Gradebook(f"sqlite:///{course['path'] / 'gradebook.db'}") as gradebook:
        assert gradebook.find_grade(WRITTEN, ASSIGNMENT, ASSIGNMENT, student).needs_manual_grade
        assert gradebook.find_grade("softmax_check", ASSIGNMENT, ASSIGNMENT, "correct").auto_score == 3
    autograded = nbformat.read(course["path"] / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4)
    assert [c.source for c in autograded.cells if nbgrader_meta(c).get("grade_id") == WRITTEN] == [HTML_ANSWER]


SPINNERS = """
import os
for _ in range(8):
    if os.fork() == 0:
        os.setsid()  # a session of its own: the scheduler's autogroup would give each its share
        while True:
            pass
"""


def _host_has_a_cpu_controller() -> bool:
    v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cgroup.controllers")
    return os.access(v1, os.W_OK) or (v2.exists() and "cpu" in v2.read_text().split())


@pytest.mark.skipif(not _host_has_a_cpu_controller(), reason="no writable cgroup cpu controller here")
def test_spinning_processes_share_one_core_not_the_machine():
    """Each spinner in a session of its own would get its own share of the machine (the
    scheduler's autogroups); in the sandbox's cpu group they share one core."""
    with Sandbox(Limits(call_seconds=15, setup_seconds=30)) as sandbox:
        assert sandbox.run_cells([SPINNERS + "import os\nme = os.getpid()"]) == [None]
        cpu = [f for f in sandbox.group.folders if (f / "cpu.max").exists() or (f / "cpu.cfs_quota_us").exists()]
        assert len(cpu) == 1, sandbox.group.folders
        assert len((cpu[0] / "cgroup.procs").read_text().split()) == 9  # the child and its 8 spinners
        if (cpu[0] / "cpu.max").exists():
            assert (cpu[0] / "cpu.max").read_text().split() == ["100000", "100000"]
        else:
            assert (cpu[0] / "cpu.cfs_quota_us").read_text().strip() == (
                cpu[0] / "cpu.cfs_period_us"
            ).read_text().strip()


def test_a_notebook_that_ends_its_sandbox_gets_a_leaderboard_note_not_a_crash():
    """Gradescope's run (autograder/gradescope.py) writes results.json after the leaderboard:
    a submission whose cells end the sandbox must still get its results."""
    board = leaderboard("06_pretraining", ["import os\nos._exit(3)"])
    assert board.entries == [] and "ended the grading process" in board.note
