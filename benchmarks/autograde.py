"""Benchmark (not a test): grade one chapter's class with ``python -m autograder autograde``
and with plain ``nbgrader autograde``, in one run, on identical copies of a course.

    .venv/bin/python benchmarks/autograde.py [--students 50] [--chapter 02_attention] [--workers N]

Both commands run as an instructor would run them, from the shell, each timed from start to
end (startup included). The submissions cycle through correct, partly wrong and unanswered
notebooks; the script checks that both graders agree on every student's total, then prints
both times and their ratio.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from nbgrader.api import Gradebook  # noqa: E402

from autograder.course import create_course  # noqa: E402
from notebooks import filled_notebook, write  # noqa: E402

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # nbgrader runs `alembic`
ANSWERS = {  # chapter -> the kinds of submission a class hands in (grade_id -> answer cell source)
    "02_attention": [
        {"*": (ROOT / "tests" / "alternatives" / "attention.py").read_text()},
        {
            "*": (ROOT / "tests" / "alternatives" / "attention.py")
            .read_text()
            .replace(" * (1.0 / math.sqrt(q.shape[-1]))", "")
        },
        {},
    ],
}


def run(command, course: Path) -> float:
    start = time.monotonic()
    done = subprocess.run(command, cwd=course, env=ENV, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def totals(course: Path, assignment: str) -> dict:
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return {
            s.student.id: round(sum(g.auto_score or 0 for n in s.notebooks for g in n.grades), 4)
            for s in gradebook.find_assignment(assignment).submissions
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--chapter", default="02_attention", choices=sorted(ANSWERS))
    parser.add_argument("--workers", type=int, help="for python -m autograder autograde (default: one per core)")
    parser.add_argument("--keep", action="store_true", help="keep the two course directories")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="autograde-benchmark-"))
    ours, plain = folder / "ours", folder / "nbgrader"
    create_course(ours, chapters=[args.chapter])
    run([BIN / "nbgrader", "generate_assignment", args.chapter], ours)
    release = ours / "release" / args.chapter / f"{args.chapter}.ipynb"
    kinds = [filled_notebook(release, answers) for answers in ANSWERS[args.chapter]]
    for index in range(args.students):
        submitted = ours / "submitted" / f"student{index:03d}" / args.chapter
        submitted.mkdir(parents=True)
        write(kinds[index % len(kinds)], submitted / f"{args.chapter}.ipynb")
    shutil.copytree(ours, plain)
    (plain / "nbgrader_config.py").write_text((ours / "nbgrader_config.py").read_text().replace(str(ours), str(plain)))

    print(
        f"{args.students} submissions of {args.chapter}, {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    workers = ["--workers", str(args.workers)] if args.workers else []
    ours_seconds = run([sys.executable, "-m", "autograder", "autograde", args.chapter, *workers], ours)
    print(
        f"python -m autograder autograde: {ours_seconds:7.1f} s ({ours_seconds / args.students:.2f} s per submission)",
        flush=True,
    )
    plain_seconds = run([BIN / "nbgrader", "autograde", args.chapter], plain)
    print(
        f"nbgrader autograde:             {plain_seconds:7.1f} s "
        f"({plain_seconds / args.students:.2f} s per submission)",
        flush=True,
    )
    print(f"ratio: {plain_seconds / ours_seconds:.1f}x faster (load average now {os.getloadavg()[0]:.1f})")
    ours_totals, plain_totals = totals(ours, args.chapter), totals(plain, args.chapter)
    disagree = {s: (ours_totals.get(s), total) for s, total in plain_totals.items() if ours_totals.get(s) != total}
    print(
        "both graders agree on every total"
        if not disagree and len(ours_totals) == args.students
        else f"the graders disagree (ours, nbgrader): {disagree}"
    )
    if args.keep:
        print(f"courses kept in {folder}")
    else:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
