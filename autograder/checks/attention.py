"""Checks for chapter 2: ``softmax``, ``scaled_dot_product_attention``, ``causal_mask``.

Every sub-check compares the learner's answer with ``solutions.attention`` on inputs drawn
from the seeded generator; where a typical bug gives a recognizable answer, the failure
message names the bug. Expected values are computed before the learner's code runs, and the
sizes a message may name (N_q, N_k, d_k, d_v) are drawn pairwise distinct, so that a named
size cannot be another one in disguise. float64 inputs must give float64 results (softmax at
float64 precision), and attention must pass gradients back to q, k and v.
"""

import math

import torch

from autograder.oracle import reference
from autograder.student import StudentError
from autograder.suite import (
    ATOL,
    RTOL,
    CheckFailed,
    Suite,
    blame_dependency,
    distinct_sizes,
    expect_close,
    expect_shape,
    is_close,
    noncontiguous,
    randint,
    randn,
    random_mask,
)

ref = reference("attention")

softmax = Suite("softmax")
attention = Suite("scaled_dot_product_attention", depends_on=(softmax,))
causal = Suite("causal_mask")
SUITES = {s.function: s for s in (softmax, attention, causal)}


def _expect_float64(actual, expected: torch.Tensor, what: str, precise: bool, diagnoses=()):
    """``actual`` has the expected values (a wrong value is reported as such, with ``diagnoses``,
    before any dtype), keeps the float64 dtype of the inputs and, with ``precise``, float64 precision.

    (Attention is not held to float64 precision: a scale computed as torch.sqrt(torch.tensor(d_k))
    is float32, correct for the float32 tensors the chapter uses, and no bug.)"""
    actual = expect_shape(actual, expected.shape, what)
    expect_close(actual, expected, what, diagnoses=diagnoses)
    hint = "look for .float(), or tensors made without dtype=..."
    if actual.dtype != torch.float64:
        raise CheckFailed(f"{what} has dtype {actual.dtype}: it must keep the inputs' dtype ({hint})")
    if not precise:
        return
    if is_close(actual, expected, rtol=1e-5, atol=1e-7) and not is_close(actual, expected, rtol=1e-10, atol=1e-12):
        raise CheckFailed(
            f"{what} agrees with the expected values only to about float32 precision: part of the "
            f"computation ran in float32 ({hint})"
        )
    expect_close(actual, expected, what, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------
# softmax

BUILT_IN_SOFTMAX = {
    "softmax",
    "log_softmax",
    "special_softmax",
    "special_log_softmax",
    "_softmax",
    "_log_softmax",
    "_safe_softmax",
}


@softmax.check(points=1)
def matches_reference_on_last_dim(student, gen):
    x = randn(gen, *distinct_sizes(gen, (2, 4), (3, 9), (5, 11)), scale=2.0)
    expected = ref.softmax(x)
    expect_close(
        student(noncontiguous(x)),
        expected,
        "softmax(x)",
        diagnoses=[
            (ref.softmax(x, dim=0), "it normalizes over dim 0 instead of the last dimension (dim=-1 is the default)"),
            (ref.softmax(x, dim=-2), "it normalizes over dim -2 instead of the last dimension"),
            (x.exp(), "the exponentials are not divided by their sum, so rows do not sum to 1"),
            (
                (x - x.amax(dim=-1, keepdim=True)).exp(),
                "the exponentials are not divided by their sum, so rows do not sum to 1",
            ),
        ],
    )


@softmax.check(points=1)
def respects_dim_argument(student, gen):
    """On float64 logits (a non-contiguous view): the result keeps their dtype and their precision."""
    x = randn(gen, *distinct_sizes(gen, (2, 5), (3, 7), (2, 6)), dtype=torch.float64)
    over_last_dim = ref.softmax(x, dim=-1)
    for dim in (0, 1, -3):
        expected = ref.softmax(x, dim=dim)
        result = student(noncontiguous(x), dim=dim)
        if is_close(result, over_last_dim):
            raise CheckFailed(
                f"softmax(x, dim={dim}) is wrong: the dim argument is ignored (it always normalizes over the "
                "last dimension)"
            )
        _expect_float64(result, expected, f"softmax(x, dim={dim}) for a float64 x", precise=True)


@softmax.check(points=1)
def stable_for_large_logits(student, gen):
    x = randn(gen, randint(gen, 3, 6), randint(gen, 4, 9), scale=1e4)
    x[0, 0] = 1e4
    x[-1] = -1e4
    expected = ref.softmax(x)
    result = student(noncontiguous(x))
    if isinstance(result, torch.Tensor) and not torch.isfinite(result).all():
        raise CheckFailed(
            "softmax of logits near 1e4 contains NaN or inf: exp() overflows for logits this large "
            "(or every exponential of a slice underflows to 0, giving 0/0); look at what is subtracted "
            "before exp(): the largest exponent of each slice along dim should be exp(0) = 1"
        )
    # float32 holds logits near 1e4 to about 1e-3, so exact formulas differ by that much (log-sum-exp)
    expect_close(result, expected, "softmax of logits near 1e4", rtol=5e-3, atol=1e-5)


# ---------------------------------------------------------------------------------------
# scaled_dot_product_attention


def _qkv(gen, batch=(), n=None, scale=1.0):
    """q, k, v with N_q, N_k, d_k and d_v pairwise distinct; with ``n``, N_q = N_k = n (a
    square mask) and the widths differ from n and from each other."""
    if n is None:
        n_q, n_k, d_k, d_v = distinct_sizes(gen, (3, 9), (4, 11), (5, 12), (2, 7))
    else:
        (n_q, n_k), (d_k, d_v) = (n, n), distinct_sizes(gen, (5, 12), (2, 7), avoid=(n,))
    return (
        randn(gen, *batch, n_q, d_k, scale=scale),
        randn(gen, *batch, n_k, d_k, scale=scale),
        randn(gen, *batch, n_k, d_v),
    )


def _result(student, q, k, v, mask=None):
    result = student(q, k, v) if mask is None else student(q, k, v, mask=mask)
    if not isinstance(result, tuple) or len(result) != 2:
        raise CheckFailed(
            f"scaled_dot_product_attention should return a tuple (output, weights), got {type(result).__name__}"
        )
    return result


def _weight_bugs(q, k, v, mask=None):
    """Weights that typical bugs produce, with an explanation of each. Each size named here
    (d_k, d_v, N_q, N_k) has its own value in the inputs, except N_q = N_k for square masks."""
    scores = q @ k.transpose(-2, -1)
    d_k = q.shape[-1]

    def masked(s, m=mask):
        return s if m is None else s.masked_fill(~m, float("-inf"))

    def divided_by(size, name):
        return (
            ref.softmax(masked(scores / math.sqrt(size))),
            f"the scores are divided by sqrt({name}) = sqrt({size}); "
            f"the scale is sqrt(d_k) = sqrt({d_k}), the width of the queries and keys",
        )

    bugs = [
        (
            ref.softmax(masked(scores)),
            "the scores are not divided by sqrt(d_k): the output differs by the factor sqrt(d_k) inside the softmax",
        ),
        (ref.softmax(masked(scores / d_k)), "the scores are divided by d_k; the scale is its square root, sqrt(d_k)"),
        divided_by(k.shape[-2], "N_k"),
        divided_by(q.shape[-2], "N_q"),
        divided_by(v.shape[-1], "d_v"),
        (
            ref.softmax(masked(scores / math.sqrt(d_k)), dim=-2),
            "softmax runs over the queries: rows of weights do not sum to 1 (normalize over the keys, dim=-1)",
        ),
    ]
    if mask is not None:
        scaled = scores / math.sqrt(d_k)
        bugs += [
            (ref.softmax(masked(scaled, ~mask)), "the mask is inverted: True means a query MAY attend"),
            (ref.softmax(scaled), "the mask is ignored"),
            (
                ref.softmax(scaled).masked_fill(~mask, 0.0),
                "the mask is applied after the softmax: the masked weights "
                "are 0, but each row no longer sums to 1; the softmax must already leave the masked keys out",
            ),
            (
                ref.softmax(scaled.masked_fill(~mask, 0.0)),
                "masked keys still get weight: a masked score of 0 gives "
                "exp(0) = 1 in the softmax, like any other key; look at the value the masked scores get",
            ),
        ]
    return bugs


@softmax.advice
def no_library_softmax(student, gen):
    """The exercise's rule, as advice (recorded in the learner's process): built from elementary
    operations, not PyTorch's softmax."""
    _, functions = student.functions(randn(gen, 3, 5))
    if BUILT_IN_SOFTMAX & set(functions):
        raise CheckFailed(
            "softmax calls PyTorch's own softmax (torch.softmax, F.softmax, log_softmax or nn.Softmax); "
            "the exercise is to build it from elementary operations such as exp, sum and max"
        )


@attention.check(points=1)
def returns_output_and_weights_shapes(student, gen):
    """Also at the edges: a batch of one and a single query."""
    q, k, v = _qkv(gen)
    output, weights = _result(student, q, k, v)
    expect_shape(weights, (q.shape[-2], k.shape[-2]), "weights (N_q, N_k)")
    expect_shape(output, (q.shape[-2], v.shape[-1]), "output (N_q, d_v) (note d_v != d_k here)")
    q1 = q[None, :1]  # (1, 1, d_k): a batch of one holding a single query
    output, weights = _result(student, q1, k[None], v[None])
    expect_shape(weights, (1, 1, k.shape[-2]), "weights for a batch of one and one query (1, 1, N_k)")
    expect_shape(output, (1, 1, v.shape[-1]), "output for a batch of one and one query (1, 1, d_v)")


@attention.check(points=1)
def weights_rows_sum_to_one(student, gen):
    q, k, v = _qkv(gen, batch=(2,))
    over_queries = ref.scaled_dot_product_attention(q, k, v)[1].sum(-2)
    _, weights = _result(student, q, k, v)
    expect_shape(weights, (2, q.shape[-2], k.shape[-2]), "weights")
    expect_close(
        weights.sum(-1),
        torch.ones(2, q.shape[-2]),
        "the sum of each row of weights",
        diagnoses=[
            (over_queries, "softmax runs over the queries; normalize over the keys (dim=-1)"),
        ],
    )


def _expect_attention(student, q, k, v, mask, what):
    """Compare (output, weights) with the reference, computed before the learner's call, which
    gets q, k, v and the mask as non-contiguous views (as a learner's own slices and transposes are)."""
    expected_output, expected_weights = ref.scaled_dot_product_attention(q, k, v, mask)
    bugs = _weight_bugs(q, k, v, mask)
    layout = (noncontiguous(q), noncontiguous(k), noncontiguous(v))
    output, weights = _result(student, *layout, None if mask is None else noncontiguous(mask))
    _expect_weights(weights, expected_weights, f"weights{what}", q, k, mask, diagnoses=bugs)
    expect_close(output, expected_output, f"output{what} (weights @ v)")
    return output


def _expect_weights(weights, expected, what, q, k, mask, rtol=RTOL, atol=ATOL, diagnoses=()):
    """Compare the weights; when they are wrong, and they are exactly the learner's own softmax of
    the right scores while that softmax fails its own checks, say so first."""
    try:
        expect_close(weights, expected, what, rtol=rtol, atol=atol, diagnoses=diagnoses)
    except CheckFailed as failure:
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        scores = scores if mask is None else scores.masked_fill(~mask, float("-inf"))
        blame_dependency(
            "softmax",
            lambda their_softmax: is_close(weights, their_softmax(scores), rtol, atol, equal_nan=True),
            "these weights are exactly what your softmax gives for the right scores",
            str(failure),
        )
        raise


@attention.check(points=1)
def matches_reference(student, gen):
    _expect_attention(student, *_qkv(gen), None, "")


@attention.check(points=1)
def batch_and_head_dimensions(student, gen):
    _expect_attention(
        student,
        *_qkv(gen, batch=(randint(gen, 2, 3), randint(gen, 2, 4))),
        None,
        " with batch and head dims (B, H, N, d)",
    )


@attention.check(points=2)
def mask_blocks_keys(student, gen):
    q, k, v = _qkv(gen, batch=(2, 3))
    mask = random_mask(gen, (q.shape[-2], k.shape[-2]))  # broadcast over batch and heads
    mask[:, -1] = False  # the last key is hidden from every query
    expected_output, expected_weights = ref.scaled_dot_product_attention(q, k, v, mask)
    bugs = _weight_bugs(q, k, v, mask)
    output, weights = _result(student, q, k, v, noncontiguous(mask))
    _expect_weights(weights, expected_weights, "weights with a mask", q, k, mask, diagnoses=bugs)
    # A key hidden from every query must not influence anything, whatever its value.
    v_changed = v.clone()
    v_changed[..., -1, :] += 100.0
    changed_output, _ = _result(student, q, k, v_changed, mask)
    if not is_close(changed_output, output, atol=1e-4):
        raise CheckFailed("a masked key still changes the output: keys where the mask is False must get weight 0")
    expect_close(output, expected_output, "output with a mask (weights @ v)")


@attention.check(points=1)
def padding_and_causal_masks_broadcast(student, gen):
    batch, n = 3, randint(gen, 4, 9)
    q, k, v = _qkv(gen, batch=(batch, 2), n=n)
    lengths = torch.randint(1, n + 1, (batch,), generator=gen)
    padding = (torch.arange(n) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, N_k)
    causal = ref.causal_mask(n)
    for mask, what in (
        (padding, "a padding mask of shape (B, 1, 1, N_k)"),
        (causal, "a causal mask of shape (N, N)"),
        (padding & causal, "a causal and padding mask"),
    ):
        _expect_attention(student, q, k, v, mask, f" with {what}")


@attention.check(points=1)
def stable_for_large_scores(student, gen):
    """Two kinds of large scores. Spread out (|q.k| ~ 1e4 between keys): exp() of anything but the
    scores minus their maximum overflows. Offset: every key shares a feature of 30 and every query has
    30 there, so each scaled score is ~900 / sqrt(d_k) (far above float32's exp() limit of ~88) plus a
    difference of order 1 between keys: the weights stay far from one-hot, so a wrong scale shows here
    too, whatever the seed (expected values in float64: formulations differ in float32's last bits)."""
    q, k, v = _qkv(gen, scale=30.0)
    expected_output, expected_weights = ref.scaled_dot_product_attention(q, k, v)
    output, weights = _result(student, q, k, v)
    what = "weights for very large scores (|q.k| ~ 1e4)"
    _expect_weights(weights, expected_weights, what, q, k, None, rtol=5e-3, atol=1e-4)
    expect_close(output, expected_output, "output for very large scores (|q.k| ~ 1e4)", rtol=5e-3, atol=1e-4)
    q, k, v = _qkv(gen)
    q[..., 0], k[..., 0] = 30.0, 30.0
    expected_output, expected_weights = ref.scaled_dot_product_attention(q.double(), k.double(), v.double())
    output, weights = _result(student, q, k, v)
    what = "for scores of ~1e3 that differ by ~1 between keys"
    _expect_weights(weights, expected_weights, f"weights {what}", q, k, None, rtol=5e-3, atol=1e-4)
    expect_close(output, expected_output, f"output {what}", rtol=5e-3, atol=1e-4)


def _attention_gradients(q, k, v, mask, grad_output):
    """The truth: d <output, grad_output> / d (q, k, v) from torch.autograd on the formula
    written here, in float64 (never through the learner's code)."""
    q, k, v = (a.detach().double().requires_grad_(True) for a in (q, k, v))
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~mask, float("-inf"))
    output = torch.softmax(scores, dim=-1) @ v
    return torch.autograd.grad(output, (q, k, v), grad_output.double())


@attention.check(points=1)
def float64_output_and_gradients(student, gen):
    """float64 inputs give a float64 output and float64 weights, and autograd reaches q, k and v
    (through the weights too, not only through v), each asked for alone and all together; with a
    mask, inputs as non-contiguous views. Wrong values are reported before dtypes."""
    q, k, v = (a.double() for a in _qkv(gen, batch=(2,)))
    mask = random_mask(gen, (q.shape[-2], k.shape[-2]))
    expected_output, expected_weights = ref.scaled_dot_product_attention(q, k, v, mask)
    grad_output = randn(gen, *expected_output.shape, dtype=torch.float64)
    expected_grads = _attention_gradients(q, k, v, mask, grad_output)
    bugs = _weight_bugs(q, k, v, mask)
    layout = (noncontiguous(q), noncontiguous(k), noncontiguous(v))
    output, weights = _result(student, *layout, mask)
    _expect_float64(weights, expected_weights, "weights for float64 inputs", precise=False, diagnoses=bugs)
    _expect_float64(output, expected_output, "output for float64 inputs", precise=False)
    for asked in ((0, 1, 2), (0,), (1,), (2,)):
        alone = "" if len(asked) == 3 else f", when only {'qkv'[asked[0]]} requires grad"
        try:
            _, grads = student.with_grad(layout, grad_output, asked, mask=mask)
        except StudentError as error:
            if "does not require grad" not in str(error):
                raise
            raise CheckFailed(
                f"output carries no gradient{alone}: autograd cannot back-propagate through "
                "scaled_dot_product_attention. Something cut it from the graph: .detach(), .data, "
                "torch.no_grad(), .item() or a NumPy round trip"
            ) from None
        for index, grad in zip(asked, grads):
            name = "qkv"[index]
            if grad is None or not grad.abs().sum() > 0:
                raise CheckFailed(
                    f"no gradient reaches {name}{alone}: autograd cannot see how the output depends on it. "
                    "Look for .detach(), .data or torch.no_grad() on the scores or the weights"
                )
            expect_close(grad, expected_grads[index], f"the gradient of output with respect to {name}{alone}")


# ---------------------------------------------------------------------------------------
# causal_mask


@causal.check(points=1)
def bool_square_shape(student, gen):
    # up to sequences far longer than the notebook's examples: a mask cut from a fixed-size table fails
    # and one beyond 1024, GPT-2's context: a table of that size must not be where the mask comes from
    # (a size of 7 or more first: a dtype message then describes the values of a real mask, not of [[0.]])
    for n in (randint(gen, 7, 19), 1, randint(gen, 2, 6), randint(gen, 40, 90), randint(gen, 1025, 1028)):
        mask = expect_shape(student(n), (n, n), f"causal_mask({n})")
        if mask.dtype != torch.bool:
            ones_and_zeros = bool(((mask == 0) | (mask == 1)).all()) if not mask.is_complex() else False
            if ones_and_zeros:
                raise CheckFailed(
                    f"causal_mask({n}) holds 0/1 numbers of dtype {mask.dtype}; it must be a bool tensor (True = "
                    "may attend), since ~mask and masked_fill need bools: build it with dtype=torch.bool, or "
                    "convert with .bool()"
                )
            raise CheckFailed(
                f"causal_mask({n}) holds numbers of dtype {mask.dtype}; it must be a bool tensor (True = may "
                "attend), since ~mask and masked_fill need bools: build it with dtype=torch.bool, or convert "
                "with .bool() after deciding which entries may attend"
            )


@causal.check(points=1)
def true_on_and_below_diagonal(student, gen):
    """A mask of 0/1 numbers is read as bools (1 = True) to tell where its entries are wrong."""
    n = randint(gen, 5, 13)
    ones, expected = torch.ones(n, n, dtype=torch.bool), ref.causal_mask(n)
    mask, what = student(n), f"causal_mask({n})"
    zeros_and_ones = (
        isinstance(mask, torch.Tensor)
        and mask.dtype != torch.bool
        and not mask.is_complex()
        and bool(((mask == 0) | (mask == 1)).all())
    )
    if zeros_and_ones:
        mask, what = mask == 1, f"causal_mask({n}), its 0/1 numbers read as bools,"
    expect_close(
        mask,
        expected,
        what,
        diagnoses=[
            (ones.triu(), "True on and above the diagonal: that lets each position see the future, not the past"),
            (ones.triu(1), "the mask is inverted: True must mark the positions a query MAY attend to"),
            (ones.tril(-1), "the diagonal is False: a position must be able to attend to itself"),
            (ones.tril(1), "one position above the diagonal is True: a position must not see the next token"),
        ],
    )
    if zeros_and_ones:
        raise CheckFailed(
            f"causal_mask({n}) has its 0/1 numbers in the right places, but it must be a bool tensor "
            "(True = may attend), since ~mask and masked_fill need bools: build it with dtype=torch.bool, "
            "or convert with .bool()"
        )
