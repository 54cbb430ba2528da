"""Checks for chapter 7: ``online_softmax_update``, ``flash_attention_forward``,
``flash_attention_backward``, ``FlashAttentionFunction`` and ``flash_attention_triton``.

Answers are compared in float64 with plain attention (chapter 2's reference, autograd for
gradients) and with ``torch.nn.functional.scaled_dot_product_attention``. Typical bugs (no
rescaling when the running max grows, a missing 1/sqrt(d), a causal mask off by one, a
backward without D = rowsum(dO * O)) are recomputed here on the same inputs so that the
message can name them. Expected values are computed before the learner's code is called.

Block sizes are drawn coprime and unequal, with N longer than block_q * block_k and a
multiple of neither: every offset between a key block's start and a query block occurs, so a
tile-skipping rule that is wrong for some alignment cannot hide behind lucky sizes.

The tiling checks trace every tensor the learner's call creates (forward and backward, causal
or not) and every tensor an ``autograd.Function`` keeps for backward, and bound the largest by
the inputs' size or one (block_q, block_k) tile per batch x head (:func:`_expect_tiled`); they
also bound what the created tensors hold at one time (:func:`_expect_small_peak`: tiles kept in a
list add up to the full matrix), find scores against all N_k keys at once (a row is small but is
not a tile), and fail answers that run PyTorch's own attention or compute gradients with autograd.
Float64 inputs must give float64 results at float64 precision (a bare ``torch.zeros`` is float32).
Each suite also hands its inputs as non-contiguous views (:func:`autograder.suite.noncontiguous`) in
one value check, after the same values in contiguous tensors: a ``.view`` that needs contiguous
memory, or a Triton launcher that reads memory past a view's elements, then fails with a message
that names the layout.
"""

import math
import time

import torch
import torch.nn.functional as F

from autograder.oracle import reference
from autograder.student import StudentError
from autograder.suite import (
    ATOL,
    RTOL,
    CheckFailed,
    Suite,
    distinct_sizes,
    expect_bounded,
    expect_close,
    expect_computed_in_torch,
    expect_little_touched,
    expect_measured,
    expect_shape,
    explain_error,
    is_close,
    noncontiguous,
    randint,
    randn,
)

ch2 = reference("attention")
ref = reference("flash_attention")

online = Suite("online_softmax_update")
forward = Suite("flash_attention_forward")
backward = Suite("flash_attention_backward")
function = Suite("FlashAttentionFunction")
triton_kernel = Suite(
    "flash_attention_triton",
    needs=(
        "triton",
        "not attempted here: this exercise needs Linux with Triton, or a hosted notebook (such as Colab); "
        "Triton is not installed here (it publishes Linux wheels only), and every other exercise grades as usual",
    ),
)
SUITES = {s.function: s for s in (online, forward, backward, function, triton_kernel)}

NEG_INF = float("-inf")


def _expect(actual, expected, what, bugs=lambda: ()):
    """``expect_close``, computing the typical wrong answers ``bugs()`` only when it fails."""
    if not is_close(actual, expected):
        expect_close(actual, expected, what, diagnoses=bugs())


def _tuple(result, n, what):
    if not isinstance(result, (tuple, list)) or len(result) != n:
        raise CheckFailed(
            f"{what} should return a tuple of {n} tensors, got {type(result).__name__}"
            + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        )
    return result


F64_RTOL, F64_ATOL = 1e-10, 1e-12  # float64 answers must agree far beyond float32's 1e-7


def _expect_float64(value, expected, what):
    """``value`` is float64 and agrees with ``expected`` to float64 precision. An answer that
    agrees only to float32 precision computed some part in float32: torch.zeros, torch.full
    and torch.tensor make float32 tensors unless given ``dtype`` (or use ``x.new_zeros``)."""
    value = expect_shape(value, expected.shape, what)
    if value.dtype != torch.float64:
        raise CheckFailed(
            f"{what} has dtype {value.dtype}, but the inputs are float64: results keep the inputs' dtype "
            "(make new tensors with dtype=q.dtype, or q.new_zeros / q.new_full, not a bare torch.zeros)"
        )
    if is_close(value, expected) and not is_close(value, expected, F64_RTOL, F64_ATOL):
        raise CheckFailed(
            f"{what} agrees with the float64 reference only to about float32 precision (largest difference "
            f"{(value.detach() - expected).abs().max().item():.3g}): some part is computed in float32; "
            "torch.zeros, torch.full, torch.ones and torch.tensor make float32 tensors unless given a dtype"
        )
    expect_close(value, expected, what, F64_RTOL, F64_ATOL)


VIEWS = "given as non-contiguous views (a sliced or transposed tensor, as a caller's often is)"


def _with_views(call, name, what):
    """``call()``, which passes the learner non-contiguous views: an error is reported with the
    layout that caused it (the same values in contiguous tensors passed just before)."""
    try:
        return call()
    except StudentError as error:
        raise CheckFailed(
            f"{name} failed {what}, though the same values in contiguous tensors worked: "
            f"{explain_error(str(error))}. Inputs may be views whose memory is not contiguous: reshape with "
            ".reshape (or call .contiguous() first), not .view"
        ) from None


# ---------------------------------------------------------------------------------------
# online_softmax_update


def _update_bugs(acc, row_max, row_sum, scores, v_block):
    """(explanation, (acc, row_max, row_sum)) of typical wrong updates, computed in float64."""
    acc, row_max, row_sum, scores, v_block = (t.double() for t in (acc, row_max, row_sum, scores, v_block))
    new_max = torch.maximum(row_max, scores.amax(-1))
    rescale = torch.exp(row_max - new_max)
    p = torch.exp(scores - new_max[..., None])
    block_max = scores.amax(-1)
    p_block = torch.exp(scores - block_max[..., None])
    return [
        (
            "the old acc and row_sum are not rescaled when the maximum grows: both hold terms exp(s - old max) "
            "and must be multiplied by exp(old max - new max)",
            (acc + p @ v_block, new_max, row_sum + p.sum(-1)),
        ),
        (
            "row_sum is rescaled but the accumulator acc is not: multiply acc by exp(old max - new max) too",
            (acc + p @ v_block, new_max, row_sum * rescale + p.sum(-1)),
        ),
        (
            "acc is rescaled but row_sum is not: multiply row_sum by exp(old max - new max) too",
            (acc * rescale[..., None] + p @ v_block, new_max, row_sum + p.sum(-1)),
        ),
        (
            "the rescaling factor is inverted: old terms shrink by exp(old max - new max) (<= 1), not exp(new max - old max)",
            (acc / rescale[..., None] + p @ v_block, new_max, row_sum / rescale + p.sum(-1)),
        ),
        (
            "row_max is replaced by the new block's maximum; it must be the maximum over ALL keys so far, "
            "max(row_max, max of the block)",
            (
                acc * torch.exp(row_max - block_max)[..., None] + p_block @ v_block,
                block_max,
                row_sum * torch.exp(row_max - block_max) + p_block.sum(-1),
            ),
        ),
        (
            "acc is normalized (divided by row_sum) at every step; keep it unnormalized, sum of exp(s - row_max) v, "
            "and divide once at the end",
            (
                (acc * rescale[..., None] + p @ v_block) / (row_sum * rescale + p.sum(-1))[..., None],
                new_max,
                row_sum * rescale + p.sum(-1),
            ),
        ),
    ]


def _reference_update(inputs):
    return ref.online_softmax_update(*(t.double() for t in inputs))


def _expect_state(result, expected, inputs, what, rtol=None):
    """``rtol`` (default: expect_close's) where float32 cannot do better, e.g. scores near 1e4,
    whose spacing (about 1e-3) bounds the precision of any formulation of the update."""
    tolerance = {} if rtol is None else {"rtol": rtol}
    got = _tuple(result, 3, "online_softmax_update")
    names = ("acc", "row_max", "row_sum")
    for value, want, name in zip(got, expected, names):
        expect_shape(value, want.shape, f"{name} {what}")
    if all(is_close(g, e, **tolerance) for g, e in zip(got, expected)):
        return
    for explanation, wrong in _update_bugs(*inputs):
        if all(is_close(g, w, **tolerance) for g, w in zip(got, wrong)):
            raise CheckFailed(f"the new state {what} is wrong: {explanation}")
    for value, want, name in zip(got, expected, names):
        expect_close(value, want, f"{name} {what}", **tolerance)


# The online checks draw B_q, B_k and d_v all different: a sum or max over the wrong axis of a
# (B_q, B_k) block, or a transposed block, cannot broadcast its way to the right shape.


def _state(gen, batch, b_q, d_v, scores_seen):
    """A consistent state after having seen ``scores_seen`` (..., b_q, n) with random values."""
    v_seen = randn(gen, *batch, scores_seen.shape[-1], d_v, dtype=scores_seen.dtype)
    row_max = scores_seen.amax(-1)
    weights = torch.exp(scores_seen - row_max[..., None])
    return weights @ v_seen, row_max, weights.sum(-1)


@online.check(points=1)
def first_block_from_empty_state(student, gen):
    b_q, b_k, d_v = distinct_sizes(gen, (3, 9), (4, 11), (2, 7))
    acc, row_max, row_sum = torch.zeros(b_q, d_v), torch.full((b_q,), NEG_INF), torch.zeros(b_q)
    scores, v_block = randn(gen, b_q, b_k, scale=2.0), randn(gen, b_k, d_v)
    inputs = (acc, row_max, row_sum, scores, v_block)
    expected = _reference_update(inputs)
    _expect_state(student(*inputs), expected, inputs, "after one block, from acc = 0, row_max = -inf, row_sum = 0")


@online.check(points=1)
def rescales_when_max_grows(student, gen):
    batch, (b_q, b_k, d_v) = (2,), distinct_sizes(gen, (4, 9), (5, 12), (3, 7))
    acc, row_max, row_sum = _state(gen, batch, b_q, d_v, randn(gen, *batch, b_q, randint(gen, 3, 8)))
    scores = randn(gen, *batch, b_q, b_k) + 3.0  # most rows see a larger maximum in this block
    inputs = (acc, row_max, row_sum, scores, randn(gen, *batch, b_k, d_v))
    expected = _reference_update(inputs)
    _expect_state(student(*inputs), expected, inputs, "after a block whose scores exceed the running maximum")
    what = f"for acc, row_max, row_sum, scores and v_block {VIEWS}"
    result = _with_views(lambda: student(*map(noncontiguous, inputs)), "online_softmax_update", what)
    _expect_state(result, expected, inputs, f"after a block whose scores exceed the running maximum, {what}")


@online.check(points=1)
def keeps_max_when_block_is_smaller(student, gen):
    b_q, b_k, d_v = distinct_sizes(gen, (3, 8), (4, 9), (2, 6))
    acc, row_max, row_sum = _state(gen, (), b_q, d_v, randn(gen, b_q, randint(gen, 3, 8)) + 4.0)
    scores = randn(gen, b_q, b_k) - 2.0
    inputs = (acc, row_max, row_sum, scores, randn(gen, b_k, d_v))
    expected = _reference_update(inputs)
    _expect_state(student(*inputs), expected, inputs, "after a block whose scores are all below the running maximum")


@online.check(points=1)
def folding_masked_blocks_gives_attention(student, gen):
    batch, b_q, d_v = (2, 3), randint(gen, 3, 7), randint(gen, 2, 5)
    sizes = [randint(gen, 2, 7) for _ in range(randint(gen, 3, 5))]
    scores = randn(gen, *batch, b_q, sum(sizes), scale=2.0)
    scores[..., 1:] = scores[..., 1:].masked_fill(torch.rand(scores[..., 1:].shape, generator=gen) < 0.3, NEG_INF)
    later = randint(gen, 1, len(sizes) - 1)  # a block that query 0 sees none of, after it has seen key 0
    scores[..., 0, sum(sizes[:later]) : sum(sizes[: later + 1])] = NEG_INF
    v = randn(gen, *batch, sum(sizes), d_v)
    expected_output, expected_lse = ch2.softmax(scores.double()) @ v.double(), scores.double().logsumexp(-1)
    state = (torch.zeros(*batch, b_q, d_v), torch.full((*batch, b_q), NEG_INF), torch.zeros(*batch, b_q))
    start = 0
    for size in sizes:
        state = _tuple(
            student(*state, scores[..., start : start + size], v[..., start : start + size, :]),
            3,
            "online_softmax_update",
        )
        start += size
    acc, row_max, row_sum = state
    expect_shape(row_sum, (*batch, b_q), "row_sum")
    expect_close(
        acc / row_sum[..., None],
        expected_output,
        f"acc / row_sum after folding {len(sizes)} blocks (with -inf = masked scores) one after another",
    )
    expect_close(
        row_max + row_sum.log(), expected_lse, "row_max + log(row_sum) (the log-sum-exp) after folding all blocks"
    )


@online.check(points=1)
def large_scores_stay_finite(student, gen):
    b_q, b_k, d_v = distinct_sizes(gen, (3, 7), (4, 9), (2, 5))
    acc, row_max, row_sum = _state(gen, (), b_q, d_v, randn(gen, b_q, 5, scale=1e3))
    inputs = (acc, row_max, row_sum, randn(gen, b_q, b_k, scale=1e4), randn(gen, b_k, d_v))
    expected = _reference_update(inputs)
    _expect_state(
        student(*inputs),
        expected,
        inputs,
        "for scores near +-1e4 (exp() must only see scores minus the maximum)",
        rtol=4e-3,
    )


@online.check(points=1)
def float64_state_stays_float64(student, gen):
    batch, (b_q, b_k, d_v) = (2,), distinct_sizes(gen, (3, 8), (4, 9), (2, 6))
    scores_seen = randn(gen, *batch, b_q, randint(gen, 3, 8), dtype=torch.float64)
    acc, row_max, row_sum = _state(gen, batch, b_q, d_v, scores_seen)
    scores = randn(gen, *batch, b_q, b_k, scale=2.0, dtype=torch.float64) + 1.0
    inputs = (acc, row_max, row_sum, scores, randn(gen, *batch, b_k, d_v, dtype=torch.float64))
    expected = _reference_update(inputs)
    got = _tuple(student(*inputs), 3, "online_softmax_update")
    for value, want, name in zip(got, expected, ("acc", "row_max", "row_sum")):
        _expect_float64(value, want, name)


# ---------------------------------------------------------------------------------------
# Attention in float64, and the typical wrong variants of it


def _qkv(gen, batch=(), n_q=None, n_k=None, d=None, d_v=None, scale=1.0, dtype=torch.float32):
    n_q, n_k = n_q or randint(gen, 20, 60), n_k or randint(gen, 20, 60)
    d, d_v = d or randint(gen, 5, 20), d_v or randint(gen, 3, 12)
    return (
        randn(gen, *batch, n_q, d, scale=scale, dtype=dtype),
        randn(gen, *batch, n_k, d, scale=scale, dtype=dtype),
        randn(gen, *batch, n_k, d_v, dtype=dtype),
    )


def _scores(q, k, causal, scaled=True):
    s = q.double() @ k.double().transpose(-2, -1)
    if scaled:
        s = s / math.sqrt(q.shape[-1])
    if causal is True:
        causal = 0
    if causal is not False:  # an int: query i sees keys j <= i + causal
        s = s.masked_fill(~torch.ones(s.shape[-2:], dtype=torch.bool).tril(causal), NEG_INF)
    return s


def _attention(q, k, v, causal=False, scaled=True):
    """(output, lse) in float64; ``causal`` False, True, or the diagonal offset of a wrong mask."""
    s = _scores(q, k, causal, scaled)
    return ch2.softmax(s) @ v.double(), s.logsumexp(-1)


def _tiled_without_rescale(q, k, v, causal, block_q, block_k, rescale_sum=False, rescale_acc=False):
    """The output of a tiled forward that rescales neither acc nor row_sum when the maximum grows,
    except the one that ``rescale_sum`` or ``rescale_acc`` names."""
    s, v = _scores(q, k, causal), v.double()
    n_q, n_k = s.shape[-2:]
    out = torch.empty(*s.shape[:-1], v.shape[-1], dtype=torch.float64)
    for q0 in range(0, n_q, block_q):
        acc = torch.zeros(*s.shape[:-2], min(block_q, n_q - q0), v.shape[-1], dtype=torch.float64)
        row_max = torch.full(acc.shape[:-1], NEG_INF, dtype=torch.float64)
        row_sum = torch.zeros(acc.shape[:-1], dtype=torch.float64)
        for k0 in range(0, n_k, block_k):
            tile = s[..., q0 : q0 + block_q, k0 : k0 + block_k]
            old_max, row_max = row_max, torch.maximum(row_max, tile.amax(-1))
            shift = torch.where(row_max == NEG_INF, 0.0, row_max)
            p = torch.exp(tile - shift[..., None])
            if rescale_sum:
                row_sum = row_sum * torch.exp(old_max - shift)
            if rescale_acc:
                acc = acc * torch.exp(old_max - shift)[..., None]
            acc, row_sum = acc + p @ v[..., k0 : k0 + block_k, :], row_sum + p.sum(-1)
        out[..., q0 : q0 + block_q, :] = acc / row_sum[..., None]
    return out


def _wrong_attention(q, k, v, causal, scaled=True):
    """The output of a typical wrong attention (arguments as :func:`_attention`'s), in float64 with
    torch's softmax: a diagnosis needs no reference, so the learner's kit names the same bugs."""
    return torch.softmax(_scores(q, k, causal, scaled), dim=-1) @ v.double()


def _output_bugs(q, k, v, causal, blocks):
    bugs = [(_wrong_attention(q, k, v, causal, scaled=False), "the scores are not divided by sqrt(d)")]
    bugs += [
        (
            _tiled_without_rescale(q, k, v, causal, *b),
            "acc and row_sum are not rescaled by exp(old max - new max) when a later key block raises the "
            "running maximum",
        )
        for b in blocks
    ]
    bugs += [
        (
            _tiled_without_rescale(q, k, v, causal, *b, rescale_sum=True),
            "row_sum is rescaled but the accumulator acc is not: when a later key block raises the running "
            "maximum, acc must be multiplied by exp(old max - new max) too",
        )
        for b in blocks
    ]
    bugs += [
        (
            _tiled_without_rescale(q, k, v, causal, *b, rescale_acc=True),
            "acc is rescaled but row_sum is not: when a later key block raises the running maximum, row_sum "
            "must be multiplied by exp(old max - new max) too",
        )
        for b in blocks
    ]
    if causal:
        bugs += [
            (_wrong_attention(q, k, v, False), "the causal mask is ignored: query i must not see keys after i"),
            (
                _wrong_attention(q, k, v, causal=1),
                "the causal mask is off by one: query i sees key i + 1; it must see keys 0..i",
            ),
        ]
    return bugs


def _lse_bugs(q, k, causal):
    s = _scores(q, k, causal)
    lse = s.logsumexp(-1)
    return [
        (
            _scores(q, k, causal, scaled=False).logsumexp(-1),
            "it is the log-sum-exp of the unscaled scores q k^T; use the scaled scores q k^T / sqrt(d)",
        ),
        (
            lse * math.sqrt(q.shape[-1]),
            "it is sqrt(d) times too large; lse is in units of the scaled scores q k^T / sqrt(d)",
        ),
        (
            lse + (math.sqrt(q.shape[-1]) - 1) * s.amax(-1),
            "row_max is kept in units of the unscaled scores q k^T; lse = row_max + log(row_sum) needs the maximum "
            "of the scaled scores q k^T / sqrt(d)",
        ),
        (lse - s.amax(-1), "the running maximum is missing: lse = row_max + log(row_sum)"),
        (s.amax(-1), "log(row_sum) is missing: lse = row_max + log(row_sum)"),
    ]


def _expect_output(output, q, k, v, causal, blocks, what):
    """The attention output, or a message naming the bug (``blocks``: the (block_q, block_k)
    the answer may have used, to recognize a tiled loop that forgets to rescale)."""
    expected = _attention(q, k, v, causal)[0]
    expect_shape(output, expected.shape, what)
    if causal and torch.isnan(output[..., 0, :]).any():
        raise CheckFailed(
            f"{what} is NaN for query 0, which then sees no key: query i must see keys 0..i, itself included"
        )
    if is_close(output, expected):
        return
    bugs = _output_bugs(q, k, v, causal, blocks)
    if causal and not any(is_close(output, wrong, equal_nan=True) for wrong, _ in bugs):
        wrong_entries = (output.detach().double() - expected).abs() > ATOL + RTOL * expected.abs()
        rows = wrong_entries.reshape(-1, *expected.shape[-2:]).any(0).any(-1)
        wrong = rows.nonzero().flatten().tolist()
        if wrong and torch.isfinite(output).all():
            raise CheckFailed(
                f"{what} is wrong for {len(wrong)} of {len(rows)} queries (the first is query "
                f"{wrong[0]}): "
                "if your non-causal outputs are right, look at which key blocks each query block visits "
                "(a block may be skipped only when all its keys come after all the block's queries) and "
                "at how the mask cuts the tiles that cross the diagonal"
            )
    expect_close(output, expected, what, diagnoses=bugs)


def _expect_attention(result, q, k, v, causal, blocks, what):
    output, lse = _tuple(result, 2, "flash_attention_forward")
    expected_lse = _attention(q, k, v, causal)[1]
    expect_shape(lse, expected_lse.shape, f"lse {what}")
    _expect_output(output, q, k, v, causal, blocks, f"output {what}")
    _expect(lse, expected_lse, f"lse {what}", lambda: _lse_bugs(q, k, causal))


# ---------------------------------------------------------------------------------------
# Sizes that leave tile-skipping bugs nowhere to hide, and the bound on what a tiled call creates


def _blocks(gen, low, high):
    """(block_q, block_k) in [low, high] (low >= 2), coprime and so unequal, either one the larger."""
    while True:
        blocks = randint(gen, low, high), randint(gen, low, high)
        if math.gcd(*blocks) == 1:
            return blocks


def _length(gen, blocks):
    """N > block_q * block_k that neither block divides. With coprime blocks, the first block_q
    key blocks start at every offset 0..block_q - 1 within a query block (and vice versa), so
    every diagonal tile is masked partially, in every way, and the last tiles are shorter."""
    block_q, block_k = blocks
    while True:
        n = randint(gen, block_q * block_k + 1, block_q * block_k + block_q + block_k)
        if n % block_q and n % block_k:
            return n


def _tiling_case(gen, causal, batch=(2, 2)):
    """q, k, v and blocks for the tiling checks: N_q of 200..240 (N_k = N_q when causal, else within 20 of it and
    different, so a tensor with an N_k axis is recognized), d = 8, d_v = 4, blocks of 24..40.
    Per batch x head slice, the inputs (N x 12 <= 2880 elements) and one tile (<= 1560) stay
    well below a strip of scores (block x N >= 4800) or the full matrix (N^2 >= 40000)."""
    blocks = _blocks(gen, 24, 40)
    n_q = randint(gen, 200, 240)
    n_k = n_q if causal else n_q + randint(gen, 1, 20) * (-1) ** randint(gen, 0, 1)
    return (*_qkv(gen, batch=batch, n_q=n_q, n_k=n_k, d=8, d_v=4), blocks)


def _describe_tensor(shape, n_q, n_k):
    """What a too-large tensor of ``shape`` probably is, or "" when its shape does not say."""
    rows, cols = shape[-2:] if len(shape) >= 2 else (None, None)
    if (rows, cols) in ((n_q, n_k), (n_k, n_q)):
        return f"the full N_q x N_k = {n_q} x {n_k} matrix of scores, weights or mask"
    if n_k in (rows, cols):
        return (
            f"scores of a block of queries against all N_k = {n_k} keys at once: the keys must be tiled too, "
            "block_k at a time"
        )
    if n_q in (rows, cols):
        return (
            f"scores of all N_q = {n_q} queries against a block of keys at once: tile the queries too, "
            "block_q at a time"
        )
    return ""


DEFAULT_BLOCKS = (64, 64)  # the exercises' default block_q, block_k


def _describe_default_tile(shape, blocks):
    """A too-large tensor whose last two dimensions are the default blocks: the sizes given were not passed on."""
    if len(shape) >= 2 and tuple(shape[-2:]) == DEFAULT_BLOCKS and tuple(blocks) != DEFAULT_BLOCKS:
        return (
            f"a tile of the default block sizes {DEFAULT_BLOCKS[0]} x {DEFAULT_BLOCKS[1]}, not the block_q x block_k "
            f"= {blocks[0]} x {blocks[1]} given: pass the caller's block sizes on (FlashAttentionFunction keeps them "
            "on ctx in forward for its backward)"
        )
    return ""


def _expect_tiled(shapes, q, k, v, blocks, what):
    """No tensor among ``shapes`` larger than the inputs or one (block_q, block_k) tile, per batch x head."""
    n_q, n_k, d, d_v = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    slices, inputs, tile = math.prod(q.shape[:-2]), max(n_q, n_k) * (d + d_v), blocks[0] * blocks[1]
    expect_bounded(
        shapes,
        slices * max(inputs, tile),
        what,
        f"per batch x head slice ({slices} here), the larger of the inputs' max(N_q, N_k) * (d + d_v) = "
        f"{inputs} and one block_q x block_k = {blocks[0]} x {blocks[1]} tile. Compute scores and weights "
        "one tile at a time",
        lambda shape: _describe_tensor(shape, n_q, n_k) or _describe_default_tile(shape, blocks),
    )


LIBRARY_ATTENTION = ("scaled_dot_product", "flash_attention", "efficient_attention")  # parts of aten op names


def _expect_own_work(trace, name, what, q, k, v, by_autograd="any"):
    """The traced call did the work itself, in PyTorch (not NumPy or Python lists): no PyTorch attention kernel (``F.scaled_dot_product_attention``
    and the fused kernels behind it), and no gradients from torch.autograd (``by_autograd``: "any" for a
    plain function, where no operation may run under autograd's backward; "nested" for an
    ``autograd.Function``, whose own backward runs under autograd but may not call derivative kernels)."""
    expect_computed_in_torch(trace, f"{name} ({what})", q.numel() + k.numel() + v.numel())
    library = sorted(op for op in trace.ops if any(part in op for part in LIBRARY_ATTENTION))
    if library:
        raise CheckFailed(
            f"{name} ({what}) ran PyTorch's own attention ({', '.join(library)}, from "
            "torch.nn.functional.scaled_dot_product_attention): compute the scores, the online softmax and "
            "the weighted sum yourself, one tile at a time"
        )
    nested = sorted(op for op in trace.ops if "_backward" in op)
    if (by_autograd == "any" and trace.autograd) or (by_autograd == "nested" and nested):
        ops = f" ({', '.join(nested)})" if nested else ""
        raise CheckFailed(
            f"{name} ({what}) computes gradients with torch.autograd{ops}: write the backward formulas (dv = p^T dO, "
            "ds = p * (dp - D), dq = ds k / sqrt(d), dk = ds^T q / sqrt(d)) tile by tile, with p recomputed from lse"
        )


def _expect_small_peak(trace, q, k, v, blocks, what):
    """At no time do the tensors the call created hold much more than a few copies of the inputs
    and outputs plus a few tiles, per batch x head: tiles or rows of scores kept alive together (in a
    list, a dict, a stack built at the end) add up to the N_q x N_k matrix, one small tensor at a time."""
    n_q, n_k, d, d_v = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    slices = math.prod(q.shape[:-2])
    budget = 4 * (n_q * (d + d_v + 1) + n_k * (d + d_v)) + 8 * blocks[0] * blocks[1]
    if trace.peak > slices * budget:
        raise CheckFailed(
            f"{what} tensors that held {trace.peak} elements at one time, {trace.peak / slices:.0f} per batch x "
            f"head slice ({slices} here), where {budget} are enough (a few copies of q, k, v, the output and lse, "
            f"and a few {blocks[0]} x {blocks[1]} tiles); the full N_q x N_k matrix has {n_q * n_k}. "
            "Fold each tile into the running state and let it go: keeping tiles or rows of scores or weights "
            "(in a list, to stack or reuse later) stores the N_q x N_k matrix piece by piece"
        )


def _expect_block_sizes(shapes, blocks, what):
    """Some tensor among ``shapes`` is one whole (block_q, block_k) tile, or its transpose: the blocks
    have the sizes the caller asked for. The tiling cases draw N far longer than both blocks, so whole
    tiles occur; an answer that tiles with a size of its own (a fixed 64, block_q for both) makes none."""
    tiles = {tuple(blocks), tuple(blocks[::-1])}
    if not any(len(shape) >= 2 and tuple(shape[-2:]) in tiles for shape in shapes):
        raise CheckFailed(
            f"{what} no block_q x block_k = {blocks[0]} x {blocks[1]} tile (of scores or weights): use the block "
            f"sizes the caller passes, block_q = {blocks[0]} queries and block_k = {blocks[1]} keys at a time (only "
            "the last block of each may be shorter), not a size of your own or the other block's"
        )


def _expect_keys_tiled(shapes, q, k, v, blocks, what):
    """No scores against all N_k keys at once: no tensor (besides k or v transposed, and single rows
    shared by all queries such as positions) whose last axis is N_k. ``N_k`` must differ from
    N_q, d, d_v and the blocks (a row of scores, (..., 1, N_k), is small but is not a tile)."""
    n_k, d, d_v = k.shape[-2], q.shape[-1], v.shape[-1]
    for shape in shapes:
        if len(shape) >= 2 and shape[-1] == n_k and shape[-2] not in (d, d_v) and math.prod(shape) > n_k:
            raise CheckFailed(
                f"{what} a tensor of shape {shape}: scores of queries against all N_k = {n_k} keys at once. "
                f"Tile the keys too: block_k = {blocks[1]} keys at a time, folded in with the online softmax"
            )


# ---------------------------------------------------------------------------------------
# Measured from outside the learner's process: the memory of one long call


MEASURED_N, MEASURED_D = 4096, 32  # N x N float32 scores: 64 MiB per head
MEASURED_BLOCKS = (256, 512)  # tiles of 128 Ki elements (512 KiB)
# Bytes above what the process held when the call began, halfway between what honest answers use and the
# N x N float32 scores (64 MiB): the reference 3-5 MiB, strips of block_q x N_k scores 13-22, one N x N bool
# mask 34; answers that keep the scores or the weights 73 and more.
MEMORY_CAP = 48 << 20
MEASURED_RTOL, MEASURED_ATOL = 1e-3, 1e-4  # sums over thousands of keys in float32, in any order
MID_N, MID_SECONDS = 1024, 1.0  # a first, timed call: tiled answers take milliseconds, scores in Python 3 s


def _warm_up(call, gen, name, causal=True):
    """Call twice before the measured call, unmeasured: on N = 40 (first-call imports, e.g. sympy
    for a first backward, are not the answer's memory), then on N = MID_N, timed by the grader: an
    answer that computes element by element in Python (seconds here, an hour on the long case) fails
    now, with the reason. ``call(q, k, v, causal, blocks)`` calls the learner's code."""
    call(*_qkv(gen, n_q=40, n_k=40, d=MEASURED_D, d_v=MEASURED_D), causal, (16, 16))
    start = time.monotonic()
    call(*_qkv(gen, n_q=MID_N, n_k=MID_N, d=MEASURED_D, d_v=MEASURED_D), causal, MEASURED_BLOCKS)
    seconds = time.monotonic() - start
    if seconds > MID_SECONDS:
        raise CheckFailed(
            f"{name} took {seconds:.1f} s on N = {MID_N} (d = {MEASURED_D}; measured by the grader's clock), where a "
            f"tiled answer takes milliseconds; the check's long sequence (N = {MEASURED_N}) would take "
            f"{(MEASURED_N / MID_N) ** 2 * seconds / 60:.0f} minutes. Compute each tile with PyTorch operations on whole tiles (matrix products, exp, max), not "
            "score by score in Python"
        )


def _measured_case(gen):
    """q, k, v of one long sequence (N_q = N_k = MEASURED_N, d = d_v = MEASURED_D)."""
    return _qkv(gen, n_q=MEASURED_N, n_k=MEASURED_N, d=MEASURED_D, d_v=MEASURED_D)


def _rows(gen, n, count=24) -> torch.Tensor:
    """Rows at which a long call's results are compared: the first, the last and ``count`` drawn."""
    return torch.cat([torch.tensor([0, n - 1]), torch.randperm(n, generator=gen)[:count]]).unique()


def _row_scores(q, k, rows, causal, of="queries"):
    """Scores of the query ``rows`` against every key (``of="queries"``), or of every query against
    the key ``rows`` (``of="keys"``), in the inputs' dtype, masked where a key comes after its query."""
    if of == "queries":
        s, later = q[rows] @ k.T, torch.arange(k.shape[0])[None, :] > rows[:, None]
    else:
        s, later = q @ k[rows].T, rows[None, :] > torch.arange(q.shape[0])[:, None]
    s *= 1 / math.sqrt(q.shape[-1])
    return s.masked_fill_(later, NEG_INF) if causal else s


def _full_attention(q, k, v, causal, chunk=1024):
    """(output, lse) of a long sequence in float32, ``chunk`` queries at a time (the grader's side)."""
    outputs, lses = [], []
    for start in range(0, q.shape[0], chunk):
        rows = torch.arange(start, min(start + chunk, q.shape[0]))
        s = _row_scores(q, k, rows, causal)
        lse = s.logsumexp(-1)
        outputs.append(s.sub_(lse[:, None]).exp_() @ v)
        lses.append(lse)
    return torch.cat(outputs), torch.cat(lses)


def _grad_rows(q, k, v, output, lse, grad_output, causal, rows):
    """(dq, dk, dv) at ``rows`` (of queries for dq, of keys for dk and dv), in float64, by the
    backward formulas from the given output and lse."""
    q, k, v, output, lse, grad_output = (t.double() for t in (q, k, v, output, lse, grad_output))
    scale, delta = 1 / math.sqrt(q.shape[-1]), (grad_output * output).sum(-1)
    p = torch.exp(_row_scores(q, k, rows, causal) - lse[rows, None])  # query rows x all keys
    dq = (p * (grad_output[rows] @ v.T - delta[rows, None])) @ k * scale
    p = torch.exp(_row_scores(q, k, rows, causal, of="keys") - lse[:, None])  # all queries x key rows
    ds = p * (grad_output @ v[rows].T - delta[:, None])
    return dq, ds.T @ q * scale, p.T @ grad_output


def _expect_rows(values, expected, rows, names, what):
    """Each of ``values`` (full-length results of a long call) agrees with ``expected`` at ``rows``."""
    for value, want, name in zip(values, expected, names):
        value = expect_shape(value, (MEASURED_N, *want.shape[1:]), f"{name} {what}")
        expect_close(value[rows], want, f"{name} {what} (rows {rows[:4].tolist()}, ...)", MEASURED_RTOL, MEASURED_ATOL)


def _expect_little_memory(measurement, name, what):
    """The call's peak memory, measured from outside (see ``Student.measured``), and the memory it
    touched that was there before it or stays after it, stay under :data:`MEMORY_CAP`: far above a
    tiled answer's few MiB, far below the N x N matrix."""
    expect_measured(measurement, f"how much memory {name} uses")
    if measurement.peak_bytes > MEMORY_CAP:
        scores = MEASURED_N * MEASURED_N * 4 >> 20
        raise CheckFailed(
            f"{name} ({what}) used {measurement.peak_bytes / 2**20:.0f} MiB of memory beyond what it held before "
            f"the call (measured by {measurement.by}); at most {MEMORY_CAP >> 20} MiB are allowed, while a tiled "
            f"answer needs 5 to 15 (q, k, v, the output and a few {MEASURED_BLOCKS[0]} x {MEASURED_BLOCKS[1]} "
            f"tiles) and the N x N matrix of scores alone takes {scores}. Compute scores and weights one tile at a "
            "time and fold each tile into the running state: keeping tiles or rows (in a list, to stack later), "
            "a full mask or the weights for backward stores the N x N matrix"
        )
    expect_little_touched(
        measurement,
        MEMORY_CAP,
        f"{name} ({what})",
        "Compute scores and weights one tile at a time and fold each tile into the running state",
    )


# ---------------------------------------------------------------------------------------
# flash_attention_forward


@forward.check(points=1)
def returns_output_and_lse(student, gen):
    q, k, v = _qkv(gen, d=randint(gen, 8, 12), d_v=randint(gen, 3, 6))
    output, lse = _tuple(student(q, k, v, block_q=16, block_k=16), 2, "flash_attention_forward")
    expect_shape(output, (q.shape[-2], v.shape[-1]), "output (N_q, d_v) (note d_v != d here)")
    expect_shape(lse, (q.shape[-2],), "lse (N_q,): one log-sum-exp per query")


@forward.check(points=1)
def matches_attention(student, gen):
    blocks = _blocks(gen, 5, 11)
    q, k, v = _qkv(gen, batch=(2, 3), n_q=_length(gen, blocks), n_k=_length(gen, blocks))
    what = f"with batch and head dims, N_q={q.shape[-2]}, N_k={k.shape[-2]}, block_q={blocks[0]}, block_k={blocks[1]}"
    _expect_attention(student(q, k, v, block_q=blocks[0], block_k=blocks[1]), q, k, v, False, [blocks], what)
    views = f"for q, k, v {VIEWS}"
    result = _with_views(
        lambda: student(*map(noncontiguous, (q, k, v)), block_q=blocks[0], block_k=blocks[1]),
        "flash_attention_forward",
        views,
    )
    _expect_attention(result, q, k, v, False, [blocks], f"{what}, {views}")


@forward.check(points=1)
def float64_inputs_give_float64(student, gen):
    blocks = _blocks(gen, 5, 11)
    n = _length(gen, blocks)
    q, k, v = _qkv(gen, batch=(2,), n_q=n, n_k=n, dtype=torch.float64)
    for causal in (False, True):
        output, lse = _tuple(
            student(q, k, v, causal=causal, block_q=blocks[0], block_k=blocks[1]), 2, "flash_attention_forward"
        )
        expected_output, expected_lse = _attention(q, k, v, causal)
        what = f"for float64 q, k, v (causal={causal}, N={n}, block_q={blocks[0]}, block_k={blocks[1]})"
        _expect_attention((output, lse), q, k, v, causal, [blocks], what)  # names the bug when one fits
        _expect_float64(output, expected_output, f"output {what}")
        _expect_float64(lse, expected_lse, f"lse {what}")


@forward.check(points=1)
def agrees_with_torch_sdpa(student, gen):
    for causal in (False, True):
        n = randint(gen, 100, 150)
        q, k, v = _qkv(gen, batch=(2,), n_q=n, n_k=n, d=16, d_v=16)
        expected = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal)
        output, _ = _tuple(student(q, k, v, causal=causal), 2, "flash_attention_forward")
        what = f"output with the default blocks (64), N={n}, causal={causal}"
        _expect_output(output, q, k, v, causal, [(64, 64)], what)
        expect_close(output, expected, f"{what}, compared with torch.nn.functional.scaled_dot_product_attention")


@forward.check(points=1)
def blocks_that_do_not_divide_n(student, gen):
    block_q, block_k = randint(gen, 5, 9), randint(gen, 10, 14)
    for n_q, n_k in (
        (3 * block_q + 1, 2 * block_k + randint(gen, 1, block_k - 1)),
        (randint(gen, 2, 4), randint(gen, 2, 4)),
    ):
        q, k, v = _qkv(gen, n_q=n_q, n_k=n_k)
        output, lse = _tuple(student(q, k, v, block_q=block_q, block_k=block_k), 2, "flash_attention_forward")
        what = f"for N_q={n_q}, N_k={n_k}, block_q={block_q}, block_k={block_k} (the last blocks are shorter)"
        full_k = n_k // block_k * block_k
        if full_k and is_close(output, _attention(q, k[..., :full_k, :], v[..., :full_k, :])[0]):
            raise CheckFailed(
                f"output {what} is wrong: the keys after the last full block of block_k keys are "
                "ignored; the last block may be shorter"
            )
        _expect_attention((output, lse), q, k, v, False, [(block_q, block_k)], what)


@forward.check(points=2)
def causal_attention(student, gen):
    blocks = _blocks(gen, 5, 11)
    n = _length(gen, blocks)
    q, k, v = _qkv(gen, batch=(2,), n_q=n, n_k=n)
    for block_q, block_k in (blocks, blocks[::-1]):  # key blocks longer, then shorter, than query blocks
        _expect_attention(
            student(q, k, v, causal=True, block_q=block_q, block_k=block_k),
            q,
            k,
            v,
            True,
            [(block_q, block_k)],
            f"with causal=True, N={n}, block_q={block_q}, block_k={block_k}",
        )


@forward.check(points=1)
def large_scores_stay_finite(student, gen):
    # |scores| up to about 150: exp() overflows in float32 without the max, and float32 rounding of the
    # scores (about 1e-5 at that size) stays within the comparison's tolerance for any order of operations
    q, k, v = _qkv(gen, d=16, scale=6.0)
    k[0] = q[0] * (120.0 * 4 / q[0].dot(q[0]))  # s_00 = 120 at least once: exp(120) overflows float32
    _expect_attention(
        student(q, k, v, block_q=8, block_k=8),
        q,
        k,
        v,
        False,
        [(8, 8)],
        "for very large scores (|q.k|/sqrt(d) up to about 150)",
    )


@forward.check(points=2)
def never_materializes_scores(student, gen):
    """Measured from outside: on N = MEASURED_N, the call's peak memory (:func:`_expect_little_memory`);
    its output and lse are compared at sampled rows."""
    block_q, block_k = MEASURED_BLOCKS
    for causal in (False, True):
        _warm_up(
            lambda q, k, v, causal, blocks: student(q, k, v, causal=causal, block_q=blocks[0], block_k=blocks[1]),
            gen,
            "flash_attention_forward",
            causal,
        )
        q, k, v = _measured_case(gen)
        result, measurement = student.measured(q, k, v, causal=causal, block_q=block_q, block_k=block_k)
        what = f"N_q = N_k = {MEASURED_N}, d = {MEASURED_D}, causal={causal}, block_q={block_q}, block_k={block_k}"
        _expect_little_memory(measurement, "flash_attention_forward", what)
        rows = _rows(gen, MEASURED_N)
        s = _row_scores(q.double(), k.double(), rows, causal)
        expected = (torch.softmax(s, -1) @ v.double(), s.logsumexp(-1))
        _expect_rows(_tuple(result, 2, "flash_attention_forward"), expected, rows, ("output", "lse"), f"for {what}")


@forward.advice
def tile_by_tile_in_pytorch(student, gen):
    """Advice, recorded in the learner's process: no tensor larger than the inputs or a tile, no
    scores against all keys at once, few tiles alive at a time, computed with PyTorch operations
    (not NumPy), not with PyTorch's attention or autograd, tiles of the block sizes given. Which
    block sizes an answer uses shows only inside its process (every size gives the same values and
    little memory), so honouring block_q and block_k is advice too."""
    for causal in (False, True):
        q, k, v, blocks = _tiling_case(gen, causal)
        _, trace = student.traced(q, k, v, causal=causal, block_q=blocks[0], block_k=blocks[1])
        what = f"N_q={q.shape[-2]}, N_k={k.shape[-2]}, causal={causal}, block_q={blocks[0]}, block_k={blocks[1]}"
        _expect_own_work(trace, "flash_attention_forward", what, q, k, v)
        _expect_tiled(trace.created, q, k, v, blocks, f"flash_attention_forward({what}) created")
        if not causal:
            _expect_keys_tiled(trace.created, q, k, v, blocks, f"flash_attention_forward({what}) created")
        _expect_small_peak(trace, q, k, v, blocks, f"flash_attention_forward({what}) kept")
        _expect_block_sizes(trace.created, blocks, f"flash_attention_forward({what}) created")


# ---------------------------------------------------------------------------------------
# flash_attention_backward


def _grads(q, k, v, output, lse, grad_output, causal, scale_chain=True, delta="output", mask=True):
    """(dq, dk, dv) by the backward formulas in float64, from the given output and lse.
    ``delta`` is how D is formed: "output" (rowsum(dO * O), right), "weights" (rowsum(p * dp),
    equal only when lse and output agree) or None (forgotten); the other keywords switch off
    one ingredient each (typical bugs)."""
    q, k, v, output, lse, grad_output = (t.double() for t in (q, k, v, output, lse, grad_output))
    p = torch.exp(_scores(q, k, causal and mask) - lse[..., None])
    dp = grad_output @ v.transpose(-2, -1)
    if delta == "output":
        dp = dp - (grad_output * output).sum(-1, keepdim=True)
    elif delta == "weights":
        dp = dp - (p * dp).sum(-1, keepdim=True)
    ds = p * dp
    scale = 1 / math.sqrt(q.shape[-1]) if scale_chain else 1.0
    return ds @ k * scale, ds.transpose(-2, -1) @ q * scale, p.transpose(-2, -1) @ grad_output


def _autograd(q, k, v, grad_output, causal):
    """(dq, dk, dv) by autograd through plain attention, in float64 (torch's softmax: a recorded
    reference value, in the learner's kit, has no autograd graph)."""
    q, k, v = (t.double().requires_grad_(True) for t in (q, k, v))
    output = torch.softmax(_scores(q, k, causal), -1) @ v
    return torch.autograd.grad(output, (q, k, v), grad_output.double())


def _backward_case(gen, causal=False, **sizes):
    """Inputs of a backward call: q, k, v, output, lse from the forward, grad_output."""
    q, k, v = _qkv(gen, **sizes)
    output, lse = (t.float() for t in _attention(q, k, v, causal))
    return q, k, v, output, lse, randn(gen, *output.shape)


def _grad_bugs(case, causal, index):
    what = [
        (
            {"scale_chain": False},
            "it is sqrt(d) times too large: the scores are q k^T / sqrt(d), so the chain rule "
            "multiplies ds by 1/sqrt(d) for dq and dk",
        ),
        (
            {"delta": None},
            "ds must be p * (dp - D) with D = rowsum(grad_output * output); without D the "
            "gradient through the softmax's normalization is missing",
        ),
    ]
    if causal:
        what.append(
            (
                {"mask": False},
                "the causal mask is not applied when p is recomputed: future keys get weight "
                "exp(s - lse) > 0 in the backward pass",
            )
        )
    return [(_grads(*case, causal, **kw)[index], text) for kw, text in what]


def _expect_grads(result, case, causal, expected, what):
    q, k, v = case[:3]
    grads = _tuple(result, 3, "flash_attention_backward")
    for index, (grad, want, name, like) in enumerate(zip(grads, expected, ("dq", "dk", "dv"), (q, k, v))):
        expect_shape(grad, like.shape, f"{name} (same shape as {name[1]}) {what}")
        if is_close(grad, want):
            continue
        bugs = _grad_bugs(case, causal, index)
        if causal and torch.isfinite(grad).all() and not any(is_close(grad, wrong) for wrong, _ in bugs):
            raise CheckFailed(
                f"{name} {what} differs from the expected value (largest difference "
                f"{(grad.double() - want).abs().max().item():.3g}); if your non-causal gradients are "
                "right, look at which tiles the loops visit (a tile may be skipped only when all its "
                "keys come after all its queries) and at how p is masked on the tiles that cross the "
                "diagonal"
            )
        expect_close(grad, want, f"{name} {what}", diagnoses=bugs)


@backward.check(points=1)
def returns_three_gradients(student, gen):
    case = _backward_case(gen, d=randint(gen, 8, 12), d_v=randint(gen, 3, 6))
    dq, dk, dv = _tuple(student(*case, block_q=16, block_k=16), 3, "flash_attention_backward")
    for grad, name, like in zip((dq, dk, dv), ("dq", "dk", "dv"), case[:3]):
        expect_shape(grad, like.shape, f"{name} (same shape as {name[1]}; note N_q != N_k and d_v != d here)")


@backward.check(points=1)
def matches_autograd(student, gen):
    blocks = _blocks(gen, 5, 11)
    case = _backward_case(gen, batch=(2, 3), n_q=_length(gen, blocks), n_k=_length(gen, blocks))
    expected = _autograd(*case[:3], case[5], False)
    what = (
        f"with batch and head dims, N_q={case[0].shape[-2]}, N_k={case[1].shape[-2]}, block_q={blocks[0]}, "
        f"block_k={blocks[1]} (compared with autograd)"
    )
    _expect_grads(student(*case, block_q=blocks[0], block_k=blocks[1]), case, False, expected, what)
    views = f"for q, k, v, output, lse and grad_output {VIEWS}"
    result = _with_views(
        lambda: student(*map(noncontiguous, case), block_q=blocks[0], block_k=blocks[1]),
        "flash_attention_backward",
        views,
    )
    _expect_grads(result, case, False, expected, f"{what}, {views}")


@backward.check(points=2)
def causal_gradients(student, gen):
    blocks = _blocks(gen, 5, 11)
    n = _length(gen, blocks)
    case = _backward_case(gen, causal=True, batch=(2,), n_q=n, n_k=n)
    expected = _autograd(*case[:3], case[5], True)
    for block_q, block_k in (blocks, blocks[::-1]):  # key blocks longer, then shorter, than query blocks
        _expect_grads(
            student(*case, causal=True, block_q=block_q, block_k=block_k),
            case,
            True,
            expected,
            f"with causal=True, N={n}, block_q={block_q}, block_k={block_k}",
        )


@backward.check(points=1)
def float64_inputs_give_float64(student, gen):
    blocks = _blocks(gen, 5, 11)
    n = _length(gen, blocks)
    q, k, v = _qkv(gen, batch=(2,), n_q=n, n_k=n, dtype=torch.float64)
    grad_output = randn(gen, 2, n, v.shape[-1], dtype=torch.float64)
    for causal in (False, True):
        output, lse = _attention(q, k, v, causal)
        expected = _autograd(q, k, v, grad_output, causal)
        grads = _tuple(
            student(q, k, v, output, lse, grad_output, causal=causal, block_q=blocks[0], block_k=blocks[1]),
            3,
            "flash_attention_backward",
        )
        what = f"for float64 inputs (causal={causal}, N={n}, block_q={blocks[0]}, block_k={blocks[1]})"
        case = (q, k, v, output, lse, grad_output)
        _expect_grads(grads, case, causal, expected, what)  # names the bug when one fits
        for grad, want, name in zip(grads, expected, ("dq", "dk", "dv")):
            _expect_float64(grad, want, f"{name} {what}")


@backward.check(points=1)
def recomputes_from_saved_lse(student, gen):
    q, k, v, output, lse, grad_output = _backward_case(gen)
    case = (q, k, v, output, lse + math.log(2.0), grad_output)  # every recomputed weight halves: the answer must follow
    result = _tuple(student(*case, block_q=16, block_k=16), 3, "flash_attention_backward")
    fresh_softmax = _autograd(q, k, v, grad_output, False)
    delta_from_weights = _grads(*case, False, delta="weights")
    for index, (grad, want, name) in enumerate(zip(result, _grads(*case, False), ("dq", "dk", "dv"))):
        _expect(
            grad,
            want,
            f"{name} when lse is given as lse + log 2 (the weights exp(s - lse) halve)",
            lambda: [
                (
                    fresh_softmax[index],
                    "the weights are not recomputed from the lse argument: use p = exp(s - lse) with "
                    "the lse the forward pass saved, not a fresh softmax",
                ),
                (delta_from_weights[index], "D must be rowsum(grad_output * output), computed from the saved output"),
                *_grad_bugs(case, False, index),
            ],
        )


@backward.check(points=1)
def blocks_that_do_not_divide_n(student, gen):
    block_q, block_k = randint(gen, 5, 9), randint(gen, 10, 14)
    for n_q, n_k in (
        (3 * block_q + 1, 2 * block_k + randint(gen, 1, block_k - 1)),
        (randint(gen, 2, 4), randint(gen, 2, 4)),
    ):
        case = _backward_case(gen, n_q=n_q, n_k=n_k)
        _expect_grads(
            student(*case, block_q=block_q, block_k=block_k),
            case,
            False,
            _autograd(*case[:3], case[5], False),
            f"for N_q={n_q}, N_k={n_k}, block_q={block_q}, block_k={block_k} (the last blocks are shorter)",
        )


@backward.check(points=2)
def never_materializes_scores(student, gen):
    """Measured from outside: on N = MEASURED_N (causal), the call's peak memory; dq, dk and dv are
    compared at sampled rows."""
    block_q, block_k = MEASURED_BLOCKS

    def call(q, k, v, causal, blocks):
        output, lse = _full_attention(q, k, v, causal)
        student(q, k, v, output, lse, torch.ones_like(output), causal=causal, block_q=blocks[0], block_k=blocks[1])

    _warm_up(call, gen, "flash_attention_backward")
    q, k, v = _measured_case(gen)
    output, lse = _full_attention(q, k, v, True)
    grad_output = randn(gen, *output.shape)
    case = (q, k, v, output, lse, grad_output)
    result, measurement = student.measured(*case, causal=True, block_q=block_q, block_k=block_k)
    what = f"N_q = N_k = {MEASURED_N}, d = {MEASURED_D}, causal=True, block_q={block_q}, block_k={block_k}"
    _expect_little_memory(measurement, "flash_attention_backward", what)
    rows = _rows(gen, MEASURED_N)
    expected = _grad_rows(*case, True, rows)
    _expect_rows(_tuple(result, 3, "flash_attention_backward"), expected, rows, ("dq", "dk", "dv"), f"for {what}")


@backward.advice
def tile_by_tile_in_pytorch(student, gen):
    """Advice, recorded in the learner's process: as for the forward pass, and no torch.autograd."""
    for causal in (False, True):
        q, k, v, blocks = _tiling_case(gen, causal)
        output, lse = (t.float() for t in _attention(q, k, v, causal))
        case = (q, k, v, output, lse, randn(gen, *output.shape))
        _, trace = student.traced(*case, causal=causal, block_q=blocks[0], block_k=blocks[1])
        what = f"N_q={q.shape[-2]}, N_k={k.shape[-2]}, causal={causal}, block_q={blocks[0]}, block_k={blocks[1]}"
        _expect_own_work(trace, "flash_attention_backward", what, q, k, v)
        _expect_tiled(trace.created, q, k, v, blocks, f"flash_attention_backward({what}) created")
        if not causal:
            _expect_keys_tiled(trace.created, q, k, v, blocks, f"flash_attention_backward({what}) created")
        _expect_small_peak(trace, q, k, v, blocks, f"flash_attention_backward({what}) kept")
        _expect_block_sizes(trace.created, blocks, f"flash_attention_backward({what}) created")


# ---------------------------------------------------------------------------------------
# FlashAttentionFunction (called as FlashAttentionFunction.apply(q, k, v, causal, block_q, block_k))


def _apply_with_grad(student, args, grad_output):
    output, grads = student.apply.with_grad(args, grad_output, grad_inputs=(0, 1, 2))
    if not isinstance(output, torch.Tensor):
        raise CheckFailed(
            f"FlashAttentionFunction.apply should return the output tensor only, got {type(output).__name__}"
        )
    return output, grads


def _as_gradient(grad, name, what):
    if grad is None:
        raise CheckFailed(
            f"{name}.grad is None {what}: backward must return a gradient for q, k and v "
            "(and None for causal, block_q, block_k)"
        )
    return grad


def _expect_function_grads(grads, q, k, v, grad_output, causal, what, expected=None):
    expected = _autograd(q, k, v, grad_output, causal) if expected is None else expected
    if causal:
        output, lse = _attention(q, k, v, True)
        unmasked = _grads(q, k, v, output, lse, grad_output, True, mask=False)
    for index, (grad, want, name) in enumerate(zip(grads, expected, ("q", "k", "v"))):
        diagnoses = (
            [
                (
                    unmasked[index],
                    "backward does not apply the causal mask that forward applied: keep causal "
                    "on ctx and pass it to the backward pass",
                )
            ]
            if causal
            else ()
        )
        expect_close(
            _as_gradient(grad, name, what),
            want,
            f"{name}.grad {what} (compared with autograd through plain attention)",
            diagnoses=diagnoses,
        )


@function.check(points=1)
def forward_returns_attention(student, gen):
    q, k, v = _qkv(gen)
    output = student.apply(q, k, v)
    if not isinstance(output, torch.Tensor):
        raise CheckFailed(
            f"FlashAttentionFunction.apply(q, k, v) should return the output tensor only, got {type(output).__name__}"
        )
    _expect_output(output, q, k, v, False, [(64, 64)], "FlashAttentionFunction.apply(q, k, v)")


@function.check(points=1)
def gradients_match_autograd(student, gen):
    q, k, v = _qkv(gen, batch=(2,))
    grad_output = randn(gen, *q.shape[:-1], v.shape[-1])
    output, grads = _apply_with_grad(student, (q, k, v), grad_output)
    _expect_output(output, q, k, v, False, [(64, 64)], "the output of apply(q, k, v)")
    _expect_function_grads(grads, q, k, v, grad_output, False, "after backward of apply(q, k, v)")


@function.check(points=1)
def causal_gradients(student, gen):
    blocks = _blocks(gen, 5, 11)
    n = _length(gen, blocks)
    q, k, v = _qkv(gen, n_q=n, n_k=n)
    grad_output = randn(gen, n, v.shape[-1])
    output, grads = _apply_with_grad(student, (q, k, v, True, *blocks), grad_output)
    what = f"apply(q, k, v, True, {blocks[0]}, {blocks[1]}) (causal, N={n})"
    _expect_output(output, q, k, v, True, [blocks], f"the output of {what}")
    _expect_function_grads(grads, q, k, v, grad_output, True, f"after backward of {what}")


@function.check(points=1)
def batch_dims_and_block_sizes(student, gen):
    q, k, v = _qkv(gen, batch=(2, 2))
    grad_output = randn(gen, *q.shape[:-1], v.shape[-1])
    block_k = randint(gen, 5, 9)
    output, grads = _apply_with_grad(student, (q, k, v, False, 16, block_k), grad_output)
    what = f"apply(q, k, v, False, 16, {block_k}) with batch and head dims"
    _expect_output(output, q, k, v, False, [(16, block_k)], f"the output of {what}")
    _expect_function_grads(grads, q, k, v, grad_output, False, f"after backward of {what}")


@function.check(points=1)
def gradient_of_each_input_alone(student, gen):
    """As autograd asks in a model where only some inputs need gradients (a frozen projection): the
    gradient of q alone, of k alone, of v alone (ctx.needs_input_grad[i] is True for that input only),
    with q, k, v (batch and head dims) handed over as non-contiguous views."""
    q, k, v = _qkv(gen, batch=(2, 2))
    grad_output = randn(gen, *q.shape[:-1], v.shape[-1])
    expected = _autograd(q, k, v, grad_output, False)
    for index, name in enumerate("qkv"):
        what = f"after backward of apply(q, k, v) where only {name} requires grad"
        try:
            output, (grad,) = student.apply.with_grad(
                tuple(map(noncontiguous, (q, k, v))), grad_output, grad_inputs=(index,)
            )
        except StudentError as error:
            raise CheckFailed(
                f"backward failed {what}: {error}. Compute each gradient whatever the others need "
                "(ctx.needs_input_grad[0], [1], [2] say which of q, k, v need one)"
            ) from None
        expect_close(
            _as_gradient(grad, name, f"{what} (is ctx.needs_input_grad read at index {index}?)"),
            expected[index],
            f"{name}.grad {what} (compared with autograd through plain attention)",
        )


def _expect_saved_for_backward(saved, q, k, v, blocks, what):
    """What the forward keeps for backward: no tensor larger than the tiling bound, and in all
    at most twice what q, k, v, the output and lse take (the weights can always be recomputed)."""
    _expect_tiled(saved, q, k, v, blocks, f"{what} keeps for backward")
    n_q, n_k, d, d_v = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    needed = math.prod(q.shape[:-2]) * (n_q * d + n_k * (d + d_v) + n_q * (d_v + 1))
    total = sum(math.prod(shape) for shape in saved)
    if total > 2 * needed:
        raise CheckFailed(
            f"{what} keeps {len(saved)} tensors for backward ({total} elements in all, as "
            f"ctx.saved_tensors or ctx attributes): more than twice q, k, v, the output and lse "
            f"({needed}). Keep those and recompute the weights tile by tile in backward from lse, "
            "instead of storing them"
        )


@function.check(points=2)
def never_materializes_scores(student, gen):
    """Measured from outside: on N = MEASURED_N (causal), the peak memory of forward and backward
    together (weights kept for backward are the N x N matrix); the output and the gradients are
    compared at sampled rows."""
    block_q, block_k = MEASURED_BLOCKS
    _warm_up(
        lambda q, k, v, causal, blocks: _apply_with_grad(student, (q, k, v, causal, *blocks), torch.ones_like(v)),
        gen,
        "FlashAttentionFunction (forward and backward)",
    )
    q, k, v = _measured_case(gen)
    grad_output = randn(gen, MEASURED_N, MEASURED_D)
    args = (q, k, v, True, block_q, block_k)
    output, grads, measurement = student.apply.measured_with_grad(args, grad_output, grad_inputs=(0, 1, 2))
    what = f"apply(q, k, v, True, {block_q}, {block_k}) with N_q = N_k = {MEASURED_N}, d = {MEASURED_D}"
    _expect_little_memory(measurement, "FlashAttentionFunction (forward and backward)", what)
    if not isinstance(output, torch.Tensor):
        raise CheckFailed(
            f"FlashAttentionFunction.apply should return the output tensor only, got {type(output).__name__}"
        )
    full_output, lse = _full_attention(q, k, v, True)
    rows = _rows(gen, MEASURED_N)
    _expect_rows([output], [full_output[rows]], rows, ["the output"], f"of {what}")
    grads = [_as_gradient(grad, name, f"after backward of {what}") for grad, name in zip(grads, "qkv")]
    expected = _grad_rows(q, k, v, full_output, lse, grad_output, True, rows)
    _expect_rows(grads, expected, rows, ("q.grad", "k.grad", "v.grad"), f"after backward of {what}")


@function.advice
def tile_by_tile_in_pytorch(student, gen):
    """Advice, recorded in the learner's process: as for the forward pass, forward and backward
    together, no autograd inside backward, and little kept for backward."""
    for causal in (False, True):
        q, k, v, blocks = _tiling_case(gen, causal)
        grad_output = randn(gen, *q.shape[:-1], v.shape[-1])
        args = (q, k, v, causal, *blocks)
        _, _, trace = student.apply.traced_with_grad(args, grad_output, grad_inputs=(0, 1, 2))
        what = f"apply(q, k, v, {causal}, {blocks[0]}, {blocks[1]}) with N_q={q.shape[-2]}, N_k={k.shape[-2]}"
        _expect_own_work(trace, "FlashAttentionFunction", what, q, k, v, by_autograd="nested")
        _expect_saved_for_backward(trace.saved, q, k, v, blocks, f"FlashAttentionFunction's forward, in {what},")
        created = f"FlashAttentionFunction (forward and backward), in {what}, created"
        _expect_tiled(trace.created, q, k, v, blocks, created)
        if not causal:
            _expect_keys_tiled(trace.created, q, k, v, blocks, created)
        _expect_small_peak(trace, q, k, v, blocks, f"FlashAttentionFunction (forward and backward), in {what}, kept")
        _expect_block_sizes(trace.created, blocks, created)


# ---------------------------------------------------------------------------------------
# flash_attention_triton (graded through Triton's interpreter: small sizes)

ATTENTION_OPS = {
    "mm",
    "bmm",
    "addmm",
    "baddbmm",
    "matmul",
    "_softmax",
    "_safe_softmax",
    "exp",
    "exp2",
    "logsumexp",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_attention_math",
}


@triton_kernel.advice
def launches_a_triton_kernel(student, gen):
    """Advice, recorded in the learner's process: the wrapper launches a Triton kernel and leaves
    the attention to it (no PyTorch matrix products or softmax)."""
    q, k, v = _qkv(gen, n_q=40, n_k=48, d=16, d_v=8)
    _, trace = student.traced(q, k, v)
    used = sorted(ATTENTION_OPS.intersection(trace.ops))
    if used:
        raise CheckFailed(
            f"flash_attention_triton computes attention with PyTorch operations ({', '.join(used)}); "
            "the scores, the online softmax and the weighted sum of values belong in "
            "flash_attention_kernel (tl.dot, tl.exp, tl.max), which the wrapper launches"
        )
    if not trace.kernel_launches:
        raise CheckFailed(
            "flash_attention_triton launched no Triton kernel: the scores, the online softmax and the weighted "
            "sum of values belong in flash_attention_kernel, which the wrapper launches with "
            "flash_attention_kernel[grid](...)"
        )


def _expect_kernel_output(output, q, k, v, causal, what):
    _expect_output(output, q, k, v, causal, [(b, b) for b in (16, 32, 64, 128, 256, 512, 1024)], f"output {what}")


@triton_kernel.check(points=2)
def matches_attention(student, gen):
    q, k, v = _qkv(gen, n_q=randint(gen, 90, 128), n_k=randint(gen, 90, 128), d=32, d_v=16)
    _expect_kernel_output(student(q, k, v), q, k, v, False, f"for N_q={q.shape[-2]}, N_k={k.shape[-2]}, d=32")
    # A key block as wide as the keys above never rescales: here the keys span many blocks of any
    # width up to 1024, and later keys give larger scores, so the running maximum keeps growing.
    q, k, v = _qkv(gen, n_q=randint(gen, 20, 40), n_k=randint(gen, 1100, 1500), d=16, d_v=8)
    k = k * torch.linspace(0.5, 2.0, k.shape[-2])[:, None]
    _expect_kernel_output(
        student(q, k, v),
        q,
        k,
        v,
        False,
        f"for N_q={q.shape[-2]}, N_k={k.shape[-2]} (keys that span many blocks, later keys scoring higher)",
    )


@triton_kernel.check(points=1)
def sizes_not_powers_of_two(student, gen):
    q, k, v = _qkv(gen, n_q=randint(gen, 65, 99), n_k=randint(gen, 33, 63), d=24, d_v=randint(gen, 5, 11))
    _expect_kernel_output(
        student(q, k, v),
        q,
        k,
        v,
        False,
        f"for N_q={q.shape[-2]}, N_k={k.shape[-2]}, d=24, d_v={v.shape[-1]} (loads and stores need masks)",
    )


@triton_kernel.check(points=2)
def causal_attention(student, gen):
    n = randint(gen, 100, 150)
    q, k, v = _qkv(gen, n_q=n, n_k=n, d=16, d_v=16)
    _expect_kernel_output(student(q, k, v, causal=True), q, k, v, True, f"with causal=True, N={n}")


@triton_kernel.check(points=1)
def batch_and_head_dims(student, gen):
    """Batch and head dims (2, 3, N, d); then one head's slices (3, N, d) as non-contiguous views, whose
    gaps hold NaN: a launcher that hands the kernel a view's memory as if it were contiguous (no
    .contiguous(), strides of its own, or the last dimension's stride taken as 1) reads the gaps."""
    n_q, n_k = distinct_sizes(gen, (20, 40), (20, 40))  # k's slices start elsewhere than q's: strides matter
    q, k, v = _qkv(gen, batch=(2, 3), n_q=n_q, n_k=n_k, d=16, d_v=8)
    _expect_kernel_output(student(q, k, v), q, k, v, False, "with batch and head dims (2, 3, N, d)")
    q, k, v = q[0], k[0], v[0]
    what = f"for q, k, v of shape (3, N, d) {VIEWS}"
    output = _with_views(lambda: student(*map(noncontiguous, (q, k, v))), "flash_attention_triton", what)
    expected = _attention(q, k, v)[0]
    output = expect_shape(output, expected.shape, f"output {what}")
    if not is_close(output, expected):
        nan = int(torch.isnan(output.detach()).sum())
        raise CheckFailed(
            f"output {what} is wrong ({f'{nan} NaN values' if nan else 'values differ'}), though the same values in "
            "contiguous tensors gave the right output: the kernel reads memory at offsets made from strides, and in "
            "these views the last dimension's stride is not 1 and gaps (NaN here) lie between elements. In the "
            "launcher, call .contiguous() on q, k and v after reshaping them (and take strides from the tensors "
            "you pass), or pass every stride, the last dimension's included, and use them in the kernel"
        )
