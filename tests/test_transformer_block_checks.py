"""Chapter 5: the reference agrees with PyTorch (F.layer_norm, nn.TransformerEncoderLayer) and
count_parameters with real module stacks; the checks accept correct alternatives and reject
the stub and plausible bugs with messages that name the bug."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import messages, not_implemented, run_suite, score
from torch import nn

from solutions import transformer_block as ref

TOPIC = "transformer_block"
NAMES = ["layer_norm", "FeedForward", "TransformerBlock", "count_parameters"]


# --- the reference against PyTorch ---------------------------------------------------------


@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_layer_norm_matches_f_layer_norm(eps):
    weight, bias = torch.randn(9), torch.randn(9)
    x = torch.randn(4, 6, 9) * 3 + torch.randn(4, 6, 1) * 5
    x[0, 0] = 1.5  # constant row: variance 0
    x[0, 1] = 0.5 + 1e-3 * torch.randn(9)  # nearly constant: var < eps
    x = x.double()  # float64, so that rounding does not blur the effect of eps
    expected = F.layer_norm(x, (9,), weight.double(), bias.double(), eps)
    torch.testing.assert_close(ref.layer_norm(x, weight.double(), bias.double(), eps), expected)


class FeedForwardAliasedInSequential(nn.Module):
    """Correct: linear1 and linear2 also sit in an nn.Sequential, so state_dict() lists them twice."""

    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.net = nn.Sequential(self.linear1, act, nn.Dropout(dropout), self.linear2)

    def forward(self, x):
        return self.net(x)


def test_feed_forward_aliased_in_a_sequential_gets_full_marks(seed):
    results = run_suite(TOPIC, "FeedForward", FeedForwardAliasedInSequential, seed)
    assert all(r.passed for r in results), messages(results)


def test_feed_forward_matches_sequential():
    model = ref.FeedForward(6, 17, activation="gelu")
    sequential = nn.Sequential(model.linear1, nn.GELU(), model.linear2)
    x = torch.randn(2, 5, 6)
    torch.testing.assert_close(model(x), sequential(x))


def _copy_into_pytorch(block, norm_first, activation):
    """nn.TransformerEncoderLayer holding the reference block's weights."""
    state = block.state_dict()
    d_model, d_ff = block.ffn.linear1.in_features, block.ffn.linear1.out_features
    layer = nn.TransformerEncoderLayer(
        d_model, block.attn.num_heads, d_ff, dropout=0.0, activation=activation, norm_first=norm_first, batch_first=True
    )
    layer.load_state_dict(
        {
            "self_attn.in_proj_weight": torch.cat([state[f"attn.w_{p}.weight"] for p in "qkv"]),
            "self_attn.in_proj_bias": torch.cat([state[f"attn.w_{p}.bias"] for p in "qkv"]),
            "self_attn.out_proj.weight": state["attn.w_o.weight"],
            "self_attn.out_proj.bias": state["attn.w_o.bias"],
            **{key.removeprefix("ffn."): value for key, value in state.items() if key.startswith(("ffn.", "norm"))},
        }
    )
    return layer.eval()


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_block_matches_transformer_encoder_layer(norm_first, causal, activation):
    block = ref.TransformerBlock(12, 3, 20, norm_first=norm_first, activation=activation).eval()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))  # LayerNorm gains and biases away from 1 and 0
    layer = _copy_into_pytorch(block, norm_first, activation)
    x = torch.randn(3, 7, 12)
    mask = torch.ones(7, 7, dtype=torch.bool).tril() if causal else None
    expected = layer(x, src_mask=None if mask is None else ~mask)  # PyTorch: True = NOT allowed
    torch.testing.assert_close(block(x, mask=mask), expected, rtol=1e-4, atol=1e-5)


class GPT(nn.Module):
    """A GPT-style decoder of PyTorch modules, to count its parameters for real."""

    def __init__(self, n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True, block=None):
        super().__init__()
        d_ff = d_ff or 4 * d_model
        self.tokens, self.positions = nn.Embedding(vocab_size, d_model), nn.Embedding(n_ctx, d_model)
        make = block or (lambda: nn.TransformerEncoderLayer(d_model, 4, d_ff, norm_first=True, bias=biases))
        self.blocks = nn.ModuleList(make() for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model, bias=biases)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if tied_embeddings:
            self.head.weight = self.tokens.weight


def _real_count(model):
    return sum(p.numel() for p in model.parameters())  # a tied matrix is listed once


@pytest.mark.parametrize(
    "config",
    [
        dict(),
        dict(d_ff=50),
        dict(biases=False),
        dict(tied_embeddings=False),
        dict(biases=False, tied_embeddings=False),
    ],
)
def test_count_parameters_matches_a_real_stack(config):
    args = (3, 16, 101, 33)
    assert ref.count_parameters(*args, **config) == _real_count(GPT(*args, **config))


def test_count_parameters_matches_a_stack_of_reference_blocks():
    args = (2, 24, 57, 19)
    model = GPT(*args, block=lambda: ref.TransformerBlock(24, 4, 96, norm_first=True))
    assert ref.count_parameters(*args) == _real_count(model)


def test_count_parameters_reproduces_known_sizes():
    assert ref.count_parameters(12, 768, 50257, 1024) == 124_439_808  # GPT-2 small (Radford et al., 2019)
    gpt3 = [
        (125e6, 12, 768),
        (350e6, 24, 1024),
        (760e6, 24, 1536),
        (1.3e9, 24, 2048),
        (2.7e9, 32, 2560),
        (6.7e9, 32, 4096),
        (13.0e9, 40, 5140),
        (175.0e9, 96, 12288),
    ]  # Brown et al. (2020), Table 2.1
    for n_params, n_layers, d_model in gpt3:
        assert ref.count_parameters(n_layers, d_model, 50257, 2048) == pytest.approx(n_params, rel=0.02)


# --- reference, stub and alternative ----------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_stub_fails_every_check(name, seed):
    results = run_suite(TOPIC, name, not_implemented, seed)
    assert score(results) == 0
    assert all("not implemented yet" in r.message for r in results)


def _assert_loses_points(name, bug, fragment, seed):
    results = run_suite(TOPIC, name, bug, seed)
    assert score(results) < sum(r.max_score for r in results)
    assert fragment in messages(results)


# --- layer_norm bugs ------------------------------------------------------------------------


def _norm(x, eps, var=None, std=None):
    centered = x - x.mean(-1, keepdim=True)
    return centered / (std if std is not None else torch.sqrt(var + eps))


def unbiased_variance(x, weight, bias, eps=1e-5):
    return _norm(x, eps, var=x.var(-1, keepdim=True, unbiased=True)) * weight + bias


def eps_outside_the_root(x, weight, bias, eps=1e-5):
    return _norm(x, eps, std=x.std(-1, keepdim=True, unbiased=False) + eps) * weight + bias


def no_eps(x, weight, bias, eps=1e-5):
    return _norm(x, eps, std=x.std(-1, keepdim=True, unbiased=False)) * weight + bias


def eps_fixed(x, weight, bias, eps=1e-5):
    return ref.layer_norm(x, weight, bias)


def no_weight_and_bias(x, weight, bias, eps=1e-5):
    return _norm(x, eps, var=x.var(-1, keepdim=True, unbiased=False))


def weight_and_bias_swapped(x, weight, bias, eps=1e-5):
    return ref.layer_norm(x, bias, weight, eps)


def rms_norm(x, weight, bias, eps=1e-5):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight + bias


def over_dim_minus_2(x, weight, bias, eps=1e-5):
    return ref.layer_norm(x.transpose(-1, -2), 1, 0, eps).transpose(-1, -2) * weight + bias


def subtracts_the_mean_in_place(x, weight, bias, eps=1e-5):
    x -= x.mean(-1, keepdim=True)  # changes the caller's tensor, and breaks autograd on a leaf
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight + bias


def detached_statistics(x, weight, bias, eps=1e-5):
    mean, var = x.mean(-1, keepdim=True).detach(), x.var(-1, keepdim=True, unbiased=False).detach()
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def bert_default_eps(x, weight, bias, eps=1e-12):
    return ref.layer_norm(x, weight, bias, eps)


def calls_f_layer_norm(x, weight, bias, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def calls_group_norm(x, weight, bias, eps=1e-5):
    flat = x.reshape(-1, x.shape[-1], 1)
    return F.group_norm(flat, 1, eps=eps).reshape(x.shape) * weight + bias


def float32_result(x, weight, bias, eps=1e-5):
    return ref.layer_norm(x.float(), weight.float(), bias.float(), eps)


def std_squared_back(x, weight, bias, eps=1e-5):
    """sqrt(var) has an infinite slope at var = 0: NaN gradients for a constant row."""
    centered = x - x.mean(-1, keepdim=True)
    std = centered.pow(2).mean(-1, keepdim=True).sqrt()
    return centered / torch.sqrt(std * std + eps) * weight + bias


def torch_std_squared(x, weight, bias, eps=1e-5):
    """Correct: torch.std's backward is 0, not NaN, at a zero spread."""
    std = x.std(-1, unbiased=False, keepdim=True)
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(std**2 + eps) * weight + bias


def float64_result(x, weight, bias, eps=1e-5):
    """Correct: a float64 answer for a float32 x loses nothing."""
    return ref.layer_norm(x.double(), weight.double(), bias.double(), eps)


@pytest.mark.parametrize("answer", [torch_std_squared, float64_result])
def test_other_correct_layer_norms_get_full_marks(answer, seed):
    results = run_suite(TOPIC, "layer_norm", answer, seed)
    assert all(r.passed for r in results), messages(results)


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (unbiased_variance, "the variance is unbiased"),
        (eps_outside_the_root, "eps is added to the standard deviation"),
        (no_eps, "add eps inside the square root"),
        (eps_fixed, "the eps argument is ignored"),
        (no_weight_and_bias, "weight and bias are not applied"),
        (weight_and_bias_swapped, "weight and bias are swapped"),
        (rms_norm, "that is RMSNorm"),
        (over_dim_minus_2, "normalizes over dim -2"),
        (subtracts_the_mean_in_place, "a leaf Variable that requires grad"),
        (detached_statistics, "the gradient with respect to x"),
        (bert_default_eps, "the default eps is 1e-5"),
        (float32_result, "it should keep the dtype of x"),
        (std_squared_back, "contains NaN or inf for a row of equal values"),
    ],
)
def test_layer_norm_bugs_lose_points(bug, fragment, seed):
    _assert_loses_points("layer_norm", bug, fragment, seed)


@pytest.mark.parametrize("answer", [calls_f_layer_norm, calls_group_norm])
def test_pytorch_normalizations_get_full_marks_and_the_advice(answer, seed):
    """Which functions layer_norm calls is seen only inside the learner's process: advice, 0 points."""
    results = {r.check: r for r in run_suite(TOPIC, "layer_norm", answer, seed)}
    assert score(results.values()) == sum(r.max_score for r in results.values()), messages(results.values())
    advice = results["no_library_norm"]
    assert advice.advice and not advice.passed and "calls a normalization of PyTorch" in advice.message


def test_eps_outside_the_root_loses_only_where_eps_matters():
    """On ordinary rows eps is negligible wherever it sits; rows of nearly equal values expose it."""
    results = {r.check: r for r in run_suite(TOPIC, "layer_norm", eps_outside_the_root)}
    assert results["matches_f_layer_norm"].passed and not results["rows_of_nearly_equal_values"].passed


# --- FeedForward bugs -----------------------------------------------------------------------


class _FFN(ref.FeedForward):
    """The reference with ``hidden`` and ``output`` hooks that a bug overrides."""

    def hidden(self, h):
        return self.dropout(F.gelu(h) if self.activation == "gelu" else F.relu(h))

    def output(self, x, y):
        return y

    def forward(self, x):
        return self.output(x, self.linear2(self.hidden(self.linear1(x))))


class NoActivation(_FFN):
    def hidden(self, h):
        return h


class ActivationAfterLinear2(_FFN):
    def output(self, x, y):
        return F.relu(y)


class ResidualInside(_FFN):
    def output(self, x, y):
        return x + y


class AlwaysGelu(_FFN):
    def hidden(self, h):
        return F.gelu(h)


class AlwaysRelu(_FFN):
    def hidden(self, h):
        return F.relu(h)


class TanhGelu(_FFN):
    def hidden(self, h):
        return F.relu(h) if self.activation == "relu" else F.gelu(h, approximate="tanh")


class DropoutAlsoInEval(_FFN):
    def hidden(self, h):
        return F.dropout(F.relu(h), self.dropout.p, training=True)


class DropoutIgnored(_FFN):
    def hidden(self, h):
        return F.relu(h)


class NamedFc1Fc2(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class HiddenWidthIgnored(_FFN):
    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__(d_model, d_model, activation, dropout)


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (NoActivation, "no activation between linear1 and linear2"),
        (ActivationAfterLinear2, "also applied after linear2"),
        (ResidualInside, "residual connection belongs to TransformerBlock"),
        (AlwaysGelu, "GELU is used although activation='relu'"),
        (AlwaysRelu, "ReLU is used although activation='gelu'"),
        (TanhGelu, "tanh approximation of GELU"),
        (DropoutAlsoInEval, "in eval() mode"),
        (DropoutIgnored, "dropout is not applied"),
        (NamedFc1Fc2, "has no parameter linear1.weight"),
        (HiddenWidthIgnored, "linear1.weight has shape"),
    ],
)
def test_feed_forward_bugs_lose_points(bug, fragment, seed):
    _assert_loses_points("FeedForward", bug, fragment, seed)


# --- TransformerBlock bugs ------------------------------------------------------------------


class _Block(ref.TransformerBlock):
    """The reference block with its wiring in ``pre``/``post`` methods that a bug overrides."""

    def attend(self, h, mask):
        return self.dropout(self.attn(h, h, h, mask=mask)[0])

    def feed_forward(self, h):
        return self.dropout(self.ffn(h))

    def pre(self, x, mask):
        x = x + self.attend(self.norm1(x), mask)
        return x + self.feed_forward(self.norm2(x))

    def post(self, x, mask):
        x = self.norm1(x + self.attend(x, mask))
        return self.norm2(x + self.feed_forward(x))

    def forward(self, x, mask=None):
        return self.pre(x, mask) if self.norm_first else self.post(x, mask)


class AlwaysPostLN(_Block):
    def pre(self, x, mask):
        return self.post(x, mask)


class AlwaysPreLN(_Block):
    def post(self, x, mask):
        return _Block.pre(self, x, mask)


class NoResidual(_Block):
    def pre(self, x, mask):
        x = self.attend(self.norm1(x), mask)
        return self.feed_forward(self.norm2(x))

    def post(self, x, mask):
        x = self.norm1(self.attend(x, mask))
        return self.norm2(self.feed_forward(x))


class NoAttentionResidual(_Block):
    def pre(self, x, mask):
        x = self.attend(self.norm1(x), mask)
        return x + self.feed_forward(self.norm2(x))


class NoFeedForwardResidualPostLN(_Block):
    def post(self, x, mask):
        x = self.norm1(x + self.attend(x, mask))
        return self.norm2(self.feed_forward(x))


class NormsSwapped(_Block):
    def pre(self, x, mask):
        x = x + self.attend(self.norm2(x), mask)
        return x + self.feed_forward(self.norm1(x))


class ResidualOfNormalized(_Block):
    def pre(self, x, mask):
        x = self.norm1(x)
        x = x + self.attend(x, mask)
        x = self.norm2(x)
        return x + self.feed_forward(x)


class ParallelSublayers(_Block):
    def pre(self, x, mask):
        return x + self.attend(self.norm1(x), mask) + self.feed_forward(self.norm2(x))


class MaskIgnored(_Block):
    def attend(self, h, mask):
        return self.attn(h, h, h)[0]


class MaskInverted(_Block):
    def attend(self, h, mask):
        return self.attn(h, h, h, mask=None if mask is None else ~mask)[0]


class DropoutAlwaysOn(_Block):
    def feed_forward(self, h):
        return F.dropout(self.ffn(h), self.dropout.p, training=True)


class TorchAttention(_Block):
    def __init__(self, d_model, num_heads, d_ff, norm_first, dropout=0.0, activation="relu"):
        super().__init__(d_model, num_heads, d_ff, norm_first, dropout, activation)
        self.attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)

    def attend(self, h, mask):
        return self.attn(h, h, h, attn_mask=None if mask is None else ~mask)[0]


class PostLNFeedForwardOfTheSum(_Block):
    def post(self, x, mask):
        h = x + self.attend(x, mask)
        return self.norm2(self.norm1(h) + self.feed_forward(h))


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (AlwaysPostLN, "this is Post-LN"),
        (AlwaysPreLN, "this is Pre-LN"),
        (NoResidual, "there is no residual connection"),
        (NoAttentionResidual, "residual connection around attention is missing"),
        (NoFeedForwardResidualPostLN, "residual connection around the feed-forward network is missing"),
        (NormsSwapped, "norm1 and norm2 are swapped"),
        (ResidualOfNormalized, "the residual path carries the normalized x"),
        (ParallelSublayers, "the feed-forward network reads the block's input"),
        (PostLNFeedForwardOfTheSum, "reads x + attn(x) before norm1"),
        (MaskIgnored, "the mask is ignored"),
        (MaskInverted, "is the mask inverted"),
        (DropoutAlwaysOn, "in eval() mode"),
        (TorchAttention, "has no parameter attn.w_q.weight"),
    ],
)
def test_block_bugs_lose_points(bug, fragment, seed):
    _assert_loses_points("TransformerBlock", bug, fragment, seed)


# --- count_parameters bugs ------------------------------------------------------------------


def _count(
    n_layers,
    d_model,
    vocab_size,
    n_ctx,
    d_ff=None,
    biases=True,
    tied_embeddings=True,
    positions=True,
    block_norms=True,
    final_norm=True,
    head=None,
    norm_bias=None,
    norm_gain=True,
):
    """A parameter count with switches for the typical mistakes."""
    d_ff = d_ff or 4 * d_model
    b = int(biases)
    norm = d_model * (int(norm_gain) + int(biases if norm_bias is None else norm_bias))
    per_layer = 4 * d_model**2 + 4 * d_model * b + 2 * d_model * d_ff + (d_ff + d_model) * b
    total = vocab_size * d_model + positions * n_ctx * d_model + n_layers * (per_layer + 2 * norm * block_norms)
    counts_head = (not tied_embeddings) if head is None else head
    return total + final_norm * norm + counts_head * vocab_size * d_model


def no_position_embedding(*args, **kwargs):
    return _count(*args, **kwargs, positions=False)


def no_layer_norms(*args, **kwargs):
    return _count(*args, **kwargs, block_norms=False, final_norm=False)


def no_final_layer_norm(*args, **kwargs):
    return _count(*args, **kwargs, final_norm=False)


def head_counted_although_tied(*args, **kwargs):
    return _count(*args, **kwargs, head=True)


def head_never_counted(*args, **kwargs):
    return _count(*args, **kwargs, head=False)


def biases_always(*args, biases=True, **kwargs):
    return _count(*args, **kwargs)


def biases_false_keeps_norm_biases(*args, biases=True, **kwargs):
    return _count(*args, biases=biases, norm_bias=True, **kwargs)


def biases_false_drops_norm_gains(*args, biases=True, **kwargs):
    return _count(*args, biases=biases, norm_gain=biases, **kwargs)


def d_ff_ignored(*args, d_ff=None, **kwargs):
    return _count(*args, **kwargs)


def only_weight_matrices(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
    return 12 * n_layers * d_model**2


def returns_numpy_integer(*args, **kwargs):
    return np.int64(ref.count_parameters(*args, **kwargs))  # correct: accepted


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (no_position_embedding, "position embedding (n_ctx x d_model) is not counted"),
        (no_layer_norms, "the LayerNorms (norm1 and norm2 in every block, and the final one) are not counted"),
        (no_final_layer_norm, "the final LayerNorm"),
        (head_counted_although_tied, "counted although it is tied"),
        (head_never_counted, "with tied_embeddings=False the output projection"),
        (biases_always, "biases=False is ignored"),
        (biases_false_keeps_norm_biases, "must drop the LayerNorm biases too"),
        (biases_false_drops_norm_gains, "the LayerNorm gains (weights) stay"),
        (d_ff_ignored, "the d_ff argument is ignored"),
        (only_weight_matrices, "only the 12 d_model^2 weights per block"),
    ],
)
def test_count_parameters_bugs_lose_points(bug, fragment, seed):
    _assert_loses_points("count_parameters", bug, fragment, seed)


def three_attention_biases(*args, biases=True, **kwargs):
    d_model, n_layers = args[1], args[0]
    return _count(*args, biases=biases, **kwargs) - n_layers * d_model * int(biases)


def one_norm_per_block(*args, biases=True, **kwargs):
    n_layers, d_model = args[0], args[1]
    return _count(*args, biases=biases, **kwargs) - n_layers * d_model * (1 + int(biases))


def linear2_weight_forgotten(*args, d_ff=None, **kwargs):
    n_layers, d_model = args[0], args[1]
    return _count(*args, d_ff=d_ff, **kwargs) - n_layers * d_model * (d_ff or 4 * d_model)


def one_position_too_many(*args, **kwargs):
    return _count(*args, **kwargs) + args[1]


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (three_attention_biases, "four biases per block"),
        (one_norm_per_block, "each block has two LayerNorms"),
        (linear2_weight_forgotten, "one more layer adds"),
        (one_position_too_many, "is outside the blocks"),
    ],
)
def test_count_parameters_names_a_bug_only_when_two_depths_agree(bug, fragment, seed):
    """Per-block mistakes of d_model parameters used to be named "the final LayerNorm" when n_layers
    made the totals coincide; the count of one more layer tells them apart."""
    results = run_suite(TOPIC, "count_parameters", bug, seed)
    text = messages(results)
    assert fragment in text
    assert "final LayerNorm (after the last block) is not counted" not in text


def test_count_parameters_accepts_numpy_integers(seed):
    results = run_suite(TOPIC, "count_parameters", returns_numpy_integer, seed)
    assert all(r.passed for r in results), messages(results)


# --- where dropout acts ---------------------------------------------------------------------


class DropoutOnOutput(_FFN):
    def hidden(self, h):
        return F.gelu(h) if self.activation == "gelu" else F.relu(h)

    def output(self, x, y):
        return self.dropout(y)


class DropoutOnInput(_FFN):
    def forward(self, x):
        return _FFN.forward(self, self.dropout(x))

    def hidden(self, h):
        return F.gelu(h) if self.activation == "gelu" else F.relu(h)


class DropoutBeforeActivation(_FFN):
    def hidden(self, h):
        h = self.dropout(h)
        return F.gelu(h) if self.activation == "gelu" else F.relu(h)


class UnscaledDropout(_FFN):
    def hidden(self, h):
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
        return h * (torch.rand_like(h) >= self.dropout.p) if self.training else h


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (DropoutOnOutput, "the output of linear2 is dropped"),
        (DropoutOnInput, "the input x is dropped"),
        (DropoutBeforeActivation, "dropout acts before the activation"),
        (UnscaledDropout, "not scaled by 1 / (1 - p)"),
    ],
)
def test_feed_forward_dropout_misplaced_loses_points(bug, fragment, seed):
    _assert_loses_points("FeedForward", bug, fragment, seed)


class DropoutOnResidualStream(_Block):
    def pre(self, x, mask):
        x = self.dropout(x + self.attn(self.norm1(x), self.norm1(x), self.norm1(x), mask=mask)[0])
        return self.dropout(x + self.ffn(self.norm2(x)))


class NoSublayerDropout(_Block):
    def attend(self, h, mask):
        return self.attn(h, h, h, mask=mask)[0]

    def feed_forward(self, h):
        return self.ffn(h)


class AttentionOutputNotDropped(_Block):
    def attend(self, h, mask):
        return self.attn(h, h, h, mask=mask)[0]


class FeedForwardOutputNotDropped(_Block):
    def feed_forward(self, h):
        return self.ffn(h)


class DropoutNotPassedDown(_Block):
    def __init__(self, d_model, num_heads, d_ff, norm_first, dropout=0.0, activation="relu"):
        super().__init__(d_model, num_heads, d_ff, norm_first, dropout, activation)
        self.ffn = ref.FeedForward(d_model, d_ff, activation)


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (DropoutOnResidualStream, "the residual stream itself is dropped"),
        (NoSublayerDropout, "neither sublayer's output is dropped"),
        (AttentionOutputNotDropped, "the attention sublayer's output is not dropped"),
        (FeedForwardOutputNotDropped, "the feed-forward sublayer's output is not dropped"),
        (DropoutNotPassedDown, "pass the block's dropout to FeedForward"),
    ],
)
def test_block_dropout_misplaced_loses_points(bug, fragment, seed):
    _assert_loses_points("TransformerBlock", bug, fragment, seed)


def test_dropout_checks_pass_the_reference_and_fail_no_dropout_at_all(seed):
    """The new sub-checks are not vacuous: the reference passes them, a block without any dropout fails both."""
    by_check = {r.check: r for r in run_suite(TOPIC, "TransformerBlock", ref.TransformerBlock, seed)}
    assert by_check["dropout_on_each_sublayer_output"].passed
    assert by_check["dropout_reaches_the_feed_forward_network"].passed

    class NoDropout(NoSublayerDropout, DropoutNotPassedDown):
        pass

    by_check = {r.check: r for r in run_suite(TOPIC, "TransformerBlock", NoDropout, seed)}
    assert not by_check["dropout_on_each_sublayer_output"].passed
    assert not by_check["dropout_reaches_the_feed_forward_network"].passed


# --- count_parameters returns an int ----------------------------------------------------------


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (lambda *args, **kwargs: float(ref.count_parameters(*args, **kwargs)), "returns a float"),
        (lambda *args, **kwargs: torch.tensor(ref.count_parameters(*args, **kwargs)), "returns a torch.Tensor"),
        (lambda *args, **kwargs: np.float64(ref.count_parameters(*args, **kwargs)), "returns a float"),
    ],
)
def test_count_parameters_that_is_not_an_int_loses_only_that_sub_check(bug, fragment, seed):
    results = run_suite(TOPIC, "count_parameters", bug, seed)
    assert [r.check for r in results if not r.passed] == ["returns_an_int"]
    assert fragment in messages(results)


def test_count_parameters_returning_a_bool_is_not_a_count(seed):
    results = run_suite(TOPIC, "count_parameters", lambda *args, **kwargs: True, seed)
    assert score(results) == 0 and "returns a bool" in messages(results)
