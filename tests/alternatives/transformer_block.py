"""Correct chapter-5 answers written differently from the reference: layer norm in float64
with rsqrt and torch.var, a feed-forward network of nn.Sequential-free einsums, a block
whose two orders share one sublayer helper, its own einsum multi-head attention (this
module must not import the chapter-3 reference), and a parameter count that adds up the
shapes of every tensor rather than a closed formula."""

import math

import torch
import torch.nn.functional as F
from torch import nn


def layer_norm(x, weight, bias, eps=1e-5):
    x64 = x.double()
    centered = x64 - x64.mean(-1, keepdim=True)
    scale = torch.rsqrt(torch.var(x64, dim=-1, keepdim=True, unbiased=False) + eps)
    return (centered * scale * weight.double() + bias.double()).to(x.dtype)


class MultiHeadAttention(nn.Module):
    """Chapter 3's contract: w_q, w_k, w_v, w_o; mask True where a query may attend."""

    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.h = num_heads
        for name in ("w_q", "w_k", "w_v", "w_o"):
            setattr(self, name, nn.Linear(d_model, d_model, bias=bias))

    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        b, n_q, d = query.shape
        q, k, v = (
            w(t).view(b, -1, self.h, d // self.h) for w, t in ((self.w_q, query), (self.w_k, key), (self.w_v, value))
        )
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // self.h)
        if mask is not None:
            scores = torch.where(mask, scores, torch.tensor(-math.inf))
        weights = scores.softmax(-1)
        heads = torch.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n_q, d)
        return self.w_o(heads), weights


class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        hidden = torch.einsum("...i,oi->...o", x, self.linear1.weight) + self.linear1.bias
        hidden = self.drop(self.act(hidden))
        return torch.einsum("...i,oi->...o", hidden, self.linear2.weight) + self.linear2.bias


class TransformerBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first, dropout=0.0, activation="relu"):
        super().__init__()
        self.pre = norm_first
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = FeedForward(d_model, d_ff, activation, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.p = dropout

    def _sublayer(self, x, norm, fn):
        if self.pre:
            return x + F.dropout(fn(norm(x)), self.p, self.training)
        return norm(x + F.dropout(fn(x), self.p, self.training))

    def forward(self, x, mask=None):
        x = self._sublayer(x, self.norm1, lambda h: self.attn(h, h, h, mask)[0])
        return self._sublayer(x, self.norm2, self.ffn)


def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
    d_ff = d_ff or 4 * d_model
    linear = lambda n_in, n_out: n_in * n_out + (n_out if biases else 0)  # noqa: E731
    layer_norm_size = d_model * (2 if biases else 1)
    per_layer = 4 * linear(d_model, d_model) + linear(d_model, d_ff) + linear(d_ff, d_model) + 2 * layer_norm_size
    shapes = [vocab_size * d_model, n_ctx * d_model, n_layers * per_layer, layer_norm_size]
    if not tied_embeddings:
        shapes.append(d_model * vocab_size)
    return sum(shapes)
