"""`make book`: every chapter executes, the book builds, its pages show the reference's
figures and the student view (no solutions, not even in the notebook download), and a real
headless Chromium loads a chapter page and fetches its figure."""

import html
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
import torch

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


chromium = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)


@chromium
def test_chromium_loads_the_attention_page_and_its_figure(book):
    from browser import Browser, Site

    with Site(book) as site, Browser() as browser:
        browser.open(site.url("book/chapters/02_attention.html"))
        title = browser.evaluate("document.querySelector('h1').textContent")
        images = browser.evaluate(
            "Array.from(document.querySelectorAll('main img')).filter(i => i.src.includes('/_images/'))"
            ".map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
        )
    assert "attention" in title.lower(), title
    assert images, "the page shows no figure"
    assert all(decoded for _, decoded in images), [src for src, decoded in images if not decoded]
    fetched = [path for path in site.requested if path.endswith(".png")]
    assert any(src.split("/")[-1] in path for src, _ in images for path in fetched), "no figure came from the book"


# --- What a reader sees: maths offline, concept figures, check cells, citations, launch links, quizzes ---


def page_html(book, chapter):
    return (book / "book" / "chapters" / f"{chapter}.html").read_text()


def page_text(book, chapter):
    """The page's text as a reader sees it: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page_html(book, chapter)))


@pytest.mark.parametrize("chapter", chapter_pages())
def test_each_chapter_has_a_concept_figure_with_alt_text(book, chapter):
    figures = re.findall(r'<figure[^>]*id="(fig-[\w-]+)"[^>]*>(.*?)</figure>', page_html(book, chapter), re.S)
    assert figures, "no named concept figure on the page"
    for name, body in figures:
        alt = re.search(r'<img[^>]+alt="([^"]*)"', body)
        assert alt and len(alt.group(1)) > 40, f"{name}: the image has no real alt text"
        assert "<figcaption" in body, f"{name}: no caption"


@pytest.mark.parametrize("chapter", chapter_pages())
def test_check_cells_show_no_reference_report(book, chapter):
    text = page_text(book, chapter)
    assert f'grade("{BY_NAME[chapter].topic}.' in text, "the check cells are missing"
    assert not re.search(r"\d+(\.\d+)? / \d+(\.\d+)? points", text), "a check cell shows the reference's report"


@pytest.mark.parametrize("chapter", chapter_pages())
def test_chapters_cite_papers_listed_on_the_references_page(book, chapter):
    citations = re.findall(r'href="\.\./references\.html#([\w-]+)"', page_html(book, chapter))
    assert len(set(citations)) >= 3, "the chapter cites fewer than three papers"
    references = (book / "book" / "references.html").read_text()
    for anchor in citations:
        assert f'id="{anchor}"' in references, f"citation #{anchor} has no entry"


def test_references_page_lists_the_papers_the_chapters_rely_on(book):
    references = (book / "book" / "references.html").read_text()
    for title in (
        "Attention Is All You Need",
        "Neural Machine Translation by Jointly Learning",
        "Online Normalizer Calculation for Softmax",
        "RoFormer",
        "Layer Normalization",
    ):
        assert title.lower() in references.lower(), title


@pytest.mark.parametrize("chapter", chapter_pages())
def test_launch_links_point_at_the_committed_student_notebook(book, chapter):
    from autograder.launch import launch_links

    page = page_html(book, chapter)
    links = launch_links(chapter, ROOT / "_config.yml")
    assert f'href="{links.colab}"' in page and f'href="{links.binder}"' in page
    if not (ROOT / links.notebook).exists():
        pytest.skip(f"{links.notebook} is not committed on this branch, so there is nothing to download yet")
    download = re.search(rf'href="(\.\./\.\./_downloads/\w+/{chapter}\.ipynb)"', page)
    assert download, "no download link to the student notebook"
    served = (book / "book" / "chapters" / download.group(1)).resolve()
    assert served.read_bytes() == (ROOT / links.notebook).read_bytes()


def test_worked_example_tables_hold_the_true_numbers(book):
    page = page_html(book, "02_attention")
    scores = torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 2.0], [2.0, 1.0, 2.0]])  # Q Kᵀ of the example, by hand
    weights = torch.softmax(scores / 2**0.5, dim=-1)
    outputs = weights @ torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    for number in [*weights.flatten().tolist(), *outputs.flatten().tolist()]:
        assert f"<td><p>{number:.3f}</p></td>" in page, f"{number:.3f} is not in the worked example's tables"


def test_pages_load_no_script_from_the_network(book):
    for page in sorted(book.rglob("*.html")):
        remote = re.findall(r'<script[^>]+src="(https?:[^"]+)"', page.read_text())
        assert not remote, f"{page.relative_to(book)} loads {remote}"


@chromium
def test_maths_renders_with_no_network(book):
    from browser import Browser, Site

    with Site(book) as site, Browser() as browser:
        browser.open(site.url("book/chapters/02_attention.html"))
        browser.wait_for("window.MathJax && MathJax.startup && MathJax.startup.promise", seconds=30)
        browser.evaluate("MathJax.startup.promise")
        rendered = browser.evaluate("document.querySelectorAll('mjx-container').length")
        unrendered = browser.evaluate(
            "Array.from(document.querySelectorAll('.math'))"
            ".filter(e => !e.querySelector('mjx-container')).map(e => e.textContent)"
        )
        prose = browser.evaluate("""(() => {
            const main = document.querySelector('main').cloneNode(true);
            main.querySelectorAll('pre, script, style').forEach(e => e.remove());
            return main.textContent; })()""")
    assert rendered >= 30, f"only {rendered} formulas rendered"
    assert not unrendered, f"formulas left as TeX: {unrendered[:3]}"
    assert "$" not in prose and not re.search(r"\\[a-zA-Z(\[]", prose), "raw TeX is visible"
    assert any(path.startswith("/_static/mathjax/") for path in site.requested), "MathJax did not come from the book"


@chromium
def test_quiz_answer_shows_its_explanation(book):
    from browser import Browser, Site

    with Site(book) as site, Browser() as browser:
        browser.open(site.url("book/chapters/02_attention.html"))
        browser.wait_for("document.querySelector('.MCButton')")
        assert browser.evaluate(
            "document.querySelector('.Feedback') === null || document.querySelector('.Feedback').innerText === ''"
        )
        browser.click(".MCButton")
        browser.wait_for("document.querySelector('.Feedback') && document.querySelector('.Feedback').innerText")
        chosen = browser.evaluate("document.querySelector('.MCButton').innerText")
        feedback = browser.evaluate("document.querySelector('.Feedback').innerText")
    explanations = {a["answer"]: a["feedback"] for q in quiz_questions("02_attention") for a in q["answers"]}
    assert feedback.startswith(explanations[chosen.strip()][:40]), (chosen, feedback)


def quiz_questions(chapter):
    """The questions of a chapter's self-check, read from its notebook."""
    import ast

    import nbformat

    notebook = nbformat.read(ROOT / "chapters" / f"{chapter}.ipynb", as_version=4)
    source = next(c.source for c in notebook.cells if "display_quiz(" in c.source)
    return ast.literal_eval(source[source.index("display_quiz(") + len("display_quiz(") : source.rindex(")")])


# --- The Chinese edition: every page has its twin in _build/html/zh, reached by the language switch ---


def html_pages(root: Path) -> set[Path]:
    return {
        p.relative_to(root)
        for p in root.rglob("*.html")
        if p.relative_to(root).parts[0] not in ("zh", "_static", "_sources", "_images")
    }


def test_every_english_page_has_a_chinese_twin(book):
    chinese = book / "zh"
    assert html_pages(book) == html_pages(chinese)
    for chapter in chapter_pages():
        page = (chinese / "book" / "chapters" / f"{chapter}.html").read_text()
        assert '<html lang="zh-CN"' in page and "NotImplementedError" in page, chapter
        assert "notebooks/zh/" in page or "_downloads" in page, "the launch links open the Chinese notebook"
        assert len(re.findall(r"[\u4e00-\u9fff]", html.unescape(re.sub(r"<[^>]+>", "", page)))) > 2000, chapter
        assert "Traceback" not in page


def test_chinese_figures_are_the_english_ones_labelled_in_chinese(book):
    """Every figure of a Chinese page is its English twin drawn again from the reference run with
    Chinese labels, in a font that has their glyphs: no label left untranslated, none drawn as boxes."""
    import warnings

    from autograder import figures, translated_book

    assert translated_book.figure_problems("zh") == []
    for chapter in chapter_pages():
        english_page = ROOT / "book" / "chapters" / f"{chapter}.ipynb"
        built = nbformat.read(ROOT / "_build" / "zh" / "source" / "book" / "chapters" / f"{chapter}.ipynb", 4)
        english = [o.data["image/png"] for _, o in translated_book.figure_outputs(nbformat.read(english_page, 4))]
        chinese = [o.data["image/png"] for _, o in translated_book.figure_outputs(built)]
        assert len(chinese) == len(english) and all(c != e for c, e in zip(chinese, english)), chapter
        # drawn again here, warnings recorded: the same PNGs as the built book's, and no glyph missing
        page = nbformat.read(english_page, 4)
        page.cells = [c for c in page.cells if not translated_book.shown_without_code(c)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            translated_book.translate_figures(page, [figures.kept_folder(english_page)], "zh")
        assert not [w for w in caught if "missing from font" in str(w.message)], chapter
        redrawn = {o.data["image/png"] for _, o in translated_book.figure_outputs(page)}
        assert redrawn <= set(chinese), chapter


def follow_the_language_switch(browser) -> str:
    """Click the page's language switch like a reader; returns the path of the page it opened."""
    browser.wait_for("document.querySelector('a.language-switch')")
    target = browser.evaluate("document.querySelector('a.language-switch').href")
    browser.click("a.language-switch")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:  # while the page is replaced, the old one cannot be asked anything
            if browser.evaluate("location.href === " + json.dumps(target) + " && document.readyState === 'complete'"):
                return browser.evaluate("location.pathname")
        except RuntimeError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the switch never opened {target}")


@chromium
def test_the_language_switch_leads_to_the_same_page_both_ways_with_chinese_glyphs(book):
    from browser import Browser, Site

    with Site(book) as site, Browser() as browser:
        browser.open(site.url("book/chapters/05_transformer_block.html"))
        assert follow_the_language_switch(browser) == "/zh/book/chapters/05_transformer_block.html"
        assert browser.evaluate("document.documentElement.lang") == "zh-CN"
        browser.wait_for("document.querySelectorAll('mjx-container').length > 10")  # maths renders offline here too
        # Chromium draws the Chinese text with a font that has its glyphs (named by chinese.css), not a fallback
        browser.send("DOM.enable")
        browser.send("CSS.enable")
        root = browser.send("DOM.getDocument", depth=-1)["root"]["nodeId"]
        paragraph = browser.send("DOM.querySelector", nodeId=root, selector="main article p")["nodeId"]
        fonts = browser.send("CSS.getPlatformFontsForNode", nodeId=paragraph)["fonts"]
        names = [f["familyName"] for f in fonts]
        assert any("CJK" in n or "Han" in n for n in names), names
        assert not any("Last Resort" in n for n in names), names
        assert follow_the_language_switch(browser) == "/book/chapters/05_transformer_block.html"
        assert browser.evaluate("document.documentElement.lang") == "en"
