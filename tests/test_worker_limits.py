"""Workers that no submission can starve, with the real `python -m autograder autograde` on a
real nbgrader course: a notebook whose metadata is a few MiB of tiny JSON objects is refused
in seconds with a "not graded" row; a sandbox the kernel kills while the machine (here: a
memory-capped control group around the whole grader) is short of memory is graded again and
never recorded as the learner's fault; a top-level cell that sleeps just under the cells'
limit costs one notebook budget, not one per sandbox restart; sandboxes keep the kernel's
default OOM score; a worker has a memory group of its own, beside its sandboxes' groups."""

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from classroom import ASSIGNMENT, CORRECT, ENV, make_course, submit

from autograder import cgroups
from autograder.batch.capped import Exceeded, run_capped
from autograder.sandbox import Limits, Sandbox
from notebooks import filled_notebook, write

pytestmark = pytest.mark.xdist_group("worker_limits")  # one course, several runs of the command

FUNCTIONS = ("softmax", "scaled_dot_product_attention", "causal_mask")
HOG = {  # correct, but softmax first fills 1.2 GB: a third of its own 4 GiB cap
    **CORRECT,
    "softmax": "hoard = []\n\n"
    + CORRECT["softmax"].replace("    e = ", "    hoard[:] = [b'x' * (64 << 20) for _ in range(19)]\n    e = "),
}
SLEEPER_CELL_SECONDS = 20
SLEEPER = {  # a top-level cell sleeping just under the cells' limit, and functions that end the sandbox
    **{name: f"import os\n\ndef {name}(*args, **kwargs):\n    os._exit(1)" for name in FUNCTIONS},
    "causal_mask": f"import os, time\n\ntime.sleep({SLEEPER_CELL_SECONDS - 1})\n\n"
    "def causal_mask(*args, **kwargs):\n    os._exit(1)",
}


def metadata_bomb(notebook, objects=560_000):
    """The notebook with 4.3 MiB of empty JSON objects in its metadata, saved by nbformat:
    valid JSON, a valid notebook."""
    notebook.metadata["widgets"] = {"state": [{} for _ in range(objects)]}
    return notebook


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    release = make_course(course)
    submit(course, release, "correct", "correct")
    for student, answers, change in [
        ("metadata_bomb", CORRECT, metadata_bomb),
        ("hog", HOG, None),
        ("sleeper", SLEEPER, None),
    ]:
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        notebook = filled_notebook(release, answers)
        write(change(notebook) if change else notebook, folder / f"{ASSIGNMENT}.ipynb")
    return course


def autograde(course: Path, *args, prefix=(), **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "autograder", "autograde", ASSIGNMENT, "--force", "--memory-mb", "4096", *args]
    return subprocess.run(
        [*prefix, *command], cwd=course, env=ENV, capture_output=True, text=True, timeout=600, **kwargs
    )


def results(course: Path, student: str) -> dict:
    return json.loads((course / "autograded" / student / ASSIGNMENT / "results.json").read_text())


def scores(course: Path, student: str) -> dict:
    tests = results(course, student)["tests"]
    return {f: sum(t["score"] for t in tests if t["name"].startswith(f"{f}:")) for f in FUNCTIONS}


def test_a_notebook_of_a_million_tiny_objects_is_refused_and_the_class_is_graded(course):
    """4.3 MiB of metadata took a worker 40 s and 1.2 GB to parse, copy and write back (and
    it scored 14/14); it is refused after counting its objects."""
    assert (course / "submitted" / "metadata_bomb" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").stat().st_size > 4 << 20
    run = autograde(course, "--student", "metadata_bomb", "--student", "correct")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "recorded as not graded, with 0 points: metadata_bomb" in run.stdout
    bomb = results(course, "metadata_bomb")
    assert "too many JSON objects and lists" in bomb["output"] and "'metadata'" in bomb["output"]
    assert bomb["score"] == 0 and all("not graded: " in t["output"] for t in bomb["tests"])
    assert results(course, "correct")["score"] == 14


def test_reading_a_notebook_is_capped_in_memory_and_time():
    """What the worker reads a notebook with: a forked child with an address-space cap and a clock."""
    assert run_capped(sum, [1, 2, 3]) == 6
    with pytest.raises(Exceeded, match="more memory than the grader allows"):
        run_capped(bytearray, 600 << 20, memory_bytes=256 << 20)
    start = time.monotonic()
    with pytest.raises(Exceeded, match=r"longer than the grader allows \(1 s\)"):
        run_capped(time.sleep, 30, seconds=1)
    assert time.monotonic() - start < 10


@pytest.fixture
def capped_group():
    """A memory control group of 1.5 GiB for the whole grader (its main process, fork server,
    workers and sandboxes): a machine with little memory left."""
    if cgroups.available() != "v1":
        pytest.skip("needs a writable cgroup v1 memory controller (this machine's kind)")
    folder = cgroups._parents()[1][0] / f"test-short-of-memory-{os.getpid()}"
    folder.mkdir()
    (folder / "memory.limit_in_bytes").write_text(str(3 << 29))
    try:
        yield folder
    finally:
        for _ in range(100):
            for inner in folder.iterdir():
                if inner.is_dir():
                    inner.rmdir()
            try:
                folder.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def test_a_sandbox_killed_while_the_machine_is_short_of_memory_is_not_the_learners_fault(course, capped_group):
    """The hog's sandbox stays under its own 4 GiB, but the grader's group runs out: the
    kernel kills the hog's sandbox, which is graded again and, killed again, recorded
    nowhere (the next run grades it), never as "used more memory than the sandbox allows".
    The worker's group is beside its sandboxes' groups, not above them."""
    seen, done = set(), threading.Event()

    def watch():
        while not done.is_set():
            for inner in capped_group.rglob("autograder-*"):
                seen.add(str(inner.relative_to(capped_group)))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run = autograde(
            course,
            "--student",
            "hog",
            "--student",
            "correct",
            "--workers",
            "1",
            prefix=["sh", "-c", f'echo $$ > {capped_group / "cgroup.procs"} && exec "$@"', "sh"],
        )
    finally:
        done.set()
        watcher.join()
    assert int((capped_group / "memory.failcnt").read_text()) > 0, "the grader's group never ran short"
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.search(r"not graded: hog: the machine ran short of memory .* grade it again", run.stderr), run.stderr
    assert not (course / "autograded" / "hog" / ASSIGNMENT / "results.json").exists()
    assert scores(course, "correct") == {"softmax": 3, "scaled_dot_product_attention": 9, "causal_mask": 2}
    workers = {s for s in seen if s.startswith("autograder-worker-")}
    assert workers and all("/" not in s for s in seen), seen  # every group a sibling of the others
    assert len(seen) > len(workers)  # the sandboxes' groups


def test_a_sleeping_top_level_cell_costs_one_notebook_budget_not_one_per_restart(course):
    """Every function ends the sandbox, and each restart runs the cells again: each run
    would sleep another 19 s. The restarts share the notebook's one budget."""
    run = autograde(course, "--student", "sleeper", "--cell-seconds", str(SLEEPER_CELL_SECONDS))
    assert run.returncode == 0, run.stdout + run.stderr
    budget = float(re.search(r"([\d.]+) s per notebook at most", run.stdout).group(1))
    seconds = float(re.search(r"sleeper: [\d.]+ / 14 \(([\d.]+) s\)", run.stdout).group(1))
    print(f"notebook budget {budget:g} s, the sleeper took {seconds:g} s")
    assert seconds <= budget + 10
    tests = results(course, "sleeper")["tests"]
    assert all("ended the grading process" in t["output"] for t in tests if t["name"].startswith("softmax:"))
    spent = f"grading this notebook took longer than {budget:.0f} s in total"
    assert all(spent in t["output"] for t in tests if t["name"].startswith("causal_mask:")), tests


def test_sandboxes_keep_the_kernels_default_oom_score():
    """Out of memory, the kernel chooses by size alone: a sandbox is not marked to die first."""
    with Sandbox(Limits(call_seconds=30, setup_seconds=60)) as sandbox:
        assert sandbox.run_cells(["adjustment = open('/proc/self/oom_score_adj').read().strip()"]) == [None]
        assert sandbox.request({"op": "value", "name": "adjustment", "target": ("adjustment", [])}) == "0"
