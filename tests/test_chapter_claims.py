"""The prose cannot drift from what the chapters compute.

Where a chapter's text states a number or a shape that comes from its own run (a measured time, a
gradient norm, a fitted slope) or from a benchmark whose figure it shows, the number is checked here
against the output of that run: the executed chapter that the book renders (``make
book/chapters/NN_slug.ipynb``) or the benchmark's saved figures. Each claim is a regular expression
over one markdown cell and a value read from one code cell's printed output.
"""

import json
import math
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


def floats(text) -> list[float]:
    """The numbers in ``text``, with exponents (``2.2e-07``)."""
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?", text)]


def test_ch1_figures_are_the_printed_ones(executed):
    notebook = executed("01_before_transformers")
    assert "9 tokens  -> RuntimeError" in printed(notebook, "cell-03")
    stated(notebook, "cell-04", r"The MLP answers with two different vectors")
    cosine = float(
        re.search(r"cosine similarity of the two outputs = (-?[\d.]+)", printed(notebook, "cell-05")).group(1)
    )
    assert cosine < 0.9, cosine
    stated(notebook, "cell-04", r"gives the same response moved by three positions")
    assert "equals the response at 4..6: True" in printed(notebook, "cell-05")
    found = stated(notebook, "cell-08", r"\(widths ([\d, ]+)\), the dilated one doubles its reach \(([\d, ]+)\)")
    plain, dilated = printed(notebook, "cell-07").split("dilated:")
    assert numbers(found.group(1)) == numbers(plain.split(":")[1])
    assert numbers(found.group(2)) == numbers(dilated)
    stated(notebook, "cell-11", r"With the same weights, the two implementations agree")
    assert max(floats(printed(notebook, "cell-12"))) < 1e-5


def test_ch1_parallel_sweeps_fix_one_state_each(executed):
    notebook = executed("01_before_transformers")
    stated(notebook, "cell-13", r"After sweep \*k\* exactly the first \*k\* are right")
    line = next(x for x in printed(notebook, "cell-14").splitlines() if x.startswith("leading exact states"))
    counts = numbers(line.split(":")[1])
    assert counts == list(range(1, len(counts) + 1)), counts


def test_ch1_gradients_through_time_vanish_and_explode_as_the_text_says(executed):
    notebook = executed("01_before_transformers")
    stated(notebook, "cell-18", r"Autograd builds the same product")
    by_hand, by_autograd = printed(notebook, "cell-19").splitlines()[:2]
    assert numbers(by_hand.split(":")[1]) == numbers(by_autograd.split(":")[1])
    norms = {}
    for line in printed(notebook, "cell-21").splitlines():
        found = re.match(r"gain ([\d.]+): norm at distance 0 (\S+), at 40 (\S+), at 59 (\S+)", line)
        norms[float(found.group(1))] = [float(found.group(i)) for i in (2, 3, 4)]
    stated(
        notebook,
        "cell-22",
        r"With gains 0\.5 and 1\.0 the signal from 40 steps back is smaller than the signal "
        r"from the last step by many orders of magnitude",
    )
    for gain in (0.5, 1.0):
        at_0, at_40, _ = norms[gain]
        assert at_40 / at_0 < 1e-4, (gain, norms[gain])
    stated(notebook, "cell-22", r"With gain 2\.5 the gradient grows instead")
    assert norms[2.5][2] > norms[2.5][1] > norms[2.5][0], norms[2.5]
    stated(notebook, "cell-22", r"Even gain 1\.5 loses more than two orders of magnitude over 60 steps")
    assert 1e-3 < norms[1.5][2] / norms[1.5][0] < 1e-2, norms[1.5]


def test_ch1_path_lengths_grow_as_the_text_says(executed):
    notebook = executed("01_before_transformers")
    stated(
        notebook,
        "cell-24",
        r"The RNN line grows one for one with the distance, the plain CNN at half that rate, "
        r"the dilated CNN logarithmically, and self-attention stays at 1",
    )
    rows = {line[:24].strip(): numbers(line[24:]) for line in printed(notebook, "cell-23").splitlines() if line.strip()}
    distances = rows.pop("distance d")
    assert rows["RNN (recurrent steps)"] == distances
    assert rows["CNN, kernel 3 (layers)"] == [math.ceil(d / 2) for d in distances]
    assert rows["dilated CNN (layers)"] == [math.ceil(math.log2(d / 2 + 1)) for d in distances]
    assert rows["self-attention (layers)"] == [1] * len(distances)


def test_ch3_heads_and_counts_are_the_printed_ones(executed):
    notebook = executed("03_multi_head_attention")
    stated(notebook, "cell-15", r"The same numbers as PyTorch")
    assert max(floats(printed(notebook, "cell-16"))) < 1e-5
    stated(notebook, "cell-19", r"after this single layer every token carries the words before and after it")
    table = [line.split() for line in printed(notebook, "cell-20").splitlines()[1:] if line.strip()]
    words = [row[0] for row in table]
    assert [row[1] for row in table[1:]] == words[:-1], "the previous-token head does not read the previous word"
    assert [row[2] for row in table[:-1]] == words[1:], "the next-token head does not read the next word"
    assert [row[3] for row in table] == words and {row[4] for row in table} == {words[0]}
    stated(
        notebook,
        "cell-21",
        r"makes every token attend to \(a copy of\) its own word, and the positional relations "
        r"are gone",
    )
    found = re.search(r"four heads (\d+)/(\d+), one head (\d+)/(\d+)", printed(notebook, "cell-22"))
    four, n, one, _ = (int(x) for x in found.groups())
    assert four == n and one == 0, found.group(0)
    found = stated(notebook, "cell-23", r"that is about ([\d.]+) million per attention layer; .* about (\d+) million")
    output = printed(notebook, "cell-24")
    base = next(line for line in output.splitlines() if line.startswith("D=512"))
    assert float(found.group(1)) == round(int(re.search(r"ours\s+([\d,]+)", base).group(1).replace(",", "")) / 1e6, 2)
    gpt3 = int(re.search(r"GPT-3 175B, one layer: ([\d,]+)", output).group(1).replace(",", ""))
    assert int(found.group(2)) == round(gpt3 / 1e6)


def test_ch4_order_and_offsets_behave_as_the_text_says(executed):
    notebook = executed("04_positional_encoding")
    stated(notebook, "cell-02", r'"dog" gets exactly the same output vector in both')
    output = printed(notebook, "cell-03")
    assert "f(PX) == P f(X): True" in output and floats(output.split("sentences:")[1])[0] < 1e-5, output
    stated(notebook, "cell-16", r"scores fade as tokens move apart")
    scores = numbers(printed(notebook, "cell-17").split("distance")[1])[1::2]
    assert all(b < a for a, b in zip(scores, scores[1:])) and scores[-1] < 0.25 * scores[0], scores
    stated(notebook, "cell-18", r'"dog" gets different outputs in the two sentences')
    output = printed(notebook, "cell-19")
    assert "f(PX) == P f(X): False" in output and floats(output.split("sentences:")[1])[0] > 0.01, output
    stated(
        notebook, "cell-20", r"the result is exactly what the full causal attention over the whole sequence computes"
    )
    assert "full causal attention: True" in printed(notebook, "cell-21")


def test_ch4_length_generalization_is_described_as_measured(executed):
    notebook = executed("04_positional_encoding")
    accuracy = {}
    for line in printed(notebook, "cell-23").splitlines():
        name, results = line.split(":", 1)
        cells = re.findall(r"length (\d+): +(cannot run|[\d.]+%)", results)
        accuracy[name.strip()] = {int(n): None if a == "cannot run" else float(a[:-1]) / 100 for n, a in cells}
    none, learned, sinusoidal, rope = (accuracy[k] for k in ("none", "learned", "sinusoidal", "rope"))
    stated(notebook, "cell-25", r"\*\*No positions\*\*: far below the other models even at the training length")
    assert none[16] < 0.5 * min(learned[16], sinusoidal[16], rope[16]), accuracy
    stated(notebook, "cell-25", r"\*\*Learned\*\*: perfect at the training length, and it cannot even run on 32 tokens")
    assert learned[16] >= 0.995 and learned[32] is None and learned[64] is None, learned
    stated(notebook, "cell-25", r"\*\*Sinusoidal\*\*: \(nearly\) perfect at the training length, then worse and worse")
    assert sinusoidal[16] >= 0.98 and sinusoidal[16] > sinusoidal[32] > sinusoidal[64], sinusoidal
    stated(notebook, "cell-25", r"\*\*RoPE\*\*: close to perfect at every length")
    assert min(rope.values()) >= 0.95, rope


def test_ch7_cost_and_memory_figures_are_the_printed_ones(executed):
    notebook = executed("07_flash_attention")
    stated(notebook, "cell-04", r"moving the N × N matrices takes about six times longer than the matrix products")
    times = re.findall(r"([\d.]+) us\s+\d+ MiB\s+([\d.]+) us", printed(notebook, "cell-03"))
    ratios = [float(moving) / float(computing) for computing, moving in times]  # at 1.5 TB/s, at peak FLOP/s
    assert len(ratios) == 5, times
    assert all(5.5 <= r <= 7.5 for r in ratios), ratios
    stated(notebook, "cell-16", r"The largest tensor that the tiled version creates is its own output, N × d")
    naive, tiled, difference = printed(notebook, "cell-15").splitlines()[:3]
    assert "(4, 2048, 64)" in tiled and "(4, 2048, 2048)" in naive, (naive, tiled)
    found = stated(
        notebook, "cell-16", r"creates the \(4, N, N\) scores, (\d+) times larger than the output at N = 2048"
    )
    assert int(found.group(1)) == numbers(naive)[-1] / numbers(tiled)[-1]
    stated(notebook, "cell-16", r"The two outputs agree to float32 rounding")
    assert floats(difference)[-1] < 1e-5, difference
    stated(notebook, "cell-24", r"keeps several N × N tensors per head")
    saved = [numbers(line)[-1] for line in printed(notebook, "cell-23").splitlines()[1:3]]
    one_matrix_per_head = 4 * 1024 * 1024 * 4 / 2**20  # four heads of length 1024, float32, in MiB
    assert (saved[0] - saved[1]) / one_matrix_per_head >= 2, saved
    stated(notebook, "cell-24", r"`FlashAttentionFunction` keeps q, k, v, the output and lse, all of size O\(N d\)")
    assert saved[1] <= 4 * 4 * 1024 * 64 * 4 / 2**20 + 0.1, saved  # q, k, v, output (and a small lse)
    stated(notebook, "cell-24", r"rows 640 to 767 of the output depend only on rows 640 to 767 of the queries")
    assert floats(printed(notebook, "cell-25").splitlines()[0].rsplit(":", 1)[1]) == [0.0]


def test_ch9_decoding_and_cross_attention_are_described_as_printed(executed):
    notebook = executed("09_generation")
    stated(notebook, "59fed353", r"beam search and greedy decoding mostly agree")
    output = printed(notebook, "dbff522d")
    beam, total = (int(x) for x in re.search(r"beam of 4: (\d+)/(\d+) exact", output).groups())
    greedy = int(re.search(r"greedy: +(\d+)/\d+ exact", output).group(1))
    differ = re.search(r"differ in correctness: \[(.*)\]", output).group(1)
    assert len(numbers(differ)) <= 0.05 * total and abs(beam - greedy) <= 0.05 * total, output
    found = stated(
        notebook,
        "a04a1d50",
        r'"(\w+)" before the 7, "(\w+)" before the 0 of the thousands place .*, "(\w+)" before the 4, and "(\w+)" '
        r"for both of its digits and the `<eos>` after them; \"hundred\", which writes no digit, gets at most a small share of any row",
    )
    output = printed(notebook, "6676339e")
    read = dict(re.findall(r"before writing +(\S+): most weight on '(\w+)'", output))
    assert read == {"7": found[1], "0": found[2], "4": found[3], "1": found[4], "6": found[4], "<eos>": found[4]}, read
    assert float(re.search(r"on 'hundred' in any row: ([\d.]+)", output).group(1)) < 0.25, output


def test_ch9_sampling_and_cache_figures_are_the_printed_ones(executed):
    notebook = executed("09_generation")
    stated(notebook, "df91d2f4", r"At temperature 0 the model repeats itself")
    greedy = next(line for line in printed(notebook, "eeedde5b").splitlines() if line.startswith("temperature=0 "))
    assert re.search(r"(.{2,20}?)\1{3,}\s*$", greedy), greedy
    found = stated(notebook, "18a38728", r"numbers per token per layer, here (\d+) KiB in float32")
    rows = re.findall(r"(\d+) tokens: .*; cache ([\d,]+) KiB", printed(notebook, "6051fb6c"))
    (n_0, kib_0), (n_1, kib_1) = [(int(n), int(k.replace(",", ""))) for n, k in (rows[0], rows[-1])]
    assert (kib_1 - kib_0) / (n_1 - n_0) == pytest.approx(int(found.group(1)), rel=0.01), rows
    table = {
        line[:30].strip(): numbers(line[30:].replace(",", ""))
        for line in printed(notebook, "87b9389a").splitlines()[1:]
    }
    llama_7b, mistral, llama_70b, multi_head_70b = (
        table[k]
        for k in (
            "Llama 2 7B (multi-head)",
            "Mistral 7B (grouped, G = 8)",
            "Llama 2 70B (grouped, G = 8)",
            "70B as multi-head, G = 64",
        )
    )  # each: KiB per token, GiB per 4k sequence, free GB, sequences
    stated(notebook, "b8c2283d", r"needs half a mebibyte of cache per token: a 4,096-token conversation takes 2 GiB")
    assert llama_7b[0] == 512 and llama_7b[1] == 2.0, llama_7b
    stated(notebook, "b8c2283d", r"one GPU serves a few dozen at once\. Mistral 7B, .* serves four times as many")
    assert 24 <= llama_7b[-1] <= 48 and 3.5 <= mistral[-1] / llama_7b[-1] <= 4.5, (llama_7b, mistral)
    found = stated(
        notebook, "b8c2283d", r"each sequence would take (\d+) GiB and the GPUs left after the weights would hold two"
    )
    assert multi_head_70b[1] == int(found.group(1)) and multi_head_70b[-1] == 2, multi_head_70b
    stated(notebook, "b8c2283d", r"with 8 groups they hold about sixteen")
    assert 14 <= llama_70b[-1] <= 18, llama_70b


def test_ch6_sizes_and_samples_are_the_printed_ones(executed):
    notebook = executed("06_pretraining")
    stated(notebook, "cell-04", r"the vocabulary has about a hundred entries")
    assert 80 <= int(re.search(r"vocabulary: (\d+) tokens", printed(notebook, "cell-05")).group(1)) <= 120
    stated(notebook, "cell-26", r"about 100,000 parameters")
    parameters = int(re.search(r"([\d,]+) parameters", printed(notebook, "cell-27")).group(1).replace(",", ""))
    assert 80_000 <= parameters <= 120_000, parameters
    found = stated(
        notebook, "cell-31", r'real words such as "(\w+)", "(\w+)" or "(\w+)", names in quotes with underscores'
    )
    samples = printed(notebook, "cell-30")
    assert all(re.search(rf"\b{word}\b", samples) for word in found.groups()), (found.groups(), samples)
    assert re.search(r'"\w*_\w*"', samples), samples


def test_ch6_the_cheater_is_described_as_measured(executed):
    notebook = executed("06_pretraining")
    stated(
        notebook,
        "cell-33",
        r"The loss without the mask dives towards zero within a hundred steps, far below what the real",
    )
    found = re.search(
        r"steps 91-100: without mask ([\d.]+), causal LM [\d.]+ \(and ([\d.]+) after 500 steps\)",
        printed(notebook, "cell-32"),
    )
    cheater_at_100, causal_at_500 = (float(x) for x in found.groups())
    assert cheater_at_100 < 0.25 * causal_at_500, found.group(0)
    output = printed(notebook, "cell-34")
    causal = numbers(re.search(r"by position, causal LM: (.*)", output).group(1))
    cheater = numbers(re.search(r"by position, no mask: (.*)", output).group(1))
    stated(notebook, "cell-33", r"The cheater is almost perfect at every position except the last")
    assert max(cheater[:-1]) < 0.2 < 1.0 < cheater[-1], cheater
    stated(notebook, "cell-33", r"that one position holds most of its remaining loss")
    assert cheater[-1] / sum(cheater) > 0.5, cheater
    stated(notebook, "cell-33", r"its samples are far worse than the causal LM's: runs of spaces and newlines")
    cheater_samples = output.split("of which the last position")[1]
    assert re.search(r" {4,}|(\\n){2,}", cheater_samples), cheater_samples
    stated(notebook, "cell-35", r"does about as well as the unigram model")
    unigram = float(re.search(r"baseline on held-out text: ([\d.]+) nats", printed(notebook, "cell-15")).group(1))
    assert causal[0] == pytest.approx(unigram, rel=0.05), (causal[0], unigram)
    stated(
        notebook,
        "cell-35",
        r"its loss drops as more context becomes visible, until it levels off after about four characters",
    )
    assert all(b < a for a, b in zip(causal[:5], causal[1:5])), causal
    assert causal[4] - min(causal[4:]) < 0.1 * (causal[0] - causal[4]), causal


def test_ch6_masked_lm_is_described_as_measured(executed):
    notebook = executed("06_pretraining")
    stated(notebook, "cell-37", r"The masked LM's loss falls much more slowly")
    found = re.search(r"steps 451-500: masked LM ([\d.]+), causal LM ([\d.]+)", printed(notebook, "cell-36"))
    masked_at_500, causal_at_500 = (float(x) for x in found.groups())
    assert masked_at_500 > causal_at_500 + 0.2, found.group(0)
    stated(notebook, "cell-37", r"Even with three times the steps, it has seen about half as many labelled predictions")
    selected = float(re.search(r"tokens: ([\d.]+)% selected", printed(notebook, "cell-20")).group(1)) / 100
    causal_steps = int(re.search(r"causal LM: (\d+) steps", printed(notebook, "cell-27")).group(1))
    masked_steps = int(re.search(r"masked LM: (\d+) steps", printed(notebook, "cell-36")).group(1))
    assert masked_steps == 3 * causal_steps, (masked_steps, causal_steps)
    assert 0.35 <= masked_steps * selected / causal_steps <= 0.55, selected  # batches of the same windows
    found = stated(notebook, "cell-26", r"the causal LM for (\d+) steps, the masked LM for ([\d,]+)")
    assert [int(x.replace(",", "")) for x in found.groups()] == [causal_steps, masked_steps]
    stated(notebook, "cell-39", r"The masked LM wins the probe")
    probe = dict(re.findall(r"(unigram|causal LM|masked LM) ([\d.]+)%", printed(notebook, "cell-38")))
    assert float(probe["masked LM"]) > float(probe["causal LM"]) > float(probe["unigram"]), probe
