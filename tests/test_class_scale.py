"""A class of 12 chapter-2 submissions (two hostile) in a real nbgrader course, graded with
`python -m autograder autograde`: a forced regrade killed with SIGKILL halfway loses and
duplicates nothing once rerun; the instructor's report renders in headless Chromium; the
Canvas export (the real `nbgrader export` with our exporter) carries manual grades."""

import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from classroom import ASSIGNMENT, ENV, make_class, nbgrader, submit
from nbgrader.api import Gradebook

from notebooks import nbgrader_meta, sub_check_count, write

pytestmark = pytest.mark.xdist_group("class_scale")
LIMITS = ["--call-seconds", "6", "--cell-seconds", "8", "--notebook-seconds", "120", "--memory-mb", "2048"]
WRITER = "student000"  # answers the written question: it waits for a manual grade
RESUBMITTED = {"student001": "stub", "student002": "correct", "student004": "all_bugs", "student011": "bug_softmax"}


def autograde(course: Path, *args):
    return subprocess.run(
        [sys.executable, "-m", "autograder", "autograde", ASSIGNMENT, "--workers", "2", *LIMITS, *args],
        cwd=course,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )


def state(course: Path) -> dict:
    """Everything a grade lives in: gradebook rows and scores, autograded files, results.json."""
    connection = sqlite3.connect(course / "gradebook.db")
    rows = {
        table: connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in ("student", "submitted_assignment", "submitted_notebook", "grade", "comment")
    }
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {
            s.student.id: {g.name: g.auto_score for n in s.notebooks for g in n.grades}
            for s in gradebook.find_assignment(ASSIGNMENT).submissions
        }
    files = sorted(str(p.relative_to(course)) for p in (course / "autograded").rglob("*") if p.is_file())
    results = {
        p.parent.parent.name: json.loads(p.read_text()) for p in (course / "autograded").glob("*/*/results.json")
    }
    return {"rows": rows, "scores": scores, "files": files, "results": results}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("class")
    roster = make_class(course, 12, hostile_share=0.2)
    notebook_path = course / "submitted" / WRITER / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        if nbgrader_meta(cell).get("grade_id") == "written_parallel_and_expensive":
            cell.source = "All scores are independent dot products: one matrix product; N^2 of them."
    write(notebook, notebook_path)
    run = autograde(course)
    assert run.returncode == 0, run.stdout + run.stderr
    return {"path": course, "roster": roster, "first": state(course)}


def test_a_killed_forced_regrade_resumes_without_losing_or_duplicating(course):
    path, roster = course["path"], course["roster"]
    release = path / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    by_kind = {kind: course["first"]["scores"][student] for student, kind in roster.items()}
    for student, kind in RESUBMITTED.items():  # resubmissions: the regrade has something to change
        submit(path, release, student, kind, when="2026-01-16 12:00:00.000000 UTC")
    run = subprocess.Popen(
        [sys.executable, "-m", "autograder", "autograde", ASSIGNMENT, "--workers", "2", "--force", *LIMITS],
        cwd=path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    recorded = []
    for line in run.stdout:  # SIGKILL to the whole run once half the class is recorded
        recorded += re.findall(r"\] (\S+): ", line)
        if len(recorded) == 6:
            os.killpg(run.pid, signal.SIGKILL)
            break
    run.wait()
    assert len(recorded) == 6 and run.returncode == -signal.SIGKILL

    resumed = autograde(path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    regraded = set(re.findall(r"\] (\S+): ", resumed.stdout))
    assert regraded == set(RESUBMITTED) - set(recorded), resumed.stdout  # only what the killed run had not redone
    again = autograde(path)
    assert "0 to grade, 12 already graded" in again.stdout, again.stdout

    after, first = state(path), course["first"]
    assert after["rows"] == first["rows"]  # no row lost, none duplicated
    assert after["files"] == first["files"]  # the same autograded files, no partial ones left
    assert set(after["results"]) == set(roster)
    for student, kind in {**roster, **RESUBMITTED}.items():
        scores = {k: v for k, v in after["scores"][student].items() if k != "written_parallel_and_expensive"}
        expected = {k: v for k, v in by_kind[kind].items() if k != "written_parallel_and_expensive"}
        assert scores == expected, (student, kind)
        results = after["results"][student]
        assert results["score"] == pytest.approx(sum(v or 0 for v in scores.values()))
        assert len(results["tests"]) == sub_check_count("attention")


def test_report_renders_in_chromium(course, tmp_path):
    path = course["path"]
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "report", ASSIGNMENT],
        cwd=path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    page = (path / "reports" / f"{ASSIGNMENT}.html").read_text()
    assert not [u for u in re.findall(r"""(?:src|href)=['"]([^'"]+)""", page) if not u.startswith("data:")]
    assert "student009" in page  # its loop at the top stopped the notebook: not graded, and why
    assert "took longer than 8 s" in page
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    probe = tmp_path / "probe.html"  # the page, plus a script that writes what the browser rendered into the DOM
    probe.write_text(
        page.replace(
            "</body>",
            """<script>window.addEventListener('load', () => {
        const images = [...document.images].map(i => i.naturalWidth + 'x' + i.naturalHeight);
        const tables = [...document.querySelectorAll('table')].map(t => t.id + ':' + t.rows.length);
        document.body.setAttribute('data-rendered', images.join(',') + ';' + tables.join(','));
    });</script></body>""",
        )
    )
    chromium = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    rendered = re.search(r'data-rendered="([^"]*)"', chromium.stdout)
    assert rendered, chromium.stderr[-2000:]
    images, tables = rendered[1].split(";")
    assert len(images.split(",")) == 2 and all(int(size.split("x")[0]) > 100 for size in images.split(","))
    tables = dict(t.split(":") for t in tables.split(","))
    assert int(tables["failures"]) == 1 + sub_check_count("attention")  # a header row, then the sub-checks
    assert int(tables["diagnoses"]) > 2 and int(tables["not-graded"]) >= 2 and int(tables["slowest"]) == 11


def test_canvas_export_has_canvas_columns_and_manual_grades(course, tmp_path):
    path = course["path"]
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gradebook:
        gradebook.update_or_create_student("student003", first_name="Ada", last_name="Lovelace", lms_user_id="4242")

    def export():
        target = tmp_path / "canvas.csv"
        nbgrader(path, "export", "--exporter=autograder.canvas.CanvasExportPlugin", f"--to={target}")
        rows = list(csv.reader(open(target, newline="")))
        return rows[0], rows[1], {row[2]: row for row in rows[2:]}

    header, points, rows = export()
    assert header == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", ASSIGNMENT]
    assert points[0] == "Points Possible" and float(points[5]) == 16
    assert rows["student003"][:2] == ["Lovelace, Ada", "4242"]
    assert rows[WRITER][5] == "", "a submission waiting for a manual grade is left out"
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gradebook:
        auto = gradebook.find_submission(ASSIGNMENT, WRITER).score
        grade = gradebook.find_grade("written_parallel_and_expensive", ASSIGNMENT, ASSIGNMENT, WRITER)
        grade.manual_score, grade.needs_manual_grade = 1.5, False  # what formgrader does
        gradebook.db.commit()
        totals = {s.student.id: s.score for s in gradebook.find_assignment(ASSIGNMENT).submissions}
    _, _, rows = export()
    assert float(rows[WRITER][5]) == pytest.approx(auto + 1.5)
    for student, total in totals.items():
        assert float(rows[student][5]) == pytest.approx(total), student
