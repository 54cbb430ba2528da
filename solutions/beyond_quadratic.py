"""Chapter 8: beyond quadratic attention, and scale.

Sparse attention patterns (Longformer: Beltagy et al., 2020), kernel approximations of softmax
attention (Performer: Choromanski et al., 2021), and the arithmetic of scale: training compute
(Kaplan et al., 2020), the compute-optimal split between parameters and tokens (Hoffmann et
al., 2022), and power-law fits of loss against size.

Shapes: ``N`` sequence length (``N_q`` queries, ``N_k`` keys), ``d`` query/key width, ``d_v``
value width, ``m`` random features. No function modifies its inputs (a caller's list stays as it was,
sorted or not), and tensor inputs may be non-contiguous views (a slice, a transpose: ``.reshape``, not
``.view``).
"""

import math

import torch


def sliding_window_mask(n: int, window: int, global_positions=()) -> torch.Tensor:
    """Longformer's attention pattern as an (n, n) bool mask, True where query i may attend
    to key j: when |i - j| <= window (a band of 2 * window + 1 keys around the diagonal), or
    when i or j is one of ``global_positions`` (a global token reads, and is read by, every
    position). ``global_positions``: a sequence (list or tuple) of ints in [0, n), in any order."""
    positions = torch.arange(n)
    mask = (positions[:, None] - positions[None, :]).abs() <= window
    is_global = torch.zeros(n, dtype=torch.bool)
    is_global[list(global_positions)] = True
    return mask | is_global[:, None] | is_global[None, :]


def positive_random_features(x: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """The Performer's positive random features: x (..., N, d), omega (m, d) -> (..., N, m),

        phi(x) = exp(x omega^T - |x|^2 / 2) / sqrt(m),

    so that for omega with i.i.d. standard normal rows, E[phi(q) . phi(k)] = exp(q . k). The
    exponential is taken once, of the difference: exp(x omega^T) and exp(|x|^2 / 2) each overflow
    float32 for |x|^2 / 2 > 88, where phi(x) itself can be moderate (the checks draw such x).
    Differentiable with respect to x (the Performer's gradients to q and k pass through it)."""
    squared_norm = (x * x).sum(-1, keepdim=True) / 2  # (..., N, 1)
    return torch.exp(x @ omega.transpose(-2, -1) - squared_norm) / math.sqrt(omega.shape[0])


def performer_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Softmax attention approximated with random features (FAVOR+ without orthogonal draws).

    q (..., N_q, d), k (..., N_k, d), v (..., N_k, d_v), omega (m, d) -> (..., N_q, d_v).
    With q' = phi(q d^(-1/4)) and k' = phi(k d^(-1/4)) (so q' . k' estimates exp(q . k /
    sqrt(d))), output row i is sum_j (q'_i . k'_j) v_j / sum_j (q'_i . k'_j). Computed as
    q' (k'^T v) and q' (k'^T 1): no tensor of N_q x N_k elements is ever formed. Differentiable
    with respect to q, k and v, each also when it is the only input that needs a gradient. Graded: the
    values and gradients, and the memory and CPU time of calls on N = 512 and 4096, measured outside the
    learner's process (8 times the tokens, about 8 times the time). Advice (0 points): tensor
    sizes and work recorded in PyTorch operations (no NumPy or Python lists).
    """
    scale = q.shape[-1] ** -0.25
    q_features = positive_random_features(q * scale, omega)  # (..., N_q, m)
    k_features = positive_random_features(k * scale, omega)  # (..., N_k, m)
    summary = k_features.transpose(-2, -1) @ v  # (..., m, d_v): the keys and values, summed once
    normalizer = q_features @ k_features.sum(-2).unsqueeze(-1)  # (..., N_q, 1)
    return (q_features @ summary) / normalizer


def performer_attention_grads(q, k, v, omega, grad_output) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For the grader, as plain data: the gradients (dq, dk, dv) of :func:`performer_attention`,
    back-propagated from ``grad_output`` (shaped like its output)."""
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    performer_attention(q, k, v, omega).backward(grad_output)
    return q.grad, k.grad, v.grad


def training_flops(n_params: float, n_tokens: float) -> float:
    """Floating-point operations to train a dense transformer of ``n_params`` parameters on
    ``n_tokens`` tokens: about 6 N D (2 N D for the forward pass, twice that backward;
    Kaplan et al., 2020), as a number (a Python float, or a 0-dim tensor)."""
    return 6 * n_params * n_tokens


def chinchilla_optimal(compute: float, tokens_per_parameter: float = 20.0) -> tuple[float, float]:
    """The compute-optimal model for a budget of ``compute`` FLOPs (Hoffmann et al., 2022):
    ``(n_params, n_tokens)`` with compute = 6 N D and D = r N (r = ``tokens_per_parameter``,
    about 20 in the paper), i.e. N = sqrt(C / (6 r)) and D = r N, as floats (not rounded)."""
    n_params = math.sqrt(compute / (6 * tokens_per_parameter))
    return n_params, tokens_per_parameter * n_params


def fit_power_law(sizes, losses) -> tuple[float, float]:
    """Fit loss = a * size^(-alpha) by least squares on log(loss) = log(a) - alpha log(size).

    sizes, losses: equally long sequences (lists or 1-D tensors) of positive numbers, in any
    order, at least two distinct sizes; left unchanged. Returns ``(a, alpha)`` as numbers (floats; 0-dim tensors are accepted).
    """
    x = torch.log(torch.as_tensor(sizes, dtype=torch.float64))
    y = torch.log(torch.as_tensor(losses, dtype=torch.float64))
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    intercept = y.mean() - slope * x.mean()
    return math.exp(intercept.item()), -slope.item()
