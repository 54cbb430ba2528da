"""What learners get: the committed notebooks/ (what hosted-notebook links open) match the chapters,
start with the setup cell and carry earlier chapters' code as given cells; `make student` and
`make clean` never destroy a learner's work; the setup page names what the installs need."""

import re
import shutil
import subprocess

import nbformat
import pytest
import yaml

from autograder.chapters import CHAPTERS as REGISTRY
from autograder.release import learner_notebook
from notebooks import CHAPTERS, ROOT


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_committed_learner_notebooks_are_in_sync_with_the_chapters(chapter):
    committed = ROOT / "notebooks" / chapter.name
    assert committed.exists(), "run `make notebooks`"
    assert nbformat.writes(learner_notebook(chapter)) == nbformat.writes(nbformat.read(committed, as_version=4)), (
        f"{committed} is out of date: run `make notebooks`"
    )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_learner_notebooks_need_no_reference_solutions(chapter):
    notebook = nbformat.read(ROOT / "notebooks" / chapter.name, as_version=4)
    assert notebook.cells[0].id == "setup" and "demo" in notebook.cells[0].metadata["tags"]
    assert yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"] in notebook.cells[0].source
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert "solutions" not in code and "BEGIN SOLUTION" not in code
    given = [c for c in notebook.cells if "given" in c.metadata.get("tags", [])]
    assert bool(given) == (chapter.stem[:2] >= "03")  # chapters 3 to 7 build on earlier ones


def make(folder, *args):
    # -o: never rebuild the course's venv from these tests
    return subprocess.run(
        ["make", "-f", str(ROOT / "Makefile"), "-o", ".venv/.installed", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_make_student_and_clean_keep_the_learners_work(tmp_path):
    for name in ("chapters", ".venv"):
        (tmp_path / name).symlink_to(ROOT / name)
    assert make(tmp_path, "student").returncode == 0
    notebooks = sorted((tmp_path / "student").glob("*.ipynb"))
    assert [p.name for p in notebooks] == [p.name for p in CHAPTERS]
    work = {}
    for path in notebooks[1:3]:
        notebook = nbformat.read(path, as_version=4)
        notebook.cells.append(nbformat.v4.new_code_cell("my_work = 42"))
        nbformat.write(notebook, path)
        work[path] = path.read_bytes()
    run = make(tmp_path, "student")
    assert run.returncode == 0 and "exists, kept" in run.stdout
    (tmp_path / "_build").mkdir()
    assert make(tmp_path, "clean").returncode == 0
    assert not (tmp_path / "_build").exists()
    assert all(path.read_bytes() == content for path, content in work.items())

    assert make(tmp_path, "reset-chapter").returncode != 0  # which chapter? it says, and resets nothing
    assert all(path.read_bytes() == content for path, content in work.items())
    reset, kept = list(work)
    assert make(tmp_path, "reset-chapter", f"CHAPTER={reset.stem}").returncode == 0
    assert "my_work" not in reset.read_text() and reset.read_bytes() == (ROOT / "notebooks" / reset.name).read_bytes()
    assert kept.read_bytes() == work[kept]
    shutil.rmtree(tmp_path / "student")


def test_setup_page_and_requirements_match_what_installs_need():
    setup = (ROOT / "book" / "setup.md").read_text()
    assert yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"] in setup
    assert "Python 3.11" in setup and "download.pytorch.org/whl/cpu" in setup
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r'^triton[=<>,.\d]+; sys_platform == "linux"$', requirements, re.M)  # Linux only
    assert 'requires-python = ">=3.11"' in (ROOT / "pyproject.toml").read_text()
    assert len(REGISTRY) == len(CHAPTERS)
