"""Benchmark (not a test): how long a learner waits for ``python -m autograder grade`` on one
correct notebook, startup included, as they run it after every attempt.

    .venv/bin/python benchmarks/grade_latency.py [--chapter 02_attention] [--runs 5]

The notebook is the chapter's student release with its answer cells filled from the reference
(``solutions/<topic>.py``), written with ``nbformat.write``. The command runs from the course's
checkout, so it grades in the bubblewrap sandbox (where ``bwrap`` is installed) at the practice
seed. Each run must report full marks. Prints every wall time, their median, and the machine's
load average before and after: the times mean little on a busy machine, so quote the load with them
(the figure after counts this benchmark's own runs too: each keeps both of a 2-core machine's cores busy).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from autograder.chapters import BY_NAME  # noqa: E402
from notebooks import filled_notebook, write  # noqa: E402


def graded_seconds(notebook: Path) -> float:
    """Wall seconds of one ``grade --json`` run; exits when it fails or misses a point."""
    command = [sys.executable, "-m", "autograder", "grade", str(notebook), "--json"]
    start = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - start
    if done.returncode != 0 or '"passed": false' in done.stdout:
        sys.exit(f"{' '.join(command)} did not give full marks:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapter", default="02_attention", choices=list(BY_NAME))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    reference = (ROOT / "solutions" / f"{BY_NAME[args.chapter].topic}.py").read_text()
    with tempfile.TemporaryDirectory(prefix="grade-latency-") as folder:
        notebook = write(
            filled_notebook(ROOT / "chapters" / f"{args.chapter}.ipynb", {"*": reference}),
            Path(folder) / f"{args.chapter}.ipynb",
        )
        graded_seconds(notebook)  # a first run warms the page cache (and matplotlib's font list)
        times = [graded_seconds(notebook) for _ in range(args.runs)]
    print(f"{args.chapter}: " + " ".join(f"{t:.2f}" for t in times) + " s")
    print(f"median of {args.runs}: {statistics.median(times):.2f} s (load average {load:.2f} before, ", end="")
    print(f"{os.getloadavg()[0]:.2f} after; {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
