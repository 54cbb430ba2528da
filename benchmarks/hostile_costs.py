"""Benchmark (not a test): how many seconds of a grading worker one hostile submission costs
under ``python -m autograder autograde`` with its default limits (60 s per call, 60 s for
running the cells, per-function budgets of 10x the reference + 10 s, and one notebook budget
that the cells, every restart and every check share: the larger of the cells' limit and the
functions' budgets plus 20 s, 60 s for chapter 2; the run's first line says it).

    .venv/bin/python benchmarks/hostile_costs.py [--chapter 02_attention]

One submission of each kind, graded in one run of the command: a correct one (for scale), an
infinite loop in every graded function, an infinite loop at the top of the notebook, code that
sleeps just under the per-call limit in every call, a top-level cell that sleeps just under the
cells' limit with every function ending the sandbox (each restart runs the cells again), a
memory bomb spread over three processes in every call, a notebook whose metadata is 4.3 MiB of
empty JSON objects, a notebook that is a directory, a FIFO.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from autograder.chapters import BY_NAME  # noqa: E402
from autograder.course import create_course  # noqa: E402
from notebooks import filled_notebook, write  # noqa: E402

BIN = Path(sys.executable).parent
PER_STUDENT = re.compile(r"\] (?P<student>\S+): .* \((?P<seconds>[\d.]+) s\)")  # the run's line per submission
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # nbgrader runs `alembic`


def kinds(release: Path, chapter: str) -> dict:
    """student -> a notebook, or a function that puts something odd at the notebook's path."""
    names = BY_NAME[chapter].graded_names
    alternative = (ROOT / "tests" / "alternatives" / f"{BY_NAME[chapter].topic}.py").read_text()
    correct = filled_notebook(release, {"*": alternative})
    loops = {name: f"def {name}(*args, **kwargs):\n    while True:\n        pass" for name in names}
    sleeps = {name: f"import time\n\ndef {name}(*args, **kwargs):\n    time.sleep(59)" for name in names}
    # Three processes, each asking for far more than the sandbox's memory (all its processes together).
    bombs = {
        name: f"import os\n\ndef {name}(*args, **kwargs):\n    for _ in range(2):\n        if os.fork() == 0:\n"
        "            break\n    hog = [b'x' * (1 << 30) for _ in range(64)]"
        for name in names
    }
    top_loop = filled_notebook(release, {"*": alternative + "\n\nwhile True:\n    pass"})
    ends = {name: f"import os\n\ndef {name}(*args, **kwargs):\n    os._exit(1)" for name in names}
    top_sleep = filled_notebook(release, {"*": "import time\n\ntime.sleep(59)\n\n" + "\n\n".join(ends.values())})
    bomb = filled_notebook(release, {"*": alternative})
    bomb.metadata["widgets"] = {"state": [{} for _ in range(560_000)]}  # tiny objects: 4.3 MiB as nbformat saves it
    return {
        "correct": correct,
        "infinite_loop_in_functions": filled_notebook(release, loops),
        "infinite_loop_at_top": top_loop,
        "slow_just_under_the_call_limit": filled_notebook(release, sleeps),
        "top_level_sleep_and_restarts": top_sleep,
        "memory_bomb_in_three_processes": filled_notebook(release, bombs),
        "metadata_of_tiny_objects": bomb,
        "directory": lambda path: path.mkdir(),
        "fifo": os.mkfifo,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapter", default="02_attention", choices=sorted(BY_NAME))
    args = parser.parse_args()
    course = Path(tempfile.mkdtemp(prefix="hostile-costs-"))
    try:
        create_course(course, chapters=[args.chapter])
        subprocess.run(
            [BIN / "nbgrader", "generate_assignment", args.chapter],
            cwd=course,
            env=ENV,
            check=True,
            capture_output=True,
        )
        release = course / "release" / args.chapter / f"{args.chapter}.ipynb"
        for student, notebook in kinds(release, args.chapter).items():
            folder = course / "submitted" / student / args.chapter
            folder.mkdir(parents=True)
            (notebook if callable(notebook) else lambda path: write(notebook, path))(folder / f"{args.chapter}.ipynb")
        print(f"{args.chapter}: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}", flush=True)
        run = subprocess.run(
            [sys.executable, "-m", "autograder", "autograde", args.chapter, "--workers", "2"],
            cwd=course,
            env=ENV,
            capture_output=True,
            text=True,
        )
        seconds = {m["student"]: float(m["seconds"]) for m in PER_STUDENT.finditer(run.stdout)}
        print("worker seconds per submission:")
        for student, taken in sorted(seconds.items(), key=lambda item: item[1]):
            print(f"  {student:32s} {taken:6.1f} s")
        print("\n".join(line for line in run.stdout.splitlines()[1:] if not line.startswith("  ")) or run.stderr)
    finally:
        shutil.rmtree(course)


if __name__ == "__main__":
    main()
