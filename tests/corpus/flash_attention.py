"""Chapter 7 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``).

Each cell replaces one answer cell of the released notebook, where the other answer cells are
still stubs: an answer that needs a tiled forward or backward (``FlashAttentionFunction``)
defines its own. Many bugs are one change to a correct answer: :func:`changed` makes them.
"""

import textwrap

from corpus import alternative, bug


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
        says="the full N_q x N_k",
    ),
    bug(
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
        fails=("never_materializes_scores",),
        says="matrix of scores, weights or mask",
    ),
    bug(
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
        fails=("never_materializes_scores",),
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
        says="the full N_q x N_k",
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
    bug(
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
        fails=("never_materializes_scores",),
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
        says="keeps",
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
        says="the full N_q x N_k",
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
    bug(
        "flash_attention_triton",
        "points without the work: the wrapper calls torch's attention",
        textwrap.dedent(TRITON)
        + "\n\nimport torch.nn.functional as F\n\n\ndef flash_attention_triton(q, k, v, causal=False):\n"
        "    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)\n",
        fails=("matches_attention", "causal_attention"),
        says="with PyTorch operations",
    ),
    bug(
        "flash_attention_triton",
        "points without the work: a tiled PyTorch loop instead of the kernel",
        textwrap.dedent(changed(FORWARD, "def flash_attention_forward(", "def _tiled("))
        + "\n\ndef flash_attention_triton(q, k, v, causal=False):\n    return _tiled(q, k, v, causal, 32, 32)[0]\n",
        fails=("matches_attention",),
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

ENTRIES = ONLINE + FORWARD_ENTRIES + BACKWARD_ENTRIES + FUNCTION_ENTRIES + TRITON_ENTRIES
