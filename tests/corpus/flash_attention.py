"""Chapter 7 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``).

Each cell replaces one answer cell of the released notebook, where the other answer cells are
still stubs: an answer that needs a tiled forward or backward (``FlashAttentionFunction``)
defines its own. Many bugs are one change to a correct answer: :func:`changed` makes them.
"""

import dataclasses
import textwrap
from pathlib import Path

from corpus import advised, alternative, bug


def changed(source: str, old: str, new: str) -> str:
    """``source`` with the one occurrence of ``old`` replaced (fails loudly when it is not there)."""
    assert source.count(old) == 1, old
    return source.replace(old, new)


# ---------------------------------------------------------------------------------------
# online_softmax_update

UPDATE = """
    import torch

    def online_softmax_update(acc, row_max, row_sum, scores, v_block):
        new_max = torch.maximum(row_max, scores.amax(-1))
        safe = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
        rescale = torch.exp(row_max - safe)
        p = torch.exp(scores - safe[..., None])
        return acc * rescale[..., None] + p @ v_block, new_max, row_sum * rescale + p.sum(-1)
"""

ONLINE = [
    bug(
        "online_softmax_update",
        "acc and row_sum never rescaled",
        changed(
            UPDATE,
            "acc * rescale[..., None] + p @ v_block, new_max, row_sum * rescale",
            "acc + p @ v_block, new_max, row_sum",
        ),
        fails=("rescales_when_max_grows",),
        says="not rescaled when the maximum grows",
    ),
    bug(
        "online_softmax_update",
        "row_sum not rescaled",
        changed(UPDATE, "row_sum * rescale +", "row_sum +"),
        fails=("rescales_when_max_grows",),
        says="row_sum is not",
    ),
    bug(
        "online_softmax_update",
        "rescaling factor inverted",
        changed(UPDATE, "torch.exp(row_max - safe)", "torch.exp(safe - row_max)"),
        fails=("rescales_when_max_grows",),
        says="inverted",
    ),
    bug(
        "online_softmax_update",
        "the block's maximum replaces the running one",
        """
        import torch

        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            block_max = scores.amax(-1)
            rescale = torch.exp(row_max - block_max)
            p = torch.exp(scores - block_max[..., None])
            return acc * rescale[..., None] + p @ v_block, block_max, row_sum * rescale + p.sum(-1)
    """,
        fails=("keeps_max_when_block_is_smaller",),
        says="maximum over ALL keys",
    ),
    alternative(
        "online_softmax_update",
        "FlashAttention-1 form: both parts rescaled to the new maximum",
        """
        import torch

        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            block_max = scores.max(dim=-1).values
            new_max = torch.max(row_max, block_max)
            finite = torch.isfinite(new_max)
            old_factor = torch.where(finite, torch.exp(row_max - new_max), torch.zeros_like(new_max))
            block_factor = torch.where(torch.isfinite(block_max), torch.exp(block_max - new_max), torch.zeros_like(new_max))
            p = torch.exp(scores - torch.where(torch.isfinite(block_max), block_max, torch.zeros_like(block_max)).unsqueeze(-1))
            acc = old_factor.unsqueeze(-1) * acc + block_factor.unsqueeze(-1) * torch.matmul(p, v_block)
            row_sum = old_factor * row_sum + block_factor * p.sum(dim=-1)
            return acc, new_max, row_sum
    """,
    ),
    alternative(
        "online_softmax_update",
        "log-space: logaddexp of the sums",
        """
        import torch

        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            old_lse = row_max + torch.log(row_sum)  # -inf before any key
            new_lse = torch.logaddexp(old_lse, torch.logsumexp(scores, dim=-1))
            new_max = torch.maximum(row_max, scores.amax(dim=-1))
            shift = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
            weights = torch.exp(scores - shift.unsqueeze(-1))
            acc = acc * torch.exp(row_max - shift).unsqueeze(-1) + weights @ v_block
            return acc, new_max, torch.exp(new_lse - shift)
    """,
    ),
    bug(
        "online_softmax_update",
        "state updated in place (acc.mul_, row_sum.mul_)",
        changed(
            UPDATE,
            "return acc * rescale[..., None] + p @ v_block, new_max, row_sum * rescale + p.sum(-1)",
            "acc.mul_(rescale[..., None]).add_(p @ v_block)\n"
            "        row_sum.mul_(rescale).add_(p.sum(-1))\n"
            "        return acc, new_max, row_sum",
        ),
        fails=("first_block_from_empty_state", "rescales_when_max_grows"),
        says="in place",
    ),
]


# ---------------------------------------------------------------------------------------
# flash_attention_forward: a correct tiled answer and changes to it

FORWARD = """
    import math
    import torch

    def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
        n_q, n_k = q.shape[-2], k.shape[-2]
        scale = 1 / math.sqrt(q.shape[-1])
        output = q.new_empty(*q.shape[:-1], v.shape[-1])
        lse = q.new_empty(q.shape[:-1])
        for q0 in range(0, n_q, block_q):
            q1 = min(q0 + block_q, n_q)
            acc = q.new_zeros(*q.shape[:-2], q1 - q0, v.shape[-1])
            row_max = q.new_full((*q.shape[:-2], q1 - q0), -math.inf)
            row_sum = q.new_zeros((*q.shape[:-2], q1 - q0))
            for k0 in range(0, n_k, block_k):
                if causal and k0 > q1 - 1:
                    break
                k1 = min(k0 + block_k, n_k)
                scores = q[..., q0:q1, :] @ k[..., k0:k1, :].transpose(-2, -1) * scale
                if causal:
                    future = torch.arange(k0, k1)[None, :] > torch.arange(q0, q1)[:, None]
                    scores = scores.masked_fill(future, -math.inf)
                new_max = torch.maximum(row_max, scores.amax(-1))
                rescale = torch.exp(row_max - new_max)
                p = torch.exp(scores - new_max[..., None])
                acc = acc * rescale[..., None] + p @ v[..., k0:k1, :]
                row_sum = row_sum * rescale + p.sum(-1)
                row_max = new_max
            output[..., q0:q1, :] = acc / row_sum[..., None]
            lse[..., q0:q1] = row_max + torch.log(row_sum)
        return output, lse
"""

FORWARD_ENTRIES = [
    bug(
        "flash_attention_forward",
        "layout: batch and head dims flattened with .view",
        changed(
            changed(
                FORWARD,
                "        n_q, n_k = q.shape[-2], k.shape[-2]\n",
                "        lead = q.shape[:-2]\n"
                "        q, k, v = (t.view(-1, *t.shape[-2:]) for t in (q, k, v))\n"
                "        n_q, n_k = q.shape[-2], k.shape[-2]\n",
            ),
            "        return output, lse\n",
            "        return output.view(*lead, *output.shape[-2:]), lse.view(*lead, n_q)\n",
        ),
        fails=("matches_attention",),
        says="non-contiguous views",
    ),
    advised(
        "flash_attention_forward",
        "blocksize: block_k ignored, keys 64 at a time",
        changed(
            changed(FORWARD, "for k0 in range(0, n_k, block_k):", "for k0 in range(0, n_k, 64):"),
            "k1 = min(k0 + block_k, n_k)",
            "k1 = min(k0 + 64, n_k)",
        ),
        advice=("tile_by_tile_in_pytorch",),
        says="use the block sizes the caller passes",
    ),
    bug(
        "flash_attention_forward",
        "causal tile skip off by one (stops at the query block's first row)",
        changed(FORWARD, "if causal and k0 > q1 - 1:", "if causal and k0 > q0:"),
        fails=("causal_attention",),
        says="look at which key blocks each query block visits",
    ),
    bug(
        "flash_attention_forward",
        "causal mask only on tiles that start on the diagonal",
        changed(
            FORWARD,
            "                if causal:\n                    future",
            "                if causal and k0 == q0:\n                    future",
        ),
        fails=("causal_attention",),
        says="how the mask cuts the tiles",
    ),
    bug(
        "flash_attention_forward",
        "acc and row_sum not rescaled",
        changed(
            changed(FORWARD, "acc = acc * rescale[..., None] +", "acc = acc +"),
            "row_sum = row_sum * rescale +",
            "row_sum = row_sum +",
        ),
        fails=("matches_attention",),
        says="are not rescaled by exp(old max - new max)",
    ),
    bug(
        "flash_attention_forward",
        "lse without the running maximum",
        changed(FORWARD, "lse[..., q0:q1] = row_max + torch.log(row_sum)", "lse[..., q0:q1] = torch.log(row_sum)"),
        fails=("matches_attention",),
        says="the running maximum is missing",
    ),
    bug(
        "flash_attention_forward",
        "causal path builds the full N x N scores",
        changed(
            FORWARD,
            "        n_q, n_k = q.shape[-2], k.shape[-2]\n",
            "        n_q, n_k = q.shape[-2], k.shape[-2]\n"
            "        if causal:\n"
            "            s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])\n"
            "            s = s.masked_fill(torch.ones(n_q, n_k, dtype=torch.bool).triu(1), -math.inf)\n"
            "            return torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)\n",
        ),
        fails=("never_materializes_scores",),
        says="MiB of memory beyond what it held",
    ),
    advised(
        "flash_attention_forward",
        "one full causal mask, sliced per tile",
        changed(
            changed(
                FORWARD,
                "        scale = 1 / math.sqrt(q.shape[-1])\n",
                "        scale = 1 / math.sqrt(q.shape[-1])\n"
                "        mask = torch.ones(n_q, n_k, dtype=torch.bool).triu(1)\n",
            ),
            "future = torch.arange(k0, k1)[None, :] > torch.arange(q0, q1)[:, None]",
            "future = mask[q0:q1, k0:k1]",
        ),
        advice=("tile_by_tile_in_pytorch",),
    ),
    advised(
        "flash_attention_forward",
        "only the queries are tiled",
        """
        import math
        import torch

        def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
            outputs, lses = [], []
            for q0 in range(0, q.shape[-2], block_q):
                s = q[..., q0:q0 + block_q, :] @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
                if causal:
                    rows = torch.arange(q0, min(q0 + block_q, q.shape[-2]))
                    s = s.masked_fill(torch.arange(k.shape[-2])[None, :] > rows[:, None], -math.inf)
                lses.append(torch.logsumexp(s, -1))
                outputs.append(torch.softmax(s, -1) @ v)
            return torch.cat(outputs, -2), torch.cat(lses, -1)
    """,
        advice=("tile_by_tile_in_pytorch",),
        says="against all N_k",
    ),
    bug(
        "flash_attention_forward",
        "points without the work: torch's attention and a full logsumexp",
        """
        import math
        import torch
        import torch.nn.functional as F

        def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
            s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if causal:
                s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), -math.inf)
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal), torch.logsumexp(s, -1)
    """,
        fails=("never_materializes_scores",),
        says="MiB of memory beyond what it held",
    ),
    alternative(
        "flash_attention_forward",
        "key blocks outside, a state per query row; mask from tril's diagonal",
        """
        import math
        import torch

        def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
            n_q, n_k = q.shape[-2], k.shape[-2]
            acc = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
            row_max = torch.full(q.shape[:-1], -math.inf, dtype=q.dtype)
            row_sum = torch.zeros(q.shape[:-1], dtype=q.dtype)
            for k0 in range(0, n_k, block_k):
                k1 = min(n_k, k0 + block_k)
                for q0 in range(0, n_q, block_q):
                    q1 = min(n_q, q0 + block_q)
                    if causal and k0 >= q1:  # every key of the block is after every query
                        continue
                    s = torch.einsum("...id,...jd->...ij", q[..., q0:q1, :], k[..., k0:k1, :]) / math.sqrt(q.shape[-1])
                    if causal:
                        visible = torch.ones(q1 - q0, k1 - k0, dtype=torch.bool).tril(diagonal=q0 - k0)
                        s = s.masked_fill(~visible, -math.inf)
                    m_old = row_max[..., q0:q1]
                    m_new = torch.maximum(m_old, s.max(-1).values)
                    p = torch.exp(s - m_new.unsqueeze(-1))
                    alpha = torch.exp(m_old - m_new)
                    acc[..., q0:q1, :] = alpha.unsqueeze(-1) * acc[..., q0:q1, :] + p @ v[..., k0:k1, :]
                    row_sum[..., q0:q1] = alpha * row_sum[..., q0:q1] + p.sum(-1)
                    row_max[..., q0:q1] = m_new
            return acc / row_sum.unsqueeze(-1), row_max + row_sum.log()
    """,
    ),
    alternative(
        "flash_attention_forward",
        "q pre-scaled, log-sum-exp state only, float64 inside",
        """
        import math
        import torch

        def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
            dtype = q.dtype
            q, k, v = q.double() / math.sqrt(q.shape[-1]), k.double(), v.double()
            blocks_out, blocks_lse = [], []
            for q0 in range(0, q.shape[-2], block_q):
                qb = q[..., q0:q0 + block_q, :]
                rows = torch.arange(q0, q0 + qb.shape[-2]).unsqueeze(-1)
                lse = torch.full(qb.shape[:-1], -math.inf, dtype=torch.float64)
                out = torch.zeros(*qb.shape[:-1], v.shape[-1], dtype=torch.float64)
                last_key = min(k.shape[-2], q0 + qb.shape[-2]) if causal else k.shape[-2]
                for k0 in range(0, last_key, block_k):
                    s = qb @ k[..., k0:k0 + block_k, :].transpose(-1, -2)
                    if causal:
                        s = torch.where(torch.arange(k0, k0 + s.shape[-1]) <= rows, s, -math.inf)
                    block_lse = torch.logsumexp(s, -1)
                    new_lse = torch.logaddexp(lse, block_lse)
                    # out is normalized so far: reweight the old part and add the block's normalized part
                    out = out * torch.exp(lse - new_lse).unsqueeze(-1) + torch.exp(s - new_lse.unsqueeze(-1)) @ v[..., k0:k0 + block_k, :]
                    lse = new_lse
                blocks_out.append(out)
                blocks_lse.append(lse)
            return torch.cat(blocks_out, -2).to(dtype), torch.cat(blocks_lse, -1).to(dtype)
    """,
    ),
]


# ---------------------------------------------------------------------------------------
# flash_attention_backward

BACKWARD = """
    import math
    import torch

    def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
        scale = 1 / math.sqrt(q.shape[-1])
        D = (grad_output * output).sum(-1)
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for q0 in range(0, q.shape[-2], block_q):
            q1 = min(q0 + block_q, q.shape[-2])
            for k0 in range(0, k.shape[-2], block_k):
                if causal and k0 > q1 - 1:
                    break
                k1 = min(k0 + block_k, k.shape[-2])
                s = q[..., q0:q1, :] @ k[..., k0:k1, :].transpose(-2, -1) * scale
                if causal:
                    s = s.masked_fill(torch.arange(k0, k1)[None, :] > torch.arange(q0, q1)[:, None], -math.inf)
                p = torch.exp(s - lse[..., q0:q1, None])
                dp = grad_output[..., q0:q1, :] @ v[..., k0:k1, :].transpose(-2, -1)
                ds = p * (dp - D[..., q0:q1, None])
                dv[..., k0:k1, :] += p.transpose(-2, -1) @ grad_output[..., q0:q1, :]
                dq[..., q0:q1, :] += ds @ k[..., k0:k1, :] * scale
                dk[..., k0:k1, :] += ds.transpose(-2, -1) @ q[..., q0:q1, :] * scale
        return dq, dk, dv
"""

BACKWARD_ENTRIES = [
    bug(
        "flash_attention_backward",
        "layout: D from grad_output and output flattened with .view",
        changed(
            BACKWARD,
            "D = (grad_output * output).sum(-1)",
            "D = (grad_output.view(-1, grad_output.shape[-1]) * output.view(-1, output.shape[-1])).sum(-1).view(lse.shape)",
        ),
        fails=("matches_autograd",),
        says="non-contiguous views",
    ),
    bug(
        "flash_attention_backward",
        "no 1/sqrt(d) in dq and dk",
        changed(
            changed(BACKWARD, "@ k[..., k0:k1, :] * scale", "@ k[..., k0:k1, :]"),
            "@ q[..., q0:q1, :] * scale",
            "@ q[..., q0:q1, :]",
        ),
        fails=("matches_autograd",),
        says="sqrt(d) times too large",
    ),
    bug(
        "flash_attention_backward",
        "D summed over each tile's weights instead of the whole row",
        changed(
            changed(BACKWARD, "ds = p * (dp - D[..., q0:q1, None])", "ds = p * (dp - (p * dp).sum(-1, keepdim=True))"),
            "        D = (grad_output * output).sum(-1)\n",
            "",
        ),
        fails=("matches_autograd", "recomputes_from_saved_lse"),
    ),
    bug(
        "flash_attention_backward",
        "causal mask forgotten when p is recomputed",
        changed(
            BACKWARD,
            "                if causal:\n                    s = s.masked_fill",
            "                if False:\n                    s = s.masked_fill",
        ),
        fails=("causal_gradients",),
        says="how p is masked on the tiles that cross the diagonal",
    ),
    bug(
        "flash_attention_backward",
        "causal tile skip off by one",
        changed(BACKWARD, "if causal and k0 > q1 - 1:", "if causal and k0 > q0:"),
        fails=("causal_gradients",),
        says="look at which tiles the loops visit",
    ),
    bug(
        "flash_attention_backward",
        "points without the work: autograd through torch's attention",
        """
        import torch
        import torch.nn.functional as F

        def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
            with torch.enable_grad():
                q, k, v = (t.detach().requires_grad_(True) for t in (q, k, v))
                out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                return torch.autograd.grad(out, (q, k, v), grad_output)
    """,
        fails=("recomputes_from_saved_lse", "never_materializes_scores"),
        says="not recomputed from the lse argument",
    ),
    advised(
        "flash_attention_backward",
        "causal mask built once for all N x N",
        changed(
            changed(
                BACKWARD,
                "        scale = 1 / math.sqrt(q.shape[-1])\n",
                "        scale = 1 / math.sqrt(q.shape[-1])\n"
                "        future = torch.arange(k.shape[-2])[None, :] > torch.arange(q.shape[-2])[:, None]\n",
            ),
            "s.masked_fill(torch.arange(k0, k1)[None, :] > torch.arange(q0, q1)[:, None], -math.inf)",
            "s.masked_fill(future[q0:q1, k0:k1], -math.inf)",
        ),
        advice=("tile_by_tile_in_pytorch",),
        says="the full N_q x N_k",
    ),
    alternative(
        "flash_attention_backward",
        "key blocks outside with their own dk, dv; einsum",
        """
        import math
        import torch

        def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
            scale = q.shape[-1] ** -0.5
            delta = torch.einsum("...id,...id->...i", grad_output, output)
            dq = torch.zeros_like(q)
            dk_blocks, dv_blocks = [], []
            for k0 in range(0, k.shape[-2], block_k):
                kb, vb = k[..., k0:k0 + block_k, :], v[..., k0:k0 + block_k, :]
                dk_b, dv_b = torch.zeros_like(kb), torch.zeros_like(vb)
                for q0 in range(0, q.shape[-2], block_q):
                    qb, dob = q[..., q0:q0 + block_q, :], grad_output[..., q0:q0 + block_q, :]
                    if causal and q0 + qb.shape[-2] <= k0:
                        continue
                    s = torch.einsum("...id,...jd->...ij", qb, kb) * scale
                    if causal:
                        keys, queries = torch.arange(k0, k0 + kb.shape[-2]), torch.arange(q0, q0 + qb.shape[-2])
                        s = torch.where(keys[None, :] <= queries[:, None], s, torch.tensor(-math.inf))
                    p = torch.exp(s - lse[..., q0:q0 + block_q].unsqueeze(-1))
                    dv_b = dv_b + torch.einsum("...ij,...id->...jd", p, dob)
                    ds = p * (torch.einsum("...id,...jd->...ij", dob, vb) - delta[..., q0:q0 + block_q].unsqueeze(-1))
                    dq[..., q0:q0 + block_q, :] += torch.einsum("...ij,...jd->...id", ds, kb) * scale
                    dk_b = dk_b + torch.einsum("...ij,...id->...jd", ds, qb) * scale
                dk_blocks.append(dk_b)
                dv_blocks.append(dv_b)
            return dq, torch.cat(dk_blocks, -2), torch.cat(dv_blocks, -2)
    """,
    ),
    alternative(
        "flash_attention_backward",
        "float64 inside, q pre-scaled, mask added as -inf bias",
        changed(
            BACKWARD,
            "        scale = 1 / math.sqrt(q.shape[-1])\n",
            "        dtype, scale = q.dtype, 1 / math.sqrt(q.shape[-1])\n"
            "        q, k, v, output, lse, grad_output = (t.double() for t in (q, k, v, output, lse, grad_output))\n",
        )
        .replace("        return dq, dk, dv\n", "        return dq.to(dtype), dk.to(dtype), dv.to(dtype)\n")
        .replace(
            "s = s.masked_fill(torch.arange(k0, k1)[None, :] > torch.arange(q0, q1)[:, None], -math.inf)",
            "s = s + torch.zeros(q1 - q0, k1 - k0, dtype=s.dtype).masked_fill(\n"
            "                        torch.arange(k0, k1)[None, :] > torch.arange(q0, q1)[:, None], -math.inf)",
        ),
    ),
]


# ---------------------------------------------------------------------------------------
# FlashAttentionFunction: every answer brings its own tiled passes (the other cells are stubs)


def function_cell(forward: str, backward: str) -> str:
    """A FlashAttentionFunction cell whose static methods have the bodies ``forward`` and
    ``backward``; they may call _fwd(q, k, v, causal, block_q, block_k) -> (output, lse) and
    _bwd(q, k, v, output, lse, grad_output, causal, block_q, block_k) -> (dq, dk, dv), the
    correct forward and backward answers above, defined in the same cell."""

    def body(code):
        return textwrap.indent(textwrap.dedent(code).strip(), " " * 8)

    helpers = textwrap.dedent(changed(FORWARD, "def flash_attention_forward(", "def _fwd(")) + textwrap.dedent(
        changed(BACKWARD, "def flash_attention_backward(", "def _bwd(")
    )
    return (
        helpers + "\n\nclass FlashAttentionFunction(torch.autograd.Function):\n    @staticmethod\n"
        "    def forward(ctx, q, k, v, causal=False, block_q=64, block_k=64):\n"
        + body(forward)
        + "\n\n    @staticmethod\n    def backward(ctx, grad_output):\n"
        + body(backward)
        + "\n"
    )


SAVE_OUTPUT_AND_LSE = """
    output, lse = _fwd(q, k, v, causal, block_q, block_k)
    ctx.save_for_backward(q, k, v, output, lse)
    ctx.causal, ctx.blocks = causal, (block_q, block_k)
    return output
"""
RECOMPUTE = """
    q, k, v, output, lse = ctx.saved_tensors
    return (*_bwd(q, k, v, output, lse, grad_output, ctx.causal, *ctx.blocks), None, None, None)
"""

FUNCTION_ENTRIES = [
    advised(
        "FlashAttentionFunction",
        "blocksize: backward tiles with its own defaults, not ctx's",
        function_cell(
            SAVE_OUTPUT_AND_LSE,
            """
        q, k, v, output, lse = ctx.saved_tensors
        return (*_bwd(q, k, v, output, lse, grad_output, ctx.causal), None, None, None)
    """,
        ),
        advice=("tile_by_tile_in_pytorch",),
        says="the default block sizes 64 x 64",
    ),
    bug(
        "FlashAttentionFunction",
        "ctx.needs_input_grad read at the wrong index for q and v",
        function_cell(
            SAVE_OUTPUT_AND_LSE,
            """
        q, k, v, output, lse = ctx.saved_tensors
        dq, dk, dv = _bwd(q, k, v, output, lse, grad_output, ctx.causal, *ctx.blocks)
        dq = dq if ctx.needs_input_grad[2] else None
        dk = dk if ctx.needs_input_grad[1] else None
        dv = dv if ctx.needs_input_grad[0] else None
        return dq, dk, dv, None, None, None
    """,
        ),
        fails=("gradient_of_each_input_alone",),
        says="is ctx.needs_input_grad read at index 0?",
    ),
    bug(
        "FlashAttentionFunction",
        "no gradients at all unless q, k and v all need them",
        function_cell(
            SAVE_OUTPUT_AND_LSE,
            """
        if not all(ctx.needs_input_grad[:3]):
            return None, None, None, None, None, None
        q, k, v, output, lse = ctx.saved_tensors
        return (*_bwd(q, k, v, output, lse, grad_output, ctx.causal, *ctx.blocks), None, None, None)
    """,
        ),
        fails=("gradient_of_each_input_alone",),
    ),
    bug(
        "FlashAttentionFunction",
        "q, k and v flattened with .view in forward",
        function_cell(
            """
        shape = q.shape
        q, k, v = (t.view(-1, *t.shape[-2:]) for t in (q, k, v))
        output, lse = _fwd(q, k, v, causal, block_q, block_k)
        output, lse = output.view(*shape[:-1], -1), lse.view(shape[:-1])
        ctx.save_for_backward(q.view(shape), k.view(*shape[:-2], *k.shape[-2:]), v.view(*shape[:-2], *v.shape[-2:]), output, lse)
        ctx.causal, ctx.blocks = causal, (block_q, block_k)
        return output
    """,
            RECOMPUTE,
        ),
        fails=("gradient_of_each_input_alone",),
        says="view",
    ),
    alternative(
        "FlashAttentionFunction",
        "only the gradients ctx.needs_input_grad asks for",
        function_cell(
            SAVE_OUTPUT_AND_LSE,
            """
        q, k, v, output, lse = ctx.saved_tensors
        grads = _bwd(q, k, v, output, lse, grad_output.contiguous(), ctx.causal, *ctx.blocks)
        return (*(g if need else None for g, need in zip(grads, ctx.needs_input_grad[:3])), None, None, None)
    """,
        ),
    ),
    bug(
        "FlashAttentionFunction",
        "weights of every tile kept in ctx for backward",
        function_cell(
            """
        import math
        scale, tiles = 1 / math.sqrt(q.shape[-1]), {}
        output, lse = _fwd(q, k, v, causal, block_q, block_k)
        for q0 in range(0, q.shape[-2], block_q):
            for k0 in range(0, k.shape[-2], block_k):
                s = q[..., q0:q0 + block_q, :] @ k[..., k0:k0 + block_k, :].transpose(-2, -1) * scale
                if causal:
                    rows, cols = torch.arange(q0, q0 + s.shape[-2]), torch.arange(k0, k0 + s.shape[-1])
                    s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)
                tiles[q0, k0] = torch.exp(s - lse[..., q0:q0 + block_q, None])
        ctx.tiles, ctx.blocks = tiles, (block_q, block_k)
        ctx.save_for_backward(q, k, v, output)
        return output
    """,
            """
        q, k, v, output = ctx.saved_tensors
        D = (grad_output * output).sum(-1)
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        scale = q.shape[-1] ** -0.5
        for (q0, k0), p in ctx.tiles.items():
            q1, k1 = q0 + p.shape[-2], k0 + p.shape[-1]
            do = grad_output[..., q0:q1, :]
            dv[..., k0:k1, :] += p.transpose(-2, -1) @ do
            ds = p * (do @ v[..., k0:k1, :].transpose(-2, -1) - D[..., q0:q1, None])
            dq[..., q0:q1, :] += ds @ k[..., k0:k1, :] * scale
            dk[..., k0:k1, :] += ds.transpose(-2, -1) @ q[..., q0:q1, :] * scale
        return dq, dk, dv, None, None, None
    """,
        ),
        fails=("never_materializes_scores",),
        says="MiB of memory beyond what it held",
    ),
    bug(
        "FlashAttentionFunction",
        "backward by autograd through plain attention",
        function_cell(
            SAVE_OUTPUT_AND_LSE,
            """
        q, k, v, output, lse = ctx.saved_tensors
        with torch.enable_grad():
            q, k, v = (t.detach().requires_grad_(True) for t in (q, k, v))
            s = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
            if ctx.causal:
                s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
            out = torch.softmax(s, -1) @ v
            return (*torch.autograd.grad(out, (q, k, v), grad_output), None, None, None)
    """,
        ),
        fails=("never_materializes_scores",),
        says="MiB of memory beyond what it held",
    ),
    bug(
        "FlashAttentionFunction",
        "causal forgotten in backward",
        function_cell(
            SAVE_OUTPUT_AND_LSE,
            """
        q, k, v, output, lse = ctx.saved_tensors
        return (*_bwd(q, k, v, output, lse, grad_output, False, *ctx.blocks), None, None, None)
    """,
        ),
        fails=("causal_gradients",),
        says="backward does not apply the causal mask",
    ),
    bug(
        "FlashAttentionFunction",
        "backward returns three gradients",
        function_cell(
            SAVE_OUTPUT_AND_LSE,
            """
        q, k, v, output, lse = ctx.saved_tensors
        return _bwd(q, k, v, output, lse, grad_output, ctx.causal, *ctx.blocks)
    """,
        ),
        fails=("causal_gradients",),
        says="incorrect number of gradients",
    ),
    alternative(
        "FlashAttentionFunction",
        "tiled passes, q, k, v, output and lse saved",
        function_cell(SAVE_OUTPUT_AND_LSE, RECOMPUTE),
    ),
    alternative(
        "FlashAttentionFunction",
        "only q, k, v and lse saved; the output recomputed in backward",
        function_cell(
            """
        output, lse = _fwd(q, k, v, causal, block_q, block_k)
        ctx.save_for_backward(q, k, v, lse)
        ctx.options = (causal, block_q, block_k)
        return output
    """,
            """
        q, k, v, lse = ctx.saved_tensors
        causal, block_q, block_k = ctx.options
        output, _ = _fwd(q, k, v, causal, block_q, block_k)
        return (*_bwd(q, k, v, output, lse, grad_output, causal, block_q, block_k), None, None, None)
    """,
        ),
    ),
]


# ---------------------------------------------------------------------------------------
# flash_attention_triton: the kernel and its wrapper, run by Triton's interpreter

TRITON = """
    import math
    import os

    import torch
    import triton
    import triton.language as tl


    @triton.jit
    def flash_attention_kernel(q_ptr, k_ptr, v_ptr, o_ptr, n_q, n_k, d, d_v, scale,
                               stride_qb, stride_qn, stride_kb, stride_kn, stride_vb, stride_vn, stride_ob, stride_on,
                               CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                               BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
        start_m = tl.program_id(0)
        b = tl.program_id(1)
        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        offs_dv = tl.arange(0, BLOCK_DV)
        q = tl.load(q_ptr + b * stride_qb + offs_m[:, None] * stride_qn + offs_d[None, :],
                    mask=(offs_m[:, None] < n_q) & (offs_d[None, :] < d), other=0.0)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
        if CAUSAL:
            end_n = tl.minimum(n_k, (start_m + 1) * BLOCK_M)
        else:
            end_n = n_k
        for start_n in range(0, end_n, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            k = tl.load(k_ptr + b * stride_kb + offs_n[:, None] * stride_kn + offs_d[None, :],
                        mask=(offs_n[:, None] < n_k) & (offs_d[None, :] < d), other=0.0)
            v = tl.load(v_ptr + b * stride_vb + offs_n[:, None] * stride_vn + offs_dv[None, :],
                        mask=(offs_n[:, None] < n_k) & (offs_dv[None, :] < d_v), other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
            visible = offs_n[None, :] < n_k
            if CAUSAL:
                visible = visible & (offs_n[None, :] <= offs_m[:, None])
            s = tl.where(visible, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
            m_i = m_new
        acc = acc / l_i[:, None]
        tl.store(o_ptr + b * stride_ob + offs_m[:, None] * stride_on + offs_dv[None, :],
                 acc, mask=(offs_m[:, None] < n_q) & (offs_dv[None, :] < d_v))


    def flash_attention_triton(q, k, v, causal=False):
        n_q, n_k, d, d_v = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
        q3, k3, v3 = (t.reshape(-1, t.shape[-2], t.shape[-1]).contiguous() for t in (q, k, v))
        out = torch.empty(q3.shape[0], n_q, d_v, dtype=q.dtype)
        block = 32
        grid = (triton.cdiv(n_q, block), q3.shape[0])
        flash_attention_kernel[grid](q3, k3, v3, out, n_q, n_k, d, d_v, 1.0 / math.sqrt(d),
                                     q3.stride(0), q3.stride(1), k3.stride(0), k3.stride(1),
                                     v3.stride(0), v3.stride(1), out.stride(0), out.stride(1),
                                     CAUSAL=causal, BLOCK_M=block, BLOCK_N=block,
                                     BLOCK_D=max(16, triton.next_power_of_2(d)),
                                     BLOCK_DV=max(16, triton.next_power_of_2(d_v)))
        return out.reshape(*q.shape[:-1], d_v)
"""

TRITON_ENTRIES = [
    bug(
        "flash_attention_triton",
        "layout: launcher without .contiguous()",
        changed(
            TRITON,
            "t.reshape(-1, t.shape[-2], t.shape[-1]).contiguous()",
            "t.reshape(-1, t.shape[-2], t.shape[-1])",
        ),
        fails=("batch_and_head_dims",),
        says="call .contiguous() on q, k and v",
    ),
    bug(
        "flash_attention_triton",
        "scores not scaled",
        changed(TRITON, "1.0 / math.sqrt(d),", "1.0,"),
        fails=("matches_attention",),
        says="not divided by sqrt(d)",
    ),
    bug(
        "flash_attention_triton",
        "causal loop stops before the diagonal block",
        changed(
            TRITON, "end_n = tl.minimum(n_k, (start_m + 1) * BLOCK_M)", "end_n = tl.minimum(n_k, start_m * BLOCK_M)"
        ),
        fails=("causal_attention",),
        says="NaN for query 0",
    ),
    bug(
        "flash_attention_triton",
        "acc not rescaled when the maximum grows",
        changed(TRITON, "acc = acc * alpha[:, None] +", "acc = acc +"),
        fails=("matches_attention",),
        says="the accumulator acc is not",
    ),
    advised(
        "flash_attention_triton",
        "points without the work: the wrapper calls torch's attention",
        textwrap.dedent(TRITON)
        + "\n\nimport torch.nn.functional as F\n\n\ndef flash_attention_triton(q, k, v, causal=False):\n"
        "    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)\n",
        advice=("launches_a_triton_kernel",),
        says="with PyTorch operations",
    ),
    advised(
        "flash_attention_triton",
        "points without the work: a tiled PyTorch loop instead of the kernel",
        textwrap.dedent(changed(FORWARD, "def flash_attention_forward(", "def _tiled("))
        + "\n\ndef flash_attention_triton(q, k, v, causal=False):\n    return _tiled(q, k, v, causal, 32, 32)[0]\n",
        advice=("launches_a_triton_kernel",),
        says="with PyTorch operations",
    ),
    alternative("flash_attention_triton", "the chapter's kernel with 32 x 32 tiles, float32 accumulation", TRITON),
    alternative(
        "flash_attention_triton",
        "base-2 exponentials, 16 x 32 tiles, causal future masked (loop not shortened)",
        changed(
            changed(
                changed(
                    changed(
                        changed(
                            TRITON,
                            "        if CAUSAL:\n            end_n = tl.minimum(n_k, (start_m + 1) * BLOCK_M)\n        else:\n"
                            "            end_n = n_k\n        for start_n in range(0, end_n, BLOCK_N):",
                            "        for start_n in range(0, n_k, BLOCK_N):",
                        ),
                        's = tl.dot(q, tl.trans(k), input_precision="ieee") * scale',
                        's = tl.dot(q, tl.trans(k), input_precision="ieee") * (scale * 1.4426950408889634)',
                    ),
                    "alpha = tl.exp(m_i - m_new)\n            p = tl.exp(s - m_new[:, None])",
                    "alpha = tl.exp2(m_i - m_new)\n            p = tl.exp2(s - m_new[:, None])\n"
                    "            p = tl.where(visible, p, 0.0)",
                ),
                "block = 32\n        grid = (triton.cdiv(n_q, block), q3.shape[0])",
                "grid = (triton.cdiv(n_q, 16), q3.shape[0])",
            ),
            "BLOCK_M=block, BLOCK_N=block,",
            "BLOCK_M=16, BLOCK_N=32,",
        ),
    ),
]

# ---------------------------------------------------------------------------------------
# Red-team answers, written from the learner's notebook before reading the checks

RED_TEAM = [
    # ------------------------------------------------------------------ online_softmax_update
    bug(
        "online_softmax_update",
        "red: block-local max without -inf guard (nan on a row masked in a later block)",
        """
        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            block_max = scores.amax(dim=-1)
            new_max = torch.maximum(row_max, block_max)
            p = torch.exp(scores - block_max[..., None])
            grow = torch.exp(block_max - new_max)
            old = torch.exp(row_max - new_max)
            acc = acc * old[..., None] + (p @ v_block) * grow[..., None]
            return acc, new_max, row_sum * old + p.sum(-1) * grow
    """,
    ),
    bug(
        "online_softmax_update",
        "red: row_sum adds the block's column sums (square blocks only)",
        """
        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            new_max = torch.maximum(row_max, scores.amax(dim=-1))
            rescale = torch.exp(row_max - new_max)
            p = torch.exp(scores - new_max[..., None])
            return acc * rescale[..., None] + p @ v_block, new_max, row_sum * rescale + p.sum(dim=-2)
    """,
    ),
    bug(
        "online_softmax_update",
        "red: max over the query axis",
        """
        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            new_max = torch.maximum(row_max, scores.amax(dim=-2))
            rescale = torch.exp(row_max - new_max)
            p = torch.exp(scores - new_max[..., None])
            return acc * rescale[..., None] + p @ v_block, new_max, row_sum * rescale + p.sum(-1)
    """,
    ),
    bug(
        "online_softmax_update",
        "red: transposed weights times values (square blocks only)",
        """
        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            new_max = torch.maximum(row_max, scores.amax(dim=-1))
            rescale = torch.exp(row_max - new_max)
            p = torch.exp(scores - new_max[..., None])
            return acc * rescale[..., None] + p.transpose(-2, -1) @ v_block, new_max, row_sum * rescale + p.sum(-1)
    """,
    ),
    bug(
        "online_softmax_update",
        "red: one max for all rows",
        """
        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            new_max = torch.maximum(row_max, scores.max()).expand_as(row_max)
            rescale = torch.exp(row_max - new_max)
            p = torch.exp(scores - new_max[..., None])
            return acc * rescale[..., None] + p @ v_block, new_max, row_sum * rescale + p.sum(-1)
    """,
    ),
    bug(
        "online_softmax_update",
        "red: 2-D only (dim=1)",
        """
        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            new_max = torch.maximum(row_max, scores.max(dim=1).values)
            rescale = torch.exp(row_max - new_max)
            p = torch.exp(scores - new_max.unsqueeze(-1))
            return acc * rescale.unsqueeze(-1) + p @ v_block, new_max, row_sum * rescale + p.sum(-1)
    """,
    ),
    bug(
        "online_softmax_update",
        "red: float32 internals for float64 inputs",
        """
        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            acc, row_max, row_sum, scores, v_block = (t.float() for t in (acc, row_max, row_sum, scores, v_block))
            new_max = torch.maximum(row_max, scores.amax(dim=-1))
            rescale = torch.exp(row_max - new_max)
            p = torch.exp(scores - new_max[..., None])
            return acc * rescale[..., None] + p @ v_block, new_max, row_sum * rescale + p.sum(-1)
    """,
    ),
    bug(
        "online_softmax_update",
        "red: normalised accumulator",
        """
        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            new_max = torch.maximum(row_max, scores.amax(dim=-1))
            rescale = torch.exp(row_max - new_max)
            p = torch.exp(scores - new_max[..., None])
            new_sum = row_sum * rescale + p.sum(-1)
            acc = (acc * (row_sum * rescale)[..., None] + p @ v_block) / new_sum[..., None]
            return acc, new_max, new_sum
    """,
    ),
    bug(
        "online_softmax_update",
        "red: torch.softmax of the block folded in with block weights",
        """
        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            new_max = torch.maximum(row_max, scores.amax(dim=-1))
            rescale = torch.exp(row_max - new_max)
            block_sum = torch.exp(scores - new_max[..., None]).sum(-1)
            p = torch.softmax(scores, dim=-1)
            return acc * rescale[..., None] + p @ v_block, new_max, row_sum * rescale + block_sum
    """,
    ),
    alternative(
        "online_softmax_update",
        "red: einsum with block-local max and guards",
        """
        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            block_max = scores.amax(dim=-1)
            new_max = torch.maximum(row_max, block_max)
            safe = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
            old = torch.exp(row_max - safe)
            safe_block = torch.where(torch.isinf(block_max), torch.zeros_like(block_max), block_max)
            p = torch.exp(scores - safe_block.unsqueeze(-1))
            grow = torch.where(torch.isinf(block_max), torch.zeros_like(block_max), torch.exp(safe_block - safe))
            new_acc = old.unsqueeze(-1) * acc + grow.unsqueeze(-1) * torch.einsum("...qk,...kd->...qd", p, v_block)
            return new_acc, new_max, old * row_sum + grow * p.sum(-1)
    """,
    ),
    alternative(
        "online_softmax_update",
        "red: float64 internals, log-domain sum",
        """
        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            dtype = acc.dtype
            a, m, l, s, v = (t.double() for t in (acc, row_max, row_sum, scores, v_block))
            new_m = torch.maximum(m, s.amax(-1))
            shift = torch.nan_to_num(new_m, neginf=0.0)
            old = torch.exp(m - shift)
            p = torch.exp(s - shift[..., None])
            new_a = a * old[..., None] + (p[..., :, :, None] * v[..., None, :, :]).sum(-2)
            return new_a.to(dtype), new_m.to(dtype), (l * old + p.sum(-1)).to(dtype)
    """,
    ),
    alternative(
        "online_softmax_update",
        "red: -inf replaced by a finite floor",
        """
        def online_softmax_update(acc, row_max, row_sum, scores, v_block):
            floor = torch.finfo(scores.dtype).min
            new_max = torch.maximum(row_max, scores.amax(dim=-1))
            m = new_max.clamp(min=floor)
            scale_old = torch.exp(row_max.clamp(min=floor) - m) * (row_sum > 0)
            p = torch.exp(scores.clamp(min=floor) - m[..., None]) * (scores > float("-inf"))
            return acc * scale_old[..., None] + torch.matmul(p, v_block), new_max, row_sum * scale_old + p.sum(-1)
    """,
    ),
]

RED_FOLD = """
def _fold(acc, row_max, row_sum, scores, v_block):
    new_max = torch.maximum(row_max, scores.amax(dim=-1))
    shift = torch.where(new_max == float("-inf"), torch.zeros_like(new_max), new_max)
    rescale = torch.exp(row_max - shift)
    p = torch.exp(scores - shift[..., None])
    return acc * rescale[..., None] + p @ v_block, new_max, row_sum * rescale + p.sum(dim=-1)

"""


def red_forward(label, body, is_bug=True):
    source = RED_FOLD + body
    return (bug if is_bug else alternative)("flash_attention_forward", label, source)


RED_FORWARD = """
def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    n_q, n_k = q.shape[-2], k.shape[-2]
    scale = {scale}
    output = q.new_empty(*q.shape[:-1], v.shape[-1])
    lse = q.new_empty(q.shape[:-1])
    for q_start in range(0, {q_end_range}, block_q):
        q_end = min(q_start + block_q, n_q)
        acc = q.new_zeros(*q.shape[:-2], q_end - q_start, v.shape[-1])
        row_max = q.new_full((*q.shape[:-2], q_end - q_start), float("-inf"))
        row_sum = q.new_zeros(*q.shape[:-2], q_end - q_start)
        for k_start in range(0, {k_end_range}, block_k):
            k_end = min(k_start + block_k, n_k)
            scores = q[..., q_start:q_end, :] @ k[..., k_start:k_end, :].transpose(-2, -1) * scale
            if causal:
                {mask}
            acc, row_max, row_sum = _fold(acc, row_max, row_sum, scores, v[..., k_start:k_end, :])
        output[..., q_start:q_end, :] = acc / row_sum[..., None]
        lse[..., q_start:q_end] = {lse}
    return output, lse
"""
RED_FORWARD_PARTS = dict(
    scale="1.0 / math.sqrt(q.shape[-1])",
    q_end_range="n_q",
    k_end_range="min(q_end, n_k) if causal else n_k",
    mask=(
        "rows = torch.arange(q_start, q_end)[:, None]\n"
        "                scores = scores.masked_fill(torch.arange(k_start, k_end)[None, :] > rows, float('-inf'))"
    ),
    lse="row_max + row_sum.log()",
)


def red_forward_changed(label, is_bug=True, **changes):
    return red_forward(label, RED_FORWARD.format(**{**RED_FORWARD_PARTS, **changes}), is_bug)


RED_TEAM += [
    red_forward_changed("red: template as written is correct", is_bug=False),
    red_forward_changed("red: scale 1/d", scale="1.0 / q.shape[-1]"),
    red_forward_changed("red: scale by sqrt(d_v)", scale="1.0 / math.sqrt(v.shape[-1])"),
    red_forward_changed("red: no scale", scale="1.0"),
    red_forward_changed("red: last partial query block skipped", q_end_range="n_q - n_q % block_q"),
    red_forward_changed(
        "red: last partial key block skipped", k_end_range="(min(q_end, n_k) if causal else n_k) - n_k % block_k"
    ),
    red_forward_changed(
        "red: causal mask with tile-local indices",
        mask="scores = scores.masked_fill(torch.ones(q_end - q_start, k_end - k_start, dtype=torch.bool).triu(1), "
        "float('-inf'))",
    ),
    red_forward_changed(
        "red: causal mask drops the diagonal",
        mask=(
            "rows = torch.arange(q_start, q_end)[:, None]\n"
            "                scores = scores.masked_fill(torch.arange(k_start, k_end)[None, :] >= rows, "
            "float('-inf'))"
        ),
    ),
    red_forward_changed(
        "red: causal skips the diagonal block when not aligned", k_end_range="q_start + 1 if causal else n_k"
    ),
    red_forward_changed(
        "red: causal loop bound by the block start (block_q != block_k misses keys)",
        k_end_range="min(q_start + block_k, n_k) if causal else n_k",
    ),
    red_forward_changed("red: lse without log", lse="row_max + row_sum"),
    red_forward_changed("red: lse of the max only", lse="row_max"),
    red_forward_changed("red: lse without the max", lse="row_sum.log()"),
    red_forward(
        "red: full score matrix built row by row in float16 into a list",
        """
def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    scale = 1.0 / math.sqrt(q.shape[-1])
    rows = []
    for i in range(q.shape[-2]):
        s = (q[..., i:i + 1, :] @ k.transpose(-2, -1) * scale).squeeze(-2)
        if causal:
            s = s.masked_fill(torch.arange(k.shape[-2]) > i, float("-inf"))
        rows.append(s.half())
    outs, lses = [], []
    for s in rows:
        s = s.to(q.dtype)
        lse = torch.logsumexp(s, dim=-1)
        outs.append((torch.exp(s - lse[..., None])[..., None, :] @ v).squeeze(-2))
        lses.append(lse)
    return torch.stack(outs, dim=-2), torch.stack(lses, dim=-1)
""",
    ),
    red_forward(
        "red: whole-row softmax per query, kept in a list",
        """
def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    scale = 1.0 / math.sqrt(q.shape[-1])
    weights, lses = [], []
    for i in range(q.shape[-2]):
        s = (q[..., i:i + 1, :] @ k.transpose(-2, -1) * scale)
        if causal:
            s = s.masked_fill(torch.arange(k.shape[-2]) > i, float("-inf"))
        lse = torch.logsumexp(s, dim=-1)
        weights.append(torch.exp(s - lse[..., None]))
        lses.append(lse)
    return torch.cat([w @ v for w in weights], dim=-2), torch.cat(lses, dim=-1)
""",
    ),
    red_forward(
        "red: F.scaled_dot_product_attention plus a tiled lse",
        """
def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    scale = 1.0 / math.sqrt(q.shape[-1])
    lse = q.new_empty(q.shape[:-1])
    for q_start in range(0, q.shape[-2], block_q):
        q_end = min(q_start + block_q, q.shape[-2])
        m = q.new_full((*q.shape[:-2], q_end - q_start), float("-inf"))
        l = torch.zeros_like(m)
        for k_start in range(0, k.shape[-2], block_k):
            k_end = min(k_start + block_k, k.shape[-2])
            s = q[..., q_start:q_end, :] @ k[..., k_start:k_end, :].transpose(-2, -1) * scale
            if causal:
                s = s.masked_fill(torch.arange(k_start, k_end)[None, :] > torch.arange(q_start, q_end)[:, None],
                                  float("-inf"))
            new_m = torch.maximum(m, s.amax(-1))
            l = l * torch.exp(m - new_m) + torch.exp(s - new_m[..., None]).sum(-1)
            m = new_m
        lse[..., q_start:q_end] = m + l.log()
    return out, lse
""",
    ),
    red_forward(
        "red: PyTorch's fused CPU flash kernel",
        """
def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal)[:2]
    return out, lse
""",
    ),
    red_forward(
        "red: float32 state for float64 inputs",
        RED_FORWARD.format(**RED_FORWARD_PARTS)
        .replace("acc = q.new_zeros(", "acc = torch.zeros(")
        .replace("q_end - q_start, v.shape[-1])", "q_end - q_start, v.shape[-1], dtype=torch.float32)")
        .replace("scores = q[", "scores = q.float()[")
        .replace("@ k[", "@ k.float()[")
        .replace("v[..., k_start:k_end, :])", "v.float()[..., k_start:k_end, :])")
        .replace("row_max = q.new_full(", "row_max = torch.full(")
        .replace('float("-inf"))\n        row_sum = q.new_zeros(', 'float("-inf"))\n        row_sum = torch.zeros('),
    ),
    red_forward(
        "red: key blocks outer, FlashAttention-1 order",
        """
def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    n_q, n_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    starts = list(range(0, n_q, block_q))
    accs = [q.new_zeros(*q.shape[:-2], min(s + block_q, n_q) - s, v.shape[-1]) for s in starts]
    maxes = [q.new_full(a.shape[:-1], float("-inf")) for a in accs]
    sums = [q.new_zeros(a.shape[:-1]) for a in accs]
    for k_start in range(0, n_k, block_k):
        k_end = min(k_start + block_k, n_k)
        kt = k[..., k_start:k_end, :].transpose(-2, -1)
        for i, q_start in enumerate(starts):
            q_end = min(q_start + block_q, n_q)
            if causal and k_start > q_end - 1:
                continue
            s = torch.einsum("...qd,...dk->...qk", q[..., q_start:q_end, :] * scale, kt)
            if causal:
                future = torch.arange(k_start, k_end).view(1, -1) > torch.arange(q_start, q_end).view(-1, 1)
                s = torch.where(future, torch.full_like(s, float("-inf")), s)
            accs[i], maxes[i], sums[i] = _fold(accs[i], maxes[i], sums[i], s, v[..., k_start:k_end, :])
    out = torch.cat([a / l.unsqueeze(-1) for a, l in zip(accs, sums)], dim=-2)
    lse = torch.cat([m + torch.log(l) for m, l in zip(maxes, sums)], dim=-1)
    return out, lse
""",
        is_bug=False,
    ),
    red_forward(
        "red: float64 internals, every causal tile masked, no skipping",
        """
def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError("causal needs N_q == N_k")
    lead, n_q, n_k = q.shape[:-2], q.shape[-2], k.shape[-2]
    q64, k64, v64 = (t.reshape(-1, t.shape[-2], t.shape[-1]).double() for t in (q, k, v))
    outs, lses = [], []
    for q_start in range(0, n_q, block_q):
        qb = q64[:, q_start:q_start + block_q] / math.sqrt(q.shape[-1])
        rows = torch.arange(q_start, q_start + qb.shape[1])
        acc = torch.zeros(qb.shape[0], qb.shape[1], v.shape[-1], dtype=torch.float64)
        m = torch.full(qb.shape[:2], float("-inf"), dtype=torch.float64)
        l = torch.zeros(qb.shape[:2], dtype=torch.float64)
        for k_start in range(0, n_k, block_k):
            s = torch.bmm(qb, k64[:, k_start:k_start + block_k].transpose(1, 2))
            if causal:
                cols = torch.arange(k_start, k_start + s.shape[2])
                s = s.masked_fill(cols[None, None, :] > rows[None, :, None], float("-inf"))
            acc, m, l = _fold(acc, m, l, s, v64[:, k_start:k_start + block_k])
        outs.append(acc / l[..., None])
        lses.append(m + l.log())
    out = torch.cat(outs, 1).reshape(*lead, n_q, v.shape[-1]).to(q.dtype)
    return out, torch.cat(lses, 1).reshape(*lead, n_q).to(q.dtype)
""",
        is_bug=False,
    ),
]

RED_BACKWARD = """
def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
    n_q, n_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    delta = {delta}
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for k_start in range(0, {k_range}, block_k):
        k_end = min(k_start + block_k, n_k)
        kb, vb = k[..., k_start:k_end, :], v[..., k_start:k_end, :]
        for q_start in range(0, {q_range}, block_q):
            q_end = min(q_start + block_q, n_q)
            if causal and {skip}:
                continue
            qb, dob = q[..., q_start:q_end, :], grad_output[..., q_start:q_end, :]
            s = (qb @ kb.transpose(-2, -1)) * scale
            if {mask_when}:
                future = torch.arange(k_start, k_end)[None, :] > torch.arange(q_start, q_end)[:, None]
                s = s.masked_fill(future, float("-inf"))
            p = {p}
            dv[..., k_start:k_end, :] += {dv}
            ds = p * (dob @ vb.transpose(-2, -1) - {d_tile})
            dq[..., q_start:q_end, :] += (ds @ kb) * {dq_scale}
            dk[..., k_start:k_end, :] += {dk}
    return dq, dk, dv
"""
RED_BACKWARD_PARTS = dict(
    delta="(grad_output * output).sum(dim=-1)",
    k_range="n_k",
    q_range="n_q",
    skip="q_end - 1 < k_start",
    mask_when="causal",
    p="torch.exp(s - lse[..., q_start:q_end, None])",
    dv="p.transpose(-2, -1) @ dob",
    d_tile="delta[..., q_start:q_end, None]",
    dq_scale="scale",
    dk="(ds.transpose(-2, -1) @ qb) * scale",
)


def red_backward_changed(label, is_bug=True, **changes):
    return (bug if is_bug else alternative)(
        "flash_attention_backward", label, RED_BACKWARD.format(**{**RED_BACKWARD_PARTS, **changes})
    )


RED_TEAM += [
    red_backward_changed("red: template as written is correct", is_bug=False),
    red_backward_changed("red: tile softmax instead of exp(s - lse)", p="torch.softmax(s, dim=-1)"),
    red_backward_changed(
        "red: D from the tile's own p and dp", d_tile="(p * (dob @ vb.transpose(-2, -1))).sum(-1, keepdim=True)"
    ),
    red_backward_changed("red: dq without the 1/sqrt(d)", dq_scale="1.0"),
    red_backward_changed("red: dk without the 1/sqrt(d)", dk="ds.transpose(-2, -1) @ qb"),
    red_backward_changed("red: causal mask not applied", mask_when="False"),
    red_backward_changed("red: last partial key block skipped", k_range="n_k - n_k % block_k"),
    red_backward_changed("red: last partial query block skipped", q_range="n_q - n_q % block_q"),
    red_backward_changed("red: D summed over the wrong axis", delta="(grad_output * output).sum(dim=-2)"),
    red_backward_changed(
        "red: lse recomputed from the full rows, argument ignored",
        p="torch.exp(s - torch.logsumexp((q @ k.transpose(-2, -1)) * scale + "
        "torch.zeros(n_q, n_k).masked_fill(torch.ones(n_q, n_k, dtype=torch.bool).triu(1) & causal, "
        "float('-inf')), -1)[..., q_start:q_end, None])",
    ),
    red_backward_changed(
        "red: lse scaled by 1/sqrt(d) again", p="torch.exp(s - lse[..., q_start:q_end, None] * scale)"
    ),
    red_backward_changed(
        "red: D from the key rows (square only)", d_tile="delta[..., k_start:k_end, None].transpose(-2, -1)"
    ),
    red_backward_changed(
        "red: float32 tiles for float64 inputs",
        p="torch.exp(s.float() - lse[..., q_start:q_end, None].float()).to(s.dtype)",
    ),
    bug(
        "flash_attention_backward",
        "red: backward by autograd through chapter 2 attention",
        """
        def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
            with torch.enable_grad():
                q_, k_, v_ = (t.detach().requires_grad_() for t in (q, k, v))
                mask = causal_mask(q.shape[-2]) if causal else None
                out, _ = scaled_dot_product_attention(q_, k_, v_, mask)
                return torch.autograd.grad(out, (q_, k_, v_), grad_output)
    """,
    ),
    bug(
        "flash_attention_backward",
        "red: backward by autograd through a tiled forward with lse ignored",
        """
        def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
            with torch.enable_grad():
                q_, k_, v_ = (t.detach().requires_grad_() for t in (q, k, v))
                n_q, n_k = q.shape[-2], k.shape[-2]
                outs = []
                for q_start in range(0, n_q, block_q):
                    q_end = min(q_start + block_q, n_q)
                    m = q.new_full((*q.shape[:-2], q_end - q_start), float("-inf"))
                    l = torch.zeros_like(m)
                    a = q.new_zeros(*q.shape[:-2], q_end - q_start, v.shape[-1])
                    for k_start in range(0, n_k, block_k):
                        k_end = min(k_start + block_k, n_k)
                        s = q_[..., q_start:q_end, :] @ k_[..., k_start:k_end, :].transpose(-2, -1) / math.sqrt(q.shape[-1])
                        if causal:
                            s = s.masked_fill(torch.arange(k_start, k_end)[None] > torch.arange(q_start, q_end)[:, None],
                                              float("-inf"))
                        new_m = torch.maximum(m, s.amax(-1)).detach()
                        r = torch.exp(m - new_m)
                        p = torch.exp(s - new_m[..., None])
                        a, l, m = a * r[..., None] + p @ v_[..., k_start:k_end, :], l * r + p.sum(-1), new_m
                    outs.append(a / l[..., None])
                return torch.autograd.grad(torch.cat(outs, -2), (q_, k_, v_), grad_output)
    """,
    ),
    bug(
        "flash_attention_backward",
        "red: full P recomputed from lse in one go",
        """
        def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
            s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if causal:
                s = s.masked_fill(~causal_mask(q.shape[-2]), float("-inf"))
            p = torch.exp(s - lse[..., None])
            dv = p.transpose(-2, -1) @ grad_output
            ds = p * (grad_output @ v.transpose(-2, -1) - (grad_output * output).sum(-1, keepdim=True))
            return ds @ k / math.sqrt(q.shape[-1]), ds.transpose(-2, -1) @ q / math.sqrt(q.shape[-1]), dv
    """,
    ),
    bug(
        "flash_attention_backward",
        "red: first pass keeps every recomputed tile of p in a dict",
        """
        def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
            n_q, n_k = q.shape[-2], k.shape[-2]
            scale = 1.0 / math.sqrt(q.shape[-1])
            tiles = {}
            for i in range(0, n_q, block_q):
                for j in range(0, n_k, block_k):
                    s = q[..., i:i + block_q, :] @ k[..., j:j + block_k, :].transpose(-2, -1) * scale
                    if causal:
                        rows = torch.arange(i, min(i + block_q, n_q))[:, None]
                        s = s.masked_fill(torch.arange(j, min(j + block_k, n_k))[None, :] > rows, float("-inf"))
                    tiles[i, j] = torch.exp(s - lse[..., i:i + block_q, None])
            delta = (grad_output * output).sum(-1)
            dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
            for (i, j), p in tiles.items():
                do = grad_output[..., i:i + block_q, :]
                dv[..., j:j + block_k, :] += p.transpose(-2, -1) @ do
                ds = p * (do @ v[..., j:j + block_k, :].transpose(-2, -1) - delta[..., i:i + block_q, None])
                dq[..., i:i + block_q, :] += ds @ k[..., j:j + block_k, :] * scale
                dk[..., j:j + block_k, :] += ds.transpose(-2, -1) @ q[..., i:i + block_q, :] * scale
            return dq, dk, dv
    """,
    ),
    alternative(
        "flash_attention_backward",
        "red: query blocks outer, einsum, D per block",
        """
        def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
            n_q, n_k = q.shape[-2], k.shape[-2]
            c = q.shape[-1] ** -0.5
            dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
            for i in range(0, n_q, block_q):
                qi, doi, oi = q[..., i:i + block_q, :], grad_output[..., i:i + block_q, :], output[..., i:i + block_q, :]
                di = torch.einsum("...qd,...qd->...q", doi, oi)
                rows = torch.arange(i, i + qi.shape[-2])
                for j in range(0, min(n_k, i + qi.shape[-2]) if causal else n_k, block_k):
                    kj, vj = k[..., j:j + block_k, :], v[..., j:j + block_k, :]
                    s = torch.einsum("...qd,...kd->...qk", qi, kj) * c
                    if causal:
                        s = torch.where(torch.arange(j, j + kj.shape[-2]) > rows[:, None], float("-inf"), s)
                    p = (s - lse[..., i:i + block_q].unsqueeze(-1)).exp()
                    dv[..., j:j + block_k, :] += torch.einsum("...qk,...qd->...kd", p, doi)
                    ds = p * (torch.einsum("...qd,...kd->...qk", doi, vj) - di.unsqueeze(-1))
                    dq[..., i:i + block_q, :] += c * torch.einsum("...qk,...kd->...qd", ds, kj)
                    dk[..., j:j + block_k, :] += c * torch.einsum("...qk,...qd->...kd", ds, qi)
            return dq, dk, dv
    """,
    ),
    alternative(
        "flash_attention_backward",
        "red: float64 internals, flattened batch, lists of blocks",
        """
        def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
            shape_q, shape_k, shape_v = q.shape, k.shape, v.shape
            q3, k3, v3, o3, g3 = (t.reshape(-1, t.shape[-2], t.shape[-1]).double()
                                  for t in (q, k, v, output, grad_output))
            l2 = lse.reshape(-1, lse.shape[-1]).double()
            scale = 1 / math.sqrt(shape_q[-1])
            delta = (g3 * o3).sum(-1)
            dqs = [torch.zeros_like(b) for b in q3.split(block_q, 1)]
            dks, dvs = [], []
            for j, (kj, vj) in enumerate(zip(k3.split(block_k, 1), v3.split(block_k, 1))):
                dkj, dvj = torch.zeros_like(kj), torch.zeros_like(vj)
                for i, (qi, gi) in enumerate(zip(q3.split(block_q, 1), g3.split(block_q, 1))):
                    rows = torch.arange(i * block_q, i * block_q + qi.shape[1])
                    cols = torch.arange(j * block_k, j * block_k + kj.shape[1])
                    s = torch.bmm(qi, kj.transpose(1, 2)) * scale
                    if causal:
                        s = s.masked_fill(cols[None, None] > rows[None, :, None], float("-inf"))
                    p = torch.exp(s - l2[:, i * block_q:i * block_q + qi.shape[1], None])
                    dvj = dvj + torch.bmm(p.transpose(1, 2), gi)
                    ds = p * (torch.bmm(gi, vj.transpose(1, 2)) - delta[:, i * block_q:i * block_q + qi.shape[1], None])
                    dqs[i] = dqs[i] + torch.bmm(ds, kj) * scale
                    dkj = dkj + torch.bmm(ds.transpose(1, 2), qi) * scale
                dks.append(dkj)
                dvs.append(dvj)
            back = lambda parts, shape: torch.cat(parts, 1).reshape(shape).to(q.dtype)
            return back(dqs, shape_q), back(dks, shape_k), back(dvs, shape_v)
    """,
    ),
]

RED_HELPERS = (
    RED_FOLD
    + RED_FORWARD.format(**RED_FORWARD_PARTS).replace("def flash_attention_forward", "def _fwd")
    + RED_BACKWARD.format(**RED_BACKWARD_PARTS).replace("def flash_attention_backward", "def _bwd")
)

RED_FUNCTION = """

class FlashAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal=False, block_q=64, block_k=64):
        {forward}

    @staticmethod
    def backward(ctx, grad_output):
        {backward}
"""
RED_FUNCTION_PARTS = dict(
    forward=(
        "output, lse = _fwd(q, k, v, causal, block_q, block_k)\n"
        "        ctx.save_for_backward(q, k, v, output, lse)\n"
        "        ctx.causal, ctx.block_q, ctx.block_k = causal, block_q, block_k\n"
        "        return output"
    ),
    backward=(
        "q, k, v, output, lse = ctx.saved_tensors\n"
        "        dq, dk, dv = _bwd(q, k, v, output, lse, grad_output, ctx.causal, ctx.block_q, ctx.block_k)\n"
        "        return dq, dk, dv, None, None, None"
    ),
)


def red_function_changed(label, is_bug=True, **changes):
    return (bug if is_bug else alternative)(
        "FlashAttentionFunction", label, RED_HELPERS + RED_FUNCTION.format(**{**RED_FUNCTION_PARTS, **changes})
    )


RED_TEAM += [
    red_function_changed("red: template as written is correct", is_bug=False),
    red_function_changed(
        "red: gradients of q and k swapped",
        backward=RED_FUNCTION_PARTS["backward"].replace("dq, dk, dv, None", "dk, dq, dv, None"),
    ),
    red_function_changed(
        "red: saves the N x N weights for backward",
        forward=(
            "output, lse = _fwd(q, k, v, causal, block_q, block_k)\n"
            "        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
            "        if causal:\n"
            "            s = s.masked_fill(~causal_mask(q.shape[-2]), float('-inf'))\n"
            "        ctx.save_for_backward(q, k, v, torch.softmax(s, -1))\n"
            "        return output"
        ),
        backward=(
            "q, k, v, p = ctx.saved_tensors\n"
            "        dv = p.transpose(-2, -1) @ grad_output\n"
            "        dp = grad_output @ v.transpose(-2, -1)\n"
            "        ds = p * (dp - (p * dp).sum(-1, keepdim=True)) / math.sqrt(q.shape[-1])\n"
            "        return ds @ k, ds.transpose(-2, -1) @ q, dv, None, None, None"
        ),
    ),
    red_function_changed(
        "red: saves the weights in float16 on ctx",
        forward=(
            "output, lse = _fwd(q, k, v, causal, block_q, block_k)\n"
            "        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
            "        if causal:\n"
            "            s = s.masked_fill(~causal_mask(q.shape[-2]), float('-inf'))\n"
            "        ctx.p = torch.softmax(s, -1).half()\n"
            "        ctx.save_for_backward(q, k, v)\n"
            "        return output"
        ),
        backward=(
            "q, k, v = ctx.saved_tensors\n"
            "        p = ctx.p.to(q.dtype)\n"
            "        dv = p.transpose(-2, -1) @ grad_output\n"
            "        dp = grad_output @ v.transpose(-2, -1)\n"
            "        ds = p * (dp - (p * dp).sum(-1, keepdim=True)) / math.sqrt(q.shape[-1])\n"
            "        return ds @ k, ds.transpose(-2, -1) @ q, dv, None, None, None"
        ),
    ),
    red_function_changed(
        "red: backward through autograd of F.scaled_dot_product_attention",
        forward=(
            "output, lse = _fwd(q, k, v, causal, block_q, block_k)\n"
            "        ctx.save_for_backward(q, k, v)\n"
            "        ctx.causal = causal\n"
            "        return output"
        ),
        backward=(
            "q, k, v = (t.detach().requires_grad_() for t in ctx.saved_tensors)\n"
            "        with torch.enable_grad():\n"
            "            out = F.scaled_dot_product_attention(q, k, v, is_causal=ctx.causal)\n"
            "        return (*torch.autograd.grad(out, (q, k, v), grad_output), None, None, None)"
        ),
    ),
    red_function_changed(
        "red: forward returns (output, lse)",
        forward=RED_FUNCTION_PARTS["forward"].replace("return output", "return output, lse"),
    ),
    red_function_changed(
        "red: backward with its own block sizes",
        is_bug=False,
        backward=(
            "q, k, v, output, lse = ctx.saved_tensors\n"
            "        return (*_bwd(q, k, v, output, lse, grad_output, ctx.causal, 17, 23), None, None, None)"
        ),
    ),
    red_function_changed(
        "red: saves lse of the wrong sign",
        forward=RED_FUNCTION_PARTS["forward"].replace(
            "ctx.save_for_backward(q, k, v, output, lse)", "ctx.save_for_backward(q, k, v, output, -lse)"
        ),
    ),
    red_function_changed(
        "red: recomputes output and lse in backward",
        is_bug=False,
        forward=(
            "ctx.save_for_backward(q, k, v)\n"
            "        ctx.args = (causal, block_q, block_k)\n"
            "        return _fwd(q, k, v, causal, block_q, block_k)[0]"
        ),
        backward=(
            "q, k, v = ctx.saved_tensors\n"
            "        output, lse = _fwd(q, k, v, *ctx.args)\n"
            "        return (*_bwd(q, k, v, output, lse, grad_output.contiguous(), *ctx.args), None, None, None)"
        ),
    ),
    red_function_changed(
        "red: saves detached clones and a dict of settings",
        is_bug=False,
        forward=(
            "output, lse = _fwd(q.detach(), k.detach(), v.detach(), causal, block_q, block_k)\n"
            "        ctx.save_for_backward(q, k, v, output.clone(), lse.clone())\n"
            "        ctx.settings = dict(causal=causal, block_q=block_q, block_k=block_k)\n"
            "        return output"
        ),
        backward=(
            "q, k, v, output, lse = ctx.saved_tensors\n"
            "        grads = _bwd(q, k, v, output, lse, grad_output, **ctx.settings)\n"
            "        return grads + (None,) * 3"
        ),
    ),
    red_function_changed(
        "red: marks the non-tensor inputs and returns per-input needs",
        is_bug=False,
        backward=(
            "q, k, v, output, lse = ctx.saved_tensors\n"
            "        dq, dk, dv = _bwd(q, k, v, output, lse, grad_output, ctx.causal, ctx.block_q, ctx.block_k)\n"
            "        need = ctx.needs_input_grad\n"
            "        return (dq if need[0] else None, dk if need[1] else None, dv if need[2] else None, None, None, None)"
        ),
    ),
]

# The Triton answers: the chapter's kernel and wrapper with one change each (asserted to apply).
_SOLUTION_SOURCE = (Path(__file__).resolve().parents[2] / "solutions" / "flash_attention.py").read_text()
RED_KERNEL = _SOLUTION_SOURCE[_SOLUTION_SOURCE.index("@triton.jit") : _SOLUTION_SOURCE.index("# fmt: on")]


def red_kernel_changed(label, *changes, is_bug=True):
    source = RED_KERNEL
    for old, new in changes:
        assert source.count(old) >= 1, old
        source = source.replace(old, new)
    return (bug if is_bug else alternative)("flash_attention_triton", label, source)


RED_TEAM += [
    red_kernel_changed(
        "red: keys past n_k not masked", ("visible = offs_n[None, :] < n_k", "visible = offs_n[None, :] >= 0")
    ),
    red_kernel_changed(
        "red: no column mask on d (reads the next row)",
        (
            "mask=(offs_m[:, None] < n_q) & (offs_d[None, :] < d), other=0.0)",
            "mask=(offs_m[:, None] < n_q) & (offs_d[None, :] < BLOCK_D), other=0.0)",
        ),
        (
            "mask=(offs_n[:, None] < n_k) & (offs_d[None, :] < d), other=0.0)",
            "mask=(offs_n[:, None] < n_k) & (offs_d[None, :] < BLOCK_D), other=0.0)",
        ),
    ),
    red_kernel_changed(
        "red: causal mask drops the diagonal",
        ("offs_n[None, :] <= offs_m[:, None]", "offs_n[None, :] < offs_m[:, None]"),
    ),
    red_kernel_changed(
        "red: row_sum not rescaled", ("row_sum = row_sum * rescale + tl.sum(p, 1)", "row_sum = row_sum + tl.sum(p, 1)")
    ),
    red_kernel_changed(
        "red: k read with q's strides",
        ("k_ptr + b * stride_kb + offs_n[:, None] * stride_kn", "k_ptr + b * stride_qb + offs_n[:, None] * stride_qn"),
    ),
    red_kernel_changed(
        "red: grid drops the last partial query block",
        ("grid = (triton.cdiv(n_q, block), q3.shape[0])", "grid = (n_q // block, q3.shape[0])"),
        ("out = torch.empty(", "out = torch.zeros("),
    ),
    red_kernel_changed(
        "red: every slice reads slice 0 of k and v",
        ("k_ptr + b * stride_kb", "k_ptr"),
        ("v_ptr + b * stride_vb", "v_ptr"),
    ),
    red_kernel_changed(
        "red: 128-wide key tiles, acc not rescaled",
        ("acc = acc * rescale[:, None] + tl.dot(", "acc = acc + tl.dot("),
        ("CAUSAL=causal, BLOCK_M=block, BLOCK_N=block,", "CAUSAL=causal, BLOCK_M=block, BLOCK_N=128,"),
    ),
    red_kernel_changed(
        "red: key tiles as wide as the keys (up to 1024), row_sum not rescaled",
        ("row_sum = row_sum * rescale + tl.sum(p, 1)", "row_sum = row_sum + tl.sum(p, 1)"),
        (
            "CAUSAL=causal, BLOCK_M=block, BLOCK_N=block,",
            "CAUSAL=causal, BLOCK_M=block, BLOCK_N=min(1024, max(16, triton.next_power_of_2(n_k))),",
        ),
    ),
    red_kernel_changed(
        "red: 256-wide key tiles, nothing rescaled",
        ("row_sum = row_sum * rescale + tl.sum(p, 1)", "row_sum = row_sum + tl.sum(p, 1)"),
        ("acc = acc * rescale[:, None] + tl.dot(", "acc = acc + tl.dot("),
        ("CAUSAL=causal, BLOCK_M=block, BLOCK_N=block,", "CAUSAL=causal, BLOCK_M=block, BLOCK_N=256,"),
    ),
    red_kernel_changed(
        "red: 128 x 256 tiles",
        is_bug=False,
        *[
            ("CAUSAL=causal, BLOCK_M=block, BLOCK_N=block,", "CAUSAL=causal, BLOCK_M=block, BLOCK_N=256,"),
            ("    block = 64\n", "    block = 128\n"),
        ],
    ),
    red_kernel_changed(
        "red: blocks 32 x 16, exp2, finite mask value",
        is_bug=False,
        *[
            ('float("-inf"))\n        new_max', "-1.0e30)\n        new_max"),
            ("rescale = tl.exp(row_max - new_max)", "rescale = tl.exp2((row_max - new_max) * 1.4426950408889634)"),
            ("p = tl.exp(scores - new_max[:, None])", "p = tl.exp2((scores - new_max[:, None]) * 1.4426950408889634)"),
            ("CAUSAL=causal, BLOCK_M=block, BLOCK_N=block,", "CAUSAL=causal, BLOCK_M=block, BLOCK_N=16,"),
            ("    block = 64\n", "    block = 32\n"),
        ],
    ),
    red_kernel_changed(
        "red: q pre-scaled on load, output normalised in the wrapper's dtype",
        is_bug=False,
        *[
            (
                "mask=(offs_m[:, None] < n_q) & (offs_d[None, :] < d), other=0.0)",
                "mask=(offs_m[:, None] < n_q) & (offs_d[None, :] < d), other=0.0) * scale",
            ),
            (
                'scores = tl.dot(q, tl.trans(k), input_precision="ieee") * scale',
                'scores = tl.dot(q, tl.trans(k), input_precision="ieee")',
            ),
            (
                "q3, k3, v3 = (t.to(device).reshape(-1, t.shape[-2], t.shape[-1]).contiguous() for t in (q, k, v))",
                "q3, k3, v3 = (t.to(device).flatten(0, -3).contiguous() if t.dim() > 2 else t.to(device)[None].contiguous()\n"
                "                  for t in (q, k, v))",
            ),
        ],
    ),
]


# What each red-team bug must lose, and a fragment of its diagnosis: (name, label) -> (fails, says).
RED_TEAM_VERDICTS = {
    ("online_softmax_update", "block-local max without -inf guard (nan on a row masked in a later block)"): (
        ("folding_masked_blocks_gives_attention",),
        "NaN or infinite",
    ),
    ("online_softmax_update", "row_sum adds the block's column sums (square blocks only)"): (
        ("first_block_from_empty_state", "rescales_when_max_grows", "float64_state_stays_float64"),
        "raised",
    ),
    ("online_softmax_update", "max over the query axis"): (("first_block_from_empty_state",), "raised"),
    ("online_softmax_update", "transposed weights times values (square blocks only)"): (
        ("first_block_from_empty_state",),
        "raised",
    ),
    ("online_softmax_update", "one max for all rows"): (("first_block_from_empty_state",), "differs"),
    ("online_softmax_update", "2-D only (dim=1)"): (("rescales_when_max_grows",), "raised"),
    ("online_softmax_update", "float32 internals for float64 inputs"): (
        ("float64_state_stays_float64",),
        "the inputs are float64",
    ),
    ("online_softmax_update", "normalised accumulator"): (("first_block_from_empty_state",), "acc is normalized"),
    ("online_softmax_update", "torch.softmax of the block folded in with block weights"): (
        ("rescales_when_max_grows",),
        "",
    ),
    ("flash_attention_forward", "scale 1/d"): (("matches_attention",), ""),
    ("flash_attention_forward", "scale by sqrt(d_v)"): (("matches_attention",), ""),
    ("flash_attention_forward", "no scale"): (("matches_attention",), "not divided by sqrt(d)"),
    ("flash_attention_forward", "last partial query block skipped"): (("blocks_that_do_not_divide_n",), ""),
    ("flash_attention_forward", "last partial key block skipped"): (
        ("blocks_that_do_not_divide_n",),
        "keys after the last full block",
    ),
    ("flash_attention_forward", "causal mask with tile-local indices"): (("causal_attention",), "which key blocks"),
    ("flash_attention_forward", "causal mask drops the diagonal"): (("causal_attention",), "NaN for query 0"),
    ("flash_attention_forward", "causal skips the diagonal block when not aligned"): (("causal_attention",), ""),
    ("flash_attention_forward", "causal loop bound by the block start (block_q != block_k misses keys)"): (
        ("causal_attention",),
        "",
    ),
    ("flash_attention_forward", "lse without log"): (("matches_attention",), ""),
    ("flash_attention_forward", "lse of the max only"): (("matches_attention",), "log(row_sum) is missing"),
    ("flash_attention_forward", "lse without the max"): (("matches_attention",), "the running maximum is missing"),
    ("flash_attention_forward", "full score matrix built row by row in float16 into a list"): (
        ("never_materializes_scores",),
        "MiB of memory beyond what it held",
    ),
    ("flash_attention_forward", "whole-row softmax per query, kept in a list"): (
        ("never_materializes_scores",),
        "MiB of memory beyond what it held",
    ),
    ("flash_attention_forward", "F.scaled_dot_product_attention plus a tiled lse"): (
        ("never_materializes_scores",),
        "",
    ),
    ("flash_attention_forward", "PyTorch's fused CPU flash kernel"): (("returns_output_and_lse",), "raised"),
    ("flash_attention_forward", "float32 state for float64 inputs"): (
        ("float64_inputs_give_float64",),
        "float32 precision",
    ),
    ("flash_attention_backward", "tile softmax instead of exp(s - lse)"): (("recomputes_from_saved_lse",), ""),
    ("flash_attention_backward", "D from the tile's own p and dp"): (("matches_autograd",), ""),
    ("flash_attention_backward", "dq without the 1/sqrt(d)"): (("matches_autograd",), "sqrt(d) times too large"),
    ("flash_attention_backward", "dk without the 1/sqrt(d)"): (("matches_autograd",), "sqrt(d) times too large"),
    ("flash_attention_backward", "causal mask not applied"): (("causal_gradients",), ""),
    ("flash_attention_backward", "last partial key block skipped"): (("blocks_that_do_not_divide_n",), ""),
    ("flash_attention_backward", "last partial query block skipped"): (("blocks_that_do_not_divide_n",), ""),
    ("flash_attention_backward", "D summed over the wrong axis"): (("returns_three_gradients",), "raised"),
    ("flash_attention_backward", "lse recomputed from the full rows, argument ignored"): (
        ("recomputes_from_saved_lse", "never_materializes_scores"),
        "not recomputed from the lse argument",
    ),
    ("flash_attention_backward", "lse scaled by 1/sqrt(d) again"): (("recomputes_from_saved_lse",), ""),
    ("flash_attention_backward", "D from the key rows (square only)"): (("matches_autograd",), ""),
    ("flash_attention_backward", "float32 tiles for float64 inputs"): (
        ("float64_inputs_give_float64",),
        "float32 precision",
    ),
    ("flash_attention_backward", "backward by autograd through chapter 2 attention"): (
        ("recomputes_from_saved_lse", "never_materializes_scores"),
        "MiB of memory beyond what it held",
    ),
    ("flash_attention_backward", "backward by autograd through a tiled forward with lse ignored"): (
        ("recomputes_from_saved_lse", "never_materializes_scores"),
        "MiB of memory beyond what it held",
    ),
    ("flash_attention_backward", "first pass keeps every recomputed tile of p in a dict"): (
        ("never_materializes_scores",),
        "MiB of memory beyond what it held",
    ),
    ("flash_attention_backward", "full P recomputed from lse in one go"): (
        ("never_materializes_scores",),
        "MiB of memory beyond what it held",
    ),
    ("FlashAttentionFunction", "gradients of q and k swapped"): (("gradients_match_autograd",), ""),
    ("FlashAttentionFunction", "saves the N x N weights for backward"): (
        ("never_materializes_scores",),
        "MiB of memory beyond what it held",
    ),
    ("FlashAttentionFunction", "saves the weights in float16 on ctx"): (
        ("never_materializes_scores",),
        "MiB of memory beyond what it held",
    ),
    ("FlashAttentionFunction", "backward through autograd of F.scaled_dot_product_attention"): (
        ("never_materializes_scores",),
        "",
    ),
    ("FlashAttentionFunction", "forward returns (output, lse)"): (
        ("forward_returns_attention",),
        "output tensor only",
    ),
    ("FlashAttentionFunction", "saves lse of the wrong sign"): (("gradients_match_autograd",), ""),
    ("flash_attention_triton", "causal mask drops the diagonal"): (("causal_attention",), "NaN for query 0"),
    ("flash_attention_triton", "keys past n_k not masked"): (("sizes_not_powers_of_two",), ""),
    ("flash_attention_triton", "no column mask on d (reads the next row)"): (("sizes_not_powers_of_two",), ""),
    ("flash_attention_triton", "row_sum not rescaled"): (("matches_attention",), "row_sum is not"),
    ("flash_attention_triton", "128-wide key tiles, acc not rescaled"): (("matches_attention",), "acc is not"),
    ("flash_attention_triton", "key tiles as wide as the keys (up to 1024), row_sum not rescaled"): (
        ("matches_attention",),
        "row_sum is not",
    ),
    ("flash_attention_triton", "256-wide key tiles, nothing rescaled"): (("matches_attention",), "are not rescaled"),
    ("flash_attention_triton", "k read with q's strides"): (("batch_and_head_dims",), ""),
    ("flash_attention_triton", "grid drops the last partial query block"): (("sizes_not_powers_of_two",), ""),
    ("flash_attention_triton", "every slice reads slice 0 of k and v"): (("batch_and_head_dims",), ""),
}
RED_TEAM = [
    dataclasses.replace(entry, label=entry.label.removeprefix("red: "))
    if not entry.bug
    else dataclasses.replace(
        entry,
        label=entry.label.removeprefix("red: "),
        fails=RED_TEAM_VERDICTS[entry.name, entry.label.removeprefix("red: ")][0],
        says=RED_TEAM_VERDICTS[entry.name, entry.label.removeprefix("red: ")][1],
    )
    for entry in RED_TEAM
]

# Points without the work, outside PyTorch: full attention in NumPy or Python lists leaves the tensors
# the recorders measure small; the values are right, the memory rule is what they dodge.
NUMPY_ATTENTION = """
import numpy as np
import torch


def _attention(q, k, v, causal):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], dtype=bool)), s, -np.inf)
    m = s.max(-1, keepdims=True)
    p = np.exp(s - m)
    z = p.sum(-1, keepdims=True)
    return p / z, (m + np.log(z))[..., 0]
"""

PYTHON_ATTENTION = """
import math
import torch


def _attention(qs, ks, vs, causal, q, v):
    \"\"\"Attention on nested lists (slice, row, column), returned as tensors shaped like q's.\"\"\"
    outputs, lses = [], []
    for qb, kb, vb in zip(qs, ks, vs):
        out_rows, lse_row = [], []
        for i, qi in enumerate(qb):
            s = [sum(a * b for a, b in zip(qi, kj)) / math.sqrt(len(qi)) for kj in kb]
            s = [x if not causal or j <= i else -math.inf for j, x in enumerate(s)]
            m = max(s)
            e = [math.exp(x - m) for x in s]
            z = sum(e)
            out_rows.append([sum(w * vj[c] for w, vj in zip(e, vb)) / z for c in range(len(vb[0]))])
            lse_row.append(m + math.log(z))
        outputs.append(out_rows)
        lses.append(lse_row)
    output = torch.tensor(outputs, dtype=q.dtype).reshape(*q.shape[:-1], v.shape[-1])
    return output, torch.tensor(lses, dtype=q.dtype).reshape(q.shape[:-1])
"""

ESCAPES = [
    alternative(
        "flash_attention_forward",
        "block starts from arange().tolist(), masked tiles skipped with .item()",
        """
        import math
        import torch

        def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
            n_q, n_k = q.shape[-2], k.shape[-2]
            scale = 1 / math.sqrt(q.shape[-1])
            outputs, lses = [], []
            for q0 in torch.arange(0, n_q, block_q).tolist():
                q1 = min(q0 + block_q, n_q)
                qb = q[..., q0:q1, :]
                m = torch.full(qb.shape[:-1], -math.inf, dtype=q.dtype)
                l = torch.zeros(qb.shape[:-1], dtype=q.dtype)
                acc = torch.zeros(*qb.shape[:-1], v.shape[-1], dtype=q.dtype)
                for k0 in torch.arange(0, n_k, block_k).tolist():
                    k1 = min(k0 + block_k, n_k)
                    s = qb @ k[..., k0:k1, :].transpose(-2, -1) * scale
                    if causal:
                        s = s.masked_fill(torch.arange(k0, k1)[None, :] > torch.arange(q0, q1)[:, None], -math.inf)
                        if s.max().item() == -math.inf:
                            continue  # every key of this tile is in every query's future
                    m_new = torch.maximum(m, s.amax(-1))
                    p = torch.exp(s - m_new[..., None])
                    alpha = torch.exp(m - m_new)
                    l = l * alpha + p.sum(-1)
                    acc = acc * alpha[..., None] + p @ v[..., k0:k1, :]
                    m = m_new
                outputs.append(acc / l[..., None])
                lses.append(m + torch.log(l))
            return torch.cat(outputs, -2), torch.cat(lses, -1)
    """,
    ),
    bug(
        "flash_attention_forward",
        "points without the work: full attention in NumPy (.numpy())",
        NUMPY_ATTENTION
        + """

def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    qn, kn, vn = (t.detach().numpy().astype(np.float64) for t in (q, k, v))
    p, lse = _attention(qn, kn, vn, causal)
    return torch.from_numpy(p @ vn).to(q.dtype), torch.from_numpy(lse).to(q.dtype)
""",
        fails=("never_materializes_scores",),
        says="MiB of memory beyond what it held",
    ),
    bug(
        "flash_attention_forward",
        "points without the work: full attention in NumPy (np.asarray), back with torch.tensor",
        NUMPY_ATTENTION
        + """

def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    qn, kn, vn = (np.asarray(t, dtype=np.float64) for t in (q, k, v))
    p, lse = _attention(qn, kn, vn, causal)
    return torch.tensor(p @ vn, dtype=q.dtype), torch.tensor(lse, dtype=q.dtype)
""",
        fails=("never_materializes_scores",),
        says="MiB of memory beyond what it held",
    ),
    bug(
        "flash_attention_forward",
        "points without the work: scores as Python lists (.tolist())",
        PYTHON_ATTENTION
        + """

def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    return _attention(*(t.reshape(-1, t.shape[-2], t.shape[-1]).tolist() for t in (q, k, v)), causal, q, v)
""",
        fails=("never_materializes_scores",),
        says="score by score in Python",
    ),
    bug(
        "flash_attention_forward",
        "points without the work: inputs read out with .item(), scores in Python",
        PYTHON_ATTENTION
        + """

def _values(t):
    return [[[x.item() for x in row] for row in s] for s in t.reshape(-1, t.shape[-2], t.shape[-1])]


def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    return _attention(_values(q), _values(k), _values(v), causal, q, v)
""",
        fails=("never_materializes_scores",),
        says="score by score in Python",
    ),
    bug(
        "flash_attention_forward",
        "points without the work: inputs scaled to integers, .tolist(), scores in Python",
        PYTHON_ATTENTION
        + """

def _values(t):
    scaled = (t.reshape(-1, t.shape[-2], t.shape[-1]) * 1e6).round().long()  # integers leave freely?
    return [[[x / 1e6 for x in row] for row in s] for s in scaled.tolist()]


def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    return _attention(_values(q), _values(k), _values(v), causal, q, v)
""",
        fails=("never_materializes_scores",),
        says="score by score in Python",
    ),
    bug(
        "flash_attention_backward",
        "points without the work: gradients in NumPy from lse",
        """
        import numpy as np
        import torch

        def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
            qn, kn, vn, o, l, do = (t.detach().numpy().astype(np.float64) for t in (q, k, v, output, lse, grad_output))
            scale = 1 / np.sqrt(qn.shape[-1])
            s = qn @ np.swapaxes(kn, -1, -2) * scale
            if causal:
                s = np.where(np.tril(np.ones(s.shape[-2:], dtype=bool)), s, -np.inf)
            p = np.exp(s - l[..., None])
            dv = np.swapaxes(p, -1, -2) @ do
            dp = do @ np.swapaxes(vn, -1, -2)
            ds = p * (dp - (do * o).sum(-1, keepdims=True))
            dq, dk = ds @ kn * scale, np.swapaxes(ds, -1, -2) @ qn * scale
            return tuple(torch.from_numpy(g).to(q.dtype) for g in (dq, dk, dv))
    """,
        fails=("never_materializes_scores",),
        says="MiB of memory beyond what it held",
    ),
    bug(
        "flash_attention_forward",
        "points without the work: NumPy behind torch._C.DisableTorchFunction",
        NUMPY_ATTENTION
        + """

def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    with torch._C.DisableTorchFunction():  # the grader's function mode sees nothing in here
        qn, kn, vn = (t.detach().numpy().astype(np.float64) for t in (q, k, v))
    p, lse = _attention(qn, kn, vn, causal)
    return torch.from_numpy(p @ vn).to(q.dtype), torch.from_numpy(lse).to(q.dtype)
""",
        fails=("never_materializes_scores",),
        says="MiB of memory beyond what it held",
    ),
    bug(
        "flash_attention_backward",
        "points without the work: autograd with the dispatch modes turned off",
        """
        import torch
        import torch.nn.functional as F
        from torch.utils import _python_dispatch

        def flash_attention_backward(q, k, v, output, lse, grad_output, causal=False, block_q=64, block_k=64):
            with _python_dispatch._disable_current_modes(), torch.enable_grad():
                q, k, v = (t.detach().requires_grad_(True) for t in (q, k, v))
                s = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5
                if causal:
                    s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
                out = torch.softmax(s, -1) @ v
                return torch.autograd.grad(out, (q, k, v), grad_output)
    """,
        fails=("never_materializes_scores",),
        says="MiB of memory beyond what it held",
    ),
    bug(
        "flash_attention_forward",
        "points without the work: full attention in a thread (modes stay behind)",
        """
        import math
        import threading

        import torch

        def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
            result = {}

            def full():
                s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
                if causal:
                    s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), -math.inf)
                result["out"] = torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)

            worker = threading.Thread(target=full)
            worker.start()
            worker.join()
            return result["out"]
    """,
        fails=("never_materializes_scores",),
        says="MiB of memory beyond what it held",
    ),
    bug(
        "flash_attention_forward",
        "points without the work: the N x N scores written into a buffer made at the top of the notebook",
        """
        import math

        import torch

        _SCORES = torch.zeros(4096 * 4096)  # resident before any call: filling it never grows the process

        def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
            n_q, n_k = q.shape[-2], k.shape[-2]
            if q.dim() != 2 or n_q * n_k > _SCORES.numel():
                s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
                if causal:
                    s = s.masked_fill(torch.ones(n_q, n_k, dtype=torch.bool).triu(1), -math.inf)
                return torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)
            s = _SCORES[: n_q * n_k].view(n_q, n_k)
            torch.matmul(q, k.T, out=s)
            s.mul_(1 / math.sqrt(q.shape[-1]))
            if causal:
                s.masked_fill_(torch.ones(n_q, n_k, dtype=torch.bool).triu_(1), -math.inf)
            top = s.amax(-1)
            total = s.sub_(top[:, None]).exp_().sum(-1)
            return s.div_(total[:, None]) @ v, top + total.log()
    """,
        fails=("never_materializes_scores",),
        says="A buffer made beforehand",
    ),
    advised(
        "flash_attention_triton",
        "points without the work: the wrapper computes attention in NumPy, no kernel",
        NUMPY_ATTENTION
        + """

def flash_attention_triton(q, k, v, causal=False):
    qn, kn, vn = (np.asarray(t, dtype=np.float64) for t in (q, k, v))
    return torch.from_numpy(_attention(qn, kn, vn, causal)[0] @ vn).to(q.dtype)
""",
        advice=("launches_a_triton_kernel",),
        says="launched no Triton kernel",
    ),
    advised(
        "flash_attention_triton",
        "points without the work: a token kernel launched, attention computed in NumPy",
        NUMPY_ATTENTION
        + """
import triton
import triton.language as tl


@triton.jit
def _touch(o_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(o_ptr + offs, tl.zeros([BLOCK], tl.float32), mask=offs < n)


def flash_attention_triton(q, k, v, causal=False):
    scratch = torch.empty(16)
    _touch[(1,)](scratch, 16, BLOCK=16)  # a kernel ran; it computed nothing
    qn, kn, vn = (np.asarray(t, dtype=np.float64) for t in (q, k, v))
    return torch.from_numpy(_attention(qn, kn, vn, causal)[0] @ vn).to(q.dtype)
""",
        advice=(),
    ),
    bug(
        "FlashAttentionFunction",
        "points without the work: forward and backward in NumPy",
        NUMPY_ATTENTION
        + """

class FlashAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal=False, block_q=64, block_k=64):
        qn, kn, vn = (t.detach().numpy().astype(np.float64) for t in (q, k, v))
        p, lse = _attention(qn, kn, vn, causal)
        output = torch.from_numpy(p @ vn).to(q.dtype)
        ctx.save_for_backward(q, k, v)
        ctx.causal = causal
        return output

    @staticmethod
    def backward(ctx, grad_output):
        q, k, v = ctx.saved_tensors
        qn, kn, vn = (t.detach().numpy().astype(np.float64) for t in (q, k, v))
        do = grad_output.detach().numpy().astype(np.float64)
        p, _ = _attention(qn, kn, vn, ctx.causal)
        o = p @ vn
        scale = 1 / np.sqrt(qn.shape[-1])
        dv = np.swapaxes(p, -1, -2) @ do
        ds = p * (do @ np.swapaxes(vn, -1, -2) - (do * o).sum(-1, keepdims=True))
        dq, dk = ds @ kn * scale, np.swapaxes(ds, -1, -2) @ qn * scale
        grads = tuple(torch.from_numpy(g).to(q.dtype) for g in (dq, dk, dv))
        return (*grads, None, None, None)
""",
        fails=("never_materializes_scores",),
        says="MiB of memory beyond what it held",
    ),
    bug(
        "flash_attention_forward",
        "points without the work: full attention compiled under torch's own file name",
        r"""
        import torch

        # Code compiled under a file name of torch's looked like torch's own code to the old recorders.
        _SOURCE = "def _full(q, k, v, causal):\n    s = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5\n    if causal:\n        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float('-inf'))\n    return torch.softmax(s, -1) @ v, s.logsumexp(-1)\n"
        exec(compile(_SOURCE, torch.__file__, "exec"), globals())

        def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
            return _full(q, k, v, causal)
    """,
        fails=("never_materializes_scores",),
        says="MiB of memory beyond what it held",
    ),
    bug(
        "FlashAttentionFunction",
        "points without the work: the weights saved for backward behind torch._C.DisableTorchFunction",
        """
        import torch

        class FlashAttentionFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, q, k, v, causal=False, block_q=64, block_k=64):
                with torch._C.DisableTorchFunction():
                    s = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
                    if causal:
                        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
                    p = torch.softmax(s, -1)
                ctx.save_for_backward(q, k, v, p)
                ctx.causal = causal
                return p @ v

            @staticmethod
            def backward(ctx, grad_output):
                q, k, v, p = ctx.saved_tensors
                with torch._C.DisableTorchFunction():
                    dv = p.transpose(-2, -1) @ grad_output
                    dp = grad_output @ v.transpose(-2, -1)
                    ds = p * (dp - (dp * p).sum(-1, keepdim=True))
                    scale = q.shape[-1] ** -0.5
                    return ds @ k * scale, ds.transpose(-2, -1) @ q * scale, dv, None, None, None
    """,
        fails=("never_materializes_scores",),
        says="MiB of memory beyond what it held",
    ),
]

ENTRIES = ONLINE + FORWARD_ENTRIES + BACKWARD_ENTRIES + FUNCTION_ENTRIES + TRITON_ENTRIES + RED_TEAM + ESCAPES
