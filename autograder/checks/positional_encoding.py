"""Checks for chapter 4: ``sinusoidal_positional_encoding`` and ``apply_rotary_embedding``.

Every sub-check compares the learner's answer with ``solutions.positional_encoding`` or tests
a property the encoding must have (dot products that depend only on the offset, rotations
that keep norms, a gradient that is the inverse rotation of the output's). Typical bugs are recomputed on the same inputs so that the failure message
can name them: sine and cosine swapped, the GPT-NeoX "halves" layout instead of interleaved
pairs, the exponent i/D instead of 2i/D, positions counted from 1, the base or the positions
argument ignored, a rotation in the wrong direction, a map that is not a rotation.

Float32 answers compute their angles with an error that grows with the position (about 1e-7
radian per unit of position), so tolerances grow with the largest position in the input.
Expected values and the wrong values of typical bugs are computed before the learner's code runs.
"""

import torch

from autograder.oracle import reference
from autograder.student import StudentError
from autograder.suite import (
    CheckFailed,
    Suite,
    as_tensor,
    expect_close,
    expect_shape,
    is_close,
    noncontiguous,
    randint,
    randn,
)

ref = reference("positional_encoding")

sinusoidal = Suite("sinusoidal_positional_encoding")
rotary = Suite("apply_rotary_embedding")
SUITES = {s.function: s for s in (sinusoidal, rotary)}


def _atol(max_position) -> float:
    """Absolute tolerance for values of size ~1 at positions up to ``max_position``."""
    return 1e-5 + 1e-6 * float(max_position)


def _even_width(gen, low, high) -> int:
    return 2 * randint(gen, low // 2, high // 2)


def _interleave(even, odd):
    """(..., K) and (..., K) -> (..., 2K) with ``even`` in columns 0, 2, ... and ``odd`` in 1, 3, ..."""
    return torch.stack((even, odd), dim=-1).flatten(-2)


def _angles(positions, d_model, base, exponent=2.0):
    """(N, D/2) float64 angles ``p * base^(-exponent * i / D)``; exponent 1.0 is the i/D bug."""
    pairs = torch.arange(d_model // 2, dtype=torch.float64)
    return torch.as_tensor(positions).double()[:, None] * base ** (-exponent * pairs / d_model)


# ---------------------------------------------------------------------------------------
# sinusoidal_positional_encoding


def _table(angles):
    """The sinusoidal table of (N, D/2) angles: sin in columns 2i, cos in columns 2i+1."""
    return _interleave(angles.sin(), angles.cos())


def _sinusoidal_bugs(n, d, base):
    positions = torch.arange(n)
    angles = _angles(positions, d, base)
    column_angles = positions.double()[:, None] * base ** (-torch.arange(d, dtype=torch.float64) / d)
    bugs = [
        (
            _interleave(angles.cos(), angles.sin()),
            "sine and cosine are swapped: column 2i should hold the sin and column 2i+1 the cos",
        ),
        (
            torch.cat((angles.sin(), angles.cos()), dim=-1),
            "the sines fill the first half of the columns and the cosines the "
            "second half; interleave them: column 2i holds sin and column 2i+1 the cos of the same angle",
        ),
        (
            _table(_angles(positions, d, base, exponent=1.0)),
            "the exponent is i/D; it should be 2i/D "
            "(2i is the column of the sine), so the frequencies fall too slowly across the columns",
        ),
        (
            _table(_angles(positions + 1, d, base)),
            "positions start at 1; the first position is 0 (its row is [0, 1, 0, 1, ...])",
        ),
        (
            _interleave(column_angles[:, 0::2].sin(), column_angles[:, 1::2].cos()),
            "the cosine in column 2i+1 uses the "
            "exponent (2i+1)/D; the sine and cosine of pair i share one angle, p / base^(2i/D)",
        ),
    ]
    if base != 10000.0:
        bugs.append((ref.sinusoidal_positional_encoding(n, d), "the base argument is ignored (10000 is used)"))
    return bugs


def _encoding(student, n, d, base=None):
    result = student(n, d) if base is None else student(n, d, base=base)
    if isinstance(result, torch.Tensor) and tuple(result.shape) == (1, n, d):
        raise CheckFailed(
            f"sinusoidal_positional_encoding({n}, {d}) has a leading batch dimension, shape (1, {n}, {d}); "
            f"return the table itself, shape (num_positions, d_model)"
        )
    return expect_shape(result, (n, d), f"sinusoidal_positional_encoding({n}, {d})")


@sinusoidal.check(points=1)
def shape_for_odd_lengths_and_various_widths(student, gen):
    for n, d in (
        (1, 2),
        (randint(gen, 1, 6) * 2 + 1, _even_width(gen, 4, 10)),
        (randint(gen, 10, 30) * 2 + 1, _even_width(gen, 12, 64)),
        (randint(gen, 5001, 5100), _even_width(gen, 2, 6)),  # beyond a table of 5000 (a common max_len)
    ):
        encoding = _encoding(student, n, d)
        if not encoding.is_floating_point():
            raise CheckFailed(
                f"sinusoidal_positional_encoding({n}, {d}) should be a float tensor, got dtype {encoding.dtype}"
            )


@sinusoidal.check(points=2)
def matches_reference(student, gen):
    n, d = randint(gen, 20, 40) * 2 + 1, _even_width(gen, 16, 48)
    expected = ref.sinusoidal_positional_encoding(n, d)
    expect_close(
        _encoding(student, n, d),
        expected,
        f"sinusoidal_positional_encoding({n}, {d})",
        atol=_atol(n),
        diagnoses=_sinusoidal_bugs(n, d, 10000.0),
    )


@sinusoidal.check(points=1)
def respects_base(student, gen):
    n, d = randint(gen, 8, 20) * 2 + 1, _even_width(gen, 8, 24)
    for base in (100.0, float(randint(gen, 20, 60))):
        expected = ref.sinusoidal_positional_encoding(n, d, base)
        expect_close(
            _encoding(student, n, d, base),
            expected,
            f"sinusoidal_positional_encoding({n}, {d}, base={base:g})",
            atol=_atol(n),
            diagnoses=_sinusoidal_bugs(n, d, base),
        )


@sinusoidal.check(points=1)
def dot_products_depend_only_on_offset(student, gen):
    n, d = randint(gen, 10, 20) * 2 + 1, _even_width(gen, 8, 32)
    encoding = _encoding(student, n, d).double()
    gram = encoding @ encoding.T  # gram[p, q] = PE[p] . PE[q]
    if not is_close(gram[1:, 1:], gram[:-1, :-1], rtol=1e-4, atol=1e-3):
        raise CheckFailed(
            "PE[p] . PE[p + k] changes with p for a fixed offset k: it should depend only on k. Each "
            "(sin, cos) pair must use one angle p / base^(2i/D), so that sin(a) sin(b) + cos(a) cos(b) = cos(a - b)"
        )
    expect_close(
        torch.diagonal(gram),
        torch.full((n,), d / 2, dtype=torch.float64),
        "PE[p] . PE[p] (each of the D/2 pairs contributes sin^2 + cos^2 = 1)",
        atol=1e-3,
    )


# ---------------------------------------------------------------------------------------
# apply_rotary_embedding


def _rotate(x, angles, halves=False, direction=1.0, swapped=False, minus=True):
    """x rotated in float64 by ``angles`` (N, D/2), with the knobs of typical bugs."""
    x = x.double()
    a, b = x.chunk(2, dim=-1) if halves else (x[..., 0::2], x[..., 1::2])
    cos, sin = angles.cos(), direction * angles.sin()
    if swapped:
        cos, sin = sin, cos
    first = a * cos - b * sin if minus else a * cos + b * sin
    second = a * sin + b * cos
    return torch.cat((first, second), dim=-1) if halves else _interleave(first, second)


def _rotary_bugs(x, positions=None, base=10000.0):
    n, d = x.shape[-2], x.shape[-1]
    given = positions is not None
    positions = torch.arange(n) if positions is None else positions
    angles = _angles(positions, d, base)
    column_angles = positions.double()[:, None] * base ** (-torch.arange(d, dtype=torch.float64) / d)
    x64 = x.double()
    per_column = _interleave(
        x64[..., 0::2] * column_angles[:, 0::2].cos() - x64[..., 1::2] * column_angles[:, 0::2].sin(),
        x64[..., 0::2] * column_angles[:, 1::2].sin() + x64[..., 1::2] * column_angles[:, 1::2].cos(),
    )
    bugs = [
        (
            _rotate(x, angles, swapped=True),
            "sin and cos are swapped (at position 0 a pair must stay as it is: cos 0 = 1, sin 0 = 0)",
        ),
        (
            _rotate(x, angles, halves=True),
            "it rotates the pairs (i, i + D/2) of the first and second half (the GPT-NeoX "
            "rotate_half layout); this chapter's convention pairs neighbours (2i, 2i+1)",
        ),
        (
            _rotate(x, _angles(positions, d, base, exponent=1.0)),
            "the exponent is i/D; pair i turns by p * base^(-2i/D)",
        ),
        (
            _rotate(x, _angles(positions + 1, d, base)),
            "positions start at 1; the first position is 0 (it is not rotated)",
        ),
        (
            _rotate(x, angles, direction=-1.0),
            "the rotation goes the wrong way: x'_2i = x_2i cos - x_2i+1 sin and "
            "x'_2i+1 = x_2i sin + x_2i+1 cos (counter-clockwise)",
        ),
        (
            _rotate(x, angles, minus=False),
            "x'_2i = x_2i cos + x_2i+1 sin is not a rotation (norms change); it is x_2i cos - x_2i+1 sin",
        ),
        (
            per_column,
            "each column gets its own angle p * base^(-j/D); both features of pair i share the angle p * base^(-2i/D)",
        ),
    ]
    if given:
        bugs.append((ref.apply_rotary_embedding(x, base=base), "the positions argument is ignored (0 .. N-1 is used)"))
    if base != 10000.0:
        bugs.append(
            (ref.apply_rotary_embedding(x, positions, base=10000.0), "the base argument is ignored (10000 is used)")
        )
    return bugs


def _rotated(student, x, what, **kwargs):
    result = as_tensor(student(x, **kwargs), what)
    if result.is_complex():
        raise CheckFailed(
            f"{what} is a complex tensor; turn the rotated pairs back into real numbers "
            f"(torch.view_as_real) and give them the shape of x, {tuple(x.shape)}"
        )
    return expect_shape(result, x.shape, what)


def _expect_rotation(student, x, what, positions=None, base=None, layout=None):
    """Compare with the reference; ``positions`` and ``base`` are passed only when given, the
    learner's call gets ``layout(x)`` and ``layout(positions)`` when ``layout`` is given (e.g.
    :func:`noncontiguous`)."""
    kwargs = {key: value for key, value in (("positions", positions), ("base", base)) if value is not None}
    if layout is not None:
        kwargs = {key: layout(value) if isinstance(value, torch.Tensor) else value for key, value in kwargs.items()}
    base = 10000.0 if base is None else base
    max_position = x.shape[-2] if positions is None else int(positions.max())
    expected, bugs = ref.apply_rotary_embedding(x, positions, base), _rotary_bugs(x, positions, base)
    given = x if layout is None else layout(x)
    expect_close(_rotated(student, given, what, **kwargs), expected, what, atol=_atol(max_position), diagnoses=bugs)


@rotary.check(points=1)
def keeps_shape_and_dtype(student, gen):
    """Also at the edges: a single position, a batch and head of one, and more positions than a
    table of 2048 holds."""
    n, d = randint(gen, 2, 6) * 2 + 1, _even_width(gen, 4, 16)
    for x in (
        randn(gen, n, d),
        randn(gen, 2, randint(gen, 2, 4), n, d),
        randn(gen, 1, d),
        randn(gen, 1, 1, 1, d),
        randn(gen, randint(gen, 2049, 2100), 4),
    ):
        what = f"apply_rotary_embedding(x) for x of shape {tuple(x.shape)}"
        result = _rotated(student, x, what)
        if result.dtype != x.dtype:
            raise CheckFailed(f"{what} has dtype {result.dtype}; it should keep the dtype of x, {x.dtype}")


@rotary.check(points=1)
def position_zero_is_not_rotated(student, gen):
    x = randn(gen, randint(gen, 2, 6) * 2 + 1, _even_width(gen, 4, 20))
    expected, bugs = x[0].clone(), [(wrong[0], explanation) for wrong, explanation in _rotary_bugs(x)]
    first_row = _rotated(student, x, "apply_rotary_embedding(x)")[0]
    expect_close(first_row, expected, "the row at position 0 (angle 0, so it must come out unchanged)", diagnoses=bugs)


@rotary.check(points=2)
def matches_reference(student, gen):
    x = randn(gen, randint(gen, 5, 12) * 2 + 1, _even_width(gen, 8, 32))
    _expect_rotation(student, x, f"apply_rotary_embedding(x) for x of shape {tuple(x.shape)}")


@rotary.check(points=1)
def batch_and_head_dimensions(student, gen):
    x = randn(gen, randint(gen, 2, 3), randint(gen, 2, 4), randint(gen, 3, 8) * 2 + 1, _even_width(gen, 4, 16))
    what = f"apply_rotary_embedding(x) for x of shape (B, H, N, D) = {tuple(x.shape)}, a non-contiguous view"
    _expect_rotation(student, x, what, layout=noncontiguous)


@rotary.check(points=2)
def explicit_positions(student, gen):
    n, d = randint(gen, 2, 6) * 2 + 1, _even_width(gen, 4, 16)
    x = randn(gen, randint(gen, 2, 4), n, d)
    offset = randint(gen, 50, 2000)
    cache_positions = torch.arange(n) + offset  # new tokens after `offset` cached ones
    _expect_rotation(
        student,
        x,
        f"apply_rotary_embedding(x, positions=arange({n}) + {offset}) (tokens after a KV cache)",
        positions=cache_positions,
    )
    scattered = torch.randperm(4000, generator=gen)[:n].sort().values
    _expect_rotation(student, x, f"apply_rotary_embedding(x, positions={scattered.tolist()})", positions=scattered)
    # the same positions as int32, a non-contiguous view (integers of either width are positions)
    what = f"apply_rotary_embedding(x, positions={scattered.tolist()} as int32)"
    _expect_rotation(student, x, what, positions=scattered.to(torch.int32), layout=noncontiguous)


@rotary.check(points=1)
def respects_base(student, gen):
    x = randn(gen, randint(gen, 3, 8) * 2 + 1, _even_width(gen, 6, 16))
    for base in (100.0, float(randint(gen, 20, 60))):
        _expect_rotation(student, x, f"apply_rotary_embedding(x, base={base:g})", base=base)


@rotary.check(points=1)
def preserves_norms(student, gen):
    x = randn(gen, 3, randint(gen, 4, 9) * 2 + 1, _even_width(gen, 4, 24))
    positions = torch.randperm(500, generator=gen)[: x.shape[-2]]
    rotated = _rotated(student, x, "apply_rotary_embedding(x, positions)", positions=positions)
    if not is_close(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-4):
        raise CheckFailed(
            "the norm of a row changes: a rotation keeps lengths (in each pair, cos^2 + sin^2 = 1 and "
            "the cross terms - x_2i+1 sin and + x_2i sin cancel)"
        )


@rotary.check(points=1)
def gradient_is_the_inverse_rotation(student, gen):
    """RoPE sits inside a trained model: the gradient must reach x. A rotation's transpose is the
    rotation backwards, so the gradient with respect to x is grad_output turned by -theta."""
    x = randn(gen, randint(gen, 2, 3), randint(gen, 3, 8) * 2 + 1, _even_width(gen, 4, 16))
    positions = torch.randperm(300, generator=gen)[: x.shape[-2]]
    grad_output = randn(gen, *x.shape)
    expected = ref.apply_rotary_embedding(grad_output.double(), -positions)
    no_gradient = (
        "no gradient reaches x through apply_rotary_embedding(x, positions): compute it with differentiable "
        "torch operations (no .detach(), .numpy(), .item() or torch.no_grad() on the way)"
    )
    try:
        _, grads = student.with_grad((x,), grad_output, grad_inputs=(0,), positions=positions)
    except StudentError as error:
        if "does not require grad" in str(error):  # autograd's words for an output cut off from x
            raise CheckFailed(no_gradient) from None
        raise
    if grads[0] is None:
        raise CheckFailed(no_gradient)
    expect_close(
        grads[0],
        expected,
        "the gradient of apply_rotary_embedding(x, positions) with respect to x (grad_output turned back by -theta)",
        atol=_atol(300),
    )


@rotary.check(points=1)
def dot_products_depend_only_on_offset(student, gen):
    n, d = randint(gen, 4, 8) * 2 + 1, _even_width(gen, 4, 16)
    q, k = randn(gen, d).expand(n, d).contiguous(), randn(gen, d).expand(n, d).contiguous()

    def scores(positions):  # scores[m, n] = <R_m q, R_n k>
        kwargs = {} if positions is None else {"positions": positions}
        rotated_q = _rotated(student, q, "apply_rotary_embedding(q)", **kwargs).double()
        return rotated_q @ _rotated(student, k, "apply_rotary_embedding(k)", **kwargs).double().T

    at_start, shifted = scores(None), scores(torch.arange(n) + randint(gen, 10, 500))
    if is_close(at_start, torch.full_like(at_start, float(q[0] @ k[0])), atol=1e-4):
        raise CheckFailed("<R_m q, R_n k> is the same for every pair of positions: nothing is rotated")
    if not is_close(at_start[1:, 1:], at_start[:-1, :-1], rtol=1e-3, atol=1e-3):
        raise CheckFailed(
            "<R_m q, R_n k> changes when m and n grow by the same amount: it should depend only on m - n. "
            "Rotate each pair (2i, 2i+1) of q and k by one angle p * base^(-2i/D), with -sin in x'_2i and +sin in x'_2i+1"
        )
    if not is_close(shifted, at_start, rtol=1e-3, atol=1e-3):
        raise CheckFailed(
            "<R_m q, R_n k> changes when all positions are shifted by the same offset (positions=arange(N) + t); "
            "it should depend only on m - n"
        )


@rotary.check(points=1)
def float64_input(student, gen):
    x = randn(gen, 2, randint(gen, 3, 8) * 2 + 1, _even_width(gen, 4, 16), dtype=torch.float64)
    what = "apply_rotary_embedding(x) for a float64 x"
    result = _rotated(student, x, what)
    if result.dtype != torch.float64:
        raise CheckFailed(f"{what} has dtype {result.dtype}; it should stay float64 (do not convert x to float32)")
    _expect_rotation(student, x, what)
