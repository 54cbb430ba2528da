"""Benchmark (not a test): how long the feedback HTML of one notebook takes to render when a learner
added markdown that renders in quadratic time, with the course's filters (autograder.safe_html).

    .venv/bin/python benchmarks/feedback_rendering.py [--filters autograder.safe_html] [--kib 175]

Each case is chapter 2's learner notebook plus hostile markdown cells, rendered by nbconvert's
HTMLExporter with the filters that the course's nbgrader_config.py sets (what ``nbgrader
generate_feedback`` runs for each student, one after another). ``--filters`` names another module with
``SafeMarkdown`` and ``clean_html`` (e.g. a copy of an older safe_html) to compare. Measured on the
busy 2-core machine: 175 KiB of ``\\begin{a}`` 109.8 s before the size limits, 1.3 s after; 175 KiB of
``<!--`` 90.3 s and 2.1 s; 22 cells of 8 KiB of ``<div>`` 61.5 s and 4.1 s (the notebook alone: about 3 s).
"""

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from traitlets.config import Config

ROOT = Path(__file__).resolve().parent.parent


def cases(kib: int) -> dict[str, list[str]]:
    """Name -> the markdown cells a learner added."""
    size = kib * 1024
    return {
        "the notebook alone": [],
        f"{kib} KiB of \\begin{{a}}": ["\\begin{a}" * (size // 9)],
        f"{kib} KiB of <!--": ["<!--" * (size // 4)],
        "22 cells of 8 KiB of \\begin{a}": ["\\begin{a}" * (8 * 1024 // 9 - i) for i in range(22)],
        "22 cells of 8 KiB of <div>": ["<div>" * (8 * 1024 // 5 - i) for i in range(22)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", default="autograder.safe_html", help="module with SafeMarkdown and clean_html")
    parser.add_argument("--kib", type=int, default=175, help="size of the one long cell")
    args = parser.parse_args()
    config = Config()
    config.HTMLExporter.filters = {
        "markdown2html": f"{args.filters}.SafeMarkdown",
        "clean_html": f"{args.filters}.clean_html",
    }
    config.HTMLExporter.sanitize_html = True
    base = nbformat.read(ROOT / "notebooks" / "02_attention.ipynb", as_version=4)
    HTMLExporter(config=config, template_name="classic").from_notebook_node(base)  # warm up
    for name, sources in cases(args.kib).items():
        notebook = nbformat.v4.new_notebook(cells=[*base.cells, *map(nbformat.v4.new_markdown_cell, sources)])
        start = time.perf_counter()
        HTMLExporter(config=config, template_name="classic").from_notebook_node(notebook)
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
