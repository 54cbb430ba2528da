"""Correct chapter-6 answers written differently from ``solutions.pretraining``: ``narrow``
for the shift; Bernoulli draws and a two-stage 80 / (10 / 10) split with ``multinomial`` for
the random tokens; a float64 log-sum-exp loss; and models with the contract's submodule names
but none of the given code: their own Pre-LN blocks (einsum attention, an additive float causal
mask, ``F.dropout``), the sinusoidal table computed with ``stack``/``flatten`` and kept in a
persistent buffer, and one class for both models.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def shift_for_next_token(tokens):
    length = tokens.shape[-1] - 1
    return tokens.narrow(-1, 0, length), tokens.narrow(-1, 1, length)


def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
    special = torch.zeros_like(tokens, dtype=torch.bool)
    for token_id in special_token_ids:
        special |= tokens == token_id
    probability = torch.full(tokens.shape, float(mask_prob))
    selected = torch.bernoulli(probability, generator=generator).bool() & ~special
    labels = tokens.masked_fill(~selected, -100)

    replaced = torch.bernoulli(torch.full(tokens.shape, 0.8), generator=generator).bool() & selected
    randomized = torch.bernoulli(torch.full(tokens.shape, 0.5), generator=generator).bool() & selected & ~replaced
    weights = torch.ones(vocab_size)
    weights[list(special_token_ids)] = 0.0
    count = int(randomized.sum())
    draws = torch.multinomial(weights, max(count, 1), replacement=True, generator=generator)[:count]

    inputs = tokens.clone()
    inputs[replaced] = mask_token_id
    inputs[randomized] = draws.to(tokens.dtype)
    return inputs, labels


def language_model_loss(logits, labels, ignore_index=-100):
    scores = logits.double().flatten(0, -2)
    labels = labels.flatten()
    keep = (labels != ignore_index).double()
    picked = scores.gather(1, labels.clamp(0, scores.shape[1] - 1).unsqueeze(1)).squeeze(1)
    per_position = torch.logsumexp(scores, dim=1) - picked
    return ((per_position * keep).sum() / keep.sum()).to(logits.dtype)


def _sinusoids(length, width):
    position = torch.arange(length, dtype=torch.float64)[:, None]
    angle = position * torch.exp(torch.arange(0, width, 2, dtype=torch.float64) * (-math.log(10000.0) / width))
    return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(-2).float()  # sin, cos interleaved


class _Attention(nn.Module):
    def __init__(self, d_model, num_heads):
        super().__init__()
        self.heads = num_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, x, additive_mask):
        b, n, d = x.shape
        q, k, v = (w(x).unflatten(-1, (self.heads, d // self.heads)) for w in (self.w_q, self.w_k, self.w_v))
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // self.heads) + additive_mask
        return self.w_o(torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).flatten(-2))


class _FeedForward(nn.Module):
    def __init__(self, d_model, d_ff, dropout):
        super().__init__()
        self.linear1, self.linear2, self.p = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model), dropout

    def forward(self, x):
        return self.linear2(F.dropout(F.relu(self.linear1(x)), self.p, self.training))


class _PreLNBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout):
        super().__init__()
        self.attn, self.ffn = _Attention(d_model, num_heads), _FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.p = nn.LayerNorm(d_model), nn.LayerNorm(d_model), dropout

    def forward(self, x, additive_mask):
        x = x + F.dropout(self.attn(self.norm1(x), additive_mask), self.p, self.training)
        return x + F.dropout(self.ffn(self.norm2(x)), self.p, self.training)


class _LanguageModel(nn.Module):
    causal = False

    def __init__(self, vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout=0.0):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.register_buffer("positions", _sinusoids(max_len, d_model), persistent=False)
        self.blocks = nn.ModuleList(_PreLNBlock(d_model, num_heads, d_ff, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens):
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positions[:length]
        additive_mask = torch.zeros(length, length)
        if self.causal:
            additive_mask = torch.triu(torch.full((length, length), float("-inf")), diagonal=1)
        for block in self.blocks:
            x = block(x, additive_mask)
        return self.head(self.norm(x))


class CausalLM(_LanguageModel):
    causal = True


class MaskedLM(_LanguageModel):
    causal = False
