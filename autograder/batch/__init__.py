"""Grading a whole class: ``python -m autograder autograde ASSIGNMENT`` in an nbgrader course.

It reads nbgrader's ``submitted/<student>/<assignment>/`` folders, grades every notebook in
sandboxes (:mod:`autograder.sandbox`; worker processes in parallel, each with a channel to
one fork server that imported torch once), and writes what ``nbgrader autograde`` writes,
through nbgrader's own API and preprocessors, so ``nbgrader formgrader``,
``generate_feedback`` and ``export`` work unchanged. One step, one module, as nbgrader's
preprocessors are, with a :class:`~autograder.batch.plan.Job` carrying the settings:

1. :mod:`~autograder.batch.plan`: the assignment's grade cells (from the gradebook) and who submitted;
2. :mod:`~autograder.batch.submission`: one submission's files, read safely;
3. :mod:`~autograder.batch.grade`: one submission graded (in a worker);
4. :mod:`~autograder.batch.record`: its grades and files recorded (in this process);
5. :mod:`~autograder.batch.workers`: the worker processes.

A submission that cannot be read (a notebook that is a directory, a FIFO, a symbolic link,
invalid JSON...) gets a "not graded: <reason>" row with zero scores; the others are graded.
A second run skips every submission that is complete (``results.json`` records a
fingerprint of the submitted files and the plan, and the gradebook holds a score for every
autograded cell); ``--force`` regrades. An interrupted run therefore resumes, and since
nbgrader's rows are unique per student and cell, no grade is ever duplicated.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from nbgrader.api import Gradebook

from autograder.batch.grade import Failure, Outcome
from autograder.batch.plan import BatchError, Job, course_directory, find_submissions, make_plan
from autograder.batch.record import is_done, record
from autograder.batch.submission import read_submission
from autograder.batch.workers import Workers
from autograder.chapters import BY_NAME
from autograder.grading import notebook_budget
from autograder.sandbox import ForkServer, Limits

__all__ = ["BatchError", "autograde"]
SLOWEST = 5  # how many of the slowest submissions the summary lists


def autograde(
    course: Path,
    assignment: str,
    students=None,
    workers: int | None = None,
    force: bool = False,
    seed: int | None = None,
    limits: Limits | None = None,
    server: ForkServer | None = None,
    out=sys.stdout,
    language: str | None = None,
) -> dict:
    """Grade every submission of ``assignment`` in the course at ``course``; returns a
    summary ``{"graded": [...], "skipped": [...], "not_graded": {student: why},
    "failed": {student: why}, "worker_seconds": {student: s}, "slowest": [(student, s)],
    "seconds"}``. ``not_graded``: recorded with zero scores (the submission cannot be read);
    ``failed``: not recorded (the grader's or the machine's fault), retried by the next run.
    ``server``: a fork server started early (it imports torch meanwhile); default: a new one.
    ``language``: the feedback's language for every notebook (default: each notebook's own)."""
    start = time.monotonic()
    own_server, server = server is None, server or ForkServer()
    try:
        job_limits = limits or Limits()
        return _autograde(course, assignment, students, workers, force, seed, job_limits, server, out, start, language)
    finally:
        if own_server:
            server.close()


def _autograde(course, assignment, students, workers, force, seed, limits, server, out, start, language) -> dict:
    coursedir, config = course_directory(Path(course).resolve())
    plan = make_plan(coursedir, config, assignment)
    release = Path(coursedir.format_path(coursedir.release_directory, ".", assignment))
    job = Job(plan, release, seed, limits, language)
    submitted = find_submissions(coursedir, assignment)
    if students:
        unknown = sorted(set(students) - set(submitted))
        if unknown:
            raise BatchError(f"no submission of {assignment} by {', '.join(unknown)}")
        submitted = {s: submitted[s] for s in students}

    def destination(student):
        return Path(coursedir.format_path(coursedir.autograded_directory, student, assignment))

    summary = {
        "graded": [],
        "skipped": [],
        "not_graded": {},
        "failed": {},
        "worker_seconds": {},
        "slowest": [],
        "seconds": 0.0,
    }
    tasks = []
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        for student, folder in submitted.items():
            current = read_submission(student, folder, plan.notebooks).fingerprint(job)
            if not force and is_done(gradebook, plan, student, destination(student), current):
                summary["skipped"].append(student)
            else:
                tasks.append((student, str(folder)))
    count = min(workers or _default_workers(), len(tasks)) or 1
    topic = BY_NAME[plan.chapter].topic
    budget = notebook_budget(topic, dict.fromkeys(plan.functions), limits) if tasks else None  # measured here once
    print(
        f"{assignment}: {len(tasks)} to grade, {len(summary['skipped'])} already graded "
        f"(chapter {plan.chapter}, {count} workers" + (f", {budget:.0f} s per notebook at most)" if budget else ")"),
        file=out,
        flush=True,
    )
    if tasks:
        pool = Workers(count, server, job)
        try:
            with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:

                def on_outcome(outcome: Outcome | Failure):
                    _note(
                        outcome,
                        summary,
                        len(tasks),
                        out,
                        lambda: record(gradebook, plan, outcome, destination(outcome.student)),
                    )

                pool.run(tasks, on_outcome)
        finally:
            pool.close()
    slowest = sorted(summary["worker_seconds"].items(), key=lambda item: -item[1])[:SLOWEST]
    summary["slowest"] = [(student, round(seconds, 1)) for student, seconds in slowest]
    if slowest:
        print("slowest: " + ", ".join(f"{s} {t:.1f} s" for s, t in summary["slowest"]), file=out, flush=True)
    summary["seconds"] = round(time.monotonic() - start, 2)
    return summary


def _note(outcome: Outcome | Failure, summary: dict, total: int, out, write):
    """Record one outcome with ``write`` and say so in ``summary`` and on ``out``."""
    student = outcome.student
    if isinstance(outcome, Failure):
        summary["failed"][student] = outcome.reason
        print(f"  {student}: NOT GRADED ({outcome.reason})", file=out, flush=True)
        return
    summary["worker_seconds"][student] = outcome.seconds
    try:
        write()
    except Exception as error:  # e.g. the gradebook is locked: retried on the next run
        summary["failed"][student] = f"could not record the grades ({type(error).__name__}: {error})"
        print(f"  {student}: NOT RECORDED ({error})", file=out, flush=True)
        return
    summary["graded"].append(student)
    if outcome.problem:
        summary["not_graded"][student] = outcome.problem
    tests = outcome.tests
    print(
        f"  [{len(summary['graded'])}/{total}] {student}: {sum(t['score'] for t in tests):g} / "
        f"{sum(t['max_score'] for t in tests):g} ({outcome.seconds:.1f} s)"
        + (f" not graded: {outcome.problem}" if outcome.problem else ""),
        file=out,
        flush=True,
    )


def _default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))
