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
]

ENTRIES = SINUSOIDAL + ROTARY
