"""Checks for chapter 8: ``sliding_window_mask``, ``positive_random_features``,
``performer_attention``, ``training_flops``, ``chinchilla_optimal`` and ``fit_power_law``.

Answers are compared with ``solutions.beyond_quadratic`` on seeded inputs. The random
features ``omega`` are an input, so the Performer's output is deterministic and is compared
exactly; a separate, seeded statistical check asks that its error against exact softmax
attention shrink as the number of features grows. Sizes are drawn pairwise distinct, so a
diagnosis that names one of them (N, d, m) cannot be a coincidence of another. The
Performer's linear cost is measured from outside the learner's process (``Student.measured``:
in the sandbox, its control group's counters): on N = 4096 its peak memory stays far below
the N x N matrix, and a 4 times longer input costs about 4 times the CPU time, not 16 times
as any order that pairs every query with every key (q' @ k'^T, even a block of queries at a
time) does. The same rules recorded in the learner's process (tensor sizes, matrix-product
work, values taken out of PyTorch) are advice, worth 0 points. Its output must be the
estimate through the given features (exact softmax attention is named as such) and pass
gradients back to q, k and v, also to each one asked for alone. The features are also checked where
|x|^2 / 2 exceeds float32's exponent range but the features themselves do not, and for their gradient
with respect to x. Every tensor argument is also handed as a non-contiguous view (``suite.noncontiguous``,
the layout of a slice or a transpose), with the expected values computed on the original.
"""

import contextlib
import math
import numbers

import torch

from autograder.oracle import reference
from autograder.student import StudentError
from autograder.suite import (
    CheckFailed,
    Suite,
    as_tensor,
    blame_dependency,
    expect_bounded,
    expect_close,
    expect_computed_in_torch,
    expect_little_touched,
    expect_measured,
    expect_shape,
    is_close,
    noncontiguous,
    randint,
    randn,
)

ref = reference("beyond_quadratic")

window_mask = Suite("sliding_window_mask")
features = Suite("positive_random_features")
performer = Suite("performer_attention", depends_on=(features,))
flops = Suite("training_flops")
chinchilla = Suite("chinchilla_optimal")
power_law = Suite("fit_power_law")
SUITES = {s.function: s for s in (window_mask, features, performer, flops, chinchilla, power_law)}


def _distinct(gen, ranges):
    """One size from each inclusive (low, high) range, all different from one another."""
    while True:
        sizes = [randint(gen, low, high) for low, high in ranges]
        if len(set(sizes)) == len(sizes):
            return sizes


def _number(value, what) -> float:
    """A real number (a Python int or float, or a 0-dim real tensor, as the docstrings say) as a float;
    CheckFailed otherwise."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_complex():
        return float(value)
    if isinstance(value, torch.Tensor):
        raise CheckFailed(
            f"{what} should be a number (a Python float, or a 0-dim tensor), got a tensor of shape {tuple(value.shape)}"
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CheckFailed(f"{what} should be a number (a Python float, or a 0-dim tensor), got {type(value).__name__}")
    return float(value)


def _pair(value, what) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise CheckFailed(
            f"{what} should return a pair of numbers, got {type(value).__name__}"
            + (f" of length {len(value)}" if isinstance(value, (tuple, list)) else "")
        )
    return _number(value[0], f"{what}[0]"), _number(value[1], f"{what}[1]")


def _expect_number(actual: float, expected: float, what: str, diagnoses=(), rtol=1e-6):
    if math.isclose(actual, expected, rel_tol=rtol, abs_tol=1e-12):
        return
    for wrong, explanation in diagnoses:
        if math.isclose(actual, wrong, rel_tol=rtol, abs_tol=1e-12):
            raise CheckFailed(f"{what} is wrong: {explanation}")
    raise CheckFailed(f"{what} = {actual:.6g}, expected {expected:.6g}")


# ---------------------------------------------------------------------------------------
# sliding_window_mask


def _mask_bugs(n, window, global_positions=()):
    positions = torch.arange(n)
    distance = positions[:, None] - positions[None, :]
    is_global = torch.zeros(n, dtype=torch.bool)
    is_global[list(global_positions)] = True
    bugs = [
        (distance.abs() < window, "the band is one key too narrow: query i may attend to keys with |i - j| <= window"),
        (
            (distance >= 0) & (distance <= window),
            "only keys before the query are in the band: the window extends to both sides, |i - j| <= window",
        ),
        (distance.abs() > window, "the mask is inverted: True must mark the pairs that MAY attend"),
    ]
    band = distance.abs() <= window
    if global_positions:
        bugs += [
            (band, "the global positions are ignored"),
            (
                band | is_global[:, None],
                "a global position attends to every key, but every query must also "
                "attend to it (its column is missing)",
            ),
            (
                band | is_global[None, :],
                "every query attends to the global positions, but a global position must "
                "also attend to every key (its row is missing)",
            ),
        ]
    return bugs


@window_mask.check(points=1)
def bool_square_shape(student, gen):
    for n, window in ((1, 0), (randint(gen, 5, 9), 1), (randint(gen, 12, 20), randint(gen, 2, 4))):
        mask = expect_shape(student(n, window), (n, n), f"sliding_window_mask({n}, {window})")
        if mask.dtype != torch.bool:
            raise CheckFailed(
                f"sliding_window_mask({n}, {window}) should be a bool tensor (True = may attend), "
                f"got dtype {mask.dtype}"
            )


@window_mask.check(points=1)
def band_of_width_window(student, gen):
    """Also a long sequence (n of 1,100 to 1,400): beyond any fixed-size table the mask could be cut from."""
    for n, window in (_distinct(gen, [(11, 19), (2, 4)]), (randint(gen, 1100, 1400), randint(gen, 30, 70))):
        expect_close(
            student(n, window),
            ref.sliding_window_mask(n, window),
            f"sliding_window_mask({n}, {window})",
            diagnoses=_mask_bugs(n, window),
        )


@window_mask.check(points=1)
def global_positions_read_and_are_read(student, gen):
    n, window = randint(gen, 13, 21), randint(gen, 1, 3)
    global_positions = sorted({0, randint(gen, window + 3, n - 2)})
    expect_close(
        student(n, window, global_positions),
        ref.sliding_window_mask(n, window, global_positions),
        f"sliding_window_mask({n}, {window}, global_positions={global_positions})",
        diagnoses=_mask_bugs(n, window, global_positions),
    )
    unsorted = [global_positions[-1], 0, *global_positions[1:-1]]  # a caller's list, not in order
    expect_close(
        student(n, window, unsorted),
        ref.sliding_window_mask(n, window, unsorted),
        f"sliding_window_mask({n}, {window}, global_positions={unsorted}) (a list not in order)",
        diagnoses=_mask_bugs(n, window, unsorted),
    )
    as_tuple = tuple(global_positions[::-1])
    expect_close(
        student(n, window, global_positions=as_tuple),
        ref.sliding_window_mask(n, window, as_tuple),
        f"sliding_window_mask({n}, {window}, global_positions={as_tuple}) (passed by keyword, as a tuple)",
        diagnoses=_mask_bugs(n, window, as_tuple),
    )


@window_mask.check(points=1)
def window_zero_and_window_beyond_n(student, gen):
    n = randint(gen, 6, 12)
    for window in (0, n + randint(gen, 0, 3)):
        expect_close(
            student(n, window),
            ref.sliding_window_mask(n, window),
            f"sliding_window_mask({n}, {window})",
            diagnoses=_mask_bugs(n, window),
        )


# ---------------------------------------------------------------------------------------
# positive_random_features


def _feature_bugs(x, omega):
    projection = x.double() @ omega.double().T
    squared_norm = x.double().pow(2).sum(-1, keepdim=True)
    m = omega.shape[0]
    return [
        (torch.exp(projection - squared_norm / 2), "the features are not divided by sqrt(m)"),
        (
            torch.exp(projection - squared_norm / 2) / m,
            "the features are divided by m; divide by sqrt(m), so that "
            "the dot product of two feature vectors averages over m terms",
        ),
        (torch.exp(projection) / math.sqrt(m), "the -|x|^2 / 2 term is missing from the exponent"),
        (
            torch.exp(projection - squared_norm) / math.sqrt(m),
            "the exponent subtracts |x|^2; it should subtract |x|^2 / 2",
        ),
        (
            torch.exp(projection - squared_norm.sqrt() / 2) / math.sqrt(m),
            "the exponent subtracts |x| / 2 (the norm); it should subtract |x|^2 / 2 (the squared norm)",
        ),
    ]


@features.check(points=1)
def shape_batch_by_features(student, gen):
    n, d, m = _distinct(gen, [(5, 9), (3, 4), (11, 17)])
    x, omega = randn(gen, 2, 3, n, d, scale=0.5), randn(gen, m, d)
    expect_shape(student(x, omega), (2, 3, n, m), f"positive_random_features(x (2, 3, N={n}, d={d}), omega (m={m}, d))")


@features.check(points=2)
def matches_definition(student, gen):
    n, d, m = _distinct(gen, [(5, 9), (3, 4), (11, 17)])
    x, omega = randn(gen, 2, n, d, scale=0.6), randn(gen, m, d)
    expected, diagnoses = ref.positive_random_features(x, omega), _feature_bugs(x, omega)
    expect_close(student(x, omega), expected, "phi(x) = exp(x omega^T - |x|^2/2) / sqrt(m)", diagnoses=diagnoses)
    expect_close(  # the layout of a transposed or sliced tensor, which a learner's own code passes too
        student(noncontiguous(x), noncontiguous(omega)),
        expected,
        "phi(x) for x and omega given as non-contiguous views (as transposed or sliced tensors are)",
        diagnoses=diagnoses,
    )
    _expect_feature_gradient(student, x, omega, randn(gen, *expected.shape))
    _expect_stable_features(student, gen)


def _phi(x, omega):
    """phi(x) = exp(x omega^T - |x|^2 / 2) / sqrt(m), written here where the grader needs what the kit
    cannot record: an autograd graph, or values at inputs only a wrong answer reaches."""
    return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])


def _expect_feature_gradient(student, x, omega, grad_output):
    """The gradient with respect to x alone (x and omega as non-contiguous views), against autograd's
    through the definition in float64: the Performer's gradients to q and k pass through the features."""
    x64 = x.double().requires_grad_(True)
    _phi(x64, omega.double()).backward(grad_output.double())  # not the reference's: the kit's has no graph
    try:
        _, (grad,) = student.with_grad((noncontiguous(x), noncontiguous(omega)), grad_output, grad_inputs=(0,))
    except StudentError as error:
        if "grad" not in str(error) or "inplace" in str(error):
            raise
        raise CheckFailed(
            "no gradient flows back to x: phi(x) is cut off from the graph (.detach(), torch.no_grad(), .item() "
            "or a NumPy round trip), so the Performer's queries and keys could not learn"
        ) from None
    if grad is None:
        raise CheckFailed("no gradient reaches x: it is detached from phi(x) (.detach(), .data)")
    expect_close(grad, x64.grad, "the gradient of phi(x) with respect to x (x and omega as non-contiguous views)")


def _expect_stable_features(student, gen):
    """|x|^2 / 2 beyond float32's exp range (about 88) while the features themselves are moderate:
    the rows of omega are x / 2 plus noise, so x omega^T - |x|^2 / 2 stays near 0."""
    n, d, m = _distinct(gen, [(5, 7), (3, 4), (9, 12)])
    x = randn(gen, n, d)
    x = x / x.norm(dim=-1, keepdim=True) * (14.0 + 2.0 * torch.rand(n, 1, generator=gen))  # |x|^2 / 2 ~ 100-128
    omega = torch.cat([x / 2 + randn(gen, n, d, scale=0.05), randn(gen, m - n, d)])
    result = student(x, omega)
    if not torch.isfinite(as_tensor(result, "phi(x)")).all():
        raise CheckFailed(
            "phi(x) is inf or NaN for |x|^2 / 2 of about 100, where exp(x omega^T - |x|^2 / 2) itself is of "
            "moderate size: exp(x omega^T) and exp(|x|^2 / 2) overflow on their own, so subtract in the "
            "exponent and take exp once"
        )
    expect_close(result, ref.positive_random_features(x, omega), "phi(x) for |x|^2 / 2 of about 100")


@features.check(points=1)
def estimates_the_softmax_kernel(student, gen):
    """E[phi(q) . phi(k)] = exp(q . k): with many features the average is close."""
    d, m = 4, 20000
    q, k = randn(gen, 3, d, scale=0.25), randn(gen, 3, d, scale=0.25)
    omega = randn(gen, m, d)
    phi_q, phi_k = student(q, omega), student(k, omega)
    expect_shape(phi_q, (3, m), f"positive_random_features(q (3, {d}), omega ({m}, {d}))")
    estimate = (phi_q.double() * expect_shape(phi_k, (3, m), "phi(k)").double()).sum(-1)
    exact = (q.double() * k.double()).sum(-1).exp()
    if not torch.allclose(estimate, exact, rtol=0.05):
        raise CheckFailed(
            f"phi(q) . phi(k) averaged over {m} features should estimate exp(q . k) = "
            f"{exact.tolist()}, got {estimate.tolist()}"
        )


# ---------------------------------------------------------------------------------------
# performer_attention


def _performer_bugs(q, k, v, omega):
    q, k, v, omega = q.double(), k.double(), v.double(), omega.double()
    d = q.shape[-1]

    def approx(q_scaled, k_scaled, normalize=True):
        q_features, k_features = _phi(q_scaled, omega), _phi(k_scaled, omega)
        numerator = q_features @ (k_features.transpose(-2, -1) @ v)
        return numerator / (q_features @ k_features.sum(-2).unsqueeze(-1)) if normalize else numerator

    exact = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1) @ v
    return [
        (
            exact,
            "it is exact softmax attention, not the Performer's estimate of it: compute the output through the "
            "random features q' = phi(q d^(-1/4)) and k' = phi(k d^(-1/4)) of the given omega, as "
            "q' (k'^T v) / q' (k'^T 1)",
        ),
        (
            approx(q, k),
            "q and k are not scaled by d^(-1/4) before the features: the kernel must estimate "
            "exp(q . k / sqrt(d)), the softmax's scaled scores",
        ),
        (
            approx(q / math.sqrt(d), k / math.sqrt(d)),
            "q and k are each scaled by 1/sqrt(d); scale each by d^(-1/4), so their product carries 1/sqrt(d)",
        ),
        (
            approx(q * d**-0.25, k * d**-0.25, normalize=False),
            "the rows are not normalized: divide each output row by q'_i . (sum over j of k'_j)",
        ),
    ]


def _performer_inputs(gen, n_q, n_k, d, d_v, m, batch=(2,), scale=1.0):
    return (
        randn(gen, *batch, n_q, d, scale=scale),
        randn(gen, *batch, n_k, d, scale=scale),
        randn(gen, *batch, n_k, d_v),
        randn(gen, m, d),
    )


@performer.check(points=1)
def output_shape(student, gen):
    n_q, n_k, d, d_v, m = _distinct(gen, [(5, 8), (9, 12), (3, 4), (13, 15), (16, 24)])
    q, k, v, omega = _performer_inputs(gen, n_q, n_k, d, d_v, m, batch=(2, 3))
    expect_shape(
        student(q, k, v, omega),
        (2, 3, n_q, d_v),
        f"performer_attention(q (2, 3, {n_q}, {d}), k (2, 3, {n_k}, {d}), v (2, 3, {n_k}, {d_v}), omega ({m}, {d}))",
    )


@performer.check(points=2)
def matches_reference_for_the_same_features(student, gen):
    """Also q, k, v and omega as non-contiguous views (values and gradients), and the gradient of each
    of q, k and v asked for alone (the others then need none)."""
    n_q, n_k, d, d_v, m = _distinct(gen, [(5, 8), (9, 12), (3, 4), (13, 15), (16, 24)])
    q, k, v, omega = _performer_inputs(gen, n_q, n_k, d, d_v, m)
    expected = ref.performer_attention(q, k, v, omega)
    output = student(q, k, v, omega)
    with _blaming_features(output, q, k, v, omega):
        expect_close(output, expected, "performer_attention(q, k, v, omega)", diagnoses=_performer_bugs(q, k, v, omega))
    views = tuple(noncontiguous(t) for t in (q, k, v, omega))  # the layout of transposed or sliced tensors
    expect_close(student(*views), expected, "performer_attention for q, k, v and omega given as non-contiguous views")
    grad_output = randn(gen, 2, n_q, d_v)
    expected_grads = ref.performer_attention_grads(q, k, v, omega, grad_output)
    for name, grad, expected_grad in zip(
        "qkv", _performer_grads(student, (q, k, v, omega), grad_output, (0, 1, 2)), expected_grads
    ):
        expect_close(grad, expected_grad, f"the gradient with respect to {name}")
    for index, name in enumerate("qkv"):
        (grad,) = _performer_grads(student, views, grad_output, (index,))
        expect_close(
            grad,
            expected_grads[index],
            f"the gradient with respect to {name} asked for alone (q, k, v and omega as non-contiguous views)",
        )


def _performer_grads(student, args, grad_output, grad_inputs):
    """The learner's gradients with respect to the arguments at ``grad_inputs`` (each present)."""
    names = ", ".join("qkv"[i] for i in grad_inputs)
    try:
        _, grads = student.with_grad(args, grad_output, grad_inputs=grad_inputs)
    except StudentError as error:
        if "grad" not in str(error) or "inplace" in str(error):
            raise
        raise CheckFailed(
            f"no gradient flows back to {names}: the output is cut off from the graph (.detach(), "
            "torch.no_grad(), .item() or a NumPy round trip), so a model using it could not learn"
        ) from None
    for index, grad in zip(grad_inputs, grads):
        if grad is None:
            raise CheckFailed(f"no gradient reaches {'qkv'[index]}: it is detached from the output (.detach(), .data)")
    return grads


@performer.check(points=1)
def error_shrinks_as_features_grow(student, gen):
    """Seeded and averaged over draws: more features, closer to exact softmax attention."""
    q, k, v, _ = _performer_inputs(gen, 12, 14, 4, 5, 1, batch=(), scale=0.5)
    exact = torch.softmax(q.double() @ k.double().T / 2.0, dim=-1) @ v.double()
    errors = {}
    for m in (8, 2048):
        draws = [student(q, k, v, randn(gen, m, 4)) for _ in range(4)]
        errors[m] = (
            sum((expect_shape(o, exact.shape, "output").double() - exact).abs().mean().item() for o in draws) / 4
        )
    if not errors[2048] < errors[8] / 4:
        failure = (
            f"with m = 2048 features the mean error against exact softmax attention is {errors[2048]:.3g}, "
            f"with m = 8 it is {errors[8]:.3g}: it should shrink about as 1/sqrt(m)"
        )
        omega = randn(gen, 2048, q.shape[-1])
        output = student(q, k, v, omega)
        _blame_features(output, q, k, v, omega, failure)
        raise CheckFailed(failure + _why_the_error_stays(student, gen, q, k, v, omega, output))


LINEAR_WORK = 12  # work allowed per batch entry, token and unit of m * (d + d_v + 1): the linear order's few passes


@performer.advice
def linear_work_in_pytorch(student, gen):
    """Advice, recorded in the learner's process: no tensor with N_q * N_k elements per batch
    entry (N_q, N_k >> m, d), work (matrix products' multiply-adds plus elements created) linear
    in N, computed with PyTorch operations (not NumPy or Python numbers)."""
    n_q, n_k = _distinct(gen, [(600, 700), (750, 850)])
    d, d_v, m = 4, 6, 8
    q, k, v, omega = _performer_inputs(gen, n_q, n_k, d, d_v, m, batch=(2,), scale=0.5)
    _, trace = student.traced(q, k, v, omega)
    expect_computed_in_torch(trace, "performer_attention on a long sequence", q.numel() + k.numel() + v.numel())
    batch, n = q.shape[0], max(n_q, n_k)  # the features, k'^T v and the output fit in batch x N x max(m, d, d_v)
    expect_bounded(
        trace.created,
        batch * n * max(m, d, d_v),
        "performer_attention created",
        f"batch x N x max(m, d, d_v) for {batch} sequences of up to N = {n} tokens",
        lambda shape: "the size of the score matrix the Performer exists to avoid: multiply in the order "
        "that never pairs every query with every key"
        if math.prod(shape) >= n_q * n_k
        else "",
    )
    work = trace.multiply_adds + sum(math.prod(shape) for shape in trace.created)
    allowed = LINEAR_WORK * batch * n * m * (d + d_v + 1)
    if work > allowed:
        raise CheckFailed(
            f"performer_attention did {work:,} units of work (multiply-adds of matrix products plus elements "
            f"created) for {batch} sequences of {n_q} queries and {n_k} keys with m = {m} features; the linear "
            f"order needs about batch x N x m x (d + d_v + 1), and {allowed:,} are allowed. The work grows as "
            "N_q x N_k: some step pairs every query with every key (q' @ k'^T, even a block of queries at a "
            "time). Multiply k'^T v (m x d_v) first, then q' by it"
        )


LONG_N, SHORT_N = 4096, 512  # 8 times the tokens: about 8 times the CPU time if linear, 64 if quadratic
MEASURED_SIZES = {"d": 16, "d_v": 16, "m": 64}
MEMORY_CAP = 24 << 20  # bytes above what the process held: N x N float32 scores at LONG_N take 64 MiB, the rest ~3
CPU_RATIO = 12  # the most CPU time the long input may cost, in multiples of the short one's
CPU_SLACK = 0.01  # seconds: on inputs a linear answer runs in milliseconds, a few of noise
EARLY = 1.25  # one long call this far above the limit decides: the other long calls would only cost time
REPEATS = 3


@performer.check(points=2)
def never_forms_the_score_matrix(student, gen):
    """Measured from outside: on N = 4096, the call's peak memory stays far below the N x N
    matrix; and the median CPU time of 3 calls on N = 4096 is at most 12 times the least of 3 on
    N = 512 (linear work: about 8 times; pairing every query with every key: about 64 times on
    paper, 23 to 35 measured for blocks of queries, whose calls on N = 512 are mostly overhead, and
    over 100 for a Python loop over the queries; one long call above 15 times already decides). The
    long call's output is compared at sampled rows. The suite's last sub-check: a quadratic answer
    that spends the time budget here loses no other sub-check."""
    d, d_v, m = MEASURED_SIZES.values()
    omega = randn(gen, m, d)
    student(*_performer_inputs(gen, 30, 30, d, d_v, m, batch=(1,), scale=0.5)[:3], omega)  # warm-up
    cases = {n: _performer_inputs(gen, n, n, d, d_v, m, batch=(1,), scale=0.5)[:3] for n in (SHORT_N, LONG_N)}
    cpu, results = {SHORT_N: [], LONG_N: []}, {}
    for n in [SHORT_N] * REPEATS + [LONG_N] * REPEATS:  # the short ones first: a clear excess stops early
        results[n], measurement = student.measured(*cases[n], omega)
        expect_measured(measurement, "the memory and CPU time of performer_attention")
        cpu[n].append(measurement.cpu_seconds)
        if n == LONG_N and measurement.peak_bytes > MEMORY_CAP:
            raise CheckFailed(
                f"performer_attention on N = {n} tokens used {measurement.peak_bytes / 2**20:.0f} MiB of memory "
                f"beyond what it held before the call (measured by {measurement.by}); at most "
                f"{MEMORY_CAP >> 20} MiB are allowed, the features, k'^T v and the output take about "
                f"{n * (2 * m + d_v) * 4 >> 20}, and the N x N matrix of q' k'^T alone {n * n * 4 >> 20}: the "
                "matrix the Performer exists to avoid. Multiply k'^T v (m x d_v) first, then q' by it"
            )
        if n == LONG_N:
            expect_little_touched(
                measurement,
                MEMORY_CAP,
                f"performer_attention on N = {n} tokens",
                "Multiply k'^T v (m x d_v) first, then q' by it",
            )
        if n == LONG_N and cpu[LONG_N][-1] > EARLY * (CPU_RATIO * min(cpu[SHORT_N]) + CPU_SLACK):
            break
    short, long = min(cpu[SHORT_N]), sorted(cpu[LONG_N])[len(cpu[LONG_N]) // 2]  # short calls: mostly overhead, noisy
    if long > CPU_RATIO * short + CPU_SLACK:
        raise CheckFailed(
            f"performer_attention took {long * 1000:.0f} ms of CPU time on N = {LONG_N} tokens and "
            f"{short * 1000:.0f} ms on N = {SHORT_N} (the median of the long calls, the fastest short one; measured "
            f"by {measurement.by}): {long / max(short, 1e-9):.1f} times as much for {LONG_N // SHORT_N} times the "
            f"tokens, where linear work costs about {LONG_N // SHORT_N} times and at most {CPU_RATIO} are allowed. "
            "The work grows as N_q x N_k: some step pairs every query with every key (q' @ k'^T, "
            "even a block of queries at a time). Multiply k'^T v (m x d_v) first, then q' by it"
        )
    q, k, v = cases[LONG_N]
    rows = torch.cat([torch.tensor([0, LONG_N - 1]), torch.randperm(LONG_N, generator=gen)[:24]]).unique()
    expect_close(
        expect_shape(results[LONG_N], (1, LONG_N, d_v), f"performer_attention on N = {LONG_N} tokens")[:, rows],
        ref.performer_attention(q[:, rows], k, v, omega),
        f"performer_attention on N = {LONG_N} tokens (rows {rows[:4].tolist()}, ...)",
        rtol=1e-3,
        atol=1e-4,
    )


def _through_features(phi, q, k, v, omega):
    """The Performer's output in float64 with the feature map ``phi`` (the learner's, through its handle)."""
    scale = q.shape[-1] ** -0.25
    q_features, k_features = (phi(x * scale, omega).double() for x in (q, k))
    numerator = q_features @ (k_features.transpose(-2, -1) @ v.double())
    return numerator / (q_features @ k_features.sum(-2).unsqueeze(-1))


@contextlib.contextmanager
def _blaming_features(output, q, k, v, omega):
    """A failure inside names the learner's positive_random_features first when it fails its own checks
    and ``output`` is exactly the Performer computed with it (the real cause is the feature map)."""
    try:
        yield
    except CheckFailed as failure:
        _blame_features(output, q, k, v, omega, str(failure))
        raise


def _blame_features(output, q, k, v, omega, failure):
    blame_dependency(
        "positive_random_features",
        lambda theirs: is_close(output, _through_features(theirs, q, k, v, omega), equal_nan=True),
        "this output is exactly what the Performer computes with your positive_random_features",
        failure,
    )


def _why_the_error_stays(student, gen, q, k, v, omega, output):
    """The cause of an error that does not shrink, where the evidence names one (else ""): a typical bug
    whose output the answer matches, or features of omega that do not change the output."""
    for wrong, explanation in _performer_bugs(q, k, v, omega):
        if is_close(output, wrong):
            return f": {explanation}"
    if is_close(student(q, k, v, randn(gen, 2048, q.shape[-1])), output, rtol=1e-6, atol=1e-7):
        return (
            ": the output stays the same for another omega: compute it through the random features "
            "q' = phi(q d^(-1/4)) and k' = phi(k d^(-1/4)) of the given omega"
        )
    changed = omega.clone()
    changed[1024:] = randn(gen, 1024, q.shape[-1])
    if is_close(student(q, k, v, changed), output, rtol=1e-6, atol=1e-7):
        return (
            ": the output stays the same when the last 1024 rows of omega change: are all the features of omega used?"
        )
    return ""


# ---------------------------------------------------------------------------------------
# training_flops, chinchilla_optimal


@flops.check(points=2)
def six_flops_per_parameter_per_token(student, gen):
    cases = [(175e9, 300e9), (randint(gen, 10, 900) * 1e6, randint(gen, 2, 90) * 1e9), (randint(gen, 3, 9), 7)]
    for n_params, n_tokens in cases:
        actual = _number(student(n_params, n_tokens), f"training_flops({n_params:g}, {n_tokens:g})")
        _expect_number(
            actual,
            ref.training_flops(n_params, n_tokens),
            f"training_flops({n_params:g}, {n_tokens:g})",
            [
                (
                    2 * n_params * n_tokens,
                    "2 N D counts only the forward pass; the backward pass costs about twice as "
                    "much again, 6 N D in all",
                ),
                (
                    n_params * n_tokens,
                    "N D counts one operation per parameter and token; a multiply and an add per "
                    "parameter, forward and backward, make 6 N D",
                ),
                (4 * n_params * n_tokens, "4 N D leaves out the forward pass (2 N D) or part of the backward"),
            ],
        )


def _chinchilla_bugs(compute, r):
    return [
        (math.sqrt(compute / r), "6 N D = C is not used: N = sqrt(C / r) leaves out the 6"),
        (compute / (6 * r), "N^2 = C / (6 r): take the square root"),
        (math.sqrt(compute / (6 * r)) / r, "the ratio is applied the wrong way round: D = r N tokens for N parameters"),
    ] + (
        [(math.sqrt(compute / 120), "the tokens_per_parameter argument is ignored: 20 is used whatever it is")]
        if r != 20
        else []
    )


def _expect_optimum(student, compute, r, what, *args, **kwargs):
    n_params, n_tokens = _pair(student(compute, *args, **kwargs), what)
    expected_n, expected_d = ref.chinchilla_optimal(compute, r)
    if math.isclose(n_params, expected_d, rel_tol=1e-6) and math.isclose(n_tokens, expected_n, rel_tol=1e-6):
        raise CheckFailed(
            f"{what} returned ({n_params:.4g}, {n_tokens:.4g}): the parameter and token counts are "
            "swapped, or the ratio is inverted; the result is (n_params, n_tokens) with "
            "n_tokens = tokens_per_parameter * n_params"
        )
    rounded = "it is rounded to a whole number: return the exact floats (the docstring asks for floats)"
    _expect_number(
        n_params, expected_n, f"n_params of {what}", _chinchilla_bugs(compute, r) + [(round(expected_n), rounded)]
    )
    _expect_number(
        n_tokens,
        expected_d,
        f"n_tokens of {what}",
        [
            (compute / (6 * r), "D = r N: multiply the parameter count by the ratio"),
            (round(expected_d), rounded),
            (r * round(expected_n), "it is computed from a rounded n_params: return the exact floats"),
        ],
    )


@chinchilla.check(points=2)
def compute_is_six_n_d_with_d_equal_r_n(student, gen):
    for compute, r in ((5.76e23, 20.0), (randint(gen, 2, 90) * 1e20, float(randint(gen, 5, 40))), (6e6, 1.5)):
        _expect_optimum(
            student, compute, r, f"chinchilla_optimal({compute:g}, tokens_per_parameter={r:g})", tokens_per_parameter=r
        )


@chinchilla.check(points=1)
def default_ratio_is_twenty(student, gen):
    compute = randint(gen, 1, 99) * 1e22
    _expect_optimum(student, compute, 20.0, f"chinchilla_optimal({compute:g}) (default ratio 20)")


# ---------------------------------------------------------------------------------------
# fit_power_law


def _power_law_bugs(sizes, losses):
    a, alpha = ref.fit_power_law(sizes, losses)
    x, y = torch.log(torch.tensor(sizes, dtype=torch.float64)), torch.tensor(losses, dtype=torch.float64)
    linear_slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    return {
        "a": [
            (math.log(a), "a is log(a), the intercept in log space: exponentiate it"),
            (math.log10(a), "a is the intercept of a base-10 fit; a = 10^intercept (or use natural logs throughout)"),
            (
                math.exp(math.log10(a)),
                "the intercept of a base-10 fit is exponentiated with e: use one base throughout",
            ),
        ],
        "alpha": [
            (-alpha, "alpha has the wrong sign: loss = a * size^(-alpha), so alpha is minus the slope"),
            (-linear_slope.item(), "the losses are not log-transformed: fit log(loss) against log(size)"),
            (
                ref.fit_power_law(sorted(sizes), losses)[1],
                "the sizes were reordered (sorted) without their losses: each size must stay paired with its loss",
            ),
        ],
    }


def _expect_fit(student, sizes, losses, what, rtol):
    a, alpha = _pair(student(sizes, losses), what)
    expected_a, expected_alpha = ref.fit_power_law(sizes, losses)
    bugs = _power_law_bugs(list(map(float, sizes)), list(map(float, losses)))
    _expect_number(alpha, expected_alpha, f"alpha of {what}", bugs["alpha"], rtol=rtol)
    _expect_number(a, expected_a, f"a of {what}", bugs["a"], rtol=rtol)


@power_law.check(points=1)
def recovers_an_exact_power_law(student, gen):
    a, alpha = 2.0 + torch.rand((), generator=gen).item() * 8, 0.05 + torch.rand((), generator=gen).item() * 0.3
    sizes = [10.0 ** (5 + i + torch.rand((), generator=gen).item()) for i in range(randint(gen, 4, 6))]
    losses = [a * s**-alpha for s in sizes]
    _expect_fit(student, sizes, losses, f"fit_power_law(sizes, losses) for loss = {a:.3g} * size^-{alpha:.3g}", 1e-6)


@power_law.check(points=2)
def least_squares_in_log_space(student, gen):
    sizes = [float(2 ** randint(gen, 3 * i + 8, 3 * i + 9)) for i in range(randint(gen, 5, 7))]
    losses = [3.0 * s**-0.1 * math.exp(0.05 * torch.randn((), generator=gen).item()) for s in sizes]
    order = torch.randperm(len(sizes), generator=gen).tolist()  # the points in no particular order
    if order == sorted(order):
        order = order[::-1]
    sizes, losses = [sizes[i] for i in order], [losses[i] for i in order]
    _expect_fit(student, sizes, losses, "fit_power_law(sizes, noisy losses) (lists)", 1e-6)
    _expect_fit(
        student,
        torch.tensor(sizes),
        torch.tensor(losses),
        "fit_power_law(sizes, noisy losses) (1-D float32 tensors)",
        1e-4,
    )
    _expect_fit(
        student,
        noncontiguous(torch.tensor(sizes)),
        noncontiguous(torch.tensor(losses)),
        "fit_power_law(sizes, noisy losses) (1-D float32 tensors given as non-contiguous views, as x[::2] is)",
        1e-4,
    )
