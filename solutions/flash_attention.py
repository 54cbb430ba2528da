"""Chapter 7: FlashAttention, exact attention that never stores the N_q x N_k matrix.

Shapes use ``...`` for any leading batch and head dimensions: q (..., N_q, d), k (..., N_k, d),
v (..., N_k, d_v). Scores are scaled, s_ij = q_i . k_j / sqrt(d). The log-sum-exp of query i
is lse_i = log sum_j exp(s_ij) over the keys it may see; with it the softmax weights can be
recomputed at any time as p_ij = exp(s_ij - lse_i). ``causal=True`` means query i sees keys
0..i, and needs N_q == N_k.

The PyTorch functions walk over blocks of ``block_q`` queries and ``block_k`` keys (any
positive sizes; the last block of each may be shorter), so the largest score tensor they
create is (..., block_q, block_k). ``flash_attention_triton`` runs the same forward pass as a
Triton kernel: compiled on a CUDA GPU, or through Triton's interpreter on CPU when the
environment has ``TRITON_INTERPRET=1`` (set below when no CUDA GPU is present, before the
first ``import triton``). Without Triton (macOS, Windows) the module still imports, so that the
PyTorch functions serve as the reference; the Triton suite then says what it needs.
"""

import math
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

try:
    import triton  # noqa: E402  (after TRITON_INTERPRET is decided)
    import triton.language as tl  # noqa: E402
except ImportError:  # Triton publishes Linux wheels only: on macOS and Windows the kernel is defined, never run
    import types

    triton, tl = types.SimpleNamespace(jit=lambda kernel: kernel), types.SimpleNamespace(constexpr=int)

NEG_INF = float("-inf")


def online_softmax_update(acc, row_max, row_sum, scores, v_block):
    """Fold one block of keys into the running softmax state of a block of queries.

    The state after some keys j (for each query row):
      row_max (..., B_q): m = max_j s_j, -inf before any key;
      row_sum (..., B_q): l = sum_j exp(s_j - m);
      acc (..., B_q, d_v): a = sum_j exp(s_j - m) v_j (unnormalized).
    scores (..., B_q, B_k) are the new block's scaled scores (-inf where a key is masked) and
    v_block (..., B_k, d_v) its values. Returns the new ``(acc, row_max, row_sum)``.

    When the maximum grows from m to m', every old term exp(s_j - m) must become
    exp(s_j - m'), so the old acc and row_sum are both multiplied by exp(m - m'). After the
    last block, attention's output is acc / row_sum and lse = row_max + log(row_sum).
    A row that has seen only masked keys keeps acc = 0, row_sum = 0, row_max = -inf.
    Works in the inputs' dtype. The inputs may be non-contiguous views (slices, transposes) and are
    left unchanged (the new state is made of new tensors).
    """
    new_max = torch.maximum(row_max, scores.amax(dim=-1))
    shift = torch.where(new_max == NEG_INF, torch.zeros_like(new_max), new_max)  # no (-inf) - (-inf)
    rescale = torch.exp(row_max - shift)
    p = torch.exp(scores - shift[..., None])
    return acc * rescale[..., None] + p @ v_block, new_max, row_sum * rescale + p.sum(dim=-1)


def _check_causal(q, k, causal):
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(f"causal attention needs as many queries as keys, got N_q={q.shape[-2]}, N_k={k.shape[-2]}")


def _future(q_start, q_end, k_start, k_end, device):
    """(q_end - q_start, k_end - k_start) bool: True where key position > query position."""
    rows = torch.arange(q_start, q_end, device=device)
    cols = torch.arange(k_start, k_end, device=device)
    return cols[None, :] > rows[:, None]


def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    """Tiled exact attention with the online softmax; returns ``(output, lse)``.

    output (..., N_q, d_v) equals softmax(q k^T / sqrt(d)) v, and lse (..., N_q) is the
    log-sum-exp of each query's scaled scores. The outer loop runs over query blocks (the
    FlashAttention-2 split: each block is independent), the inner one over key blocks; with
    ``causal``, key blocks entirely after a query block are skipped. Graded: the values, and the
    memory of a call on N = 4096 measured outside the learner's process (far below the N x N
    scores). Advice (0 points): tiles of the block_q x block_k given (only the last block of each
    may be shorter), PyTorch operations (no NumPy arrays or Python lists), not PyTorch's attention.
    Works in the inputs' dtype. q, k, v may be non-contiguous views (slices, transposes: reshape
    with ``.reshape``, not ``.view``); they are left unchanged.
    """
    _check_causal(q, k, causal)
    n_q, n_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    output = q.new_empty(*q.shape[:-1], v.shape[-1])
    lse = q.new_empty(q.shape[:-1])
    for q_start in range(0, n_q, block_q):
        q_end = min(q_start + block_q, n_q)
        q_block = q[..., q_start:q_end, :] * scale
        acc = q.new_zeros(*q_block.shape[:-1], v.shape[-1])
        row_max = q.new_full(q_block.shape[:-1], NEG_INF)
        row_sum = q.new_zeros(q_block.shape[:-1])
        for k_start in range(0, min(q_end, n_k) if causal else n_k, block_k):
            k_end = min(k_start + block_k, n_k)
            scores = q_block @ k[..., k_start:k_end, :].transpose(-2, -1)
            if causal and k_end - 1 > q_start:  # the block reaches past the diagonal
                scores = scores.masked_fill(_future(q_start, q_end, k_start, k_end, q.device), NEG_INF)
            acc, row_max, row_sum = online_softmax_update(acc, row_max, row_sum, scores, v[..., k_start:k_end, :])
        output[..., q_start:q_end, :] = acc / row_sum[..., None]
        lse[..., q_start:q_end] = row_max + row_sum.log()
    return output, lse


def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
    """Gradients ``(dq, dk, dv)`` of attention, recomputing the weights block by block.

    ``output`` and ``lse`` are what the forward pass saved; grad_output (..., N_q, d_v) is
    dL/d output. For each tile the weights are recomputed as p = exp(s - lse) (no softmax
    over all keys is needed), and with D_i = rowsum(grad_output * output)_i:
      dv += p^T dO,   dp = dO v^T,   ds = p * (dp - D),
      dq += ds k / sqrt(d),   dk += ds^T q / sqrt(d).
    The outer loop runs over key blocks (each owns its dk, dv), the inner over query blocks.
    Graded and advised as the forward pass; no ``torch.autograd`` is advice too. Works in the
    inputs' dtype. The inputs may be non-contiguous views, as in the forward pass, and are left unchanged.
    """
    _check_causal(q, k, causal)
    n_q, n_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    delta = (grad_output * output).sum(dim=-1)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for k_start in range(0, n_k, block_k):
        k_end = min(k_start + block_k, n_k)
        k_block, v_block = k[..., k_start:k_end, :], v[..., k_start:k_end, :]
        for q_start in range(0, n_q, block_q):
            q_end = min(q_start + block_q, n_q)
            if causal and q_end - 1 < k_start:  # every query of this block is before every key
                continue
            q_block, do_block = q[..., q_start:q_end, :], grad_output[..., q_start:q_end, :]
            scores = (q_block @ k_block.transpose(-2, -1)) * scale
            if causal and k_end - 1 > q_start:
                scores = scores.masked_fill(_future(q_start, q_end, k_start, k_end, q.device), NEG_INF)
            p = torch.exp(scores - lse[..., q_start:q_end, None])
            dv[..., k_start:k_end, :] += p.transpose(-2, -1) @ do_block
            ds = p * (do_block @ v_block.transpose(-2, -1) - delta[..., q_start:q_end, None])
            dq[..., q_start:q_end, :] += (ds @ k_block) * scale
            dk[..., k_start:k_end, :] += (ds.transpose(-2, -1) @ q_block) * scale
    return dq, dk, dv


class FlashAttentionFunction(torch.autograd.Function):
    """Attention with the tiled forward and backward above, for autograd.

    ``FlashAttentionFunction.apply(q, k, v, causal=False, block_q=64, block_k=64)`` returns
    the output (..., N_q, d_v) only (arguments are positional, as ``apply`` requires). The
    forward saves q, k, v, the output and lse (O(N) memory beyond the inputs, no weights);
    the backward recomputes the weights from lse, both in PyTorch operations. Graded: the values,
    and the memory of forward and backward together, measured outside the learner's process;
    what is recorded inside it (tiles of the block sizes given, no autograd in backward) is advice.
    backward gives the gradient of each of q, k, v that needs one, whichever others do
    (ctx.needs_input_grad). The inputs may be non-contiguous views and are left unchanged.
    """

    @staticmethod
    def forward(ctx, q, k, v, causal=False, block_q=64, block_k=64):
        output, lse = flash_attention_forward(q, k, v, causal, block_q, block_k)
        ctx.save_for_backward(q, k, v, output, lse)
        ctx.causal, ctx.block_q, ctx.block_k = causal, block_q, block_k
        return output

    @staticmethod
    def backward(ctx, grad_output):
        q, k, v, output, lse = ctx.saved_tensors
        dq, dk, dv = flash_attention_backward(q, k, v, output, lse, grad_output, ctx.causal, ctx.block_q, ctx.block_k)
        return dq, dk, dv, None, None, None


# ---------------------------------------------------------------------------------------
# The forward pass as a Triton kernel. The notebook's answer cell holds this same code
# (tests/test_flash_attention_checks.py checks that the two do not drift apart).


# The chapter's notebook shows the kernel and its wrapper verbatim: the formatter leaves them as written.
# fmt: off
@triton.jit
def flash_attention_kernel(q_ptr, k_ptr, v_ptr, o_ptr, n_q, n_k, d, d_v, scale,
                           stride_qb, stride_qn, stride_kb, stride_kn, stride_vb, stride_vn, stride_ob, stride_on,
                           CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                           BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    """One program computes BLOCK_M rows of the output of one (batch x head) slice.

    Program ids: axis 0 = query block, axis 1 = slice b. Row r of slice b of q starts at
    q_ptr + b * stride_qb + r * stride_qn (the last dimension is contiguous); the same for
    k, v and o. BLOCK_D >= d and BLOCK_DV >= d_v are powers of two: masked loads pad with 0.
    """
    start_m = tl.program_id(0)
    b = tl.program_id(1)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    q = tl.load(q_ptr + b * stride_qb + offs_m[:, None] * stride_qn + offs_d[None, :],
                mask=(offs_m[:, None] < n_q) & (offs_d[None, :] < d), other=0.0)
    row_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
    row_sum = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    if CAUSAL:
        end_n = tl.minimum(n_k, (start_m + 1) * BLOCK_M)  # later key blocks are all in the future
    else:
        end_n = n_k
    for start_n in range(0, end_n, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k = tl.load(k_ptr + b * stride_kb + offs_n[:, None] * stride_kn + offs_d[None, :],
                    mask=(offs_n[:, None] < n_k) & (offs_d[None, :] < d), other=0.0)
        v = tl.load(v_ptr + b * stride_vb + offs_n[:, None] * stride_vn + offs_dv[None, :],
                    mask=(offs_n[:, None] < n_k) & (offs_dv[None, :] < d_v), other=0.0)
        scores = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
        visible = offs_n[None, :] < n_k
        if CAUSAL:
            visible = visible & (offs_n[None, :] <= offs_m[:, None])
        scores = tl.where(visible, scores, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(scores, 1))
        rescale = tl.exp(row_max - new_max)
        p = tl.exp(scores - new_max[:, None])
        row_sum = row_sum * rescale + tl.sum(p, 1)
        acc = acc * rescale[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
        row_max = new_max
    acc = acc / row_sum[:, None]
    tl.store(o_ptr + b * stride_ob + offs_m[:, None] * stride_on + offs_dv[None, :],
             acc.to(o_ptr.dtype.element_ty), mask=(offs_m[:, None] < n_q) & (offs_dv[None, :] < d_v))


def flash_attention_triton(q, k, v, causal=False):
    """softmax(q k^T / sqrt(d)) v by ``flash_attention_kernel``; output (..., N_q, d_v).

    Runs on the tensors' device under the interpreter (TRITON_INTERPRET=1); a compiled
    kernel needs CUDA tensors, so CPU inputs are then moved to the GPU and the output back.
    q, k, v may be non-contiguous views (a sliced or transposed tensor), whose last dimension's
    stride is not 1: the kernel reads memory by strides, so the wrapper hands it contiguous
    copies. The inputs are left unchanged. Graded on its values; launching the kernel and leaving
    the attention to it (no PyTorch matrix products) is advice (0 points).
    """
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(f"causal attention needs as many queries as keys, got N_q={q.shape[-2]}, N_k={k.shape[-2]}")
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    device = q.device if interpreted or q.is_cuda else torch.device("cuda")
    n_q, n_k, d, d_v = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    q3, k3, v3 = (t.to(device).reshape(-1, t.shape[-2], t.shape[-1]).contiguous() for t in (q, k, v))
    out = torch.empty(q3.shape[0], n_q, d_v, dtype=q.dtype, device=device)
    block = 64
    grid = (triton.cdiv(n_q, block), q3.shape[0])
    flash_attention_kernel[grid](q3, k3, v3, out, n_q, n_k, d, d_v, 1.0 / math.sqrt(d),
                                 q3.stride(0), q3.stride(1), k3.stride(0), k3.stride(1),
                                 v3.stride(0), v3.stride(1), out.stride(0), out.stride(1),
                                 CAUSAL=causal, BLOCK_M=block, BLOCK_N=block,
                                 BLOCK_D=max(16, triton.next_power_of_2(d)),
                                 BLOCK_DV=max(16, triton.next_power_of_2(d_v)))
    return out.reshape(*q.shape[:-1], d_v).to(q.device)
# fmt: on
