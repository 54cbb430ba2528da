"""Correct chapter-8 answers written differently from the reference: loops and index sets for
the mask, einsum and float64 for the Performer, numpy for the power-law fit."""

import math

import numpy as np
import torch


def sliding_window_mask(n, window, global_positions=()):
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        mask[i, max(0, i - window) : i + window + 1] = True
    for g in global_positions:
        mask[g, :] = True
        mask[:, g] = True
    return mask


def positive_random_features(x, omega):
    m = omega.shape[0]
    exponent = torch.einsum("...nd,md->...nm", x, omega) - 0.5 * x.pow(2).sum(dim=-1, keepdim=True)
    return exponent.exp() * m**-0.5


def performer_attention(q, k, v, omega):
    d = q.shape[-1]
    qf = positive_random_features(q.double() / d**0.25, omega.double())
    kf = positive_random_features(k.double() / d**0.25, omega.double())
    kv = torch.einsum("...nm,...nv->...mv", kf, v.double())
    z = torch.einsum("...qm,...m->...q", qf, kf.sum(dim=-2))
    return torch.einsum("...qm,...mv->...qv", qf, kv) / z[..., None]


def training_flops(n_params, n_tokens):
    forward = 2 * n_params * n_tokens
    backward = 2 * forward
    return forward + backward


def chinchilla_optimal(compute, tokens_per_parameter=20.0):
    n_params = (compute / 6 / tokens_per_parameter) ** 0.5
    return n_params, n_params * tokens_per_parameter


def fit_power_law(sizes, losses):
    slope, intercept = np.polyfit(np.log(np.asarray(sizes, dtype=float)), np.log(np.asarray(losses, dtype=float)), 1)
    return math.exp(intercept), -slope
