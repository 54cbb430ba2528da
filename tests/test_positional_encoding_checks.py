"""Chapter 4's checks: the reference and correct alternatives get full marks, the stub fails
every sub-check, and plausible bugs lose points with a message that names the bug."""

import math

import pytest
import torch
from alternatives import positional_encoding as alternative
from conftest import messages, not_implemented, run_suite, score

from autograder.checks import suites
from solutions import positional_encoding as ref

TOPIC = "positional_encoding"
PE, ROPE = "sinusoidal_positional_encoding", "apply_rotary_embedding"


def full_marks(name):
    return suites(TOPIC)[name].max_score


# ---------------------------------------------------------------------------------------
# Correct answers written in other ways than the reference.


def pe_loops(num_positions, d_model, base=10000.0):
    rows = [
        [
            math.sin(p / base ** (2 * (j // 2) / d_model))
            if j % 2 == 0
            else math.cos(p / base ** (2 * (j // 2) / d_model))
            for j in range(d_model)
        ]
        for p in range(num_positions)
    ]
    return torch.tensor(rows, dtype=torch.float64).reshape(num_positions, d_model)


def rope_loops(x, positions=None, base=10000.0):
    d = x.shape[-1]
    positions = torch.arange(x.shape[-2]) if positions is None else positions
    out = x.clone()
    for i in range(d // 2):
        theta = positions.to(x.dtype) * base ** (-2 * i / d)
        a, b = x[..., 2 * i], x[..., 2 * i + 1]
        out[..., 2 * i] = a * torch.cos(theta) - b * torch.sin(theta)
        out[..., 2 * i + 1] = a * torch.sin(theta) + b * torch.cos(theta)
    return out


def rope_rotate_every_two(x, positions=None, base=10000.0):
    """GPT-J style: x * cos + rotate_every_two(x) * sin with cos and sin repeated per pair."""
    positions = torch.arange(x.shape[-2]) if positions is None else positions
    inv_freq = 1.0 / base ** (torch.arange(0, x.shape[-1], 2).float() / x.shape[-1])
    angles = torch.einsum("n,f->nf", positions.float(), inv_freq).repeat_interleave(2, dim=-1)
    rotated_pairs = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)
    return x * angles.cos().to(x.dtype) + rotated_pairs * angles.sin().to(x.dtype)


def rope_float32_angles_into_empty_like(x, positions=None, base=10000.0):
    """LLaMA-style float32 angles (also for a float64 x), written into a fresh tensor by slices."""
    positions = torch.arange(x.shape[-2]) if positions is None else positions
    angles = torch.outer(positions.float(), 1.0 / base ** (torch.arange(0, x.shape[-1], 2).float() / x.shape[-1]))
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    out = torch.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * cos - x[..., 1::2] * sin
    out[..., 1::2] = x[..., 0::2] * sin + x[..., 1::2] * cos
    return out


def rope_matrices(x, positions=None, base=10000.0):
    """Explicit 2 x 2 rotation matrices, applied with einsum in float64."""
    n, d = x.shape[-2], x.shape[-1]
    positions = torch.arange(n) if positions is None else positions
    theta = positions.double()[:, None] * torch.tensor(
        [base ** (-2 * i / d) for i in range(d // 2)], dtype=torch.float64
    )
    rotation = torch.stack(
        (torch.stack((theta.cos(), -theta.sin()), -1), torch.stack((theta.sin(), theta.cos()), -1)), -2
    )
    pairs = x.double().unflatten(-1, (d // 2, 2))
    return torch.einsum("nirc,...nic->...nir", rotation, pairs).flatten(-2).to(x.dtype)


@pytest.mark.parametrize(
    "answer", [ref.sinusoidal_positional_encoding, alternative.sinusoidal_positional_encoding, pe_loops]
)
def test_correct_encodings_get_full_marks(answer, seed):
    results = run_suite(TOPIC, PE, answer, seed)
    assert score(results) == full_marks(PE), messages(results)


@pytest.mark.parametrize(
    "answer",
    [
        ref.apply_rotary_embedding,
        alternative.apply_rotary_embedding,
        rope_loops,
        rope_rotate_every_two,
        rope_matrices,
        rope_float32_angles_into_empty_like,
    ],
)
def test_correct_rotary_embeddings_get_full_marks(answer, seed):
    results = run_suite(TOPIC, ROPE, answer, seed)
    assert score(results) == full_marks(ROPE), messages(results)


@pytest.mark.parametrize("name", [PE, ROPE])
def test_stub_fails_every_check(name, seed):
    results = run_suite(TOPIC, name, not_implemented, seed)
    assert score(results) == 0 and all("not implemented" in r.message for r in results)


# ---------------------------------------------------------------------------------------
# Plausible bugs in sinusoidal_positional_encoding.


def _pe_angles(n, d, base, positions_from=0, exponent=2.0):
    return torch.arange(positions_from, positions_from + n).float()[:, None] / base ** (
        exponent * torch.arange(d // 2).float() / d
    )


def pe_sin_cos_swapped(n, d, base=10000.0):
    angles = _pe_angles(n, d, base)
    return torch.stack((angles.cos(), angles.sin()), -1).flatten(-2)


def pe_halves(n, d, base=10000.0):
    angles = _pe_angles(n, d, base)
    return torch.cat((angles.sin(), angles.cos()), -1)


def pe_exponent_i_over_d(n, d, base=10000.0):
    angles = _pe_angles(n, d, base, exponent=1.0)
    return torch.stack((angles.sin(), angles.cos()), -1).flatten(-2)


def pe_positions_from_one(n, d, base=10000.0):
    angles = _pe_angles(n, d, base, positions_from=1)
    return torch.stack((angles.sin(), angles.cos()), -1).flatten(-2)


def pe_base_ignored(n, d, base=10000.0):
    return ref.sinusoidal_positional_encoding(n, d)


def pe_batch_dimension(n, d, base=10000.0):
    return ref.sinusoidal_positional_encoding(n, d, base).unsqueeze(0)


def pe_column_exponent(n, d, base=10000.0):
    angles = torch.arange(n).float()[:, None] / base ** (torch.arange(d).float() / d)
    pe = torch.zeros(n, d)
    pe[:, 0::2], pe[:, 1::2] = angles[:, 0::2].sin(), angles[:, 1::2].cos()
    return pe


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (pe_sin_cos_swapped, "sine and cosine are swapped"),
        (pe_halves, "first half of the columns"),
        (pe_exponent_i_over_d, "the exponent is i/D"),
        (pe_positions_from_one, "positions start at 1"),
        (pe_base_ignored, "base argument is ignored"),
        (pe_batch_dimension, "leading batch dimension"),
        (pe_column_exponent, "uses the exponent (2i+1)/D"),
    ],
)
def test_encoding_bugs_lose_points(bug, fragment, seed):
    results = run_suite(TOPIC, PE, bug, seed)
    assert score(results) < full_marks(PE)
    assert fragment in messages(results)


def test_offset_property_names_unpaired_angles():
    results = run_suite(TOPIC, PE, pe_column_exponent)
    failed = {r.check: r.message for r in results if not r.passed}
    assert "should depend only on k" in failed["dot_products_depend_only_on_offset"]


# ---------------------------------------------------------------------------------------
# Plausible bugs in apply_rotary_embedding.


def _rope(x, positions=None, base=10000.0, exponent=2.0, direction=1.0, swap=False, minus=True, halves=False):
    """A learner's RoPE in float32 with the knobs of typical bugs."""
    n, d = x.shape[-2], x.shape[-1]
    positions = torch.arange(n) if positions is None else positions
    angles = positions.float()[:, None] * base ** (-exponent * torch.arange(d // 2).float() / d)
    cos, sin = angles.cos(), direction * angles.sin()
    if swap:
        cos, sin = sin, cos
    a, b = x.chunk(2, dim=-1) if halves else (x[..., 0::2], x[..., 1::2])
    first = a * cos - b * sin if minus else a * cos + b * sin
    second = a * sin + b * cos
    return torch.cat((first, second), -1) if halves else torch.stack((first, second), -1).flatten(-2)


def rope_sin_cos_swapped(x, positions=None, base=10000.0):
    return _rope(x, positions, base, swap=True)


def rope_neox_halves(x, positions=None, base=10000.0):
    return _rope(x, positions, base, halves=True)


def rope_exponent_i_over_d(x, positions=None, base=10000.0):
    return _rope(x, positions, base, exponent=1.0)


def rope_positions_from_one(x, positions=None, base=10000.0):
    return _rope(x, torch.arange(1, x.shape[-2] + 1) if positions is None else positions + 1, base)


def rope_base_ignored(x, positions=None, base=10000.0):
    return _rope(x, positions)


def rope_positions_ignored(x, positions=None, base=10000.0):
    return _rope(x, None, base)


def rope_wrong_direction(x, positions=None, base=10000.0):
    return _rope(x, positions, base, direction=-1.0)


def rope_not_a_rotation(x, positions=None, base=10000.0):
    return _rope(x, positions, base, minus=False)


def rope_per_column_angles(x, positions=None, base=10000.0):
    n, d = x.shape[-2], x.shape[-1]
    positions = torch.arange(n) if positions is None else positions
    angles = positions.float()[:, None] * base ** (-torch.arange(d).float() / d)  # no repeat per pair
    rotated_pairs = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)
    return x * angles.cos() + rotated_pairs * angles.sin()


def rope_complex_output(x, positions=None, base=10000.0):
    n, d = x.shape[-2], x.shape[-1]
    positions = torch.arange(n) if positions is None else positions
    angles = positions.float()[:, None] * base ** (-torch.arange(0, d, 2).float() / d)
    return torch.view_as_complex(x.float().unflatten(-1, (d // 2, 2)).contiguous()) * torch.polar(
        torch.ones_like(angles), angles
    )


def rope_float32_only(x, positions=None, base=10000.0):
    return ref.apply_rotary_embedding(x.float(), positions, base)


def rope_through_numpy(x, positions=None, base=10000.0):
    """Right values, but computed outside autograd: no gradient reaches x."""
    return torch.from_numpy(ref.apply_rotary_embedding(x.detach().double(), positions, base).numpy()).to(x.dtype)


def rope_detached(x, positions=None, base=10000.0):
    return ref.apply_rotary_embedding(x.detach(), positions, base)


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (rope_sin_cos_swapped, "sin and cos are swapped"),
        (rope_neox_halves, "GPT-NeoX"),
        (rope_exponent_i_over_d, "the exponent is i/D"),
        (rope_positions_from_one, "positions start at 1"),
        (rope_base_ignored, "base argument is ignored"),
        (rope_positions_ignored, "positions argument is ignored"),
        (rope_wrong_direction, "the rotation goes the wrong way"),
        (rope_not_a_rotation, "is not a rotation"),
        (rope_per_column_angles, "each column gets its own angle"),
        (rope_complex_output, "is a complex tensor"),
        (rope_float32_only, "it should stay float64"),
        (rope_through_numpy, "no gradient reaches x"),
        (rope_detached, "no gradient reaches x"),
    ],
)
def test_rotary_bugs_lose_points(bug, fragment, seed):
    results = run_suite(TOPIC, ROPE, bug, seed)
    assert score(results) < full_marks(ROPE)
    assert fragment in messages(results)


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (rope_not_a_rotation, "the norm of a row changes"),
        (rope_per_column_angles, "the norm of a row changes"),
    ],
)
def test_property_checks_catch_maps_that_are_not_rotations(bug, fragment):
    failed = {r.check: r.message for r in run_suite(TOPIC, ROPE, bug) if not r.passed}
    assert fragment in failed["preserves_norms"]
    assert "should depend only on m - n" in failed["dot_products_depend_only_on_offset"]


def test_identity_fails_the_relative_property():
    failed = {
        r.check: r.message
        for r in run_suite(TOPIC, ROPE, lambda x, positions=None, base=10000.0: x.clone())
        if not r.passed
    }
    assert "nothing is rotated" in failed["dot_products_depend_only_on_offset"]


# ---------------------------------------------------------------------------------------
# The reference against independent formulations (PyTorch has no op for either encoding).


def test_sinusoidal_rows_are_rotations_of_a_fixed_vector():
    """(sin p w, cos p w) is (0, 1) turned by -p w: the table is RoPE applied to (0, 1, 0, 1, ...)."""
    n, d = 37, 24
    start = torch.tensor([0.0, 1.0]).repeat(d // 2).expand(n, d)
    rotated = ref.apply_rotary_embedding(start.double(), positions=-torch.arange(n))
    torch.testing.assert_close(ref.sinusoidal_positional_encoding(n, d), rotated.float())


def test_reference_rope_is_complex_multiplication():
    x = torch.randn(2, 3, 11, 16, dtype=torch.float64)
    positions = torch.tensor([0, 3, 4, 9, 50, 51, 52, 700, 701, 4095, 4096])
    angles = positions.double()[:, None] * 10000.0 ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    expected = torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (8, 2)).contiguous()) * torch.exp(1j * angles))
    torch.testing.assert_close(ref.apply_rotary_embedding(x, positions), expected.flatten(-2))


def test_reference_scores_depend_only_on_offset():
    q, k = torch.randn(1, 32, dtype=torch.float64), torch.randn(1, 32, dtype=torch.float64)
    scores = [
        float(ref.apply_rotary_embedding(q, torch.tensor([m + 5])) @ ref.apply_rotary_embedding(k, torch.tensor([m])).T)
        for m in (0, 17, 1000)
    ]
    assert max(scores) - min(scores) < 1e-9
