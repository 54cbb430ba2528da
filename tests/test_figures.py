"""Figure labels in the reader's language (autograder/figures.py): the catalogue's patterns, a
Chinese learner notebook's setup cell making a real kernel draw its plots with Chinese labels, and
the benchmark figure chapter 7 shows from a file."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import nbformat
import pytest
from nbclient import NotebookClient

from autograder import figures
from autograder.release import setup_source

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_a_pattern_holds_the_numbers_outside_the_maths_as_fields():
    assert figures.pattern("head 3 of 12 ($d_k = 16$)") == ("head {0} of {1} ($d_k = 16$)", ["3", "12"])
    assert figures.pattern("loss 2.50, N = 1,024") == ("loss {0}, N = {1}", ["2.50", "1,024"])
    assert figures.has_words("softmax($QK^T$)") and not figures.has_words("$\\propto N^2$")
    assert not figures.has_words("12 (8)")


def test_labels_are_translated_with_their_numbers_and_tick_labels_are_left_alone():
    table = figures.table("zh")
    english = next(key for key in table if "{0}" in key and "$" not in key)
    fig, ax = plt.subplots()
    numbers = [str(n) for n in range(7, 7 + len(set(figures.FIELD.findall(english))))]
    ax.set_title(figures.filled(english, numbers))
    ax.set_xlabel("sequence length N")
    ax.set_xticks([0, 1], ["the", "cat"])  # a sentence's tokens are data
    ax.plot([0, 1], label="measured")
    ax.legend()
    assert figures.translate(fig, "zh") == []
    assert ax.get_title() == figures.filled(table[english], numbers)
    assert ax.get_xlabel() == table["sequence length N"]
    assert ax.get_legend().get_texts()[0].get_text() == table["measured"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["the", "cat"]
    ax.set_ylabel("a label nobody translated")
    assert figures.translate(fig, "zh") == ["a label nobody translated"]
    plt.close(fig)


def test_every_catalogue_translation_keeps_its_fields_and_maths():
    for item in json.loads(figures.catalogue_path("zh").read_text(encoding="utf-8")):
        english, chinese = item["en"], item["zh"]
        fields = sorted(set(figures.FIELD.findall(english)))
        assert sorted(set(figures.FIELD.findall(chinese))) == fields, item
        assert figures.MATHS.findall(english) == figures.MATHS.findall(chinese), item


PLOT = """\
import matplotlib.pyplot as plt

fig, ax = plt.subplots()
ax.plot([1, 2], label="measured")
ax.set_xlabel("sequence length N")
ax.legend()
plt.show()
print(repr(ax.get_xlabel()), repr(ax.get_legend().get_texts()[0].get_text()))
"""


@pytest.mark.parametrize(
    "lang, environment, expected",
    [("zh", None, "zh"), ("en", None, "en"), ("zh", "en", "en")],
    ids=["chinese notebook", "english notebook", "chinese notebook, TRANSFORMERS_GRADED_LANG=en"],
)
def test_the_setup_cell_makes_the_kernel_label_figures_in_the_notebook_language(
    lang, environment, expected, tmp_path, monkeypatch
):
    if environment:
        monkeypatch.setenv("TRANSFORMERS_GRADED_LANG", environment)
    else:
        monkeypatch.delenv("TRANSFORMERS_GRADED_LANG", raising=False)
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(setup_source(lang)), nbformat.v4.new_code_cell(PLOT)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    path = tmp_path / "learner.ipynb"
    nbformat.write(notebook, path)
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = notebook.cells[1].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs)
    printed = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert not any("missing from font" in o.text for o in outputs if o.output_type == "stream"), outputs
    table = figures.table("zh")
    words = ("sequence length N", "measured")
    shown = tuple(table[w] for w in words) if expected == "zh" else words
    assert printed.strip() == " ".join(map(repr, shown))


def test_the_benchmark_figure_is_drawn_again_from_its_numbers_in_both_languages(tmp_path):
    """Chapter 7 shows benchmarks/flash_attention.py's figure from a file: --replot draws the committed
    English PNG byte for byte from the saved numbers, and its Chinese twin with every label translated."""
    saved = ROOT / "chapters" / "figures" / "flash_attention_benchmark.png"
    shutil.copy(saved.with_suffix(".json"), tmp_path / "flash_attention_benchmark.json")
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "flash_attention.py"),
            "--replot",
            "--figure",
            str(tmp_path / saved.name),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]  # a label with no translation stops it, naming the label
    assert (tmp_path / saved.name).read_bytes() == saved.read_bytes()
    chinese, committed = tmp_path / "flash_attention_benchmark.zh.png", saved.with_suffix(".zh.png")
    assert committed.exists() and chinese.read_bytes() != saved.read_bytes()
    assert committed.read_bytes()[16:24] == chinese.read_bytes()[16:24]  # the PNG header's width and height
    page = json.loads((ROOT / "chapters" / "zh" / "07_flash_attention.json").read_text(encoding="utf-8"))
    assert any(f"figures/{committed.name}" in entry.get("markdown", {}).get("zh", "") for entry in page.values())
