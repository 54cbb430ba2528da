"""Benchmark (not a test): how many seconds of a grading worker one hostile submission costs.

    .venv/bin/python benchmarks/hostile_submissions.py [--call-seconds 60] [--memory-mb 6144]

Each submission is chapter 2's correct alternative with ``softmax`` replaced by an attack:
an infinite loop, and a memory bomb spread over three processes (each under the per-process
limit, together over the sandbox's). It is graded as ``python -m autograder autograde``
grades one notebook (sandbox under bubblewrap, default limits unless given), and the
script prints the wall-clock seconds and the score next to the honest submission's.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from autograder.grading import grade_cells, submission_cells  # noqa: E402
from autograder.sandbox import Limits  # noqa: E402
from notebooks import CHAPTERS, filled_notebook  # noqa: E402

ATTENTION = next(p for p in CHAPTERS if p.stem == "02_attention")
HONEST = (ROOT / "tests" / "alternatives" / "attention.py").read_text()
ATTACKS = {
    "honest": "",
    "infinite loop": "def softmax(x, dim=-1):\n    while True:\n        pass\n",
    "memory bomb (3 processes)": "import os\ndef softmax(x, dim=-1):\n    for _ in range(2):\n"
    "        if os.fork() == 0:\n            break\n"
    "    hog = [b'x' * (1 << 30) for _ in range(64)]\n    return x\n",
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--call-seconds", type=float, default=Limits.call_seconds)
    parser.add_argument("--memory-mb", type=int, default=Limits.memory_bytes >> 20)
    args = parser.parse_args()
    limits = Limits(call_seconds=args.call_seconds, memory_bytes=args.memory_mb << 20)
    for label, attack in ATTACKS.items():
        cells = submission_cells(filled_notebook(ATTENTION, {"*": HONEST + "\n" + attack}))
        start = time.monotonic()
        results = grade_cells(cells, "02_attention", limits=limits)
        seconds = time.monotonic() - start
        lost = sorted({r.message for r in results if not r.passed})
        print(
            f"{label:28s} {seconds:6.1f} s  score {sum(r.score for r in results):g} / "
            f"{sum(r.max_score for r in results):g}  {lost[0][:110] if lost else ''}",
            flush=True,
        )


if __name__ == "__main__":
    main()
