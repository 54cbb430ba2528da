"""Chapter 1: a vanilla (Elman) recurrent network and its gradients through time.

Shapes: batch ``B``, sequence length ``T >= 1``, input width ``D_in``, hidden width ``H``.
Time is the second dimension (batch first), and hidden states are numbered like the
time steps that produce them: ``h_0`` is the initial state, ``h_t`` (t = 1..T) the state
after reading ``x_t``, the t-th input vector, stored at index ``t - 1`` of the time dimension.
Weights multiply from the right (``x @ W``), so ``W_xh`` is (D_in, H), the transpose of
``torch.nn.RNN``'s ``weight_ih_l0``.
"""

import torch


def rnn_forward(x: torch.Tensor, h0: torch.Tensor, W_xh: torch.Tensor, W_hh: torch.Tensor, b: torch.Tensor):
    """Run h_t = tanh(x_t @ W_xh + h_{t-1} @ W_hh + b) for t = 1..T.

    x: (B, T, D_in), h0: (B, H), W_xh: (D_in, H), W_hh: (H, H), b: (H,). Returns
    ``(outputs, h_T)``: outputs (B, T, H) holds h_1..h_T (``outputs[:, t - 1]`` is h_t, so
    h_0 is not in it) and h_T (B, H) is the last state, equal to ``outputs[:, -1]``.
    Works in the inputs' dtype (float64 in, float64 out) and stays differentiable: autograd
    reaches every input through outputs (each alone or all together). Any B, T >= 1; the inputs
    may be non-contiguous views and are left unchanged. Graded on its values and
    gradients; a loop of its own, not ``torch.nn.RNN``, is advice (0 points).
    """
    inputs = x @ W_xh + b  # every time step's input term at once: it does not depend on h
    h = h0
    states = []
    for t in range(x.shape[1]):  # the recurrence itself is sequential: h_t needs h_{t-1}
        h = torch.tanh(inputs[:, t] + h @ W_hh)
        states.append(h)
    return torch.stack(states, dim=1), h


def hidden_state_jacobian_norms(
    x: torch.Tensor, h0: torch.Tensor, W_xh: torch.Tensor, W_hh: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """Frobenius norms of d h_T / d h_t for t = 1..T, by the chain rule (no autograd).

    Arguments as in :func:`rnn_forward` with batch size 1: x (1, T, D_in), h0 (1, H).
    Returns a tensor of shape (T,) whose entry ``t - 1`` is ``||d h_T / d h_t||_F``, the
    sensitivity of the final state to the state t steps into the sequence, i.e. at
    distance T - t from the end. So entry 0 is d h_T / d h_1 (the farthest) and entry
    T - 1 is d h_T / d h_T = I, of norm sqrt(H).

    One step's Jacobian is d h_s / d h_{s-1} = diag(1 - h_s^2) @ W_hh^T (the (i, j) entry
    is d h_s[i] / d h_{s-1}[j]), and d h_T / d h_t = J_T @ J_{T-1} @ ... @ J_{t+1}:
    the product grows by one factor on the right for each step further back. Graded on its
    values; no autograd (torch.autograd, .backward(), torch.func) here is advice (0 points). The
    inputs are left unchanged.
    """
    states, _ = rnn_forward(x, h0, W_xh, W_hh, b)
    states = states[0]  # (T, H): h_1..h_T
    T, H = states.shape
    jacobian = torch.eye(H, dtype=states.dtype)  # d h_T / d h_T
    norms = [torch.linalg.matrix_norm(jacobian)]
    for s in range(T - 1, 0, -1):  # states[s] is h_{s+1}: multiply by d h_{s+1} / d h_s
        step = (1 - states[s] ** 2)[:, None] * W_hh.T
        jacobian = jacobian @ step
        norms.append(torch.linalg.matrix_norm(jacobian))
    return torch.stack(norms[::-1])
