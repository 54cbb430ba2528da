"""Checks for chapter 5: ``layer_norm``, ``FeedForward``, ``TransformerBlock``, ``count_parameters``.

``layer_norm`` is compared with ``torch.nn.functional.layer_norm``, including rows of nearly
equal values where the place of eps matters. ``FeedForward`` and ``TransformerBlock`` are
constructed through the handle, loaded with known weights through their own
``load_state_dict``, and compared with the same network built from PyTorch modules: for the
block, ``torch.nn.TransformerEncoderLayer`` (float64, dropout 0) holding the same weights.
Where dropout acts is part of the contract: with dropout=1.0 in train() mode every dropped
value is exactly zero, so the FFN must return linear2's bias, a Pre-LN block its input and a
Post-LN block norm2(norm1(x)); with d_ff < d_model the FFN's hidden vector is recovered from
its output by least squares, so each hidden unit can be seen dropped or rescaled by 1 / (1 - p).
``count_parameters`` is compared with ``solutions.transformer_block``, whose formula the
tests verify against real module stacks, and must return an int; a wrong count is asked again
for one more layer, so that the message can say whether the blocks or the rest are miscounted. Typical bugs are recomputed
on the same inputs, before the learner's code is called; sizes are drawn so that the
dimensions a message names are distinct.
"""

import contextlib
import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from autograder.oracle import reference
from autograder.student import Student, StudentError
from autograder.suite import (
    CheckFailed,
    Suite,
    expect_close,
    expect_shape,
    expect_state_unchanged,
    is_close,
    noncontiguous,
    randint,
    randn,
)

ref = reference("transformer_block")

norm = Suite("layer_norm")
ffn = Suite("FeedForward")
block = Suite("TransformerBlock")
counting = Suite("count_parameters")
SUITES = {s.function: s for s in (norm, ffn, block, counting)}


# ---------------------------------------------------------------------------------------
# layer_norm


def _normalized(x, eps, unbiased=False, eps_outside=False, center=True):
    x = x.double()
    mean = x.mean(-1, keepdim=True) if center else torch.zeros_like(x[..., :1])
    var = x.var(-1, keepdim=True, unbiased=unbiased) if center else x.pow(2).mean(-1, keepdim=True)
    return (x - mean) / (var.sqrt() + eps if eps_outside else (var + eps).sqrt())


def _norm_bugs(x, weight, bias, eps):
    w, b = weight.double(), bias.double()
    bugs = [
        (
            _normalized(x, eps, unbiased=True) * w + b,
            "the variance is unbiased (divided by D - 1); layer norm uses the biased variance (divide by D: unbiased=False)",
        ),
        (
            _normalized(x, eps, eps_outside=True) * w + b,
            "eps is added to the standard deviation; it belongs inside the square root: sqrt(var + eps)",
        ),
        (_normalized(x, eps), "weight and bias are not applied: multiply by weight, then add bias"),
        (_normalized(x, eps) * b + w, "weight and bias are swapped: the result is normalized * weight + bias"),
        (
            _normalized(x, eps, center=False) * w + b,
            "the mean is not subtracted (that is RMSNorm): subtract the mean of each row first",
        ),
    ]
    if x.dim() >= 2 and x.shape[-2] > 1:
        moved = x.double().transpose(-1, -2)
        bugs.append(
            (
                _normalized(moved, eps).transpose(-1, -2) * w + b,
                "it normalizes over dim -2; layer norm normalizes each row over the last dimension",
            )
        )
    if eps != 1e-5:
        bugs.append((_normalized(x, 1e-5) * w + b, "the eps argument is ignored (1e-5 is used instead)"))
    else:
        bugs += [
            (
                _normalized(x, other) * w + b,
                f"this is the result for eps = {other:g}; the default eps is 1e-5, as in F.layer_norm",
            )
            for other in (1e-6, 1e-12)  # the defaults of some other libraries and models (BERT: 1e-12)
        ]
    return bugs


def _norm_params(gen, d):
    return 1.0 + randn(gen, d, scale=0.5), randn(gen, d, scale=0.5)


BUILT_IN_NORMS = {  # what F.layer_norm, nn.LayerNorm and the other normalizations of PyTorch call
    "layer_norm",
    "native_layer_norm",
    "group_norm",
    "native_group_norm",
    "instance_norm",
    "batch_norm",
    "native_batch_norm",
    "rms_norm",
}


def _expect_norm(student, x, weight, bias, eps, what, atol):
    expected = F.layer_norm(x.double(), (x.shape[-1],), weight.double(), bias.double(), eps)
    diagnoses = _norm_bugs(x, weight, bias, eps)
    result = student(x, weight, bias) if eps == 1e-5 else student(x, weight, bias, eps=eps)
    if (
        isinstance(result, torch.Tensor)
        and result.is_floating_point()
        and torch.finfo(result.dtype).eps > torch.finfo(x.dtype).eps  # float64 answers are accepted, as everywhere
    ):
        raise CheckFailed(f"{what} has dtype {result.dtype}; it should keep the dtype of x, {x.dtype}")
    constant_row = bool((x.amax(-1) == x.amin(-1)).any())
    if (
        constant_row
        and isinstance(result, torch.Tensor)
        and result.shape == expected.shape
        and not torch.isfinite(result).all()
    ):
        raise CheckFailed(
            f"{what} contains NaN or inf: a row of equal values has variance 0, so dividing by "
            "sqrt(var) fails; add eps inside the square root, sqrt(var + eps)"
        )
    expect_close(result, expected, what, atol=atol, diagnoses=diagnoses)


@norm.advice
def no_library_norm(student, gen):
    """The exercise's rule, as advice (recorded in the learner's process): built from elementary
    operations such as mean and sqrt, not a normalization of PyTorch."""
    x, weight, bias = randn(gen, 3, 8), randn(gen, 8), randn(gen, 8)
    _, functions = student.functions(x, weight, bias)
    if BUILT_IN_NORMS & set(functions):
        raise CheckFailed(
            "layer_norm calls a normalization of PyTorch (F.layer_norm, torch.layer_norm, nn.LayerNorm, group_norm, "
            "...); the exercise is to build it from elementary operations such as mean and sqrt"
        )


@norm.check(points=2)
def matches_f_layer_norm(student, gen):
    """Also the exercise's rules: elementary operations, not PyTorch's normalizations; a float64 x stays float64."""
    d = randint(gen, 8, 13)  # longer than every other dimension: normalizing over the wrong one cannot pass
    weight, bias = _norm_params(gen, d)
    for shape in ((randint(gen, 2, 3), randint(gen, 4, 7), d), (randint(gen, 3, 6), d)):
        x = randn(gen, *shape, scale=2.0) + randn(gen, *shape[:-1], 1, scale=3.0)  # each row with its own offset
        _expect_norm(student, x, weight, bias, 1e-5, f"layer_norm(x of shape {shape}, weight, bias)", atol=1e-5)
    x = randn(gen, randint(gen, 3, 6), d, dtype=torch.float64)
    weight, bias = weight.double(), bias.double()
    _expect_norm(student, x, weight, bias, 1e-5, "layer_norm(x, weight, bias) for a float64 x", atol=1e-5)


@norm.check(points=2)
def rows_of_nearly_equal_values(student, gen):
    """Where var is near or below eps, the place of eps changes the result a lot."""
    d, rows = randint(gen, 9, 13), randint(gen, 4, 8)
    weight, bias = _norm_params(gen, d)
    offsets = randn(gen, rows, 1)
    spread = torch.tensor([1e-3, 3e-3, 1e-2, 1.0])[torch.arange(rows) % 4, None]
    x = offsets + randn(gen, rows, d) * spread
    x[0] = 2.0  # exactly constant: variance 0
    x[-1] = 20.0 + randn(gen, d) * 1e-2  # far from 0: E[x^2] - E[x]^2 loses the variance to float32 rounding
    _expect_norm(
        student,
        x,
        weight,
        bias,
        1e-5,
        "layer_norm of rows of nearly equal values (variance 0 to 1e-4, near eps = 1e-5)",
        atol=1e-3,
    )


@norm.check(points=1)
def uses_the_eps_argument(student, gen):
    d = randint(gen, 7, 11)
    weight, bias = _norm_params(gen, d)
    x = randn(gen, randint(gen, 3, 6), d, scale=0.1)
    _expect_norm(
        student, x, weight, bias, 1e-2, "layer_norm(x, weight, bias, eps=1e-2) for rows of variance ~1e-2", atol=1e-4
    )


@norm.check(points=1)
def gradients_match_f_layer_norm(student, gen):
    """Also through a row of equal values (variance 0), where F.layer_norm's gradient is finite."""
    d = randint(gen, 7, 11)
    x = randn(gen, randint(gen, 2, 3), randint(gen, 3, 6), d)
    x[0, 0] = 1.5  # a constant row
    weight, bias = _norm_params(gen, d)
    grad_output = randn(gen, *x.shape)
    inputs = [t.double().requires_grad_() for t in (x, weight, bias)]
    F.layer_norm(inputs[0], (d,), inputs[1], inputs[2]).backward(grad_output.double())
    _, grads = student.with_grad((x, weight, bias), grad_output, grad_inputs=(0, 1, 2))
    for grad, tensor, name in zip(grads, inputs, ("x", "weight", "bias")):
        if grad is None:
            raise CheckFailed(f"no gradient reaches {name}: compute layer_norm with differentiable torch operations")
        if isinstance(grad, torch.Tensor) and grad.shape == tensor.shape and not torch.isfinite(grad).all():
            raise CheckFailed(
                f"the gradient with respect to {name} contains NaN or inf for a row of equal values (variance 0), "
                "where F.layer_norm's gradient is finite: something in the graph has an infinite slope at a zero "
                "variance (such as sqrt(var) taken before eps is added); compute the variance as the mean of the "
                "squared deviations and take sqrt(var + eps)"
            )
        expect_close(grad, tensor.grad, f"the gradient with respect to {name}", atol=1e-4)


# ---------------------------------------------------------------------------------------
# FeedForward


def _expect_state(state, shapes, what, hint):
    """Fail unless ``state`` (a state_dict) has every key of ``shapes`` with that shape."""
    if not isinstance(state, dict):
        raise CheckFailed(f"{what}.state_dict() should return a dict, got {type(state).__name__}")
    missing = [key for key in shapes if key not in state]
    if missing:
        found = ", ".join(sorted(state)[:16]) or "none"
        raise CheckFailed(f"{what} has no parameter {missing[0]}: {hint} (its parameters are: {found})")
    for key, shape in shapes.items():
        expect_shape(state[key], shape, f"{what}'s {key}")


def _random_weights(gen, shapes):
    """Weights scaled like nn.Linear's initialization, LayerNorm gains near 1, small biases."""
    weights = {}
    for key, shape in shapes.items():
        if key.endswith("weight") and len(shape) == 2:
            weights[key] = randn(gen, *shape, scale=1 / math.sqrt(shape[1]))
        elif key.startswith("norm") and key.endswith("weight"):
            weights[key] = 1.0 + randn(gen, *shape, scale=0.3)
        else:
            weights[key] = randn(gen, *shape, scale=0.3)
    return weights


def _loaded(model, gen, shapes, what, hint):
    """Load known weights into the learner's module through its own load_state_dict."""
    state = model.state_dict()
    _expect_state(state, shapes, what, hint)
    weights = _random_weights(gen, shapes)
    # Only the contract's keys: a module that also registers linear1 under another name (in an nn.Sequential)
    # lists its parameters twice, and loading the stale copy as well would undo the new weights.
    model.load_state_dict(weights, strict=False)
    return {key: value.double() for key, value in weights.items()}


def _ffn_shapes(d_model, d_ff, prefix=""):
    return {
        f"{prefix}linear1.weight": (d_ff, d_model),
        f"{prefix}linear1.bias": (d_ff,),
        f"{prefix}linear2.weight": (d_model, d_ff),
        f"{prefix}linear2.bias": (d_model,),
    }


FFN_HINT = "FeedForward needs nn.Linear submodules linear1 (d_model -> d_ff) and linear2 (d_ff -> d_model)"


def _ffn_model(student, gen, activation=None, dropout=None, narrow=False):
    """The learner's FeedForward with known weights; ``narrow``: d_ff < d_model (the hidden vector can then be
    recovered from the output), else d_ff > d_model."""
    if narrow:
        d_model, d_ff = randint(gen, 13, 17), randint(gen, 4, 6)
    else:
        d_model, d_ff = randint(gen, 5, 11), randint(gen, 13, 29)
    kwargs = {k: v for k, v in (("activation", activation), ("dropout", dropout)) if v is not None}
    model = student(d_model, d_ff, **kwargs)
    weights = _loaded(model, gen, _ffn_shapes(d_model, d_ff), "FeedForward", FFN_HINT)
    return model, weights, d_model


def _ffn(weights, x, activation, after=lambda h: h):
    hidden = activation(F.linear(x.double(), weights["linear1.weight"], weights["linear1.bias"]))
    return after(F.linear(hidden, weights["linear2.weight"], weights["linear2.bias"]))


def _ffn_bugs(weights, x, activation):
    x64 = x.double()
    bugs = [
        (_ffn(weights, x, lambda h: h), "there is no activation between linear1 and linear2"),
        (
            _ffn(weights, x, activation, after=activation),
            "the activation is also applied after linear2; the output of linear2 is the result",
        ),
        (
            x64 + _ffn(weights, x, activation),
            "the input is added to the output: the residual connection belongs to TransformerBlock, not to FeedForward",
        ),
    ]
    if activation is F.relu:
        bugs.append((_ffn(weights, x, F.gelu), "GELU is used although activation='relu' (the default)"))
    else:
        tanh_gelu = _ffn(weights, x, lambda h: F.gelu(h, approximate="tanh"))
        bugs.append((tanh_gelu, "this is the tanh approximation of GELU; use the exact one, F.gelu(h) or nn.GELU()"))
        bugs.append((_ffn(weights, x, F.relu), "ReLU is used although activation='gelu' was asked for"))
    return bugs


@ffn.check(points=1)
def has_linear1_and_linear2(student, gen):
    model, _, d_model = _ffn_model(student, gen)
    shape = (randint(gen, 2, 3), randint(gen, 3, 7), d_model)
    expect_shape(model(randn(gen, *shape)), shape, "FeedForward's output (B, N, d_model)")


@ffn.check(points=1)
def relu_network_matches(student, gen):
    model, weights, d_model = _ffn_model(student, gen)
    for shape in ((randint(gen, 2, 3), randint(gen, 3, 7), d_model), (randint(gen, 3, 7), d_model)):
        x = randn(gen, *shape)
        expect_close(
            model(x),
            _ffn(weights, x, F.relu),
            f"FeedForward(x of shape {shape})",
            diagnoses=_ffn_bugs(weights, x, F.relu),
        )


@ffn.check(points=1)
def gelu_network_matches(student, gen):
    model, weights, d_model = _ffn_model(student, gen, activation="gelu")
    x = randn(gen, randint(gen, 2, 3), randint(gen, 3, 7), d_model, scale=2.0)
    expect_close(
        model(x),
        _ffn(weights, x, F.gelu),
        "FeedForward(..., activation='gelu')(x)",
        diagnoses=_ffn_bugs(weights, x, F.gelu),
    )


def _expect_dropout_only_in_training(model, x, expected, what):
    """Dropout must be off in eval() mode (the network's plain output) and on in train() mode."""
    model.eval()
    first = model(x)
    if isinstance(first, torch.Tensor) and not is_close(model(x), first):
        raise CheckFailed(
            f"{what} in eval() mode gives a different output at every call: dropout must be off after "
            "model.eval() (use nn.Dropout, or F.dropout(..., training=self.training))"
        )
    expect_close(first, expected, f"{what} in eval() mode")
    model.train()
    first, second = model(x), model(x)
    if is_close(first, expected) and is_close(second, expected):
        raise CheckFailed(
            f"{what} in train() mode gives the same output as in eval() mode: dropout is not applied "
            "(use nn.Dropout(dropout) and call it in forward)"
        )


@ffn.check(points=1)
def dropout_only_in_training(student, gen):
    model, weights, d_model = _ffn_model(student, gen, dropout=0.5)
    x = randn(gen, randint(gen, 2, 3), randint(gen, 4, 7), d_model)
    _expect_dropout_only_in_training(model, x, _ffn(weights, x, F.relu), "FeedForward(..., dropout=0.5)")


def _nan_at_full_dropout(output, what):
    if isinstance(output, torch.Tensor) and output.is_floating_point() and not torch.isfinite(output).all():
        raise CheckFailed(
            f"{what} contains NaN or inf: with every value dropped nothing may be divided by "
            "1 - p = 0 (nn.Dropout(1.0) returns zeros)"
        )


@ffn.check(points=1)
def dropout_acts_on_the_hidden_activation(student, gen):
    """dropout=1.0 in train() mode drops every hidden unit: the output is exactly linear2's bias;
    dropout=0.0 in train() mode is the network's plain output."""
    model, weights, d_model = _ffn_model(student, gen, dropout=1.0)
    x = randn(gen, randint(gen, 2, 3), randint(gen, 4, 7), d_model)
    full = _ffn(weights, x, F.relu)
    expected = weights["linear2.bias"].expand_as(full)
    diagnoses = [
        (full, "nothing was dropped: dropout is not applied, or the dropout argument is ignored"),
        (
            torch.zeros_like(full),
            "the output of linear2 is dropped; dropout acts on the hidden activation, "
            "between the activation and linear2",
        ),
        (
            _ffn(weights, torch.zeros_like(x), F.relu),
            "the input x is dropped; dropout acts on the hidden activation, between the activation and linear2",
        ),
    ]
    what = "FeedForward(..., dropout=1.0) in train() mode"
    model.train()
    output = model(x)
    _nan_at_full_dropout(output, what)
    expect_close(
        output, expected, f"{what} (every hidden unit dropped: the output is linear2.bias)", diagnoses=diagnoses
    )
    model, weights, d_model = _ffn_model(student, gen, dropout=0.0)
    x = randn(gen, randint(gen, 2, 3), randint(gen, 4, 7), d_model)
    expected = _ffn(weights, x, F.relu)
    model.train()
    expect_close(
        model(x),
        expected,
        "FeedForward(..., dropout=0.0) in train() mode, which must drop nothing,",
        diagnoses=_ffn_bugs(weights, x, F.relu),
    )


@ffn.check(points=1)
def dropout_rescales_the_kept_hidden_units(student, gen):
    """With d_ff < d_model the hidden vector is recovered from the output (least squares through
    linear2): each hidden unit must be either dropped (0) or the activation's value / (1 - p)."""
    p = 0.5
    model, weights, d_model = _ffn_model(student, gen, activation="gelu", dropout=p, narrow=True)
    x = randn(gen, 3, randint(gen, 5, 7), d_model, scale=2.0)
    pre = F.linear(x.double(), weights["linear1.weight"], weights["linear1.bias"])
    kept = F.gelu(pre) / (1 - p)
    model.train()
    output = expect_shape(model(x), x.shape, "FeedForward(..., activation='gelu', dropout=0.5)(x) in train() mode")
    w2, b2 = weights["linear2.weight"], weights["linear2.bias"]
    target = (output.detach().double() - b2).reshape(-1, d_model).T
    hidden = torch.linalg.lstsq(w2, target).solution.T.reshape(kept.shape)
    residual = (hidden @ w2.T - target.T.reshape(*x.shape[:-1], d_model)).abs().max()
    what = "in train() mode with dropout=0.5"
    if not torch.isfinite(hidden).all() or residual > 1e-3 * (1 + target.abs().max()):
        raise CheckFailed(
            f"{what}, the output is not linear2 applied to a hidden vector: dropout acts after "
            "linear2 (or on the input); it belongs on the hidden activation, before linear2"
        )

    def close(a, b):
        return (a - b).abs() <= 1e-3 * (1 + b.abs())

    dropped, scaled = close(hidden, torch.zeros_like(hidden)), close(hidden, kept)
    if (dropped | scaled).all() and dropped.any() and scaled.any():
        return
    if close(hidden, F.gelu(pre)).all():
        raise CheckFailed(f"{what} no hidden unit was dropped: dropout is not applied")
    if (dropped | close(hidden, F.gelu(pre))).all():
        raise CheckFailed(
            f"{what} the kept hidden units are not scaled by 1 / (1 - p): use nn.Dropout, which "
            "scales them so that the expected value is unchanged"
        )
    if (dropped | close(hidden, F.gelu(pre / (1 - p)))).all():
        raise CheckFailed(
            f"{what} dropout acts before the activation; it acts on the activation's output: "
            "linear2(dropout(activation(linear1(x))))"
        )
    raise CheckFailed(
        f"{what} some hidden units are neither dropped (0) nor the activation's value / (1 - p): "
        "dropout must act on the hidden activation, linear2(dropout(activation(linear1(x))))"
    )


def _backward(model, x, grad_output, what, **kwargs):
    """``model(x, **kwargs)`` back-propagated with ``grad_output``: ``(output, (grad of x,))``. A backward
    that PyTorch refuses because forward changed a saved tensor in place fails with that cause named."""
    try:
        output, grads = model.with_grad((x,), grad_output, grad_inputs=(0,), **kwargs)
    except StudentError as error:
        text = str(error)
        if "inplace" in text or "in-place" in text:
            raise CheckFailed(
                f"{what}: backward fails because forward changed, in place, a tensor that autograd saved to "
                "compute the gradient (PyTorch: 'modified by an inplace operation'). Look for in-place operations "
                "in forward: inplace=True in a dropout or an activation, +=, add_, masked_fill_, h[...] = ...; "
                "write h = h + ... instead"
            ) from None
        if "does not require grad" in text:
            raise CheckFailed(
                f"{what}: no gradient flows back to x, the output is cut off from the graph "
                "(.detach(), torch.no_grad() or .data in forward)"
            ) from None
        raise
    if grads[0] is None:
        raise CheckFailed(
            f"{what}: no gradient reaches x, the path from x to the output is cut "
            "(.detach(), torch.no_grad() or .data in forward)"
        )
    return output, grads


def _ffn_input_grad(weights, x, grad_output, activation=F.relu):
    x64 = x.double().requires_grad_()
    _ffn(weights, x64, activation).backward(grad_output.double())
    return x64.grad


@ffn.check(points=1)
def backward_in_train_mode(student, gen):
    """As training runs it, in train() mode: with dropout=0.0 the gradient with respect to x is the
    network's; with dropout=0.4 backward runs (no in-place change to a tensor autograd saved); forward
    and backward leave the parameters unchanged."""
    for dropout in (0.0, 0.4):
        model, weights, d_model = _ffn_model(student, gen, dropout=dropout)
        x = randn(gen, randint(gen, 2, 3), randint(gen, 3, 7), d_model)
        grad_output = randn(gen, *x.shape)
        what = f"FeedForward(..., dropout={dropout}) in train() mode"
        model.train()
        before = model.state_dict()
        _, (grad,) = _backward(model, noncontiguous(x), grad_output, what)
        expect_state_unchanged(model, before, f"{what}, forward and backward,")
        if dropout == 0.0:
            expected = _ffn_input_grad(weights, x, grad_output)
            expect_close(grad, expected, f"the gradient of {what} with respect to x", atol=1e-4)
        else:
            expect_shape(grad, x.shape, f"the gradient of {what} with respect to x")


# ---------------------------------------------------------------------------------------
# TransformerBlock

BLOCK_HINT = (
    "TransformerBlock needs submodules attn (chapter 3's MultiHeadAttention, with w_q, w_k, w_v, w_o), "
    "ffn (FeedForward, with linear1 and linear2), norm1 and norm2 (nn.LayerNorm(d_model))"
)


def _block_shapes(d_model, d_ff):
    shapes = {
        f"attn.{w}.{p}": (d_model, d_model) if p == "weight" else (d_model,)
        for w in ("w_q", "w_k", "w_v", "w_o")
        for p in ("weight", "bias")
    }
    shapes.update(_ffn_shapes(d_model, d_ff, prefix="ffn."))
    shapes.update({f"{n}.{p}": (d_model,) for n in ("norm1", "norm2") for p in ("weight", "bias")})
    return shapes


def _block_model(student, gen, norm_first, activation=None, dropout=None):
    """(model, weights, sizes, x): the learner's block with known weights, sizes (B, N, D, H, d_ff)
    and an input x (B, N, D)."""
    # Sizes pairwise distinct where a message names them (B < N < d_model < d_ff), and B != H.
    heads, d_head = randint(gen, 2, 3), randint(gen, 5, 6)
    d_model, d_ff = heads * d_head, randint(gen, 19, 29)
    kwargs = {k: v for k, v in (("activation", activation), ("dropout", dropout)) if v is not None}
    model = student(d_model, heads, d_ff, norm_first=norm_first, **kwargs)
    weights = _loaded(model, gen, _block_shapes(d_model, d_ff), "TransformerBlock", BLOCK_HINT)
    batch, n = 5 - heads, randint(gen, 4, 7)
    return model, weights, (batch, n, d_model, heads, d_ff), randn(gen, batch, n, d_model)


def _pytorch_layer(weights, sizes, norm_first, activation="relu"):
    """torch.nn.TransformerEncoderLayer (float64, dropout 0, eval) holding ``weights``."""
    _, _, d_model, heads, d_ff = sizes
    layer = nn.TransformerEncoderLayer(
        d_model,
        heads,
        d_ff,
        dropout=0.0,
        activation=activation,
        norm_first=norm_first,
        batch_first=True,
        dtype=torch.float64,
    )
    attn = {
        "self_attn.in_proj_weight": torch.cat([weights[f"attn.w_{p}.weight"] for p in "qkv"]),
        "self_attn.in_proj_bias": torch.cat([weights[f"attn.w_{p}.bias"] for p in "qkv"]),
        "self_attn.out_proj.weight": weights["attn.w_o.weight"],
        "self_attn.out_proj.bias": weights["attn.w_o.bias"],
    }
    rest = {key.removeprefix("ffn."): value for key, value in weights.items() if not key.startswith("attn.")}
    layer.load_state_dict({**attn, **rest})
    return layer.eval()


def _run_layer(layer, x, mask):
    """The layer's output; PyTorch's bool src_mask is True where attending is NOT allowed."""
    with torch.no_grad():
        return layer(x.double(), src_mask=None if mask is None else ~mask)


def _variant(layer, x, mask, order, attn_residual=True, ffn_residual=True, swap_norms=False):
    """The block with one typical bug, built from the layer's own submodules (float64)."""
    attn_mask = None if mask is None else ~mask
    norm1, norm2 = (layer.norm2, layer.norm1) if swap_norms else (layer.norm1, layer.norm2)

    def attend(h):
        return layer.self_attn(h, h, h, attn_mask=attn_mask, need_weights=False)[0]

    def feed_forward(h):
        return layer.linear2(layer.activation(layer.linear1(h)))

    def residual(keep, h, out):
        return h + out if keep else out

    x = x.double()
    with torch.no_grad():
        if order == "post":
            h = norm1(residual(attn_residual, x, attend(x)))
            return norm2(residual(ffn_residual, h, feed_forward(h)))
        if order == "pre":
            h = residual(attn_residual, x, attend(norm1(x)))
            return residual(ffn_residual, h, feed_forward(norm2(h)))
        if order == "pre_residual_of_normalized":
            h = norm1(x)
            h = h + attend(h)
            h = norm2(h)
            return h + feed_forward(h)
        if order == "parallel":
            return x + attend(norm1(x)) + feed_forward(norm2(x))
        if order == "post_ffn_of_the_sum":
            h = x + attend(x)
            return norm2(norm1(h) + feed_forward(h))
    raise ValueError(order)


def _block_bugs(layer, x, mask, norm_first):
    """Yields (output, explanation) of typical bugs, computed one at a time: the diagnosis
    stops at the first one that matches."""
    order = "pre" if norm_first else "post"
    asked = "Pre-LN (norm_first=True)" if norm_first else "Post-LN (norm_first=False)"
    yield (
        _variant(layer, x, mask, "post" if norm_first else "pre"),
        "this is Post-LN, x = norm(x + sublayer(x)), but norm_first=True asks for Pre-LN, x = x + sublayer(norm(x))"
        if norm_first
        else "this is Pre-LN, x = x + sublayer(norm(x)), but norm_first=False asks for Post-LN, x = norm(x + sublayer(x))",
    )
    yield (
        _variant(layer, x, mask, order, attn_residual=False, ffn_residual=False),
        f"there is no residual connection ({asked}): add each sublayer's input to its output",
    )
    yield (
        _variant(layer, x, mask, order, attn_residual=False),
        "the residual connection around attention is missing: add the attention sublayer's input to its output",
    )
    yield (
        _variant(layer, x, mask, order, ffn_residual=False),
        "the residual connection around the feed-forward network is missing",
    )
    yield (
        _variant(layer, x, mask, order, swap_norms=True),
        "norm1 and norm2 are swapped: norm1 belongs to the attention sublayer, norm2 to the feed-forward one",
    )
    if norm_first:
        yield (
            _variant(layer, x, mask, "pre_residual_of_normalized"),
            "the residual path carries the normalized x; in Pre-LN only the sublayer's input is normalized: "
            "x = x + attn(norm1(x))",
        )
        yield (
            _variant(layer, x, mask, "parallel"),
            "the feed-forward network reads the block's input; it must read the output of the attention "
            "sublayer: x = x + attn(norm1(x)), then x = x + ffn(norm2(x))",
        )
    else:
        yield (
            _variant(layer, x, mask, "post_ffn_of_the_sum"),
            "the feed-forward network reads x + attn(x) before norm1; in Post-LN it reads the normalized sum, "
            "x = norm1(x + attn(x)), then x = norm2(x + ffn(x))",
        )
    if mask is not None:
        yield _variant(layer, x, None, order), "the mask is ignored: pass it to self.attn(..., mask=mask)"


def _part_fault(model, weights, x, activation):
    """Why one of the block's own parts, called alone in eval() mode with the loaded weights, is wrong (its
    ffn, norm1 or norm2); None when each gives what it should. A block is only as right as its parts."""
    d_model = x.shape[-1]
    ffn_weights = {key.removeprefix("ffn."): value for key, value in weights.items() if key.startswith("ffn.")}
    parts = [
        ("ffn", _ffn(ffn_weights, x, activation), "your FeedForward: see its own checks"),
        *(
            (name, F.layer_norm(x.double(), (d_model,), weights[f"{name}.weight"], weights[f"{name}.bias"]), BLOCK_HINT)
            for name in ("norm1", "norm2")
        ),
    ]
    try:
        model.eval()
        for name, expected, where in parts:
            first, second = getattr(model, name)(x), getattr(model, name)(x)
            if not (isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor)):
                continue
            if is_close(first, expected) and is_close(second, expected):
                continue
            if first.shape == expected.shape and not is_close(first, second):
                return (
                    f"the block's {name} alone gives a different output at every call in eval() mode (dropout left "
                    f"on after model.eval()?), so the block cannot be right; {where}"
                )
            return f"the block's {name} alone, in eval() mode with the loaded weights, is wrong ({where})"
    except StudentError:
        return None
    return None


@contextlib.contextmanager
def _blaming_parts(model, weights, x, activation=F.relu):
    """A failure inside is reported after the fault of a part of the block (its ffn, norm1, norm2) when one
    of them is wrong alone: the real cause first."""
    try:
        yield
    except CheckFailed as failure:
        fault = _part_fault(model, weights, x, activation)
        if fault is None:
            raise
        raise CheckFailed(f"{fault}. Fix that first; the block's check said: {failure}") from None


def _expect_block(model, weights, sizes, norm_first, x, mask=None, activation="relu", what=None):
    layer = _pytorch_layer(weights, sizes, norm_first, activation)
    expected = _run_layer(layer, x, mask)
    diagnoses = _block_bugs(layer, x, mask, norm_first)
    if activation != "relu":
        relu_block = _run_layer(_pytorch_layer(weights, sizes, norm_first), x, mask)
        why = f"the FFN uses ReLU although activation={activation!r}: pass the block's activation to FeedForward"
        diagnoses = itertools.chain(diagnoses, [(relu_block, why)])
    output = model(x) if mask is None else model(x, mask=mask)
    what = what or f"TransformerBlock(norm_first={norm_first})(x{'' if mask is None else ', mask'})"
    if (
        mask is not None
        and isinstance(output, torch.Tensor)
        and output.shape == x.shape
        and not torch.isfinite(output).all()
    ):
        raise CheckFailed(
            f"{what} contains NaN: some query may attend to no key; is the mask inverted? "
            "Here True means MAY attend (PyTorch's src_mask uses the opposite convention)"
        )
    with _blaming_parts(model, weights, x, F.gelu if activation == "gelu" else F.relu):
        expect_close(output, expected, what, diagnoses=diagnoses)


@block.check(points=1)
def has_attn_ffn_norm1_norm2(student, gen):
    model, _, _, x = _block_model(student, gen, norm_first=bool(randint(gen, 0, 1)))
    expect_shape(model(x), x.shape, "TransformerBlock's output (B, N, d_model)")


@block.check(points=1)
def post_ln_matches_pytorch(student, gen):
    model, weights, sizes, x = _block_model(student, gen, norm_first=False)
    _expect_block(model, weights, sizes, False, x)


@block.check(points=2)
def pre_ln_matches_pytorch(student, gen):
    model, weights, sizes, x = _block_model(student, gen, norm_first=True)
    _expect_block(model, weights, sizes, True, x)


@block.check(points=1)
def causal_mask_in_both_orders(student, gen):
    for norm_first in (False, True):
        model, weights, sizes, x = _block_model(student, gen, norm_first=norm_first)
        n = sizes[1]
        _expect_block(model, weights, sizes, norm_first, x, mask=torch.ones(n, n, dtype=torch.bool).tril())


@block.check(points=1)
def gelu_activation(student, gen):
    norm_first = bool(randint(gen, 0, 1))
    model, weights, sizes, x = _block_model(student, gen, norm_first=norm_first, activation="gelu")
    _expect_block(
        model,
        weights,
        sizes,
        norm_first,
        x,
        activation="gelu",
        what=f"TransformerBlock(norm_first={norm_first}, activation='gelu')(x)",
    )


@block.check(points=1)
def dropout_only_in_training(student, gen):
    norm_first = bool(randint(gen, 0, 1))
    model, weights, sizes, x = _block_model(student, gen, norm_first=norm_first, dropout=0.3)
    expected = _run_layer(_pytorch_layer(weights, sizes, norm_first), x, None)
    with _blaming_parts(model, weights, x):
        _expect_dropout_only_in_training(model, x, expected, f"TransformerBlock(norm_first={norm_first}, dropout=0.3)")


def _block_at_full_dropout(layer, x, norm_first):
    """(expected, diagnoses) of the block with dropout=1.0 in train() mode: every sublayer's
    output is dropped before the addition, so Pre-LN returns x and Post-LN norm2(norm1(x))."""
    x = x.double()

    def attend(h):
        return layer.self_attn(h, h, h, need_weights=False)[0]

    with torch.no_grad():
        bias = layer.linear2.bias  # what the FFN gives when its hidden units are all dropped
        if norm_first:
            expected, stream = x, torch.zeros_like(x)
            attention_kept, ffn_kept = x + attend(layer.norm1(x)), x + bias
            both_kept = attention_kept + bias
        else:
            expected, stream = layer.norm2(layer.norm1(x)), layer.norm2.bias.expand_as(x)
            attention_kept, ffn_kept = layer.norm2(layer.norm1(x + attend(x))), layer.norm2(layer.norm1(x) + bias)
            both_kept = layer.norm2(layer.norm1(x + attend(x)) + bias)
        full = layer(x)
    return expected, [
        (full, "nothing was dropped: the block applies no dropout, or ignores its dropout argument"),
        (
            both_kept,
            "neither sublayer's output is dropped (only the FFN's hidden units are): apply dropout to each "
            "sublayer's output before adding it to x",
        ),
        *(
            (
                dropped,
                "the residual stream itself is dropped; dropout acts on each sublayer's output before it is "
                "added to x, never on x, on the sum or after a LayerNorm",
            )
            for dropped in (stream, torch.zeros_like(x))
        ),
        (attention_kept, "the attention sublayer's output is not dropped: apply dropout to it before adding it to x"),
        (
            ffn_kept,
            "the feed-forward sublayer's output is not dropped: apply dropout to the FFN's output too, before "
            "adding it to x (FeedForward's own dropout acts on its hidden units only)",
        ),
    ]


@block.check(points=1)
def dropout_on_each_sublayer_output(student, gen):
    """dropout=1.0 in train() mode drops every sublayer's output; dropout=0.0 in train() mode drops nothing."""
    for norm_first in (False, True):
        model, weights, sizes, x = _block_model(student, gen, norm_first=norm_first, dropout=1.0)
        expected, diagnoses = _block_at_full_dropout(_pytorch_layer(weights, sizes, norm_first), x, norm_first)
        what = f"TransformerBlock(norm_first={norm_first}, dropout=1.0) in train() mode"
        model.train()
        output = model(x)
        _nan_at_full_dropout(output, what)
        expect_close(
            output,
            expected,
            f"{what} (every sublayer's output dropped: {'x itself' if norm_first else 'norm2(norm1(x))'} is expected)",
            diagnoses=diagnoses,
        )
    norm_first = bool(randint(gen, 0, 1))
    model, weights, sizes, x = _block_model(student, gen, norm_first=norm_first, dropout=0.0)
    expected = _run_layer(_pytorch_layer(weights, sizes, norm_first), x, None)
    model.train()
    expect_close(
        model(x),
        expected,
        f"TransformerBlock(norm_first={norm_first}, dropout=0.0) in train() mode, which must drop nothing,",
    )


@block.check(points=1)
def dropout_reaches_the_feed_forward_network(student, gen):
    """The block's own ffn, built with the block's dropout, drops every hidden unit at dropout=1.0."""
    model, weights, sizes, x = _block_model(student, gen, norm_first=bool(randint(gen, 0, 1)), dropout=1.0)
    hidden = F.relu(F.linear(x.double(), weights["ffn.linear1.weight"], weights["ffn.linear1.bias"]))
    full = F.linear(hidden, weights["ffn.linear2.weight"], weights["ffn.linear2.bias"])
    expected = weights["ffn.linear2.bias"].expand_as(full)
    what = "the block's ffn, in train() mode with TransformerBlock(..., dropout=1.0),"
    model.train()
    output = model.ffn(x)
    _nan_at_full_dropout(output, what)
    expect_close(
        output,
        expected,
        f"{what} (every hidden unit dropped: the output is ffn.linear2.bias)",
        diagnoses=[
            (
                full,
                "nothing was dropped: pass the block's dropout to FeedForward(d_model, d_ff, activation, dropout) "
                "(and see FeedForward's own checks)",
            )
        ],
    )


def _layer_input_grad(layer, x, grad_output):
    x64 = x.double().requires_grad_()
    layer(x64).backward(grad_output.double())
    return x64.grad


@block.check(points=1)
def backward_in_train_mode(student, gen):
    """As training runs it, in train() mode: with dropout=0.0 the gradient with respect to x is
    TransformerEncoderLayer's, in both orders; with dropout=0.3 backward runs (no in-place change to a
    tensor autograd saved); forward and backward leave the parameters and buffers unchanged."""
    for norm_first, dropout in ((False, 0.0), (True, 0.0), (bool(randint(gen, 0, 1)), 0.3)):
        model, weights, sizes, x = _block_model(student, gen, norm_first=norm_first, dropout=dropout)
        grad_output = randn(gen, *x.shape)
        what = f"TransformerBlock(norm_first={norm_first}, dropout={dropout}) in train() mode"
        model.train()
        before = model.state_dict()
        with _blaming_parts(model, weights, x):
            _, (grad,) = _backward(model, x, grad_output, what)
            expect_state_unchanged(model, before, f"{what}, forward and backward,")
            if dropout == 0.0:
                expected = _layer_input_grad(_pytorch_layer(weights, sizes, norm_first), x, grad_output)
                expect_close(grad, expected, f"the gradient of {what} with respect to x", atol=1e-4)
            else:
                expect_shape(grad, x.shape, f"the gradient of {what} with respect to x")


def _padded_block(layer, x, padding):
    """The layer's output with a padding mask (B, 1, 1, N), one sequence at a time (float64)."""
    n = x.shape[1]
    return torch.cat([_run_layer(layer, x[b : b + 1], padding[b, 0].expand(n, n)) for b in range(x.shape[0])])


@block.check(points=1)
def padding_mask_and_repeated_calls(student, gen):
    """A padding mask of shape (B, 1, 1, N) hides the keys after each sequence's length; calls at other
    sizes (a batch of one, a sequence of one) between two calls on the same input change nothing (nothing
    kept from an earlier call), and the parameters and buffers stay unchanged."""
    norm_first = bool(randint(gen, 0, 1))
    model, weights, sizes, x = _block_model(student, gen, norm_first=norm_first)
    batch, n, d_model = sizes[:3]
    lengths = torch.randint(1, n, (batch,), generator=gen)
    lengths[0] = n  # one sequence without padding, one with a single real token
    lengths[-1] = 1
    padding = (torch.arange(n) < lengths[:, None])[:, None, None, :]
    layer = _pytorch_layer(weights, sizes, norm_first)
    before = model.state_dict()
    what = f"TransformerBlock(norm_first={norm_first})(x, mask) with a padding mask of shape (B, 1, 1, N)"
    with _blaming_parts(model, weights, x):
        output = model(noncontiguous(x), mask=noncontiguous(padding))  # layouts a caller's views have
        if isinstance(output, torch.Tensor) and output.shape == x.shape and not torch.isfinite(output).all():
            raise CheckFailed(
                f"{what} contains NaN: some query may attend to no key; is the mask inverted? "
                "Here True means MAY attend"
            )
        expect_close(
            output,
            _padded_block(layer, x, padding),
            what,
            diagnoses=[(_run_layer(layer, x, None), "the mask is ignored: pass it to self.attn(..., mask=mask)")],
        )
        others = [randn(gen, 1, n + randint(gen, 1, 3), d_model), randn(gen, batch, 1, d_model), x]
        for other in others:
            expect_close(
                model(other),
                _run_layer(layer, other, None),
                f"TransformerBlock(norm_first={norm_first})(x of shape {tuple(other.shape)}), called after calls "
                "on other sizes (is something kept from an earlier call?)",
            )
    expect_state_unchanged(model, before, f"TransformerBlock(norm_first={norm_first}) called four times")


# ---------------------------------------------------------------------------------------
# count_parameters


def _call_text(args, kwargs):
    return "count_parameters(" + ", ".join([*map(str, args), *(f"{k}={v}" for k, v in kwargs.items())]) + ")"


def _count_bugs(args, kwargs):
    """[(wrong count, explanation)] of typical mistakes for this configuration."""
    n_layers, d_model, vocab_size, n_ctx = args
    d_ff = kwargs.get("d_ff") or 4 * d_model
    biases, tied = kwargs.get("biases", True), kwargs.get("tied_embeddings", True)
    expected = ref.count_parameters(*args, **kwargs)
    norm = d_model * (1 + int(biases))
    bugs = []  # the mistakes specific to this configuration first: they are the likelier explanation
    if tied:
        bugs.append(
            (
                expected + vocab_size * d_model,
                "the output projection is counted although it is tied to the "
                "token embedding (tied_embeddings=True): it is the same matrix",
            )
        )
    else:
        bugs.append(
            (
                expected - vocab_size * d_model,
                "with tied_embeddings=False the output projection "
                "(d_model x vocab_size) is a separate matrix and must be counted",
            )
        )
        bugs.append((expected + vocab_size, "the output projection has no bias"))
    if biases:
        bugs.append(
            (
                ref.count_parameters(*args, **{**kwargs, "biases": False}),
                "biases are not counted (every Linear and LayerNorm has one when biases=True)",
            )
        )
    else:
        bugs.append((ref.count_parameters(*args, **{**kwargs, "biases": True}), "biases=False is ignored"))
        bugs.append(
            (
                expected + (2 * n_layers + 1) * d_model,
                "biases=False must drop the LayerNorm biases too (only the LayerNorm gains stay)",
            )
        )
        bugs.append(
            (
                expected - (2 * n_layers + 1) * d_model,
                "biases=False drops the LayerNorm biases, but the LayerNorm gains (weights) stay",
            )
        )
    if d_ff != 4 * d_model:
        bugs.append((ref.count_parameters(*args, **{**kwargs, "d_ff": None}), "the d_ff argument is ignored"))
    else:
        bugs.append(
            (ref.count_parameters(*args, **{**kwargs, "d_ff": d_model}), "d_ff=None must mean d_ff = 4 * d_model")
        )
    if biases:
        bugs += [
            (expected - n_layers * d_model, "the attention has four biases per block (w_q, w_k, w_v and w_o)"),
            (
                expected + n_layers * (d_ff - d_model),
                "linear2's bias has d_model entries (its output width), not d_ff",
            ),
        ]
    bugs += [
        (expected - n_ctx * d_model, "the learned position embedding (n_ctx x d_model) is not counted"),
        (
            expected - (2 * n_layers + 1) * norm,
            "the LayerNorms (norm1 and norm2 in every block, and the final one) are not counted",
        ),
        (expected - norm, "the final LayerNorm (after the last block) is not counted"),
        (expected - 2 * n_layers * norm, "the two LayerNorms inside each block are not counted"),
        (expected - n_layers * norm, "each block has two LayerNorms, norm1 and norm2"),
        (
            expected - n_layers * (d_model**2 + d_model * int(biases)),
            "the attention's output projection w_o is not counted",
        ),
        (
            n_layers * 12 * d_model**2,
            "only the 12 d_model^2 weights per block are counted: add the embeddings, biases and LayerNorms",
        ),
    ]
    return bugs


def _as_number(result):
    """The learner's count as a Python number (a NumPy scalar comes back as a handle, a tensor as a tensor),
    or None when it is not a number."""
    if isinstance(result, Student) and result.has("item"):
        result = result.item()
    if isinstance(result, torch.Tensor) and result.numel() == 1:
        result = result.item()
    return None if isinstance(result, bool) or not isinstance(result, (int, float)) else result


def _expect_count(student, args, kwargs, note=""):
    """A wrong count is also asked for one more layer: a typical bug is named only when it explains both
    counts (sizes can make two mistakes give one number); otherwise the message says whether the
    count per block or the count outside the blocks is wrong."""
    deeper = (args[0] + 1, *args[1:])
    expected, expected_deeper = ref.count_parameters(*args, **kwargs), ref.count_parameters(*deeper, **kwargs)
    bugs, bugs_deeper = _count_bugs(args, kwargs), _count_bugs(deeper, kwargs)
    call = _call_text(args, kwargs)
    result = student(*args, **kwargs)
    value = _as_number(result)
    if value is None:
        raise CheckFailed(f"{call} should return a number (an int), got {type(result).__name__}")
    if abs(value - expected) < 0.5:
        return
    value_deeper = _as_number(student(*deeper, **kwargs))
    if value_deeper is None:
        raise CheckFailed(f"{call} is {value:,.0f}, expected {expected:,}{note}")
    matches = [
        why
        for (wrong, why), (wrong_deeper, _) in zip(bugs, bugs_deeper)
        if abs(value - wrong) < 0.5 and abs(value_deeper - wrong_deeper) < 0.5
    ]
    per_block, expected_per_block = value_deeper - value, expected_deeper - expected
    if matches:
        explanation = "; or ".join(dict.fromkeys(matches))
    elif abs(per_block) < 0.5:
        explanation = (
            f"one more layer adds nothing to your count ({_call_text(deeper, kwargs)} is the same): count each part "
            "of the model described above the exercise, with n_layers blocks"
        )
    elif abs(per_block - expected_per_block) >= 0.5:
        explanation = (
            f"one more layer adds {per_block:,.0f} to your count ({_call_text(deeper, kwargs)} minus {call}), "
            f"but a block has {expected_per_block:,} parameters: check the block's attention, FFN and LayerNorms"
        )
    else:
        explanation = (
            f"each block is counted right ({expected_per_block:,}); the difference, {value - expected:+,.0f}, is "
            "outside the blocks: check the embeddings, the final LayerNorm and the output projection (only "
            "parameters count, not buffers such as a mask)"
        )
    raise CheckFailed(f"{call} is {value:,.0f}, expected {expected:,}{note}: {explanation}")


def _small_config(gen):
    """(n_layers, d_model, vocab_size, n_ctx) in disjoint ranges, so no two terms of the count coincide."""
    return randint(gen, 1, 4), 2 * randint(gen, 4, 20), randint(gen, 61, 120), randint(gen, 41, 60)


@counting.check(points=2)
def default_gpt_configurations(student, gen):
    _expect_count(student, _small_config(gen), {})
    _expect_count(student, (12, 768, 50257, 1024), {}, note=" (GPT-2 small has 124,439,808 parameters)")
    _expect_count(student, (96, 12288, 50257, 2048), {}, note=" (GPT-3 175B)")


@counting.check(points=1)
def explicit_d_ff(student, gen):
    args = _small_config(gen)
    _expect_count(student, args, {"d_ff": 3 * args[1] + randint(gen, 1, 9)})


@counting.check(points=1)
def without_biases(student, gen):
    _expect_count(student, _small_config(gen), {"biases": False})


@counting.check(points=1)
def untied_embeddings(student, gen):
    _expect_count(student, _small_config(gen), {"tied_embeddings": False})
    _expect_count(student, _small_config(gen), {"tied_embeddings": False, "biases": False})


@counting.check(points=1)
def returns_an_int(student, gen):
    """A count of parameters is an int (a NumPy integer is one too); not a float, a tensor or a bool."""
    args = _small_config(gen)
    result = student(*args)
    if isinstance(result, Student) and result.has("item"):  # a NumPy scalar
        item = result.item()
        if isinstance(item, int) and not isinstance(item, bool):
            return
        kind = f"a NumPy {type(item).__name__}"
    elif isinstance(result, int) and not isinstance(result, bool):
        return
    else:
        kind = "a torch.Tensor" if isinstance(result, torch.Tensor) else f"a {type(result).__name__}"
    hint = {
        "a float": " (a / division or math.pow makes one: use * and // or int(...))",
        "a torch.Tensor": " (use Python arithmetic, or int(...) of the result)",
    }.get(kind, "")
    raise CheckFailed(f"{_call_text(args, {})} returns {kind}{hint}; a number of parameters is an int")
