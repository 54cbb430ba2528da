"""The learner's kit (`make kit`): one wheel, no answer key in it, and grades that agree with the
official grader. A fresh virtual environment gets the kit the way a learner's does, and grades from a
folder outside the checkout, from a terminal and in a Jupyter kernel of that environment.

The fresh environment is a new venv with no path to the course's site-packages (no .pth line, no
--system-site-packages): it holds only what the kit's wheel declares. The kit once shipped without
nbformat and jupyterquiz, and a venv that reached the course's packages through a .pth line passed.
As book/setup.md tells learners on Linux, PyTorch's CPU build goes in first, from a wheel that pip
downloads into the test's folder (on this project's machines pip finds it in their local wheel
folder, about 190 MB); the notebook's setup cell then installs the kit and the rest of its
dependencies from the package index. That install takes most of this module's time (measured on this
2-core machine): 170 s with pip's cache warm and a few other jobs, about 10 min with ~8 other jobs
(CPU torch and ipykernel 5 min, the kit with Triton, numpy and matplotlib 4.5 min).
"""

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from autograder.chapters import CHAPTERS as REGISTRY
from autograder.release import with_setup_cell
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


def cpu_torch_wheel(folder: Path) -> Path:
    """The course's torch (the CPU build here) as a wheel file in ``folder``, downloaded by pip."""
    version = importlib.metadata.version("torch")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(folder)]
        + [f"torch=={version}"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (wheel,) = folder.glob("torch-*.whl")
    return wheel


@pytest.fixture(scope="module")
def kit(wheel, tmp_path_factory):
    """The python of a fresh venv (CPU torch and Jupyter's kernel installed first, as a learner
    does) where the notebook's setup cell installed the kit and its dependencies."""
    folder = tmp_path_factory.mktemp("fresh")
    subprocess.run([sys._base_executable, "-m", "venv", str(folder / "venv")], check=True, timeout=300)
    python = folder / "venv" / "bin" / "python"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder)}
    first = [str(python), "-m", "pip", "install", "--quiet", str(cpu_torch_wheel(folder / "wheels")), "ipykernel"]
    run = subprocess.run(first, cwd=folder, capture_output=True, text=True, timeout=1800, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    setup = nbformat.read(ROOT / "notebooks" / "02_attention.ipynb", as_version=4).cells[0]
    assert "setup" in setup.metadata["tags"]
    run = subprocess.run(
        [str(python), "-c", setup.source],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**env, "TRANSFORMERS_GRADED_KIT": str(wheel)},
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
    # the Chinese notebook's setup cell: with the kit alone, figures label in Chinese
    chinese_setup = nbformat.read(ROOT / "notebooks" / "zh" / "02_attention.ipynb", as_version=4).cells[0].source
    plot = (
        'import matplotlib\nmatplotlib.use("Agg")\nimport matplotlib.pyplot as plt\n'
        'fig, ax = plt.subplots()\nax.set_xlabel("sequence length N")\nfig.savefig("figure.png")\nprint(ax.get_xlabel())'
    )
    chinese = subprocess.run(
        [str(kit), "-c", chinese_setup + "\n" + plot],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TRANSFORMERS_GRADED_KIT": str(tmp_path / "missing.whl")},
    )
    assert chinese.returncode == 0 and chinese.stdout.strip() == "序列长度 N", chinese.stderr


def test_the_wheel_declares_its_dependencies(wheel):
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(archive.read(n).decode() for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    required = re.findall(r"^Requires-Dist: (.+)$", metadata, re.M)
    assert {re.split(r"[ ;<>=]", r)[0] for r in required} >= {
        "torch",
        "numpy",
        "matplotlib",
        "nbformat",
        "jupyterquiz",
        "triton",
    }
    assert any(r.startswith("triton") and 'sys_platform == "linux"' in r for r in required)
    assert any(r.startswith("torch") and "<2.14" in r for r in required)  # no newer torch with its CUDA packages
    assert "Requires-Python: >=3.11" in metadata


def _chapter_2(folder: Path) -> tuple[Path, Path]:
    """Chapter 2's learner notebook filled with a correct answer, and with one that forgets the scale."""
    source = (ALTERNATIVES / "attention.py").read_text()
    buggy_source = source.replace("* (1.0 / math.sqrt(q.shape[-1]))", "")
    assert buggy_source != source
    correct = write(filled_notebook(ATTENTION, {"*": source}), folder / "02_attention.ipynb")
    return correct, write(filled_notebook(ATTENTION, {"*": buggy_source}), folder / "02_buggy.ipynb")


def test_fresh_environment_grades_chapter_2_from_a_terminal(kit, tmp_path):
    assert "No module named 'solutions'" in in_kit(kit, "import solutions", tmp_path).stderr
    correct, buggy = _chapter_2(tmp_path)

    def grade(*args):
        return subprocess.run(
            [str(kit), "-m", "autograder", "grade", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )

    run = grade(correct.name)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "scaled_dot_product_attention:" in run.stdout and "[FAIL]" not in run.stdout, run.stdout
    run = grade(buggy.name)
    assert run.returncode == 0, run.stderr[-3000:]  # grading ran: 0 whatever the score
    assert "[FAIL]" in run.stdout and "not divided by sqrt(d_k)" in run.stdout
    report = json.loads(grade(correct.name, "--json").stdout)
    assert report["score"] == report["max_score"] == 14, [t for t in report["tests"] if not t["passed"]]
    report = json.loads(grade(buggy.name, "--json").stdout)
    assert 5 <= report["score"] < report["max_score"]
    chinese = json.loads(grade(buggy.name, "--json", "--lang", "zh").stdout)  # the kit speaks Chinese too
    assert [t["passed"] for t in chinese["tests"]] == [t["passed"] for t in report["tests"]]
    assert any("没有除以 sqrt(d_k)" in t["message"] for t in chinese["tests"]), [t["message"] for t in chinese["tests"]]
    refused = in_kit(kit, "import sys; from autograder.__main__ import main; sys.exit(main())", tmp_path, "course", "x")
    assert refused.returncode == 2 and "learner's kit has `grade`" in refused.stderr


def _run_in_fresh_kernel(kit, notebook_path: Path, monkeypatch) -> nbformat.NotebookNode:
    """Every cell of the notebook, top to bottom, in a Jupyter kernel of the fresh venv."""
    spec = notebook_path.parent / "jupyter" / "kernels" / "fresh-kit"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [str(kit), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "fresh kit", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(spec.parent.parent))
    notebook = nbformat.read(notebook_path, as_version=4)
    NotebookClient(
        notebook, timeout=900, kernel_name="fresh-kit", resources={"metadata": {"path": str(notebook_path.parent)}}
    ).execute()  # raises at the first cell that fails
    return notebook


def _check_cells(notebook) -> dict[str, tuple[float, str]]:
    """{graded name: (score, report)} from the outputs of the check cells."""
    found = {}
    for cell in notebook.cells:
        match = re.search(r'grade\("\w+\.(\w+)"', cell.source) if cell.cell_type == "code" else None
        if match:
            (result,) = [o for o in cell.outputs if o.output_type == "execute_result"]
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            assert not [o for o in cell.outputs if o.get("name") == "stderr"], "a check cell wrote to stderr"
            found[match.group(1)] = (float(result["data"]["text/plain"]), text)
    return found


def test_fresh_environment_grades_in_the_notebooks_own_check_cells(kit, tmp_path, monkeypatch):
    correct, buggy = (write(with_setup_cell(nbformat.read(p, as_version=4)), p) for p in _chapter_2(tmp_path))
    kernel = _run_in_fresh_kernel(kit, correct, monkeypatch)
    assert "setup" in kernel.cells[0].metadata["tags"]
    assert kernel.cells[0].outputs == []  # the setup cell found the kit installed: it installed nothing
    checks = _check_cells(kernel)
    assert set(checks) == set(REGISTRY[1].graded_names)
    assert all("[FAIL]" not in report for _, report in checks.values()), checks
    quiz = next(c for c in kernel.cells if "display_quiz" in c.source)
    shown = [o for o in quiz.outputs if o.output_type == "display_data"]
    assert shown and any("text/html" in o.data or "application/javascript" in o.data for o in shown)

    checks = _check_cells(_run_in_fresh_kernel(kit, buggy, monkeypatch))
    score, report = checks["scaled_dot_product_attention"]
    assert "not divided by sqrt(d_k)" in report and "[FAIL]" in report
    verdict = json.loads(
        in_kit(
            kit,
            "import json, sys; from autograder.__main__ import main; sys.exit(main())",
            tmp_path,
            "grade",
            buggy.name,
            "--json",
        ).stdout
    )
    terminal = sum(t["score"] for t in verdict["tests"] if t["function"] == "scaled_dot_product_attention")
    assert score == pytest.approx(terminal)  # both paths, the same verdict


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
    assert "needs Linux with Triton, or a hosted notebook" in run.stdout
    verdicts = [line for line in run.stdout.splitlines() if line.startswith(("True", "False"))]
    assert verdicts and all(  # advice sub-checks carry their prefix
        line.startswith("False ") and "not attempted here: this exercise needs Linux with Triton" in line
        for line in verdicts
    )
