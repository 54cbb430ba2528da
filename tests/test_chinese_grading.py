"""A Chinese learner notebook is graded in Chinese, with the verdicts it gets in English: by
``python -m autograder grade`` (its metadata chooses the language, ``--lang`` overrides it) and by
its own check cells in a real Jupyter kernel (its setup cell sets the language)."""

import json
import re
import subprocess
import sys

import nbformat
from nbclient import NotebookClient

from autograder.messages import translate
from autograder.release import learner_notebook
from notebooks import ROOT

CHINESE = re.compile(r"[\u4e00-\u9fff]")
UNSTABLE_SOFTMAX = """def softmax(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)
"""


def chinese_notebook(tmp_path):
    """Chapter 2's Chinese learner notebook with a softmax that overflows on large scores."""
    notebook = learner_notebook(ROOT / "chapters" / "02_attention.ipynb", "zh")
    stub = next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "softmax")
    stub.source = UNSTABLE_SOFTMAX
    path = tmp_path / "02_attention.ipynb"
    nbformat.write(notebook, path)
    return path, notebook


def grade(path, *options):
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(path), "--json", *options],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=path.parent,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def test_grade_speaks_the_notebooks_language_with_the_same_verdicts(tmp_path):
    path, _ = chinese_notebook(tmp_path)
    chinese, english = grade(path), grade(path, "--lang", "en")
    assert chinese["language"] == "zh" and english["language"] == "en"
    assert [(t["check"], t["passed"], t["score"]) for t in chinese["tests"]] == [
        (t["check"], t["passed"], t["score"]) for t in english["tests"]
    ]
    failed = [(zh, en) for zh, en in zip(chinese["tests"], english["tests"]) if not en["passed"] and en["message"]]
    assert failed, "the unstable softmax should fail a check"
    for zh, en in failed:
        assert zh["message"] == translate(en["message"], "zh").text
        assert CHINESE.search(zh["message"]), zh["message"]


def test_check_cells_speak_chinese_in_the_kernel(tmp_path):
    path, notebook = chinese_notebook(tmp_path)
    check = next(
        i for i, c in enumerate(notebook.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "softmax_check"
    )
    notebook.cells = notebook.cells[: check + 1]  # the setup cell runs first, as in Jupyter
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    report = "".join(o.get("text", "") for o in notebook.cells[check].outputs if o.output_type == "stream")
    assert "未通过" in report and CHINESE.search(report.split("未通过", 1)[1]), report
    english = grade(path, "--lang", "en")
    score = float(notebook.cells[check].outputs[-1]["data"]["text/plain"])
    assert score == sum(t["score"] for t in english["tests"] if t["function"] == "softmax")
