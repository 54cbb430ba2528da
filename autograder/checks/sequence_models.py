"""Checks for chapter 1: ``rnn_forward`` and ``hidden_state_jacobian_norms``.

The learner's answers are compared, in this trusted process, with ``solutions.sequence_models``,
with ``torch.nn.RNN`` and with Jacobians that ``torch.autograd`` computes on a float64 forward
pass written here (never through the learner's code). Typical bugs are recomputed on the same
inputs so that a matching answer gets a message naming the bug. Expected values are computed
before the learner's code is called. ``rnn_forward`` must also keep float64 inputs in float64
and pass gradients back to every input (chapter 1 trains nothing, but an RNN that autograd cannot
see through cannot be trained). Two rules are advice (0 points; recorded inside the learner's
process, which could hide from the recording): ``rnn_forward`` calls no ``torch.nn.RNN``, and
``hidden_state_jacobian_norms`` computes no gradients with autograd (reverse or forward mode).
"""

import math

import torch

from autograder.oracle import reference
from autograder.student import StudentError
from autograder.suite import CheckFailed, Suite, expect_close, expect_shape, is_close, noncontiguous, randint, randn

ref = reference("sequence_models")

forward = Suite("rnn_forward")
jacobian = Suite("hidden_state_jacobian_norms")
SUITES = {s.function: s for s in (forward, jacobian)}


def _rnn_inputs(gen, B, T, recurrent_scale=1.0, input_scale=1.0):
    """x (B, T, D_in), h0 (B, H), W_xh, W_hh, b with D_in != H (so a swapped weight fails loudly)."""
    D_in = randint(gen, 2, 5)
    H = randint(gen, D_in + 1, D_in + 4)
    return (
        randn(gen, B, T, D_in),
        randn(gen, B, H, scale=0.5),
        randn(gen, D_in, H, scale=input_scale / math.sqrt(D_in)),
        randn(gen, H, H, scale=recurrent_scale / math.sqrt(H)),
        randn(gen, H, scale=0.5),
    )


# ---------------------------------------------------------------------------------------
# rnn_forward


def _buggy_states(x, h0, W_xh, W_hh, b, activation=torch.tanh, transpose_hh=False, bias_times=1, zero_h0=False):
    """h_1..h_T (B, T, H) of an RNN written with one of the typical bugs."""
    W = W_hh.T if transpose_hh else W_hh
    h = torch.zeros_like(h0) if zero_h0 else h0
    states = []
    for t in range(x.shape[1]):
        h = activation(x[:, t] @ W_xh + h @ W + bias_times * b)
        states.append(h)
    return torch.stack(states, dim=1)


def _output_bugs(x, h0, W_xh, W_hh, b):
    states = ref.rnn_forward(x, h0, W_xh, W_hh, b)[0]
    return [
        (
            torch.cat([h0[:, None], states[:, :-1]], dim=1),
            "it holds h_0..h_{T-1}; outputs[:, t-1] must be h_t, the state AFTER reading x_t (h_1..h_T, not h_0)",
        ),
        (
            _buggy_states(x, h0, W_xh, W_hh, b, activation=lambda a: a),
            "tanh is missing: each new state is tanh(pre-activation)",
        ),
        (
            _buggy_states(x, h0, W_xh, W_hh, b, transpose_hh=True),
            "it uses W_hh transposed: the recurrent term is h_{t-1} @ W_hh (W_hh is (H, H), rows indexed by h_{t-1})",
        ),
        (
            _buggy_states(x, h0, W_xh, W_hh, b, bias_times=2),
            "the bias b is added twice (torch.nn.RNN has two biases, b_ih and b_hh; this function has one)",
        ),
        (_buggy_states(x, h0, W_xh, W_hh, b, bias_times=0), "the bias b is not added"),
        (
            _buggy_states(x, h0, W_xh, W_hh, b, zero_h0=True),
            "h0 is ignored: the recurrence must start from the given h0, not from zeros",
        ),
    ]


def _forward(student, x, h0, W_xh, W_hh, b):
    result = student(x, h0, W_xh, W_hh, b)
    if not isinstance(result, tuple) or len(result) != 2:
        raise CheckFailed(f"rnn_forward should return a tuple (outputs, h_T), got {type(result).__name__}")
    return result


@forward.check(points=1)
def returns_outputs_and_last_state(student, gen):
    """Also at the edges: a batch of one, and a batch of one reading a single step."""
    for B, T in ((randint(gen, 2, 4), randint(gen, 5, 9)), (1, randint(gen, 5, 9)), (1, 1)):
        x, h0, W_xh, W_hh, b = _rnn_inputs(gen, B, T)
        outputs, h_T = _forward(student, x, h0, W_xh, W_hh, b)
        H = h0.shape[1]
        expect_shape(
            outputs,
            (B, T, H),
            f"outputs for x of shape (B, T, D_in) = {tuple(x.shape)} (batch first, one state per step)",
        )
        expect_shape(h_T, (B, H), f"h_T (B, H) for x of shape {tuple(x.shape)}")


@forward.check(points=1)
def one_step_matches_formula(student, gen):
    x, h0, W_xh, W_hh, b = _rnn_inputs(gen, randint(gen, 2, 4), 1)
    expected = torch.tanh(x[:, 0] @ W_xh + h0 @ W_hh + b)[:, None]
    outputs, h_T = _forward(student, x, h0, W_xh, W_hh, b)
    expect_close(
        outputs,
        expected,
        "outputs for a one-step sequence (expected [h_1], h_1 = tanh(x_1 @ W_xh + h_0 @ W_hh + b))",
        diagnoses=_output_bugs(x, h0, W_xh, W_hh, b),
    )
    expect_close(
        h_T, expected[:, 0], "h_T for T = 1 (it should be h_1)", diagnoses=[(h0, "h_T is h_0, the initial state")]
    )


BUILT_IN_RNN = {"rnn_tanh", "rnn_relu", "rnn_tanh_cell", "rnn_relu_cell"}  # what nn.RNN and nn.RNNCell call


@forward.check(points=2)
def matches_reference_over_time(student, gen):
    """Every input a non-contiguous view (as slices and transposes of a learner's tensors are)."""
    x, h0, W_xh, W_hh, b = _rnn_inputs(gen, randint(gen, 2, 4), randint(gen, 6, 12))
    expected = ref.rnn_forward(x, h0, W_xh, W_hh, b)[0]
    result = student(*(noncontiguous(a) for a in (x, h0, W_xh, W_hh, b)))
    if not isinstance(result, tuple) or len(result) != 2:
        raise CheckFailed(f"rnn_forward should return a tuple (outputs, h_T), got {type(result).__name__}")
    outputs, _ = result
    expect_close(outputs, expected, "outputs (h_1..h_T)", diagnoses=_output_bugs(x, h0, W_xh, W_hh, b))


@forward.advice
def no_library_rnn(student, gen):
    """The exercise's rule, as advice (recorded in the learner's process): a loop of its own, not
    torch.nn.RNN."""
    _, functions = student.functions(*_rnn_inputs(gen, 2, 5))
    if BUILT_IN_RNN & set(functions):
        raise CheckFailed(
            "rnn_forward calls PyTorch's own RNN (torch.nn.RNN or nn.RNNCell); the exercise is to write "
            "the recurrence yourself: a Python loop over time with @ and torch.tanh"
        )


@forward.check(points=1)
def last_state_is_h_T(student, gen):
    x, h0, W_xh, W_hh, b = _rnn_inputs(gen, randint(gen, 2, 4), randint(gen, 4, 9))
    states = ref.rnn_forward(x, h0, W_xh, W_hh, b)[0]
    _, h_T = _forward(student, x, h0, W_xh, W_hh, b)
    expect_close(
        h_T,
        states[:, -1],
        "h_T",
        diagnoses=[
            (h0, "h_T is h_0, the initial state; return the state after the last step"),
            (states[:, -2], "h_T is h_{T-1}: the last input x_T was not read"),
            (states[:, 0], "h_T is h_1, the first state; return the last one"),
        ],
    )


@forward.check(points=1)
def long_saturated_sequence_matches_torch_rnn(student, gen):
    B, T = randint(gen, 2, 3), randint(gen, 30, 50)
    x, h0, W_xh, W_hh, b = _rnn_inputs(gen, B, T, recurrent_scale=3.0, input_scale=40.0)  # |pre-activation| up to ~100
    b[0] = 200.0  # unit 0 far above 44 at every seed: exp(2a) overflows float32 there (at seed 31415 nothing did)
    rnn = torch.nn.RNN(W_xh.shape[0], W_xh.shape[1], nonlinearity="tanh", batch_first=True)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(W_xh.T)
        rnn.weight_hh_l0.copy_(W_hh.T)
        rnn.bias_ih_l0.copy_(b)
        rnn.bias_hh_l0.zero_()
        expected_outputs, expected_h_T = rnn(x, h0[None])
    outputs, h_T = _forward(student, x, h0, W_xh, W_hh, b)
    outputs = expect_shape(outputs, expected_outputs.shape, "outputs")
    if not torch.isfinite(outputs).all():
        raise CheckFailed(
            "outputs contain NaN or inf for large pre-activations (|a| ~ 100), where torch.nn.RNN gives "
            "values in [-1, 1]; a tanh written with exp() overflows there: use torch.tanh"
        )
    expect_close(
        outputs,
        expected_outputs,
        "outputs of a long sequence with saturating tanh, compared with "
        "torch.nn.RNN (weight_ih_l0 = W_xh.T, weight_hh_l0 = W_hh.T, bias_ih_l0 = b, bias_hh_l0 = 0)",
    )
    expect_close(h_T, expected_h_T[0], "h_T of a long sequence, compared with torch.nn.RNN's final hidden state")


def _gradients(x, h0, W_xh, W_hh, b, grad_outputs):
    """The truth: d <outputs, grad_outputs> / d (x, h0, W_xh, W_hh, b) from torch.autograd on
    a float64 forward pass written here."""
    inputs = [a.detach().double().requires_grad_(True) for a in (x, h0, W_xh, W_hh, b)]
    outputs = _buggy_states(*inputs)
    return torch.autograd.grad(outputs, inputs, grad_outputs.double())


@forward.check(points=1)
def float64_outputs_and_gradients(student, gen):
    """float64 inputs give float64 states at float64 precision, and autograd reaches every input
    through the loop (the gradient of outputs, by back-propagation through time), asked for all
    inputs together and for each alone, the inputs non-contiguous views."""
    x, h0, W_xh, W_hh, b = (a.double() for a in _rnn_inputs(gen, randint(gen, 2, 4), randint(gen, 5, 9)))
    expected = ref.rnn_forward(x, h0, W_xh, W_hh, b)[0]
    grad_outputs = randn(gen, *expected.shape, dtype=torch.float64)
    expected_grads = _gradients(x, h0, W_xh, W_hh, b, grad_outputs)
    outputs = _forward(student, x, h0, W_xh, W_hh, b)[0]
    expect_shape(outputs, expected.shape, "outputs for float64 inputs")
    if outputs.dtype != torch.float64:
        raise CheckFailed(
            f"outputs for float64 inputs have dtype {outputs.dtype}: the states were computed or stored in "
            "another precision (a buffer made with torch.zeros/empty without dtype=x.dtype, .float(), ...); "
            "keep the inputs' dtype (the notebook's parallel-sweep cell compares float64 states to 1e-9)"
        )
    if is_close(outputs, expected, rtol=1e-5, atol=1e-7) and not is_close(outputs, expected, rtol=1e-10, atol=1e-12):
        raise CheckFailed(
            "outputs for float64 inputs agree with the expected values only to about float32 precision: part "
            "of the computation ran in float32 (look for .float(), or tensors made without dtype=x.dtype)"
        )
    expect_close(outputs, expected, "outputs for float64 inputs", rtol=1e-10, atol=1e-12)
    names = ("x", "h0", "W_xh", "W_hh", "b")
    views = tuple(noncontiguous(a) for a in (x, h0, W_xh, W_hh, b))
    for asked in (tuple(range(5)), *((i,) for i in range(5))):
        alone = "" if len(asked) > 1 else f", when only {names[asked[0]]} requires grad"
        try:
            _, grads = student.with_grad(views, grad_outputs, asked)
        except StudentError as error:
            if "does not require grad" not in str(error):
                raise
            raise CheckFailed(
                f"outputs carry no gradient{alone}: autograd cannot back-propagate through rnn_forward. "
                "Something cut the states from the graph: .detach(), .data, torch.no_grad(), .item(), "
                ".tolist() or a NumPy round trip"
            ) from None
        for index, grad in zip(asked, grads):
            name = names[index]
            if grad is None:
                raise CheckFailed(
                    f"no gradient reaches {name}{alone}: autograd cannot see how outputs depend on it. Look for "
                    ".detach(), .data, torch.no_grad() or a copy made outside autograd (torch.tensor(...), NumPy)"
                )
            what = f"the gradient of outputs with respect to {name}{alone}"
            expect_close(grad, expected_grads[index], what, rtol=1e-8, atol=1e-10)


# ---------------------------------------------------------------------------------------
# hidden_state_jacobian_norms


def autograd_jacobian_norms(x, h0, W_xh, W_hh, b) -> torch.Tensor:
    """The truth: ||d h_T / d h_t||_F for t = 1..T from torch.autograd, on a float64 forward
    pass written here (batch size 1). Row i of every d h_T / d h_t is the gradient of h_T[i]."""
    x, h0, W_xh, W_hh, b = (a.detach().double() for a in (x, h0, W_xh, W_hh, b))
    h = h0.requires_grad_(True)
    states = []
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
        states.append(h)
    rows = [torch.autograd.grad(h[0, i], states, retain_graph=True) for i in range(h.shape[1])]
    jacobians = torch.stack([torch.cat([row[t] for row in rows]) for t in range(len(states))])  # (T, H, H)
    return torch.linalg.matrix_norm(jacobians)


def _buggy_norms(states, W_hh, derivative="state", order="right", transpose_hh=False, earliest=1, ord="fro"):
    """||d h_T / d h_t||_F for t = earliest..T by the chain rule, possibly with a typical bug.

    ``states`` (T + 1, H) holds h_0..h_T. ``derivative`` is the diagonal factor of the step
    J_s = d h_s / d h_{s-1}: "state" (1 - h_s^2, right), "none" (tanh' forgotten) or
    "previous" (1 - h_{s-1}^2); ``order="left"`` multiplies each step further back on the wrong side;
    ``ord=2`` takes spectral norms instead of Frobenius norms.
    """
    T, H = states.shape[0] - 1, states.shape[1]
    W = W_hh if transpose_hh else W_hh.T
    product = torch.eye(H, dtype=states.dtype)
    norms = [torch.linalg.matrix_norm(product, ord=ord)]
    for s in range(T, earliest, -1):
        factor = {
            "state": 1 - states[s] ** 2,
            "none": torch.ones(H, dtype=states.dtype),
            "previous": 1 - states[s - 1] ** 2,
        }[derivative]
        step = factor[:, None] * W
        product = product @ step if order == "right" else step @ product
        norms.append(torch.linalg.matrix_norm(product, ord=ord))
    return torch.stack(norms[::-1])


def _jacobian_bugs(x, h0, W_xh, W_hh, b):
    states = torch.cat([h0, ref.rnn_forward(x, h0, W_xh, W_hh, b)[0][0]])  # (T + 1, H): h_0..h_T
    return [
        (
            _buggy_norms(states, W_hh, derivative="none"),
            "the tanh derivative is missing: d h_s / d h_{s-1} = diag(1 - h_s^2) @ W_hh^T, not W_hh^T alone",
        ),
        (
            _buggy_norms(states, W_hh, derivative="previous"),
            "the tanh derivative uses h_{s-1}; the step that produces h_s = tanh(a_s) has derivative 1 - h_s^2",
        ),
        (
            _buggy_norms(states, W_hh, order="left"),
            "the Jacobians are multiplied in the wrong order: d h_T / d h_t = J_T @ ... @ J_{t+1}, so each step "
            "further back multiplies on the RIGHT (J_s = d h_s / d h_{s-1})",
        ),
        (
            _buggy_norms(states, W_hh, transpose_hh=True),
            "it uses W_hh where W_hh^T belongs: d h_s[i] / d h_{s-1}[j] = (1 - h_s[i]^2) W_hh[j, i]",
        ),
        (
            _buggy_norms(states, W_hh, earliest=0)[:-1],
            "the entries are off by one: entry t-1 must be d h_T / d h_t for t = 1..T (from d h_T / d h_1 "
            "to d h_T / d h_T = I), not d h_T / d h_0 .. d h_T / d h_{T-1}",
        ),
        (
            _buggy_norms(states, W_hh).flip(0),
            "the entries are in reverse order: entry 0 is d h_T / d h_1 (the farthest "
            "state), the last entry is d h_T / d h_T = I",
        ),
        (
            _buggy_norms(states, W_hh, ord=2),
            "these are spectral norms (largest singular values); return Frobenius norms, the square root of "
            "the sum of squared entries (torch.linalg.matrix_norm's default)",
        ),
        (
            _buggy_norms(states, W_hh) / math.sqrt(states.shape[1]),
            "every norm is divided by sqrt(H): return ||d h_T / d h_t||_F itself, so the last entry is sqrt(H)",
        ),
    ]


def _inputs(gen, T, recurrent_scale=1.0):
    return _rnn_inputs(gen, 1, T, recurrent_scale=recurrent_scale)


@jacobian.advice
def no_autograd(student, gen):
    """The contract's rule, as advice (recorded in the learner's process): the chain rule written
    by hand, no gradients from autograd (reverse or forward mode)."""
    _, trace = student.traced(*_inputs(gen, 5))
    if trace.autograd:
        raise CheckFailed(
            "hidden_state_jacobian_norms computes gradients with autograd (torch.autograd, .backward() "
            "or torch.func); this exercise is the chain rule by hand: build each step's Jacobian "
            "d h_s / d h_{s-1} from the states and W_hh and multiply them yourself"
        )


@jacobian.check(points=1)
def shape_and_last_entry_is_identity(student, gen):
    """Also at the edge: a sequence of one step, whose only entry is sqrt(H)."""
    T = randint(gen, 4, 9)
    args = _inputs(gen, T)
    H = args[1].shape[1]
    # Off by one and reversed are told apart by the last entry alone; a last entry of 1 is not (the
    # spectral norm of I, or a Frobenius norm divided by sqrt(H)): the other sub-checks tell those apart.
    diagnoses = [(wrong[-1:], explanation) for wrong, explanation in _jacobian_bugs(*args)[-4:-2]] + [
        (
            torch.ones(1),
            "it is 1, not ||I||_F = sqrt(H) (the square root of the sum of squared entries); 1 is the "
            "spectral norm of I, or a Frobenius norm divided by sqrt(H)",
        )
    ]
    norms = student(*args)
    expect_shape(norms, (T,), f"the result for a sequence of T = {T} steps (one norm per t = 1..T)")
    expect_close(
        norms[-1:],
        torch.tensor([math.sqrt(H)]),
        f"the last entry, ||d h_T / d h_T||_F = ||I||_F = sqrt(H) = sqrt({H}),",
        diagnoses=diagnoses,
    )
    single = _inputs(gen, 1)
    expect_close(
        student(*single),
        torch.tensor([math.sqrt(single[1].shape[1])]),
        "the result for a sequence of T = 1 step, [||I||_F] = [sqrt(H)],",
    )


@jacobian.check(points=1)
def one_step_back_by_hand(student, gen):
    args = _inputs(gen, 2)
    x, h0, W_xh, W_hh, b = args
    h_2 = ref.rnn_forward(x, h0, W_xh, W_hh, b)[1][0]
    one_step = torch.linalg.matrix_norm((1 - h_2**2)[:, None] * W_hh.T)
    expected = torch.stack([one_step, torch.tensor(math.sqrt(W_hh.shape[0]))])
    expect_close(
        student(*args),
        expected,
        "the result for T = 2, [||diag(1 - h_2^2) @ W_hh^T||_F, sqrt(H)],",
        diagnoses=_jacobian_bugs(*args),
    )


@jacobian.check(points=3)
def matches_autograd(student, gen):
    args = _inputs(gen, randint(gen, 6, 12), recurrent_scale=1.5)
    expected = autograd_jacobian_norms(*args)
    expect_close(
        student(*(noncontiguous(a) for a in args)),  # views, as slices of a longer sequence are
        expected,
        "||d h_T / d h_t||_F (compared with torch.autograd)",
        diagnoses=_jacobian_bugs(*args),
    )


@jacobian.check(points=1)
def long_sequence_matches_reference(student, gen):
    args = _inputs(gen, randint(gen, 20, 30), recurrent_scale=1.2)
    expected = ref.hidden_state_jacobian_norms(*args)
    # The norms span several orders of magnitude: compare each entry relative to its own size.
    expect_close(
        student(*args),
        expected,
        "||d h_T / d h_t||_F over a long sequence",
        rtol=1e-3,
        atol=1e-9,
        diagnoses=_jacobian_bugs(*args),
    )


@jacobian.check(points=1)
def zero_input_gives_powers_of_W_hh(student, gen):
    T, H = randint(gen, 15, 25), randint(gen, 3, 6)
    orthogonal = torch.linalg.qr(randn(gen, H, H, dtype=torch.float64))[0]
    x, h0, W_xh, b = torch.zeros(1, T, 2), torch.zeros(1, H), torch.zeros(2, H), torch.zeros(H)
    distance = torch.arange(T - 1, -1, -1, dtype=torch.float64)
    for gain, trend in ((0.7, "vanish"), (1.3, "explode")):
        norms = student(x, h0, W_xh, (gain * orthogonal).float(), b)
        expect_close(
            norms,
            gain**distance * math.sqrt(H),
            f"||d h_T / d h_t||_F for zero inputs and W_hh = {gain} x an orthogonal matrix (all states are 0, "
            f"so tanh' = 1 and d h_T / d h_t = (W_hh^T)^(T-t), of norm {gain}^(T-t) sqrt(H): they should {trend})",
            rtol=1e-3,
            atol=0,
            diagnoses=[
                (
                    gain ** (distance + 1) * math.sqrt(H),
                    "the entries are off by one: entry t-1 is for h_t, "
                    "and the last one, d h_T / d h_T = I, has norm sqrt(H)",
                ),
                (gain ** distance.flip(0) * math.sqrt(H), "the entries are in reverse order: entry 0 is d h_T / d h_1"),
            ],
        )
