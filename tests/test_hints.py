"""Feedback that names the real cause, tested against the corpus: each translation of a learner's
error (:data:`autograder.suite.HINTS` and the ``.T`` hint) appears for the corpus bugs it
describes and for no other; a dependent check names the learner's failing dependency first only
where the evidence shows it is the cause (:func:`autograder.suite.blame_dependency`). Answers run
in the grade-cell path (this process), one sandbox run shows the other path says the same."""

import pytest
from corpus import entries
from grade_paths import cells_of, entry_answers, run_like_a_kernel, write_submission

from autograder.chapters import BY_TOPIC
from autograder.checks import suites
from autograder.grading import grade_cells
from autograder.student import KernelBackend, Student

VIEW = "needs contiguous memory"
IN_PLACE = "changed a tensor that autograd kept"
OUT = "out=... cannot write a result that needs gradients"
INT64 = "this operation takes int64 only"
TRANSPOSE_ALL = ".T reverses all of them"
HINTS = (VIEW, IN_PLACE, OUT, INT64, TRANSPOSE_ALL)

# (topic, label of a corpus bug, the hint that describes it or None)
CASES = [
    ("attention", "a fast path for the last dim that flattens rows with .view", VIEW),
    ("attention", "leading dims flattened with .view for torch.bmm", VIEW),
    ("multi_head_attention", "tokens and features flattened with .view before the split", VIEW),
    ("multi_head_attention", "view after transposing back: right only for what split_heads returns", VIEW),
    ("sequence_models", "input projections of all steps at once, flattened with .view", VIEW),
    ("positional_encoding", "leading dims flattened with .view", VIEW),
    ("attention", "masked weights zeroed in place after the softmax (breaks backward)", IN_PLACE),
    ("multi_head_attention", "masked weights zeroed in place after the softmax (breaks backward)", IN_PLACE),
    ("sequence_models", "the state written into a preallocated buffer with out= (breaks backward)", OUT),
    ("positional_encoding", "rows of an angle table picked with one_hot, which takes int64 positions only", INT64),
    ("attention", "k.T, right for (N, d) only", TRANSPOSE_ALL),
    # bugs that raise, or fail, for causes no hint names
    ("attention", "k.transpose(0, 1): right for (N, d) only", None),
    ("attention", "the mask reshaped to (N_q, N_k): a padding mask (B, 1, 1, N_k) breaks it", None),
    ("attention", "gradients only when q requires grad (no_grad otherwise, to save memory)", None),
    ("attention", "mask inverted (True = hidden, as in nn.MultiheadAttention)", None),
    ("multi_head_attention", "a head axis added with unsqueeze(1): a causal (N, N) mask broadcasts wrongly", None),
    ("multi_head_attention", "the 1/sqrt(d_head) folded into w_q in place at every forward", None),
    ("sequence_models", "x.squeeze() for the batch of one: a sequence of one loses its time axis too", None),
    ("positional_encoding", "positions unsqueezed in place (the caller's tensor changes shape)", None),
]


def entry(topic, label):
    (found,) = [e for e in entries(topic) if e.label == label]
    return found


def failures(topic: str, label: str, folder) -> dict:
    """{sub-check: message} of the corpus answer's failures, graded as its grade cell grades it."""
    chosen, chapter = entry(topic, label), BY_TOPIC[topic]
    path = write_submission(chapter, entry_answers(chapter, chosen), folder / f"{chapter.name}.ipynb")
    namespace = run_like_a_kernel(cells_of(path))
    results = suites(topic)[chosen.name].run(Student(KernelBackend(namespace), chosen.name))
    return {r.check: r.message for r in results if not r.passed}


@pytest.mark.parametrize("topic, label, hint", CASES, ids=[f"{t}-{label[:40]}" for t, label, _ in CASES])
def test_a_hint_appears_exactly_for_the_bugs_it_describes(topic, label, hint, tmp_path):
    found = failures(topic, label, tmp_path)
    assert found, f"{label}: the bug got full marks"
    messages = " | ".join(found.values())
    if hint is not None:
        assert hint in messages, f"{label}: no message names the cause ({hint!r}): {found}"
    for other in HINTS:
        if other != hint:
            assert other not in messages, f"{label}: the hint {other!r} does not describe this bug: {found}"


SOFTMAX_WITHOUT_MAX = entry("attention", "no max subtraction").source
ATTENTION_ON_ITS_SOFTMAX = """
import math

def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = softmax(scores)
    return weights @ v, weights
"""
ATTENTION_UNSCALED_ON_TORCH = """
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
"""
SOFTMAX_RIGHT = entry("attention", "log-sum-exp").source
FIX_FIRST = "fix your softmax first"


def attention_failures(*cells) -> dict:
    namespace = run_like_a_kernel(["import torch", *cells])
    backend = KernelBackend({name: namespace[name] for name in ("softmax", "scaled_dot_product_attention")})
    results = suites("attention")["scaled_dot_product_attention"].run(Student(backend, "scaled_dot_product_attention"))
    return {r.check: r.message for r in results if not r.passed}


def test_attention_names_a_broken_softmax_it_uses_first():
    found = attention_failures(SOFTMAX_WITHOUT_MAX, ATTENTION_ON_ITS_SOFTMAX)
    assert FIX_FIRST in found["stable_for_large_scores"], found
    assert "stable_for_large_logits" in found["stable_for_large_scores"]  # the softmax check that fails


def test_no_blame_without_evidence():
    # a broken softmax that the attention does not call: the attention's own bug is named
    found = attention_failures(SOFTMAX_WITHOUT_MAX, ATTENTION_UNSCALED_ON_TORCH)
    assert found and not any(FIX_FIRST in m for m in found.values()), found
    assert any("not divided by sqrt(d_k)" in m for m in found.values()), found
    # a softmax that passes its checks is never blamed
    assert attention_failures(SOFTMAX_RIGHT, ATTENTION_ON_ITS_SOFTMAX) == {}
    found = attention_failures(SOFTMAX_RIGHT, ATTENTION_UNSCALED_ON_TORCH)
    assert found and not any(FIX_FIRST in m for m in found.values()), found


def test_an_inverted_mask_is_not_reported_as_a_dtype_problem(tmp_path):
    found = failures("attention", "mask inverted (True = hidden, as in nn.MultiheadAttention)", tmp_path)
    assert found and not any("dtype" in message for message in found.values()), found
    assert "the mask is inverted" in found["float64_output_and_gradients"]


def test_the_sandbox_names_the_broken_softmax_too():
    results = grade_cells(
        ["import torch", SOFTMAX_WITHOUT_MAX, ATTENTION_ON_ITS_SOFTMAX],
        BY_TOPIC["attention"].name,
        names=["scaled_dot_product_attention"],
    )
    (large,) = [r for r in results if r.check == "stable_for_large_scores"]
    assert not large.passed and FIX_FIRST in large.message, large.message


SPLIT_INTERLEAVED = entry("multi_head_attention", "interleaved heads: D viewed as (d_head, H)").source
MERGE_RIGHT = entry("multi_head_attention", "permute then flatten").source
MHA_ON_ITS_HELPERS = """
import torch
from torch import nn
from solutions.attention import scaled_dot_product_attention


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d_model, d_model, bias=bias) for _ in range(4))

    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q, k, v = (split_heads(layer(x), self.num_heads) for layer, x in ((self.w_q, query), (self.w_k, key), (self.w_v, value)))
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(merge_heads(heads)), weights
"""


def test_multi_head_attention_names_a_broken_split_heads_it_uses_first():
    namespace = run_like_a_kernel([SPLIT_INTERLEAVED, MERGE_RIGHT, MHA_ON_ITS_HELPERS])
    backend = KernelBackend({k: namespace[k] for k in ("split_heads", "merge_heads", "MultiHeadAttention")})
    results = suites("multi_head_attention")["MultiHeadAttention"].run(Student(backend, "MultiHeadAttention"))
    found = {r.check: r.message for r in results if not r.passed}
    assert found and all("fix your split_heads first" in m for m in found.values() if "differs" in m or "wrong" in m)
    assert "fix your split_heads first" in found["self_attention_matches_pytorch"], found
    assert not any("fix your merge_heads" in m for m in found.values()), found
    # the same split_heads in the notebook, a module that does not call it: no blame
    own = entry("multi_head_attention", "scores scaled by sqrt(d_model)").source
    namespace = run_like_a_kernel([SPLIT_INTERLEAVED, MERGE_RIGHT, own])
    backend = KernelBackend({k: namespace[k] for k in ("split_heads", "merge_heads", "MultiHeadAttention")})
    results = suites("multi_head_attention")["MultiHeadAttention"].run(Student(backend, "MultiHeadAttention"))
    found = {r.check: r.message for r in results if not r.passed}
    assert found and not any("fix your" in m for m in found.values()), found


def test_a_mask_of_numbers_is_named_in_learner_terms(tmp_path):
    found = failures("attention", "numpy's tri, left as float64", tmp_path)
    assert all("must be a bool tensor" in message for message in found.values()), found
    assert "0/1 numbers in the right places" in found["true_on_and_below_diagonal"]
    additive = failures("attention", "an additive mask (0 and -inf)", tmp_path)  # not 0/1: no claim about places
    assert "0/1" not in " ".join(additive.values()), additive
