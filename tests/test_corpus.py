"""One verdict, two paths: every answer of the corpus (``tests/corpus/<topic>.py``) and every
whole-module alternative (``tests/alternatives/<topic>.py``), put into its chapter's released
notebook, gets the same pass/fail and score on every sub-check from the sandbox (the code of
``python -m autograder grade``) and from the notebook's grade cells; bugs lose points where
the corpus says, with its diagnosis, on sub-checks worth points (never on advice); alternatives
get full marks; advised answers get full marks and exactly the advice the corpus says. Per chapter, one notebook
is also graded by the CLI in a subprocess and by its grade cells in a real Jupyter kernel."""

import json
import re
import subprocess
import sys

import nbformat
import pytest
from corpus import entries
from grade_paths import (
    answer_cell_id,
    cells_of,
    entry_answers,
    kernel_verdict,
    parse_report,
    sandbox_verdict,
    write_submission,
)
from nbclient import NotebookClient

from autograder.chapters import CHAPTERS
from autograder.checks import suites
from autograder.messages import translate
from autograder.suite import ADVICE
from notebooks import ROOT, nbgrader_meta

ALTERNATIVES = ROOT / "tests" / "alternatives"


def _kind(entry) -> str:
    return "bug" if entry.bug else "advised" if entry.advice else "alt"


CASES = [
    pytest.param(chapter, entry, id=f"{chapter.topic}-{entry.name}-{_kind(entry)}-{entry.label}")
    for chapter in CHAPTERS
    for entry in entries(chapter.topic)
]


def same_verdict(sandbox: dict, kernel: dict, scores: dict | None = None):
    """Per sub-check: passed and score equal in both paths (a sub-check the grade cell did not
    report, because the name was missing, counts as failed), and each cell's score is the sum."""
    for key, (passed, score, message) in sandbox.items():
        other = kernel.get(key, (False, 0.0, "not reported by the grade cell"))
        assert (passed, score) == other[:2], f"{key}: sandbox {passed, score} ({message}), grade cell {other}"
    assert set(kernel) <= set(sandbox), f"sub-checks only the grade cell reported: {set(kernel) - set(sandbox)}"
    for name, score in (scores or {}).items():
        assert score == pytest.approx(sum(s for (function, _), (_, s, _) in sandbox.items() if function == name))


def expect_entry(entry, verdict: dict, path: str, topic: str):
    mine = {check: value for (function, check), value in verdict.items() if function == entry.name}
    advice = {check.name for check in suites(topic)[entry.name].checks if check.advice}
    failures = {check: message for check, (passed, _, message) in mine.items() if not passed}
    lost = {check: message for check, message in failures.items() if check not in advice}
    assert mine, f"{path}: no sub-check of {entry.name} was graded"
    if not entry.bug:
        assert not lost, f"{path}: a correct answer lost points: {lost}"
        shown = {check: message for check, message in failures.items() if check in advice}
        assert set(shown) == set(entry.advice), f"{path}: advice shown {shown}, expected {entry.advice}"
        assert all(message.startswith(ADVICE) for message in shown.values()), shown
        if entry.says:
            assert any(entry.says in message for message in shown.values()), f"no advice says {entry.says!r}: {shown}"
        return
    assert lost, f"{path}: the bug got full marks" + (f" (advice shown: {failures})" if failures else "")
    assert not advice.intersection(entry.fails), f"{path}: advice cannot be what a bug loses points on"
    failures = lost
    missed = [check for check in entry.fails if check not in failures]
    assert not missed, f"{path}: these sub-checks should fail and did not: {missed} (failures: {failures})"
    if entry.says:
        assert any(entry.says in message for message in failures.values()), (
            f"{path}: no message says {entry.says!r}: {failures}"
        )


@pytest.mark.parametrize("chapter, entry", CASES)
def test_corpus_answer_same_verdict_in_both_paths(chapter, entry, tmp_path):
    cells = cells_of(write_submission(chapter, entry_answers(chapter, entry), tmp_path / f"{chapter.name}.ipynb"))
    sandbox = sandbox_verdict(cells, chapter, [entry.name])
    kernel, scores = kernel_verdict(cells, chapter, [entry.name])
    same_verdict(sandbox, kernel, scores)
    expect_entry(entry, sandbox, "sandbox", chapter.topic)
    expect_entry(entry, kernel, "grade cell", chapter.topic)
    expect_chinese(sandbox)


def expect_chinese(verdict: dict):
    """Every message translates into Chinese with no English left (the verdicts are the English ones:
    a report is translated after grading), and the values it quotes come through."""
    for key, (passed, _, message) in verdict.items():
        chinese = translate(message, "zh")
        assert chinese.complete, f"{key}: English left in the Chinese message:\n  {message}\n  {chinese.text}"
        for value in re.findall(r"\(\d+(?:, \d+)+\)|\(\d+,\)|-?\d+\.\d+", message):  # shapes and decimals
            assert value in chinese.text, f"{key}: {value} lost in translation:\n  {message}\n  {chinese.text}"


@pytest.mark.parametrize(
    "chapter", [c for c in CHAPTERS if (ALTERNATIVES / f"{c.topic}.py").exists()], ids=lambda c: c.topic
)
def test_whole_module_alternative_full_marks_in_both_paths(chapter, tmp_path):
    path = write_submission(
        chapter, {"*": (ALTERNATIVES / f"{chapter.topic}.py").read_text()}, tmp_path / f"{chapter.name}.ipynb"
    )
    cells = cells_of(path)
    sandbox = sandbox_verdict(cells, chapter, chapter.graded_names)
    kernel, scores = kernel_verdict(cells, chapter, chapter.graded_names)
    same_verdict(sandbox, kernel, scores)
    lost = {key: message for key, (passed, _, message) in sandbox.items() if not passed}
    assert not lost and len(sandbox) == sum(len(s.checks) for s in suites(chapter.topic).values())


def first_bugs(chapter) -> dict:
    """grade_id -> source of the first corpus bug of each graded name that has one."""
    answers = {}
    for entry in entries(chapter.topic):
        if entry.bug:
            answers.setdefault(answer_cell_id(chapter, entry.name), entry.source)
    return answers


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.topic)
def test_cli_and_a_real_kernel_agree(chapter, tmp_path):
    """The notebook with the first bug of each graded name (stubs elsewhere): the grade cells,
    executed in a Jupyter kernel (demo cells skipped), report what the CLI reports."""
    path = write_submission(chapter, first_bugs(chapter), tmp_path / f"{chapter.name}.ipynb")
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(path), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    cli = {(t["function"], t["check"]): (t["passed"], t["score"], t["message"]) for t in report["tests"]}

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        allow_errors=True,
        skip_cells_with_tag="demo",
        resources={"metadata": {"path": str(ROOT)}},
    ).execute()
    kernel, scores = {}, {}
    for cell in notebook.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            assert not [o for o in cell.outputs if o.get("name") == "stderr"], "a grade cell wrote to stderr"
            text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
            verdict = parse_report(text)
            kernel.update(verdict)
            result = [o for o in cell.outputs if o.output_type == "execute_result"]
            name = next(iter({function for function, _ in verdict}), None)
            if name is not None:
                scores[name] = float(result[0]["data"]["text/plain"])
    same_verdict(cli, kernel, scores)
    assert report["score"] == pytest.approx(sum(scores.values()))
