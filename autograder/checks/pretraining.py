"""Checks for chapter 6: ``shift_for_next_token``, ``language_model_loss``, ``mask_tokens``,
``CausalLM`` and ``MaskedLM``.

``language_model_loss`` may not call the library loss it is compared with (``F.cross_entropy``,
``F.nll_loss``: the calls are recorded). ``mask_tokens`` is random: its structure (labels, special tokens, untouched positions) is
checked exactly, its proportions statistically on large samples, with tolerances of
``Z`` binomial standard errors, so a correct implementation with any random stream passes
(a false failure has odds below one in a million per proportion) while the typical bugs,
which move a proportion by at least 5 points, fail whatever the seed.

The model classes are constructed through the handle with small sizes,
``Model(vocab_size=..., d_model=..., num_heads=..., d_ff=..., num_layers=..., max_len=...)``,
their parameters are perturbed (so a legitimate zero initialization cannot hide a
dependence), and they are checked for properties: shapes, causality or bidirectionality,
use of positions, independence of the rows of a batch. Then the reference's weights are
loaded into them by the contract's submodule names and the logits compared with the
reference's (float64): at T = max_len, at T < max_len (the first rows of the position table;
for the causal model also prefix consistency), and in train() mode with dropout 1.0, where
every block returns its input, so the logits are head(norm(embeddings)) exactly. The reference
comparison also hands the tokens as a non-contiguous view and as int32 ids; calls in eval() mode and
in train() mode with dropout must leave the parameters and buffers (the position table too) unchanged.
Last, training's backward in train() mode: the parameters' gradients (:data:`autograder.protocol.PARAMETERS`)
equal the reference stack's at dropout 0.0, and with dropout 0.3 backward runs and reaches every parameter.
"""

import math

import torch
import torch.nn.functional as F

from autograder.oracle import reference
from autograder.protocol import PARAMETERS
from autograder.student import StudentError
from autograder.suite import (
    CheckFailed,
    Suite,
    as_tensor,
    expect_close,
    expect_shape,
    noncontiguous,
    randint,
    randn,
)

ref = reference("pretraining")

shift = Suite("shift_for_next_token")
loss = Suite("language_model_loss")
masking = Suite("mask_tokens")
causal = Suite("CausalLM")
masked = Suite("MaskedLM")
SUITES = {s.function: s for s in (shift, loss, masking, causal, masked)}

IGNORE = -100
Z = 5.0  # standard errors of tolerance in the statistical checks


def _pair(result, what):
    if not isinstance(result, tuple) or len(result) != 2:
        raise CheckFailed(f"{what} should return a tuple of two tensors, got {type(result).__name__}")
    return result


def _expect_tokens(actual, expected, what, diagnoses=()):
    """Exact equality of integer tensors; a known wrong answer (even of another shape) is named."""
    actual = as_tensor(actual, what)
    if actual.dtype != expected.dtype:
        raise CheckFailed(f"{what} should keep the dtype of the tokens ({expected.dtype}), got {actual.dtype}")
    if actual.shape == expected.shape and torch.equal(actual, expected):
        return
    for wrong, explanation in diagnoses:
        if actual.shape == wrong.shape and torch.equal(actual, wrong):
            raise CheckFailed(f"{what} is wrong: {explanation}")
    expect_shape(actual, expected.shape, what)
    if not torch.equal(actual, expected):
        raise CheckFailed(
            f"{what} differs from the expected tokens at {int((actual != expected).sum())} "
            f"of {expected.numel()} positions"
        )


# ---------------------------------------------------------------------------------------
# shift_for_next_token


def _check_shift(student, tokens, what):
    expected_inputs, expected_targets = ref.shift_for_next_token(tokens)
    inputs, targets = _pair(student(tokens), "shift_for_next_token")
    first_dim = "it shifts along the first dimension; shift along the last one (time)"
    bugs = [
        (tokens, "nothing is shifted: a target must be the token AFTER its input"),
        (tokens[:-1], first_dim),
        (tokens[1:], first_dim),
    ]
    _expect_tokens(
        inputs,
        expected_inputs,
        f"inputs for {what}",
        [(tokens[..., 1:], "inputs and targets are swapped: inputs are tokens[..., :-1]")] + bugs,
    )
    _expect_tokens(
        targets,
        expected_targets,
        f"targets for {what}",
        [(tokens[..., :-1], "targets are tokens[..., :-1], the inputs; they must be tokens[..., 1:], the next tokens")]
        + bugs,
    )


@shift.check(points=1)
def shifts_a_single_sequence(student, gen):
    tokens = torch.randint(0, 50, (randint(gen, 5, 12),), generator=gen)
    _check_shift(student, tokens, f"one sequence of shape {tuple(tokens.shape)}")


@shift.check(points=1)
def shifts_along_time_in_a_batch(student, gen):
    batch, length = randint(gen, 2, 4), randint(gen, 6, 11)
    tokens = torch.randint(0, 50, (batch, length), generator=gen)
    _check_shift(student, tokens, f"a batch of shape (B, T) = {tuple(tokens.shape)}")


@shift.check(points=1)
def any_leading_dimensions(student, gen):
    """Also a batch of one and int32 tokens (the dtype is kept)."""
    shapes = ((2, randint(gen, 3, 5), randint(gen, 7, 9)), (3, 2), (1, randint(gen, 4, 9)))
    for shape, dtype in zip(shapes, (torch.int64, torch.int64, torch.int32)):
        tokens = torch.randint(0, 50, shape, generator=gen, dtype=dtype)
        _check_shift(student, tokens, f"tokens of shape {shape}" + (" (int32)" if dtype == torch.int32 else ""))
    tokens = torch.randint(0, 50, (2, randint(gen, 2, 4), randint(gen, 5, 9)), generator=gen)
    _check_shift(student, noncontiguous(tokens), f"a non-contiguous view of tokens of shape {tuple(tokens.shape)}")


# ---------------------------------------------------------------------------------------
# language_model_loss


LIBRARY_LOSSES = {  # F.cross_entropy, F.nll_loss and their aten operations
    "cross_entropy",
    "nll_loss",
    "nll_loss2d",
    "nll_loss_nd",
    "cross_entropy_loss",
    "nll_loss_forward",
    "nll_loss2d_forward",
}


def _loss(student, logits, labels, **kwargs):
    value = as_tensor(student(logits, labels, **kwargs), "language_model_loss(logits, labels)")
    if value.dim() != 0 and value.numel() == 1:
        raise CheckFailed(
            f"language_model_loss should return a 0-dim tensor (shape (), like F.cross_entropy's), got shape "
            f"{tuple(value.shape)}: keepdim=True or an indexing with [..., None] left a dimension"
        )
    if value.dim() != 0:
        raise CheckFailed(
            f"language_model_loss should return a 0-dim tensor (shape (), like F.cross_entropy's), got shape "
            f"{tuple(value.shape)}"
        )
    return value


def _labels(gen, shape, vocab, ignored_fraction=0.0, ignore_index=IGNORE):
    labels = torch.randint(0, vocab, shape, generator=gen)
    ignored = torch.rand(shape, generator=gen) < ignored_fraction
    ignored.view(-1)[0] = ignored_fraction > 0  # at least one ignored position when asked for
    return labels.masked_fill(ignored, ignore_index)


def _per_position(logits, labels, ignore_index=IGNORE):
    """Cross-entropy of every position (0 where ignored) and the mask of kept positions."""
    vocab = logits.shape[-1]
    losses = F.cross_entropy(
        logits.reshape(-1, vocab).double(), labels.reshape(-1), ignore_index=ignore_index, reduction="none"
    )
    return losses, labels.reshape(-1) != ignore_index


def _loss_bugs(logits, labels, ignore_index=IGNORE):
    losses, kept = _per_position(logits, labels, ignore_index)
    bugs = [
        (losses.sum(), "it sums the losses; take the mean over the predicted positions"),
        (
            losses.sum() / math.log(2) / kept.sum(),
            "it is in bits (log base 2); use the natural log (nats), as F.cross_entropy does",
        ),
    ]
    if not kept.all():
        bugs.append(
            (
                losses.mean(),
                "ignored positions count as zero loss in the mean: divide by the number of "
                "positions whose label is not ignore_index, not by all positions",
            )
        )
    return bugs


@loss.check(points=2)
def matches_cross_entropy(student, gen):
    batch, length, vocab = randint(gen, 2, 4), randint(gen, 5, 9), randint(gen, 11, 23)
    logits, labels = randn(gen, batch, length, vocab, scale=2.0), _labels(gen, (batch, length), vocab)
    expected = F.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1))
    diagnoses = _loss_bugs(logits, labels) + [
        (-expected, "the sign is flipped: the loss is MINUS the mean log-probability of the labels")
    ]
    expect_close(
        _loss(student, logits, labels), expected, "the loss for logits (B, T, V), no label ignored", diagnoses=diagnoses
    )
    flat_logits, flat_labels = logits.reshape(-1, vocab), labels.reshape(-1)
    expect_close(_loss(student, flat_logits, flat_labels), expected, "the loss for logits of shape (N, V)")


@loss.advice
def no_library_loss(student, gen):
    """The exercise's rule, as advice (recorded in the learner's process): written from
    torch.log_softmax (or torch.logsumexp) and indexing, not the library loss."""
    batch, length, vocab = randint(gen, 2, 4), randint(gen, 5, 9), randint(gen, 11, 23)
    _, functions = student.functions(randn(gen, batch, length, vocab), _labels(gen, (batch, length), vocab))
    used = sorted(LIBRARY_LOSSES & set(functions))
    if used:
        raise CheckFailed(
            f"language_model_loss calls {', '.join(used)}, the library loss the checks compare with; the "
            "exercise is to write it from torch.log_softmax (or torch.logsumexp) and indexing"
        )


@loss.check(points=2)
def ignores_positions_labelled_minus_100(student, gen):
    batch, length, vocab = randint(gen, 2, 4), randint(gen, 6, 10), randint(gen, 11, 23)
    logits, labels = randn(gen, batch, length, vocab, scale=2.0), _labels(gen, (batch, length), vocab, 0.6)
    expected = F.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1), ignore_index=IGNORE)
    diagnoses = _loss_bugs(logits, labels)
    expect_close(_loss(student, logits, labels), expected, "the loss with 60% of labels = -100", diagnoses=diagnoses)
    expect_close(  # the layout a model's logits[:, :-1] or a transposed tensor has
        _loss(student, noncontiguous(logits), noncontiguous(labels)),
        expected,
        "the loss for logits and labels that are non-contiguous views (as logits[:, :-1] is)",
        diagnoses=diagnoses,
    )


@loss.check(points=1)
def respects_the_ignore_index_argument(student, gen):
    batch, length, vocab = randint(gen, 2, 4), randint(gen, 6, 10), randint(gen, 11, 23)
    logits = randn(gen, batch, length, vocab, scale=2.0)
    labels = _labels(gen, (batch, length), vocab, 0.4, ignore_index=0)  # 0 = [PAD], a real class id
    expected = F.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1), ignore_index=0)
    everything = F.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1))
    diagnoses = [
        (everything, "the ignore_index argument is not used: positions labelled ignore_index=0 were counted")
    ] + _loss_bugs(logits, labels, 0)
    expect_close(
        _loss(student, logits, labels, ignore_index=0), expected, "the loss with ignore_index=0", diagnoses=diagnoses
    )


@loss.check(points=1)
def stable_for_large_logits(student, gen):
    vocab = randint(gen, 11, 23)
    logits = randn(gen, randint(gen, 6, 12), vocab, scale=300.0)
    labels = torch.randint(0, vocab, (logits.shape[0],), generator=gen)
    expected = F.cross_entropy(logits, labels)
    value = _loss(student, logits, labels)
    if not torch.isfinite(value):
        raise CheckFailed(
            "the loss is infinite or NaN for logits of size ~1000: log(softmax(x)) underflows to "
            "log(0); compute log-probabilities as x - logsumexp(x) (torch.log_softmax)"
        )
    expect_close(value, expected, "the loss for logits of size ~1000")


@loss.check(points=1)
def gradient_reaches_the_logits(student, gen):
    batch, length, vocab = randint(gen, 2, 3), randint(gen, 4, 8), randint(gen, 7, 13)
    logits, labels = randn(gen, batch, length, vocab), _labels(gen, (batch, length), vocab, 0.3)
    expected_logits = logits.clone().requires_grad_(True)
    F.cross_entropy(expected_logits.reshape(-1, vocab), labels.reshape(-1)).backward()
    _loss(student, logits, labels)
    try:
        # grad_output None (implicit 1 for one number): an explicit one makes torch import sympy (seconds)
        _, (grad,) = student.with_grad((logits, labels), None, grad_inputs=(0,))
    except StudentError as error:
        if "grad" not in str(error):
            raise
        raise CheckFailed(
            "no gradient flows back to the logits: the loss is cut off from the graph "
            "(.item(), .detach(), float(...) or torch.tensor(...) on a result)"
        ) from None
    expect_close(grad, expected_logits.grad, "the gradient of the loss with respect to the logits", atol=1e-6)


# ---------------------------------------------------------------------------------------
# mask_tokens


def _corpus(gen, shape, vocab, specials, special_fraction=0.0):
    """Tokens drawn uniformly from the non-special ids, with a fraction of special tokens."""
    ordinary = torch.tensor([i for i in range(vocab) if i not in specials])
    tokens = ordinary[torch.randint(len(ordinary), shape, generator=gen)]
    special = torch.tensor(sorted(specials))[torch.randint(len(specials), shape, generator=gen)]
    return torch.where(torch.rand(shape, generator=gen) < special_fraction, special, tokens)


def _mask(student, tokens, mask_id, vocab, **kwargs):
    """The learner's (inputs, labels), checked for shape and dtype (a call that changes ``tokens`` in place
    fails in the call itself: the grader passes a private copy and compares it afterwards)."""
    result = _pair(student(tokens, mask_id, vocab, **kwargs), "mask_tokens")
    for value, what in zip(result, ("inputs", "labels")):
        expect_shape(value, tokens.shape, f"{what} of mask_tokens")
        if value.dtype not in (torch.int64, tokens.dtype):
            allowed = "int64" if tokens.dtype == torch.int64 else f"{tokens.dtype} (the tokens' dtype) or int64"
            raise CheckFailed(
                f"{what} should be {allowed} token ids (cross-entropy and embeddings need integer ids), "
                f"got {value.dtype}"
            )
    return result


def _check_structure(tokens, inputs, labels, mask_id, vocab, specials, mask_prob):
    """The exact rules; raises with the broken one."""
    selected = labels != IGNORE
    special_ids = torch.tensor(sorted(specials), dtype=torch.int64)
    special = torch.isin(tokens, special_ids)
    if ((inputs < 0) | (inputs >= vocab)).any():
        raise CheckFailed(f"inputs contain ids outside [0, vocab_size={vocab})")
    if selected.all() and torch.equal(labels, tokens):
        raise CheckFailed(
            "labels equal the tokens everywhere; they must be -100 at positions that were not "
            "selected (nothing to predict there)"
        )
    if mask_prob < 0.3 and selected.float().mean() > 0.5:
        raise CheckFailed(
            f"{selected.float().mean():.0%} of the positions carry a label with mask_prob={mask_prob}: "
            "the labels look inverted (-100 belongs where a position was NOT selected)"
        )
    if (selected & special).any() or (inputs != tokens)[special].any():
        raise CheckFailed(
            "a special token (e.g. [PAD] or [BOS]) was selected or changed: positions holding a "
            "special token are never selected, their label stays -100 and their input unchanged"
        )
    if not torch.equal(labels[selected], tokens[selected]):
        if torch.equal(labels[selected], inputs[selected]):
            raise CheckFailed(
                "labels hold the corrupted inputs ([MASK] or the random token); they must hold the "
                "ORIGINAL token, the one the model has to recover"
            )
        raise CheckFailed("labels must hold the original token at selected positions and -100 everywhere else")
    changed_without_label = (inputs != tokens) & ~selected
    if changed_without_label.any():
        raise CheckFailed(
            f"{int(changed_without_label.sum())} positions were changed in the inputs but their label "
            "is -100: every corrupted position must be selected and carry its original token as label"
        )
    random_tokens = inputs[selected & (inputs != mask_id) & (inputs != tokens)]
    bad = sorted(set(random_tokens[torch.isin(random_tokens, special_ids)].tolist()))
    if bad:
        raise CheckFailed(
            f"a selected position was replaced by special token id(s) {bad} other than [MASK]: "
            "random replacements must be drawn from the non-special ids only"
        )


def _expect_proportion(count, total, expected_low, expected_high, what, diagnoses=()):
    """count/total must lie within Z standard errors of [expected_low, expected_high]."""
    observed = count / total
    spread = Z * math.sqrt(max(expected_low * (1 - expected_low), expected_high * (1 - expected_high)) / total)
    if expected_low - spread <= observed <= expected_high + spread:
        return
    for wrong, explanation in diagnoses:
        if abs(observed - wrong) <= spread:
            raise CheckFailed(f"{what} is {observed:.1%}: {explanation}")
    expected = f"{expected_low:.1%}" if expected_high == expected_low else f"{expected_low:.1%}-{expected_high:.1%}"
    raise CheckFailed(f"{what} is {observed:.1%}, expected {expected} (tolerance {spread:.2%} on {total} samples)")


SPECIALS = (0, 2, 3)  # [PAD], [BOS], [MASK]: not all at the start of the vocabulary
MASK_ID = 3


@masking.check(points=1)
def returns_inputs_and_labels(student, gen):
    """Also one sequence with the defaults, int32 tokens, and special_token_ids as a sorted and an unsorted list."""
    vocab = randint(gen, 20, 40)
    tokens = _corpus(gen, (randint(gen, 2, 4), randint(gen, 9, 17)), vocab, SPECIALS, 0.2)
    _mask(student, tokens, MASK_ID, vocab, generator=gen, special_token_ids=list(SPECIALS))  # a sorted list
    _mask(student, tokens[0], MASK_ID, vocab)  # one sequence, defaults: global generator, no special tokens
    small = _corpus(gen, (8, 64), vocab, SPECIALS, 0.2).to(torch.int32)  # ~25 random replacements
    unsorted = [SPECIALS[-1], *SPECIALS[:-1]]  # a list not in order
    inputs, labels = _mask(student, small, MASK_ID, vocab, mask_prob=0.5, generator=gen, special_token_ids=unsorted)
    _check_structure(small.long(), inputs, labels, MASK_ID, vocab, SPECIALS, 0.5)


@masking.check(points=2)
def labels_and_inputs_follow_the_rules(student, gen):
    vocab, shape = randint(gen, 30, 60), (randint(gen, 20, 40), randint(gen, 50, 70))
    tokens = _corpus(gen, shape, vocab, SPECIALS, 0.1)
    inputs, labels = _mask(student, tokens, MASK_ID, vocab, generator=gen, special_token_ids=SPECIALS)
    _check_structure(tokens, inputs, labels, MASK_ID, vocab, SPECIALS, 0.15)
    if (labels == IGNORE).all():
        raise CheckFailed("no position was selected among thousands (all labels are -100)")


@masking.check(points=1)
def never_selects_special_tokens(student, gen):
    vocab, specials = randint(gen, 20, 30), (0, 1, 2, 3, 9)
    tokens = _corpus(gen, (32, randint(gen, 180, 220)), vocab, specials, 0.4)  # ~200 random replacements
    inputs, labels = _mask(student, tokens, MASK_ID, vocab, mask_prob=0.5, generator=gen, special_token_ids=specials)
    _check_structure(tokens, inputs, labels, MASK_ID, vocab, specials, 0.5)
    if not (labels != IGNORE).any():
        raise CheckFailed("no position was selected with mask_prob=0.5")


@masking.check(points=2)
def selection_rate_follows_mask_prob(student, gen):
    vocab = randint(gen, 100, 200)
    tokens = _corpus(gen, (64, 1024), vocab, SPECIALS, 0.1)
    ordinary = ~torch.isin(tokens, torch.tensor(SPECIALS))
    for mask_prob in (0.15, 0.35):
        inputs, labels = _mask(
            student, tokens, MASK_ID, vocab, mask_prob=mask_prob, generator=gen, special_token_ids=SPECIALS
        )
        _check_structure(tokens, inputs, labels, MASK_ID, vocab, SPECIALS, mask_prob)
        _expect_proportion(
            int((labels != IGNORE).sum()),
            int(ordinary.sum()),
            mask_prob,
            mask_prob,
            f"with mask_prob={mask_prob}, the share of non-special positions selected",
            [
                (0.15, "mask_prob is ignored (it always selects 15%)"),
                (
                    0.9 * mask_prob,
                    "the 10% of selected positions kept unchanged lost their label; they must be predicted too",
                ),
            ],
        )
    edges = ((0.0, 0, "no position"), (1.0, int(ordinary.sum()), "every non-special position"))
    for mask_prob, expected, what in edges:
        _, labels = _mask(
            student, tokens, MASK_ID, vocab, mask_prob=mask_prob, generator=gen, special_token_ids=SPECIALS
        )
        if int((labels != IGNORE).sum()) != expected:
            raise CheckFailed(
                f"mask_prob={mask_prob} must select {what}, got {int((labels != IGNORE).sum())} "
                f"of {int(ordinary.sum())}"
            )


@masking.check(points=2)
def replaces_80_10_10(student, gen):
    vocab = 1000
    tokens = _corpus(gen, (64, 2048), vocab, SPECIALS, 0.0)
    inputs, labels = _mask(student, tokens, MASK_ID, vocab, mask_prob=0.5, generator=gen, special_token_ids=SPECIALS)
    _check_structure(tokens, inputs, labels, MASK_ID, vocab, SPECIALS, 0.5)
    selected = labels != IGNORE
    total = int(selected.sum())
    if total == 0:
        raise CheckFailed("no position was selected with mask_prob=0.5")
    became_mask = int((inputs[selected] == MASK_ID).sum())
    unchanged = int((inputs[selected] == tokens[selected]).sum())
    # A random draw may hit the original token (odds 1 / #ordinary ids) or may exclude it: both are fine.
    hit = 0.1 / (vocab - len(SPECIALS))
    _expect_proportion(
        became_mask,
        total,
        0.8,
        0.8,
        "the share of selected positions that became [MASK]",
        [
            (
                1.0,
                "every selected position became [MASK]; BERT keeps 10% unchanged and replaces 10% by a random token, "
                "so the model cannot rely on [MASK] marking the positions it is asked about",
            ),
            (0.9, "90% of selected positions became [MASK]; the split is 80% [MASK], 10% random, 10% unchanged"),
            (
                0.8 * 0.9,
                "the random replacement overwrote some [MASK]s: draw ONE number per position to choose "
                "between [MASK] (80%), random (10%) and unchanged (10%)",
            ),
        ],
    )
    _expect_proportion(
        unchanged,
        total,
        0.1,
        0.1 + hit,
        "the share of selected positions left unchanged",
        [
            (0.2, "no selected position got a random token (80/20 instead of 80/10/10)"),
            (0.0, "no selected position kept its token; 10% must stay unchanged (and still be predicted)"),
        ],
    )
    _expect_proportion(
        total - became_mask - unchanged,
        total,
        0.1 - hit,
        0.1,
        "the share of selected positions replaced by a random token",
        [(0.0, "no selected position got a random token; 10% must")],
    )


@masking.check(points=1)
def random_tokens_come_from_every_ordinary_id(student, gen):
    vocab, specials, mask_id = 12, (0, 5, 7, 9), 7  # the last id, 11, is an ordinary one
    tokens = _corpus(gen, (40, 500), vocab, specials, 0.0)
    inputs, labels = _mask(student, tokens, mask_id, vocab, mask_prob=0.6, generator=gen, special_token_ids=specials)
    _check_structure(tokens, inputs, labels, mask_id, vocab, specials, 0.6)
    random_tokens = inputs[(labels != IGNORE) & (inputs != mask_id) & (inputs != tokens)]
    missing = sorted(set(range(vocab)) - set(specials) - set(random_tokens.tolist()))
    if missing:
        raise CheckFailed(
            f"among {len(random_tokens)} random replacements, ids {missing} never appear: draw random "
            f"tokens uniformly from every non-special id of [0, vocab_size={vocab})"
        )
    # Two ordinary ids: a uniform draw keeps the original token half the time (10% + 5% of the selected
    # positions unchanged); a draw that excludes the original changes every one (10% unchanged).
    vocab, specials, mask_id = 5, (0, 2, 4), 4
    tokens = _corpus(gen, (40, 600), vocab, specials, 0.0)
    inputs, labels = _mask(student, tokens, mask_id, vocab, mask_prob=0.6, generator=gen, special_token_ids=specials)
    _check_structure(tokens, inputs, labels, mask_id, vocab, specials, 0.6)
    selected = labels != IGNORE
    _expect_proportion(
        int((inputs[selected] == tokens[selected]).sum()),
        int(selected.sum()),
        0.15,
        0.15,
        f"with vocab_size={vocab} and only two non-special ids, the share of selected positions left unchanged",
        [
            (
                0.1,
                "the random token never equals the original one; it is drawn uniformly from every non-special "
                "id, the original included (with two ids, half the random draws keep the token)",
            )
        ],
    )


@masking.check(points=1)
def uses_the_generator(student, gen):
    vocab = randint(gen, 30, 60)
    tokens = _corpus(gen, (8, 300), vocab, SPECIALS, 0.1)
    seed = int(torch.randint(0, 2**31, (1,), generator=gen))
    first, second, other = (
        _mask(student, tokens, MASK_ID, vocab, generator=torch.Generator().manual_seed(s), special_token_ids=SPECIALS)
        for s in (seed, seed, seed + 1)
    )
    if not (torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])):
        raise CheckFailed(
            "two calls with generators in the same state gave different results: draw every random "
            "number from the generator argument (e.g. torch.rand(..., generator=generator))"
        )
    if torch.equal(first[1], other[1]) and torch.equal(first[0], other[0]):
        raise CheckFailed(
            "generators with different seeds gave the same result: the generator argument is not "
            "used (is a seed fixed inside the function?)"
        )
    # generator=None: torch's global generator, which every draw moves on, so two calls differ (a fresh
    # torch.Generator() or a fixed seed repeats itself). The odds that two correct calls agree on these
    # 2,400 positions are below 1e-100.
    first, second = (_mask(student, tokens, MASK_ID, vocab, special_token_ids=SPECIALS) for _ in range(2))
    if torch.equal(first[0], second[0]) and torch.equal(first[1], second[1]):
        raise CheckFailed(
            "two calls with generator=None gave the same result: generator=None means torch's global generator "
            "(pass generator=None on to torch.rand and torch.randint, which then use it), not a new "
            "torch.Generator() or a fixed seed"
        )


# ---------------------------------------------------------------------------------------
# CausalLM and MaskedLM


def _model(student, gen, **overrides):
    """A small model built through the handle, with perturbed parameters, in eval mode."""
    config = _config(gen)
    config.update(overrides)
    model = student(**config)
    model.eval()
    state = model.state_dict()
    if not isinstance(state, dict) or not state:
        raise CheckFailed(
            "the model has no parameters: it should be an nn.Module built from "
            "embeddings, transformer blocks and a linear head"
        )
    perturbed = {}
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not _is_buffer(model, name):
            value = value + randn(gen, *value.shape, scale=0.1, dtype=value.dtype)
        perturbed[name] = value
    model.load_state_dict(perturbed)
    return model, config


def _config(gen):
    """Small sizes, pairwise distinct where a message could name one: num_layers 2 < batch 3 < num_heads 4 <
    max_len (9-13) < d_model 16 < vocab_size (19-29) < d_ff 32."""
    return dict(
        vocab_size=randint(gen, 19, 29), d_model=16, num_heads=4, d_ff=32, num_layers=2, max_len=randint(gen, 9, 13)
    )


def _is_buffer(model, name):
    try:
        model.get_buffer(name)
        return True
    except StudentError:
        return False


def _run(model, tokens, config, what):
    logits = expect_shape(
        model(tokens),
        (*tokens.shape, config["vocab_size"]),
        f"logits for tokens of shape {tuple(tokens.shape)}, i.e. (B, T, vocab_size)",
    )
    if not logits.is_floating_point():
        raise CheckFailed(f"logits should be floating point, got {logits.dtype}")
    if not torch.isfinite(logits).all():
        raise CheckFailed(
            f"the logits for {what} contain NaN or inf: a row of the attention mask allows no key at "
            "all (is the mask inverted, or is the diagonal excluded?)"
        )
    return logits


def _tokens(gen, config, batch=3, length=None):
    """(batch, length) ids drawn from gen, among them the first and the last id of the vocabulary
    (an answer that treats id 0 as padding, or drops the last row of the embedding, shows it)."""
    tokens = torch.randint(0, config["vocab_size"], (batch, length or config["max_len"]), generator=gen)
    tokens[0, 0], tokens[-1, -1] = 0, config["vocab_size"] - 1
    return tokens


def _changed(before, after):
    """(B, T) bool: which positions' logits changed (beyond float noise)."""
    return (after - before).abs().amax(-1) > 1e-4


def _with_changes(gen, tokens, config, positions):
    """A copy of tokens where every position in ``positions`` holds another token."""
    changed = tokens.clone()
    shift = torch.randint(1, config["vocab_size"], (tokens.shape[0], len(positions)), generator=gen)
    changed[:, positions] = (tokens[:, positions] + shift) % config["vocab_size"]
    return changed


@causal.check(points=1)
@masked.check(points=1)
def logits_shape(student, gen):
    """Also a batch of one, a sequence of one, and a max_len beyond any fixed table of 64 positions; calls
    at other sizes leave the logits of a repeated call and the parameters and buffers unchanged."""
    model, config = _model(student, gen)
    state, first = _state(model), _tokens(gen, config, 5)
    logits = _run(model, first, config, f"{config['max_len']} tokens")
    for batch, length in ((5, randint(gen, 2, config["max_len"] - 1)), (1, config["max_len"]), (1, 1)):
        _run(model, _tokens(gen, config, batch, length), config, f"{length} token(s), batch of {batch}")
    _expect_state_unchanged(model, state, "four calls of forward")
    if (_run(model, first, config, "the first tokens again") - logits).abs().max() > 1e-4:
        raise CheckFailed(
            "the same tokens, after calls at other sizes, give other logits: something is kept from an earlier "
            "call (a mask or a slice of the position table sized for the first call?)"
        )
    long, long_config = _model(student, gen, max_len=randint(gen, 65, 100))
    _run(long, _tokens(gen, long_config, 1), long_config, f"max_len = {long_config['max_len']} tokens")
    other, other_config = _model(student, gen, vocab_size=config["vocab_size"] + 7)
    _run(other, _tokens(gen, other_config, 2), other_config, "another vocabulary size")
    shallow, deep = (_model(student, gen, **{**config, "num_layers": n})[0] for n in (1, 3))
    if _size(deep) <= _size(shallow):
        if deep.has("blocks") and isinstance(deep.blocks.value(), list):
            raise CheckFailed(
                "a model with num_layers=3 has no more parameters than one with num_layers=1: its blocks are in "
                "a plain Python list, which nn.Module does not register (their parameters are not in "
                "parameters() or state_dict(), so they are neither trained nor saved): use nn.ModuleList"
            )
        raise CheckFailed(
            "a model with num_layers=3 has no more parameters than one with num_layers=1: "
            "stack num_layers transformer blocks"
        )


def _state(model) -> dict:
    """The model's parameters and buffers: its state_dict and the contract's position table ``positions``, a
    buffer with persistent=False that the state_dict leaves out (other buffers of its own, such as a cached
    mask, are the learner's to keep as they like)."""
    state = dict(model.state_dict())
    own = model._buffers.value() if model.has("_buffers") else {}
    if isinstance(own, dict) and isinstance(own.get("positions"), torch.Tensor) and "positions" not in state:
        state["positions"] = own["positions"]
    return state


def _expect_state_unchanged(model, before, what):
    """Fail when the model's parameters or buffers (:func:`_state`) differ from ``before``: forward only reads them."""
    after = _state(model)
    changed = sorted(set(before) ^ set(after)) + [
        key
        for key, value in before.items()
        if key in after and not (after[key].shape == value.shape and torch.equal(after[key], value))
    ]
    if changed:
        raise CheckFailed(
            f"{what} changed the model's parameters or buffers ({', '.join(changed[:4])}): forward only reads "
            "them, and registers nothing new"
        )


def _parameter_grads(model, tokens, grad_output, names, what) -> dict:
    """``{name: gradient}`` of the model's parameters when its logits for ``tokens`` are back-propagated with
    ``grad_output``; each of ``names`` (the contract's parameters, all used by forward) must get a finite one.
    A backward that PyTorch refuses because forward changed a saved tensor in place fails with that cause."""
    try:
        _, (grads,) = model.with_grad((tokens,), grad_output, grad_inputs=(PARAMETERS,))
    except StudentError as error:
        text = str(error)
        if "modified by an inplace operation" in text:
            raise CheckFailed(
                f"{what}: backward fails because forward changed, in place, a tensor that autograd saved to "
                "compute the gradient (PyTorch: 'modified by an inplace operation'). Look for in-place operations "
                "in forward: x += ..., x[:] = ..., x.copy_(...), add_, masked_fill_; write x = x + ... instead"
            ) from None
        if "does not require grad" in text:
            raise CheckFailed(
                f"{what}: no gradient flows back, the logits are cut off from the graph "
                "(.detach(), torch.no_grad() or .data in forward)"
            ) from None
        raise
    for name in names:
        grad = grads.get(name)
        if grad is None:
            raise CheckFailed(
                f"{what}: no gradient reaches {name}, so training would never update it: the path from it to the "
                "logits is cut (computed under torch.no_grad(), .detach()ed, read through .data, or "
                "requires_grad=False)"
            )
        if not torch.isfinite(grad).all():
            raise CheckFailed(f"the gradient of {what}'s logits with respect to {name} contains NaN or inf")
    return grads


def _size(model):
    return sum(v.numel() for v in model.state_dict().values() if isinstance(v, torch.Tensor))


@causal.check(points=2)
def future_tokens_never_change_earlier_logits(student, gen):
    model, config = _model(student, gen)
    tokens, length = _tokens(gen, config), config["max_len"]
    before = _run(model, tokens, config, "random tokens")
    for start in (randint(gen, 3, length // 2), randint(gen, length // 2 + 1, length - 1)):
        after = _run(model, _with_changes(gen, tokens, config, list(range(start, length))), config, "random tokens")
        leaked = _changed(before, after)[:, :start].any(0).nonzero().flatten().tolist()
        if leaked and min(leaked) >= start - config["num_layers"]:  # one step ahead per layer
            raise CheckFailed(
                f"changing the tokens from position {start} on changed the logits just before it, at "
                f"position(s) {leaked}: each position sees the NEXT token (the mask is off by one), "
                "so it can read the answer it is trained to predict"
            )
        if leaked:
            raise CheckFailed(
                f"changing the tokens from position {start} on changed the logits at earlier "
                f"position(s) {leaked}: the model sees the future (causal mask missing or wrong), so "
                "in training it would copy the next token instead of predicting it"
            )


@causal.check(points=1)
def each_position_reads_itself_and_the_past(student, gen):
    model, config = _model(student, gen)
    tokens, length = _tokens(gen, config), config["max_len"]
    before = _run(model, tokens, config, "random tokens")
    after = _run(model, _with_changes(gen, tokens, config, [0]), config, "random tokens")
    if not _changed(before, after)[:, -1].all():
        raise CheckFailed(
            "the logits at the last position do not depend on the first token: each position must "
            "attend to every earlier position"
        )
    middle = randint(gen, 1, length - 2)
    after = _run(model, _with_changes(gen, tokens, config, [middle]), config, "random tokens")
    if not _changed(before, after)[:, middle].all():
        raise CheckFailed(
            f"the logits at position {middle} do not depend on the token AT position {middle}: a "
            "position must read its own token (True on the diagonal of the mask)"
        )


@masked.check(points=2)
def every_position_reads_both_sides(student, gen):
    model, config = _model(student, gen)
    tokens, length = _tokens(gen, config), config["max_len"]
    before = _run(model, tokens, config, "random tokens")
    for position, side in ((length - 1, "last"), (0, "first")):
        after = _run(model, _with_changes(gen, tokens, config, [position]), config, "random tokens")
        blind = (~_changed(before, after)).any(0).nonzero().flatten().tolist()
        if blind and side == "last":
            raise CheckFailed(
                f"the logits at position(s) {blind} do not depend on the last token: a masked LM reads "
                "BOTH sides of a [MASK], so it must not use a causal mask"
            )
        if blind:
            raise CheckFailed(
                f"the logits at position(s) {blind} do not depend on the first token: every position "
                "must attend to the whole sequence"
            )


@causal.check(points=1)
@masked.check(points=1)
def uses_positions(student, gen):
    model, config = _model(student, gen)
    token = int(torch.randint(0, config["vocab_size"], (1,), generator=gen))
    logits = _run(model, torch.full((2, config["max_len"]), token), config, "a repeated token")
    if (logits - logits[:, :1]).abs().max() < 1e-5:
        raise CheckFailed(
            "a sequence of one repeated token gives the same logits at every position: the model "
            "has no idea of positions (add position embeddings to the token embeddings)"
        )


@causal.check(points=1)
@masked.check(points=1)
def batch_rows_are_independent(student, gen):
    model, config = _model(student, gen)
    tokens = _tokens(gen, config)
    together = _run(model, tokens, config, "a batch")
    for row in range(tokens.shape[0]):
        alone = _run(model, tokens[row : row + 1], config, "one sequence")
        if (together[row : row + 1] - alone).abs().max() > 1e-4:
            raise CheckFailed(
                "the logits of a sequence change when other sequences share its batch: the rows of a "
                "batch must not attend to each other (do your blocks get (B, T, D), batch first?)"
            )


# The stack itself, against the reference with the same weights. The contract names the submodules
# (those of solutions.pretraining): token_embedding, blocks (chapter 5's blocks, so blocks.<i>.attn.w_q ...),
# norm (the final LayerNorm) and head; the position table is a buffer, not a parameter.

STACK_HINT = (
    "the contract names the submodules token_embedding (nn.Embedding), blocks (an nn.ModuleList of "
    "TransformerBlock), norm (the final nn.LayerNorm) and head (nn.Linear(d_model, vocab_size))"
)


def _weights(gen, config):
    """Random weights for the reference's state dict (its names and shapes), drawn from ``gen``."""
    weights = {}
    for key, shape in ref.parameter_shapes(**config).items():
        if key == "token_embedding.weight":
            weights[key] = randn(gen, *shape)
        elif key.endswith("weight") and len(shape) == 2:
            weights[key] = randn(gen, *shape, scale=1 / math.sqrt(shape[1]))
        elif "norm" in key and key.endswith("weight"):
            weights[key] = 1.0 + randn(gen, *shape, scale=0.3)
        else:
            weights[key] = randn(gen, *shape, scale=0.3)
    return weights


def _loaded(student, gen, dropout=None):
    """(model, weights, config): the learner's model holding random weights, loaded through its own
    load_state_dict by the contract's names."""
    config = _config(gen)
    weights = _weights(gen, config)
    model = student(**config) if dropout is None else student(**config, dropout=dropout)
    state = model.state_dict()
    if not isinstance(state, dict):
        raise CheckFailed(f"state_dict() should return a dict, got {type(state).__name__}")
    missing = [key for key in weights if key not in state]
    if missing:
        found = ", ".join(sorted(state)[:6]) or "none"
        raise CheckFailed(f"the model has no parameter {missing[0]}: {STACK_HINT} (its parameters include: {found})")
    for key, value in weights.items():
        expect_shape(state[key], value.shape, f"the model's {key}")
    extra = [key for key in state if key not in weights and not _is_buffer(model, key)]
    if extra:
        hint = (
            "the position table is fixed, not trained: store it with register_buffer(..., persistent=False)"
            if any("position" in key for key in extra)
            else STACK_HINT
        )
        raise CheckFailed(f"the model has parameter(s) {extra} that the contract does not have: {hint}")
    model.load_state_dict({**state, **weights})
    return model, weights, config


def _stack_bugs(weights, config, tokens, causal):
    """(the reference stack's logits with one mistake, what the mistake is), for the mistakes a learner makes."""

    def stack(**change):
        return ref.stack_logits(weights, tokens, config, causal, **change)

    length, max_len = tokens.shape[-1], config["max_len"]
    bugs = [
        (
            stack(norm_first=False),
            "the blocks are Post-LN (norm_first=False); the model's blocks are Pre-LN (norm_first=True)",
        ),
        (
            stack(final_norm=False),
            "the final LayerNorm (norm) is not applied: the head reads norm(x), the output of the last block "
            "normalized",
        ),
        (stack(rows="none"), "no position encoding is added to the token embeddings"),
        (
            stack(embedding_scale=math.sqrt(config["d_model"])),
            "the token embeddings are multiplied by sqrt(d_model); here they are added to the positions as they are",
        ),
        (
            ref.stack_logits(weights, tokens, config, not causal),
            "a causal mask is used; the masked LM reads both sides"
            if not causal
            else "no causal mask is used; position t must read tokens 0..t only",
        ),
    ]
    if length < max_len:
        bugs.append(
            (
                stack(rows="last"),
                f"a sequence of {length} < max_len tokens gets the LAST {length} rows of the position table; "
                f"it gets the first ones, rows 0..{length - 1}",
            )
        )
    return bugs


def _expect_stack(model, weights, config, tokens, causal, what, given=None):
    """The model's logits for ``tokens`` (or for ``given``, the same ids in another dtype or layout)
    against the reference stack's."""
    expected = ref.stack_logits(weights, tokens, config, causal)
    actual = model(tokens if given is None else given)
    expect_close(actual, expected, what, diagnoses=_stack_bugs(weights, config, tokens, causal))


def _reference_checks(suite, causal):
    kind = "CausalLM" if causal else "MaskedLM"

    @suite.check(points=1)
    def matches_the_reference_stack(student, gen):
        """Same weights, same logits: embeddings plus sinusoidal positions, Pre-LN blocks, final LayerNorm, head;
        also for the tokens as a non-contiguous view (the layout of tokens[:, :-1]) and as int32 ids."""
        model, weights, config = _loaded(student, gen)
        buffers = [key for key in model.state_dict() if key not in weights]
        if buffers:
            raise CheckFailed(
                f"the model's state_dict() holds {buffers}, which are not parameters: a table computed from the "
                "sizes (the positions, a mask) is not saved with the weights; register it with "
                "register_buffer(..., persistent=False)"
            )
        model.eval()
        tokens = _tokens(gen, config)
        _expect_stack(
            model,
            weights,
            config,
            tokens,
            causal,
            f"{kind}'s logits for {config['max_len']} = max_len tokens, with the weights of the reference",
        )
        for given, how in (
            (noncontiguous(tokens), "given as a non-contiguous view (the layout of tokens[:, :-1])"),
            (tokens.to(torch.int32), "given as int32 ids"),
        ):
            _expect_stack(model, weights, config, tokens, causal, f"{kind}'s logits for tokens {how}", given)

    @suite.check(points=1)
    def shorter_sequences_use_the_first_position_rows(student, gen):
        model, weights, config = _loaded(student, gen)
        model.eval()
        tokens, length = _tokens(gen, config), randint(gen, 3, config["max_len"] - 2)
        if causal:
            whole = _run(model, tokens, config, "max_len tokens")
            part = _run(model, tokens[:, :length], config, f"the first {length} tokens")
            if (part - whole[:, :length]).abs().max() > 1e-4:
                raise CheckFailed(
                    f"the logits of the first {length} tokens alone differ from the first {length} "
                    f"positions of the logits of all {config['max_len']} tokens; a causal model's "
                    f"positions 0..{length - 1} never see the later tokens, so the two must agree: "
                    f"check which rows of the position table a sequence of {length} tokens gets "
                    f"(rows 0..{length - 1})"
                )
        _expect_stack(
            model,
            weights,
            config,
            tokens[:, :length],
            causal,
            f"{kind}'s logits for {length} < max_len = {config['max_len']} tokens, with the weights of the reference",
        )

    @suite.check(points=1)
    def dropout_acts_inside_the_blocks(student, gen):
        """dropout=1.0 in train() mode drops every sublayer's output in every block (and nothing else):
        every block returns its input, so the logits are head(norm(token_embedding + positions));
        dropout=0.0 in train() mode drops nothing; with dropout=0.3 in train() mode, two calls leave the
        parameters and buffers unchanged."""
        model, weights, config = _loaded(student, gen, dropout=1.0)
        tokens = _tokens(gen, config, length=randint(gen, 3, config["max_len"]))
        expected = ref.stack_logits(weights, tokens, config, causal, blocks=False)
        diagnoses = [
            (
                ref.stack_logits(weights, tokens, config, causal),
                "nothing was dropped: pass dropout to every TransformerBlock(..., dropout=dropout)",
            ),
            (
                ref.stack_logits(weights, tokens, config, causal, blocks=False, rows="none", embedding_scale=0.0),
                "the embeddings are dropped; dropout acts inside the blocks only",
            ),
            (torch.zeros_like(expected), "the logits are dropped; dropout acts inside the blocks only"),
        ]
        model.train()
        expect_close(
            model(tokens),
            expected,
            f"{kind}(..., dropout=1.0) in train() mode (every block's sublayer "
            "outputs dropped: the logits are head(norm(token_embedding + positions)))",
            diagnoses=diagnoses,
        )
        model, weights, config = _loaded(student, gen, dropout=0.0)
        tokens = _tokens(gen, config)
        model.train()
        _expect_stack(
            model,
            weights,
            config,
            tokens,
            causal,
            f"{kind}(..., dropout=0.0) in train() mode, which must drop nothing,",
        )
        model, _, config = _loaded(student, gen, dropout=0.3)
        model.train()
        state = _state(model)
        for call in ("a first", "a second"):
            _run(model, _tokens(gen, config), config, f"{call} call in train() mode with dropout=0.3")
        _expect_state_unchanged(model, state, f"two calls of {kind}(..., dropout=0.3) in train() mode")

    @suite.check(points=1)
    def backward_in_train_mode(student, gen):
        """As training runs it, in train() mode: with dropout=0.0 the gradient of the logits with respect to
        every parameter equals the reference stack's (same weights); with dropout=0.3 backward runs and every
        parameter gets a finite gradient; forward and backward leave the parameters and buffers unchanged."""
        for dropout in (0.0, 0.3):
            model, weights, config = _loaded(student, gen, dropout=dropout)
            model.train()
            tokens = _tokens(gen, config)
            grad_output = randn(gen, *tokens.shape, config["vocab_size"])
            what = f"{kind}(..., dropout={dropout}) in train() mode"
            state = _state(model)
            grads = _parameter_grads(model, tokens, grad_output, weights, what)
            _expect_state_unchanged(model, state, f"{what}, forward and backward,")
            if dropout == 0.0:
                expected = ref.stack_gradients(weights, tokens, config, causal, grad_output)
                for name, value in expected.items():
                    expect_close(
                        grads[name], value, f"the gradient of {what}'s logits with respect to {name}", atol=1e-4
                    )


_reference_checks(causal, causal=True)
_reference_checks(masked, causal=False)
