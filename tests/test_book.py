"""`make book`: every chapter executes, the book builds, its pages show the reference's
figures and the student view (no solutions, not even in the notebook download), and a real
headless Chromium loads a chapter page and fetches its figure."""
import functools
import http.server
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from autograder.chapters import BY_NAME

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
pytestmark = pytest.mark.xdist_group("book")


@pytest.fixture(scope="module")
def book():
    run = subprocess.run(["make", "book"], cwd=ROOT, capture_output=True, text=True, timeout=2400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return HTML


def chapter_pages():
    return sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))


@pytest.mark.parametrize("chapter", chapter_pages())
def test_chapter_page_shows_executed_figures_and_stubs(book, chapter):
    page = (book / "book" / "chapters" / f"{chapter}.html").read_text()
    figures = re.findall(r'<img[^>]+src="\.\./\.\./(_images/[^"]+\.png)"', page)
    assert figures, "no executed figure on the page"
    assert all((book / f).stat().st_size > 1000 for f in figures)
    assert "NotImplementedError" in page and "BEGIN SOLUTION" not in page
    assert "Traceback" not in page, "a cell failed while the book executed the chapter"


@pytest.mark.parametrize("chapter", chapter_pages())
def test_notebook_download_is_the_student_view(book, chapter):
    download = (book / "_sources" / "book" / "chapters" / f"{chapter}.ipynb").read_text()
    assert "BEGIN SOLUTION" not in download and f"solutions.{BY_NAME[chapter].topic}" not in download
    assert "raise NotImplementedError()" in download and "YOUR ANSWER HERE" in download


def test_guides_are_in_the_book(book):
    for page in ("index", "book/setup", "book/learner_guide", "book/instructor_guide"):
        assert (book / f"{page}.html").exists(), page


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requested: list = []

    def log_message(self, format, *args):
        QuietHandler.requested.append(self.path)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_chromium_loads_the_attention_page_and_its_figure(book):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(book)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/book/chapters/02_attention.html"
    try:
        run = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={book.parent / 'chromium-profile'}", "--virtual-time-budget=5000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    dom = run.stdout
    assert "Scaled dot-product attention" in dom, run.stderr[-2000:]
    images = re.findall(r'<img[^>]+src="\.\./\.\./_images/([^"]+\.png)"', dom)
    assert images, "the rendered DOM has no figure"
    fetched = [p for p in QuietHandler.requested if p.endswith(".png")]
    assert any(name in p for p in fetched for name in images), "the browser did not fetch the figure"
