"""Correct answers for chapter 4 written differently from ``solutions.positional_encoding``:
frequencies through exp/log in float32, sine and cosine interleaved by stacking, and RoPE as
a multiplication of complex numbers (``torch.polar`` / ``torch.view_as_complex``).
"""

import math

import torch


def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
    position = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(base) / d_model))
    angle = position * frequency
    return torch.stack((torch.sin(angle), torch.cos(angle)), dim=-1).reshape(num_positions, d_model)


def apply_rotary_embedding(x, positions=None, base=10000.0):
    n, d = x.shape[-2], x.shape[-1]
    if positions is None:
        positions = torch.arange(n)
    real_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    frequency = 1.0 / base ** (torch.arange(0, d, 2, dtype=real_dtype) / d)
    angle = torch.outer(positions.to(real_dtype), frequency)
    turn = torch.polar(torch.ones_like(angle), angle)  # e^{i theta}, (N, D/2)
    pairs = torch.view_as_complex(x.to(real_dtype).reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(pairs * turn).reshape(x.shape).to(x.dtype)
