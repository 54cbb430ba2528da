"""Seed sweep (not a test): grade every answer of the corpus (``tests/corpus/<topic>.py``) at
many grading seeds and report each seed where a bug escapes or an alternative loses points.

    .venv/bin/python benchmarks/seed_sweep.py [--seeds 200] [--topic attention ...] [--jobs 2]

Each answer is put into its chapter's released notebook; the notebook's code cells run once,
in a fresh forked process (the grade-cell path, see ``tests/grade_paths.py``), then the answer's
suite runs at seeds 0 .. N-1. A bug *escapes* at a seed where it gets full marks, where a
sub-check of its ``fails`` passes, or where no failure message carries its diagnosis
(``says``). Prints, per topic, every such seed, then the totals and the time taken; exits 1
when anything escaped.
"""

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
from corpus import Entry, entries  # noqa: E402
from grade_paths import cells_of, entry_answers, in_child, run_like_a_kernel, write_submission  # noqa: E402

from autograder.chapters import BY_TOPIC, CHAPTERS  # noqa: E402
from autograder.checks import suites  # noqa: E402
from autograder.grading import quiet  # noqa: E402
from autograder.student import KernelBackend, Student  # noqa: E402


def problems(entry: Entry, results) -> str | None:
    """Why this verdict is wrong for ``entry`` (None when it is right), as ``tests/test_corpus.py``
    judges it: advice sub-checks (0 points) never count as points lost; an advised answer must
    show exactly the advice its entry names, one of them saying ``says``."""
    failed = {r.check: r.message for r in results if not r.passed and not r.advice}
    shown = {r.check: r.message for r in results if not r.passed and r.advice}
    if not entry.bug:
        if failed:
            return f"lost points: {failed}"
        if set(shown) != set(entry.advice):
            return f"advice shown {sorted(shown)}, expected {list(entry.advice)}"
        if entry.says and not any(entry.says in message for message in shown.values()):
            return f"no advice says {entry.says!r}: {shown}"
        return None
    if not failed:
        return "full marks"
    passed = [check for check in entry.fails if check not in failed]
    if passed:
        return f"passed {passed}"
    if entry.says and not any(entry.says in message for message in failed.values()):
        return f"no message says {entry.says!r}: {failed}"
    return None


def sweep_entry(topic: str, entry: Entry, cells: list[str], seeds: int) -> list[tuple[int, str]]:
    """[(seed, problem)] of one answer; runs in a forked child (see :func:`grade_paths.in_child`)."""
    torch.set_num_threads(1)
    namespace = run_like_a_kernel(cells)
    if entry.name not in namespace:
        return [(-1, f"{entry.name} is not defined after running the notebook")]
    suite, found = suites(topic)[entry.name], []
    for seed in range(seeds):
        with quiet():
            results = suite.run(Student(KernelBackend({entry.name: namespace[entry.name]}), entry.name), seed)
        problem = problems(entry, results)
        if problem:
            found.append((seed, problem))
    return found


def sweep(job):
    topic, index, seeds, folder = job
    chapter, entry = BY_TOPIC[topic], entries(topic)[index]
    cells = cells_of(write_submission(chapter, entry_answers(chapter, entry), Path(folder) / f"{topic}_{index}.ipynb"))
    start = time.perf_counter()
    found = in_child(sweep_entry, topic, entry, cells, seeds, timeout=3600)
    return topic, index, found, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument(
        "--topic",
        action="append",
        choices=[c.topic for c in CHAPTERS],
        help="a chapter topic (repeatable); default: every topic with a corpus",
    )
    parser.add_argument("--jobs", type=int, default=1, help="answers swept in parallel")
    args = parser.parse_args()
    topics = args.topic or [c.topic for c in CHAPTERS if entries(c.topic)]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        jobs = [(topic, i, args.seeds, folder) for topic in topics for i in range(len(entries(topic)))]
        outcomes = []
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            for topic, index, found, seconds in pool.imap_unordered(sweep, jobs, chunksize=1):
                outcomes.append((topic, index, found, seconds))
                print(
                    f"  [{len(outcomes)}/{len(jobs)}] {topic} / {entries(topic)[index].label}: "
                    f"{len(found)} seeds with a wrong verdict, {seconds:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    escaped = 0
    for topic in topics:
        mine = [o for o in outcomes if o[0] == topic]
        bad = [(entries(topic)[index], found) for _, index, found, _ in mine if found]
        seconds = sum(o[3] for o in mine)
        print(f"{topic}: {len(mine)} answers x {args.seeds} seeds, {len(bad)} with a wrong verdict ({seconds:.0f} s)")
        for entry, found in bad:
            kind = "bug" if entry.bug else "alternative"
            seeds = [seed for seed, _ in found]
            print(
                f"  {kind} {entry.name} / {entry.label}: at {len(seeds)} seeds {seeds[:20]}; first: {found[0][1][:300]}"
            )
        escaped += len(bad)
    answers = len(outcomes)
    print(
        f"total: {answers} answers, {answers * args.seeds} gradings, {escaped} answers with a wrong verdict at "
        f"some seed, {time.perf_counter() - start:.0f} s"
    )
    sys.exit(1 if escaped else 0)


if __name__ == "__main__":
    main()
