"""Chapter 6: the reference agrees with PyTorch (``F.cross_entropy``) and with BERT's
proportions; the checks accept correct alternatives and reject the stub and plausible bugs
with messages that name the bug."""

import functools

import pytest
import torch
import torch.nn.functional as F
from alternatives import pretraining as alternative
from conftest import messages, not_implemented, run_suite, score
from torch import nn

from autograder.chapters import BY_TOPIC
from solutions import pretraining as ref


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The checks run tiny models: a second thread only adds synchronization, and on a busy
    machine its spin-waiting made this file several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


NAMES = ["shift_for_next_token", "language_model_loss", "mask_tokens", "CausalLM", "MaskedLM"]
POINTS = dict(BY_TOPIC["pretraining"].graded)


# --- the reference against PyTorch and BERT ----------------------------------------------------


@pytest.mark.parametrize("shape", [(7, 11), (2, 5, 11), (3, 2, 4, 11)])
def test_loss_matches_cross_entropy(shape):
    logits = torch.randn(shape) * 3
    labels = torch.randint(0, shape[-1], shape[:-1])
    labels[..., 0] = -100
    expected = F.cross_entropy(logits.reshape(-1, shape[-1]), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(ref.language_model_loss(logits, labels), expected)
    labels[labels == -100] = 0
    torch.testing.assert_close(
        ref.language_model_loss(logits, labels, ignore_index=0),
        F.cross_entropy(logits.reshape(-1, shape[-1]), labels.reshape(-1), ignore_index=0),
    )


def test_loss_gradient_matches_cross_entropy():
    logits = torch.randn(4, 6, 9, requires_grad=True)
    labels = torch.randint(0, 9, (4, 6))
    labels[:, ::2] = -100
    ours = torch.autograd.grad(ref.language_model_loss(logits, labels), logits)[0]
    theirs = torch.autograd.grad(F.cross_entropy(logits.reshape(-1, 9), labels.reshape(-1)), logits)[0]
    torch.testing.assert_close(ours, theirs)


def test_shift_pairs_each_input_with_the_next_token():
    tokens = torch.arange(12).reshape(2, 6)
    inputs, targets = ref.shift_for_next_token(tokens)
    assert torch.equal(targets, inputs + 1)


def test_mask_tokens_has_bert_proportions():
    tokens = torch.randint(4, 5000, (256, 512))
    tokens[:, 0] = 2  # [BOS], special
    inputs, labels = ref.mask_tokens(
        tokens, 3, 5000, generator=torch.Generator().manual_seed(0), special_token_ids=(0, 1, 2, 3)
    )
    selected = labels != -100
    assert not selected[:, 0].any() and torch.equal(labels[selected], tokens[selected])
    assert abs(selected[:, 1:].float().mean().item() - 0.15) < 0.003
    masked = (inputs[selected] == 3).float().mean().item()
    kept = (inputs[selected] == tokens[selected]).float().mean().item()
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01
    assert (inputs[selected & (inputs != 3)] >= 4).all()


def test_models_differ_only_in_what_they_see():
    torch.manual_seed(0)
    causal, masked = ref.CausalLM(13, 16, 4, 32, 1, 10), ref.MaskedLM(13, 16, 4, 32, 1, 10)
    masked.load_state_dict(causal.state_dict())  # same parameter names: one architecture, two masks
    tokens = torch.randint(0, 13, (2, 10))
    torch.testing.assert_close(causal(tokens)[:, -1], masked(tokens)[:, -1])  # the last position sees everything
    assert not torch.allclose(causal(tokens)[:, 0], masked(tokens)[:, 0])


# --- reference, stub and alternative ----------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_reference_and_alternative_get_full_marks(name, seed):
    for answer in (getattr(ref, name), getattr(alternative, name)):
        results = run_suite("pretraining", name, answer, seed)
        assert all(r.passed for r in results), messages(results)
        assert score(results) == POINTS[name]


@pytest.mark.parametrize("name", NAMES)
def test_stub_fails_every_check(name, seed):
    results = run_suite("pretraining", name, not_implemented, seed)
    assert score(results) == 0
    assert all("not implemented yet" in r.message for r in results)


# --- plausible bugs: shift_for_next_token ----------------------------------------------


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (lambda t: (t[..., 1:], t[..., :-1]), "swapped"),
        (lambda t: (t, t), "nothing is shifted"),
        (lambda t: (t[:-1], t[1:]), "first dimension"),
        (lambda t: (t[..., :-2], t[..., 2:]), "has shape"),
        (lambda t: [t[..., :-1], t[..., 1:]], "should return a tuple"),
    ],
)
def test_shift_bugs_lose_points(bug, fragment, seed):
    results = run_suite("pretraining", "shift_for_next_token", bug, seed)
    assert score(results) < 3
    assert fragment in messages(results)


# --- plausible bugs: language_model_loss -------------------------------------------------


def _per_position(logits, labels, ignore_index=-100):
    flat, target = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    keep = target != ignore_index
    losses = -torch.log_softmax(flat, -1).gather(1, target.clamp_min(0)[:, None])[:, 0]
    return losses, keep


def loss_summed(logits, labels, ignore_index=-100):
    losses, keep = _per_position(logits, labels, ignore_index)
    return (losses * keep).sum()


def loss_mean_over_all_positions(logits, labels, ignore_index=-100):
    losses, keep = _per_position(logits, labels, ignore_index)
    return (losses * keep).mean()


def loss_ignores_hard_coded(logits, labels, ignore_index=-100):
    return ref.language_model_loss(logits, labels)


def loss_naive_log_of_softmax(logits, labels, ignore_index=-100):
    flat, target = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    keep = target != ignore_index
    probs = flat[keep].exp() / flat[keep].exp().sum(-1, keepdim=True)
    return -probs.gather(1, target[keep][:, None]).log().mean()


def loss_as_python_float(logits, labels, ignore_index=-100):
    return ref.language_model_loss(logits, labels, ignore_index).item()


def loss_detached(logits, labels, ignore_index=-100):
    return torch.tensor(ref.language_model_loss(logits, labels, ignore_index).item())


def loss_in_bits(logits, labels, ignore_index=-100):
    return ref.language_model_loss(logits, labels, ignore_index) / torch.log(torch.tensor(2.0))


def loss_sign_flipped(logits, labels, ignore_index=-100):
    return -ref.language_model_loss(logits, labels, ignore_index)


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (loss_summed, "sums the losses"),
        (loss_mean_over_all_positions, "count as zero loss"),
        (loss_ignores_hard_coded, "ignore_index argument is not used"),
        (loss_naive_log_of_softmax, "underflows to log(0)"),
        (loss_as_python_float, "should be a torch.Tensor"),
        (loss_detached, "no gradient flows back"),
        (loss_in_bits, "in bits"),
        (loss_sign_flipped, "sign is flipped"),
    ],
)
def test_loss_bugs_lose_points(bug, fragment, seed):
    results = run_suite("pretraining", "language_model_loss", bug, seed)
    assert score(results) < 7
    assert fragment in messages(results)


# --- other correct masking schemes ----------------------------------------------------------


def mask_exact_count_and_fresh_random_tokens(
    tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=(), fresh=True
):
    """Selects exactly round(mask_prob * n) ordinary positions, splits them 80/10/10 exactly (correct
    too), and draws random tokens that always differ from the original (``fresh``: a bug, the contract
    draws uniformly from every non-special id, the original included)."""
    flat = tokens.flatten()
    ordinary = (~torch.isin(flat, torch.tensor(list(special_token_ids), dtype=flat.dtype))).nonzero().flatten()
    chosen = ordinary[torch.randperm(len(ordinary), generator=generator)[: round(mask_prob * len(ordinary))]]
    n_mask, n_random = round(0.8 * len(chosen)), round(0.1 * len(chosen))
    inputs, labels = flat.clone(), torch.full_like(flat, -100)
    labels[chosen] = flat[chosen]
    inputs[chosen[:n_mask]] = mask_token_id
    ids = torch.tensor([i for i in range(vocab_size) if i not in special_token_ids])
    for position in chosen[n_mask : n_mask + n_random].tolist():
        others = ids[ids != flat[position]] if fresh else ids
        inputs[position] = others[torch.randint(len(others), (1,), generator=generator)]
    return inputs.view(tokens.shape), labels.view(tokens.shape)


def test_exact_counts_get_full_marks(seed):
    answer = functools.partial(mask_exact_count_and_fresh_random_tokens, fresh=False)
    results = run_suite("pretraining", "mask_tokens", answer, seed)
    assert all(r.passed for r in results), messages(results)


def test_random_tokens_that_always_differ_lose_a_point(seed):
    results = {
        r.check: r for r in run_suite("pretraining", "mask_tokens", mask_exact_count_and_fresh_random_tokens, seed)
    }
    assert [name for name, r in results.items() if not r.passed] == ["random_tokens_come_from_every_ordinary_id"]
    assert (
        "the random token never equals the original one" in results["random_tokens_come_from_every_ordinary_id"].message
    )


# --- plausible bugs: mask_tokens ----------------------------------------------------------


def _masker(
    choose="80/10/10",
    random_from="ordinary",
    skip_specials=True,
    labels="original",
    use_generator=True,
    fixed_prob=None,
    in_place=False,
    label_dtype=torch.int64,
):
    """A mask_tokens with one thing wrong (each keyword names a way to get it wrong)."""

    def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
        gen = generator if use_generator else None
        if use_generator == "fixed":
            gen = torch.Generator().manual_seed(0)
        prob = mask_prob if fixed_prob is None else fixed_prob
        special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
        selected = torch.rand(tokens.shape, generator=gen) < prob
        if skip_specials:
            selected &= ~special
        action = torch.rand(tokens.shape, generator=gen)
        to_mask = (
            selected
            & {"80/10/10": action < 0.8, "all": action < 2, "80/20": action < 0.8, "independent": action < 0.8}[choose]
        )
        to_random = (
            selected
            & {
                "80/10/10": (action >= 0.8) & (action < 0.9),
                "all": action > 2,
                "80/20": action > 2,
                "independent": torch.rand(tokens.shape, generator=gen) < 0.1,
            }[choose]
        )
        if random_from == "ordinary":
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_token_ids])
            random_tokens = ordinary[torch.randint(len(ordinary), tokens.shape, generator=gen)]
        elif random_from == "vocabulary":
            random_tokens = torch.randint(0, vocab_size, tokens.shape, generator=gen)
        else:  # assumes the special tokens are the first ids
            random_tokens = torch.randint(len(special_token_ids), vocab_size, tokens.shape, generator=gen)
        inputs = tokens if in_place else tokens.clone()
        inputs[to_mask] = mask_token_id
        inputs[to_random] = random_tokens[to_random]
        targets = {
            "original": torch.where(selected, tokens, -100),
            "everywhere": tokens.clone(),
            "inverted": torch.where(selected, -100, tokens),
            "corrupted": torch.where(selected, inputs, -100),
            "changed only": torch.where(to_mask | to_random, tokens, -100),
        }[labels]
        if in_place:
            targets = torch.where(selected, inputs, -100)
        return inputs, targets.to(label_dtype)

    return mask_tokens


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (_masker(choose="all"), "every selected position became [MASK]"),
        (_masker(choose="80/20"), "80/20 instead of 80/10/10"),
        (_masker(choose="independent"), "overwrote some [MASK]s"),
        (_masker(random_from="vocabulary"), "non-special ids only"),
        (_masker(random_from="after the first ids"), "non-special ids only"),
        (_masker(skip_specials=False), "special token (e.g. [PAD] or [BOS]) was selected"),
        (_masker(labels="everywhere"), "labels equal the tokens everywhere"),
        (_masker(labels="inverted"), "labels look inverted"),
        (_masker(labels="corrupted"), "labels hold the corrupted inputs"),
        (_masker(labels="changed only"), "kept unchanged lost their label"),
        (_masker(fixed_prob=0.15), "mask_prob is ignored"),
        (_masker(use_generator=False), "generators in the same state gave different results"),
        (_masker(use_generator="fixed"), "different seeds gave the same result"),
        (_masker(in_place=True), "changed its argument 1 in place"),
        (_masker(label_dtype=torch.float32), "should be int64"),
    ],
)
def test_mask_tokens_bugs_lose_points(bug, fragment, seed):
    results = run_suite("pretraining", "mask_tokens", bug, seed)
    assert score(results) < 10
    assert fragment in messages(results)


# --- plausible bugs: the models -----------------------------------------------------------


def _model_with(mask="causal", positions=True, batch_first=True, head=True, fixed_layers=None):
    """A language model like the reference with one thing wrong."""
    masks = {
        "causal": lambda n: torch.ones(n, n, dtype=torch.bool).tril(),
        "next token too": lambda n: torch.ones(n, n, dtype=torch.bool).tril(1),
        "inverted": lambda n: torch.ones(n, n, dtype=torch.bool).triu(1),
        "itself only": lambda n: torch.eye(n, dtype=torch.bool),
        None: lambda n: None,
    }

    class Model(nn.Module):
        def __init__(self, vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout=0.0):
            super().__init__()
            self.token_embedding = nn.Embedding(vocab_size, d_model)
            self.position_embedding = nn.Embedding(max_len, d_model)
            self.blocks = nn.ModuleList(
                ref.TransformerBlock(d_model, num_heads, d_ff, norm_first=True)
                for _ in range(fixed_layers or num_layers)
            )
            self.head = nn.Linear(d_model, vocab_size)

        def forward(self, tokens):
            x = self.token_embedding(tokens)
            if positions:
                x = x + self.position_embedding(torch.arange(tokens.shape[1]))
            x = x if batch_first else x.transpose(0, 1)
            for block in self.blocks:
                x = block(x, masks[mask](x.shape[1]))
            x = x if batch_first else x.transpose(0, 1)
            return self.head(x) if head else x

    return Model


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (_model_with(mask=None), "the model sees the future"),
        (_model_with(mask="next token too"), "sees the NEXT token"),
        (_model_with(mask="inverted"), "contain NaN or inf"),
        (_model_with(mask="itself only"), "do not depend on the first token"),
        (_model_with(positions=False), "no idea of positions"),
        (_model_with(head=False), "has shape"),
        (_model_with(fixed_layers=1), "num_layers=3"),
    ],
)
def test_causal_lm_bugs_lose_points(bug, fragment, seed):
    results = run_suite("pretraining", "CausalLM", bug, seed)
    assert score(results) < 6
    assert fragment in messages(results)


@pytest.mark.parametrize(
    "bug, fragment",
    [
        (_model_with(mask="causal"), "must not use a causal mask"),
        (_model_with(mask=None, positions=False), "no idea of positions"),
        (_model_with(mask=None, batch_first=False), "rows of a batch must not attend"),
        (_model_with(mask=None, head=False), "has shape"),
    ],
)
def test_masked_lm_bugs_lose_points(bug, fragment, seed):
    results = run_suite("pretraining", "MaskedLM", bug, seed)
    assert score(results) < 5
    assert fragment in messages(results)


# --- the stack against the reference on the same weights ------------------------------------


def _stack_with(
    kind,
    norm_first=True,
    final_norm=True,
    rows="first",
    blocks_get_dropout=True,
    embedding_dropout=False,
    name_of_norm="norm",
):
    """The reference model ``kind`` with one thing changed, under the contract's names otherwise."""
    base = getattr(ref, kind)

    class Model(nn.Module):
        def __init__(self, vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout=0.0):
            super().__init__()
            self.token_embedding = nn.Embedding(vocab_size, d_model)
            self.register_buffer("positions", ref.sinusoidal_positional_encoding(max_len, d_model), persistent=False)
            self.blocks = nn.ModuleList(
                ref.TransformerBlock(
                    d_model, num_heads, d_ff, norm_first=norm_first, dropout=dropout if blocks_get_dropout else 0.0
                )
                for _ in range(num_layers)
            )
            setattr(self, name_of_norm, nn.LayerNorm(d_model))
            self.head = nn.Linear(d_model, vocab_size)
            self.drop = nn.Dropout(dropout if embedding_dropout else 0.0)

        def forward(self, tokens):
            length = tokens.shape[1]
            table = self.positions[:length] if rows == "first" else self.positions[-length:]
            x = self.drop(self.token_embedding(tokens) + table)
            mask = ref.causal_mask(length) if base is ref.CausalLM else None
            for block in self.blocks:
                x = block(x, mask)
            return self.head(getattr(self, name_of_norm)(x) if final_norm else x)

    return Model


@pytest.mark.parametrize(
    "change, check, fragment",
    [
        (dict(), None, None),
        (dict(norm_first=False), "matches_the_reference_stack", "the blocks are Post-LN"),
        (dict(final_norm=False), "matches_the_reference_stack", "the final LayerNorm (norm) is not applied"),
        (dict(name_of_norm="ln_f"), "matches_the_reference_stack", "has no parameter norm.weight"),
        (dict(rows="last"), "shorter_sequences_use_the_first_position_rows", "rows of the position table"),
        (dict(blocks_get_dropout=False), "dropout_acts_inside_the_blocks", "pass dropout to every TransformerBlock"),
        (dict(embedding_dropout=True), "dropout_acts_inside_the_blocks", "the embeddings are dropped"),
    ],
)
def test_stack_compared_with_the_reference(change, check, fragment, seed):
    """(The same sub-checks grade MaskedLM; the corpus holds MaskedLM answers with these bugs.)"""
    results = {r.check: r for r in run_suite("pretraining", "CausalLM", _stack_with("CausalLM", **change), seed)}
    if check is None:  # the contract written out again: full marks
        assert all(r.passed for r in results.values()), messages(results.values())
        return
    assert not results[check].passed and fragment in results[check].message, results[check].message
    behaviour = ("logits_shape", "uses_positions", "batch_rows_are_independent")
    assert all(results[name].passed for name in behaviour), "a stack bug must not cost the behaviour checks"


def test_masked_lm_with_last_rows_is_told_which_rows(seed):
    results = run_suite("pretraining", "MaskedLM", _stack_with("MaskedLM", rows="last"), seed)
    assert "gets the LAST" in messages(results)


# --- red team: classes of mistake the checks must catch --------------------------------------


def test_float_tokens_lose_points_with_their_dtype_named(seed):
    results = run_suite(
        "pretraining", "shift_for_next_token", lambda t: (t[..., :-1].float(), t[..., 1:].float()), seed
    )
    assert score(results) == 0 and "should keep the dtype of the tokens" in messages(results)


def loss_by_the_library(logits, labels, ignore_index=-100):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=ignore_index)


@pytest.mark.parametrize(
    "bug, fragment",
    [(loss_by_the_library, "the library loss the checks compare with")],
)
def test_the_library_loss_gets_full_marks_and_the_advice(bug, fragment, seed):
    """Which functions the loss calls is seen only inside the learner's process: advice, 0 points."""
    results = {r.check: r for r in run_suite("pretraining", "language_model_loss", bug, seed)}
    assert score(results.values()) == sum(r.max_score for r in results.values())
    advice = results["no_library_loss"]
    assert advice.advice and not advice.passed and fragment in advice.message


def test_a_trained_position_table_loses_the_stack_checks(seed):
    class TrainedTable(ref.CausalLM):
        def __init__(self, vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout=0.0):
            super().__init__(vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout)
            table = self.positions
            del self.positions
            self.positions = nn.Parameter(table)

    results = {r.check: r for r in run_suite("pretraining", "CausalLM", TrainedTable, seed)}
    assert "fixed, not trained" in results["matches_the_reference_stack"].message
    assert results["uses_positions"].passed
