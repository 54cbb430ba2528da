"""The book's sources, without building it: every chapter has a concept figure with alt text, a
self-check quiz whose every choice explains itself, citations that resolve in ``book/references.bib``,
and launch links whose targets exist in the repository layout they assume."""

import ast
import re

import nbformat
import pytest

from autograder.chapters import CHAPTERS
from autograder.launch import NOTEBOOKS, launch_links
from notebooks import ROOT

CONFIG = ROOT / "_config.yml"


def cells(chapter):
    return nbformat.read(ROOT / "chapters" / f"{chapter.name}.ipynb", as_version=4).cells


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_concept_figure_is_drawn_in_the_chapter_with_caption_and_alt_text(chapter):
    figures = [c for c in cells(chapter) if "figure" in c.metadata.get("mystnb", {})]
    assert figures, "no figure cell"
    for cell in figures:
        assert "demo" in cell.metadata["tags"], "a figure cell must be skipped by grading"
        assert "plt.show()" in cell.source
        assert cell.metadata["mystnb"]["figure"]["caption"] and cell.metadata["mystnb"]["figure"]["name"]
        assert len(cell.metadata["mystnb"]["image"]["alt"]) > 40


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_self_check_has_three_to_five_questions_each_choice_explained(chapter):
    source = next(c.source for c in cells(chapter) if "display_quiz(" in c.source)
    questions = ast.literal_eval(source[source.index("display_quiz(") + len("display_quiz(") : source.rindex(")")])
    assert 3 <= len(questions) <= 5
    for question in questions:
        assert question["type"] == "multiple_choice" and len(question["answers"]) >= 3
        assert sum(a["correct"] for a in question["answers"]) == 1, question["question"]
        assert all(len(a["feedback"]) > 10 for a in question["answers"]), question["question"]


def test_every_citation_has_an_entry_in_the_bibliography():
    keys = set(re.findall(r"@\w+\{([\w-]+),", (ROOT / "book" / "references.bib").read_text()))
    for chapter in CHAPTERS:
        cited = {
            key
            for c in cells(chapter)
            if c.cell_type == "markdown"
            for group in re.findall(r"\{cite:[pt]\}`([^`]+)`", c.source)
            for key in group.split(",")
        }
        assert cited, f"{chapter.name} cites nothing"
        assert cited <= keys, f"{chapter.name} cites unknown keys {cited - keys}"


def test_launch_links_name_the_repository_once_and_the_chapters_student_notebook():
    config = CONFIG.read_text()
    url = re.search(r"^\s+url: (https://github\.com/([\w.-]+/[\w.-]+))\s*$", config, re.M)
    branch = re.search(r"^\s+branch: (\S+)\s*$", config, re.M).group(1)
    for chapter in CHAPTERS:
        links = launch_links(chapter.name, CONFIG)
        assert links.notebook == f"{NOTEBOOKS}/{chapter.name}.ipynb"
        assert links.colab == f"https://colab.research.google.com/github/{url.group(2)}/blob/{branch}/{links.notebook}"
        assert links.binder == f"https://mybinder.org/v2/gh/{url.group(2)}/{branch}?labpath={links.notebook}"
        assert f"</{links.notebook}>" in links.markdown()


def test_launch_link_targets_exist_in_the_repository():
    folder = ROOT / NOTEBOOKS
    if not folder.is_dir():
        pytest.skip(f"{NOTEBOOKS}/ (the committed student notebooks) is not on this branch yet")
    for chapter in CHAPTERS:
        target = ROOT / launch_links(chapter.name, CONFIG).notebook
        assert target.is_file(), f"{target.relative_to(ROOT)} is missing: Colab, Binder and the download would 404"
        notebook = nbformat.read(target, as_version=4)
        assert "BEGIN SOLUTION" not in target.read_text() and not any(c.get("outputs") for c in notebook.cells)


def test_a_repository_url_that_is_not_github_is_refused(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://example.org/course\n  branch: main\n")
    with pytest.raises(ValueError, match="not a GitHub repository URL"):
        launch_links("02_attention", config)
