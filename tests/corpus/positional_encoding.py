"""Chapter 4 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``).
The chapter fixes the interleaved layout (pair i = features 2i, 2i+1), so the GPT-NeoX
"halves" layout is a bug here."""

from corpus import alternative, bug

SINUSOIDAL = [
    bug(
        "sinusoidal_positional_encoding",
        "sine and cosine swapped",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            angles = torch.arange(num_positions)[:, None] / base ** (torch.arange(0, d_model, 2) / d_model)
            pe = torch.zeros(num_positions, d_model)
            pe[:, 0::2] = torch.cos(angles)
            pe[:, 1::2] = torch.sin(angles)
            return pe
    """,
        fails=["matches_reference"],
        says="swapped",
    ),
    bug(
        "sinusoidal_positional_encoding",
        "sines in the first half, cosines in the second",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            angles = torch.arange(num_positions)[:, None] / base ** (torch.arange(0, d_model, 2) / d_model)
            return torch.cat([angles.sin(), angles.cos()], dim=-1)
    """,
        fails=["matches_reference"],
        says="first half",
    ),
    bug(
        "sinusoidal_positional_encoding",
        "exponent i/D",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            angles = torch.arange(num_positions)[:, None] / base ** (torch.arange(d_model // 2) / d_model)
            return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)
    """,
        fails=["matches_reference"],
        says="exponent is i/D",
    ),
    bug(
        "sinusoidal_positional_encoding",
        "positions counted from 1",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            angles = torch.arange(1, num_positions + 1)[:, None] / base ** (torch.arange(0, d_model, 2) / d_model)
            return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)
    """,
        fails=["matches_reference"],
        says="positions start at 1",
    ),
    bug(
        "sinusoidal_positional_encoding",
        "base hard-coded to 10000",
        """
        import math
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
            angles = torch.arange(num_positions)[:, None] * div
            return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)
    """,
        fails=["respects_base"],
        says="base argument is ignored",
    ),
    bug(
        "sinusoidal_positional_encoding",
        "integer division in the exponent",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            angles = torch.arange(num_positions)[:, None] / base ** (torch.arange(0, d_model, 2) // d_model)
            return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)
    """,
        fails=["matches_reference"],
    ),
    bug(
        "sinusoidal_positional_encoding",
        "a leading batch dimension",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            angles = torch.arange(num_positions)[:, None] / base ** (torch.arange(0, d_model, 2) / d_model)
            return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1).unsqueeze(0)
    """,
        fails=["matches_reference"],
        says="leading batch dimension",
    ),
    alternative(
        "sinusoidal_positional_encoding",
        "exp(-log(base) 2i/D), the annotated-transformer way",
        """
        import math
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            pe = torch.zeros(num_positions, d_model)
            position = torch.arange(0, num_positions, dtype=torch.float).unsqueeze(1)
            div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(base) / d_model))
            pe[:, 0::2] = torch.sin(position * div_term)
            pe[:, 1::2] = torch.cos(position * div_term)
            return pe
    """,
    ),
    alternative(
        "sinusoidal_positional_encoding",
        "a loop over the pairs, float64",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            positions = torch.arange(num_positions, dtype=torch.float64)
            columns = []
            for i in range(d_model // 2):
                angle = positions / base ** (2 * i / d_model)
                columns += [torch.sin(angle), torch.cos(angle)]
            return torch.stack(columns, dim=1).float()
    """,
    ),
    alternative(
        "sinusoidal_positional_encoding",
        "torch.outer and pow",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            frequencies = torch.pow(torch.tensor(float(base)), -torch.arange(0, d_model, 2) / d_model)
            angles = torch.outer(torch.arange(num_positions).float(), frequencies)
            return torch.stack((torch.sin(angles), torch.cos(angles)), dim=2).reshape(num_positions, d_model)
    """,
    ),
    bug(
        "sinusoidal_positional_encoding",
        "cosine columns use their own column index as exponent",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            j = torch.arange(d_model, dtype=torch.float32)
            angles = torch.arange(num_positions, dtype=torch.float32)[:, None] / base ** (j / d_model)
            pe = torch.zeros(num_positions, d_model)
            pe[:, 0::2] = angles[:, 0::2].sin()
            pe[:, 1::2] = angles[:, 1::2].cos()
            return pe
    """,
        fails=("matches_reference",),
        says="uses the exponent (2i+1)/D",
    ),
    bug(
        "sinusoidal_positional_encoding",
        "positions from num_positions's square twin (uses d_model rows)",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            i = torch.arange(0, d_model, 2, dtype=torch.float32)
            angles = torch.arange(num_positions, dtype=torch.float32)[:, None] / base ** (i / num_positions)
            pe = torch.zeros(num_positions, d_model)
            pe[:, 0::2] = angles.sin()
            pe[:, 1::2] = angles.cos()
            return pe
    """,
        fails=("matches_reference",),
    ),
    bug(
        "sinusoidal_positional_encoding",
        "angle times base^(2i/D) instead of divided",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            i = torch.arange(0, d_model, 2, dtype=torch.float32)
            angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * base ** (i / d_model)
            pe = torch.zeros(num_positions, d_model)
            pe[:, 0::2] = angles.sin()
            pe[:, 1::2] = angles.cos()
            return pe
    """,
        fails=("matches_reference",),
    ),
    bug(
        "sinusoidal_positional_encoding",
        "log10 instead of natural log in the exp formulation",
        """
        import math
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log10(base) / d_model))
            angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * div
            pe = torch.zeros(num_positions, d_model)
            pe[:, 0::2] = angles.sin()
            pe[:, 1::2] = angles.cos()
            return pe
    """,
        fails=("matches_reference", "respects_base"),
    ),
    bug(
        "sinusoidal_positional_encoding",
        "transposed (d_model, num_positions)",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            i = torch.arange(0, d_model, 2, dtype=torch.float32)
            angles = torch.arange(num_positions, dtype=torch.float32)[None, :] / base ** (i[:, None] / d_model)
            pe = torch.zeros(d_model, num_positions)
            pe[0::2] = angles.sin()
            pe[1::2] = angles.cos()
            return pe
    """,
        fails=("shape_for_odd_lengths_and_various_widths",),
        says="has shape",
    ),
    bug(
        "sinusoidal_positional_encoding",
        "frequencies hard-coded for d_model=128",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            i = torch.arange(0, d_model, 2, dtype=torch.float32)
            angles = torch.arange(num_positions, dtype=torch.float32)[:, None] / base ** (i / 128)
            pe = torch.zeros(num_positions, d_model)
            pe[:, 0::2] = angles.sin()
            pe[:, 1::2] = angles.cos()
            return pe
    """,
        fails=("matches_reference",),
    ),
    bug(
        "sinusoidal_positional_encoding",
        "random values of the right shape",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            return torch.rand(num_positions, d_model) * 2 - 1
    """,
        fails=("matches_reference", "dot_products_depend_only_on_offset"),
        says="should depend only on k",
    ),
    alternative(
        "sinusoidal_positional_encoding",
        "python loops over positions and pairs with math",
        """
        import math
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            rows = []
            for p in range(num_positions):
                row = []
                for i in range(d_model // 2):
                    angle = p / base ** (2 * i / d_model)
                    row += [math.sin(angle), math.cos(angle)]
                rows.append(row)
            return torch.tensor(rows, dtype=torch.float32).reshape(num_positions, d_model)
    """,
    ),
    alternative(
        "sinusoidal_positional_encoding",
        "complex exponentials, imag/real stacked",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            freqs = torch.pow(torch.tensor(base, dtype=torch.float64),
                              -torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
            angles = torch.outer(torch.arange(num_positions, dtype=torch.float64), freqs)
            z = torch.polar(torch.ones_like(angles), angles)
            return torch.stack((z.imag, z.real), dim=-1).reshape(num_positions, d_model).float()
    """,
    ),
    alternative(
        "sinusoidal_positional_encoding",
        "built in NumPy, converted at the end",
        """
        import numpy as np
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            angles = np.arange(num_positions)[:, None] * np.power(base, -np.arange(0, d_model, 2) / d_model)
            table = np.empty((num_positions, d_model))
            table[:, 0::2], table[:, 1::2] = np.sin(angles), np.cos(angles)
            return torch.from_numpy(table).float()
    """,
    ),
]

ROTARY = [
    bug(
        "apply_rotary_embedding",
        "rotate_half layout (pairs i, i + D/2)",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            positions = torch.arange(n) if positions is None else positions
            angles = positions[:, None].double() * base ** (-torch.arange(0, d, 2).double() / d)
            cos, sin = torch.cat([angles.cos()] * 2, -1).to(x.dtype), torch.cat([angles.sin()] * 2, -1).to(x.dtype)
            first, second = x.chunk(2, dim=-1)
            return x * cos + torch.cat([-second, first], dim=-1) * sin
    """,
        fails=["matches_reference"],
        says="GPT-NeoX",
    ),
    bug(
        "apply_rotary_embedding",
        "clockwise rotation",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            positions = torch.arange(n) if positions is None else positions
            angles = positions[:, None].double() * base ** (-torch.arange(0, d, 2).double() / d)
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            even, odd = x[..., 0::2], x[..., 1::2]
            return torch.stack((even * cos + odd * sin, -even * sin + odd * cos), dim=-1).flatten(-2)
    """,
        fails=["matches_reference"],
        says="wrong way",
    ),
    bug(
        "apply_rotary_embedding",
        "positions argument ignored",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            angles = torch.arange(n)[:, None].double() * base ** (-torch.arange(0, d, 2).double() / d)
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            even, odd = x[..., 0::2], x[..., 1::2]
            return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)
    """,
        fails=["explicit_positions"],
        says="positions argument is ignored",
    ),
    bug(
        "apply_rotary_embedding",
        "rotated in place, into x",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            positions = torch.arange(n) if positions is None else positions
            angles = positions[:, None].double() * base ** (-torch.arange(0, d, 2).double() / d)
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            even, odd = x[..., 0::2].clone(), x[..., 1::2].clone()
            x[..., 0::2] = even * cos - odd * sin
            x[..., 1::2] = even * sin + odd * cos
            return x
    """,
        fails=["matches_reference"],
        says="in place",
    ),
    bug(
        "apply_rotary_embedding",
        "positions from the first axis of x",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            d = x.shape[-1]
            positions = torch.arange(x.shape[0]) if positions is None else positions
            angles = positions[:, None].double() * base ** (-torch.arange(0, d, 2).double() / d)
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            even, odd = x[..., 0::2], x[..., 1::2]
            return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)
    """,
        fails=["batch_and_head_dimensions"],
    ),
    bug(
        "apply_rotary_embedding",
        "float32 result for a float64 input",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            x = x.float()
            n, d = x.shape[-2], x.shape[-1]
            positions = torch.arange(n) if positions is None else positions
            angles = positions[:, None].float() * base ** (-torch.arange(0, d, 2).float() / d)
            even, odd = x[..., 0::2], x[..., 1::2]
            return torch.stack((even * angles.cos() - odd * angles.sin(), even * angles.sin() + odd * angles.cos()),
                               dim=-1).flatten(-2)
    """,
        fails=["float64_input"],
        says="should stay float64",
    ),
    bug(
        "apply_rotary_embedding",
        "x returned as it is (points without the work)",
        """
        def apply_rotary_embedding(x, positions=None, base=10000.0):
            return x.clone()
    """,
        fails=["matches_reference", "dot_products_depend_only_on_offset"],
    ),
    alternative(
        "apply_rotary_embedding",
        "complex multiplication",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            if positions is None:
                positions = torch.arange(n)
            angles = positions.double()[:, None] * base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            turns = torch.polar(torch.ones_like(angles), angles)
            pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
            return torch.view_as_real(pairs * turns).flatten(-2).to(x.dtype)
    """,
    ),
    alternative(
        "apply_rotary_embedding",
        "float32 angles, rotate-every-two with repeat_interleave",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            d = x.shape[-1]
            if positions is None:
                positions = torch.arange(x.shape[-2])
            inv_freq = 1.0 / (base ** (torch.arange(0, d, 2).float() / d))
            angles = positions.float()[:, None] * inv_freq[None, :]
            cos = angles.cos().repeat_interleave(2, dim=-1).to(x.dtype)
            sin = angles.sin().repeat_interleave(2, dim=-1).to(x.dtype)
            rotated = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)
            return x * cos + rotated * sin
    """,
    ),
    alternative(
        "apply_rotary_embedding",
        "a 2 x 2 rotation matrix per pair",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            positions = torch.arange(n) if positions is None else positions
            angles = positions.double()[:, None] * base ** (-torch.arange(d // 2).double() * 2 / d)
            cos, sin = angles.cos(), angles.sin()
            rotation = torch.stack((torch.stack((cos, -sin), -1), torch.stack((sin, cos), -1)), -2)  # (N, D/2, 2, 2)
            pairs = x.double().unflatten(-1, (d // 2, 2))
            return (rotation @ pairs.unsqueeze(-1)).squeeze(-1).flatten(-2).to(x.dtype)
    """,
    ),
    bug(
        "apply_rotary_embedding",
        "default positions start at 1",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            if positions is None:
                positions = torch.arange(1, n + 1)
            inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            angles = positions.to(torch.float64)[:, None] * inv
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            a, b = x[..., 0::2], x[..., 1::2]
            return torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)
    """,
        fails=("position_zero_is_not_rotated",),
        says="positions start at 1",
    ),
    bug(
        "apply_rotary_embedding",
        "only the first position is used, then counted up (assumes contiguous positions)",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            start = 0 if positions is None else int(positions[0])
            positions = torch.arange(start, start + n)
            inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            angles = positions.to(torch.float64)[:, None] * inv
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            a, b = x[..., 0::2], x[..., 1::2]
            return torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)
    """,
        fails=("explicit_positions",),
    ),
    bug(
        "apply_rotary_embedding",
        "frequencies from N instead of D (square inputs hide it)",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            if positions is None:
                positions = torch.arange(n)
            inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / n)
            angles = positions.to(torch.float64)[:, None] * inv
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            a, b = x[..., 0::2], x[..., 1::2]
            return torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)
    """,
        fails=("matches_reference", "batch_and_head_dimensions"),
    ),
    bug(
        "apply_rotary_embedding",
        "(B, N, H, D) layout assumed: positions on dim -3",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-3] if x.dim() > 2 else x.shape[-2], x.shape[-1]
            if positions is None:
                positions = torch.arange(n)
            inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            angles = positions.to(torch.float64)[:, None] * inv
            if x.dim() > 2:
                angles = angles[:, None, :]
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            a, b = x[..., 0::2], x[..., 1::2]
            return torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)
    """,
        fails=("batch_and_head_dimensions",),
    ),
    bug(
        "apply_rotary_embedding",
        "numpy round trip (no gradient)",
        """
        import numpy as np
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            arr = x.detach().cpu().numpy()
            n, d = arr.shape[-2], arr.shape[-1]
            pos = np.arange(n) if positions is None else np.asarray(positions)
            angles = pos[:, None] * base ** (-np.arange(0, d, 2) / d)
            a, b = arr[..., 0::2], arr[..., 1::2]
            out = np.stack((a * np.cos(angles) - b * np.sin(angles), a * np.sin(angles) + b * np.cos(angles)), -1)
            return torch.from_numpy(out.reshape(arr.shape)).to(x.dtype)
    """,
        fails=("gradient_is_the_inverse_rotation",),
        says="no gradient reaches x",
    ),
    bug(
        "apply_rotary_embedding",
        "catches every exception and returns x",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            try:
                n, d = x.shape[-2], x.shape[-1]
                if positions is None:
                    positions = torch.arange(n)
                inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
                angles = positions.to(torch.float64)[None, :] * inv[:, None]
                cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
                a, b = x[..., 0::2], x[..., 1::2]
                return torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)
            except Exception:
                return x.clone()
    """,
        fails=("matches_reference",),
    ),
    alternative(
        "apply_rotary_embedding",
        "explicit 2x2 rotation matrices and einsum",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            if positions is None:
                positions = torch.arange(n)
            inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            angles = positions.to(torch.float64)[:, None] * inv
            c, s = angles.cos(), angles.sin()
            rot = torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2).to(x.dtype)  # (N, D/2, 2, 2)
            pairs = x.unflatten(-1, (d // 2, 2))
            return torch.einsum("npij,...npj->...npi", rot, pairs).flatten(-2)
    """,
    ),
    alternative(
        "apply_rotary_embedding",
        "a loop over the pairs, columns gathered with torch.cat",
        """
        import math
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            p = torch.arange(n, dtype=torch.float64) if positions is None else positions.to(torch.float64)
            columns = []
            for i in range(d // 2):
                theta = (p * math.pow(base, -2 * i / d))[:, None]
                cos, sin = theta.cos().to(x.dtype), theta.sin().to(x.dtype)
                a, b = x[..., 2 * i:2 * i + 1], x[..., 2 * i + 1:2 * i + 2]
                columns += [a * cos - b * sin, a * sin + b * cos]
            return torch.cat(columns, dim=-1)
    """,
    ),
    alternative(
        "apply_rotary_embedding",
        "LLaMA-style float32 frequencies",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            if positions is None:
                positions = torch.arange(n)
            freqs = 1.0 / (base ** (torch.arange(0, d, 2)[: d // 2].float() / d))
            angles = torch.outer(positions.float(), freqs)
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            out = torch.empty_like(x)
            out[..., 0::2] = x[..., 0::2] * cos - x[..., 1::2] * sin
            out[..., 1::2] = x[..., 0::2] * sin + x[..., 1::2] * cos
            return out
    """,
    ),
]

ENTRIES = SINUSOIDAL + ROTARY


# Issue 21's input classes, written from the notebook's docstrings: inputs in any memory layout,
# int32 and int64 positions, sizes beyond a table's, a batch or sequence of one, float64.
INPUT_CLASSES = [
    bug(
        "sinusoidal_positional_encoding",
        "sliced from a table of 5000 positions (the Annotated Transformer's max_len)",
        """
        import torch

        def _table(max_len=5000, d_model=512, base=10000.0):
            angles = torch.arange(max_len)[:, None] / base ** (torch.arange(0, d_model, 2) / d_model)
            return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            return _table(5000, d_model, base)[:num_positions]
    """,
    ),
    alternative(
        "sinusoidal_positional_encoding",
        "outer product in float64, interleaved with a strided assignment",
        """
        import torch

        def sinusoidal_positional_encoding(num_positions, d_model, base=10000.0):
            inv = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
            angles = torch.outer(torch.arange(num_positions, dtype=torch.float64), inv)
            pe = torch.empty(num_positions, d_model, dtype=torch.float64)
            pe[:, 0::2] = angles.sin()
            pe[:, 1::2] = angles.cos()[:, : d_model // 2]
            return pe.float()
    """,
    ),
    bug(
        "apply_rotary_embedding",
        "leading dims flattened with .view",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            positions = torch.arange(n) if positions is None else positions
            angles = positions[:, None].double() * base ** (-torch.arange(0, d, 2).double() / d)
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            flat = x.view(-1, n, d)
            even, odd = flat[..., 0::2], flat[..., 1::2]
            out = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
            return out.view(x.shape)
    """,
        says="view",
    ),
    alternative(
        "apply_rotary_embedding",
        "angles looked up in a table of positions with gather",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            positions = torch.arange(n) if positions is None else positions
            inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            table = torch.arange(int(positions.max()) + 1, dtype=torch.float64)[:, None] * inv
            angles = table.gather(0, positions[:, None].expand(-1, d // 2))
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            even, odd = x[..., 0::2], x[..., 1::2]
            return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
    """,
    ),
    bug(
        "apply_rotary_embedding",
        "rows of an angle table picked with one_hot, which takes int64 positions only",
        """
        import torch
        import torch.nn.functional as F

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            positions = torch.arange(n) if positions is None else positions
            inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            table = torch.arange(int(positions.max()) + 1, dtype=torch.float64)[:, None] * inv
            angles = F.one_hot(positions, table.shape[0]).double() @ table
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            even, odd = x[..., 0::2], x[..., 1::2]
            return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
    """,
        fails=["explicit_positions"],
        says="int64",
    ),
    bug(
        "apply_rotary_embedding",
        "default positions cut from a table of 2048",
        """
        import torch

        POSITIONS = torch.arange(2048)

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            positions = POSITIONS[:n] if positions is None else positions
            angles = positions[:, None].double() * base ** (-torch.arange(0, d, 2).double() / d)
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            even, odd = x[..., 0::2], x[..., 1::2]
            return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
    """,
    ),
    bug(
        "apply_rotary_embedding",
        "positions unsqueezed in place (the caller's tensor changes shape)",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            positions = torch.arange(n) if positions is None else positions
            positions.unsqueeze_(-1)
            angles = positions.double() * base ** (-torch.arange(0, d, 2).double() / d)
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            even, odd = x[..., 0::2], x[..., 1::2]
            return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
    """,
        says="in place",
    ),
    bug(
        "apply_rotary_embedding",
        "squeezed: a sequence of one loses its axis",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            positions = torch.arange(n) if positions is None else positions
            angles = positions[:, None].double() * base ** (-torch.arange(0, d, 2).double() / d)
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            even, odd = x[..., 0::2], x[..., 1::2]
            return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2).squeeze()
    """,
        says="shape",
    ),
    alternative(
        "apply_rotary_embedding",
        "complex multiplication on a contiguous copy",
        """
        import torch

        def apply_rotary_embedding(x, positions=None, base=10000.0):
            n, d = x.shape[-2], x.shape[-1]
            positions = torch.arange(n) if positions is None else positions
            angles = positions.to(torch.float64)[:, None] * base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            pairs = x.contiguous().view(*x.shape[:-1], d // 2, 2).to(torch.float64)
            rotated = torch.view_as_real(torch.view_as_complex(pairs) * torch.polar(torch.ones_like(angles), angles))
            return rotated.flatten(-2).to(x.dtype)
    """,
    ),
]
ENTRIES += INPUT_CLASSES
