"""Correct chapter-6 answers written differently from ``solutions.pretraining``: ``narrow``
for the shift; Bernoulli draws and a two-stage 80 / (10 / 10) split with ``multinomial`` for
the random tokens; a float64 log-sum-exp loss; and models made of post-LN
``nn.TransformerEncoderLayer``s with GELU, fixed sinusoidal positions in a buffer, an
additive float causal mask and an output layer tied to the token embedding.
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
    inputs[randomized] = draws
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
    return torch.cat((angle.sin(), angle.cos()), dim=-1)[:, :width].float()


class _LanguageModel(nn.Module):
    causal = False

    def __init__(self, vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout=0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.register_buffer("positions", _sinusoids(max_len, d_model))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout, activation="gelu", batch_first=True)
            for _ in range(num_layers))

    def forward(self, tokens):
        length = tokens.shape[1]
        x = self.embed(tokens) * math.sqrt(self.embed.embedding_dim) + self.positions[:length]
        mask = None
        if self.causal:
            mask = torch.triu(torch.full((length, length), float("-inf")), diagonal=1)
        for layer in self.layers:
            x = layer(x, src_mask=mask)
        return F.linear(x, self.embed.weight)


class CausalLM(_LanguageModel):
    causal = True


class MaskedLM(_LanguageModel):
    causal = False
