"""Checks for chapter 3: ``split_heads``, ``merge_heads``, ``MultiHeadAttention``.

``split_heads`` and ``merge_heads`` are compared with ``solutions.multi_head_attention``.
``MultiHeadAttention`` is constructed through the handle, loaded with known weights through
its own ``load_state_dict``, and compared with ``torch.nn.MultiheadAttention`` holding the
same weights (float64). Typical bugs are recomputed on the same inputs to name them; the
sizes are drawn distinct (B, N, H, d_head, D), so that a bug cannot hide behind two equal sizes
(a scale of sqrt(H) when H = d_head) and a named size is the one meant. Expected values are
computed before the learner's code runs. A forward that hands the work to PyTorch's own
multi-head attention fails, as the exercise rules out.
"""

import math
import re

import torch
from torch import nn

from autograder.oracle import reference
from autograder.student import StudentError
from autograder.suite import (
    CheckFailed,
    Suite,
    blame_dependency,
    distinct_sizes,
    expect_close,
    expect_shape,
    is_close,
    noncontiguous,
    randint,
    randn,
    random_mask,
)

attention_ref = reference("attention")
ref = reference("multi_head_attention")

split = Suite("split_heads")
merge = Suite("merge_heads")
mha = Suite("MultiHeadAttention", depends_on=(split, merge))
SUITES = {s.function: s for s in (split, merge, mha)}

INTERLEAVED = "heads are interleaved: head h must hold features h*D/H..(h+1)*D/H"


def _sizes(gen):
    """(B, N, H, d_head), pairwise distinct and N != D = H * d_head, with N > H, so that swapped
    dimensions change the shape and no scale or size can stand in for another."""
    while True:
        batch, n, heads, d_head = distinct_sizes(gen, (2, 3), (5, 9), (2, 4), (2, 5))
        if n != heads * d_head:
            return batch, n, heads, d_head


# ---------------------------------------------------------------------------------------
# split_heads


def _split_interleaved(x, num_heads):
    batch, n, d_model = x.shape
    return x.reshape(batch, n, d_model // num_heads, num_heads).permute(0, 3, 1, 2)


def _split_diagnoses(x, num_heads):
    batch, n, d_model = x.shape
    return [
        (_split_interleaved(x, num_heads), INTERLEAVED),
        (
            x.reshape(batch, num_heads, n, d_model // num_heads),
            "x was reshaped straight to (B, H, N, D/H), which puts features of different tokens into one row; "
            "reshape to (B, N, H, D/H), then transpose(1, 2)",
        ),
    ]


def _split(student, x, num_heads):
    batch, n, d_model = x.shape
    result, expected = student(x, num_heads), (batch, num_heads, n, d_model // num_heads)
    transposed = (batch, n, num_heads, d_model // num_heads)
    if isinstance(result, torch.Tensor) and tuple(result.shape) == transposed != expected:
        raise CheckFailed(
            f"split_heads(x of shape {tuple(x.shape)}, {num_heads}) has shape {tuple(result.shape)} = "
            "(B, N, H, D/H): the head dimension must come second; swap dims 1 and 2 (transpose(1, 2))"
        )
    return expect_shape(result, expected, f"split_heads(x of shape {tuple(x.shape)}, {num_heads})")


@split.check(points=1)
def shape_b_h_n_dhead(student, gen):
    """Also at the edges: a batch of one holding a single token."""
    batch, n, heads, d_head = _sizes(gen)
    _split(student, randn(gen, batch, n, heads * d_head), heads)
    _split(student, randn(gen, 1, 1, heads * d_head), heads)


@split.check(points=2)
def head_h_holds_features_of_block_h(student, gen):
    batch, n, heads, d_head = _sizes(gen)
    x = randn(gen, batch, n, heads * d_head)
    expected = ref.split_heads(x, heads)
    expect_close(
        _split(student, noncontiguous(x), heads),  # a view, as a learner's own tensors often are
        expected,
        f"split_heads(x of shape {tuple(x.shape)}, {heads})",
        diagnoses=_split_diagnoses(x, heads),
    )


@split.check(points=1)
def one_head_and_one_feature_per_head(student, gen):
    batch, n, d_model = randint(gen, 1, 3), randint(gen, 3, 7), randint(gen, 4, 9)
    x = randn(gen, batch, n, d_model)
    for heads, what in ((1, "one head (H = 1)"), (d_model, "one feature per head (H = D)")):
        expected = ref.split_heads(x, heads)
        expect_close(
            _split(student, x, heads),
            expected,
            f"split_heads(x of shape {tuple(x.shape)}, {heads}), {what},",
            diagnoses=_split_diagnoses(x, heads),
        )


# ---------------------------------------------------------------------------------------
# merge_heads


def _merge_interleaved(x):
    batch, heads, n, d_head = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, n, heads * d_head)


def _merge_diagnoses(x):
    batch, heads, n, d_head = x.shape
    return [
        (_merge_interleaved(x), INTERLEAVED),
        (
            x.reshape(batch, n, heads * d_head),
            "(B, H, N, D/H) was reshaped straight to (B, N, D), which mixes tokens; "
            "transpose(1, 2) first, so that the heads sit next to the features",
        ),
    ]


@merge.check(points=1)
def shape_b_n_d(student, gen):
    """Also at the edges: a batch of one holding a single token."""
    batch, n, heads, d_head = _sizes(gen)
    for shape in ((batch, heads, n, d_head), (1, heads, 1, d_head)):
        expect_shape(
            student(randn(gen, *shape)), (shape[0], shape[2], heads * d_head), f"merge_heads(x of shape {shape})"
        )


@merge.check(points=2)
def inverse_of_split_heads(student, gen):
    batch, n, heads, d_head = _sizes(gen)
    x = randn(gen, batch, n, heads * d_head)
    heads_of_x = ref.split_heads(x, heads)
    for layout, given in (
        (heads_of_x, ""),
        (noncontiguous(heads_of_x), ", given as a view in another memory layout"),
    ):  # split_heads' own layout, then another one, as a learner's attention output may have
        expect_close(
            student(layout),
            x,
            f"merge_heads(split_heads(x, {heads})){given} (it should give back x, {tuple(x.shape)})",
            diagnoses=_merge_diagnoses(heads_of_x),
        )


@merge.check(points=1)
def one_head_and_one_feature_per_head(student, gen):
    batch, n, d_model = randint(gen, 1, 3), randint(gen, 3, 7), randint(gen, 4, 9)
    x = randn(gen, batch, n, d_model)
    for heads, what in ((1, "one head (H = 1)"), (d_model, "one feature per head (H = D)")):
        heads_of_x = ref.split_heads(x, heads)
        expect_close(
            student(heads_of_x),
            x,
            f"merge_heads(split_heads(x, {heads})) ({what}; it should give back x, {tuple(x.shape)})",
            diagnoses=_merge_diagnoses(heads_of_x),
        )


# ---------------------------------------------------------------------------------------
# MultiHeadAttention

PROJECTIONS = ("w_q", "w_k", "w_v", "w_o")


def _known_weights(gen, d_model, bias):
    """A state dict for the four projections, scaled like nn.Linear's initialization."""
    weights = {}
    for name in PROJECTIONS:
        weights[f"{name}.weight"] = randn(gen, d_model, d_model, scale=1 / math.sqrt(d_model))
        if bias:
            weights[f"{name}.bias"] = randn(gen, d_model, scale=0.3)
    return weights


def _expect_projections(state, d_model, bias):
    if not isinstance(state, dict):
        raise CheckFailed(f"state_dict() should return a dict, got {type(state).__name__}")
    found = ", ".join(sorted(state)[:12]) or "none"
    for name in PROJECTIONS:
        if f"{name}.weight" not in state:
            raise CheckFailed(
                f"there is no submodule {name}: MultiHeadAttention needs nn.Linear(d_model, d_model) "
                f"submodules named w_q, w_k, w_v, w_o (its parameters are: {found})"
            )
        expect_shape(
            state[f"{name}.weight"],
            (d_model, d_model),
            f"{name}.weight (it must be nn.Linear(d_model, d_model) with d_model={d_model})",
        )
        if bias and f"{name}.bias" not in state:
            raise CheckFailed(
                f"{name} has no bias: with bias=True (the default) it must be nn.Linear(d_model, d_model)"
            )
        if not bias and f"{name}.bias" in state:
            raise CheckFailed(
                f"{name} has a bias although MultiHeadAttention(..., bias=False) was asked for; "
                "pass bias=bias to nn.Linear"
            )
        if bias:
            expect_shape(state[f"{name}.bias"], (d_model,), f"{name}.bias")


def _model(student, gen, d_model, num_heads, bias=True):
    """The learner's module with known weights loaded through its own load_state_dict."""
    model = student(d_model, num_heads) if bias else student(d_model, num_heads, bias=False)
    state = model.state_dict()
    _expect_projections(state, d_model, bias)
    weights = _known_weights(gen, d_model, bias)
    model.load_state_dict({**state, **weights})
    return model, weights


def _pytorch(weights, num_heads, query, key, value, mask=None):
    """(output, per-head weights) of torch.nn.MultiheadAttention holding ``weights``, in float64."""
    bias = "w_q.bias" in weights
    d_model, (batch, n_q, _), n_k = query.shape[-1], query.shape, key.shape[1]
    module = nn.MultiheadAttention(d_model, num_heads, bias=bias, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        module.in_proj_weight.copy_(torch.cat([weights[f"w_{p}.weight"] for p in "qkv"]))
        module.out_proj.weight.copy_(weights["w_o.weight"])
        if bias:
            module.in_proj_bias.copy_(torch.cat([weights[f"w_{p}.bias"] for p in "qkv"]))
            module.out_proj.bias.copy_(weights["w_o.bias"])
        # PyTorch's bool attn_mask is True where attending is NOT allowed, per (example, head).
        attn_mask = None if mask is None else ~mask.expand(batch, num_heads, n_q, n_k).reshape(-1, n_q, n_k)
        return module(
            query.double(),
            key.double(),
            value.double(),
            attn_mask=attn_mask,
            need_weights=True,
            average_attn_weights=False,
        )


def _buggy(weights, num_heads, query, key, value, mask=None, scale=None, interleaved=False, w_o=True):
    """(output, weights) of multi-head attention with one typical bug switched on, float64."""

    def project(name, x):
        bias = weights.get(f"{name}.bias")
        return nn.functional.linear(
            x.double(), weights[f"{name}.weight"].double(), None if bias is None else bias.double()
        )

    split_heads = _split_interleaved if interleaved else ref.split_heads
    merge_heads = _merge_interleaved if interleaved else ref.merge_heads
    q, k, v = (split_heads(project(n, x), num_heads) for n, x in (("w_q", query), ("w_k", key), ("w_v", value)))
    scores = q @ k.transpose(-2, -1) / (scale or math.sqrt(q.shape[-1]))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    attention = attention_ref.softmax(scores)
    heads = merge_heads(attention @ v)
    return (project("w_o", heads) if w_o else heads), attention


def _bugs(weights, num_heads, query, key, value, mask=None):
    """[(output, weights, explanation)] of typical bugs on these inputs."""
    d_model = query.shape[-1]
    bugs = [
        (dict(scale=1.0), "scores not scaled by sqrt(d_head): divide q k^T by sqrt(D/H)"),
        (
            dict(scale=math.sqrt(d_model)),
            "scaled by sqrt(d_model) instead of sqrt(d_head): each head's dot products have d_head terms",
        ),
        (dict(interleaved=True), INTERLEAVED),
        (dict(w_o=False), "w_o not applied: the concatenated heads must go through w_o"),
    ]
    found = [(*_buggy(weights, num_heads, query, key, value, mask, **bug), why) for bug, why in bugs]
    if value is not query and value.shape == query.shape:
        found.append(
            (
                *_buggy(weights, num_heads, query, key, query, mask),
                "value defaults to query instead of key: with forward(query, key), value must be key",
            )
        )
    if mask is not None:
        found.append(
            (
                *_buggy(weights, num_heads, query, key, value, ~mask),
                "the mask is inverted: True means a query MAY attend (unlike nn.MultiheadAttention's attn_mask)",
            )
        )
        found.append((*_buggy(weights, num_heads, query, key, value), "the mask is ignored"))
    return found


WRONG_KIND = re.compile(r"[Bb]ool|bitwise_not")  # a bool mask used as data, or data used as a mask


def _forward(model, *args, **kwargs):
    try:
        result = model(*args, **kwargs)
    except StudentError as error:
        if not WRONG_KIND.search(str(error)) or (len(args) < 2 and not kwargs):
            raise
        given = ", ".join(["query", "key", "value"][: len(args)] + [f"{key}=..." for key in kwargs])
        raise CheckFailed(
            f"{error}. Called as forward({given}): a tensor seems to have reached a parameter meant "
            "for another, a bool mask where a float tensor is expected or the reverse. Look at the order "
            "of forward's parameters, (query, key=None, value=None, mask=None), and at every call that "
            "passes the mask on by position"
        ) from None
    if not isinstance(result, tuple) or len(result) != 2:
        raise CheckFailed(f"forward should return a tuple (output, weights), got {type(result).__name__}")
    return result


def _expect_weights_shape(weights, batch, num_heads, n_q, n_k, what):
    if isinstance(weights, torch.Tensor) and tuple(weights.shape) == (batch, n_q, n_k):
        raise CheckFailed(
            f"{what} has shape {tuple(weights.shape)}, expected (B, H, N_q, N_k) = "
            f"{(batch, num_heads, n_q, n_k)}: return the weights of every head, not their average"
        )
    expect_shape(weights, (batch, num_heads, n_q, n_k), f"{what}, of shape (B, H, N_q, N_k),")


def _compare(model, weights, num_heads, inputs, mask, call, args, context):
    """Call the learner's module as ``call`` (its text, e.g. "model(x)") with ``args`` and
    compare (output, weights) with nn.MultiheadAttention on ``inputs`` = (query, key, value)."""
    query, key, _ = inputs
    expected_output, expected_attention = _pytorch(weights, num_heads, *inputs, mask)
    bugs = _bugs(weights, num_heads, *inputs, mask)
    output, attention = _forward(model, *args, **({} if mask is None else {"mask": mask}))
    context = (
        f"{context}; B={query.shape[0]}, N_q={query.shape[1]}, N_k={key.shape[1]}, D={query.shape[2]}, H={num_heads}"
    )
    what = f"{call}[1] (the weights; {context})"
    _expect_weights_shape(attention, query.shape[0], num_heads, query.shape[1], key.shape[1], what)
    try:
        expect_close(attention, expected_attention, what, diagnoses=[(w, why) for _, w, why in bugs])
        expect_close(
            output, expected_output, f"{call}[0] (the output; {context})", diagnoses=[(o, why) for o, _, why in bugs]
        )
    except CheckFailed as failure:
        for name in ("split_heads", "merge_heads"):
            blame_dependency(
                name,
                lambda theirs, name=name: _same_pair(
                    _through(theirs, name, weights, num_heads, inputs, mask), output, attention
                ),
                f"this output and these weights are exactly what multi-head attention computes with your {name}",
                str(failure),
            )
        raise
    return output, attention


def _through(handle, name, weights, num_heads, inputs, mask):
    """(output, weights) of multi-head attention in float64 with the learner's ``name``
    (split_heads or merge_heads, called through ``handle``) in place of the right one."""

    def split(t):
        return (
            handle(t, num_heads).double() if name == "split_heads" else t.unflatten(-1, (num_heads, -1)).transpose(1, 2)
        )

    def merge(t):
        return handle(t).double() if name == "merge_heads" else t.transpose(1, 2).flatten(2)

    def project(layer, x):
        bias = weights.get(f"{layer}.bias")
        return nn.functional.linear(
            x.double(), weights[f"{layer}.weight"].double(), None if bias is None else bias.double()
        )

    q, k, v = (split(project(f"w_{p}", x)) for p, x in zip("qkv", inputs))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    attention = torch.softmax(scores, dim=-1)
    return project("w_o", merge(attention @ v)), attention


def _same_pair(computed, output, attention) -> bool:
    """Whether the learner's (output, attention) are the pair ``computed``, to float32 precision."""
    return is_close(attention, computed[1]) and is_close(output, computed[0])


def _expect_state_unchanged(model, before: dict, what: str):
    """The module's parameters and buffers after ``what`` are those it had before."""
    after = model.state_dict()
    changed = sorted(name for name in before.keys() | after.keys() if not _same(before.get(name), after.get(name)))
    if changed:
        raise CheckFailed(
            f"{what} changed the module's parameters or buffers ({', '.join(changed[:6])}): forward must leave "
            "them as they are, so that every call computes with the same weights. Look for in-place operations "
            "on the module's own tensors in forward (mul_, copy_, .data, +=) and for tensors stored on self"
        )


def _same(a, b) -> bool:
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)


def _pytorch_gradients(weights, num_heads, inputs, mask, grad_output):
    """The truth: d <output, grad_output> / d (query, key, value) by autograd, in float64, through
    multi-head attention written here with ``weights`` (never through the learner's code)."""
    leaves = [t.detach().double().requires_grad_(True) for t in inputs]

    def project(name, x):
        bias = weights.get(f"{name}.bias")
        return nn.functional.linear(x, weights[f"{name}.weight"].double(), None if bias is None else bias.double())

    q, k, v = (project(f"w_{p}", x).unflatten(-1, (num_heads, -1)).transpose(1, 2) for p, x in zip("qkv", leaves))
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~mask, float("-inf"))
    heads = torch.softmax(scores, dim=-1) @ v
    output = project("w_o", heads.transpose(1, 2).flatten(2))
    return torch.autograd.grad(output, leaves, grad_output.double())


@mha.check(points=1)
def has_linear_w_q_w_k_w_v_w_o(student, gen):
    _, _, heads, d_head = _sizes(gen)
    _model(student, gen, heads * d_head, heads)


@mha.check(points=1)
def output_and_per_head_weights_shapes(student, gen):
    batch, n, heads, d_head = _sizes(gen)
    model, _ = _model(student, gen, heads * d_head, heads)
    for b, tokens in ((batch, n), (1, 1)):  # and at the edges: a batch of one holding a single token
        output, attention = _forward(model, randn(gen, b, tokens, heads * d_head))
        what = f"(the weights of self-attention, B={b}, N={tokens}, H={heads})"
        _expect_weights_shape(attention, b, heads, tokens, tokens, f"model(x)[1] {what}")
        expect_shape(
            output,
            (b, tokens, heads * d_head),
            f"model(x)[0] (the output of self-attention, B={b}, N={tokens}), (B, N, D),",
        )


BUILT_IN_ATTENTION = {"multi_head_attention_forward", "_native_multi_head_attention"}  # nn.MultiheadAttention's


@mha.check(points=3)
def self_attention_matches_pytorch(student, gen):
    batch, n, heads, d_head = _sizes(gen)
    """Inputs as non-contiguous views; the module called three times, the third time on other
    inputs, and its parameters and buffers left as loaded."""
    model, weights = _model(student, gen, heads * d_head, heads)
    loaded = model.state_dict()
    x = randn(gen, batch, n, heads * d_head)
    _compare(model, weights, heads, (x, x, x), None, "model(x)", (noncontiguous(x),), "self-attention")
    _expect_state_unchanged(model, loaded, "calling model(x)")
    _compare(model, weights, heads, (x, x, x), None, "model(x, x, x)", (x, x, x), "self-attention, a second call")
    y = randn(gen, batch, n, heads * d_head)
    _compare(model, weights, heads, (y, y, y), None, "model(y)", (y,), "self-attention, a later call on another y")
    _expect_state_unchanged(model, loaded, "calling model(x), model(x, x, x), then model(y)")


@mha.advice
def no_library_attention(student, gen):
    """The exercise's rule, as advice (recorded in the learner's process): built from split_heads,
    merge_heads and chapter 2's attention, not from torch.nn.MultiheadAttention."""
    batch, n, heads, d_head = _sizes(gen)
    model, _ = _model(student, gen, heads * d_head, heads)
    _, functions = model.functions(randn(gen, batch, n, heads * d_head))
    if BUILT_IN_ATTENTION & set(functions):
        raise CheckFailed(
            "forward calls PyTorch's own multi-head attention (nn.MultiheadAttention or "
            "F.multi_head_attention_forward); the exercise is to build it from split_heads, merge_heads and "
            "chapter 2's scaled_dot_product_attention"
        )


@mha.check(points=2)
def cross_attention_matches_pytorch(student, gen):
    batch, n_q, heads, d_head = _sizes(gen)
    model, weights = _model(student, gen, heads * d_head, heads)
    query = randn(gen, batch, n_q, heads * d_head)
    (n_k,) = distinct_sizes(gen, (n_q + 1, n_q + 5), avoid=(batch, heads, d_head, heads * d_head))
    key, value = randn(gen, 2, batch, n_k, heads * d_head)
    views = tuple(noncontiguous(t) for t in (query, key, value))
    _compare(model, weights, heads, (query, key, value), None, "model(query, key, value)", views, "cross-attention")
    # A backward through the module in train mode, as training does, with a padding mask: all
    # inputs, then each alone.
    grad_output = randn(gen, batch, n_q, heads * d_head)
    lengths = torch.randint(1, n_k + 1, (batch,), generator=gen)
    padding = (torch.arange(n_k) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, N_k)
    truth = _pytorch_gradients(weights, heads, (query, key, value), padding, grad_output)
    model.train()
    for asked in ((0, 1, 2), (0,), (1,), (2,)):
        alone = "" if len(asked) == 3 else f", only {('query', 'key', 'value')[asked[0]]} requiring grad"
        try:
            _, grads = model.with_grad(views, grad_output, asked, mask=padding)
        except StudentError as error:
            if "does not require grad" not in str(error):
                raise
            raise CheckFailed(
                f"model(query, key, value, mask=padding)[0] carries no gradient{alone}: something cut it from autograd's "
                "graph (torch.no_grad(), .detach(), .data, .item() or a NumPy round trip)"
            ) from None
        for index, grad in zip(asked, grads):
            name = ("query", "key", "value")[index]
            if grad is None or not grad.abs().sum() > 0:
                raise CheckFailed(
                    f"no gradient reaches {name}{alone} in model(query, key, value, mask=padding): look for torch.no_grad(), "
                    ".detach() or .data in forward"
                )
            expect_close(
                grad,
                truth[index],
                f"the gradient of model(query, key, value, mask=padding)[0] with respect to {name}{alone}",
            )


@mha.check(points=1)
def value_defaults_to_key(student, gen):
    batch, n, heads, d_head = _sizes(gen)
    model, weights = _model(student, gen, heads * d_head, heads)
    query = randn(gen, batch, n, heads * d_head)
    (longer,) = distinct_sizes(gen, (n + 1, n + 5), avoid=(batch, heads, d_head, heads * d_head))
    for n_k in (n, longer):  # equal lengths first: there the bug gives an answer, not an error
        key = randn(gen, batch, n_k, heads * d_head)
        _compare(
            model,
            weights,
            heads,
            (query, key, key),
            None,
            "model(query, key)",
            (query, key),
            "cross-attention, value not given",
        )


@mha.check(points=2)
def masks_of_each_documented_shape(student, gen):
    batch, n, heads, d_head = _sizes(gen)
    model, weights = _model(student, gen, heads * d_head, heads)
    x = randn(gen, batch, n, heads * d_head)
    lengths = torch.randint(1, n + 1, (batch,), generator=gen)
    masks = [
        (attention_ref.causal_mask(n), "a causal mask of shape (N_q, N_k)"),
        ((torch.arange(n) < lengths[:, None])[:, None, None, :], "a padding mask of shape (B, 1, 1, N_k)"),
        (random_mask(gen, (batch, 1, n, n)), "a mask of shape (B, 1, N_q, N_k)"),
    ]
    for mask, what in masks:
        _compare(model, weights, heads, (x, x, x), mask, "model(x, mask=mask)", (x,), f"self-attention with {what}")


@mha.check(points=1)
def without_bias_matches_pytorch(student, gen):
    batch, n_q, heads, d_head = _sizes(gen)
    model, weights = _model(student, gen, heads * d_head, heads, bias=False)
    (n_k,) = distinct_sizes(gen, (n_q + 1, n_q + 5), avoid=(batch, heads, d_head, heads * d_head))
    query, key = randn(gen, batch, n_q, heads * d_head), randn(gen, batch, n_k, heads * d_head)
    _compare(
        model,
        weights,
        heads,
        (query, key, key),
        None,
        "model(query, key, key)",
        (query, key, key),
        "a model built with bias=False",
    )
    # The same module in float64 (model.double()) on float64 inputs: float64 output and weights.
    model.double()
    query, key = query.double(), key.double()
    context = "a float64 model (model.double()) built with bias=False, on float64 inputs"
    results = _compare(
        model, weights, heads, (query, key, key), None, "model(query, key, key)", (query, key, key), context
    )
    for result, what in zip(results, ("output", "weights")):
        if result.dtype != torch.float64:
            raise CheckFailed(
                f"the {what} of {context} has dtype {result.dtype}: it must keep the inputs' dtype "
                "(look for .float(), or tensors made without dtype=...)"
            )


@mha.check(points=1)
def one_head_and_one_feature_per_head(student, gen):
    batch, n, d_model = randint(gen, 2, 3), randint(gen, 3, 7), randint(gen, 4, 9)
    x = randn(gen, batch, n, d_model)
    for heads, what in ((1, "one head (H = 1)"), (d_model, "one feature per head (H = D)")):
        model, weights = _model(student, gen, d_model, heads)
        _compare(model, weights, heads, (x, x, x), None, "model(x)", (x,), f"self-attention with {what}")
