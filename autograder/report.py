"""The instructor's report on one assignment: ``python -m autograder report ASSIGNMENT``, run
in an nbgrader course directory after ``python -m autograder autograde``, writes
``reports/ASSIGNMENT.html``, one static page (figures embedded as PNG data, nothing fetched):

- the distribution of total scores (the gradebook's, manual grades included);
- the failure rate of every sub-check, the finest grain the grader knows;
- the most frequent diagnoses, with counts (numbers in messages are masked, so the same
  mistake on different inputs counts once);
- the submissions that were not graded, and why;
- the slowest submissions.

It reads the gradebook (nbgrader's API) and each ``autograded/<student>/<assignment>/results.json``.
"""

from __future__ import annotations

import base64
import glob
import html
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from autograder.batch import course_directory

NUMBER = re.compile(r"-?\d+(\.\d+)?(e-?\d+)?")
PROBLEMS = ("was not submitted", "could not be graded", "not a notebook", "cannot read it", "too large to grade")


class ReportError(Exception):
    """The report cannot be written (no gradebook, no such assignment); the message says why."""


@dataclass
class TestOutcome:
    function: str
    check: str
    score: float
    max_score: float
    passed: bool
    output: str


@dataclass
class SubmissionOutcome:
    student: str
    score: float | None  # the gradebook's total (None: not in the gradebook)
    max_score: float
    seconds: float | None  # grading time, when results.json records it
    tests: list[TestOutcome] = field(default_factory=list)
    problem: str | None = None  # why it was not graded, or graded 0 without running the checks


@dataclass
class ClassReport:
    assignment: str
    submissions: list[SubmissionOutcome]

    @property
    def graded(self) -> list[SubmissionOutcome]:
        return [s for s in self.submissions if s.problem is None]

    def failure_rates(self) -> list[tuple[str, str, int, int]]:
        """(function, check, failures, attempts) of every sub-check, in the order they run."""
        counts: dict[tuple[str, str], list[int]] = {}
        for submission in self.graded:
            for test in submission.tests:
                tally = counts.setdefault((test.function, test.check), [0, 0])
                tally[0] += not test.passed
                tally[1] += 1
        return [(function, check, failed, total) for (function, check), (failed, total) in counts.items()]

    def diagnoses(self, top: int = 15) -> list[tuple[str, int]]:
        """The failure messages most submissions received (each counted once per submission)."""
        messages = Counter(
            message
            for s in self.graded
            for message in {NUMBER.sub("#", test.output) for test in s.tests if not test.passed}
        )
        return messages.most_common(top)

    def slowest(self, top: int = 10) -> list[SubmissionOutcome]:
        timed = [s for s in self.submissions if s.seconds is not None]
        return sorted(timed, key=lambda s: -s.seconds)[:top]


def read_report(course: Path, assignment: str) -> ClassReport:
    coursedir, _ = course_directory(Path(course).resolve())
    if not Path(coursedir.db_url.removeprefix("sqlite:///")).exists():
        raise ReportError(f"no gradebook in {course}; run `nbgrader generate_assignment {assignment}` first")
    submitted = sorted(
        Path(p).parent.name
        for p in glob.glob(coursedir.format_path(coursedir.submitted_directory, "*", assignment) + "/")
    )
    outcomes = []
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        try:
            max_score = gradebook.find_assignment(assignment).max_score
        except MissingEntry:
            raise ReportError(f"the gradebook has no assignment {assignment!r}") from None
        scores = {row["student"]: row["score"] for row in gradebook.submission_dicts(assignment)}
    for student in submitted:
        folder = Path(coursedir.format_path(coursedir.autograded_directory, student, assignment))
        outcomes.append(_outcome(student, scores.get(student), max_score, folder / "results.json"))
    return ClassReport(assignment, outcomes)


def _outcome(student: str, score, max_score: float, path: Path) -> SubmissionOutcome:
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return SubmissionOutcome(
            student,
            score,
            max_score,
            None,
            problem="not graded: no results.json (the batch "
            "stopped or could not grade it; `python -m autograder autograde` says why)",
        )
    tests = [_test(t) for t in results.get("tests", [])]
    seconds = results.get("execution_time")
    problem = None
    scored = [t for t in tests if t.max_score > 0]  # advice (0 of 0 points) reads as passed: it says nothing here
    if scored and all(not t.passed and any(p in t.output for p in PROBLEMS) for t in scored):
        problem = f"graded 0 without running the checks: {scored[0].output}"
    return SubmissionOutcome(student, score, max_score, seconds, tests, problem)


def _test(entry: dict) -> TestOutcome:
    function, _, check = entry["name"].partition(": ")
    return TestOutcome(
        entry.get("function", function),
        entry.get("check", check),
        float(entry["score"]),
        float(entry["max_score"]),
        entry.get("status", "passed" if entry["score"] >= entry["max_score"] else "failed") == "passed",
        str(entry.get("output", "")),
    )


# ---------------------------------------------------------------------------------------
# The page


def write_report(course: Path, assignment: str) -> Path:
    report = read_report(course, assignment)
    target = Path(course) / "reports" / f"{assignment}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(report))
    return target


def render(report: ClassReport) -> str:
    graded = report.graded
    scores = [s.score for s in graded if s.score is not None]
    max_score = report.submissions[0].max_score if report.submissions else 1.0
    rates = report.failure_rates()
    summary = f"{len(report.submissions)} submissions, {len(graded)} graded"
    if scores:
        summary += f"; mean score {sum(scores) / len(scores):.2f} of {max_score:g}"
    not_graded = [[s.student, s.problem] for s in report.submissions if s.problem]
    slowest = [[s.student, f"{s.seconds:.1f}", "" if s.score is None else f"{s.score:g}"] for s in report.slowest()]
    parts = [
        f"<h1>{html.escape(report.assignment)}: the class's results</h1><p>{summary}.</p>",
        "<h2>Score distribution</h2>",
        _figure(_histogram(scores, max_score), "histogram of total scores"),
        "<h2>Failure rate of every sub-check</h2>",
        _figure(_failure_chart(rates), "failure rate per sub-check"),
        _table(
            "failures",
            ["function", "sub-check", "failed", "of", "failure rate"],
            [[f, c, failed, total, f"{failed / total:.0%}"] for f, c, failed, total in rates],
        ),
        "<h2>Most frequent diagnoses</h2>",
        _table(
            "diagnoses",
            ["submissions", "message (numbers masked as #)"],
            [[count, message] for message, count in report.diagnoses()],
        ),
        "<h2>Submissions not graded</h2>",
        _table("not-graded", ["student", "why"], not_graded),
        "<h2>Slowest submissions</h2>",
        _table("slowest", ["student", "seconds", "score"], slowest),
    ]
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}img{max-width:100%}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(report.assignment)} report</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def _table(name: str, header: list[str], rows: list[list]) -> str:
    if not rows:
        return f"<p id='{name}'>None.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table id='{name}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(png: bytes, alt: str) -> str:
    return f"<img alt='{alt}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _histogram(scores: list[float], max_score: float) -> bytes:
    figure, axes = _axes()
    axes.hist(scores, bins=min(20, max(int(max_score), 1)), range=(0, max_score), color="#4c72b0")
    axes.set_xlabel("total score")
    axes.set_ylabel("submissions")
    return _png(figure)


def _failure_chart(rates) -> bytes:
    figure, axes = _axes(height=max(2.5, 0.3 * len(rates)))
    labels = [f"{function}: {check}" for function, check, _, _ in rates]
    axes.barh(labels[::-1], [100 * failed / total for _, _, failed, total in rates][::-1], color="#c44e52")
    axes.set_xlabel("submissions failing it (%)")
    axes.set_xlim(0, 100)
    return _png(figure)


def _axes(height: float = 3.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(8, height), layout="constrained")


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()
