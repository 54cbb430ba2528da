"""Chapter 2: the reference agrees with PyTorch; the checks accept correct alternatives and
reject the stub and plausible bugs with messages that name the bug."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import messages, not_implemented, run_suite, score

from autograder.checks import suites
from solutions import attention as ref

# --- the reference against PyTorch ---------------------------------------------------------


def test_softmax_matches_torch():
    x = torch.randn(3, 5, 7) * 5
    for dim in (0, 1, -1):
        torch.testing.assert_close(ref.softmax(x, dim), torch.softmax(x, dim))
    big = torch.tensor([[1e4, 0.0, -1e4]])
    torch.testing.assert_close(ref.softmax(big), torch.softmax(big, -1))


@pytest.mark.parametrize("mask_kind", [None, "random", "causal"])
def test_attention_matches_torch_sdpa(mask_kind):
    q, k, v = torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 5)
    mask = {None: None, "random": torch.rand(6, 6) > 0.4, "causal": ref.causal_mask(6)}[mask_kind]
    if mask is not None:
        mask[:, 0] = True
    output, weights = ref.scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(output, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 6))


def test_causal_mask_matches_torch_is_causal():
    q = k = v = torch.randn(1, 7, 4)
    output, _ = ref.scaled_dot_product_attention(q, k, v, ref.causal_mask(7))
    torch.testing.assert_close(output, F.scaled_dot_product_attention(q, k, v, is_causal=True))


# --- reference, stub and alternative ----------------------------------------------------

NAMES = ["softmax", "scaled_dot_product_attention", "causal_mask"]


@pytest.mark.parametrize("name", NAMES)
def test_stub_fails_every_check(name, seed):
    results = run_suite("attention", name, not_implemented, seed)
    assert score(results) == 0
    assert all("not implemented yet" in r.message for r in results)


# --- plausible bugs -------------------------------------------------------------------------


def softmax_naive(x, dim=-1):
    return x.exp() / x.exp().sum(dim=dim, keepdim=True)


def softmax_ignores_dim(x, dim=-1):
    return ref.softmax(x, -1)


def softmax_wrong_axis(x, dim=-1):
    return ref.softmax(x, 0)


def softmax_in_float32(x, dim=-1):
    return ref.softmax(x.float(), dim)


def softmax_float32_round_trip(x, dim=-1):
    return ref.softmax(x.float(), dim).to(x.dtype)


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (softmax_in_float32, "has dtype torch.float32"),
        (softmax_float32_round_trip, "only to about float32 precision"),
        (softmax_naive, "exp() overflows"),
        (softmax_ignores_dim, "dim argument is ignored"),
        (softmax_wrong_axis, "normalizes over dim 0"),
    ],
)
def test_softmax_bugs_lose_points(bug, fragment, seed):
    results = run_suite("attention", "softmax", bug, seed)
    assert score(results) < suites("attention")["softmax"].max_score
    assert fragment in messages(results)


def _attention(q, k, v, mask, scale, dim=-1, invert=False, fill=-math.inf):
    scores = q @ k.transpose(-2, -1) * scale
    if mask is not None:
        scores = scores.masked_fill(mask if invert else ~mask, fill)
    weights = torch.softmax(scores, dim)
    return weights @ v, weights


def no_scaling(q, k, v, mask=None):
    return _attention(q, k, v, mask, 1.0)


def scaled_by_d_k(q, k, v, mask=None):
    return _attention(q, k, v, mask, 1 / q.shape[-1])


def softmax_over_queries(q, k, v, mask=None):
    return _attention(q, k, v, mask, 1 / math.sqrt(q.shape[-1]), dim=-2)


def inverted_mask(q, k, v, mask=None):
    return _attention(q, k, v, mask, 1 / math.sqrt(q.shape[-1]), invert=True)


def mask_ignored(q, k, v, mask=None):
    return _attention(q, k, v, None, 1 / math.sqrt(q.shape[-1]))


def mask_applied_after_softmax(q, k, v, mask=None):
    output, weights = _attention(q, k, v, None, 1 / math.sqrt(q.shape[-1]))
    if mask is not None:
        weights = weights * mask
    return weights @ v, weights


def masked_to_zero_not_minus_inf(q, k, v, mask=None):
    return _attention(q, k, v, mask, 1 / math.sqrt(q.shape[-1]), fill=0.0)


def returns_only_output(q, k, v, mask=None):
    return ref.scaled_dot_product_attention(q, k, v, mask)[0]


def weights_and_output_swapped(q, k, v, mask=None):
    output, weights = ref.scaled_dot_product_attention(q, k, v, mask)
    return weights, output


def only_2d(q, k, v, mask=None):
    if q.dim() != 2:
        raise ValueError("expected 2-D inputs")
    return ref.scaled_dot_product_attention(q, k, v, mask)


def weights_detached(q, k, v, mask=None):
    output, weights = ref.scaled_dot_product_attention(q, k, v, mask)
    return weights.detach() @ v, weights


def everything_detached(q, k, v, mask=None):
    output, weights = ref.scaled_dot_product_attention(q, k, v, mask)
    return output.detach(), weights


def attention_in_float32(q, k, v, mask=None):
    return ref.scaled_dot_product_attention(q.float(), k.float(), v.float(), mask)


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (weights_detached, "no gradient reaches q"),
        (everything_detached, "output carries no gradient"),
        (attention_in_float32, "has dtype torch.float32"),
        (no_scaling, "not divided by sqrt(d_k)"),
        (scaled_by_d_k, "divided by d_k"),
        (softmax_over_queries, "softmax runs over the queries"),
        (inverted_mask, "mask is inverted"),
        (mask_ignored, "mask is ignored"),
        (mask_applied_after_softmax, "with a mask"),
        (masked_to_zero_not_minus_inf, "with a mask"),
        (returns_only_output, "should return a tuple (output, weights)"),
        (weights_and_output_swapped, "has shape"),
        (only_2d, "raised ValueError: expected 2-D inputs"),
    ],
)
def test_attention_bugs_lose_points(bug, fragment, seed):
    results = run_suite("attention", "scaled_dot_product_attention", bug, seed)
    assert score(results) < 9
    assert fragment in messages(results)


def test_masked_key_leak_is_named():
    """Weights masked correctly, but the output computed from the unmasked weights."""

    def output_before_masking(q, k, v, mask=None):
        output, _ = ref.scaled_dot_product_attention(q, k, v)
        return output, ref.scaled_dot_product_attention(q, k, v, mask)[1]

    results = run_suite("attention", "scaled_dot_product_attention", output_before_masking)
    assert "masked key still changes the output" in messages(results)


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), "diagonal is False"),
        (lambda n: torch.ones(n, n, dtype=torch.bool).triu(), "see the future"),
        (lambda n: torch.ones(n, n, dtype=torch.bool).triu(1), "mask is inverted"),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(1), "must not see the next token"),
        (lambda n: torch.ones(n, n).tril(), "must be a bool tensor"),
    ],
)
def test_causal_mask_bugs_lose_points(bug, fragment, seed):
    results = run_suite("attention", "causal_mask", bug, seed)
    assert score(results) < 2
    assert fragment in messages(results)


@pytest.mark.parametrize(
    "size, name",
    [(lambda q, k, v: v.shape[-1], "d_v"), (lambda q, k, v: k.shape[-2], "N_k"), (lambda q, k, v: q.shape[-2], "N_q")],
)
def test_a_wrong_scale_is_named_by_the_size_used_at_every_seed(size, name):
    """The drawn sizes are distinct, so the diagnosis names the size the bug divides by, never another."""

    def wrong_scale(q, k, v, mask=None):
        scores = q @ k.transpose(-2, -1) / math.sqrt(size(q, k, v))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return weights @ v, weights

    others = {"d_v", "N_k", "N_q"} - {name}
    for seed in range(20):
        results = run_suite("attention", "scaled_dot_product_attention", wrong_scale, seed)
        named = [r.message for r in results if not r.passed and "divided by sqrt(" in r.message]
        assert named and all(f"divided by sqrt({name})" in message for message in named), (seed, named)
        # where N_q = N_k (square masks) both are named as possible; elsewhere only the size used
        alone = [message for message in named if "more than one" not in message]
        assert alone and not any(f"sqrt({o})" in message for o in others for message in alone), (seed, alone)


def test_causal_mask_cut_from_a_fixed_table_loses_points(seed):
    """The notebook's sentences are 10 words long; a mask sliced from a 16 x 16 table fails on longer ones."""
    table = torch.ones(16, 16, dtype=torch.bool).tril()
    results = run_suite("attention", "causal_mask", lambda n: table[:n, :n], seed)
    assert "has shape (16, 16)" in messages(results)
