"""Benchmark (not a test): a class of 500 chapter-2 submissions graded with
``python -m autograder autograde``, as an instructor runs it.

    .venv/bin/python benchmarks/class_scale.py [--students 500] [--workers 2] [--hostile 0.02]

The class (``tests/classroom.py``) mixes correct answers written two ways, plausible bugs,
stubs and about 2% hostile notebooks (infinite loops, memory bombs, crashes). While the batch
runs, the script samples the resident memory of its processes every 0.2 s: the grader (the
main process, its workers and their fork servers, all running as this user) apart from the
sandboxes (learner code, running as their own uids). It prints throughput, peak memory, and
what the hostile submissions cost against ordinary ones.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from classroom import ASSIGNMENT, ENV, HOSTILE, make_class  # noqa: E402

LINE = re.compile(r"\] (\S+): ([\d.]+) / ([\d.]+) \(([\d.]+) s\)")
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree(root: int) -> list[int]:
    """``root`` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def resident(pids: list[int]) -> tuple[int, int]:
    """(bytes resident in processes of this user, bytes resident in the others: sandboxes)."""
    mine, others = 0, 0
    for pid in pids:
        try:
            rss = int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE
            uid = os.stat(f"/proc/{pid}").st_uid
        except (OSError, IndexError, ValueError):
            continue
        if uid == os.getuid():
            mine += rss
        else:
            others += rss
    return mine, others


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hostile", type=float, default=0.02, help="share of hostile submissions")
    parser.add_argument(
        "--limits",
        default="--call-seconds 10 --cell-seconds 20 --memory-mb 2048",
        help="limits passed to autograde (an instructor's choice; they bound what hostile ones cost)",
    )
    args = parser.parse_args()

    course = Path(tempfile.mkdtemp(prefix="class-scale-"))
    start = time.monotonic()
    roster = make_class(course, args.students, args.hostile)
    print(
        f"{args.students} submissions of {ASSIGNMENT} ({sum(k in HOSTILE for k in roster.values())} hostile) "
        f"written in {time.monotonic() - start:.0f} s; {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    command = [
        sys.executable,
        "-m",
        "autograder",
        "autograde",
        ASSIGNMENT,
        "--workers",
        str(args.workers),
        *args.limits.split(),
    ]
    start = time.monotonic()
    batch = subprocess.Popen(command, cwd=course, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = {"grader": 0, "sandboxes": 0, "total": 0}

    def sample():
        while batch.poll() is None:
            mine, others = resident(tree(batch.pid))
            peaks["grader"], peaks["sandboxes"] = max(peaks["grader"], mine), max(peaks["sandboxes"], others)
            peaks["total"] = max(peaks["total"], mine + others)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    seconds, scores = {}, {}
    for line in batch.stdout:
        if match := LINE.search(line):
            seconds[match[1]], scores[match[1]] = float(match[4]), float(match[2])
    errors = batch.stderr.read()
    batch.wait()
    wall = time.monotonic() - start
    sampler.join()

    hostile = {s: t for s, t in seconds.items() if roster[s] in HOSTILE}
    ordinary = {s: t for s, t in seconds.items() if roster[s] not in HOSTILE}
    print(
        f"autograde exit status {batch.returncode}; graded {len(seconds)} of {len(roster)}"
        + (f"; stderr: {errors.strip()[-500:]}" if errors.strip() else "")
    )
    print(
        f"wall time {wall:.0f} s: {len(seconds) / wall * 60:.1f} submissions per minute "
        f"({wall / max(len(seconds), 1):.2f} s each, {args.workers} workers), load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"peak resident memory: grader (main process, workers, fork servers) {peaks['grader'] / 2**20:.0f} MiB, "
        f"sandboxes {peaks['sandboxes'] / 2**20:.0f} MiB, together {peaks['total'] / 2**20:.0f} MiB"
    )
    if ordinary:
        print(
            f"ordinary submissions: {len(ordinary)}, median {statistics.median(ordinary.values()):.2f} s, "
            f"sum {sum(ordinary.values()):.0f} s of worker time"
        )
    if hostile:
        print(
            f"hostile submissions: {len(hostile)} ({len(hostile) / len(seconds):.1%}), "
            f"sum {sum(hostile.values()):.0f} s of worker time "
            f"({sum(hostile.values()) / sum(seconds.values()):.0%} of all worker time):"
        )
        for student, spent in sorted(hostile.items(), key=lambda item: -item[1]):
            print(f"  {student} {roster[student]:26s} {spent:6.1f} s, scored {scores[student]:g}")
    print(f"course kept in {course}")


if __name__ == "__main__":
    main()
