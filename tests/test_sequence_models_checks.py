"""Chapter 1 checks: the reference and a different correct answer get full marks, the stub
fails every sub-check, and each plausible bug loses points with a message naming it."""

import pytest
import torch
from conftest import messages, not_implemented, run_suite, score

from autograder.checks import suites
from autograder.checks.sequence_models import autograd_jacobian_norms
from solutions import sequence_models as ref

SUITES = suites("sequence_models")


def full_marks(name, answer, seed):
    results = run_suite("sequence_models", name, answer, seed)
    assert score(results) == SUITES[name].max_score, messages(results)


@pytest.mark.parametrize("name", list(SUITES))
def test_stub_fails_every_check(name, seed):
    results = run_suite("sequence_models", name, not_implemented, seed)
    assert not any(r.passed for r in results)
    assert all("not implemented yet" in r.message for r in results)


# ---------------------------------------------------------------------------------------
# The reference agrees with PyTorch: torch.nn.RNN for the forward pass, torch.autograd for
# the Jacobians.


def random_rnn(B, T, D_in, H, scale=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, T, D_in, generator=gen),
        torch.randn(B, H, generator=gen),
        torch.randn(D_in, H, generator=gen) / D_in**0.5,
        scale * torch.randn(H, H, generator=gen) / H**0.5,
        torch.randn(H, generator=gen),
    )


def test_reference_rnn_matches_torch_nn_rnn():
    x, h0, W_xh, W_hh, b = random_rnn(3, 17, 5, 7)
    rnn = torch.nn.RNN(5, 7, batch_first=True)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(W_xh.T)
        rnn.weight_hh_l0.copy_(W_hh.T)
        rnn.bias_ih_l0.copy_(b / 2)  # torch.nn.RNN adds two biases; their sum plays the role of b
        rnn.bias_hh_l0.copy_(b / 2)
        expected_outputs, expected_h_T = rnn(x, h0[None])
    outputs, h_T = ref.rnn_forward(x, h0, W_xh, W_hh, b)
    torch.testing.assert_close(outputs, expected_outputs)
    torch.testing.assert_close(h_T, expected_h_T[0])


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_reference_jacobian_norms_match_autograd(scale):
    args = random_rnn(1, 13, 4, 6, scale=scale)
    torch.testing.assert_close(
        ref.hidden_state_jacobian_norms(*args).double(), autograd_jacobian_norms(*args), rtol=1e-4, atol=1e-6
    )


def test_autograd_jacobian_norms_via_functional_jacobian():
    """The grader's truth agrees with torch.autograd.functional.jacobian of h_t -> h_T."""
    x, h0, W_xh, W_hh, b = (a.double() for a in random_rnn(1, 6, 3, 4))
    states = ref.rnn_forward(x, h0, W_xh, W_hh, b)[0]
    expected = []
    for t in range(1, 7):  # h_t is states[:, t - 1]; h_T is reached by feeding x_{t+1}..x_T

        def final_state(h, t=t):
            return ref.rnn_forward(x[:, t:], h, W_xh, W_hh, b)[1] if t < 6 else h

        expected.append(
            torch.linalg.matrix_norm(torch.autograd.functional.jacobian(final_state, states[:, t - 1])[0, :, 0])
        )
    torch.testing.assert_close(autograd_jacobian_norms(x, h0, W_xh, W_hh, b), torch.stack(expected))


# ---------------------------------------------------------------------------------------
# Plausible bugs in rnn_forward


def states_loop(x, h0, W_xh, W_hh, b, step):
    h, states = h0, []
    for t in range(x.shape[1]):
        h = step(x[:, t], h)
        states.append(h)
    return states


def outputs_hold_h0_to_h_T_minus_1(x, h0, W_xh, W_hh, b):
    states = states_loop(x, h0, W_xh, W_hh, b, lambda x_t, h: torch.tanh(x_t @ W_xh + h @ W_hh + b))
    return torch.stack([h0] + states[:-1], dim=1), states[-1]


def missing_tanh(x, h0, W_xh, W_hh, b):
    states = states_loop(x, h0, W_xh, W_hh, b, lambda x_t, h: x_t @ W_xh + h @ W_hh + b)
    return torch.stack(states, dim=1), states[-1]


def w_hh_transposed(x, h0, W_xh, W_hh, b):
    states = states_loop(x, h0, W_xh, W_hh, b, lambda x_t, h: torch.tanh(x_t @ W_xh + h @ W_hh.T + b))
    return torch.stack(states, dim=1), states[-1]


def bias_added_twice(x, h0, W_xh, W_hh, b):
    states = states_loop(x, h0, W_xh, W_hh, b, lambda x_t, h: torch.tanh(x_t @ W_xh + b + h @ W_hh + b))
    return torch.stack(states, dim=1), states[-1]


def bias_forgotten(x, h0, W_xh, W_hh, b):
    states = states_loop(x, h0, W_xh, W_hh, b, lambda x_t, h: torch.tanh(x_t @ W_xh + h @ W_hh))
    return torch.stack(states, dim=1), states[-1]


def starts_from_zeros(x, h0, W_xh, W_hh, b):
    return ref.rnn_forward(x, torch.zeros_like(h0), W_xh, W_hh, b)


def returns_h_T_minus_1(x, h0, W_xh, W_hh, b):
    outputs, _ = ref.rnn_forward(x, h0, W_xh, W_hh, b)
    return outputs, outputs[:, -2] if outputs.shape[1] > 1 else h0


def tanh_written_with_exp(x, h0, W_xh, W_hh, b):
    def tanh(a):
        return (torch.exp(2 * a) - 1) / (torch.exp(2 * a) + 1)

    states = states_loop(x, h0, W_xh, W_hh, b, lambda x_t, h: tanh(x_t @ W_xh + h @ W_hh + b))
    return torch.stack(states, dim=1), states[-1]


def time_first_outputs(x, h0, W_xh, W_hh, b):
    outputs, h_T = ref.rnn_forward(x, h0, W_xh, W_hh, b)
    return outputs.transpose(0, 1), h_T


def returns_outputs_only(x, h0, W_xh, W_hh, b):
    return ref.rnn_forward(x, h0, W_xh, W_hh, b)[0]


def float32_buffer(x, h0, W_xh, W_hh, b):
    outputs, h_T = ref.rnn_forward(x, h0, W_xh, W_hh, b)
    buffer = torch.zeros(outputs.shape)  # float32, whatever x is
    buffer[:] = outputs
    return buffer, h_T


def float32_round_trip(x, h0, W_xh, W_hh, b):
    outputs, h_T = ref.rnn_forward(*(a.float() for a in (x, h0, W_xh, W_hh, b)))
    return outputs.to(x.dtype), h_T.to(x.dtype)


def states_detached(x, h0, W_xh, W_hh, b):
    states = states_loop(x, h0, W_xh, W_hh, b, lambda x_t, h: torch.tanh(x_t @ W_xh + h @ W_hh + b).detach())
    return torch.stack(states, dim=1), states[-1]


def input_weights_through_numpy(x, h0, W_xh, W_hh, b):
    return ref.rnn_forward(x, h0, torch.from_numpy(W_xh.detach().numpy()), W_hh, b)


def torch_nn_rnn(x, h0, W_xh, W_hh, b):
    rnn = torch.nn.RNN(W_xh.shape[0], W_xh.shape[1], batch_first=True, dtype=x.dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(W_xh.T)
        rnn.weight_hh_l0.copy_(W_hh.T)
        rnn.bias_ih_l0.copy_(b)
        rnn.bias_hh_l0.zero_()
    outputs, h_T = rnn(x, h0[None])
    return outputs, h_T[0]


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (float32_buffer, "have dtype torch.float32"),
        (float32_round_trip, "only to about float32 precision"),
        (states_detached, "outputs carry no gradient"),
        (input_weights_through_numpy, "no gradient reaches W_xh"),
        (torch_nn_rnn, "calls PyTorch's own RNN"),
        (outputs_hold_h0_to_h_T_minus_1, "it holds h_0..h_{T-1}"),
        (missing_tanh, "tanh is missing"),
        (w_hh_transposed, "W_hh transposed"),
        (bias_added_twice, "added twice"),
        (bias_forgotten, "bias b is not added"),
        (starts_from_zeros, "h0 is ignored"),
        (returns_h_T_minus_1, "h_T is h_{T-1}"),
        (tanh_written_with_exp, "overflows"),
        (time_first_outputs, "batch first"),
        (returns_outputs_only, "should return a tuple (outputs, h_T)"),
    ],
)
def test_rnn_forward_bug_loses_points(bug, fragment, seed):
    results = run_suite("sequence_models", "rnn_forward", bug, seed)
    assert score(results) < SUITES["rnn_forward"].max_score
    assert fragment in messages(results)


# ---------------------------------------------------------------------------------------
# Plausible bugs in hidden_state_jacobian_norms: each is the by-hand chain rule, altered.


def chain_rule(x, h0, W_xh, W_hh, b, step, order="right", earliest=1):
    """Norms for t = earliest..T; ``step(h_s, h_prev)`` is the learner's d h_s / d h_{s-1}."""
    states = torch.cat([h0, ref.rnn_forward(x, h0, W_xh, W_hh, b)[0][0]])  # h_0..h_T
    T = states.shape[0] - 1
    product = torch.eye(states.shape[1])
    norms = [product.norm()]
    for s in range(T, earliest, -1):
        J = step(states[s], states[s - 1])
        product = product @ J if order == "right" else J @ product
        norms.append(product.norm())
    return torch.stack(norms[::-1])


def tanh_derivative(h_s, h_prev, W_hh):
    return (1 - h_s**2)[:, None] * W_hh.T


def no_tanh_derivative(x, h0, W_xh, W_hh, b):
    return chain_rule(x, h0, W_xh, W_hh, b, lambda h_s, h_prev: W_hh.T)


def derivative_at_previous_state(x, h0, W_xh, W_hh, b):
    return chain_rule(x, h0, W_xh, W_hh, b, lambda h_s, h_prev: (1 - h_prev**2)[:, None] * W_hh.T)


def wrong_multiplication_order(x, h0, W_xh, W_hh, b):
    return chain_rule(x, h0, W_xh, W_hh, b, lambda h_s, h_prev: tanh_derivative(h_s, h_prev, W_hh), order="left")


def w_hh_not_transposed(x, h0, W_xh, W_hh, b):
    return chain_rule(x, h0, W_xh, W_hh, b, lambda h_s, h_prev: (1 - h_s**2)[:, None] * W_hh)


def includes_h0_drops_identity(x, h0, W_xh, W_hh, b):
    return chain_rule(x, h0, W_xh, W_hh, b, lambda h_s, h_prev: tanh_derivative(h_s, h_prev, W_hh), earliest=0)[:-1]


def reversed_entries(x, h0, W_xh, W_hh, b):
    return ref.hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b).flip(0)


def spectral_norm(x, h0, W_xh, W_hh, b):
    states = ref.rnn_forward(x, h0, W_xh, W_hh, b)[0][0]
    product, norms = torch.eye(states.shape[1]), []
    for s in range(states.shape[0] - 1, -1, -1):
        norms.append(torch.linalg.matrix_norm(product, ord=2))
        product = product @ tanh_derivative(states[s], None, W_hh)
    return torch.stack(norms[::-1])


def divided_by_sqrt_H(x, h0, W_xh, W_hh, b):
    return ref.hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b) / W_hh.shape[0] ** 0.5


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (no_tanh_derivative, "the tanh derivative is missing"),
        (derivative_at_previous_state, "the tanh derivative uses h_{s-1}"),
        (wrong_multiplication_order, "multiplied in the wrong order"),
        (w_hh_not_transposed, "uses W_hh where W_hh^T belongs"),
        (includes_h0_drops_identity, "off by one"),
        (reversed_entries, "reverse order"),
        (spectral_norm, "these are spectral norms"),
        (divided_by_sqrt_H, "every norm is divided by sqrt(H)"),
    ],
)
def test_jacobian_bug_loses_points(bug, fragment, seed):
    results = run_suite("sequence_models", "hidden_state_jacobian_norms", bug, seed)
    assert score(results) < SUITES["hidden_state_jacobian_norms"].max_score
    assert fragment in messages(results)


def test_normalised_norms_are_not_called_spectral(seed):
    """Both give a last entry of 1; only the whole vector tells them apart, and says which."""
    text = messages(run_suite("sequence_models", "hidden_state_jacobian_norms", divided_by_sqrt_H, seed))
    assert "these are spectral norms" not in text and "or a Frobenius norm divided by sqrt(H)" in text


# ---------------------------------------------------------------------------------------
# "No autograd": values cannot show it, the trace of the call does


def final_state_from(x, W_xh, W_hh, b, t):
    """h_t -> h_T: the rest of the recurrence, as a function autograd can differentiate."""

    def final(h):
        for s in range(t, x.shape[1]):
            h = torch.tanh(x[:, s] @ W_xh + h @ W_hh + b)
        return h

    return final


def jacobians_by(jacobian):
    """Correct norms, each d h_T / d h_t computed by ``jacobian(function, point)``."""

    def answer(x, h0, W_xh, W_hh, b):
        states = ref.rnn_forward(x, h0, W_xh, W_hh, b)[0]
        H = h0.shape[1]
        return torch.stack(
            [
                jacobian(final_state_from(x, W_xh, W_hh, b, t), states[:, t - 1]).reshape(H, -1).norm()
                for t in range(1, x.shape[1] + 1)
            ]
        )

    return answer


@pytest.mark.parametrize(
    "jacobian",
    [torch.autograd.functional.jacobian, lambda f, h: torch.func.jacrev(f)(h), lambda f, h: torch.func.jacfwd(f)(h)],
    ids=["autograd.functional.jacobian", "func.jacrev", "func.jacfwd"],
)
def test_jacobians_by_autograd_get_full_marks_and_the_advice(jacobian):
    """Whether autograd ran is seen only inside the learner's process: advice, 0 points."""
    results = run_suite("sequence_models", "hidden_state_jacobian_norms", jacobians_by(jacobian), 0)
    assert score(results) == SUITES["hidden_state_jacobian_norms"].max_score, messages(results)
    assert [r.check for r in results if not r.passed] == ["no_autograd"]
    assert "advice (0 points): hidden_state_jacobian_norms computes gradients with autograd" in messages(results)


def test_chain_rule_on_tensors_that_require_grad_is_accepted(seed):
    """requires_grad alone is not autograd: the rule is about computing gradients with it."""

    def answer(x, h0, W_xh, W_hh, b):
        W_xh = W_xh.clone().requires_grad_(True)
        return ref.hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b).detach()

    full_marks("hidden_state_jacobian_norms", answer, seed)
