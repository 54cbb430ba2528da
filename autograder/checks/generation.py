"""Checks for chapter 9: ``DecoderBlock``, ``Seq2SeqTransformer``, ``greedy_decode``,
``sample_next_token``, ``beam_search``, ``CachedSelfAttention``, ``grouped_query_attention`` and
``kv_cache_bytes``.

The models are built through the handle, loaded with random weights by the contract's names
through their own ``load_state_dict``, and compared with the reference holding the same weights
(``solutions.generation``'s functions of plain data). Every point comes from values compared here:

- the decoders are given models whose scores come from tables (:data:`TEST_MODELS`): the grader
  runs that code in the learner's process and builds the same models here, so ``greedy_decode``
  and ``beam_search`` are compared with the reference on models whose answers are known, whatever
  the learner's ``Seq2SeqTransformer`` does. ``beam_search`` is checked where every correct beam
  search agrees: a beam of one (greedy), a beam as wide as the number of sequences (exhaustive
  search), and hand-built distributions where greedy is not optimal, a length-normalised score
  picks a longer sequence, or the first hypothesis to finish is not the best;
- ``sample_next_token`` is checked by its draws: only allowed tokens, frequencies within six
  standard deviations (plus 2) of the renormalised probabilities over 3,000 draws (a false failure
  rarer than once in 10^7 tokens), the same draws from generators in the same state and different
  ones from others;
- ``CachedSelfAttention`` is handed caches the grader made up (keys and values that no
  projection of any input produced): only an answer that attends over the cache it is given,
  and projects only the new tokens, can match.

Every tensor argument is also handed as a non-contiguous view (:func:`noncontiguous`, the layout of a
slice or a transpose) in a second call whose expected values come from the original; token tensors
also as int32; the modules are called again after a first call (on other sizes, then the parameters
and buffers must be unchanged) and back-propagated in train() mode with dropout.

Whether ``greedy_decode`` runs the encoder once and whether ``grouped_query_attention`` copies the
keys for every query head can only be seen inside the learner's process: those are advice
(0 points). Sizes are drawn pairwise distinct where a message names one.
"""

import math
import numbers

import torch

from autograder.oracle import reference
from autograder.student import Student, StudentError, seeded_calls
from autograder.suite import (
    CheckFailed,
    Suite,
    as_tensor,
    distinct_sizes,
    expect_bounded,
    expect_close,
    expect_computed_in_torch,
    expect_shape,
    expect_state_unchanged,
    is_close,
    noncontiguous,
    randint,
    randn,
)

ref = reference("generation")

decoder_block = Suite("DecoderBlock")
seq2seq = Suite("Seq2SeqTransformer")
greedy = Suite("greedy_decode")
sampling = Suite("sample_next_token")
beam = Suite("beam_search")
cached = Suite("CachedSelfAttention")
gqa = Suite("grouped_query_attention")
kv_bytes = Suite("kv_cache_bytes")
SUITES = {s.function: s for s in (decoder_block, seq2seq, greedy, beam, sampling, cached, gqa, kv_bytes)}


# ---------------------------------------------------------------------------------------
# Loading weights by the contract's names


def _is_buffer(model, name):
    try:
        model.get_buffer(name)
        return True
    except StudentError:
        return False


def _random_weights(gen, shapes: dict) -> dict:
    weights = {}
    for key, shape in shapes.items():
        if "embedding" in key:
            weights[key] = randn(gen, *shape)
        elif key.endswith("weight") and len(shape) == 2:
            weights[key] = randn(gen, *shape, scale=1 / math.sqrt(shape[1]))
        elif "norm" in key and key.endswith("weight"):
            weights[key] = 1.0 + randn(gen, *shape, scale=0.3)
        else:
            weights[key] = randn(gen, *shape, scale=0.3)
    return weights


def _load(model, weights: dict, hint: str):
    """Load ``weights`` into the learner's model through its own load_state_dict, by name."""
    state = model.state_dict()
    if not isinstance(state, dict):
        raise CheckFailed(f"state_dict() should return a dict, got {type(state).__name__}")
    missing = [key for key in weights if key not in state]
    if missing:
        found = ", ".join(sorted(state)[:8]) or "none"
        raise CheckFailed(f"the model has no parameter {missing[0]}: {hint} (its parameters include: {found})")
    for key, value in weights.items():
        expect_shape(state[key], value.shape, f"the model's {key}")
    extra = [key for key in state if key not in weights and not _is_buffer(model, key)]
    if extra:
        fixed = "the position table is fixed, not trained: store it with register_buffer(..., persistent=False)"
        raise CheckFailed(
            f"the model has parameter(s) {extra} that the contract does not have: "
            + (fixed if any("position" in key for key in extra) else hint)
        )
    model.load_state_dict({**state, **weights})
    model.eval()
    return model


def _views(*tensors):
    return tuple(None if t is None else noncontiguous(t) for t in tensors)


VIEWS = "given as non-contiguous views (the layout of a slice or a transpose, which callers pass too)"


def _expect_no_earlier_call_kept(model, fresh, args, expected, what, otherwise=""):
    """``model(*args)``, after a first call on other sizes, must give ``expected``. When it does not (or
    raises) and ``fresh()``, a new module holding the same weights, gives it for the same ``args``,
    the failure says that something is kept from the earlier call; else it fails as it would have,
    its message followed by ``otherwise`` (a likely cause) when the output is wrong."""
    try:
        output, error = model(*args), None
    except StudentError as raised:
        output, error = None, raised
    if error is None and is_close(output, expected):
        return
    try:
        fresh_is_right = is_close(fresh()(*args), expected)
    except StudentError:
        fresh_is_right = False
    if fresh_is_right:
        kept = (
            "while a new module holding the same weights gives the right output for the same inputs: something is "
            "kept from the earlier call (a mask, a slice of the position table or the encoder's memory sized for "
            "the first call?); compute it in every call, from that call's inputs"
        )
        if error is not None:
            raise CheckFailed(f"{what} failed ({str(error)[:300]}), {kept}")
        raise CheckFailed(f"{what} gave other values, {kept}")
    if error is not None:
        raise error
    expect_close(output, expected, what + otherwise)


def _backward(fn, args, grad_output, grad_inputs, names, what):
    """``fn(*args)`` back-propagated with ``grad_output`` to the positional ``args`` at ``grad_inputs``
    (called ``names``): the gradients, each checked to be there, with the shape of its input, finite.
    A backward that PyTorch refuses because forward changed a tensor in place fails with that cause."""
    try:
        _, grads = fn.with_grad(args, grad_output, grad_inputs=grad_inputs)
    except StudentError as error:
        text, what = str(error), what.rstrip(",")
        if "modified by an inplace operation" in text:
            raise CheckFailed(
                f"{what}: backward fails because forward changed, in place, a tensor that autograd saved to "
                "compute the gradient (PyTorch: 'modified by an inplace operation'). Look for in-place operations "
                "in forward: x += ..., x.add_(...), masked_fill_, x[...] = ..., inplace=True; write x = x + ... instead"
            ) from None
        if "leaf Variable that requires grad" in text:
            raise CheckFailed(
                f"{what}: forward changes one of its inputs in place (x += ..., masked_fill_, x[...] = ...), which "
                "autograd refuses for an input that needs a gradient; inputs are left unchanged: write x = x + ..."
            ) from None
        if "does not require grad" in text:
            raise CheckFailed(
                f"{what}: no gradient flows back, the output is cut off from the graph "
                "(.detach(), torch.no_grad() or .data in forward)"
            ) from None
        raise
    for grad, index, name in zip(grads, grad_inputs, names):
        if grad is None:
            raise CheckFailed(
                f"{what}: no gradient reaches {name}, the path from {name} to the output is cut "
                "(.detach(), torch.no_grad() or .data in forward)"
            )
        grad = expect_shape(grad, args[index].shape, f"the gradient of {what} with respect to {name}")
        if not torch.isfinite(grad).all():
            raise CheckFailed(f"the gradient of {what} with respect to {name} contains NaN or inf")
    return grads


def _finite(value, shape, what):
    value = expect_shape(value, shape, what)
    if not value.is_floating_point():
        raise CheckFailed(f"{what} should be floating point, got {value.dtype}")
    if not torch.isfinite(value).all():
        raise CheckFailed(
            f"{what} contains NaN or inf: some query may attend to no key at all (is a mask inverted, "
            "or given the wrong shape?)"
        )
    return value


# ---------------------------------------------------------------------------------------
# DecoderBlock

BLOCK_HINT = (
    "the contract names the submodules self_attn and cross_attn (chapter 3's MultiHeadAttention), ffn "
    "(chapter 5's FeedForward) and norm1, norm2, norm3 (nn.LayerNorm)"
)


def _block(student, gen, norm_first=True, dropout=None):
    config = {"d_model": 16, "num_heads": 4, "d_ff": randint(gen, 20, 28), "norm_first": norm_first}
    weights = _random_weights(gen, ref.parameter_shapes("DecoderBlock", config))
    model = student(**config) if dropout is None else student(**config, dropout=dropout)
    return _load(model, weights, BLOCK_HINT), weights, config


def _block_inputs(gen, with_padding=True):
    """x (3, T, 16), memory (3, S, 16) with T != S, and a memory mask with padding at the end of
    two rows (batch 3 differs from the 4 heads, so a mask missing an axis cannot broadcast by luck)."""
    length, source = distinct_sizes(gen, (5, 8), (9, 12))
    x, memory = randn(gen, 3, length, 16), randn(gen, 3, source, 16)
    mask = torch.ones(3, source, dtype=torch.bool)
    if with_padding:
        mask[0, source - randint(gen, 2, 4) :] = False
        mask[2, source - randint(gen, 1, 3) :] = False
    return x, memory, mask


def _block_bugs(weights, config, x, memory, mask):
    other = {**config, "norm_first": not config["norm_first"]}
    bugs = [
        (
            ref.decoder_block_output(weights, config, x, memory, mask, causal=False),
            "target positions read the future: self-attention needs the causal mask",
        ),
        (
            ref.decoder_block_output(weights, config, x, memory, None),
            "memory_mask is ignored: cross-attention reads the padding of the source",
        ),
        (
            ref.decoder_block_output(weights, other, x, memory, mask),
            "the block is Post-LN (norm_first=False); check which order norm_first selects"
            if config["norm_first"]
            else "the block is Pre-LN (norm_first=True); check which order norm_first selects",
        ),
    ]
    if config["norm_first"]:
        bugs.append(
            (
                ref.decoder_block_output(weights, config, x, memory, mask, normalized_memory=True),
                "the memory is normalised by norm2 too; norm2 normalises the queries' stream only, memory "
                "is used as given",
            )
        )
    return bugs


@decoder_block.check(points=1)
def output_shape(student, gen):
    """Also at the sizes of one the contract allows: a batch of one, a target of one token, a source of
    one token. Their values are compared with the reference's when the output at the first sizes is
    right (a wrong output there is the other sub-checks' business)."""
    model, weights, config = _block(student, gen)
    x, memory, _ = _block_inputs(gen)
    what = f"DecoderBlock's output for x {tuple(x.shape)}, memory {tuple(memory.shape)}"
    right = is_close(_finite(model(x, memory), x.shape, what), ref.decoder_block_output(weights, config, x, memory))
    for small_x, small_memory in ((x[:1], memory[:1]), (x[:, :1], memory), (x, memory[:, :1])):
        what = f"DecoderBlock's output for x {tuple(small_x.shape)}, memory {tuple(small_memory.shape)}"
        expected = ref.decoder_block_output(weights, config, small_x, small_memory)
        if not right:
            _finite(model(small_x, small_memory), small_x.shape, what)
            continue
        _expect_no_earlier_call_kept(
            model,
            lambda: _load(student(**config), weights, BLOCK_HINT),
            (small_x, small_memory),
            expected,
            what,
            f", though right for x {tuple(x.shape)} (is a dimension of size one squeezed?),",
        )


@decoder_block.check(points=2)
def matches_the_reference_pre_ln(student, gen):
    """Then a second call on other sizes (nothing is kept from the first call), a third on the first
    inputs as non-contiguous views, and the parameters and buffers unchanged."""
    model, weights, config = _block(student, gen, norm_first=True)
    x, memory, mask = _block_inputs(gen)
    before = model.state_dict()
    expected = ref.decoder_block_output(weights, config, x, memory, mask)
    expect_close(
        model(x, memory, mask),
        expected,
        "DecoderBlock(norm_first=True)'s output with a memory_mask, with the weights of the reference",
        diagnoses=_block_bugs(weights, config, x, memory, mask),
    )
    length, source = x.shape[1] + randint(gen, 1, 3), memory.shape[1] - randint(gen, 1, 3)
    other_x, other_memory = randn(gen, 3, length, 16), randn(gen, 3, source, 16)
    other_mask = torch.ones(3, source, dtype=torch.bool)
    other_mask[1, source - randint(gen, 1, 3) :] = False
    _expect_no_earlier_call_kept(
        model,
        lambda: _load(student(**config), weights, BLOCK_HINT),
        (other_x, other_memory, other_mask),
        ref.decoder_block_output(weights, config, other_x, other_memory, other_mask),
        f"DecoderBlock's output in a second call, on x {tuple(other_x.shape)} and memory {tuple(other_memory.shape)} "
        f"after a first on x {tuple(x.shape)} and memory {tuple(memory.shape)},",
    )
    expect_close(
        model(*_views(x, memory, mask)),
        expected,
        f"DecoderBlock's output for x, memory and memory_mask {VIEWS}",
    )
    expect_state_unchanged(model, before, "three calls of DecoderBlock's forward")


@decoder_block.check(points=1)
def matches_the_reference_post_ln(student, gen):
    model, weights, config = _block(student, gen, norm_first=False)
    x, memory, mask = _block_inputs(gen)
    expect_close(
        model(x, memory, mask),
        ref.decoder_block_output(weights, config, x, memory, mask),
        "DecoderBlock(norm_first=False)'s output (Post-LN) with a memory_mask, with the weights of the reference",
        diagnoses=_block_bugs(weights, config, x, memory, mask),
    )


@decoder_block.check(points=1)
def future_targets_never_change_earlier_outputs(student, gen):
    model, _, _ = _block(student, gen)
    x, memory, mask = _block_inputs(gen)
    before = model(x, memory, mask)
    start = randint(gen, 2, x.shape[1] - 1)
    changed = x.clone()
    changed[:, start:] = randn(gen, 3, x.shape[1] - start, 16)
    after = _finite(model(changed, memory, mask), x.shape, "DecoderBlock's output")
    leaked = ((after - before).abs().amax(-1) > 1e-4)[:, :start].any(0).nonzero().flatten().tolist()
    if leaked:
        raise CheckFailed(
            f"changing the target positions from {start} on changed the output at earlier position(s) {leaked}: "
            "the decoder reads the future (its self-attention needs the causal mask, True on and below the diagonal)"
        )


@decoder_block.check(points=2)
def memory_mask_hides_padding(student, gen):
    model, weights, config = _block(student, gen)
    x, memory, mask = _block_inputs(gen)
    before = _finite(model(x, memory, mask), x.shape, "DecoderBlock's output with a memory_mask")
    noisy = torch.where(mask[..., None], memory, randn(gen, *memory.shape, scale=5.0))
    after = _finite(model(x, noisy, mask), x.shape, "DecoderBlock's output with a memory_mask")
    if (after - before).abs().max() > 1e-4:
        raise CheckFailed(
            "changing the memory where memory_mask is False (padding) changed the output: cross-attention must "
            "never read a source position whose memory_mask is False (memory_mask is (B, S); the attention mask "
            "must reach every head and every query)"
        )
    expect_close(
        after,
        ref.decoder_block_output(weights, config, x, memory, mask),
        "DecoderBlock's output with a memory_mask",
        diagnoses=_block_bugs(weights, config, x, memory, mask),
    )


@decoder_block.check(points=1)
def dropout_acts_on_sublayer_outputs(student, gen):
    """dropout=1.0 in train() mode drops every sublayer's output: a Pre-LN block returns its input.
    dropout=0.0 in train() mode drops nothing. With dropout=0.3 in train() mode, as training runs it,
    backward reaches x and memory (given as views; no in-place change to a tensor autograd saved),
    and forward and backward leave the parameters and buffers unchanged."""
    model, weights, config = _block(student, gen, dropout=1.0)
    x, memory, mask = _block_inputs(gen)
    model.train()
    out = _finite(model(x, memory, mask), x.shape, "DecoderBlock(dropout=1.0)'s output in train() mode")
    if torch.allclose(out, torch.zeros_like(out)):
        raise CheckFailed(
            "DecoderBlock(dropout=1.0) in train() mode returns zeros: dropout acts on each sublayer's output "
            "before it is added to x, never on the residual stream itself, so every sublayer dropped leaves x"
        )
    expect_close(
        out,
        x,
        "DecoderBlock(dropout=1.0)'s output in train() mode (every sublayer's output dropped: "
        "a Pre-LN block returns x)",
        diagnoses=[
            (
                ref.decoder_block_output(weights, config, x, memory, mask),
                "nothing was dropped: apply dropout to each sublayer's output (and pass dropout to FeedForward)",
            )
        ],
    )
    model, weights, config = _block(student, gen, dropout=0.0)
    model.train()
    expect_close(
        model(x, memory, mask),
        ref.decoder_block_output(weights, config, x, memory, mask),
        "DecoderBlock(dropout=0.0)'s output in train() mode, which must drop nothing,",
    )
    for norm_first in (True, False):
        model, _, _ = _block(student, gen, norm_first=norm_first, dropout=0.3)
        model.train()
        before = model.state_dict()
        what = f"DecoderBlock(norm_first={norm_first}, dropout=0.3) in train() mode, forward and backward,"
        args = (*_views(x, memory), mask)
        _backward(model, args, randn(gen, *x.shape), (0, 1), ("x", "memory"), what)
        expect_state_unchanged(model, before, what)


# ---------------------------------------------------------------------------------------
# Seq2SeqTransformer

MODEL_HINT = (
    "the contract names src_embedding, tgt_embedding, encoder_blocks (TransformerBlock), encoder_norm, "
    "decoder_blocks (DecoderBlock), decoder_norm and head"
)


def _model_config(gen, pad_id=0):
    """num_layers 2 < batch 3 < heads 4 < source vocabulary (11-14) < max_len 15 < d_model 16 <
    target vocabulary (17-21) < d_ff 24."""
    return {
        "src_vocab_size": randint(gen, 11, 14),
        "tgt_vocab_size": randint(gen, 17, 21),
        "d_model": 16,
        "num_heads": 4,
        "d_ff": 24,
        "num_layers": 2,
        "max_len": 15,
        "pad_id": pad_id,
    }


def _model(student, gen, pad_id=0, dropout=None):
    config = _model_config(gen, pad_id)
    shapes = ref.parameter_shapes("Seq2SeqTransformer", config)
    weights = _random_weights(gen, shapes)
    model = student(**config) if dropout is None else student(**config, dropout=dropout)
    return _load(model, weights, MODEL_HINT), weights, config


def _sentences(gen, config, length, pad_rows=True):
    """(3, length) source or target ids: real tokens are every id but pad_id; with ``pad_rows``,
    rows 0 and 2 end with padding."""
    vocab, pad = config["src_vocab_size"], config["pad_id"]
    ids = torch.randint(0, vocab - 1, (3, length), generator=gen)
    ids = ids + (ids >= pad).long()  # every id but pad_id
    if pad_rows:
        ids[0, length - randint(gen, 2, 3) :] = pad
        ids[2, length - 1 :] = pad
    return ids


def _targets(gen, config, length):
    return torch.randint(0, config["tgt_vocab_size"], (3, length), generator=gen)


def _logits(model, src, tgt_in, config, what):
    return _finite(model(src, tgt_in), (*tgt_in.shape, config["tgt_vocab_size"]), what)


def _expected(weights, config, src, tgt_in, **change):
    return ref.seq2seq_outputs(weights, config, src, tgt_in, **change)


@seq2seq.check(points=1)
def logits_shape(student, gen):
    """Also at the sizes of one the contract allows: a batch of one, a target of one token, a source of
    one token. Their values are compared with the reference's when the logits at the first sizes are
    right (wrong logits there are the other sub-checks' business)."""
    model, weights, config = _model(student, gen)
    src, tgt_in = _sentences(gen, config, randint(gen, 9, 11)), _targets(gen, config, randint(gen, 5, 8))
    what = f"the logits for src {tuple(src.shape)}, tgt_in {tuple(tgt_in.shape)}"
    right = is_close(_logits(model, src, tgt_in, config, what), _expected(weights, config, src, tgt_in)["logits"])
    one_token = _sentences(gen, config, 1, pad_rows=False)
    for small_src, small_tgt in ((src[:1], tgt_in[:1]), (src, tgt_in[:, :1]), (one_token, tgt_in)):
        small = f"the logits for src {tuple(small_src.shape)}, tgt_in {tuple(small_tgt.shape)}"
        expected = _expected(weights, config, small_src, small_tgt)["logits"]
        if not right:
            _logits(model, small_src, small_tgt, config, small)
            continue
        _expect_no_earlier_call_kept(
            model,
            lambda: _load(student(**config), weights, MODEL_HINT),
            (small_src, small_tgt),
            expected,
            small,
            f", though right for src {tuple(src.shape)}, tgt_in {tuple(tgt_in.shape)} (is a dimension of size one "
            "squeezed?),",
        )


@seq2seq.check(points=2)
def matches_the_reference(student, gen):
    """Then a second call on other tokens and sizes (nothing is kept from the first call), the first
    tokens again as int32 and as non-contiguous views, and the parameters and buffers unchanged."""
    model, weights, config = _model(student, gen)
    src, tgt_in = _sentences(gen, config, randint(gen, 9, 11)), _targets(gen, config, randint(gen, 5, 8))
    before = model.state_dict()
    expected = _expected(weights, config, src, tgt_in)
    expect_close(
        _logits(model, src, tgt_in, config, "the logits"),
        expected["logits"],
        "Seq2SeqTransformer's logits for a padded source, with the weights of the reference",
        diagnoses=[(b["logits"], why) for b, why in _seq2seq_variants(weights, config, src, tgt_in)],
    )
    other_src = _sentences(gen, config, src.shape[1] - randint(gen, 1, 3))
    other_tgt = _targets(gen, config, tgt_in.shape[1] + randint(gen, 1, 3))
    _expect_no_earlier_call_kept(
        model,
        lambda: _load(student(**config), weights, MODEL_HINT),
        (other_src, other_tgt),
        _expected(weights, config, other_src, other_tgt)["logits"],
        f"the logits of a second call, on src {tuple(other_src.shape)} and tgt_in {tuple(other_tgt.shape)} after "
        f"a first on src {tuple(src.shape)} and tgt_in {tuple(tgt_in.shape)},",
    )
    expect_close(
        _logits(model, src.int(), tgt_in.int(), config, "the logits for int32 tokens"),
        expected["logits"],
        "the logits for src and tgt_in given as int32 token ids (nn.Embedding takes int32 and int64 alike)",
    )
    expect_close(
        _logits(model, *_views(src, tgt_in), config, "the logits for tokens given as views"),
        expected["logits"],
        f"the logits for src and tgt_in {VIEWS}",
    )
    expect_state_unchanged(model, before, "four calls of Seq2SeqTransformer's forward")


def _seq2seq_variants(weights, config, src, tgt_in):
    return [
        (
            _expected(weights, config, src, tgt_in, encoder_norm=False),
            "the final encoder LayerNorm (encoder_norm) is not applied to the memory",
        ),
        (
            _expected(weights, config, src, tgt_in, embedding_scale=math.sqrt(config["d_model"])),
            "the source embeddings are multiplied by sqrt(d_model); here they are added to the positions as they are",
        ),
    ]


@seq2seq.check(points=1)
def encode_matches_the_reference(student, gen):
    model, weights, config = _model(student, gen)
    src, tgt_in = _sentences(gen, config, randint(gen, 9, 11)), _targets(gen, config, 4)
    expect_close(
        model.encode(src),
        _expected(weights, config, src, tgt_in)["memory"],
        "encode(src)'s memory for a padded source, with the weights of the reference",
        diagnoses=[(b["memory"], why) for b, why in _seq2seq_variants(weights, config, src, tgt_in)],
    )


@seq2seq.check(points=1)
def encode_and_decode_make_forward(student, gen):
    """decode reads the memory it is given (the reference's memory in, the reference's logits out),
    and forward(src, tgt_in) is decode(tgt_in, encode(src), src). In train() mode with dropout=0.2, as
    training runs it, decode's backward reaches the memory (no in-place change to a tensor autograd
    saved) and leaves the parameters and buffers unchanged."""
    model, weights, config = _model(student, gen)
    src, tgt_in = _sentences(gen, config, randint(gen, 9, 11)), _targets(gen, config, randint(gen, 5, 8))
    expected = _expected(weights, config, src, tgt_in)
    expect_close(
        model.decode(tgt_in, expected["memory"].float(), src),
        expected["logits"],
        "decode(tgt_in, memory, src) given the reference's memory, with the weights of the reference",
    )
    expect_close(
        _logits(model, src, tgt_in, config, "forward's logits"),
        model.decode(tgt_in, model.encode(src), src),
        "forward(src, tgt_in), compared with your decode(tgt_in, encode(src), src),",
    )
    model, _, config = _model(student, gen, dropout=0.2)
    model.train()
    before = model.state_dict()
    what = "Seq2SeqTransformer(..., dropout=0.2).decode(tgt_in, memory, src) in train() mode, forward and backward,"
    src, tgt_in = _sentences(gen, config, randint(gen, 9, 11)), _targets(gen, config, randint(gen, 5, 8))
    memory, grad_output = randn(gen, *src.shape, 16), randn(gen, *tgt_in.shape, config["tgt_vocab_size"])
    _backward(model.decode, (tgt_in, noncontiguous(memory), src), grad_output, (1,), ("memory",), what)
    expect_state_unchanged(model, before, what)


@seq2seq.check(points=2)
def padding_is_never_attended(student, gen):
    """Appending pad tokens to a source changes neither the memory of its real tokens nor the logits."""
    model, _, config = _model(student, gen)
    src, tgt_in = _sentences(gen, config, randint(gen, 7, 9), pad_rows=False), _targets(gen, config, 6)
    padded = torch.cat([src, torch.full((3, randint(gen, 2, 4)), config["pad_id"])], dim=1)
    short = _logits(model, src, tgt_in, config, "the logits")
    long = _logits(model, padded, tgt_in, config, "the logits for a padded source")
    if (model.encode(padded)[:, : src.shape[1]] - model.encode(src)).abs().max() > 1e-4:
        raise CheckFailed(
            "appending padding to the source changed the encoder's memory of the real tokens: the encoder's "
            "self-attention must never attend to a key whose token is pad_id"
        )
    if (long - short).abs().max() > 1e-4:
        raise CheckFailed(
            "appending padding to the source changed the logits: the decoder's cross-attention must never "
            "attend to a source position whose token is pad_id (pass the source's padding mask to every "
            "decoder block)"
        )


@seq2seq.check(points=1)
def respects_pad_id(student, gen):
    """pad_id=5: id 0 is an ordinary token, id 5 is padding."""
    model, weights, config = _model(student, gen, pad_id=5)
    src, tgt_in = _sentences(gen, config, randint(gen, 9, 11)), _targets(gen, config, 5)
    src[1, 0] = 0
    expect_close(
        _logits(model, src, tgt_in, config, "the logits"),
        _expected(weights, config, src, tgt_in)["logits"],
        "the logits of Seq2SeqTransformer(..., pad_id=5) for a source padded with 5 (and holding the ordinary token 0)",
        diagnoses=[
            (
                _expected(weights, {**config, "pad_id": 0}, src, tgt_in)["logits"],
                "token 0 is treated as padding; padding is the pad_id given to the constructor",
            )
        ],
    )


@seq2seq.check(points=1)
def future_target_tokens_never_change_earlier_logits(student, gen):
    model, _, config = _model(student, gen)
    length = randint(gen, 6, 8)
    src, tgt_in = _sentences(gen, config, 9), _targets(gen, config, length)
    before = _logits(model, src, tgt_in, config, "the logits")
    start = randint(gen, 2, length - 1)
    changed = tgt_in.clone()
    changed[:, start:] = (tgt_in[:, start:] + 1) % config["tgt_vocab_size"]
    after = _logits(model, src, changed, config, "the logits")
    leaked = ((after - before).abs().amax(-1) > 1e-4)[:, :start].any(0).nonzero().flatten().tolist()
    if leaked:
        raise CheckFailed(
            f"changing the target tokens from position {start} on changed the logits at earlier position(s) "
            f"{leaked}: the decoder reads the future, so in training it would copy the next token (the decoder "
            "blocks' self-attention needs the causal mask)"
        )


# ---------------------------------------------------------------------------------------
# The models the decoders are tested on. This code runs in the learner's process (the decoders
# call it there; it defines GraderTranslator and GraderLanguageModel in the notebook's namespace,
# sent as a cell through the student's backend, the one request besides calls that the checks make)
# and here (the reference decodes the same models); their scores come from tables, so the expected
# tokens are the reference's on the same tables. nn.Module arguments enter the kit's recording as
# their type's name only; the tables are drawn in the same order, so the replay finds each call.

TEST_MODELS = '''
import torch


class GraderTranslator(torch.nn.Module):
    """encode(src) (B, S) -> memory (B, S, D): a table row per source id. decode(tgt_in, memory, src)
    -> logits (B, T, V): the mean memory of the real (non-pad) source tokens plus the running sum
    of the target tokens' rows, read out, plus a score per position and token; row b reads only
    row b of its inputs, and position t only tgt_in[:, :t+1]. forward(src, tgt_in) as a
    Seq2SeqTransformer's."""

    def __init__(self, source_table, token_table, readout, step_table, pad_id):
        torch.nn.Module.__init__(self)
        self.source_table, self.token_table, self.readout = source_table, token_table, readout
        self.step_table, self.pad_id, self.rows_encoded = step_table, pad_id, 0

    def encode(self, src):
        self.rows_encoded += src.shape[0]
        return self.source_table[src]

    def decode(self, tgt_in, memory, src):
        real = (src != self.pad_id).unsqueeze(-1).to(memory.dtype)
        context = (memory * real).sum(1) / real.sum(1).clamp(min=1.0)
        history = self.token_table[tgt_in].cumsum(1)
        return (context[:, None, :] + history) @ self.readout + self.step_table[: tgt_in.shape[1]]

    def forward(self, src, tgt_in):
        return self.decode(tgt_in, self.encode(src), src)


class GraderLanguageModel(torch.nn.Module):
    """next_log_probs(prefixes (K, t)) -> (K, V): log_softmax of a table row chosen by the prefix's
    length and last token, plus the read-out sum of all its tokens' rows."""

    def __init__(self, step_table, token_table, readout):
        torch.nn.Module.__init__(self)
        self.step_table, self.token_table, self.readout = step_table, token_table, readout

    def forward(self, prefixes):
        scores = self.step_table[prefixes.shape[1] - 1, prefixes[:, -1]]
        return torch.log_softmax(scores + self.token_table[prefixes].sum(1) @ self.readout, dim=-1)
'''

_LOCAL_MODELS: dict = {}
exec(compile(TEST_MODELS, "<grader test models>", "exec"), _LOCAL_MODELS)


def _test_model(student, name: str, *tables):
    """(the model in the learner's process, as a handle; the same model here)."""
    backend = student._backend
    errors = backend.request({"op": "run_cells", "cells": [TEST_MODELS]})
    if not isinstance(errors, list) or any(errors):
        raise CheckFailed(f"the grader could not build its test model in your notebook's process: {errors}")
    return Student(backend, name)(*tables), _LOCAL_MODELS[name](*tables)


TRANSLATOR_PAD = 0  # the test translator's pad_id, for its source and its output


def _translator_tables(gen, vocab, max_len, bos, eos, never_eos=False):
    """The translator's tables (pad_id 0, source ids 1..9): EOS grows likelier step by step (or
    never wins), padding and BOS are never proposed."""
    d = 6
    source_table = randn(gen, 10, d)
    token_table = randn(gen, vocab, d, scale=0.5)
    readout = randn(gen, d, vocab)
    step_table = randn(gen, max_len + 1, vocab)
    ramp = torch.arange(max_len + 1, dtype=torch.float32) * (1.0 + torch.rand(1, generator=gen).item())
    step_table[:, eos] += -1e4 if never_eos else ramp - 4.0
    step_table[:, [TRANSLATOR_PAD, bos]] -= 1e4
    return source_table, token_table, readout, step_table, TRANSLATOR_PAD


def _greedy_case(student, gen, want, never_eos=False):
    """(model handle, src, (bos, eos, max_len), the reference's output), tables redrawn until
    ``want(output, max_len, eos)`` holds (rows that end at different steps, say)."""
    vocab = randint(gen, 7, 9)
    bos, eos = distinct_sizes(gen, (1, vocab - 1), (1, vocab - 1))
    max_len = randint(gen, 6, 8)
    for _ in range(1000):
        tables = _translator_tables(gen, vocab, max_len, bos, eos, never_eos)
        src = torch.randint(1, 10, (4, randint(gen, 5, 7)), generator=gen)
        src[1, -2:] = 0  # padding
        expected = ref.greedy_decode(_LOCAL_MODELS["GraderTranslator"](*tables), src, bos, eos, max_len)
        if want(expected, max_len, eos):
            model, _ = _test_model(student, "GraderTranslator", *tables)
            return model, src, (bos, eos, max_len), expected
    raise CheckFailed("could not draw a test case (a problem of the grader, not of your answer)")


def _lengths(output, eos):
    """Where each row's first EOS is (its length), or the full length when it has none."""
    ends = []
    for row in output.tolist():
        ends.append(row.index(eos) + 1 if eos in row else len(row))
    return ends


def _call_greedy(student, model, src, bos, eos, max_len, expected):
    out = as_tensor(student(model, src, bos, eos, max_len), "greedy_decode's result")
    if out.dtype != torch.int64:
        raise CheckFailed(f"greedy_decode should return int64 token ids, got {out.dtype}")
    if out.dim() != 2 or out.shape[0] != src.shape[0]:
        raise CheckFailed(
            f"greedy_decode should return one row of tokens per source row, (B, L) = ({src.shape[0]}, L), "
            f"got shape {tuple(out.shape)}"
        )
    if out.shape[1] == expected.shape[1] + 1 and (out[:, 0] == bos).all() and torch.equal(out[:, 1:], expected):
        raise CheckFailed("greedy_decode's rows start with BOS: return the generated tokens only, without BOS")
    if out.shape[1] > max_len:
        raise CheckFailed(f"greedy_decode returned {out.shape[1]} tokens per row; at most max_len = {max_len}")
    return out


def _different_lengths(output, max_len, eos):
    lengths = _lengths(output, eos)
    return len(set(lengths)) >= 2 and all(eos in row for row in output.tolist())


@greedy.check(points=1)
def returns_token_ids_per_row(student, gen):
    model, src, (bos, eos, max_len), expected = _greedy_case(student, gen, _different_lengths)
    out = _call_greedy(student, model, src, bos, eos, max_len, expected)
    if out.shape != expected.shape:
        raise CheckFailed(
            f"greedy_decode returned shape {tuple(out.shape)}, expected {tuple(expected.shape)}: one row per "
            "source, as many columns as steps were run (the last row to end sets the length)"
        )


@greedy.check(points=2)
def matches_greedy_on_a_known_model(student, gen):
    model, src, (bos, eos, max_len), expected = _greedy_case(student, gen, _different_lengths)
    out = _call_greedy(student, model, src, bos, eos, max_len, expected)
    expect_close(
        out,
        expected,
        "greedy_decode's tokens on a test model whose most likely tokens are known",
    )


@greedy.check(points=1)
def pads_each_row_after_its_first_eos(student, gen):
    model, src, (bos, eos, max_len), expected = _greedy_case(student, gen, _different_lengths)
    out = _call_greedy(student, model, src, bos, eos, max_len, expected)
    steps = min(out.shape[1], expected.shape[1])
    for row, (got, want) in enumerate(zip(out[:, :steps].tolist(), expected[:, :steps].tolist())):
        end = want.index(eos) + 1 if eos in want else steps
        if got[:end] == want[:end] and got[end:] != want[end:]:
            raise CheckFailed(
                f"row {row} ends with EOS ({eos}) after {end} tokens, but the tokens after it are {got[end:]}: "
                f"after its first EOS a row holds model.pad_id ({TRANSLATOR_PAD}), whatever the model proposes"
            )
    expect_close(out, expected, "greedy_decode's tokens for rows that end at different steps")


@greedy.check(points=1)
def stops_when_every_row_has_ended(student, gen):
    def early(output, max_len, eos):
        return _different_lengths(output, max_len, eos) and output.shape[1] < max_len

    model, src, (bos, eos, max_len), expected = _greedy_case(student, gen, early)
    out = _call_greedy(student, model, src, bos, eos, max_len, expected)
    if out.shape[1] != expected.shape[1]:
        raise CheckFailed(
            f"every row has ended (reached EOS) after {expected.shape[1]} steps, but greedy_decode returned "
            f"{out.shape[1]} tokens per row (max_len = {max_len}): decoding stops as soon as every row has "
            "ended, and not before"
        )
    expect_close(out, expected, "greedy_decode's tokens")


@greedy.check(points=1)
def runs_max_len_steps_without_eos(student, gen):
    model, src, (bos, eos, max_len), expected = _greedy_case(student, gen, lambda *_: True, never_eos=True)
    out = _call_greedy(student, model, src, bos, eos, max_len, expected)
    if out.shape[1] != max_len:
        raise CheckFailed(
            f"on a model that never proposes EOS, greedy_decode returned {out.shape[1]} tokens per row: it "
            f"should generate exactly max_len = {max_len}"
        )
    expect_close(out, expected, "greedy_decode's tokens on a model that never proposes EOS")


@greedy.advice
def encoder_runs_once(student, gen):
    model, src, (bos, eos, max_len), expected = _greedy_case(student, gen, _different_lengths)
    _call_greedy(student, model, src, bos, eos, max_len, expected)
    rows = model.rows_encoded.value()
    if rows > src.shape[0]:
        raise CheckFailed(
            f"greedy_decode encoded {rows} source rows for a batch of {src.shape[0]}: the source does not change "
            "while decoding, so encode each row once and pass the same memory to every decode step"
        )


# ---------------------------------------------------------------------------------------
# sample_next_token

DRAWS = 3000  # per distinct row of logits


def _repeated(rows: torch.Tensor, draws=DRAWS):
    """``rows`` (R, V), each repeated ``draws`` times, interleaved: (R * draws, V)."""
    return rows.repeat(draws, 1)


def _seed(gen) -> torch.Generator:
    return torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))


def _draw(student, logits, what, **kwargs):
    tokens = expect_shape(student(logits, **kwargs), logits.shape[:1], what)
    if tokens.dtype != torch.int64:
        raise CheckFailed(f"{what} should be int64 token ids, got {tokens.dtype}")
    return tokens


def _expect_distribution(tokens, rows, probs, what, diagnoses=()):
    """Each distinct row's draws (rows are repeated, interleaved): only tokens of positive
    probability, and every token's count within six standard deviations (plus 2) of draws * p.
    ``diagnoses``: (probabilities, explanation) of typical bugs, named when the counts fit them."""
    distinct = rows.shape[0]
    for r in range(distinct):
        drawn = tokens[r::distinct]
        n, p = drawn.numel(), probs[r]
        counts = torch.bincount(drawn.clamp(0, p.numel() - 1), minlength=p.numel()).double()
        if (drawn < 0).any() or (drawn >= p.numel()).any():
            raise CheckFailed(f"{what}: ids outside [0, {p.numel()}) were drawn")
        fits = [why for wrong, why in diagnoses if _fits(counts, wrong[r], n)]
        outside = (counts > 0) & (p == 0)
        if outside.any():
            drawn_outside = outside.nonzero().flatten().tolist()
            if fits:
                raise CheckFailed(
                    f"{what}: token(s) {drawn_outside} were drawn, but they are not among the kept tokens: {fits[0]}"
                )
            raise CheckFailed(
                f"{what}: token(s) {drawn_outside} were drawn, but they are not among the kept tokens; only the kept "
                "tokens may be drawn"
            )
        bad = ((counts - n * p).abs() > 6 * (n * p * (1 - p)).sqrt() + 2).nonzero().flatten().tolist()
        if bad:
            token = bad[0]
            drawn = (
                f"{what}: token {token} was drawn {int(counts[token])} times in {n} draws, expected about "
                f"{n * p[token].item():.0f} (probability {p[token].item():.3f})"
            )
            raise CheckFailed(f"{drawn}: {fits[0]}" if fits else drawn)


def _fits(counts, probs, n):
    return bool(((counts - n * probs).abs() <= 6 * (n * probs * (1 - probs)).sqrt() + 2).all())


def _logit_rows(gen, vocab, rows=2, scale=1.5):
    return randn(gen, rows, vocab, scale=scale)


@sampling.check(points=1)
def temperature_zero_is_argmax(student, gen):
    logits = randn(gen, 50, randint(gen, 6, 9), scale=2.0)
    expected = logits.argmax(-1)
    for kwargs in ({}, {"top_k": 3}, {"top_p": 0.5}):
        out = _draw(student, logits, "sample_next_token(logits, temperature=0)", temperature=0, **kwargs)
        if not torch.equal(out, expected):
            raise CheckFailed(
                f"sample_next_token(logits, temperature=0{''.join(f', {k}={v}' for k, v in kwargs.items())}) "
                f"differs from the argmax of each row at {int((out != expected).sum())} of 50 rows: temperature 0 "
                "means no randomness, the most likely token"
            )
    out = _draw(student, noncontiguous(logits), "sample_next_token(logits, temperature=0)", temperature=0)
    if not torch.equal(out, expected):
        raise CheckFailed(
            f"sample_next_token(logits, temperature=0) with logits {VIEWS} differs from the argmax of each row at "
            f"{int((out != expected).sum())} of 50 rows"
        )


@sampling.check(points=2)
def draws_follow_the_softmax(student, gen):
    """Also with the logits given as a non-contiguous view."""
    rows = _logit_rows(gen, randint(gen, 6, 9))
    tokens = _draw(student, _repeated(rows), "sample_next_token(logits)", generator=_seed(gen))
    _expect_distribution(
        tokens, rows, ref.sampling_probs(rows), "sample_next_token(logits) for rows of identical logits"
    )
    tokens = _draw(student, noncontiguous(_repeated(rows)), "sample_next_token(logits)", generator=_seed(gen))
    _expect_distribution(tokens, rows, ref.sampling_probs(rows), f"sample_next_token(logits) with logits {VIEWS}")


@sampling.check(points=1)
def temperature_divides_the_logits(student, gen):
    rows = _logit_rows(gen, randint(gen, 6, 9), scale=1.0)
    for temperature in (0.5, 2.0):
        tokens = _draw(student, _repeated(rows), "sample_next_token", temperature=temperature, generator=_seed(gen))
        _expect_distribution(
            tokens,
            rows,
            ref.sampling_probs(rows, temperature),
            f"sample_next_token(logits, temperature={temperature})",
            diagnoses=[
                (
                    ref.sampling_probs(rows * temperature**2, temperature),
                    "the logits are multiplied by the temperature; divide them by it",
                ),
                (ref.sampling_probs(rows), "the temperature is ignored"),
            ],
        )


def _probable_rows(gen, vocab, ok, tries=500):
    """Two rows of logits for which ``ok(row)`` holds, redrawn until it does."""
    found = []
    for _ in range(tries):
        row = randn(gen, 1, vocab, scale=1.0)
        if ok(row):
            found.append(row)
            if len(found) == 2:
                return torch.cat(found)
    raise CheckFailed("could not draw a test case (a problem of the grader, not of your answer)")


@sampling.check(points=1)
def top_k_keeps_the_k_most_likely(student, gen):
    vocab = randint(gen, 7, 9)
    top_k = randint(gen, 2, vocab - 3)

    def kth_is_probable(row):
        return ref.sampling_probs(row, 1.0, top_k).sort(-1, descending=True).values[0, top_k - 1] > 0.08

    rows = _probable_rows(gen, vocab, kth_is_probable)
    tokens = _draw(student, _repeated(rows), "sample_next_token", top_k=top_k, generator=_seed(gen))
    _expect_distribution(
        tokens,
        rows,
        ref.sampling_probs(rows, 1.0, top_k),
        f"sample_next_token(logits, top_k={top_k})",
        diagnoses=[(ref.sampling_probs(rows, 1.0, top_k - 1), f"only {top_k - 1} tokens are kept; keep top_k")],
    )
    everything = _draw(student, _repeated(rows, 500), "sample_next_token", top_k=vocab + 3)
    _expect_distribution(
        everything, rows, ref.sampling_probs(rows), f"sample_next_token(logits, top_k={vocab + 3}) (more than V)"
    )


def _nucleus(row, temperature=1.0, top_k=None, least_before=0.3):
    """(top_p, the rank of the token that crosses it): p halfway into a token of probability > 0.1,
    not the first, so the crossing token is there to be drawn (or missed)."""
    probs = ref.sampling_probs(row, temperature, top_k).sort(-1, descending=True).values[0]
    before = probs.cumsum(0) - probs
    for rank in range(1, probs.numel() - 1):
        if probs[rank] > 0.1 and before[rank] > least_before:
            return float(before[rank] + probs[rank] / 2), rank
    return None, None


@sampling.check(points=1)
def top_p_keeps_the_nucleus(student, gen):
    rows = _probable_rows(gen, randint(gen, 7, 9), lambda row: _nucleus(row)[0] is not None)
    for r in range(2):
        top_p, rank = _nucleus(rows[r : r + 1])
        tokens = _draw(student, _repeated(rows[r : r + 1]), "sample_next_token", top_p=top_p, generator=_seed(gen))
        _expect_distribution(
            tokens,
            rows[r : r + 1],
            ref.sampling_probs(rows[r : r + 1], 1.0, None, top_p),
            f"sample_next_token(logits, top_p={top_p:.3f})",
            diagnoses=[
                (
                    ref.sampling_probs(rows[r : r + 1], 1.0, rank),
                    "the token that crosses top_p is left out; the nucleus is the smallest set whose probability "
                    "reaches top_p, so the token that crosses it is kept",
                )
            ],
        )


@sampling.check(points=1)
def top_k_and_top_p_combine(student, gen):
    """Temperature first, then top-k, then top-p measured on the renormalised top-k distribution:
    drawn so that measuring the nucleus before top-k or before the temperature keeps other tokens."""
    vocab = randint(gen, 8, 9)
    top_k, temperature = 4, 1.6

    def telling(row):
        top_p, rank = _nucleus(row, temperature, top_k, least_before=0.0)
        if top_p is None or rank + 1 >= top_k:
            return False
        top = ref.sampling_probs(row, temperature, top_k)
        kept = ref.sampling_probs(row, temperature, top_k, top_p) > 0
        nucleus_before_top_k = (top > 0) & (ref.sampling_probs(row, temperature, None, top_p) > 0)
        nucleus_before_temperature = ref.sampling_probs(row, 1.0, top_k, top_p) > 0
        for other in (nucleus_before_top_k, nucleus_before_temperature):
            differ = other ^ kept
            if not differ.any() or not (top[differ] > 0.05).all():
                return False
        return True

    rows = _probable_rows(gen, vocab, telling)
    for r in range(2):
        row = rows[r : r + 1]
        top_p, _ = _nucleus(row, temperature, top_k, least_before=0.0)
        tokens = _draw(
            student,
            _repeated(row),
            "sample_next_token",
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=_seed(gen),
        )
        _expect_distribution(
            tokens,
            row,
            ref.sampling_probs(row, temperature, top_k, top_p),
            f"sample_next_token(logits, temperature={temperature}, top_k={top_k}, top_p={top_p:.3f})",
        )


@sampling.check(points=1)
def reproducible_with_a_generator(student, gen):
    """Generators in the same state draw the same tokens, others other tokens; generator=None draws from
    torch's global generator: after torch.manual_seed(s) (which the grader's calls run first, see
    ``seeded_calls``) the same s gives the same tokens and another s other tokens."""
    logits = randn(gen, 200, randint(gen, 6, 9))
    seed = int(torch.randint(0, 2**31, (1,), generator=gen))
    first = _draw(student, logits, "sample_next_token", generator=torch.Generator().manual_seed(seed))
    again = _draw(student, logits, "sample_next_token", generator=torch.Generator().manual_seed(seed))
    if not torch.equal(first, again):
        raise CheckFailed(
            "two calls with generators in the same state drew different tokens: take every random number "
            "from the generator argument (e.g. torch.multinomial(..., generator=generator))"
        )
    other = _draw(student, logits, "sample_next_token", generator=torch.Generator().manual_seed(seed + 1))
    if torch.equal(first, other):
        raise CheckFailed(
            "generators with different seeds drew the same 200 tokens: the draws must come from the generator "
            "given (is a seed fixed inside the function?)"
        )
    draws = []
    for global_seed in (seed, seed, seed + 1):
        with seeded_calls(global_seed):  # the call runs torch.manual_seed(global_seed) first
            draws.append(_draw(student, logits, "sample_next_token(logits, generator=None)"))
    if not torch.equal(draws[0], draws[1]):
        raise CheckFailed(
            "two calls with generator=None, each after torch.manual_seed with the same seed, drew different tokens: "
            "generator=None means torch's global generator (pass generator=None on to torch.multinomial or "
            "torch.rand, which then use it), not a source of randomness outside torch"
        )
    if torch.equal(draws[0], draws[2]):
        raise CheckFailed(
            "calls with generator=None after torch.manual_seed with different seeds drew the same 200 tokens: "
            "generator=None means torch's global generator, not a new torch.Generator() or a fixed seed"
        )


# ---------------------------------------------------------------------------------------
# beam_search


def _language_model(student, step_table, token_table=None, readout=None):
    vocab = step_table.shape[-1]
    token_table = torch.zeros(vocab, 2) if token_table is None else token_table
    readout = torch.zeros(2, vocab) if readout is None else readout
    return _test_model(student, "GraderLanguageModel", step_table, token_table, readout)


def _random_language_model(student, gen, vocab, max_len):
    step_table = randn(gen, max_len + 1, vocab, vocab, scale=1.5)
    return _language_model(student, step_table, randn(gen, vocab, 3, scale=0.7), randn(gen, 3, vocab))


def _markov(rows: dict, roles: dict, vocab: int, max_len: int, default=None) -> torch.Tensor:
    """A step table (max_len + 1, V, V) of log-probabilities from ``rows``: {last token's role:
    {next token's role: probability}}; roles map names to ids, unnamed tokens share what is left."""
    table = torch.empty(vocab, vocab)
    for last in range(vocab):
        spec = rows.get(next((name for name, i in roles.items() if i == last), None), default or {})
        probs = torch.zeros(vocab)
        for name, p in spec.items():
            probs[roles[name]] = p
        rest = [t for t in range(vocab) if t not in {roles[name] for name in spec}]
        probs[rest] = (1.0 - probs.sum()).clamp(min=1e-6) / max(len(rest), 1)
        table[last] = (probs / probs.sum()).log()
    return table.expand(max_len + 1, vocab, vocab).clone()


def _roles(gen, vocab):
    order = torch.randperm(vocab, generator=gen).tolist()
    return dict(zip(["bos", "eos", "a", "b", "c"], order))


def _call_beam(student, lm, bos, eos, beam_size, max_len, what):
    result = student(lm, bos, eos, beam_size, max_len)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailed(f"{what} should return a pair (tokens, log_prob), got {type(result).__name__}")
    tokens, score = result
    if isinstance(tokens, (list, tuple)) and all(isinstance(t, int) for t in tokens):
        tokens = torch.tensor(tokens, dtype=torch.int64)
    tokens = as_tensor(tokens, f"{what}'s tokens")
    if tokens.dim() != 1 or tokens.dtype != torch.int64:
        raise CheckFailed(
            f"{what}'s tokens should be a 1-D int64 tensor, got shape {tuple(tokens.shape)}, {tokens.dtype}"
        )
    if isinstance(score, torch.Tensor) and score.numel() == 1:
        score = float(score)
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise CheckFailed(f"{what}'s log-probability should be a number, got {type(score).__name__}")
    return tokens, float(score)


def _expect_sequence(got, expected, what, bos, eos, max_len):
    tokens, score = got
    want, want_score = expected
    if torch.equal(tokens, want) and math.isclose(score, want_score, rel_tol=1e-4, abs_tol=1e-4):
        return
    if tokens.numel() == want.numel() + 1 and int(tokens[0]) == bos and torch.equal(tokens[1:], want):
        raise CheckFailed(f"{what}: the tokens start with BOS ({bos}); return the tokens after BOS")
    if tokens.numel() > max_len:
        raise CheckFailed(
            f"{what}: {tokens.numel()} tokens returned, but a hypothesis holds at most max_len = {max_len}"
        )
    if torch.equal(tokens, want):
        raise CheckFailed(
            f"{what}: the tokens are right but the log-probability is {score:.6g}, expected {want_score:.6g} (the "
            "sum of the log-probabilities of every token after BOS, EOS included)"
        )
    if want.numel() and int(want[-1]) == eos and torch.equal(tokens, want[:-1]):
        raise CheckFailed(f"{what}: the EOS token ({eos}) that ends the best sequence is missing from the tokens")
    raise CheckFailed(
        f"{what} returned {tokens.tolist()} (log-probability {score:.4f}); the best sequence is {want.tolist()} "
        f"(log-probability {want_score:.4f})"
    )


@beam.check(points=1)
def returns_tokens_and_their_log_probability(student, gen):
    """A beam wide enough for every sequence, on a model where EOS is likely and one where it never is."""
    vocab, max_len = 4, randint(gen, 3, 4)
    bos, eos = distinct_sizes(gen, (0, vocab - 1), (0, vocab - 1))
    for eos_score in (2.0, -1e4):
        step_table = randn(gen, max_len + 1, vocab, vocab)
        step_table[..., eos] += eos_score
        lm, local = _language_model(student, step_table)
        expected = ref.exhaustive_search(local, bos, eos, max_len)
        what = f"beam_search(next_log_probs, bos_id={bos}, eos_id={eos}, beam_size={vocab**max_len}, max_len={max_len})"
        got = _call_beam(student, lm, bos, eos, vocab**max_len, max_len, what)
        _expect_sequence(got, expected, what, bos, eos, max_len)


@beam.check(points=1)
def beam_of_one_is_greedy(student, gen):
    vocab, max_len = randint(gen, 5, 6), randint(gen, 4, 6)
    bos, eos = distinct_sizes(gen, (0, vocab - 1), (0, vocab - 1))
    lm, local = _random_language_model(student, gen, vocab, max_len)
    what = f"beam_search(..., beam_size=1, max_len={max_len})"
    got = _call_beam(student, lm, bos, eos, 1, max_len, what)
    _expect_sequence(got, ref.beam_search(local, bos, eos, 1, max_len), what + " (greedy decoding)", bos, eos, max_len)


@beam.check(points=2)
def finds_what_greedy_misses(student, gen):
    """Hand-built distributions, beam of 2: (1) the likeliest first token leads nowhere likely, (2)
    one short sequence beats a longer one of higher per-token probability (no length normalisation),
    (3) the first hypothesis to finish is not the best."""
    vocab, max_len = 5, 4
    roles = _roles(gen, vocab)
    spread = {"eos": 0.22, "a": 0.2, "b": 0.2, "c": 0.2}
    cases = [
        (
            "the likeliest first token leads nowhere likely",
            {"bos": {"a": 0.5, "b": 0.4}, "a": spread, "b": {"eos": 0.9}},
        ),
        (
            "ending at once beats a longer sequence of likelier tokens (scores are not length-normalised)",
            {"bos": {"eos": 0.5, "a": 0.45}, "a": {"b": 0.8, "a": 0.1}, "b": {"eos": 0.85}, "eos": spread},
        ),
        ("the first hypothesis to finish is not the best", {"bos": {"eos": 0.3, "a": 0.68}, "a": {"eos": 0.9}}),
    ]
    for case, rows in cases:
        lm, local = _language_model(student, _markov(rows, roles, vocab, max_len, default=spread))
        expected = ref.exhaustive_search(local, roles["bos"], roles["eos"], max_len)
        what = f"beam_search(..., beam_size=2, max_len={max_len}) where {case}"
        got = _call_beam(student, lm, roles["bos"], roles["eos"], 2, max_len, what)
        _expect_sequence(got, expected, what, roles["bos"], roles["eos"], max_len)


@beam.check(points=2)
def wide_beam_equals_exhaustive_search(student, gen):
    vocab, max_len = 4, randint(gen, 3, 4)
    bos, eos = distinct_sizes(gen, (0, vocab - 1), (0, vocab - 1))
    for beam_size in (vocab**max_len, vocab**max_len + 5):
        lm, local = _random_language_model(student, gen, vocab, max_len)
        what = f"beam_search(..., beam_size={beam_size}, max_len={max_len}), a beam as wide as every sequence,"
        got = _call_beam(student, lm, bos, eos, beam_size, max_len, what)
        _expect_sequence(got, ref.exhaustive_search(local, bos, eos, max_len), what, bos, eos, max_len)


# ---------------------------------------------------------------------------------------
# CachedSelfAttention

ATTENTION_HINT = "the contract names w_q, w_k, w_v and w_o (nn.Linear(d_model, d_model) with biases)"


def _attention(student, gen):
    d_model, heads = 16, 4
    weights = {}
    for name in ("w_q", "w_k", "w_v", "w_o"):
        weights[f"{name}.weight"] = randn(gen, d_model, d_model, scale=1 / math.sqrt(d_model))
        weights[f"{name}.bias"] = randn(gen, d_model, scale=0.3)
    return _load(student(d_model, heads), weights, ATTENTION_HINT), weights, d_model, heads


def _cache_pair(value, what, shape):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise CheckFailed(f"{what} should return (output, cache) with cache a pair (keys, values)")
    output, cache = value
    if not isinstance(cache, (tuple, list)) or len(cache) != 2:
        raise CheckFailed(f"{what}'s cache should be a pair (keys, values), got {type(cache).__name__}")
    keys = expect_shape(cache[0], shape, f"{what}'s cached keys, (B, H, P + T_new, d_head),")
    values = expect_shape(cache[1], shape, f"{what}'s cached values, (B, H, P + T_new, d_head),")
    return output, (keys, values)


def _run(model, x, cache, heads, what):
    past = 0 if cache is None else cache[0].shape[2]
    shape = (x.shape[0], heads, past + x.shape[1], x.shape[2] // heads)
    output, new_cache = _cache_pair(model(x) if cache is None else model(x, cache), what, shape)
    return _finite(output, x.shape, f"{what}'s output"), new_cache


def _full_attention(weights, x, heads, wrong_scale=False):
    """Attention over the whole x without the causal mask (or with the wrong scale): typical bugs."""

    def project(name):
        return x.double() @ weights[f"{name}.weight"].double().T + weights[f"{name}.bias"].double()

    def split(t):
        return t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

    q, k, v = split(project("w_q")), split(project("w_k")), split(project("w_v"))
    d = x.shape[-1] if wrong_scale else q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    if wrong_scale:  # causal, but divided by sqrt(d_model)
        n = x.shape[1]
        scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), -math.inf)
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
    return out @ weights["w_o.weight"].double().T + weights["w_o.bias"].double()


@cached.check(points=2)
def without_a_cache_is_causal_attention(student, gen):
    model, weights, d_model, heads = _attention(student, gen)
    x = randn(gen, 2, randint(gen, 5, 9), d_model)
    output, _ = _run(model, x, None, heads, "CachedSelfAttention(x) with no cache")
    expect_close(
        output,
        ref.cached_attention_output(weights, d_model, heads, x)[0],
        "CachedSelfAttention's output for a whole sequence with no cache",
        diagnoses=[
            (
                _full_attention(weights, x, heads),
                "token i reads the future: new token i attends to positions <= its own",
            ),
            (
                _full_attention(weights, x, heads, wrong_scale=True),
                "the scores are divided by sqrt(d_model); divide by sqrt(d_head), the width of one head",
            ),
        ],
    )


@cached.check(points=2)
def uses_the_cache_it_is_given(student, gen):
    """A cache made up by the grader (keys and values no projection produced): the new tokens must
    attend over it and over themselves, causally, and nothing else."""
    model, weights, d_model, heads = _attention(student, gen)
    before = model.state_dict()
    past, new = distinct_sizes(gen, (5, 9), (2, 4))
    _run(model, randn(gen, 2, 3, d_model), None, heads, "CachedSelfAttention(x) with no cache")  # an earlier call
    cache = (randn(gen, 2, heads, past, d_model // heads), randn(gen, 2, heads, past, d_model // heads))
    for x in (randn(gen, 2, 1, d_model), randn(gen, 2, new, d_model)):
        what = f"CachedSelfAttention(x_new, cache) with {past} cached positions and {x.shape[1]} new token(s)"
        output, _ = _run(model, x, cache, heads, what)
        expected = ref.cached_attention_output(weights, d_model, heads, x, cache)[0]
        if not _close(output, expected):
            raise CheckFailed(
                f"{what}: the output differs from attention over the cache given followed by the new tokens' keys "
                f"and values. New token i sits at position {past} + i: it attends to all {past} cached positions "
                "and to the new positions up to its own, using the cache passed in (not one kept from earlier calls)"
            )
    what = f"CachedSelfAttention(x_new, cache) with x_new and the cache's keys and values {VIEWS}"
    output, _ = _run(model, noncontiguous(x), _views(*cache), heads, what)
    expect_close(output, expected, f"{what}, its output")
    expect_state_unchanged(model, before, "four calls of CachedSelfAttention's forward")


def _close(actual, expected):
    return actual.shape == expected.shape and torch.allclose(actual.double(), expected, rtol=1e-4, atol=1e-5)


@cached.check(points=2)
def token_by_token_equals_the_whole_sequence(student, gen):
    model, weights, d_model, heads = _attention(student, gen)
    length, prompt = distinct_sizes(gen, (7, 10), (2, 4))
    x = randn(gen, 2, length, d_model)
    expected = ref.cached_attention_output(weights, d_model, heads, x)[0]
    outputs, cache = [], None
    for start, stop in [(0, prompt), *((t, t + 1) for t in range(prompt, length))]:
        output, cache = _run(model, x[:, start:stop], cache, heads, "CachedSelfAttention, step by step,")
        outputs.append(output)
    expect_close(
        torch.cat(outputs, dim=1),
        expected,
        f"the outputs of a {prompt}-token prompt and then one token at a time, each call given the cache the "
        f"previous one returned (compared with causal attention over all {length} tokens at once)",
    )


@cached.check(points=1)
def returns_the_extended_cache(student, gen):
    model, weights, d_model, heads = _attention(student, gen)
    past, new = distinct_sizes(gen, (4, 7), (2, 3))
    cache = (randn(gen, 2, heads, past, d_model // heads), randn(gen, 2, heads, past, d_model // heads))
    x = randn(gen, 2, new, d_model)
    _, (keys, values) = _run(model, x, cache, heads, "CachedSelfAttention(x_new, cache)")
    _, (want_keys, want_values) = ref.cached_attention_output(weights, d_model, heads, x, cache)
    for got, want, kind in ((keys, want_keys, "keys"), (values, want_values, "values")):
        if not _close(got, want):
            raise CheckFailed(
                f"the returned cache's {kind} differ from the expected ones: the cache given ({past} positions) "
                f"followed by the {new} new tokens' projected {kind}, split into heads, along dim 2"
            )


# ---------------------------------------------------------------------------------------
# grouped_query_attention


def _gqa_inputs(gen, heads, groups, n_q, n_k):
    d, d_v = distinct_sizes(gen, (6, 9), (3, 5))
    return randn(gen, 2, heads, n_q, d), randn(gen, 2, groups, n_k, d), randn(gen, 2, groups, n_k, d_v)


def _gqa_bugs(q, k, v, mask=None):
    heads, groups = q.shape[1], k.shape[1]
    d, d_v = q.shape[-1], v.shape[-1]
    bugs = [
        (
            ref.grouped_query_attention(q * math.sqrt(d / d_v), k, v, mask),
            "the scores are divided by sqrt(d_v); divide by sqrt(d), the width of the queries and keys",
        )
    ]
    if 1 < groups < heads:
        r = heads // groups
        bugs.append(
            (
                ref.grouped_query_attention(q, k.repeat(1, r, 1, 1), v.repeat(1, r, 1, 1), mask),
                "query head h reads key/value head h % G (round-robin); it must read head h // (H/G), so "
                "consecutive query heads share one (repeat_interleave order, not repeat)",
            )
        )
    if mask is not None:
        bugs.append((ref.grouped_query_attention(q, k, v), "the mask is ignored"))
    return bugs


def _expect_gqa(student, q, k, v, what, mask=None, views=False):
    """With ``views``, q, k, v (and the mask) are handed as non-contiguous views, the values compared with
    those of the originals."""
    layout = _views(q, k, v, mask) if views else (q, k, v, mask)
    kwargs = {} if mask is None else {"mask": layout[3]}
    expect_close(
        student(*layout[:3], **kwargs),
        ref.grouped_query_attention(q, k, v, mask),
        f"{what}, with q, k, v{'' if mask is None else ' and mask'} {VIEWS}," if views else what,
        diagnoses=_gqa_bugs(q, k, v, mask),
    )


@gqa.check(points=1)
def matches_multi_head_when_g_equals_h(student, gen):
    n_q, n_k = distinct_sizes(gen, (3, 6), (7, 10))
    q, k, v = _gqa_inputs(gen, 4, 4, n_q, n_k)
    _expect_gqa(student, q, k, v, "grouped_query_attention with G = H = 4 (multi-head attention)")


@gqa.check(points=2)
def query_head_reads_its_group(student, gen):
    heads, groups = [(6, 2), (6, 3), (8, 2), (8, 4)][randint(gen, 0, 3)]
    n_q, n_k = distinct_sizes(gen, (3, 5), (7, 10))
    q, k, v = _gqa_inputs(gen, heads, groups, n_q, n_k)
    what = f"grouped_query_attention with H = {heads} query heads and G = {groups} key/value heads"
    _expect_gqa(student, q, k, v, what)
    _expect_gqa(student, q, k, v, what, views=True)


@gqa.check(points=1)
def applies_masks(student, gen):
    heads, groups = 6, 2
    n = randint(gen, 5, 8)
    q, k, v = _gqa_inputs(gen, heads, groups, n, n)
    padding = torch.ones(2, 1, 1, n, dtype=torch.bool)
    padding[1, ..., n - 2 :] = False
    per_head = torch.rand(2, heads, n, n, generator=gen) < 0.6
    per_head[..., 0] = True
    masks = [
        (torch.ones(n, n, dtype=torch.bool).tril(), "a causal (N_q, N_k) mask"),
        (padding, "a padding mask (B, 1, 1, N_k)"),
        (per_head, "a mask per head (B, H, N_q, N_k)"),
    ]
    for mask, kind in masks:
        _expect_gqa(student, q, k, v, f"grouped_query_attention with {kind}", mask=mask)
    _expect_gqa(student, q, k, v, f"grouped_query_attention with {masks[2][1]}", mask=per_head, views=True)


@gqa.check(points=1)
def single_key_value_head(student, gen):
    q, k, v = _gqa_inputs(gen, 8, 1, 1, randint(gen, 20, 30))
    _expect_gqa(student, q, k, v, "grouped_query_attention with G = 1 (multi-query attention), one query per head")


@gqa.advice
def never_copies_keys_for_every_head(student, gen):
    batch, heads, groups, n_q, n_k = 2, 8, 2, 2, 40
    q, k, v = randn(gen, batch, heads, n_q, 16), randn(gen, batch, groups, n_k, 16), randn(gen, batch, groups, n_k, 12)
    _, trace = student.traced(q, k, v)
    expect_computed_in_torch(trace, "grouped_query_attention", q.numel() + k.numel() + v.numel())
    limit = max(batch * heads * n_q * n_k, batch * groups * n_k * 16)
    expect_bounded(
        trace.created,
        limit,
        "grouped_query_attention created",
        "the keys and values of the G heads, the scores and the output (no copy of the keys or values per query "
        "head: stack each group's queries against its one key/value head)",
        lambda shape: "the keys or values repeated for every query head"
        if math.prod(shape) >= batch * heads * n_k * 12
        else "",
    )


# ---------------------------------------------------------------------------------------
# kv_cache_bytes


def _bytes(student, *args, **kwargs):
    value = student(*args, **kwargs)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise CheckFailed(
            f"kv_cache_bytes should return an int (a count of bytes), got {type(value).__name__}"
            + (f" {value!r}" if isinstance(value, float) else "")
        )
    return int(value)


def _kv_bugs(layers, kv_heads, head_dim, seq_len, batch, per_value):
    return [
        (
            layers * kv_heads * head_dim * seq_len * batch * per_value,
            "only the keys are counted; the values take as much",
        ),
        (
            2 * kv_heads * head_dim * seq_len * batch * per_value,
            "the number of layers is left out: every layer has its cache",
        ),
        (
            2 * layers * kv_heads * head_dim * seq_len * per_value,
            "the batch size is left out: every sequence has its cache",
        ),
        (2 * layers * kv_heads * head_dim * seq_len * batch * 2, "bytes_per_value is ignored (2 is used)"),
        (2 * layers * kv_heads * head_dim * seq_len * batch * per_value * 8, "that is bits; count bytes"),
    ]


def _expect_bytes(student, args, what, **kwargs):
    expected = ref.kv_cache_bytes(*args, **kwargs)
    got = _bytes(student, *args, **kwargs)
    if got == expected:
        return
    per_value = kwargs.get("bytes_per_value", 2)
    for wrong, why in _kv_bugs(*args, per_value):
        if got == wrong:
            raise CheckFailed(f"{what} = {got}, expected {expected}: {why}")
    raise CheckFailed(f"{what} = {got}, expected {expected}")


@kv_bytes.check(points=1)
def counts_keys_and_values(student, gen):
    layers, kv_heads, batch = distinct_sizes(gen, (3, 9), (3, 9), (3, 9))
    head_dim, seq_len = 16 * randint(gen, 2, 8), randint(gen, 100, 3000)
    args = (layers, kv_heads, head_dim, seq_len, batch)
    _expect_bytes(student, args, f"kv_cache_bytes{args}")


@kv_bytes.check(points=1)
def respects_bytes_per_value(student, gen):
    batch = randint(gen, 3, 9)
    llama2_70b = (80, 8, 128, 4096, batch)  # Touvron et al. (2023): 8 key/value heads of 128 for 64 query heads
    for per_value in (4, 1):
        what = f"kv_cache_bytes{llama2_70b[:-1] + (batch, per_value)} (bytes_per_value={per_value})"
        _expect_bytes(student, llama2_70b, what, bytes_per_value=per_value)
    _expect_bytes(student, llama2_70b, f"kv_cache_bytes{llama2_70b} (float16 by default)")
