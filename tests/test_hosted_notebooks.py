"""Learner notebooks read well where they are shown as they are (Jupyter, Colab): no MyST role or
directive in their markdown, citations as author–year links, while the book keeps its roles."""

import re

import nbformat
import pytest
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from autograder.plain_markdown import bibliography, plain_markdown, references_url
from autograder.release import student_view
from notebooks import CHAPTERS, ROOT

MYST = re.compile(r"\{[\w:-]+\}`|^(`{3,}|:{3,})\{", re.M)
CITATION = re.compile(r"\{cite:[pt]\}`([^`]*)`")


def markdown(notebook) -> list[str]:
    return [c.source for c in notebook.cells if c.cell_type == "markdown"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_learner_notebooks_hold_no_myst_markup_and_cite_every_source(chapter):
    source = "\n".join(markdown(nbformat.read(chapter, as_version=4)))
    learner = "\n".join(markdown(nbformat.read(ROOT / "notebooks" / chapter.name, as_version=4)))
    assert not MYST.findall(learner), MYST.findall(learner)
    keys = [key.strip() for group in CITATION.findall(source) for key in group.split(",")]
    assert keys, f"{chapter.name} cites no paper"  # every chapter has its Sources
    for key in keys:
        authors, year, url = bibliography()[key]
        assert f"{authors}, {year}" in learner or f"{authors} ({year})" in learner, key
        if url:
            assert f"]({url})" in learner, key
    # As Jupyter's own renderer shows it: links, and no role left in the text.
    html = markdown2html_mistune(learner)
    assert "{cite" not in html and "{doc}" not in html
    assert f'<a href="{references_url()}">references</a>' in html


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_the_book_keeps_its_roles(chapter):
    """The book's pages come from the student view (`python -m autograder render`), roles intact."""
    source = markdown(nbformat.read(chapter, as_version=4))
    page = markdown(student_view(nbformat.read(chapter, as_version=4), keep_outputs=False))
    assert [s for s in source if "{cite:" in s] == [p for p in page if "{cite:" in p]


def test_citations_and_cross_references_read_as_sentences():
    text = (
        "Attention {cite:p}`bahdanau2015neural,luong2015effective`; as {cite:t}`vaswani2017attention` show. "
        "Elman's network {cite:p}`elman1990finding`. See {ref}`the tiled loop <tiled-loop>` and {doc}`../references`."
        "\n\n```{note}\n:class: dropdown\nBlocks are powers of two.\n```\nAfter the note."
    )
    assert plain_markdown(text) == (
        "Attention ([Bahdanau et al., 2015](https://arxiv.org/abs/1409.0473); "
        "[Luong et al., 2015](https://arxiv.org/abs/1508.04025)); as "
        "[Vaswani et al. (2017)](https://arxiv.org/abs/1706.03762) show. Elman's network (Elman, 1990). "
        f"See the tiled loop and [references]({references_url()}).\n\n> **Note.** Blocks are powers of two.\n"
        "After the note."
    )
    with pytest.raises(KeyError, match="nobody2024"):
        plain_markdown("{cite:p}`nobody2024`")
