"""Chapter 3 checks: the reference gets full marks and agrees with torch.nn.MultiheadAttention,
the stub fails every sub-check, correct alternatives get full marks, typical bugs lose marks
with a message that names them."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from conftest import messages, not_implemented, run_suite, score
from torch import nn

from autograder.checks import suites
from solutions import multi_head_attention as ref
from solutions.attention import causal_mask

TOPIC = "multi_head_attention"
NAMES = ("split_heads", "merge_heads", "MultiHeadAttention")


def _load_alternative():
    path = Path(__file__).parent / "alternatives" / f"{TOPIC}.py"
    spec = importlib.util.spec_from_file_location(f"alternatives_{TOPIC}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


alternative = _load_alternative()


def full_marks(name):
    return suites(TOPIC)[name].max_score


class StubMultiHeadAttention(nn.Module):
    """What nbgrader releases: the class skeleton, each method raising."""

    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        raise NotImplementedError()

    def forward(self, query, key=None, value=None, mask=None):
        raise NotImplementedError()


@pytest.mark.parametrize(
    "name, stub",
    [
        ("split_heads", not_implemented),
        ("merge_heads", not_implemented),
        ("MultiHeadAttention", StubMultiHeadAttention),
    ],
)
def test_stub_fails_every_check(name, stub, seed):
    results = run_suite(TOPIC, name, stub, seed)
    assert results and not any(r.passed for r in results)
    assert all("not implemented" in r.message for r in results), messages(results)


# ---------------------------------------------------------------------------------------
# split_heads and merge_heads: more correct answers, then bugs


def split_with_view(x, num_heads):
    b, n, d = x.shape
    return x.view(b, n, num_heads, d // num_heads).permute(0, 2, 1, 3)


def merge_with_cat(x):
    return torch.cat(x.unbind(1), dim=-1)


def split_interleaved(x, num_heads):
    b, n, d = x.shape
    return x.reshape(b, n, d // num_heads, num_heads).permute(0, 3, 1, 2)


def split_reshaped_straight(x, num_heads):
    b, n, d = x.shape
    return x.reshape(b, num_heads, n, d // num_heads)


def split_not_transposed(x, num_heads):
    b, n, d = x.shape
    return x.reshape(b, n, num_heads, d // num_heads)


def merge_interleaved(x):
    b, h, n, d_head = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, n, h * d_head)


def merge_reshaped_straight(x):
    b, h, n, d_head = x.shape
    return x.reshape(b, n, h * d_head)


def merge_averages_heads(x):
    return x.mean(dim=1)


@pytest.mark.parametrize("name, answer", [("split_heads", split_with_view), ("merge_heads", merge_with_cat)])
def test_other_correct_layouts_get_full_marks(name, answer, seed):
    results = run_suite(TOPIC, name, answer, seed)
    assert score(results) == full_marks(name), messages(results)


@pytest.mark.parametrize(
    "name, bug, fragment",
    [
        ("split_heads", split_interleaved, "heads are interleaved: head h must hold features h*D/H..(h+1)*D/H"),
        ("split_heads", split_reshaped_straight, "reshaped straight to (B, H, N, D/H)"),
        ("split_heads", split_not_transposed, "the head dimension must come second"),
        ("merge_heads", merge_interleaved, "heads are interleaved"),
        ("merge_heads", merge_reshaped_straight, "transpose(1, 2) first"),
        ("merge_heads", merge_averages_heads, "has shape"),
    ],
)
def test_layout_bug_loses_marks(name, bug, fragment, seed):
    results = run_suite(TOPIC, name, bug, seed)
    assert score(results) < full_marks(name)
    assert fragment in messages(results)


# ---------------------------------------------------------------------------------------
# MultiHeadAttention: more correct answers, then bugs


class Learner(nn.Module):
    """A correct MultiHeadAttention written step by step; each bug below changes one step."""

    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def inputs(self, query, key, value):
        key = query if key is None else key
        return query, key, key if value is None else value

    def split(self, x):
        return ref.split_heads(x, self.num_heads)

    def merge(self, x):
        return ref.merge_heads(x)

    def scale(self, q):
        return math.sqrt(q.shape[-1])

    def allowed(self, mask):
        return mask

    def weights_out(self, weights):
        return weights

    def output(self, heads):
        return self.w_o(heads)

    def forward(self, query, key=None, value=None, mask=None):
        query, key, value = self.inputs(query, key, value)
        q, k, v = self.split(self.w_q(query)), self.split(self.w_k(key)), self.split(self.w_v(value))
        scores = q @ k.transpose(-2, -1) / self.scale(q)
        if mask is not None:
            scores = scores.masked_fill(~self.allowed(mask), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return self.output(self.merge(weights @ v)), self.weights_out(weights)


class LoopOverHeads(Learner):
    """Correct too: one chapter-2 attention per head, on slices of the projections."""

    def forward(self, query, key=None, value=None, mask=None):
        query, key, value = self.inputs(query, key, value)
        q, k, v = self.w_q(query), self.w_k(key), self.w_v(value)
        width = q.shape[-1] // self.num_heads
        outputs, weights = [], []
        for h in range(self.num_heads):
            block = slice(h * width, (h + 1) * width)
            head_mask = None if mask is None else mask.expand(q.shape[0], self.num_heads, -1, -1)[:, h]
            out, w = ref.scaled_dot_product_attention(q[..., block], k[..., block], v[..., block], head_mask)
            outputs.append(out)
            weights.append(w)
        return self.w_o(torch.cat(outputs, dim=-1)), torch.stack(weights, dim=1)


class NoScale(Learner):
    def scale(self, q):
        return 1.0


class ScaleByDModel(Learner):
    def scale(self, q):
        return math.sqrt(q.shape[-1] * self.num_heads)


class InterleavedHeads(Learner):
    def split(self, x):
        return split_interleaved(x, self.num_heads)

    def merge(self, x):
        return merge_interleaved(x)


class NoOutputProjection(Learner):
    def output(self, heads):
        return heads


class ValueDefaultsToQuery(Learner):
    def inputs(self, query, key, value):
        return query, query if key is None else key, query if value is None else value


class InvertedMask(Learner):
    def allowed(self, mask):
        return ~mask


class IgnoresMask(Learner):
    def allowed(self, mask):
        return torch.ones_like(mask)


class AveragedWeights(Learner):
    def weights_out(self, weights):
        return weights.mean(dim=1)


class OutProjNamedLikePyTorch(Learner):
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__(d_model, num_heads, bias)
        self.out_proj = self.w_o
        del self.w_o

    def output(self, heads):
        return self.out_proj(heads)


class FusedQkvModule(nn.Module):
    """One nn.Linear(D, 3D) named qkv: the weights are not where the course asks for them."""

    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, query, key=None, value=None, mask=None):
        q, k, v = (ref.split_heads(t, self.num_heads) for t in self.qkv(query).chunk(3, dim=-1))
        heads, weights = ref.scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(ref.merge_heads(heads)), weights


class IgnoresBiasArgument(Learner):
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__(d_model, num_heads)


class TorchMultiheadAttentionInside(Learner):
    """The four projections are there, but forward hands them to PyTorch's own attention."""

    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        batch, n_q, n_k = query.shape[0], query.shape[1], key.shape[1]
        attn_mask = None
        if mask is not None:
            attn_mask = ~mask.expand(batch, self.num_heads, n_q, n_k).reshape(-1, n_q, n_k)
        bias = None if self.w_q.bias is None else torch.cat([self.w_q.bias, self.w_k.bias, self.w_v.bias])
        output, weights = nn.functional.multi_head_attention_forward(
            *(t.transpose(0, 1) for t in (query, key, value)),
            query.shape[-1],
            self.num_heads,
            torch.cat([self.w_q.weight, self.w_k.weight, self.w_v.weight]),
            bias,
            None,
            None,
            False,
            0.0,
            self.w_o.weight,
            self.w_o.bias,
            need_weights=True,
            attn_mask=attn_mask,
            average_attn_weights=False,
        )
        return output.transpose(0, 1), weights


def test_loop_over_heads_gets_full_marks(seed):
    results = run_suite(TOPIC, "MultiHeadAttention", LoopOverHeads, seed)
    assert score(results) == full_marks("MultiHeadAttention"), messages(results)


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (NoScale, "scores not scaled by sqrt(d_head)"),
        (ScaleByDModel, "scaled by sqrt(d_model) instead of sqrt(d_head)"),
        (InterleavedHeads, "heads are interleaved: head h must hold features h*D/H..(h+1)*D/H"),
        (NoOutputProjection, "w_o not applied"),
        (ValueDefaultsToQuery, "value defaults to query instead of key"),
        (InvertedMask, "the mask is inverted"),
        (IgnoresMask, "the mask is ignored"),
        (AveragedWeights, "not their average"),
        (OutProjNamedLikePyTorch, "there is no submodule w_o"),
        (FusedQkvModule, "there is no submodule w_q"),
        (IgnoresBiasArgument, "has a bias although"),
    ],
)
def test_attention_bug_loses_marks(bug, fragment, seed):
    results = run_suite(TOPIC, "MultiHeadAttention", bug, seed)
    assert score(results) < full_marks("MultiHeadAttention")
    assert fragment in messages(results)


def test_pytorch_attention_inside_gets_full_marks_and_the_advice(seed):
    """Which functions the module calls is seen only inside the learner's process: advice, 0 points."""
    results = {r.check: r for r in run_suite(TOPIC, "MultiHeadAttention", TorchMultiheadAttentionInside, seed)}
    assert score(results.values()) == full_marks("MultiHeadAttention")
    advice = results["no_library_attention"]
    assert advice.advice and not advice.passed and "calls PyTorch's own multi-head attention" in advice.message


def test_value_bug_is_named_by_its_own_check():
    results = run_suite(TOPIC, "MultiHeadAttention", ValueDefaultsToQuery, 0)
    assert [r.check for r in results if not r.passed] == ["value_defaults_to_key"]


# ---------------------------------------------------------------------------------------
# The reference against PyTorch: torch.nn.MultiheadAttention(batch_first=True) with the
# same weights (in_proj_* holds w_q, w_k, w_v stacked; out_proj is w_o).


def _pair(d_model, num_heads, bias=True):
    torch.manual_seed(d_model * 10 + num_heads)
    ours = ref.MultiHeadAttention(d_model, num_heads, bias=bias).double()
    theirs = nn.MultiheadAttention(d_model, num_heads, bias=bias, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]))
        theirs.out_proj.weight.copy_(ours.w_o.weight)
        if bias:
            theirs.in_proj_bias.copy_(torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]))
            theirs.out_proj.bias.copy_(ours.w_o.bias)
    return ours, theirs


def _assert_same(ours, theirs):
    (out, weights), (expected_out, expected_weights) = ours, theirs
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(out, expected_out)


@pytest.mark.parametrize("bias", [True, False])
def test_reference_matches_pytorch_self_and_cross_attention(bias):
    ours, theirs = _pair(12, 3, bias)
    x, memory = torch.randn(2, 5, 12, dtype=torch.float64), torch.randn(2, 7, 12, dtype=torch.float64)
    _assert_same(ours(x), theirs(x, x, x, average_attn_weights=False))
    _assert_same(ours(x, memory), theirs(x, memory, memory, average_attn_weights=False))


def test_reference_matches_pytorch_with_causal_and_padding_masks():
    ours, theirs = _pair(16, 4)
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    keep = torch.arange(6) < torch.tensor([6, 4, 1])[:, None]  # (B, N_k), True = a real token
    _assert_same(ours(x, mask=causal_mask(6)), theirs(x, x, x, attn_mask=~causal_mask(6), average_attn_weights=False))
    _assert_same(
        ours(x, mask=keep[:, None, None, :]), theirs(x, x, x, key_padding_mask=~keep, average_attn_weights=False)
    )


def test_split_and_merge_match_pytorch_head_layout():
    x = torch.randn(2, 5, 12)
    heads = ref.split_heads(x, 3)
    torch.testing.assert_close(heads, x.unflatten(-1, (3, 4)).transpose(1, 2), rtol=0, atol=0)
    torch.testing.assert_close(ref.merge_heads(heads), x, rtol=0, atol=0)


def test_parameter_count_matches_pytorch_and_does_not_depend_on_heads():
    counts = {h: sum(p.numel() for p in ref.MultiHeadAttention(64, h).parameters()) for h in (1, 2, 8, 64)}
    assert set(counts.values()) == {4 * 64 * 64 + 4 * 64}
    assert counts[8] == sum(p.numel() for p in nn.MultiheadAttention(64, 8).parameters())
