"""Chapter 3: multi-head attention.

Shapes: ``B`` batch, ``N_q`` queries and ``N_k`` keys/values (``N`` when they are the same
sequence), model width ``D = d_model``, ``H`` heads of width ``d_head = D / H``. Head ``h``
owns the contiguous block of features ``h*d_head .. (h+1)*d_head`` (the layout of
``torch.nn.MultiheadAttention``). Masks are boolean, True where a query MAY attend, as in
chapter 2.
"""

import torch
from torch import nn

from solutions.attention import scaled_dot_product_attention


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, D) -> (B, H, N, D/H): head h gets features h*D/H .. (h+1)*D/H of every token;
    ``x`` is left unchanged."""
    batch, n, d_model = x.shape
    return x.reshape(batch, n, num_heads, d_model // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, N, d_head) -> (B, N, H*d_head): the inverse of :func:`split_heads`, i.e. the
    heads' outputs concatenated along the features, head 0 first; ``x`` is left unchanged."""
    batch, heads, n, d_head = x.shape
    return x.transpose(1, 2).reshape(batch, n, heads * d_head)


class MultiHeadAttention(nn.Module):
    """H scaled dot-product attentions in parallel, each in its own d_head-wide subspace.

    ``w_q``, ``w_k``, ``w_v`` project the inputs (each ``nn.Linear(D, D)``, i.e. all heads'
    projections side by side), ``w_o`` mixes the concatenated heads. Parameters:
    4 D^2 (+ 4 D biases), whatever H is.

    (Methods call ``nn.Module.__init__`` and module-level helpers only, never zero-argument
    ``super()`` or other methods, so a notebook class can delegate to them.) Graded on its
    values; built from split_heads, merge_heads and chapter 2's attention, not
    ``nn.MultiheadAttention``, is advice (0 points).
    """

    def __init__(self, d_model: int, num_heads: int, bias: bool = True):
        nn.Module.__init__(self)
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ):
        """query (B, N_q, D); key (B, N_k, D), default ``query`` (self-attention); value
        (B, N_k, D), default ``key``. mask: bool, True where a query may attend, broadcastable
        to (B, H, N_q, N_k): (N_q, N_k) for all examples and heads (a causal mask),
        (B, 1, 1, N_k) for padding, (B, 1, N_q, N_k) per example. Returns ``(output, weights)``:
        output (B, N_q, D) and the weights of every head, (B, H, N_q, N_k). The inputs (which may
        be non-contiguous views, any B, N >= 1) are left unchanged, and so are the module's
        parameters and buffers: nothing is kept between calls. The output is differentiable with
        respect to query, key and value; after ``.double()``, float64 in gives float64 output and
        weights.
        """
        key = query if key is None else key
        value = key if value is None else value
        q = split_heads(self.w_q(query), self.num_heads)
        k = split_heads(self.w_k(key), self.num_heads)
        v = split_heads(self.w_v(value), self.num_heads)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, H, N_q, d_head), (B, H, N_q, N_k)
        return self.w_o(merge_heads(heads)), weights
