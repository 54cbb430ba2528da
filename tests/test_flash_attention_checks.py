"""The chapter 7 checks: the reference and an independent answer get full marks, the stub gets
nothing, and typical bugs lose points with a message that names them."""

import inspect
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import messages, not_implemented, run_suite, score

from autograder.checks import flash_attention as checks
from autograder.checks import suites
from solutions import flash_attention as ref  # sets TRITON_INTERPRET=1 when no CUDA GPU is present

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "flash_attention"
NAMES = list(suites(TOPIC))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiles are small: with one thread they run about 10x faster on a busy 2-core machine
    (the grading sandbox also runs with OMP_NUM_THREADS=1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def full_marks(name):
    return suites(TOPIC)[name].max_score


class StubFunction(torch.autograd.Function):
    """What the notebook's stub class does."""

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError()

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError()


@pytest.mark.parametrize("name", NAMES)
def test_stub_fails_every_check(name, seed):
    stub = StubFunction if name == "FlashAttentionFunction" else not_implemented
    results = run_suite(TOPIC, name, stub, seed)
    assert score(results) == 0 and all("not implemented yet" in r.message for r in results), messages(results)


def lost_points(name, answer, seed):
    results = run_suite(TOPIC, name, answer, seed)
    return full_marks(name) - score(results), messages(results)


# ---------------------------------------------------------------------------------------
# online_softmax_update: typical bugs


def update_without_rescale(acc, row_max, row_sum, scores, v_block):
    new_max = torch.maximum(row_max, scores.amax(-1))
    p = torch.exp(scores - new_max[..., None])
    return acc + p @ v_block, new_max, row_sum + p.sum(-1)


def update_rescaling_only_the_sum(acc, row_max, row_sum, scores, v_block):
    new_max = torch.maximum(row_max, scores.amax(-1))
    p = torch.exp(scores - new_max[..., None])
    return acc + p @ v_block, new_max, row_sum * torch.exp(row_max - new_max) + p.sum(-1)


def update_with_block_max(acc, row_max, row_sum, scores, v_block):
    block_max = scores.amax(-1)
    rescale = torch.exp(row_max - block_max)
    p = torch.exp(scores - block_max[..., None])
    return acc * rescale[..., None] + p @ v_block, block_max, row_sum * rescale + p.sum(-1)


def update_normalizing_acc(acc, row_max, row_sum, scores, v_block):
    acc, row_max, row_sum = ref.online_softmax_update(acc * row_sum[..., None], row_max, row_sum, scores, v_block)
    return acc / row_sum[..., None], row_max, row_sum


@pytest.mark.parametrize(
    "bug, points, fragment",
    [
        (update_without_rescale, 2, "are not rescaled when the maximum grows"),
        (update_normalizing_acc, 1, "acc is normalized"),
        (update_rescaling_only_the_sum, 2, "the accumulator acc is not"),
        (update_with_block_max, 1, "maximum over ALL keys"),
    ],
)
def test_online_softmax_bugs(bug, points, fragment, seed):
    lost, text = lost_points("online_softmax_update", bug, seed)
    assert lost >= points and fragment in text, text


def update_in_float32(acc, row_max, row_sum, scores, v_block):
    return tuple(t.float() for t in ref.online_softmax_update(acc, row_max, row_sum, scores, v_block))


def test_online_softmax_in_float32_loses_only_the_float64_check(seed):
    results = run_suite(TOPIC, "online_softmax_update", update_in_float32, seed)
    failed = [r for r in results if not r.passed]
    assert [r.check for r in failed] == ["float64_state_stays_float64"], messages(results)
    assert "but the inputs are float64" in failed[0].message


def test_online_softmax_folds_to_torch_softmax():
    scores, v = torch.randn(3, 5, 17, dtype=torch.float64), torch.randn(3, 17, 4, dtype=torch.float64)
    state = (
        torch.zeros(3, 5, 4, dtype=torch.float64),
        torch.full((3, 5), -math.inf, dtype=torch.float64),
        torch.zeros(3, 5, dtype=torch.float64),
    )
    for start in range(0, 17, 6):
        state = ref.online_softmax_update(*state, scores[..., start : start + 6], v[..., start : start + 6, :])
    acc, row_max, row_sum = state
    torch.testing.assert_close(acc / row_sum[..., None], torch.softmax(scores, -1) @ v)
    torch.testing.assert_close(row_max + row_sum.log(), torch.logsumexp(scores, -1))


# ---------------------------------------------------------------------------------------
# flash_attention_forward: typical bugs


def forward_materializing_scores(q, k, v, causal=False, block_q=64, block_k=64):
    """Correct values, but the whole N_q x N_k matrix at once."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1), -math.inf)
    return torch.softmax(scores, -1) @ v, torch.logsumexp(scores, -1)


def tiled_forward(
    q,
    k,
    v,
    causal,
    block_q,
    block_k,
    update=ref.online_softmax_update,
    future=1,
    scale=None,
    full_blocks_only=False,
    unscaled_max=False,
):
    """A tiled forward whose parts can be broken one at a time (keyword arguments)."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    n_q, n_k = q.shape[-2], k.shape[-2]
    key_end = n_k // block_k * block_k if full_blocks_only else n_k
    output, lse = q.new_empty(*q.shape[:-1], v.shape[-1]), q.new_empty(q.shape[:-1])
    for q0 in range(0, n_q, block_q):
        q1 = min(q0 + block_q, n_q)
        state = (
            q.new_zeros(*q.shape[:-2], q1 - q0, v.shape[-1]),
            q.new_full((*q.shape[:-2], q1 - q0), -math.inf),
            q.new_zeros(*q.shape[:-2], q1 - q0),
        )
        for k0 in range(0, key_end, block_k):
            k1 = min(k0 + block_k, key_end)
            scores = q[..., q0:q1, :] @ k[..., k0:k1, :].transpose(-2, -1) * scale
            if causal:
                ahead = torch.arange(k0, k1)[None, :] - torch.arange(q0, q1)[:, None]
                scores = scores.masked_fill(ahead >= future, -math.inf)
            state = update(*state, scores, v[..., k0:k1, :])
        acc, row_max, row_sum = state
        output[..., q0:q1, :] = acc / row_sum[..., None]
        lse[..., q0:q1] = (row_max * math.sqrt(q.shape[-1]) if unscaled_max else row_max) + row_sum.log()
    return output, lse


def update_without_max(acc, row_max, row_sum, scores, v_block):
    """Sums exp(s) directly: right for small scores, inf for large ones."""
    p = torch.exp(scores)
    return acc + p @ v_block, torch.zeros_like(row_max), row_sum + p.sum(-1)


def forward_with_lse_keepdim(q, k, v, causal=False, block_q=64, block_k=64):
    output, lse = ref.flash_attention_forward(q, k, v, causal, block_q, block_k)
    return output, lse[..., None]


def forward_bug(**broken):
    def answer(q, k, v, causal=False, block_q=64, block_k=64):
        return tiled_forward(q, k, v, causal, block_q, block_k, **broken)

    return answer


def forward_unscaled_max(q, k, v, causal=False, block_q=64, block_k=64):
    """Correct output; the max for lse is taken over q k^T instead of q k^T / sqrt(d)."""
    return tiled_forward(q, k, v, causal, block_q, block_k, unscaled_max=True)


@pytest.mark.parametrize(
    "bug, points, fragment",
    [
        (forward_bug(update=update_without_rescale), 4, "are not rescaled by exp(old max - new max)"),
        (forward_bug(scale=1.0), 4, "not divided by sqrt(d)"),
        (forward_bug(future=0), 2, "NaN for query 0"),
        (forward_bug(future=2), 2, "off by one"),
        (forward_bug(full_blocks_only=True), 1, "after the last full block"),
        (forward_unscaled_max, 4, "units of the unscaled scores"),
        (forward_bug(update=update_without_max), 1, "NaN or infinite values"),
        (forward_with_lse_keepdim, 7, "one log-sum-exp per query"),
    ],
)
def test_forward_bugs(bug, points, fragment, seed):
    lost, text = lost_points("flash_attention_forward", bug, seed)
    assert lost >= points and fragment in text, text


def forward_materializing_scores_when_causal(q, k, v, causal=False, block_q=64, block_k=64):
    """Tiled without causal; the causal path builds the whole matrix."""
    if causal:
        return forward_materializing_scores(q, k, v, causal)
    return ref.flash_attention_forward(q, k, v, causal, block_q, block_k)


def forward_tiling_queries_only(q, k, v, causal=False, block_q=64, block_k=64):
    """Correct values from (block_q, N_k) strips of scores."""
    return tiled_forward(q, k, v, causal, block_q, k.shape[-2])


@pytest.mark.parametrize(
    "answer, lost, fragment",
    [
        (forward_materializing_scores, True, "the full N_q x N_k"),
        (forward_materializing_scores_when_causal, True, "causal=True"),
        (forward_tiling_queries_only, False, "the keys must be tiled too"),
    ],
)
def test_forward_that_materializes_scores_loses_only_the_measured_points(answer, lost, fragment, seed):
    """The N x N matrix costs the measured points (its memory); strips of block_q x N_k scores stay
    within the memory a tiled answer may use and only get the advice to tile the keys too."""
    results = run_suite(TOPIC, "flash_attention_forward", answer, seed)
    failed = {r.check: r for r in results if not r.passed}
    assert set(failed) == {"never_materializes_scores", "tile_by_tile_in_pytorch"} - (
        set() if lost else {"never_materializes_scores"}
    ), messages(results)
    assert fragment in failed["tile_by_tile_in_pytorch"].message and failed["tile_by_tile_in_pytorch"].advice
    if lost:
        assert "MiB of memory beyond what it held" in failed["never_materializes_scores"].message


def forward_row_by_row(q, k, v, causal=False, block_q=64, block_k=64):
    """Correct values from one query at a time against all keys, rows kept in a list: no large
    tensor, but the N_q x N_k matrix all the same."""
    rows = []
    for i in range(q.shape[-2]):
        scores = q[..., i : i + 1, :] @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if causal:
            scores = scores.masked_fill(torch.arange(k.shape[-2]) > i, -math.inf)
        rows.append(scores)
    lse = torch.cat([row.logsumexp(-1) for row in rows], -1)
    return torch.cat([torch.softmax(row, -1) @ v for row in rows], -2), lse


def forward_in_float32(q, k, v, causal=False, block_q=64, block_k=64):
    """The reference on float32 copies, cast back: float64 inputs get float32 precision."""
    output, lse = ref.flash_attention_forward(q.float(), k.float(), v.float(), causal, block_q, block_k)
    return output.to(q.dtype), lse.to(q.dtype)


def forward_returning_float32(q, k, v, causal=False, block_q=64, block_k=64):
    return tuple(t.float() for t in ref.flash_attention_forward(q, k, v, causal, block_q, block_k))


@pytest.mark.parametrize(
    "answer, check, fragment",
    [
        (forward_row_by_row, "never_materializes_scores", "MiB of memory beyond what it held"),
        (forward_in_float32, "float64_inputs_give_float64", "only to about float32 precision"),
        (forward_returning_float32, "float64_inputs_give_float64", "but the inputs are float64"),
    ],
)
def test_forward_rows_or_float32_lose_only_that_check(answer, check, fragment, seed):
    results = run_suite(TOPIC, "flash_attention_forward", answer, seed)
    failed = [r for r in results if not r.passed and not r.advice]
    assert [r.check for r in failed] == [check] and fragment in failed[0].message, messages(results)


def test_peak_counts_each_storage_while_a_tensor_uses_it():
    """The recorder behind ``Trace.peak``: a view keeps its base counted, nothing is counted twice,
    and a tensor that is dropped stops counting."""
    from autograder.protocol import NumelRecorder

    with NumelRecorder() as recorder:
        base = torch.zeros(100)
        view = base[:10]
        del base
        second, total = torch.ones(50), view.sum()  # 100 + 50 + 1 elements live at once
        del view, second, total
        third = torch.zeros(30)
    assert recorder.peak == 151 and recorder.elements == 30, (recorder.peak, recorder.elements, third.shape)


def test_printing_and_integer_lists_inside_a_traced_call_cost_nothing(capsys):
    """What the recorders must not mistake for escaping them: printing tensors (torch's printer
    turns the modes off itself), integer block starts as a list, a per-tile ``.item()``."""

    def forward(q, k, v, causal=False, block_q=64, block_k=64):
        print(q[:2], torch.arange(0, q.shape[-2], block_q).tolist(), q.max().item())
        return ref.flash_attention_forward(q, k, v, causal, block_q, block_k)

    assert score(run_suite("flash_attention", "flash_attention_forward", forward)) == checks.forward.max_score
    assert "tensor(" in capsys.readouterr().out


@pytest.mark.parametrize("seed", range(200))
def test_block_sizes_leave_no_alignment_untried(seed):
    """Coprime, unequal blocks and N > block_q * block_k, a multiple of neither: key blocks
    start at every offset within a query block and the other way round."""
    gen = torch.Generator().manual_seed(seed)
    block_q, block_k = checks._blocks(gen, 5, 11)
    n = checks._length(gen, (block_q, block_k))
    assert block_q != block_k and n % block_q and n % block_k
    assert {k0 % block_q for k0 in range(0, n, block_k)} == set(range(block_q))
    assert {q0 % block_k for q0 in range(0, n, block_q)} == set(range(block_k))


@pytest.mark.parametrize("causal", [False, True])
def test_reference_forward_agrees_with_torch_sdpa(causal):
    q, k, v = torch.randn(2, 3, 150, 32), torch.randn(2, 3, 150, 32), torch.randn(2, 3, 150, 20)
    output, lse = ref.flash_attention_forward(q, k, v, causal=causal, block_q=32, block_k=48)
    torch.testing.assert_close(output, F.scaled_dot_product_attention(q, k, v, is_causal=causal), atol=1e-5, rtol=1e-4)
    scores = q @ k.transpose(-2, -1) / math.sqrt(32)
    if causal:
        scores = scores.masked_fill(torch.ones(150, 150, dtype=torch.bool).triu(1), -math.inf)
    torch.testing.assert_close(lse, torch.logsumexp(scores, -1), atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------
# flash_attention_backward: typical bugs


def tiled_backward(
    q,
    k,
    v,
    output,
    lse,
    grad_output,
    causal,
    block_q,
    block_k,
    chain_scale=True,
    delta="output",
    mask=True,
    skip_from_first_row=False,
    full_mask=False,
):
    """A tiled backward whose parts can be broken one at a time (keyword arguments)."""
    scale = 1 / math.sqrt(q.shape[-1])
    d_out = (grad_output * output).sum(-1)
    future = torch.arange(k.shape[-2])[None, :] > torch.arange(q.shape[-2])[:, None] if full_mask else None
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for q0 in range(0, q.shape[-2], block_q):
        q1 = min(q0 + block_q, q.shape[-2])
        for k0 in range(0, k.shape[-2], block_k):
            if causal and skip_from_first_row and k0 > q0:  # should be k0 > q1 - 1
                break
            k1 = min(k0 + block_k, k.shape[-2])
            scores = q[..., q0:q1, :] @ k[..., k0:k1, :].transpose(-2, -1) * scale
            if causal and mask:
                ahead = torch.arange(k0, k1)[None, :] > torch.arange(q0, q1)[:, None]
                scores = scores.masked_fill(future[q0:q1, k0:k1] if full_mask else ahead, -math.inf)
            p = torch.exp(scores - lse[..., q0:q1, None])
            dp = grad_output[..., q0:q1, :] @ v[..., k0:k1, :].transpose(-2, -1)
            ds = p * (dp - d_out[..., q0:q1, None]) if delta == "output" else p * dp
            factor = scale if chain_scale else 1.0
            dv[..., k0:k1, :] += p.transpose(-2, -1) @ grad_output[..., q0:q1, :]
            dq[..., q0:q1, :] += ds @ k[..., k0:k1, :] * factor
            dk[..., k0:k1, :] += ds.transpose(-2, -1) @ q[..., q0:q1, :] * factor
    return dq, dk, dv


def backward_bug(**broken):
    def answer(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
        return tiled_backward(q, k, v, output, lse, grad_output, causal, block_q, block_k, **broken)

    return answer


def backward_by_autograd(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
    """Correct gradients from a fresh full softmax: ignores lse and builds the N x N matrix."""
    q, k, v = (t.detach().requires_grad_(True) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return torch.autograd.grad(out, (q, k, v), grad_output)


def backward_without_dv(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
    return ref.flash_attention_backward(q, k, v, output, lse, grad_output, causal, block_q, block_k)[:2]


@pytest.mark.parametrize(
    "bug, points, fragment",
    [
        (backward_without_dv, 9, "should return a tuple of 3 tensors"),
        (backward_bug(skip_from_first_row=True), 2, "look at which tiles the loops visit"),
        (backward_bug(full_mask=True), 0, "the full N_q x N_k"),  # a bool mask: 16 MiB, advice only
        (backward_bug(chain_scale=False), 4, "sqrt(d) times too large"),
        (backward_bug(delta=None), 4, "D = rowsum(grad_output * output)"),
        (backward_bug(mask=False), 2, "causal mask is not applied"),
        (backward_by_autograd, 3, "not recomputed from the lse argument"),
        (backward_by_autograd, 3, "computes gradients with torch.autograd"),
    ],
)
def test_backward_bugs(bug, points, fragment, seed):
    lost, text = lost_points("flash_attention_backward", bug, seed)
    assert lost >= points and fragment in text, text


def backward_keeping_every_tile(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
    """Correct gradients; a first pass keeps every tile of p (the N_q x N_k matrix, piece by piece)."""
    tiles = []
    for q0 in range(0, q.shape[-2], block_q):
        for k0 in range(0, k.shape[-2], block_k):
            scores = q[..., q0 : q0 + block_q, :] @ k[..., k0 : k0 + block_k, :].transpose(-2, -1)
            tiles.append(torch.exp(scores / math.sqrt(q.shape[-1]) - lse[..., q0 : q0 + block_q, None]))
    return ref.flash_attention_backward(q, k, v, output, lse, grad_output, causal, block_q, block_k)


def backward_in_float32(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
    """The reference on float32 copies, cast back: float64 inputs get float32 precision."""
    grads = ref.flash_attention_backward(
        *(t.float() for t in (q, k, v, output, lse, grad_output)), causal, block_q, block_k
    )
    return tuple(g.to(q.dtype) for g in grads)


@pytest.mark.parametrize(
    "answer, check, fragment",
    [
        (backward_keeping_every_tile, "never_materializes_scores", "MiB of memory beyond what it held"),
        (backward_in_float32, "float64_inputs_give_float64", "only to about float32 precision"),
    ],
)
def test_backward_that_keeps_tiles_or_loses_precision_loses_only_that_check(answer, check, fragment, seed):
    results = run_suite(TOPIC, "flash_attention_backward", answer, seed)
    failed = [r for r in results if not r.passed and not r.advice]
    assert [r.check for r in failed] == [check] and fragment in failed[0].message, messages(results)


@pytest.mark.parametrize("causal", [False, True])
def test_reference_backward_agrees_with_autograd_through_torch_sdpa(causal):
    q, k, v = (torch.randn(2, 100, 24, dtype=torch.float64, requires_grad=True) for _ in range(3))
    grad_output = torch.randn(2, 100, 24, dtype=torch.float64)
    F.scaled_dot_product_attention(q, k, v, is_causal=causal).backward(grad_output)
    output, lse = ref.flash_attention_forward(q.detach(), k.detach(), v.detach(), causal, 16, 40)
    grads = ref.flash_attention_backward(q.detach(), k.detach(), v.detach(), output, lse, grad_output, causal, 16, 40)
    for grad, tensor in zip(grads, (q, k, v)):
        torch.testing.assert_close(grad, tensor.grad)


# ---------------------------------------------------------------------------------------
# FlashAttentionFunction: typical bugs


class FunctionWithoutNoneGrads(ref.FlashAttentionFunction):
    @staticmethod
    def backward(ctx, grad_output):
        return ref.FlashAttentionFunction.backward(ctx, grad_output)[:3]


class FunctionForgettingCausalInBackward(ref.FlashAttentionFunction):
    @staticmethod
    def backward(ctx, grad_output):
        q, k, v, output, lse = ctx.saved_tensors
        return (*ref.flash_attention_backward(q, k, v, output, lse, grad_output), None, None, None)


class FunctionReturningLse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal=False, block_q=64, block_k=64):
        return ref.flash_attention_forward(q, k, v, causal, block_q, block_k)

    @staticmethod
    def backward(ctx, grad_output, grad_lse):
        raise RuntimeError("not reached in a correct test")


class FunctionKeepingWeights(ref.FlashAttentionFunction):
    """Tiled passes, but the forward keeps every tile's weights on ctx (never used)."""

    @staticmethod
    def forward(ctx, q, k, v, causal=False, block_q=64, block_k=64):
        output = ref.FlashAttentionFunction.forward(ctx, q, k, v, causal, block_q, block_k)
        _, lse = ref.flash_attention_forward(q, k, v, causal, block_q, block_k)
        scale = q.shape[-1] ** -0.5
        ctx.weights = [
            torch.exp(
                q[..., q0 : q0 + block_q, :] @ k[..., k0 : k0 + block_k, :].transpose(-2, -1) * scale
                - lse[..., q0 : q0 + block_q, None]
            )
            for q0 in range(0, q.shape[-2], block_q)
            for k0 in range(0, k.shape[-2], block_k)
        ]
        return output


class FunctionWithAutogradBackward(ref.FlashAttentionFunction):
    """Tiled forward; the backward differentiates plain attention with autograd."""

    @staticmethod
    def backward(ctx, grad_output):
        q, k, v, _, _ = ctx.saved_tensors
        with torch.enable_grad():
            q, k, v = (t.detach().requires_grad_(True) for t in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v, is_causal=ctx.causal)
            return (*torch.autograd.grad(out, (q, k, v), grad_output), None, None, None)


@pytest.mark.parametrize(
    "bug, points, fragment",
    [
        (FunctionWithoutNoneGrads, 2, "incorrect number of gradients"),  # fine with 3 args, not with 4 or 6
        (FunctionForgettingCausalInBackward, 1, "backward does not apply the causal mask"),
        (FunctionKeepingWeights, 2, "keeps"),
        (FunctionWithAutogradBackward, 2, "computes gradients with torch.autograd"),
        (FunctionReturningLse, 5, "output tensor only"),
    ],
)
def test_function_bugs(bug, points, fragment, seed):
    lost, text = lost_points("FlashAttentionFunction", bug, seed)
    assert lost >= points and fragment in text, text


def test_function_passes_gradcheck():
    q, k, v = (torch.randn(9, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda q, k, v: ref.FlashAttentionFunction.apply(q, k, v, True, 4, 3), (q, k, v))


# ---------------------------------------------------------------------------------------
# flash_attention_triton (interpreter): typical bugs, emulated at the level of the output


def triton_without_scale(q, k, v, causal=False):
    return ref.flash_attention_triton(q * math.sqrt(q.shape[-1]), k, v, causal)


def triton_ignoring_causal(q, k, v, causal=False):
    return ref.flash_attention_triton(q, k, v)


@pytest.mark.parametrize(
    "bug, points, fragment",
    [
        (triton_without_scale, 6, "not divided by sqrt(d)"),
        (triton_ignoring_causal, 2, "causal mask is ignored"),
    ],
)
def test_triton_bugs(bug, points, fragment):
    lost, text = lost_points("flash_attention_triton", bug, 0)
    assert lost >= points and fragment in text, text


def triton_by_torch_sdpa(q, k, v, causal=False):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def triton_by_tiled_torch(q, k, v, causal=False):
    return ref.flash_attention_forward(q, k, v, causal, 64, 64)[0]


@pytest.mark.parametrize("answer", [triton_by_torch_sdpa, triton_by_tiled_torch])
def test_triton_answers_computed_by_pytorch_get_the_advice_not_points(answer):
    """Whether a kernel ran is seen only inside the learner's process: correct values get full marks,
    and the advice says where the attention belongs."""
    lost, text = lost_points("flash_attention_triton", answer, 0)
    assert lost == 0 and "advice (0 points): flash_attention_triton computes attention with PyTorch" in text, text


@pytest.mark.parametrize("causal", [False, True])
def test_reference_triton_kernel_agrees_with_torch_sdpa(causal):
    q, k, v = torch.randn(2, 2, 97, 40), torch.randn(2, 2, 97, 40), torch.randn(2, 2, 97, 24)
    torch.testing.assert_close(
        ref.flash_attention_triton(q, k, v, causal),
        F.scaled_dot_product_attention(q, k, v, is_causal=causal),
        atol=1e-5,
        rtol=1e-4,
    )


# ---------------------------------------------------------------------------------------
# The notebook

NOTEBOOK = ROOT / "chapters/07_flash_attention.ipynb"


def test_notebook_kernel_is_the_reference_kernel():
    """The answer cell holds the kernel itself (a stub needs its signature), so it must not
    drift from solutions/flash_attention.py."""
    cells = ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    cell = next(c for c in cells if "def flash_attention_kernel(" in c)
    cell = "\n".join(
        line for line in cell.splitlines() if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
    )
    for fn in (ref.flash_attention_kernel.fn, ref.flash_attention_triton):
        assert inspect.getsource(fn).strip() in cell, f"{fn.__name__} differs between the notebook and the reference"
