"""Chapter 4: positional encodings.

Conventions shared by both functions: positions count from 0; feature pairs are
*interleaved*, pair ``i`` being features ``(2i, 2i+1)``; pair ``i`` turns by the angle
``p * base^(-2i/D)`` at position ``p`` (``D`` the width), so the first pair turns fastest
(one radian per position) and the last slowest (wavelength close to ``2 pi base``).
Angles are computed in float64, so large positions (a long KV cache) lose no precision.
"""

import torch


def inverse_frequencies(d_model: int, base: float = 10000.0) -> torch.Tensor:
    """(d_model // 2,) float64: ``base^(-2i/d_model)``, the angle per position of pair ``i``."""
    if d_model % 2:
        raise ValueError(f"the width must be even (features come in pairs), got {d_model}")
    return base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)


def sinusoidal_positional_encoding(num_positions: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed encodings of Vaswani et al. (2017), shape (num_positions, d_model).

    ``PE[p, 2i] = sin(p / base^(2i/D))`` and ``PE[p, 2i+1] = cos(p / base^(2i/D))`` for
    positions ``p = 0 .. num_positions-1``, interleaved (sine in even columns, cosine in odd
    ones). ``d_model`` must be even; any ``num_positions >= 1`` (no maximum). Returned in the
    default dtype (float32).
    """
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * inverse_frequencies(d_model, base)
    encoding = torch.empty(num_positions, d_model, dtype=torch.float64)
    encoding[:, 0::2] = angles.sin()
    encoding[:, 1::2] = angles.cos()
    return encoding.to(torch.get_default_dtype())


def apply_rotary_embedding(
    x: torch.Tensor, positions: torch.Tensor | None = None, base: float = 10000.0
) -> torch.Tensor:
    """Rotary position embedding (RoPE; Su et al., 2021, *RoFormer*), interleaved pairs.

    x: (..., N, D) with D even, e.g. queries or keys of shape (B, H, N, d_head).
    positions: the position of each of the N rows, shape (N,) (int32 or int64; any shape that
    broadcasts to ``x.shape[:-1]`` works too); default ``0 .. N-1``, for any N (no maximum). x and
    positions may be non-contiguous views. A KV cache passes the
    positions of the new tokens, e.g. ``arange(N) + offset``.

    Pair ``(x_{2i}, x_{2i+1})`` at position ``p`` turns counter-clockwise by
    ``theta = p * base^(-2i/D)``::

        x'_{2i}   = x_{2i} cos(theta) - x_{2i+1} sin(theta)
        x'_{2i+1} = x_{2i} sin(theta) + x_{2i+1} cos(theta)

    Returns a new tensor of x's shape and dtype, differentiable with respect to x (``x`` and
    ``positions`` are left unchanged).
    Rotations keep norms, and
    ``<R_m q, R_n k>`` depends on the positions only through ``m - n``.
    """
    if positions is None:
        positions = torch.arange(x.shape[-2], device=x.device)
    positions = torch.as_tensor(positions, device=x.device)
    angles = positions.to(torch.float64)[..., None] * inverse_frequencies(x.shape[-1], base).to(x.device)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)
