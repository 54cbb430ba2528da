"""Chapter 7 written a second way (a correct answer that is not the reference).

Differences from ``solutions.flash_attention``: float64 inside with the result cast back,
``einsum`` instead of ``@``, the FlashAttention-1 loop order in the forward pass (key blocks
outside, a running state for every query inside) and query blocks outside in the backward
pass, ``torch.max``/``isfinite`` for the masked-row guard, and a Triton kernel that works in
base 2 (``exp2``), uses 32 x 64 tiles, reads every stride, and masks the causal future
instead of shortening its loop.
"""

import math
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402


def online_softmax_update(acc, row_max, row_sum, scores, v_block):
    dtype = acc.dtype
    acc, row_max, row_sum, scores, v_block = (t.double() for t in (acc, row_max, row_sum, scores, v_block))
    new_max = torch.max(row_max, scores.max(dim=-1).values)
    reference = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
    old_weight = torch.exp(row_max - reference)
    weights = torch.exp(scores - reference.unsqueeze(-1))
    acc = torch.einsum("...q,...qd->...qd", old_weight, acc) + torch.einsum("...qk,...kd->...qd", weights, v_block)
    row_sum = old_weight * row_sum + weights.sum(dim=-1)
    return acc.to(dtype), new_max.to(dtype), row_sum.to(dtype)


def _after(q0, q1, k0, k1):
    """True where key position > query position, for queries q0..q1-1 and keys k0..k1-1."""
    return torch.arange(k0, k1).unsqueeze(0) > torch.arange(q0, q1).unsqueeze(1)


def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    dtype = q.dtype
    q, k, v = q.double(), k.double(), v.double()
    n_q, n_k, d = q.shape[-2], k.shape[-2], q.shape[-1]
    acc = q.new_zeros(*q.shape[:-1], v.shape[-1])
    row_max = q.new_full(q.shape[:-1], float("-inf"))
    row_sum = q.new_zeros(q.shape[:-1])
    for k0 in range(0, n_k, block_k):
        k1 = min(n_k, k0 + block_k)
        for q0 in range(0, n_q, block_q):
            q1 = min(n_q, q0 + block_q)
            if causal and q1 <= k0:
                continue
            scores = torch.einsum("...qd,...kd->...qk", q[..., q0:q1, :], k[..., k0:k1, :]) / math.sqrt(d)
            if causal:
                scores = scores.masked_fill(_after(q0, q1, k0, k1), float("-inf"))
            acc[..., q0:q1, :], row_max[..., q0:q1], row_sum[..., q0:q1] = online_softmax_update(
                acc[..., q0:q1, :], row_max[..., q0:q1], row_sum[..., q0:q1], scores, v[..., k0:k1, :]
            )
    return (acc / row_sum.unsqueeze(-1)).to(dtype), (row_max + torch.log(row_sum)).to(dtype)


def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
    dtypes = (q.dtype, k.dtype, v.dtype)
    q, k, v, output, lse, grad_output = (t.double() for t in (q, k, v, output, lse, grad_output))
    n_q, n_k, d = q.shape[-2], k.shape[-2], q.shape[-1]
    delta = torch.einsum("...qd,...qd->...q", grad_output, output)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for q0 in range(0, n_q, block_q):
        q1 = min(n_q, q0 + block_q)
        q_block, do_block = q[..., q0:q1, :], grad_output[..., q0:q1, :]
        for k0 in range(0, n_k, block_k):
            if causal and k0 >= q1:
                break
            k1 = min(n_k, k0 + block_k)
            scores = torch.einsum("...qd,...kd->...qk", q_block, k[..., k0:k1, :]) / math.sqrt(d)
            if causal:
                scores = scores.masked_fill(_after(q0, q1, k0, k1), float("-inf"))
            p = torch.exp(scores - lse[..., q0:q1].unsqueeze(-1))
            dv[..., k0:k1, :] += torch.einsum("...qk,...qd->...kd", p, do_block)
            dp = torch.einsum("...qd,...kd->...qk", do_block, v[..., k0:k1, :])
            ds = p * (dp - delta[..., q0:q1].unsqueeze(-1)) / math.sqrt(d)
            dq[..., q0:q1, :] += torch.einsum("...qk,...kd->...qd", ds, k[..., k0:k1, :])
            dk[..., k0:k1, :] += torch.einsum("...qk,...qd->...kd", ds, q_block)
    return tuple(g.to(t) for g, t in zip((dq, dk, dv), dtypes))


class FlashAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal=False, block_q=64, block_k=64):
        output, lse = flash_attention_forward(q, k, v, causal=causal, block_q=block_q, block_k=block_k)
        ctx.save_for_backward(q, k, v, output, lse)
        ctx.options = {"causal": causal, "block_q": block_q, "block_k": block_k}
        return output

    @staticmethod
    def backward(ctx, grad_output):
        grads = flash_attention_backward(*ctx.saved_tensors, grad_output, **ctx.options)
        return (*grads, None, None, None)


@triton.jit
def attention_kernel_base2(
    Q,
    K,
    V,
    O,
    n_q,
    n_k,
    d,
    d_v,
    qk_scale_log2,
    sqb,
    sqn,
    sqd,
    skb,
    skn,
    skd,
    svb,
    svn,
    svd,
    sob,
    son,
    sod,
    CAUSAL: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols_d = tl.arange(0, BD)
    cols_dv = tl.arange(0, BDV)
    base = tl.program_id(1)
    q = tl.load(
        Q + base * sqb + rows[:, None] * sqn + cols_d[None, :] * sqd,
        mask=(rows[:, None] < n_q) & (cols_d[None, :] < d),
        other=0.0,
    )
    m = tl.zeros([BM], tl.float32) - float("inf")
    l = tl.zeros([BM], tl.float32)
    o = tl.zeros([BM, BDV], tl.float32)
    for j in range(0, n_k, BN):
        keys = j + tl.arange(0, BN)
        kt = tl.load(
            K + base * skb + keys[None, :] * skn + cols_d[:, None] * skd,
            mask=(keys[None, :] < n_k) & (cols_d[:, None] < d),
            other=0.0,
        )
        s = tl.dot(q, kt, input_precision="ieee") * qk_scale_log2  # scores in base 2
        allowed = (keys[None, :] < n_k) & (rows[:, None] >= 0)
        if CAUSAL:
            allowed = allowed & (keys[None, :] <= rows[:, None])
        s = tl.where(allowed, s, float("-inf"))
        m_next = tl.maximum(m, tl.max(s, axis=1))
        m_safe = tl.where(m_next == float("-inf"), 0.0, m_next)
        correction = tl.exp2(m - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        vals = tl.load(
            V + base * svb + keys[:, None] * svn + cols_dv[None, :] * svd,
            mask=(keys[:, None] < n_k) & (cols_dv[None, :] < d_v),
            other=0.0,
        )
        o = o * correction[:, None] + tl.dot(p, vals, input_precision="ieee")
        l = l * correction + tl.sum(p, axis=1)
        m = m_next
    tl.store(
        O + base * sob + rows[:, None] * son + cols_dv[None, :] * sod,
        o / l[:, None],
        mask=(rows[:, None] < n_q) & (cols_dv[None, :] < d_v),
    )


def flash_attention_triton(q, k, v, causal=False):
    compiled = os.environ.get("TRITON_INTERPRET", "0") != "1"  # then the kernel reads GPU memory only
    device = torch.device("cuda") if compiled else q.device
    lead, n_q, n_k, d, d_v = q.shape[:-2], q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    q3, k3, v3 = (t.to(device, torch.float32).reshape(-1, t.shape[-2], t.shape[-1]) for t in (q, k, v))
    out = torch.zeros(q3.shape[0], n_q, d_v, device=device)
    grid = (triton.cdiv(n_q, 32), q3.shape[0])
    attention_kernel_base2[grid](
        q3,
        k3,
        v3,
        out,
        n_q,
        n_k,
        d,
        d_v,
        math.log2(math.e) / math.sqrt(d),
        *q3.stride(),
        *k3.stride(),
        *v3.stride(),
        *out.stride(),
        CAUSAL=causal,
        BM=32,
        BN=64,
        BD=max(16, triton.next_power_of_2(d)),
        BDV=max(16, triton.next_power_of_2(d_v)),
    )
    return out.reshape(*lead, n_q, d_v).to(q.device, q.dtype)
