"""Learner traces (not a test): does the feedback lead a learner to full marks, and does each message
name the bug that is actually there?

    .venv/bin/python benchmarks/learner_traces.py [--topic attention ...] [--seed 0]

A trace is a scripted sequence of attempts at one exercise, as a learner makes them: a first answer
with a typical mistake, then the next answer a learner writes after reading the message (often a
different mistake), until a correct answer. Every attempt is an answer from the corpus
(``tests/corpus/<topic>.py``), named by its label; the last is a correct alternative. Each attempt is
graded like a grade cell (the chapter's released notebook with that answer, run in a forked child; see
``tests/grade_paths.py``). For each attempt the script prints the score and whether a failure message
names the bug present: "named" when a message carries the corpus entry's diagnosis (``says``),
"not named" when none does, "-" for a bug whose corpus entry states no diagnosis. It ends with, per
trace, the attempts to full marks, and overall how many bug messages named their bug.
"""

import argparse
import contextlib
import io
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
from corpus import Entry, entries  # noqa: E402
from grade_paths import cells_of, entry_answers, in_child, run_like_a_kernel, write_submission  # noqa: E402

from autograder.chapters import BY_TOPIC  # noqa: E402
from autograder.checks import suites  # noqa: E402
from autograder.grading import quiet  # noqa: E402
from autograder.student import KernelBackend, Student  # noqa: E402


@dataclass(frozen=True)
class Trace:
    topic: str
    name: str
    attempts: tuple[str, ...]  # corpus labels, in the order a learner tries them; the last is correct


TRACES = (
    Trace(
        "attention",
        "softmax",
        ("no max subtraction", "the maximum of the whole tensor, not of each slice", "dim ignored"),
    ),
    Trace(
        "attention",
        "scaled_dot_product_attention",
        ("no scaling", "scaled by sqrt(d_v)", "mask applied after the softmax"),
    ),
    Trace(
        "attention",
        "scaled_dot_product_attention",
        ("mask inverted (True = hidden, as in nn.MultiheadAttention)", "masked scores set to 0"),
    ),
    Trace(
        "attention",
        "causal_mask",
        ("triu: the future instead of the past", "strictly below the diagonal", "a float mask of ones and zeros"),
    ),
    Trace(
        "transformer_block",
        "layer_norm",
        ("torch.var's default, unbiased variance", "eps added to the standard deviation", "weight and bias swapped"),
    ),
    Trace(
        "transformer_block",
        "FeedForward",
        (
            "dropout on the output of linear2",
            "F.dropout without the training flag (active in eval)",
            "in-place dropout after the ReLU",
        ),
    ),
    Trace(
        "transformer_block",
        "TransformerBlock",
        (
            "norm_first ignored: always Pre-LN",
            "dropout not passed down to the FFN",
            "mask inverted (PyTorch's convention)",
        ),
    ),
    Trace(
        "transformer_block",
        "count_parameters",
        ("the final LayerNorm forgotten", "the tied output projection counted", "d_ff=None treated as d_model"),
    ),
    Trace("beyond_quadratic", "sliding_window_mask", ("one-sided band", "strict inequality")),
    Trace("beyond_quadratic", "positive_random_features", ("norm instead of squared norm", "no 1/sqrt(m)")),
    Trace(
        "beyond_quadratic",
        "performer_attention",
        ("quadratic order of multiplication", "no d^(-1/4) scaling", "not normalized"),
    ),
    Trace("beyond_quadratic", "chinchilla_optimal", ("forgets the 6", "ratio inverted")),
)


def entry(topic: str, name: str, label: str) -> Entry:
    found = [e for e in entries(topic) if e.name == name and e.label == label]
    if len(found) != 1:
        raise SystemExit(f"{topic}.{name}: {len(found)} corpus entries are labelled {label!r}")
    return found[0]


def correct_answer(topic: str, name: str) -> Entry:
    """The corpus's first correct alternative for ``name``: the learner's final answer."""
    return next(e for e in entries(topic) if e.name == name and not e.bug)


def grade_attempt(topic: str, answer: Entry, cells: list[str], seed: int):
    """[(check, passed, points, max, message)] of one attempt; runs in a forked child."""
    torch.set_num_threads(1)
    with contextlib.redirect_stdout(io.StringIO()):  # the notebook's own tables and prints
        namespace = run_like_a_kernel(cells)
    if answer.name not in namespace:
        return None
    with quiet():
        results = suites(topic)[answer.name].run(
            Student(KernelBackend({answer.name: namespace[answer.name]}), answer.name), seed
        )
    return [(r.check, r.passed, r.score, r.max_score, r.message) for r in results]


def verdict(answer: Entry, results) -> str:
    if not answer.bug:
        return ""
    if not answer.says:
        return "-"
    failed = [message for _, passed, _, _, message in results if not passed]
    return "named" if any(answer.says in message for message in failed) else "not named"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", action="append", help="only the traces of this topic (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="grading seed")
    args = parser.parse_args()
    traces = [t for t in TRACES if not args.topic or t.topic in args.topic]
    start, named, judged, to_full = time.perf_counter(), 0, 0, []
    with tempfile.TemporaryDirectory() as folder:
        for number, trace in enumerate(traces):
            chapter = BY_TOPIC[trace.topic]
            answers = [entry(trace.topic, trace.name, label) for label in trace.attempts]
            answers.append(correct_answer(trace.topic, trace.name))
            print(f"{trace.topic}.{trace.name}")
            full_at = None
            for attempt, answer in enumerate(answers, 1):
                path = write_submission(
                    chapter, entry_answers(chapter, answer), Path(folder) / f"{number}_{attempt}.ipynb"
                )
                results = in_child(grade_attempt, trace.topic, answer, cells_of(path), args.seed)
                if results is None:
                    print(f"  {attempt}. {answer.label}: {answer.name} not defined")
                    continue
                score, most = sum(r[2] for r in results), sum(r[3] for r in results)
                said = verdict(answer, results)
                if said in ("named", "not named"):
                    judged += 1
                    named += said == "named"
                if score == most and full_at is None:
                    full_at = attempt
                first = next((message for _, passed, _, _, message in results if not passed), "")
                print(
                    f"  {attempt}. {answer.label}: {score:g}/{most:g} {said}"
                    + (f"\n       {first[:160]}" if first else "")
                )
            to_full.append((trace, full_at, len(answers)))
    print()
    for trace, full_at, attempts in to_full:
        reached = f"full marks at attempt {full_at} of {attempts}" if full_at else f"never full marks in {attempts}"
        print(f"{trace.topic}.{trace.name}: {reached}")
    early = sum(1 for _, full_at, attempts in to_full if full_at is not None and full_at < attempts)
    print(
        f"total: {len(to_full)} traces, {early} reached full marks before their correct answer (a bug escaped), "
        f"{named}/{judged} bug messages named their bug, {time.perf_counter() - start:.0f} s"
    )
    sys.exit(1 if early or named < judged else 0)


if __name__ == "__main__":
    main()
