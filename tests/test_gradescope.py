"""`python -m autograder gradescope`: the package for chapter 2, unpacked as Gradescope
unpacks it (source/, submission/, results/ under a root), run with its own `run_autograder`
on real submissions, and each results.json checked against Gradescope's specification."""

import json
import os
import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from classroom import BUGS, CORRECT

from notebooks import filled_notebook, sub_check_count, write

pytestmark = pytest.mark.xdist_group("gradescope")
ROOT = Path(__file__).resolve().parent.parent
CHAPTER = "02_attention"
RELEASE = ROOT / "chapters" / f"{CHAPTER}.ipynb"
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "html", "md", "simple_format", "ansi"}


def validate(results: dict):
    """The fields and types of Gradescope's results.json ("Autograder Specifications")."""
    assert isinstance(results["score"], (int, float)) and results["score"] >= 0
    assert isinstance(results["execution_time"], (int, float)) and results["execution_time"] >= 0
    assert isinstance(results["output"], str) and results["output_format"] in FORMATS
    assert results["stdout_visibility"] in VISIBILITY
    assert isinstance(results["tests"], list)
    for test in results["tests"]:
        assert set(test) == {"name", "number", "score", "max_score", "status", "output", "output_format", "visibility"}
        assert test["output_format"] == "text"  # the checks' messages quote learners' exceptions: never markup
        assert isinstance(test["name"], str) and isinstance(test["number"], str) and isinstance(test["output"], str)
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] in ("passed", "failed") and test["visibility"] in VISIBILITY
        if "advice, 0 points" in test["name"]:  # worth nothing: failed advice is shown, never scored
            assert test["max_score"] == 0 and (test["status"] == "passed") == (test["output"] == "passed")
        else:
            assert (test["status"] == "passed") == (test["score"] == test["max_score"])
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))
    for entry in results.get("leaderboard", []):
        assert isinstance(entry["name"], str) and isinstance(entry["value"], (int, float, str))
        assert entry.get("order", "desc") in ("asc", "desc")


def unpack(package: Path, folder: Path):
    """Extract keeping the files' modes, as Gradescope's unzip does."""
    with zipfile.ZipFile(package) as archive:
        for info in archive.infolist():
            archive.extract(info, folder)
            os.chmod(folder / info.filename, (info.external_attr >> 16) & 0o777)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    target = tmp_path_factory.mktemp("package") / "attention.zip"
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "gradescope", CHAPTER, "-o", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return target


def run_autograder(package: Path, root: Path, files: dict) -> dict:
    """Lay out /autograder as Gradescope does under ``root``, submit ``files`` (name ->
    notebook, text, or a callable that makes the entry), run run_autograder."""
    for folder in ("source", "submission", "results"):
        (root / folder).mkdir(parents=True)
    unpack(package, root / "source")
    for name, content in files.items():
        path = root / "submission" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            write(content, path)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": ".venv/bin/python"}
    run = subprocess.run(
        [str(root / "source" / "run_autograder")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"grader {root / 'source' / 'autograder'}" in run.stdout, run.stdout + run.stderr  # the package's copy
    results = json.loads((root / "results" / "results.json").read_text())
    validate(results)
    return results


def test_package_holds_the_grader_and_a_private_seed(package, tmp_path):
    names = zipfile.ZipFile(package).namelist()
    assert {
        "setup.sh",
        "run_autograder",
        "requirements.txt",
        "gradescope.json",
        "private/seed",
        "autograder/gradescope.py",
        "autograder/checks/attention.py",
        "solutions/attention.py",
    } <= set(names)
    assert not any("__pycache__" in n or n.startswith(("tests/", "chapters/")) for n in names)
    seed = zipfile.ZipFile(package).read("private/seed")
    other = tmp_path / "other.zip"
    subprocess.run([sys.executable, "-m", "autograder", "gradescope", CHAPTER, "-o", str(other)], cwd=ROOT, check=True)
    assert zipfile.ZipFile(other).read("private/seed") != seed, "every package draws its own private seed"
    modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in zipfile.ZipFile(package).infolist()}
    assert modes["run_autograder"] & stat.S_IXUSR and modes["setup.sh"] & stat.S_IXUSR
    assert modes["private/seed"] == 0o600


def test_setup_installs_the_pinned_requirements(package, tmp_path):
    unpack(package, tmp_path)
    assert (tmp_path / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
    setup = (tmp_path / "setup.sh").read_text()
    assert subprocess.run(["bash", "-n", str(tmp_path / "setup.sh")]).returncode == 0
    assert re.search(r"apt-get install .*bubblewrap", setup) and "python3.11 -m venv" in setup
    requirements = [line.split(";")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    pins = dict(r.split("==") for r in requirements if "==" in r and not r.startswith("#"))  # not ranges or markers
    torch_pin = subprocess.run(
        ["grep", "-E", "^torch==", str(tmp_path / "requirements.txt")], capture_output=True, text=True
    ).stdout.strip()  # what setup.sh's grep selects
    assert torch_pin == f"torch=={pins['torch']}"
    assert "download.pytorch.org/whl/cpu" in setup and '-r "$HERE/requirements.txt"' in setup


def test_correct_submission_gets_full_marks(package, tmp_path):
    results = run_autograder(package, tmp_path, {"my work/02_attention.ipynb": filled_notebook(RELEASE, CORRECT)})
    assert results["score"] == 14 and all(t["status"] == "passed" for t in results["tests"])
    public = [t for t in results["tests"] if t["visibility"] == "visible"]
    private = [t for t in results["tests"] if t["visibility"] == "after_published"]
    assert len(public) == len(private) == sub_check_count("attention") and len(results["tests"]) == 2 * len(public)
    assert sum(t["max_score"] for t in public) == sum(t["max_score"] for t in private) == 7
    assert len({t["number"] for t in results["tests"]}) == 2 * len(public)
    assert "leaderboard" not in results  # chapter 2 has none


def test_buggy_submission_is_told_what_is_wrong(package, tmp_path):
    results = run_autograder(
        package,
        tmp_path,
        {
            "02_attention.ipynb": filled_notebook(
                RELEASE, {**CORRECT, "scaled_dot_product_attention": BUGS["scaled_dot_product_attention"]}
            )
        },
    )
    failed = [t for t in results["tests"] if t["status"] == "failed"]
    assert 0 < results["score"] < 14 and failed
    assert all(t["name"].startswith("scaled_dot_product_attention") for t in failed)
    assert any("sqrt" in t["output"] for t in failed), [t["output"] for t in failed]
    # the private run fails the same checks: its inputs differ, the bug does not
    assert {t["name"].rsplit(" (", 1)[0] for t in failed if t["visibility"] == "visible"} == {
        t["name"].rsplit(" (", 1)[0] for t in failed if t["visibility"] == "after_published"
    }


def test_empty_submission_scores_zero_with_a_message(package, tmp_path):
    results = run_autograder(package, tmp_path, {})
    assert results["score"] == 0 and "No notebook" in results["output"]
    assert results["tests"] and all(t["status"] == "failed" for t in results["tests"])


@pytest.mark.parametrize("kind", ["two_notebooks", "symlink", "folder", "fifo", "broken_json"])
def test_unusable_submissions_score_zero_with_a_message(package, tmp_path, kind):
    notebook = filled_notebook(RELEASE, CORRECT)
    files = {
        "two_notebooks": {"a.ipynb": notebook, "b/c.ipynb": notebook},
        "symlink": {"02_attention.ipynb": lambda p: p.symlink_to(ROOT / "chapters" / f"{CHAPTER}.ipynb")},
        "folder": {"02_attention.ipynb": lambda p: p.mkdir()},
        "fifo": {"02_attention.ipynb": lambda p: os.mkfifo(p)},
        "broken_json": {"02_attention.ipynb": '{"cells": [ broken'},
    }[kind]
    said = {
        "two_notebooks": "2 notebooks",
        "symlink": "symbolic link",
        "folder": "a folder",
        "fifo": "not a regular file",
        "broken_json": "invalid JSON",
    }[kind]
    results = run_autograder(package, tmp_path, files)
    assert results["score"] == 0 and said in results["output"], results["output"]


def test_public_half_has_a_seed_of_its_own_where_replaying_the_kit_gains_nothing(package, tmp_path):
    """The visible half's seed is drawn per package like the private one, never the practice seed whose
    values the learner's kit holds: an answer replaying the kit (which scores at the practice seed,
    tests/test_seeds.py) gets nothing on either half."""
    from kit_replay import replaying_answers

    from autograder.gradescope import build_package
    from autograder.seeds import PRACTICE_SEED

    archive = zipfile.ZipFile(package)
    public, private = (int(archive.read(f"private/{name}")) for name in ("public_seed", "seed"))
    assert PRACTICE_SEED not in (public, private) and public != private
    assert {i.filename: (i.external_attr >> 16) & 0o777 for i in archive.infolist()}["private/public_seed"] == 0o600
    # Seeds fixed here: causal_mask's n is drawn from 5..13, so one seed in 9 meets the n the kit recorded.
    fixed = build_package(CHAPTER, tmp_path / "fixed.zip", seed=54321, public_seed=12345)
    replay = filled_notebook(RELEASE, {"*": replaying_answers("attention")})
    results = run_autograder(fixed, tmp_path / "root", {"02_attention.ipynb": replay})
    assert {t["visibility"] for t in results["tests"]} == {"visible", "after_published"}
    assert results["score"] == 0, [t["name"] for t in results["tests"] if t["status"] == "passed"]


# No slash (it is a file name); the backtick ends the code span the summary used to put the name in.
HOSTILE_NAME = "`[won](https:evil.example) ![x](x.png) <img src=x onerror=alert(1)> www.evil.example"


def shown(markdown: str):
    """What Gradescope shows of a Markdown ``output``: (its HTML, rendered by a CommonMark parser that
    links bare URLs as GitHub does, and its text)."""
    from bs4 import BeautifulSoup
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark", {"linkify": True}).enable("linkify").render(markdown)
    return rendered, BeautifulSoup(rendered, "html.parser").get_text()


def markup(rendered: str) -> list[str]:
    from bs4 import BeautifulSoup

    return [str(t) for t in BeautifulSoup(rendered, "html.parser").find_all(["a", "img", "b", "script"])]


def test_a_file_name_cannot_put_links_images_or_html_in_the_summary(package, tmp_path):
    results = run_autograder(package, tmp_path, {f"{HOSTILE_NAME}.ipynb": filled_notebook(RELEASE, CORRECT)})
    rendered, text = shown(results["output"])
    assert results["output_format"] == "md" and results["score"] == 14
    assert markup(rendered) == [] and f"{HOSTILE_NAME}.ipynb" in text


def test_a_leaderboard_note_cannot_put_links_images_or_html_in_the_summary():
    """A leaderboard's note quotes the learner's exception (e.g. CausalLM's own message)."""
    from autograder.chapters import BY_NAME
    from autograder.gradescope import _results

    note = f"No leaderboard entry: CausalLM raised ValueError: {HOSTILE_NAME}\n# a heading"
    output = _results(BY_NAME["06_pretraining"], [], [], [], note, 0.0, notebook="06_pretraining.ipynb").output
    rendered, text = shown(output)
    assert markup(rendered) == [] and "<h1" not in rendered and HOSTILE_NAME in text


def test_a_chinese_notebook_is_told_in_chinese_with_the_same_scores(package, tmp_path):
    answers = {**CORRECT, "scaled_dot_product_attention": BUGS["scaled_dot_product_attention"]}
    english = filled_notebook(RELEASE, answers)
    chinese = filled_notebook(RELEASE, answers)
    chinese.metadata.setdefault("transformers_graded", {})["language"] = (
        "zh"  # what the Chinese edition's notebooks say
    )
    theirs = run_autograder(package, tmp_path / "en", {"02_attention.ipynb": english})
    mine = run_autograder(package, tmp_path / "zh", {"02_attention.ipynb": chinese})
    assert [(t["number"], t["status"], t["score"]) for t in mine["tests"]] == [
        (t["number"], t["status"], t["score"]) for t in theirs["tests"]
    ]
    failed = [t for t in mine["tests"] if t["status"] == "failed"]
    assert failed and all(re.search(r"[\u4e00-\u9fff]", t["output"]) for t in failed), [t["output"] for t in failed]
    assert re.search(r"[\u4e00-\u9fff]", mine["output"]) and not re.search(r"[\u4e00-\u9fff]", theirs["output"])
