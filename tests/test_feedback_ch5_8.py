"""Feedback that names the real cause in chapters 5-8, tested against the corpus: each hint appears for
the corpus bugs it describes and for none of the others listed; a dependent check names the learner's
failing dependency first only where the evidence shows it is the cause. Answers run in the grade-cell
path (this process); ``tests/test_corpus.py`` shows that the sandbox path gives the same verdicts."""

import math

import pytest
import torch
from corpus import entries
from grade_paths import cells_of, entry_answers, run_like_a_kernel, write_submission

from autograder.chapters import BY_TOPIC
from autograder.checks import suites
from autograder.student import KernelBackend, Student

IN_PLACE = "in-place operations in forward"
BLOCK_PART = "the block's ffn alone"
MODULE_LIST = "use nn.ModuleList"
ALL_FEATURES = "are all the features of omega used?"
NOT_SCALED = "not scaled by d^(-1/4)"
FEATURES_FIRST = "fix your positive_random_features first"
HINTS = (IN_PLACE, BLOCK_PART, MODULE_LIST, ALL_FEATURES, NOT_SCALED, FEATURES_FIRST)

# (topic, label of a corpus bug, the hints that describe it)
CASES = [
    ("transformer_block", "in-place dropout after the ReLU", {IN_PLACE}),
    ("transformer_block", "nn.Dropout(inplace=True) in an nn.Sequential after nn.ReLU", {IN_PLACE}),
    ("transformer_block", "the hidden activation detached to keep it for a plot", set()),
    ("transformer_block", "in-place residual additions (h += ...)", {IN_PLACE}),
    ("transformer_block", "its FeedForward drops the ReLU's output in place", {IN_PLACE}),
    (
        "transformer_block",
        "its FeedForward keeps dropout on in eval() mode (F.dropout without training=)",
        {BLOCK_PART},
    ),
    ("transformer_block", "its FeedForward has no activation", {BLOCK_PART}),
    ("transformer_block", "remembers the last mask it was given (None reuses it)", set()),
    ("transformer_block", "the residual stream's mean kept in a buffer updated by forward", set()),
    ("pretraining", "the blocks in a plain Python list", {MODULE_LIST}),
    ("pretraining", "one block whatever num_layers", set()),
    ("pretraining", "a causal mask cut from a fixed 64 x 64 table", set()),
    ("beyond_quadratic", "uses only the first 8 features", {ALL_FEATURES}),
    ("beyond_quadratic", "no d^(-1/4) scaling", {NOT_SCALED}),
    ("beyond_quadratic", "uniform average of the values", set()),
    ("beyond_quadratic", "not normalized", set()),
]


def failures(topic: str, label: str, folder) -> dict:
    """{sub-check: message} of the corpus answer's failures, graded as its grade cell grades it."""
    matching = [e for e in entries(topic) if e.label == label and e.bug]  # the first (CausalLM before MaskedLM)
    assert matching, f"{topic}: no corpus bug labelled {label!r}"
    chapter = BY_TOPIC[topic]
    path = write_submission(chapter, entry_answers(chapter, matching[0]), folder / f"{chapter.name}.ipynb")
    namespace = run_like_a_kernel(cells_of(path))
    results = suites(topic)[matching[0].name].run(Student(KernelBackend(namespace), matching[0].name))
    return {r.check: r.message for r in results if not r.passed}


@pytest.mark.parametrize("topic, label, hints", CASES, ids=[f"{t}-{label}" for t, label, _ in CASES])
def test_a_hint_appears_for_the_bugs_it_describes_and_no_other(topic, label, hints, tmp_path):
    found = failures(topic, label, tmp_path)
    assert found, "the bug got full marks"
    text = "\n".join(found.values())
    for hint in HINTS:
        assert (hint in text) == (hint in hints), f"{hint!r} {'missing' if hint in hints else 'shown'}: {found}"


def features_without_the_half(x, omega):
    """A broken feature map: |x|^2 instead of |x|^2 / 2 in the exponent."""
    return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True)) / math.sqrt(omega.shape[0])


def performer_through(phi):
    def performer_attention(q, k, v, omega):
        scale = q.shape[-1] ** -0.25
        qf, kf = phi(q * scale, omega), phi(k * scale, omega)
        return (qf @ (kf.transpose(-2, -1) @ v)) / (qf @ kf.sum(-2).unsqueeze(-1))

    return performer_attention


def right_features(x, omega):
    return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])


def performer_messages(performer, features) -> str:
    namespace = {"performer_attention": performer, "positive_random_features": features}
    suite = suites("beyond_quadratic")["performer_attention"]
    chosen = [c for c in suite.checks if c.name in ("matches_reference_for_the_same_features",)]
    original, suite.checks = suite.checks, chosen  # the measured sub-check takes seconds and has no values to blame
    try:
        results = suite.run(Student(KernelBackend(namespace), "performer_attention"))
    finally:
        suite.checks = original
    return "\n".join(r.message for r in results if not r.passed)


def test_a_performer_built_on_broken_features_names_them_first():
    text = performer_messages(performer_through(features_without_the_half), features_without_the_half)
    assert text.startswith(FEATURES_FIRST), text


def test_broken_features_the_performer_does_not_use_are_not_named():
    broken_elsewhere = performer_through(features_without_the_half)
    text = performer_messages(broken_elsewhere, right_features)  # its features pass their checks
    assert text and FEATURES_FIRST not in text, text
    text = performer_messages(performer_through(right_features), features_without_the_half)
    assert text == "", text  # a right Performer: nothing to blame
