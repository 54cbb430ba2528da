"""From a chapter's nbgrader *source* notebook to what learners see.

- :func:`student_view`: nbgrader's own ClearSolutions / ClearHiddenTests / ClearMarkScheme
  applied to a notebook: solution regions become ``raise NotImplementedError()`` stubs and
  written answers become "YOUR ANSWER HERE", exactly as ``nbgrader generate_assignment``
  releases them.
  Imports of earlier chapters' references become given cells (:mod:`autograder.given`).
- :func:`with_setup_cell`: the first cell of a learner's notebook installs the learner's kit
  where ``autograder`` is missing (Colab, a fresh JupyterHub), from the one source set in
  ``_config.yml`` (``repository.url``; ``$TRANSFORMERS_GRADED_KIT`` overrides it).
- :func:`learner_notebook`: the student view for Jupyter and Colab, with the setup cell and the
  chapters' MyST citations and cross-references as plain Markdown (:mod:`autograder.plain_markdown`).
- :func:`render_for_book`: execute the source (the reference answers run, so every plot
  and printed result is real), then take the student view of the executed copy. The book
  renders that, and its ".ipynb" download therefore holds no solutions. The check cells' outputs
  are dropped (the reference run's full-marks report would read as if the empty stub passed), and
  a cell of launch links (:mod:`autograder.launch`) follows the chapter's title.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient
from nbgrader.preprocessors import ClearHiddenTests, ClearMarkScheme, ClearOutput, ClearSolutions

from autograder.edition import load, translated
from autograder.figures import kept_folder
from autograder.given import with_given_code
from autograder.launch import launch_links
from autograder.plain_markdown import plain_markdown

ROOT = Path(__file__).resolve().parent.parent
KIT_WHEEL = "transformers_graded_kit-0.1.0-py3-none-any.whl"  # what `make kit` builds (kit/pyproject.toml)
SETUP_COMMENT = {
    "en": """\
# Setup for hosted notebooks (Colab, a fresh JupyterHub): installs the course's checks (the learner's
# kit) when they are missing. Where they are installed already, this cell does nothing.
""",
    "zh": """\
# 托管笔记本（Colab、新建的 JupyterHub）的准备工作：缺少课程的检查程序（学习者工具包）时安装它；
# 已经安装时，本单元格什么也不做。检查给出的提示和图中的标签为中文（运行本单元格前设置
# TRANSFORMERS_GRADED_LANG=en 可改回英文），中文标签使用系统已有的中文字体。
""",
}
SETUP = """\
import importlib.util, os, subprocess, sys

if importlib.util.find_spec("autograder") is None:
    kit = os.environ.get("TRANSFORMERS_GRADED_KIT", {source!r})
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", kit], check=True)
"""
# The Chinese edition: the checks speak Chinese, and figures label in Chinese with a Chinese font
# (autograder/figures.py); TRANSFORMERS_GRADED_LANG=en, set before the cell runs, turns both back.
SETUP_LANGUAGE = {
    "en": "",
    "zh": '\nos.environ.setdefault("TRANSFORMERS_GRADED_LANG", "zh")\n\n'
    'from autograder.figures import speak\n\nspeak(os.environ["TRANSFORMERS_GRADED_LANG"])\n',
}


def kit_source() -> str:
    """Where learners install the kit from: the wheel attached to the latest release of the
    repository named in ``_config.yml``."""
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    return f"{url}/releases/latest/download/{KIT_WHEEL}"


def setup_source(lang: str = "en") -> str:
    """The setup cell's code in the edition ``lang``."""
    return SETUP_COMMENT[lang] + SETUP.format(source=kit_source()) + SETUP_LANGUAGE[lang]


def with_setup_cell(notebook: nbformat.NotebookNode, lang: str = "en") -> nbformat.NotebookNode:
    """The notebook with the setup cell first (tagged ``demo``: grading never runs it)."""
    cell = nbformat.v4.new_code_cell(setup_source(lang), metadata={"tags": ["setup", "demo"], "editable": False})
    cell.id = "setup"
    notebook.cells = [cell, *(c for c in notebook.cells if c.get("id") != "setup")]
    return notebook


def student_view(notebook: nbformat.NotebookNode, keep_outputs: bool = True) -> nbformat.NotebookNode:
    notebook = with_given_code(copy.deepcopy(notebook))
    preprocessors = [ClearSolutions(), ClearHiddenTests(), ClearMarkScheme()]
    if not keep_outputs:
        preprocessors.append(ClearOutput())
    resources = {}
    for preprocessor in preprocessors:
        notebook, resources = preprocessor.preprocess(notebook, resources)
    return notebook


def execute(notebook: nbformat.NotebookNode, cwd: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel (working directory ``cwd``); stops at the first error."""
    notebook = copy.deepcopy(notebook)
    NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return notebook


def is_check_cell(cell: nbformat.NotebookNode) -> bool:
    """An autograded test cell (the cell under an exercise that calls the checks)."""
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and meta.get("grade", False) and not meta.get("solution", False)


def render_for_book(source: Path, target: Path, config: Path = Path("_config.yml")) -> None:
    """Execute the chapter ``source`` and write its page for the book at ``target``: the student
    view with the reference run's outputs, the launch links under the title; the figures it shows
    are kept for the other editions (:func:`autograder.figures.kept_folder`)."""
    notebook = nbformat.read(source, as_version=4)
    figures = kept_folder(target).resolve()
    shutil.rmtree(figures, ignore_errors=True)
    keeping = nbformat.v4.new_code_cell(f"from autograder.figures import keep\n\nkeep({str(figures)!r})")
    notebook.cells.insert(0, keeping)
    executed = execute(notebook, cwd=Path(source).resolve().parent)
    executed.cells.pop(0)
    for cell in executed.cells:  # counted as if the first cell had not run
        if cell.cell_type == "code" and cell.execution_count:
            cell.execution_count -= 1
            for output in cell.outputs:
                if output.get("execution_count"):
                    output.execution_count -= 1
    page = student_view(executed)
    for cell in page.cells:
        if is_check_cell(cell):
            cell.outputs, cell.execution_count = [], None
    title = next(i for i, cell in enumerate(page.cells) if cell.cell_type == "markdown")
    links = nbformat.v4.new_markdown_cell(launch_links(Path(source).stem, config).markdown())
    links.id = "launch-links"  # the Chinese edition puts its own links there (autograder.translated_book)
    page.cells.insert(title + 1, links)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(page, target)


def learner_notebook(source: Path, lang: str = "en") -> nbformat.NotebookNode:
    """What a learner works in: the student view without outputs, in the edition ``lang``
    (:mod:`autograder.edition`), the setup cell first, its markdown free of MyST roles and
    directives (Jupyter and Colab show them raw; the book keeps them)."""
    notebook = student_view(nbformat.read(source, as_version=4), keep_outputs=False)
    if lang != "en":
        notebook = translated(notebook, load(Path(source), lang), lang)
    notebook = with_setup_cell(notebook, lang)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = plain_markdown(cell.source)
    return notebook


def write_student_notebooks(
    sources: list[Path], folder: Path, reset: bool = False, lang: str = "en"
) -> list[tuple[Path, bool]]:
    """Clean student notebooks (stubs, no outputs) for learners, one per source, in the edition
    ``lang``, as ``[(path, written)]``: a notebook that exists already is the learner's work and is
    kept, unless ``reset`` asks for a fresh copy."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        target = folder / Path(source).name
        fresh = reset or not target.exists()
        if fresh:
            nbformat.write(learner_notebook(Path(source), lang), target)
        written.append((target, fresh))
    return written
