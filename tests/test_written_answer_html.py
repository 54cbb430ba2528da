"""A written answer full of script is shown to the instructor as text, never run: graded with the real
`python -m autograder autograde` (and, with code that displays hostile HTML, plain `nbgrader autograde`),
rendered by the real `nbgrader generate_feedback` and by the real formgrader (a `jupyter server` with
nbgrader's extension, started in the course directory and asked for the submission's page over HTTP),
then parsed; and the feedback page opened in a real Chromium, where none of the answer's script runs."""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from browser import Browser
from bs4 import BeautifulSoup
from classroom import CORRECT
from nbgrader.api import Gradebook

from notebooks import filled_notebook, nbgrader_meta, write

pytestmark = pytest.mark.xdist_group("written_answer_html")

ASSIGNMENT = "02_attention"
WRITTEN = "written_parallel_and_expensive"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # nbgrader runs `alembic`
MARK = "xss_ran"  # every vector below would call it; the page's own script never names it
ANSWER = f"""## Why attention is parallel

Every query attends to **all** keys at once, so the score matrix is one `q @ k.T`; its cost grows
as $O(n^2 d)$ and the scores are divided by $\\sqrt{{d_k}}$:

$$\\mathrm{{softmax}}\\left(\\frac{{QK^\\top}}{{\\sqrt{{d_k}}}}\\right)V$$

```python
scores = q @ k.transpose(-2, -1)
```

<script>{MARK}('script')</script>

<img src=x onerror="{MARK}('img')">

<iframe src="javascript:{MARK}('iframe')"></iframe>

<svg onload="{MARK}('svg')"><circle r="4"/></svg>

[a link](javascript:{MARK}('link'))

<a href="JaVaScRiPt:{MARK}('anchor')">another link</a>

<details open ontoggle="{MARK}('details')"><summary>more</summary>hidden</details>

![remote](http://tracker.invalid/pixel.png)

<object data="javascript:{MARK}('object')"></object><embed src="javascript:{MARK}('embed')">

<style>body {{ display: none }}</style>

<a href="da&#9;ta:text/html,<script>{MARK}('data tab')</script>">a data link with a tab in its scheme</a>
<a href="java&#x0A;script:{MARK}('newline')">a script link with a newline in its scheme</a>
<a href="&#x01;javascript:{MARK}('control')">a script link after a control character</a>

<div class="mermaid">graph TD; A[{MARK}] --> B</div>
"""
OUTPUT = f"<table><tr><th>loss</th></tr><tr><td>1.25</td></tr></table><img src=y onerror=\"{MARK}('output')\">"
# Cells that render in quadratic time (mistune's maths environments, the allowlist's HTML comments): shown
# as written, under a note.
LONG = ("\\begin{a}" * 4096, "<!--" * 10_000)
PLAIN_NOTE = "rendered as Markdown; it is shown as written"
HIDING = {  # what would hide the graded code from the feedback page
    "transient": {"remove_source": True},
    "jupyter": {"source_hidden": True, "outputs_hidden": True},
    "collapsed": True,
    "tags": ["remove-input", "hide-input"],
}
GRADED_CODE = CORRECT["softmax"]
VISIBLE = (
    "Why attention is parallel",
    "Every query attends to",
    "\\sqrt{d_k}",
    "scores = q @ k.transpose(-2, -1)",
    f"<script>{MARK}('script')</script>",  # the literal text of the tag
    "more",
    "a data link with a tab in its scheme",
)


def run(*args: str, cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr


def submit(course: Path, student: str, display_cell: bool = False) -> None:
    """The release with the hostile written answer, a correct softmax whose cell asks to hide its code,
    and two long markdown cells, saved as Jupyter saves it, and (``display_cell``) a cell at the end whose
    code displays hostile HTML when nbgrader runs it."""
    notebook = filled_notebook(course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", {"softmax": GRADED_CODE})
    (written,) = [c for c in notebook.cells if nbgrader_meta(c).get("grade_id") == WRITTEN]
    written.source = ANSWER
    (answer,) = [c for c in notebook.cells if nbgrader_meta(c).get("grade_id") == "softmax"]
    answer.metadata.update(HIDING)
    notebook.cells += [nbformat.v4.new_markdown_cell(text) for text in LONG]
    if display_cell:
        notebook.cells.append(nbformat.v4.new_code_cell(f"from IPython.display import HTML\nHTML({OUTPUT!r})"))
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    write(notebook, folder / f"{ASSIGNMENT}.ipynb")
    (folder / "timestamp.txt").write_text("2026-01-15 12:00:00.000000 UTC")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """mallory graded by `python -m autograder autograde`, trudy (whose code displays HTML) by plain
    `nbgrader autograde`, which runs it."""
    course = tmp_path_factory.mktemp("course")
    run(sys.executable, "-m", "autograder", "course", str(course), ASSIGNMENT, cwd=course)
    run(str(BIN / "nbgrader"), "generate_assignment", ASSIGNMENT, cwd=course)
    submit(course, "mallory")
    run(sys.executable, "-m", "autograder", "autograde", ASSIGNMENT, "--notebook-seconds", "120", cwd=course)
    submit(course, "trudy", display_cell=True)
    run(str(BIN / "nbgrader"), "autograde", ASSIGNMENT, "--student", "trudy", "--create", cwd=course)
    run(str(BIN / "nbgrader"), "generate_feedback", ASSIGNMENT, cwd=course)
    return course


def learner_markup(html: str) -> list[str]:
    """What in ``html`` could run the learner's script or fetch from elsewhere."""
    soup = BeautifulSoup(html, "html.parser")
    found = [f"<script> {s.string!r}" for s in soup.find_all("script") if MARK in (s.string or "")]
    found += [f"<{t.name}>" for t in soup.find_all(["iframe", "svg", "object", "embed", "style"]) if MARK in str(t)]
    found += [f"<style> {t.string!r}" for t in soup.find_all("style") if "display: none" in (t.string or "")]
    for tag in soup.find_all(True):
        for name, value in tag.attrs.items():
            value = " ".join(value) if isinstance(value, list) else value
            if name.startswith("on") and MARK in value:
                found.append(f"<{tag.name} {name}={value!r}>")
            url = "".join(c for c in value if ord(c) > 0x20 and c != "\x7f").lower()  # as a browser reads a scheme
            if "javascript:" in url or (tag.name == "a" and name == "href" and url.startswith("data:")):
                found.append(f"<{tag.name} {name}={value!r}>")
            if name == "class" and "mermaid" in value.lower():
                found.append(f"<{tag.name} class={value!r}>")
            if tag.name == "img" and name == "src" and "tracker.invalid" in value:
                found.append(f"<img src={value!r}>")
    return found


def assert_safe_and_visible(html: str, student: str) -> None:
    assert learner_markup(html) == []
    text = BeautifulSoup(html, "html.parser").get_text()
    assert [v for v in VISIBLE + (("1.25",) if student == "trudy" else ()) if v not in text] == []


STUDENTS = pytest.mark.parametrize("student", ["mallory", "trudy"])


def feedback_of(course: Path, student: str) -> str:
    return (course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()


def test_feedback_shows_the_graded_code_whatever_its_metadata_asks(course):
    """The cell's metadata asked nbconvert to drop its source and Jupyter to fold it; the graded code shows."""
    autograded = nbformat.read(course / "autograded" / "mallory" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    (answer,) = [c for c in autograded.cells if nbgrader_meta(c).get("grade_id") == "softmax"]
    assert answer.source == GRADED_CODE and (set(HIDING) - {"tags"}) & set(answer.metadata) == set()
    assert not {"remove-input", "hide-input"} & set(answer.metadata.get("tags", []))
    text = BeautifulSoup(feedback_of(course, "mallory"), "html.parser").get_text()
    assert [line for line in GRADED_CODE.splitlines() if line.strip() not in text] == []


@STUDENTS
def test_long_markdown_is_shown_as_written_under_a_note(course, student):
    soup = BeautifulSoup(feedback_of(course, student), "html.parser")
    assert soup.get_text().count(PLAIN_NOTE) == len(LONG)
    shown = [pre.get_text() for pre in soup.find_all("pre", class_="autograder-plain-text")]
    assert sorted(shown) == sorted(LONG)


@STUDENTS
def test_feedback_loads_no_script_from_elsewhere(course, student):
    """nbconvert's template loaded MathJax from a CDN into every feedback page."""
    soup = BeautifulSoup(feedback_of(course, student), "html.parser")
    scripts = [s.get("src") for s in soup.find_all("script") if s.get("src")]
    modules = [s.string for s in soup.find_all("script") if "import" in (s.string or "")]
    assert scripts == [] and modules == []


@STUDENTS
def test_the_autograded_notebook_keeps_the_answer_as_written(course, student):
    autograded = (course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    assert f"<script>{MARK}('script')</script>" in autograded and "onerror=" in autograded


@STUDENTS
def test_feedback_shows_the_answer_without_running_it(course, student):
    feedback = (course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert_safe_and_visible(feedback, student)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
@STUDENTS
def test_no_script_of_the_answer_runs_in_a_browser(course, student):
    feedback = course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
    with Browser() as browser:
        browser.send("Page.enable")
        record = f"window.ran = []; window.{MARK} = vector => window.ran.push(vector);"
        browser.send("Page.addScriptToEvaluateOnNewDocument", source=record)
        browser.open(feedback.as_uri())
        time.sleep(2)  # the failed image's onerror, the details' ontoggle
        ran = browser.evaluate("window.ran")
        shown = browser.evaluate("document.body.innerText")
    assert ran == []
    assert f"<script>{MARK}('script')</script>" in shown


@STUDENTS
def test_formgrader_shows_the_answer_without_running_it(course, student):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student).id
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = secrets.token_hex(16)
    server = subprocess.Popen(
        [str(BIN / "jupyter"), "server", "--no-browser", f"--port={port}", "--ip=127.0.0.1", "--allow-root"]
        + [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={course}"],
        cwd=course,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        html = fetch(f"http://127.0.0.1:{port}/formgrader/submissions/{submission}/?token={token}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert 'class="panel panel-primary nbgrader_cell"' in html  # the formgrade page, not a login or error page
    assert_safe_and_visible(html, student)


def fetch(url: str, seconds: float = 120) -> str:
    """The page at ``url`` once the server answers."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=60) as page:
                return page.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
