"""The prose cannot drift from what the chapters compute.

Where a chapter's text states a number or a shape that comes from its own run (a measured time, a
gradient norm, a fitted slope) or from a benchmark whose figure it shows, the number is checked here
against the output of that run: the executed chapter that the book renders (``make
book/chapters/NN_slug.ipynb``) or the benchmark's saved figures. Each claim is a regular expression
over one markdown cell and a value read from one code cell's printed output.
"""

import json
import re
import subprocess
from pathlib import Path

import nbformat
import pytest

from solutions.transformer_block import count_parameters

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.xdist_group("book")  # the book's tests render the same notebooks


@pytest.fixture(scope="module")
def executed():
    """The executed chapter ``name`` (rendered once for the book; a no-op when it is up to date)."""
    cache = {}

    def load(name):
        if name not in cache:
            target = f"book/chapters/{name}.ipynb"
            run = subprocess.run(["make", target], cwd=ROOT, capture_output=True, text=True, timeout=1200)
            assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
            cache[name] = nbformat.read(ROOT / target, as_version=4)
        return cache[name]

    return load


def cell(notebook, cell_id):
    return next(c for c in notebook.cells if c.get("id") == cell_id)


def printed(notebook, cell_id) -> str:
    return "".join(o.get("text", "") for o in cell(notebook, cell_id).outputs if o.output_type == "stream")


def stated(notebook, cell_id, pattern) -> re.Match:
    """The match of ``pattern`` in a markdown cell (line breaks read as spaces)."""
    text = " ".join(cell(notebook, cell_id).source.split())
    found = re.search(pattern, text)
    assert found, f"the prose of {cell_id} no longer says {pattern!r}: update this claim with the text"
    return found


def numbers(text) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+|-?\d+", text)]


def test_ch2_attention_time_and_memory_grow_as_the_text_says(executed):
    notebook = executed("02_attention")
    stated(notebook, "cell-18", r"double the sequence and the weight matrix takes four times the memory")
    stated(
        notebook,
        "cell-18",
        r"grows with every doubling and, at the longest lengths, about as fast as the dotted \$N\^2\$ line",
    )
    rows = [numbers(line) for line in printed(notebook, "cell-19").splitlines() if line.startswith("N =")]
    lengths, ms, mib = zip(*rows)
    assert all(b == 2 * a for a, b in zip(lengths, lengths[1:]))
    assert all(b == pytest.approx(4 * a) for a, b in zip(mib, mib[1:])), mib
    # CPU time (not wall time), the best of five: a busy machine adds little to it. The bounds are loose on purpose.
    assert all(b > a for a, b in zip(ms, ms[1:])), f"the time does not grow with every doubling: {ms}"
    assert ms[-1] >= 2.5 * ms[-2], f"the last doubling is far from N^2: {ms}"


def test_ch5_eps_factor_is_the_printed_one(executed):
    notebook = executed("05_transformer_block")
    said = float(stated(notebook, "cell-07", r"by a factor of about (\d+)").group(1))
    measured = float(re.search(r"differ by a factor of (\d+)", printed(notebook, "cell-08")).group(1))
    assert said == pytest.approx(measured, rel=0.1), (said, measured)


def test_ch5_gradient_norms_behave_as_the_text_says(executed):
    notebook = executed("05_transformer_block")
    output = printed(notebook, "cell-26")
    post = numbers(re.search(r"Post-LN, last layer's gradient norm for L = \[[^\]]*\]: (.*)", output).group(1))
    pre = numbers(re.search(r"Pre-LN, last layer's gradient norm for L = \[[^\]]*\]: (.*)", output).group(1))
    ratio_12 = float(re.search(r"Post-LN / Pre-LN = ([\d.]+)", output).group(1))
    stated(notebook, "cell-27", r"Post-LN gradients are about three times the Pre-LN ones in the 12-layer stack")
    assert 2.5 <= ratio_12 <= 3.5, ratio_12
    stated(notebook, "cell-27", r"roughly doubles from 2 to 32 layers")
    assert 1.6 <= post[-1] / post[0] <= 2.6, post
    stated(notebook, "cell-27", r"at 32 layers they differ about eightfold")
    assert 6.5 <= post[-1] / pre[-1] <= 9.5, (post, pre)
    assert all(b < a for a, b in zip(pre, pre[1:])), f"the Pre-LN gradient does not shrink with depth: {pre}"


def test_ch5_gpt3_13b_counts_are_the_computed_ones(executed):
    notebook = executed("05_transformer_block")
    found = stated(notebook, "cell-36", r"5140 gives ([\d.]+)B and 5120 gives ([\d.]+)B")
    row = next(line for line in printed(notebook, "cell-35").splitlines() if line.startswith("GPT-3 13B"))
    assert f"{float(found.group(1)):.4g}B" in row, row
    assert float(found.group(2)) == round(count_parameters(40, 5120, 50257, 2048) / 1e9, 2)
    stated(notebook, "cell-36", r"\(5140 is the closer of the two\)")
    assert abs(float(found.group(1)) - 13.0) < abs(float(found.group(2)) - 13.0)


def test_ch8_power_law_slopes_are_described_as_printed(executed):
    notebook = executed("08_beyond_quadratic")
    output = printed(notebook, "fe3c43be")
    slopes = numbers(output.split("local slopes between neighbouring sizes:")[1])
    stated(notebook, "30ace9c8", r"the points are \*\*not\*\* on one line")
    stated(notebook, "30ace9c8", r"the last step \(32 to 64\) is about one and a half times as steep as the first two")
    first_two = (slopes[0] + slopes[1]) / 2
    assert 1.3 <= slopes[-1] / first_two <= 1.7, slopes
    assert max(slopes) / min(slopes) < 0.8, f"the slopes agree: the text says they do not ({slopes})"


def test_ch7_benchmark_figures_are_the_saved_ones():
    """Chapter 7 quotes the CPU run of benchmarks/flash_attention.py behind its figure."""
    saved = json.loads((ROOT / "chapters/figures/flash_attention_benchmark.json").read_text())
    row = {(r["method"], r["n"]): r for r in saved["rows"] if r["device"] == "cpu" and "error" not in r}
    notebook = nbformat.read(ROOT / "chapters/07_flash_attention.ipynb", as_version=4)
    gib = 2.0**30
    found = stated(notebook, "cell-32", r"one call took ([\d.]+) GiB at N = 8192 and ([\d.]+) GiB at N = 16384")
    assert float(found.group(1)) == round(row["naive", 8192]["bytes"] / gib, 1)
    assert float(found.group(2)) == round(row["naive", 16384]["bytes"] / gib, 1)
    found = stated(notebook, "cell-32", r"The tiled version needed ([\d.]+) MiB at N = 8192, ([\d.]+) ?% of the naive")
    assert float(found.group(1)) == round(row["tiled", 8192]["bytes"] / 2**20, 1)
    assert float(found.group(2)) == round(100 * row["tiled", 8192]["bytes"] / row["naive", 8192]["bytes"], 2)
    found = stated(notebook, "cell-32", r"\(([\d.]+) s against ([\d.]+) s at N = 16384")
    assert float(found.group(1)) == round(row["tiled", 16384]["seconds"], 1)
    assert float(found.group(2)) == round(row["naive", 16384]["seconds"], 1)
    stated(notebook, "cell-32", r"slower than the naive one at small N and faster at the largest")
    assert row["tiled", 512]["seconds"] > row["naive", 512]["seconds"]
    assert row["tiled", 16384]["seconds"] < row["naive", 16384]["seconds"]
    found = stated(notebook, "cell-32", r"was the fastest at every length \(([\d.]+) s at N = 16384\)")
    assert float(found.group(1)) == round(row["sdpa", 16384]["seconds"], 1)
    assert all(row["sdpa", n]["seconds"] <= min(row["tiled", n]["seconds"], row["naive", n]["seconds"]) for _, n in row)
