"""The learner's kit (`make kit`): one wheel, no answer key in it, and grades that agree with the
official grader. A fresh virtual environment gets the kit the way a hosted notebook gets it (its
setup cell installs the built wheel) and grades from a folder outside the checkout.

The fresh environment is a new venv without this checkout's editable install; to save installing
torch (750 MB) per run, a .pth line puts the course venv's site-packages on its path. A .pth line
adds a plain folder, whose own .pth files (the editable install of `solutions`) do not run, so
`import solutions` fails there (tested).
"""

import ast
import json
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest

from notebooks import CHAPTERS, ROOT, filled_notebook, write

pytestmark = pytest.mark.xdist_group("kit")  # one wheel, one environment, in one worker
ALTERNATIVES = Path(__file__).parent / "alternatives"
ATTENTION = CHAPTERS[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")  # `make kit` writes dist/; the test keeps its wheel to itself
    run = subprocess.run(
        [sys.executable, str(ROOT / "kit" / "build.py"), "--dist", str(dist)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def kit(wheel, tmp_path_factory):
    """The python of a fresh venv where the notebook's setup cell installed the kit."""
    folder = tmp_path_factory.mktemp("fresh")
    subprocess.run([sys._base_executable, "-m", "venv", str(folder / "venv")], check=True, timeout=300)
    python = folder / "venv" / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "course_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    setup = nbformat.read(ROOT / "notebooks" / "02_attention.ipynb", as_version=4).cells[0]
    assert "setup" in setup.metadata["tags"]
    run = subprocess.run(
        [str(python), "-c", setup.source],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder), "TRANSFORMERS_GRADED_KIT": str(wheel)},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return python


def in_kit(kit, code, cwd, *args):
    return subprocess.run(
        [str(kit), "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )


def test_setup_cell_installed_the_kit_and_does_nothing_where_it_is(kit, tmp_path):
    installed = in_kit(
        kit,
        "import autograder, importlib.metadata as m; print(autograder.__file__, m.version('transformers-graded-kit'))",
        tmp_path,
    )
    assert installed.returncode == 0 and "site-packages/autograder" in installed.stdout, installed.stderr
    setup = nbformat.read(ROOT / "notebooks" / "02_attention.ipynb", as_version=4).cells[0].source
    again = subprocess.run(
        [str(kit), "-c", setup],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "TRANSFORMERS_GRADED_KIT": str(tmp_path / "missing.whl")},
    )
    assert again.returncode == 0, again.stderr  # the kit is there: it installs nothing (that path would fail)


def test_the_wheel_declares_its_dependencies(wheel):
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(archive.read(n).decode() for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    required = re.findall(r"^Requires-Dist: (.+)$", metadata, re.M)
    assert {re.split(r"[ ;<>=]", r)[0] for r in required} >= {"torch", "numpy", "matplotlib", "triton"}
    assert any(r.startswith("triton") and 'sys_platform == "linux"' in r for r in required)
    assert "Requires-Python: >=3.11" in metadata


def test_fresh_environment_grades_chapter_2_without_the_reference(kit, tmp_path):
    assert "No module named 'solutions'" in in_kit(kit, "import solutions", tmp_path).stderr
    correct = write(
        filled_notebook(ATTENTION, {"*": (ALTERNATIVES / "attention.py").read_text()}), tmp_path / "02_attention.ipynb"
    )
    buggy_source = (ALTERNATIVES / "attention.py").read_text().replace("* (1.0 / math.sqrt(q.shape[-1]))", "")
    buggy = write(filled_notebook(ATTENTION, {"*": buggy_source}), tmp_path / "02_buggy.ipynb")
    grade = "import sys; from autograder.__main__ import main; sys.exit(main())"
    report = json.loads(in_kit(kit, grade, tmp_path, "grade", correct.name, "--json").stdout)
    assert report["score"] == report["max_score"] == 14, [t for t in report["tests"] if not t["passed"]]
    run = in_kit(kit, grade, tmp_path, "grade", buggy.name, "--json")
    report = json.loads(run.stdout)
    assert 5 <= report["score"] < report["max_score"]
    assert any("not divided by sqrt(d_k)" in t["message"] for t in report["tests"] if not t["passed"])
    refused = in_kit(kit, grade, tmp_path, "course", "somewhere")
    assert refused.returncode == 2 and "learner's kit has `grade`" in refused.stderr


# --- no answer key in the wheel ----------------------------------------------------------


def _normalized(text: str) -> list[str]:
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


def _reference_bodies() -> dict[str, str]:
    """{"topic.function": its body (no docstring), normalized} for bodies of 2 lines or more."""
    bodies = {}
    for path in sorted((ROOT / "solutions").glob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) is not None else node.body
                if not body:
                    continue
                lines = _normalized("\n".join(source.splitlines()[body[0].lineno - 1 : body[-1].end_lineno]))
                if len(lines) >= 2:
                    bodies[f"{path.stem}.{node.name}"] = "\n".join(lines)
    return bodies


def _holding(files: dict[str, str], bodies: dict[str, str]) -> list[tuple[str, str]]:
    normalized = {name: "\n".join(_normalized(text)) for name, text in files.items()}
    return [(function, name) for function, body in bodies.items() for name, text in normalized.items() if body in text]


def test_no_function_body_of_the_reference_is_in_the_wheel(wheel):
    bodies = _reference_bodies()
    assert len(bodies) >= 20
    with zipfile.ZipFile(wheel) as archive:
        files = {name: archive.read(name).decode("latin-1") for name in archive.namelist()}
    assert any(name.endswith("recorded.pt") for name in files) and any(name.endswith("oracle.py") for name in files)
    assert not any(name.startswith("solutions/") or name.endswith(("sandbox.py", "batch.py")) for name in files)
    assert _holding(files, bodies) == []
    # The same comparison finds the reference where it is: in solutions/, and the given code of chapter 5.
    assert len(_holding({p.name: p.read_text() for p in (ROOT / "solutions").glob("*.py")}, bodies)) == len(bodies)
    chapter_5 = (ROOT / "notebooks" / "05_transformer_block.ipynb").read_text()
    given = "\n".join(
        c.source for c in nbformat.reads(chapter_5, as_version=4).cells if "given" in c.metadata.get("tags", [])
    )
    assert {"attention.softmax", "multi_head_attention.split_heads"} <= {f for f, _ in _holding({"5": given}, bodies)}


def test_without_triton_chapter_7_runs_and_its_triton_part_says_what_it_needs(kit, tmp_path):
    notebook = json.loads((ROOT / "notebooks" / "07_flash_attention.ipynb").read_text())
    first = next(
        c for c in notebook["cells"] if c["cell_type"] == "code" and "setup" not in c["metadata"].get("tags", [])
    )
    code = (
        "import sys\nsys.modules['triton'] = None  # as on macOS and Windows\n" + "".join(first["source"]) + "\n"
        "from autograder.checks import suites\nfrom autograder.student import KernelBackend, Student\n"
        "suite = suites('flash_attention')['flash_attention_triton']\n"
        "for r in suite.run(Student(KernelBackend({'flash_attention_triton': print}), 'flash_attention_triton')):\n"
        "    print(r.passed, r.message)\n"
    )
    run = in_kit(kit, code, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "needs Linux with Triton" in run.stdout
    verdicts = [line for line in run.stdout.splitlines() if line.startswith(("True", "False"))]
    assert verdicts and all(line.startswith("False needs Triton (Linux)") for line in verdicts)
