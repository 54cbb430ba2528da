"""The public edition (`make public`, autograder/public.py): built from the real kit (kit/build.py) and the
chapters' student views, it holds no answer key (no solutions/, no seed, no body of a reference function
or of the test corpus, except the given code later chapters hand out), its launch links and setup cells
point to the public repository, and its learner notebooks open and grade with its kit, outside the
teaching repository."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml
from classroom import CORRECT

from autograder.chapters import BY_NAME, CHAPTERS
from autograder.launch import launch_links
from autograder.public import AnswerKeyFound, answer_key_in, reference_bodies, write_public
from autograder.release import KIT_WHEEL, student_view
from notebooks import filled_notebook, write

pytestmark = pytest.mark.xdist_group("public_edition")
ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    run = subprocess.run(
        [sys.executable, str(ROOT / "kit" / "build.py"), "--dist", str(dist)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Each chapter's student view, as `make book` renders it but without running the reference."""
    folder = tmp_path_factory.mktemp("rendered")
    for chapter in CHAPTERS:
        source = nbformat.read(ROOT / "chapters" / f"{chapter.name}.ipynb", as_version=4)
        write(student_view(source, keep_outputs=False), folder / f"{chapter.name}.ipynb")
    return folder


@pytest.fixture(scope="module")
def public(wheel, rendered, tmp_path_factory):
    return write_public(tmp_path_factory.mktemp("edition") / "public", wheel, rendered)


def files_in(tree: Path) -> list[str]:
    return sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())


def test_the_public_edition_holds_no_answer_key(public):
    names = files_in(public)
    assert {"README.md", "_config.yml", "_toc.yml", f"kit/{KIT_WHEEL}"} <= set(names)
    assert {f"notebooks/{c.name}.ipynb" for c in CHAPTERS} <= set(names)
    assert {f"book/chapters/{c.name}.ipynb" for c in CHAPTERS} <= set(names)
    # the Chinese edition's book source, a tree of its own that names nothing of the teaching repository
    assert {f"zh/book/chapters/{c.name}.ipynb" for c in CHAPTERS} | {"zh/_config.yml", "zh/_toc.yml"} <= set(names)
    assert {f"notebooks/zh/{c.name}.ipynb" for c in CHAPTERS} <= set(names)
    assert str(ROOT) not in (public / "zh" / "_config.yml").read_text()
    assert not [n for n in names if n.split("/")[0] in ("solutions", "chapters", "tests", "autograder", "private")]
    assert not [n for n in names if "nbgrader_config" in n or n.endswith((".db", ".zip"))]
    with zipfile.ZipFile(public / "kit" / KIT_WHEEL) as kit:
        assert not [n for n in kit.namelist() if n.startswith("solutions/")]
        assert any(n.endswith("recorded.pt") for n in kit.namelist())  # the recorded values travel
    assert answer_key_in(public) == []


def test_the_scan_finds_the_answer_key_where_it_is(public, tmp_path):
    """The same scan, on the public edition with the teaching repository's answer key put back in."""
    bodies = reference_bodies()
    assert len([k for k in bodies if k.startswith("solutions/")]) >= 20 and any(
        k.startswith("alternatives/") for k in bodies
    )
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    (leaky / "flash.py").write_text((ROOT / "solutions" / "flash_attention.py").read_text())
    (leaky / "config.py").write_text('os.environ.setdefault("AUTOGRADER_SEED", "12345")\n')
    found = answer_key_in(leaky)
    assert any("solutions/flash_attention.flash_attention_forward" in f for f in found)
    assert any("grading seed" in f for f in found)
    with pytest.raises(AnswerKeyFound, match="the body of solutions/"):  # the book from the nbgrader sources
        write_public(tmp_path / "out", public / "kit" / KIT_WHEEL, ROOT / "chapters")
    assert not (tmp_path / "out").exists()  # the build refuses, writing nothing


def test_only_given_code_of_earlier_chapters_is_published(public):
    """Chapter 3 onwards hand out the references they build on (autograder/given.py): those bodies are in
    the edition, and no graded function of chapter 7 (which no chapter builds on) is."""
    text = "\n".join(
        c.source for p in (public / "notebooks").glob("*.ipynb") for c in nbformat.read(p, as_version=4).cells
    )
    normalized = "\n".join(line.strip() for line in text.splitlines() if line.strip())
    published = {k for k, body in reference_bodies().items() if k.startswith("solutions/") and body in normalized}
    assert "solutions/attention.scaled_dot_product_attention" in published
    assert not [k for k in published if k.startswith(("solutions/flash_attention", "solutions/beyond_quadratic"))]


def test_launch_links_and_setup_cells_point_to_the_public_repository(public):
    assert yaml.safe_load((public / "_config.yml").read_text())["repository"]["url"].rstrip("/") == REPOSITORY
    for chapter in CHAPTERS:
        links = launch_links(chapter.name, public / "_config.yml")
        assert (public / links.notebook).is_file() and REPOSITORY.removeprefix("https://github.com/") in links.colab
        setup = nbformat.read(public / links.notebook, as_version=4).cells[0]
        assert "setup" in setup.metadata["tags"]
        assert f"{REPOSITORY}/releases/latest/download/{KIT_WHEEL}" in setup.source
    assert f"{REPOSITORY}/releases/latest/download/{KIT_WHEEL}" in (public / "README.md").read_text()


@pytest.mark.parametrize(
    "answers, expected", [(CORRECT, BY_NAME["02_attention"].points), ({}, 0)], ids=["correct", "stub"]
)
def test_learner_notebooks_open_and_grade_with_the_kit(public, tmp_path, answers, expected):
    """Outside the teaching repository, with only the edition's kit importable as `autograder`."""
    site = tmp_path / "site"
    with zipfile.ZipFile(public / "kit" / KIT_WHEEL) as kit:
        kit.extractall(site)
    notebook = nbformat.read(public / "notebooks" / "02_attention.ipynb", as_version=4)
    nbformat.validate(notebook)
    work = tmp_path / "work"
    work.mkdir()
    write(filled_notebook(public / "notebooks" / "02_attention.ipynb", answers), work / "02_attention.ipynb")
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import autograder; print(autograder.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", "02_attention.ipynb", "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    verdict = json.loads(run.stdout)
    assert verdict["score"] == expected and verdict["max_score"] == BY_NAME["02_attention"].points, verdict
