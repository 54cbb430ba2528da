"""From a chapter's nbgrader *source* notebook to what learners see.

- :func:`student_view`: nbgrader's own ClearSolutions / ClearHiddenTests / ClearMarkScheme
  applied to a notebook: solution regions become ``raise NotImplementedError()`` stubs and
  written answers become "YOUR ANSWER HERE", exactly as ``nbgrader generate_assignment``
  releases them.
- :func:`render_for_book`: execute the source (the reference answers run, so every plot
  and printed result is real), then take the student view of the executed copy. The book
  renders that, and its ".ipynb" download therefore holds no solutions. The check cells' outputs
  are dropped (the reference run's full-marks report would read as if the empty stub passed), and
  a cell of launch links (:mod:`autograder.launch`) follows the chapter's title.
"""
from __future__ import annotations

import copy
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbgrader.preprocessors import ClearHiddenTests, ClearMarkScheme, ClearOutput, ClearSolutions

from autograder.launch import launch_links


def student_view(notebook: nbformat.NotebookNode, keep_outputs: bool = True) -> nbformat.NotebookNode:
    notebook = copy.deepcopy(notebook)
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
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def is_check_cell(cell: nbformat.NotebookNode) -> bool:
    """An autograded test cell (the cell under an exercise that calls the checks)."""
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and meta.get("grade", False) and not meta.get("solution", False)


def render_for_book(source: Path, target: Path, config: Path = Path("_config.yml")) -> None:
    notebook = nbformat.read(source, as_version=4)
    executed = execute(notebook, cwd=Path(source).resolve().parent)
    page = student_view(executed)
    for cell in page.cells:
        if is_check_cell(cell):
            cell.outputs, cell.execution_count = [], None
    title = next(i for i, cell in enumerate(page.cells) if cell.cell_type == "markdown")
    page.cells.insert(title + 1, nbformat.v4.new_markdown_cell(launch_links(Path(source).stem, config).markdown()))
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(page, target)


def write_student_notebooks(sources: list[Path], folder: Path) -> list[Path]:
    """Clean student notebooks (stubs, no outputs) for learners, one per source."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        target = folder / Path(source).name
        nbformat.write(student_view(nbformat.read(source, as_version=4), keep_outputs=False), target)
        written.append(target)
    return written
