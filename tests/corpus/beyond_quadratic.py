"""Chapter 8 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``)."""

from corpus import alternative, bug

ENTRIES = [
    # sliding_window_mask ---------------------------------------------------------------
    bug(
        "sliding_window_mask",
        "strict inequality",
        """
        import torch

        def sliding_window_mask(n, window, global_positions=()):
            i = torch.arange(n)
            mask = (i[:, None] - i[None, :]).abs() < window
            for g in global_positions:
                mask[g, :] = True
                mask[:, g] = True
            return mask
    """,
        fails=["band_of_width_window"],
        says="one key too narrow",
    ),
    bug(
        "sliding_window_mask",
        "global positions sorted in the caller's list",
        """
        import torch

        def sliding_window_mask(n, window, global_positions=()):
            i = torch.arange(n)
            mask = (i[:, None] - i[None, :]).abs() <= window
            if isinstance(global_positions, list):
                global_positions.sort()  # tidy: globals in order
            for g in global_positions:
                mask[g, :] = True
                mask[:, g] = True
            return mask
    """,
        fails=["global_positions_read_and_are_read"],
        says="changed its argument 3 in place (a list",
    ),
    bug(
        "sliding_window_mask",
        "one-sided band",
        """
        import torch

        def sliding_window_mask(n, window, global_positions=()):
            i = torch.arange(n)
            diff = i[:, None] - i[None, :]
            mask = (diff >= 0) & (diff <= window)
            for g in global_positions:
                mask[g, :] = True
                mask[:, g] = True
            return mask
    """,
        fails=["band_of_width_window"],
        says="both sides",
    ),
    bug(
        "sliding_window_mask",
        "globals only as queries",
        """
        import torch

        def sliding_window_mask(n, window, global_positions=()):
            i = torch.arange(n)
            mask = (i[:, None] - i[None, :]).abs() <= window
            for g in global_positions:
                mask[g, :] = True
            return mask
    """,
        fails=["global_positions_read_and_are_read"],
        says="its column is missing",
    ),
    bug(
        "sliding_window_mask",
        "global positions as a list index only",
        """
        import torch

        def sliding_window_mask(n, window, global_positions=()):
            i = torch.arange(n)
            mask = (i[:, None] - i[None, :]).abs() <= window
            if isinstance(global_positions, list):
                mask[global_positions, :] = True
                mask[:, global_positions] = True
            return mask
    """,
        fails=["global_positions_read_and_are_read"],
        says="global positions are ignored",
    ),
    bug(
        "sliding_window_mask",
        "int mask",
        """
        import torch

        def sliding_window_mask(n, window, global_positions=()):
            i = torch.arange(n)
            mask = ((i[:, None] - i[None, :]).abs() <= window).int()
            for g in global_positions:
                mask[g, :] = 1
                mask[:, g] = 1
            return mask
    """,
        fails=["bool_square_shape"],
        says="bool",
    ),
    alternative(
        "sliding_window_mask",
        "triu and tril",
        """
        import torch

        def sliding_window_mask(n, window, global_positions=()):
            ones = torch.ones(n, n, dtype=torch.bool)
            mask = ones.triu(-window) & ones.tril(window)
            g = torch.zeros(n, dtype=torch.bool)
            g[torch.as_tensor(list(global_positions), dtype=torch.long)] = True
            return mask | g.unsqueeze(0) | g.unsqueeze(1)
    """,
    ),
    alternative(
        "sliding_window_mask",
        "python lists",
        """
        import torch

        def sliding_window_mask(n, window, global_positions=()):
            special = set(global_positions)
            rows = [[abs(i - j) <= window or i in special or j in special for j in range(n)] for i in range(n)]
            return torch.tensor(rows, dtype=torch.bool).reshape(n, n)
    """,
    ),
    bug(
        "sliding_window_mask",
        "the band cut from a fixed 1024 x 1024 table",
        """
        import torch

        _DISTANCE = (torch.arange(1024)[:, None] - torch.arange(1024)[None, :]).abs()

        def sliding_window_mask(n, window, global_positions=()):
            mask = _DISTANCE[:n, :n] <= window
            for g in global_positions:
                mask[g, :] = True
                mask[:, g] = True
            return mask
    """,
        fails=["band_of_width_window"],
        says="has shape (1024, 1024)",
    ),
    # positive_random_features ----------------------------------------------------------
    bug(
        "positive_random_features",
        "no 1/sqrt(m)",
        """
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.T - (x ** 2).sum(-1, keepdim=True) / 2)
    """,
        fails=["matches_definition", "estimates_the_softmax_kernel"],
        says="not divided by sqrt(m)",
    ),
    bug(
        "positive_random_features",
        "norm instead of squared norm",
        """
        import torch, math

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.T - x.norm(dim=-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])
    """,
        fails=["matches_definition"],
        says="squared norm",
    ),
    bug(
        "positive_random_features",
        "trigonometric features",
        """
        import torch, math

        def positive_random_features(x, omega):
            proj = x @ omega.T
            m = omega.shape[0]
            scale = torch.exp((x ** 2).sum(-1, keepdim=True) / 2) / math.sqrt(m)
            return scale * torch.cos(proj)
    """,
        fails=["matches_definition"],
    ),
    bug(
        "positive_random_features",
        "divides by m",
        """
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.T - (x ** 2).sum(-1, keepdim=True) / 2) / omega.shape[0]
    """,
        fails=["matches_definition"],
        says="divided by m",
    ),
    alternative(
        "positive_random_features",
        "log-space then exp, float64",
        """
        import torch, math

        def positive_random_features(x, omega):
            log_phi = torch.matmul(x.double(), omega.double().transpose(0, 1))
            log_phi = log_phi - 0.5 * torch.linalg.vector_norm(x.double(), dim=-1, keepdim=True) ** 2
            log_phi = log_phi - 0.5 * math.log(omega.shape[0])
            return log_phi.exp()
    """,
    ),
    alternative(
        "positive_random_features",
        "einsum",
        """
        import torch

        def positive_random_features(x, omega):
            m = omega.shape[0]
            return torch.exp(torch.einsum("...d,md->...m", x, omega) - torch.einsum("...d,...d->...", x, x)[..., None] / 2) / m ** 0.5
    """,
    ),
    bug(
        "positive_random_features",
        "exp(x omega^T) * exp(-|x|^2 / 2): each factor overflows for a large |x|",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            norm = torch.exp(-(x * x).sum(-1, keepdim=True) / 2)
            return torch.exp(x @ omega.T) * norm / math.sqrt(omega.shape[0])
    """,
        fails=["matches_definition"],
        says="subtract in the exponent and take exp once",
    ),
    # performer_attention ---------------------------------------------------------------
    bug(
        "performer_attention",
        "no d^(-1/4) scaling",
        """
        import math, torch

        def _phi(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            qf = _phi(q, omega)
            kf = _phi(k, omega)
            return (qf @ (kf.transpose(-2, -1) @ v)) / (qf @ kf.sum(-2).unsqueeze(-1))
    """,
        fails=["matches_reference_for_the_same_features"],
        says="not scaled by d^(-1/4)",
    ),
    bug(
        "performer_attention",
        "quadratic order of multiplication",
        """
        import math, torch

        def _phi(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            s = q.shape[-1] ** -0.25
            qf = _phi(q * s, omega)
            kf = _phi(k * s, omega)
            a = qf @ kf.transpose(-2, -1)
            return (a @ v) / a.sum(-1, keepdim=True)
    """,
        fails=("never_forms_the_score_matrix",),
        says="the matrix the Performer exists to avoid",
    ),
    bug(
        "performer_attention",
        "quadratic order, a block of queries at a time (never the whole score matrix)",
        """
        import math, torch

        def _phi(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            s = q.shape[-1] ** -0.25
            qf, kf = _phi(q * s, omega), _phi(k * s, omega)
            rows = []
            for start in range(0, q.shape[-2], 8):
                a = qf[..., start : start + 8, :] @ kf.transpose(-2, -1)
                rows.append((a @ v) / a.sum(-1, keepdim=True))
            return torch.cat(rows, dim=-2)
    """,
        fails=["never_forms_the_score_matrix"],
        says="pairs every query with every key",
    ),
    bug(
        "performer_attention",
        "einsum over every query-key pair, a query at a time",
        """
        import math, torch

        def _phi(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            s = q.shape[-1] ** -0.25
            qf, kf = _phi(q * s, omega), _phi(k * s, omega)
            out = []
            for i in range(q.shape[-2]):
                w = (qf[..., i, None, :] * kf).sum(-1)  # (..., N_k): this query against every key
                out.append(torch.einsum("...k,...kd->...d", w, v) / w.sum(-1, keepdim=True))
            return torch.stack(out, dim=-2)
    """,
        fails=["never_forms_the_score_matrix"],
        says="Multiply k'^T v (m x d_v) first",  # its memory or its CPU time may be what gives it away
    ),
    bug(
        "performer_attention",
        "not normalized",
        """
        import math, torch

        def _phi(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            s = q.shape[-1] ** -0.25
            qf = _phi(q * s, omega)
            kf = _phi(k * s, omega)
            return qf @ (kf.transpose(-2, -1) @ v)
    """,
        fails=["matches_reference_for_the_same_features"],
        says="not normalized",
    ),
    bug(
        "performer_attention",
        "exact softmax attention instead",
        """
        import torch

        import math, torch

        def _phi(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1) @ v
    """,
        fails=["matches_reference_for_the_same_features", "never_forms_the_score_matrix"],
    ),
    bug(
        "performer_attention",
        "uses only the first 8 features",
        """
        import math, torch

        def _phi(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            omega = omega[:8]
            s = q.shape[-1] ** -0.25
            qf = _phi(q * s, omega)
            kf = _phi(k * s, omega)
            return (qf @ (kf.transpose(-2, -1) @ v)) / (qf @ kf.sum(-2).unsqueeze(-1))
    """,
        fails=["matches_reference_for_the_same_features", "error_shrinks_as_features_grow"],
        says="are all the features of omega used?",
    ),
    alternative(
        "performer_attention",
        "einsum, normalizer appended to v",
        """
        import torch

        import math, torch

        def _phi(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            d = q.shape[-1]
            qf = _phi(q / d ** 0.25, omega)
            kf = _phi(k / d ** 0.25, omega)
            v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
            out = torch.einsum("...qm,...mv->...qv", qf, torch.einsum("...km,...kv->...mv", kf, v1))
            return out[..., :-1] / out[..., -1:]
    """,
    ),
    alternative(
        "performer_attention",
        "float64 with the features computed inline",
        """
        import torch, math

        import math, torch

        def _phi(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            q, k, v, omega = q.double(), k.double(), v.double(), omega.double()
            q = q * q.shape[-1] ** -0.25
            k = k * k.shape[-1] ** -0.25
            m = omega.shape[0]
            qf = torch.exp(q @ omega.T - (q * q).sum(-1, keepdim=True) / 2) / math.sqrt(m)
            kf = torch.exp(k @ omega.T - (k * k).sum(-1, keepdim=True) / 2) / math.sqrt(m)
            numerator = qf @ (kf.transpose(-1, -2) @ v)
            denominator = (qf * kf.sum(-2, keepdim=True)).sum(-1, keepdim=True)
            return (numerator / denominator).float()
    """,
    ),
    # training_flops ---------------------------------------------------------------------
    bug(
        "training_flops",
        "forward only",
        """
        def training_flops(n_params, n_tokens):
            return 2 * n_params * n_tokens
    """,
        fails=["six_flops_per_parameter_per_token"],
        says="only the forward pass",
    ),
    bug(
        "training_flops",
        "one per parameter and token",
        """
        def training_flops(n_params, n_tokens):
            return n_params * n_tokens
    """,
        fails=["six_flops_per_parameter_per_token"],
    ),
    bug(
        "training_flops",
        "hard-coded GPT-3 answer",
        """
        def training_flops(n_params, n_tokens):
            return 3.15e23
    """,
        fails=["six_flops_per_parameter_per_token"],
    ),
    bug(
        "training_flops",
        "returns a string",
        """
        def training_flops(n_params, n_tokens):
            return f"{6 * n_params * n_tokens:.3g}"
    """,
        fails=["six_flops_per_parameter_per_token"],
        says="should be a number",
    ),
    alternative(
        "training_flops",
        "tensor arithmetic",
        """
        import torch

        def training_flops(n_params, n_tokens):
            return (torch.tensor(n_params, dtype=torch.float64) * n_tokens * 6).item()
    """,
    ),
    alternative(
        "training_flops",
        "sum of passes",
        """
        def training_flops(n_params, n_tokens):
            per_token = 2 * n_params + 4 * n_params
            return per_token * n_tokens
    """,
    ),
    bug(
        "training_flops",
        "a one-element tensor of shape (1,)",
        """
        import torch

        def training_flops(n_params, n_tokens):
            return torch.tensor([6.0]) * n_params * n_tokens
    """,
        fails=["six_flops_per_parameter_per_token"],
        says="got a tensor of shape (1,)",
    ),
    # chinchilla_optimal -----------------------------------------------------------------
    bug(
        "chinchilla_optimal",
        "forgets the 6",
        """
        import math

        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n = math.sqrt(compute / tokens_per_parameter)
            return n, tokens_per_parameter * n
    """,
        fails=["compute_is_six_n_d_with_d_equal_r_n"],
        says="leaves out the 6",
    ),
    bug(
        "chinchilla_optimal",
        "ratio inverted",
        """
        import math

        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n = math.sqrt(compute * tokens_per_parameter / 6)
            return n, n / tokens_per_parameter
    """,
        fails=["compute_is_six_n_d_with_d_equal_r_n"],
        says="ratio is inverted",
    ),
    bug(
        "chinchilla_optimal",
        "pair swapped",
        """
        import math

        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n = math.sqrt(compute / (6 * tokens_per_parameter))
            return tokens_per_parameter * n, n
    """,
        fails=["compute_is_six_n_d_with_d_equal_r_n"],
        says="swapped",
    ),
    bug(
        "chinchilla_optimal",
        "default ratio 10",
        """
        import math

        def chinchilla_optimal(compute, tokens_per_parameter=10.0):
            n = math.sqrt(compute / (6 * tokens_per_parameter))
            return n, tokens_per_parameter * n
    """,
        fails=["default_ratio_is_twenty"],
    ),
    alternative(
        "chinchilla_optimal",
        "solve for tokens first",
        """
        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n_tokens = (compute * tokens_per_parameter / 6) ** 0.5
            return n_tokens / tokens_per_parameter, n_tokens
    """,
    ),
    alternative(
        "chinchilla_optimal",
        "as a list, via torch",
        """
        import torch

        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n = torch.sqrt(torch.tensor(compute / (6.0 * tokens_per_parameter), dtype=torch.float64))
            return [n, n * tokens_per_parameter]
    """,
    ),
    bug(
        "chinchilla_optimal",
        "rounds the counts to whole parameters and tokens",
        """
        import math

        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n_params = round(math.sqrt(compute / (6 * tokens_per_parameter)))
            return n_params, round(tokens_per_parameter * n_params)
    """,
        fails=["compute_is_six_n_d_with_d_equal_r_n"],
        says="rounded to a whole number",
    ),
    alternative(
        "chinchilla_optimal",
        "0-dim float64 tensors",
        """
        import torch

        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n_params = torch.sqrt(torch.tensor(compute, dtype=torch.float64) / (6 * tokens_per_parameter))
            return n_params, tokens_per_parameter * n_params
    """,
    ),
    # fit_power_law ----------------------------------------------------------------------
    bug(
        "fit_power_law",
        "returns the log intercept",
        """
        import numpy as np

        def fit_power_law(sizes, losses):
            slope, intercept = np.polyfit(np.log(sizes), np.log(losses), 1)
            return intercept, -slope
    """,
        fails=["recovers_an_exact_power_law", "least_squares_in_log_space"],
        says="exponentiate",
    ),
    bug(
        "fit_power_law",
        "alpha is the slope",
        """
        import numpy as np

        def fit_power_law(sizes, losses):
            slope, intercept = np.polyfit(np.log(sizes), np.log(losses), 1)
            return float(np.exp(intercept)), float(slope)
    """,
        fails=["recovers_an_exact_power_law"],
        says="wrong sign",
    ),
    bug(
        "fit_power_law",
        "two-point fit",
        """
        import math

        def fit_power_law(sizes, losses):
            sizes, losses = [float(s) for s in sizes], [float(l) for l in losses]
            alpha = -(math.log(losses[-1]) - math.log(losses[0])) / (math.log(sizes[-1]) - math.log(sizes[0]))
            return losses[0] * sizes[0] ** alpha, alpha
    """,
        fails=["least_squares_in_log_space"],
    ),
    bug(
        "fit_power_law",
        "losses not logged",
        """
        import numpy as np

        def fit_power_law(sizes, losses):
            slope, intercept = np.polyfit(np.log(np.asarray(sizes, dtype=float)), np.asarray(losses, dtype=float), 1)
            return float(np.exp(intercept)), -float(slope)
    """,
        fails=["recovers_an_exact_power_law"],
        says="not log-transformed",
    ),
    alternative(
        "fit_power_law",
        "normal equations in torch",
        """
        import torch

        def fit_power_law(sizes, losses):
            x = torch.as_tensor(sizes, dtype=torch.float64).log()
            y = torch.as_tensor(losses, dtype=torch.float64).log()
            design = torch.stack([torch.ones_like(x), x], dim=1)
            coef = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
            return coef[0].exp().item(), -coef[1].item()
    """,
    ),
    alternative(
        "fit_power_law",
        "log10 throughout",
        """
        import numpy as np

        def fit_power_law(sizes, losses):
            slope, intercept = np.polyfit(np.log10(np.asarray(sizes, dtype=float)),
                                          np.log10(np.asarray(losses, dtype=float)), 1)
            return 10 ** intercept, -slope
    """,
    ),
    # --- red team: more answers -----------------------------------------------------------------
    bug(
        "sliding_window_mask",
        "global columns only",
        """
        import torch

        def sliding_window_mask(n, window, global_positions=()):
            i = torch.arange(n)
            mask = (i[:, None] - i[None, :]).abs() <= window
            for p in global_positions:
                mask[:, p] = True
            return mask
    """,
        fails=("global_positions_read_and_are_read",),
        says="its row is missing",
    ),
    bug(
        "sliding_window_mask",
        "window read as the total width",
        """
        import torch

        def sliding_window_mask(n, window, global_positions=()):
            i = torch.arange(n)
            mask = (i[:, None] - i[None, :]).abs() <= window // 2
            for p in global_positions:
                mask[p, :] = True
                mask[:, p] = True
            return mask
    """,
        fails=("band_of_width_window",),
        says="differs from the expected value",
    ),
    bug(
        "sliding_window_mask",
        "tril and triu swapped",
        """
        import torch

        def sliding_window_mask(n, window, global_positions=()):
            ones = torch.ones(n, n, dtype=torch.bool)
            mask = ones.tril(-window) & ones.triu(window)
            for p in global_positions:
                mask[p, :] = True
                mask[:, p] = True
            return mask
    """,
        fails=("band_of_width_window", "window_zero_and_window_beyond_n"),
        says="sliding_window_mask(",
    ),
    alternative(
        "sliding_window_mask",
        "tril and triu",
        """
        import torch

        def sliding_window_mask(n, window, global_positions=()):
            ones = torch.ones(n, n, dtype=torch.bool)
            mask = ones.tril(window) & ones.triu(-window)
            for p in global_positions:
                mask[p, :] = True
                mask[:, p] = True
            return mask
    """,
    ),
    alternative(
        "sliding_window_mask",
        "cdist of positions",
        """
        import torch

        def sliding_window_mask(n, window, global_positions=()):
            pos = torch.arange(n, dtype=torch.float64)[:, None]
            mask = torch.cdist(pos, pos, p=1) <= window
            g = torch.isin(torch.arange(n), torch.tensor(list(global_positions), dtype=torch.int64))
            return mask | g.unsqueeze(0) | g.unsqueeze(1)
    """,
    ),
    bug(
        "positive_random_features",
        "sqrt of d, not m",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[1])
    """,
        fails=("matches_definition", "estimates_the_softmax_kernel"),
        says="differs from the expected value",
    ),
    bug(
        "positive_random_features",
        "norm over the sequence axis",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-2, keepdim=True) / 2) / math.sqrt(omega.shape[0])
    """,
        fails=("shape_batch_by_features", "matches_definition"),
        says="RuntimeError",
    ),
    bug(
        "positive_random_features",
        "norm without the half",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True)) / math.sqrt(omega.shape[0])
    """,
        fails=("matches_definition",),
        says="it should subtract |x|^2 / 2",
    ),
    bug(
        "positive_random_features",
        "omega not transposed",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])
    """,
        fails=("shape_batch_by_features", "matches_definition"),
        says="RuntimeError",
    ),
    bug(
        "positive_random_features",
        "norm without keepdim",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-1) / 2) / math.sqrt(omega.shape[0])
    """,
        fails=("shape_batch_by_features", "matches_definition"),
        says="RuntimeError",
    ),
    bug(
        "positive_random_features",
        "exponentials divided separately (overflow)",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.T) / torch.exp((x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])
    """,
        fails=("matches_definition",),
        says="overflow on their own",
    ),
    bug(
        "positive_random_features",
        "torch.mm: 2-D only",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(torch.mm(x, omega.t()) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])
    """,
        fails=("shape_batch_by_features",),
        says="self must be a matrix",
    ),
    alternative(
        "positive_random_features",
        "float64 inside, vector_norm",
        """
        import torch

        def positive_random_features(x, omega):
            xd, od = x.double(), omega.double()
            sq = torch.linalg.vector_norm(xd, dim=-1, keepdim=True) ** 2
            return (torch.exp(xd @ od.mT - sq / 2) * od.shape[0] ** -0.5).to(x.dtype)
    """,
    ),
    alternative(
        "positive_random_features",
        "matmul with omega.mT, rsqrt",
        """
        import torch

        def positive_random_features(x, omega):
            m = torch.tensor(float(omega.shape[0]), dtype=x.dtype)
            return torch.exp(torch.matmul(x, omega.mT) - (x ** 2).sum(dim=-1).unsqueeze(-1) / 2) * torch.rsqrt(m)
    """,
    ),
    bug(
        "performer_attention",
        "d^-1/2 on both",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            s = q.shape[-1] ** -0.5
            qf = positive_random_features(q * s, omega)
            kf = positive_random_features(k * s, omega)
            return (qf @ (kf.transpose(-2, -1) @ v)) / (qf @ kf.sum(-2).unsqueeze(-1))
    """,
        fails=("matches_reference_for_the_same_features",),
        says="each scaled by 1/sqrt(d)",
    ),
    bug(
        "performer_attention",
        "scale from d_v",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            s = v.shape[-1] ** -0.25
            qf = positive_random_features(q * s, omega)
            kf = positive_random_features(k * s, omega)
            return (qf @ (kf.transpose(-2, -1) @ v)) / (qf @ kf.sum(-2).unsqueeze(-1))
    """,
        fails=("matches_reference_for_the_same_features",),
        says="differs from the expected value",
    ),
    bug(
        "performer_attention",
        "d^-1/2 on the queries only",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            qf = positive_random_features(q * q.shape[-1] ** -0.5, omega)
            kf = positive_random_features(k, omega)
            return (qf @ (kf.transpose(-2, -1) @ v)) / (qf @ kf.sum(-2).unsqueeze(-1))
    """,
        fails=("matches_reference_for_the_same_features",),
        says="differs from the expected value",
    ),
    bug(
        "performer_attention",
        "normaliser sums the features",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            s = q.shape[-1] ** -0.25
            qf = positive_random_features(q * s, omega)
            kf = positive_random_features(k * s, omega)
            return (qf @ (kf.transpose(-2, -1) @ v)) / (qf.sum(-1, keepdim=True) * kf.sum(-1).sum(-1)[..., None, None])
    """,
        fails=("matches_reference_for_the_same_features",),
        says="differs from the expected value",
    ),
    bug(
        "performer_attention",
        "normaliser without unsqueeze",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            s = q.shape[-1] ** -0.25
            qf = positive_random_features(q * s, omega)
            kf = positive_random_features(k * s, omega)
            return (qf @ (kf.transpose(-2, -1) @ v)) / (qf @ kf.sum(-2))
    """,
        fails=("output_shape", "matches_reference_for_the_same_features"),
        says="RuntimeError",
    ),
    bug(
        "performer_attention",
        "draws its own omega",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            s = q.shape[-1] ** -0.25
            omega = torch.randn(omega.shape)
            qf = positive_random_features(q * s, omega)
            kf = positive_random_features(k * s, omega)
            return (qf @ (kf.transpose(-2, -1) @ v)) / (qf @ kf.sum(-2).unsqueeze(-1))
    """,
        fails=("matches_reference_for_the_same_features",),
        says="differs from the expected value",
    ),
    bug(
        "performer_attention",
        "exact softmax attention in row blocks",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            d = q.shape[-1]
            rows = []
            for start in range(0, q.shape[-2], 1):
                scores = q[..., start:start + 1, :] @ k.transpose(-2, -1) / math.sqrt(d)
                rows.append(torch.softmax(scores, dim=-1) @ v)
            return torch.cat(rows, dim=-2)
    """,
        fails=("matches_reference_for_the_same_features", "never_forms_the_score_matrix"),
        says="it is exact softmax attention",
    ),
    bug(
        "performer_attention",
        "exact softmax attention in key blocks (online softmax)",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            d = q.shape[-1]
            n_k = k.shape[-2]
            out = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
            top = torch.full((*q.shape[:-1], 1), -math.inf, dtype=q.dtype)
            total = torch.zeros((*q.shape[:-1], 1), dtype=q.dtype)
            for j in range(n_k):
                s = (q * k[..., j:j + 1, :]).sum(-1, keepdim=True) / math.sqrt(d)
                new_top = torch.maximum(top, s)
                scale = torch.exp(top - new_top)
                e = torch.exp(s - new_top)
                out = out * scale + e * v[..., j:j + 1, :]
                total = total * scale + e
                top = new_top
            return out / total
    """,
        fails=("matches_reference_for_the_same_features", "never_forms_the_score_matrix"),
        says="it is exact softmax attention",
    ),
    bug(
        "performer_attention",
        "uniform average of the values",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            return v.mean(-2, keepdim=True).expand(*q.shape[:-1], v.shape[-1]).clone()
    """,
        fails=("matches_reference_for_the_same_features", "error_shrinks_as_features_grow"),
        says="it should shrink about as 1/sqrt(m)",
    ),
    bug(
        "performer_attention",
        "features detached",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            s = q.shape[-1] ** -0.25
            qf = positive_random_features(q * s, omega).detach()
            kf = positive_random_features(k * s, omega).detach()
            return (qf @ (kf.transpose(-2, -1) @ v)) / (qf @ kf.sum(-2).unsqueeze(-1))
    """,
        fails=("matches_reference_for_the_same_features",),
        says="no gradient reaches q",
    ),
    alternative(
        "performer_attention",
        "log-space features with cancelling stabilisers",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            d = q.shape[-1]
            qs, ks = q * d ** -0.25, k * d ** -0.25
            lq = qs @ omega.T - (qs * qs).sum(-1, keepdim=True) / 2
            lk = ks @ omega.T - (ks * ks).sum(-1, keepdim=True) / 2
            qf = torch.exp(lq - lq.amax(-1, keepdim=True))
            kf = torch.exp(lk - lk.amax(dim=(-2, -1), keepdim=True))
            kv = kf.transpose(-2, -1) @ v
            return (qf @ kv) / (qf @ kf.sum(-2, keepdim=True).transpose(-2, -1))
    """,
    ),
    alternative(
        "performer_attention",
        "float64, keys accumulated in chunks",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            scale = q.shape[-1] ** -0.25
            qf = positive_random_features(q.double() * scale, omega.double())
            kf = positive_random_features(k.double() * scale, omega.double())
            vd = v.double()
            kv = torch.zeros(*kf.shape[:-2], kf.shape[-1], v.shape[-1], dtype=torch.float64)
            ksum = torch.zeros(*kf.shape[:-2], kf.shape[-1], dtype=torch.float64)
            for start in range(0, k.shape[-2], 3):
                block = kf[..., start:start + 3, :]
                kv = kv + block.transpose(-2, -1) @ vd[..., start:start + 3, :]
                ksum = ksum + block.sum(-2)
            out = (qf @ kv) / (qf * ksum.unsqueeze(-2)).sum(-1, keepdim=True)
            return out.to(v.dtype)
    """,
    ),
    bug(
        "training_flops",
        "6N + D",
        """
        def training_flops(n_params, n_tokens):
            return 6 * n_params + n_tokens
    """,
        fails=("six_flops_per_parameter_per_token",),
        says="expected 3.15e+23",
    ),
    bug(
        "training_flops",
        "in petaflops",
        """
        def training_flops(n_params, n_tokens):
            return 6 * n_params * n_tokens / 1e15
    """,
        fails=("six_flops_per_parameter_per_token",),
        says="expected 3.15e+23",
    ),
    bug(
        "training_flops",
        "8ND",
        """
        def training_flops(n_params, n_tokens):
            return 8 * n_params * n_tokens
    """,
        fails=("six_flops_per_parameter_per_token",),
        says="expected 3.15e+23",
    ),
    bug(
        "training_flops",
        "3ND (backward counted once)",
        """
        def training_flops(n_params, n_tokens):
            return 3 * n_params * n_tokens
    """,
        fails=("six_flops_per_parameter_per_token",),
        says="expected 3.15e+23",
    ),
    alternative(
        "training_flops",
        "math.prod",
        """
        import math

        def training_flops(n_params, n_tokens):
            return float(math.prod((6, n_params, n_tokens)))
    """,
    ),
    alternative(
        "training_flops",
        "numpy product",
        """
        import numpy as np

        def training_flops(n_params, n_tokens):
            return float(np.float64(n_params) * np.float64(n_tokens) * 6)
    """,
    ),
    bug(
        "chinchilla_optimal",
        "r outside the root",
        """
        import math

        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n = math.sqrt(compute / 6) / tokens_per_parameter
            return n, tokens_per_parameter * n
    """,
        fails=("compute_is_six_n_d_with_d_equal_r_n", "default_ratio_is_twenty"),
        says="n_params of chinchilla_optimal",
    ),
    bug(
        "chinchilla_optimal",
        "no square root",
        """
        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n = compute / (6 * tokens_per_parameter)
            return n, tokens_per_parameter * n
    """,
        fails=("compute_is_six_n_d_with_d_equal_r_n",),
        says="take the square root",
    ),
    bug(
        "chinchilla_optimal",
        "ratio hard-coded",
        """
        import math

        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n = math.sqrt(compute / 120)
            return n, 20 * n
    """,
        fails=("compute_is_six_n_d_with_d_equal_r_n",),
        says="the tokens_per_parameter argument is ignored",
    ),
    bug(
        "chinchilla_optimal",
        "r multiplies inside the root",
        """
        import math

        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n = math.sqrt(compute * tokens_per_parameter / 6)
            return n, tokens_per_parameter * n
    """,
        fails=("compute_is_six_n_d_with_d_equal_r_n", "default_ratio_is_twenty"),
        says="n_params of chinchilla_optimal",
    ),
    bug(
        "chinchilla_optimal",
        "precedence: C / sqrt(6r)",
        """
        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n = compute / (6 * tokens_per_parameter) ** 0.5
            return n, tokens_per_parameter * n
    """,
        fails=("compute_is_six_n_d_with_d_equal_r_n", "default_ratio_is_twenty"),
        says="n_params of chinchilla_optimal",
    ),
    alternative(
        "chinchilla_optimal",
        "numpy",
        """
        import numpy as np

        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n = np.sqrt(np.float64(compute) / 6.0 / tokens_per_parameter)
            return float(n), float(n * tokens_per_parameter)
    """,
    ),
    alternative(
        "chinchilla_optimal",
        "power one half",
        """
        def chinchilla_optimal(compute, tokens_per_parameter=20.0):
            n_params = (compute / 6 / tokens_per_parameter) ** 0.5
            return n_params, n_params * tokens_per_parameter
    """,
    ),
    bug(
        "fit_power_law",
        "polyfit's coefficients unpacked in the wrong order",
        """
        import numpy as np

        def fit_power_law(sizes, losses):
            intercept, slope = np.polyfit(np.log(np.asarray(sizes, dtype=float)), np.log(np.asarray(losses, dtype=float)), 1)
            return float(np.exp(intercept)), float(-slope)
    """,
        fails=("recovers_an_exact_power_law", "least_squares_in_log_space"),
        says="alpha of fit_power_law",
    ),
    bug(
        "fit_power_law",
        "log10 fit, e^intercept",
        """
        import numpy as np

        def fit_power_law(sizes, losses):
            slope, intercept = np.polyfit(np.log10(np.asarray(sizes, dtype=float)), np.log10(np.asarray(losses, dtype=float)), 1)
            return float(np.exp(intercept)), float(-slope)
    """,
        fails=("recovers_an_exact_power_law",),
        says="exponentiated with e",
    ),
    bug(
        "fit_power_law",
        "regresses log size on log loss",
        """
        import numpy as np

        def fit_power_law(sizes, losses):
            x = np.log(np.asarray(sizes, dtype=float))
            y = np.log(np.asarray(losses, dtype=float))
            slope, intercept = np.polyfit(y, x, 1)
            alpha = -1 / slope
            return float(np.exp(-intercept / slope)), float(alpha)
    """,
        fails=("least_squares_in_log_space",),
        says="alpha of fit_power_law",
    ),
    bug(
        "fit_power_law",
        "sorts sizes only",
        """
        import numpy as np

        def fit_power_law(sizes, losses):
            sizes = sorted(float(s) for s in sizes)
            slope, intercept = np.polyfit(np.log(sizes), np.log(np.asarray(losses, dtype=float)), 1)
            return float(np.exp(intercept)), float(-slope)
    """,
        fails=("least_squares_in_log_space",),
        says="without their losses",
    ),
    bug(
        "fit_power_law",
        "mean of consecutive slopes",
        """
        import math

        def fit_power_law(sizes, losses):
            xs = [math.log(float(s)) for s in sizes]
            ys = [math.log(float(l)) for l in losses]
            slopes = [(ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]) for i in range(len(xs) - 1)]
            slope = sum(slopes) / len(slopes)
            intercept = sum(ys) / len(ys) - slope * sum(xs) / len(xs)
            return math.exp(intercept), -slope
    """,
        fails=("least_squares_in_log_space",),
        says="alpha of fit_power_law",
    ),
    alternative(
        "fit_power_law",
        "torch.linalg.lstsq",
        """
        import torch

        def fit_power_law(sizes, losses):
            x = torch.log(torch.as_tensor(sizes, dtype=torch.float64).reshape(-1))
            y = torch.log(torch.as_tensor(losses, dtype=torch.float64).reshape(-1, 1))
            design = torch.stack([torch.ones_like(x), x], dim=1)
            coef = torch.linalg.lstsq(design, y).solution[:, 0]
            return float(coef[0].exp()), float(-coef[1])
    """,
    ),
    alternative(
        "fit_power_law",
        "statistics.linear_regression",
        """
        import math
        import statistics

        def fit_power_law(sizes, losses):
            xs = [math.log(float(s)) for s in sizes]
            ys = [math.log(float(l)) for l in losses]
            slope, intercept = statistics.linear_regression(xs, ys)
            return math.exp(intercept), -slope
    """,
    ),
    alternative(
        "positive_random_features",
        "einsum, scale inside the exponent",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            proj = torch.einsum("...nd,md->...nm", x, omega)
            return torch.exp(proj - 0.5 * x.pow(2).sum(-1, keepdim=True) - 0.5 * math.log(omega.shape[0]))
    """,
    ),
    alternative(
        "performer_attention",
        "einsum, values augmented with a ones column",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])

        def performer_attention(q, k, v, omega):
            scale = q.shape[-1] ** -0.25
            qf = positive_random_features(q * scale, omega)
            kf = positive_random_features(k * scale, omega)
            ones = torch.ones(*v.shape[:-1], 1, dtype=v.dtype)
            both = torch.einsum("...nm,...nv->...mv", kf, torch.cat([v, ones], dim=-1))
            out = torch.einsum("...qm,...mv->...qv", qf, both)
            return out[..., :-1] / out[..., -1:]
    """,
    ),
    bug(
        "performer_attention",
        "points without the work: the quadratic order in NumPy",
        """
        import numpy as np
        import torch

        def performer_attention(q, k, v, omega):
            qn, kn, vn, w = (t.detach().numpy().astype(np.float64) for t in (q, k, v, omega))
            scale = qn.shape[-1] ** -0.25

            def phi(x):
                x = x * scale
                return np.exp(x @ w.T - (x * x).sum(-1, keepdims=True) / 2) / np.sqrt(w.shape[0])

            a = phi(qn) @ np.swapaxes(phi(kn), -1, -2)
            return torch.from_numpy(a @ vn / a.sum(-1, keepdims=True)).to(q.dtype)
    """,
        fails=("never_forms_the_score_matrix",),
        says="the matrix the Performer exists to avoid",
    ),
    bug(
        "performer_attention",
        "points without the work: the quadratic order in a worker thread",
        """
        from concurrent.futures import ThreadPoolExecutor

        import torch

        def positive_random_features(x, omega):
            return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / omega.shape[0] ** 0.5

        def _quadratic(q, k, v, omega):
            scale = q.shape[-1] ** -0.25
            a = positive_random_features(q * scale, omega) @ positive_random_features(k * scale, omega).transpose(-2, -1)
            return a @ v / a.sum(-1, keepdim=True)

        def performer_attention(q, k, v, omega):
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(_quadratic, q, k, v, omega).result()
    """,
        fails=("never_forms_the_score_matrix",),
        says="the matrix the Performer exists to avoid",
    ),
    bug(
        "performer_attention",
        "points without the work: the quadratic order compiled under torch's own file name",
        r"""
        import math
        import torch

        # Code compiled under a file name of torch's looked like torch's own code to the old recorders.
        _SOURCE = "def _quadratic(q, k, v, omega):\n    s = q.shape[-1] ** -0.25\n    def phi(x):\n        return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.shape[0])\n    a = phi(q * s) @ phi(k * s).transpose(-2, -1)\n    return (a @ v) / a.sum(-1, keepdim=True)\n"
        exec(compile(_SOURCE, torch.__file__, "exec"), globals())

        def performer_attention(q, k, v, omega):
            return _quadratic(q, k, v, omega)
    """,
        fails=("never_forms_the_score_matrix",),
        says="the matrix the Performer exists to avoid",
    ),
    # --- input classes: layouts, gradients asked for one input at a time ----------------------
    bug(
        "positive_random_features",
        "rows flattened with .view (a transposed or sliced x cannot be viewed)",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            d, m = x.shape[-1], omega.shape[0]
            rows = x.view(-1, d)
            phi = torch.exp(rows @ omega.T - (rows * rows).sum(-1, keepdim=True) / 2) / math.sqrt(m)
            return phi.view(*x.shape[:-1], m)
    """,
        fails=("matches_definition",),
        says="not contiguous",
    ),
    bug(
        "positive_random_features",
        "exp_ in place, then divided in place (autograd kept the exponential)",
        """
        import math
        import torch

        def positive_random_features(x, omega):
            phi = (x @ omega.transpose(-2, -1) - (x * x).sum(-1, keepdim=True) / 2).exp_()
            phi /= math.sqrt(omega.shape[0])
            return phi
    """,
        fails=("matches_definition",),
        says="in-place operation",
    ),
    bug(
        "performer_attention",
        "features of the flattened rows with .view",
        """
        import math
        import torch

        def performer_attention(q, k, v, omega):
            d, m = q.shape[-1], omega.shape[0]

            def features(x):
                rows = x.view(-1, d) * d**-0.25
                phi = torch.exp(rows @ omega.T - (rows * rows).sum(-1, keepdim=True) / 2) / math.sqrt(m)
                return phi.view(*x.shape[:-1], m)

            qf, kf = features(q), features(k)
            return (qf @ (kf.transpose(-2, -1) @ v)) / (qf @ kf.sum(-2).unsqueeze(-1))
    """,
        fails=("matches_reference_for_the_same_features",),
        says="not contiguous",
    ),
    bug(
        "performer_attention",
        "query features normalized in place after exp_ (autograd kept the exponential)",
        """
        import math
        import torch

        def performer_attention(q, k, v, omega):
            scale, m = q.shape[-1] ** -0.25, omega.shape[0]

            def features(x):
                x = x * scale
                return (x @ omega.T - (x * x).sum(-1, keepdim=True) / 2 - math.log(m) / 2).exp_()

            qf, kf = features(q), features(k)
            qf /= qf @ kf.sum(-2).unsqueeze(-1)  # each row's normalizer, applied to the query features
            return qf @ (kf.transpose(-2, -1) @ v)
    """,
        fails=("matches_reference_for_the_same_features",),
        says="in-place operation",
    ),
    alternative(
        "performer_attention",
        "features of the flattened rows with reshape",
        """
        import math
        import torch

        def performer_attention(q, k, v, omega):
            d, m = q.shape[-1], omega.shape[0]

            def features(x):
                rows = x.reshape(-1, d) * d**-0.25
                phi = torch.exp(rows @ omega.T - (rows * rows).sum(-1, keepdim=True) / 2) / math.sqrt(m)
                return phi.reshape(*x.shape[:-1], m)

            qf, kf = features(q), features(k)
            return (qf @ (kf.transpose(-2, -1) @ v)) / (qf @ kf.sum(-2).unsqueeze(-1))
    """,
    ),
]
