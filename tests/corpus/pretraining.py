"""Chapter 6 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``).

The chapter's setup cell imports math, torch, ``nn``, and the given ``causal_mask`` (chapter 2),
``sinusoidal_positional_encoding`` (chapter 4) and ``TransformerBlock`` (chapter 5). The model
answers below start from one learner's working model (:data:`LANGUAGE_MODEL`) with one line
changed, as a learner's bug usually is."""

from corpus import advised, alternative, bug

LANGUAGE_MODEL = """
class CausalLM(nn.Module):
    def __init__(self, vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout=0.0):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_positional_encoding(max_len, d_model), persistent=False)
        self.blocks = nn.ModuleList([TransformerBlock(d_model, num_heads, d_ff, norm_first=True, dropout=dropout)
                                     for _ in range(num_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens):
        T = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positions[:T]
        mask = causal_mask(T)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))
"""


def model(name: str, *changes: tuple[str, str]) -> str:
    """The working model as class ``name`` (``MaskedLM``: no mask), with ``(old, new)`` line changes."""
    source = LANGUAGE_MODEL
    if name == "MaskedLM":
        source = source.replace("class CausalLM", "class MaskedLM").replace("mask = causal_mask(T)", "mask = None")
    for old, new in changes:
        assert old in source, old
        source = source.replace(old, new)
    return source


POST_LN = ("norm_first=True, dropout=dropout", "norm_first=False, dropout=dropout")
NO_FINAL_NORM = ("return self.head(self.norm(x))", "return self.head(x)")
LAST_ROWS = ("self.positions[:T]", "self.positions[-T:]")
NO_DROPOUT_DOWN = ("norm_first=True, dropout=dropout)", "norm_first=True)")
SCALED = (
    "self.token_embedding(tokens) + ",
    "self.token_embedding(tokens) * math.sqrt(self.norm.normalized_shape[0]) + ",
)


def embedding_dropout(name):
    head = "        self.head = nn.Linear(d_model, vocab_size)\n"
    return model(
        name,
        (head, head + "        self.drop = nn.Dropout(dropout)\n"),
        (
            "x = self.token_embedding(tokens) + self.positions[:T]",
            "x = self.drop(self.token_embedding(tokens) + self.positions[:T])",
        ),
    )


def learned_positions(name):
    return model(
        name,
        (
            'self.register_buffer("positions", sinusoidal_positional_encoding(max_len, d_model), persistent=False)',
            "self.position_embedding = nn.Embedding(max_len, d_model)",
        ),
        ("self.positions[:T]", "self.position_embedding(torch.arange(T))"),
    )


def on_the_fly_positions(name):
    """Alternative: no buffer at all; the table of the sequence's length, computed in forward."""
    return model(
        name,
        (
            '        self.register_buffer("positions", sinusoidal_positional_encoding(max_len, d_model), '
            "persistent=False)\n",
            "        self.d_model = d_model\n",
        ),
        ("self.positions[:T]", "sinusoidal_positional_encoding(T, self.d_model)"),
    )


def sequential_style(name, mask_line, persistent=False):
    """A table sliced with narrow, blocks built in a loop, its own mask; ``persistent``: the table is saved in
    the state_dict (a bug: the contract's table is not)."""
    return f"""
class {name}(nn.Module):
    def __init__(self, vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout=0.0):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_positional_encoding(max_len, d_model), persistent={persistent})
        self.blocks = nn.ModuleList()
        for _ in range(num_layers):
            self.blocks.append(TransformerBlock(d_model, num_heads, d_ff, True, dropout))
        self.head = nn.Linear(d_model, vocab_size)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens):
        batch, length = tokens.shape
        hidden = self.token_embedding(tokens) + self.positions.narrow(0, 0, length).unsqueeze(0)
        {mask_line}
        for layer in self.blocks:
            hidden = layer(hidden, mask=mask)
        logits = self.head(self.norm(hidden))
        return logits
"""


ENTRIES = [
    # --- shift_for_next_token -----------------------------------------------------------------
    bug(
        "shift_for_next_token",
        "inputs and targets swapped",
        """
        def shift_for_next_token(tokens):
            return tokens[..., 1:], tokens[..., :-1]
    """,
        fails=("shifts_a_single_sequence",),
        says="swapped",
    ),
    bug(
        "shift_for_next_token",
        "shifted along the batch dimension",
        """
        def shift_for_next_token(tokens):
            return tokens[:-1], tokens[1:]
    """,
        fails=("shifts_along_time_in_a_batch",),
        says="first dimension",
    ),
    bug(
        "shift_for_next_token",
        "two tokens ahead",
        """
        def shift_for_next_token(tokens):
            return tokens[..., :-2], tokens[..., 2:]
    """,
        fails=("shifts_a_single_sequence",),
        says="has shape",
    ),
    bug(
        "shift_for_next_token",
        "a list instead of a tuple",
        """
        def shift_for_next_token(tokens):
            return [tokens[..., :-1], tokens[..., 1:]]
    """,
        fails=("shifts_a_single_sequence",),
        says="should return a tuple",
    ),
    bug(
        "shift_for_next_token",
        "the tokens twice: points without work",
        """
        def shift_for_next_token(tokens):
            return tokens, tokens
    """,
        fails=("shifts_a_single_sequence", "shifts_along_time_in_a_batch", "any_leading_dimensions"),
        says="nothing is shifted",
    ),
    alternative(
        "shift_for_next_token",
        "split along the last dimension",
        """
        def shift_for_next_token(tokens):
            length = tokens.shape[-1]
            inputs, _ = tokens.split([length - 1, 1], dim=-1)
            _, targets = tokens.split([1, length - 1], dim=-1)
            return inputs, targets
    """,
    ),
    alternative(
        "shift_for_next_token",
        "index_select copies",
        """
        def shift_for_next_token(tokens):
            positions = torch.arange(tokens.shape[-1])
            return tokens.index_select(-1, positions[:-1]), tokens.index_select(-1, positions[1:])
    """,
    ),
    bug(
        "shift_for_next_token",
        "squeezes away a batch of one",
        """
        def shift_for_next_token(tokens):
            tokens = tokens.squeeze()  # (1, T) from a DataLoader -> (T,)
            return tokens[..., :-1], tokens[..., 1:]
    """,
        fails=("any_leading_dimensions",),
        says="has shape",
    ),
    bug(
        "shift_for_next_token",
        "converts the ids to int64 for the loss",
        """
        def shift_for_next_token(tokens):
            return tokens[..., :-1].long(), tokens[..., 1:].long()
    """,
        fails=("any_leading_dimensions",),
        says="should keep the dtype of the tokens (torch.int32)",
    ),
    bug(
        "shift_for_next_token",
        "leading dimensions flattened with .view",
        """
        def shift_for_next_token(tokens):
            flat = tokens.view(-1, tokens.shape[-1])
            lead = tokens.shape[:-1]
            return flat[:, :-1].reshape(*lead, -1), flat[:, 1:].reshape(*lead, -1)
    """,
        fails=("any_leading_dimensions",),
        says="needs contiguous memory",
    ),
    # --- language_model_loss ------------------------------------------------------------------
    bug(
        "language_model_loss",
        "summed instead of averaged",
        """
        def language_model_loss(logits, labels, ignore_index=-100):
            logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
            keep = labels != ignore_index
            return -torch.log_softmax(logits[keep], -1).gather(1, labels[keep, None]).sum()
    """,
        fails=("matches_cross_entropy",),
        says="sums the losses",
    ),
    bug(
        "language_model_loss",
        "ignored positions in the denominator",
        """
        def language_model_loss(logits, labels, ignore_index=-100):
            logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
            keep = labels != ignore_index
            picked = torch.log_softmax(logits, -1).gather(1, labels.clamp(min=0)[:, None])[:, 0]
            return -(picked * keep).mean()
    """,
        fails=("ignores_positions_labelled_minus_100",),
        says="count as zero loss",
    ),
    bug(
        "language_model_loss",
        "-100 hard-coded",
        """
        def language_model_loss(logits, labels, ignore_index=-100):
            logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
            keep = labels != -100
            return -torch.log_softmax(logits[keep], -1).gather(1, labels[keep, None]).mean()
    """,
        fails=("respects_the_ignore_index_argument",),
        says="ignore_index argument is not used",
    ),
    bug(
        "language_model_loss",
        "log of the softmax",
        """
        def language_model_loss(logits, labels, ignore_index=-100):
            logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
            keep = labels != ignore_index
            probs = torch.softmax(logits[keep], -1)
            return -probs.gather(1, labels[keep, None]).log().mean()
    """,
        fails=("stable_for_large_logits",),
        says="underflows to log(0)",
    ),
    bug(
        "language_model_loss",
        "subtracts the max from the logits in place",
        """
        def language_model_loss(logits, labels, ignore_index=-100):
            logits -= logits.max(dim=-1, keepdim=True).values
            log_probs = logits - logits.exp().sum(-1, keepdim=True).log()
            log_probs, labels = log_probs.reshape(-1, log_probs.shape[-1]), labels.reshape(-1)
            keep = labels != ignore_index
            return -log_probs[keep].gather(1, labels[keep, None]).mean()
    """,
        fails=("matches_cross_entropy",),
        says="changed its argument 1 in place",
    ),
    bug(
        "language_model_loss",
        "overwrites the ignored labels in place",
        """
        def language_model_loss(logits, labels, ignore_index=-100):
            keep = labels != ignore_index
            labels[~keep] = 0
            picked = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
            return -picked[keep].mean()
    """,
        fails=("ignores_positions_labelled_minus_100",),
        says="changed its argument 2 in place",
    ),
    bug(
        "language_model_loss",
        "a Python float",
        """
        def language_model_loss(logits, labels, ignore_index=-100):
            logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
            keep = labels != ignore_index
            return -torch.log_softmax(logits[keep], -1).gather(1, labels[keep, None]).mean().item()
    """,
        fails=("matches_cross_entropy",),
        says="should be a torch.Tensor",
    ),
    alternative(
        "language_model_loss",
        "one-hot and logsumexp",
        """
        import torch.nn.functional as F

        def language_model_loss(logits, labels, ignore_index=-100):
            keep = labels != ignore_index
            one_hot = F.one_hot(labels.masked_fill(~keep, 0), logits.shape[-1]).to(logits.dtype)
            per_position = torch.logsumexp(logits, -1) - (one_hot * logits).sum(-1)
            return per_position.masked_select(keep).mean()
    """,
    ),
    alternative(
        "language_model_loss",
        "float64 with a sum divided by the count",
        """
        def language_model_loss(logits, labels, ignore_index=-100):
            flat = logits.double().flatten(0, -2)
            target = labels.flatten()
            keep = (target != ignore_index).nonzero().squeeze(1)
            log_probs = flat[keep] - flat[keep].logsumexp(dim=1, keepdim=True)
            total = -log_probs[torch.arange(len(keep)), target[keep]].sum()
            return (total / len(keep)).float()
    """,
    ),
    bug(
        "language_model_loss",
        "a one-element tensor of shape (1,) (keepdim=True)",
        """
        def language_model_loss(logits, labels, ignore_index=-100):
            logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
            keep = labels != ignore_index
            log_probs = torch.log_softmax(logits[keep], dim=-1)
            picked = log_probs.gather(-1, labels[keep].unsqueeze(-1))
            return -picked.mean(dim=0)
    """,
        fails=("matches_cross_entropy",),
        says="should return a 0-dim tensor",
    ),
    bug(
        "language_model_loss",
        "logits and labels flattened with .view",
        """
        def language_model_loss(logits, labels, ignore_index=-100):
            logits, labels = logits.view(-1, logits.shape[-1]), labels.view(-1)
            keep = labels != ignore_index
            log_probs = torch.log_softmax(logits[keep], dim=-1)
            return -log_probs.gather(-1, labels[keep].unsqueeze(-1)).mean()
    """,
        fails=("ignores_positions_labelled_minus_100",),
        says="needs contiguous memory",
    ),
    # --- mask_tokens --------------------------------------------------------------------------
    bug(
        "mask_tokens",
        "special ids sorted in the caller's list",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            if isinstance(special_token_ids, list):
                special_token_ids.sort()  # sorted for a binary search below
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            labels = torch.where(selected, tokens, -100)
            action = torch.rand(tokens.shape, generator=generator)
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_token_ids)])
            draws = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            inputs = torch.where(selected & (action < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), draws, inputs)
            return inputs, labels
    """,
        fails=("returns_inputs_and_labels",),
        says="changed its argument special_token_ids in place (a list",
    ),
    bug(
        "mask_tokens",
        "every selected position becomes [MASK]",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            labels = torch.where(selected, tokens, -100)
            return tokens.masked_fill(selected, mask_token_id), labels
    """,
        fails=("replaces_80_10_10",),
        says="every selected position became [MASK]",
    ),
    bug(
        "mask_tokens",
        "two independent draws for [MASK] and random",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            labels = torch.where(selected, tokens, -100)
            inputs = tokens.clone()
            inputs[selected & (torch.rand(tokens.shape, generator=generator) < 0.8)] = mask_token_id
            randomize = selected & (torch.rand(tokens.shape, generator=generator) < 0.1)
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_token_ids])
            draws = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            inputs[randomize] = draws[randomize]
            return inputs, labels
    """,
        fails=("replaces_80_10_10",),
        says="overwrote some [MASK]s",
    ),
    bug(
        "mask_tokens",
        "special tokens can be selected",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            selected = torch.rand(tokens.shape, generator=generator) < mask_prob
            labels = torch.where(selected, tokens, -100)
            action = torch.rand(tokens.shape, generator=generator)
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_token_ids])
            draws = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            inputs = torch.where(selected & (action < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), draws, inputs)
            return inputs, labels
    """,
        fails=("never_selects_special_tokens",),
        says="special token (e.g. [PAD] or [BOS]) was selected",
    ),
    bug(
        "mask_tokens",
        "random tokens from the whole vocabulary",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            labels = torch.where(selected, tokens, -100)
            action = torch.rand(tokens.shape, generator=generator)
            draws = torch.randint(0, vocab_size, tokens.shape, generator=generator)
            inputs = torch.where(selected & (action < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), draws, inputs)
            return inputs, labels
    """,
        fails=("random_tokens_come_from_every_ordinary_id",),
        says="non-special ids only",
    ),
    bug(
        "mask_tokens",
        "masks the caller's tokens in place",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            labels = torch.where(selected, tokens, -100)
            action = torch.rand(tokens.shape, generator=generator)
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_token_ids])
            draws = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            tokens[selected & (action < 0.8)] = mask_token_id
            randomize = selected & (action >= 0.8) & (action < 0.9)
            tokens[randomize] = draws[randomize]
            return tokens, labels
    """,
        fails=("labels_and_inputs_follow_the_rules",),
        says="changed its argument 1 in place",
    ),
    bug(
        "mask_tokens",
        "mask_prob ignored (15% hard-coded)",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < 0.15) & ~special
            labels = torch.where(selected, tokens, -100)
            action = torch.rand(tokens.shape, generator=generator)
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_token_ids])
            draws = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            inputs = torch.where(selected & (action < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), draws, inputs)
            return inputs, labels
    """,
        fails=("selection_rate_follows_mask_prob",),
        says="mask_prob is ignored",
    ),
    bug(
        "mask_tokens",
        "labels only where the input changed",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            action = torch.rand(tokens.shape, generator=generator)
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_token_ids])
            draws = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            to_mask, to_random = selected & (action < 0.8), selected & (action >= 0.8) & (action < 0.9)
            inputs = torch.where(to_mask, mask_token_id, tokens)
            inputs = torch.where(to_random, draws, inputs)
            return inputs, torch.where(to_mask | to_random, tokens, -100)
    """,
        fails=("selection_rate_follows_mask_prob",),
        says="kept unchanged lost their label",
    ),
    bug(
        "mask_tokens",
        "the global generator instead of the argument",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape) < mask_prob) & ~special
            labels = torch.where(selected, tokens, -100)
            action = torch.rand(tokens.shape)
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_token_ids])
            draws = ordinary[torch.randint(len(ordinary), tokens.shape)]
            inputs = torch.where(selected & (action < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), draws, inputs)
            return inputs, labels
    """,
        fails=("uses_the_generator",),
        says="generators in the same state gave different results",
    ),
    bug(
        "mask_tokens",
        "nothing selected: points without work",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            return tokens.clone(), torch.full_like(tokens, -100)
    """,
        fails=("labels_and_inputs_follow_the_rules", "replaces_80_10_10"),
        says="no position was selected",
    ),
    alternative(
        "mask_tokens",
        "one multinomial draw per position over four outcomes",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.zeros(tokens.shape, dtype=torch.bool)
            for token_id in special_token_ids:
                special |= tokens == token_id
            outcome_probs = torch.tensor([1 - mask_prob, 0.8 * mask_prob, 0.1 * mask_prob, 0.1 * mask_prob])
            outcome = torch.multinomial(outcome_probs, tokens.numel(), replacement=True, generator=generator)
            outcome = outcome.view(tokens.shape).masked_fill(special, 0)  # 0 keep, 1 mask, 2 random, 3 unchanged
            ordinary = [i for i in range(vocab_size) if i not in special_token_ids]
            draws = torch.tensor(ordinary)[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            inputs = tokens.clone()
            inputs[outcome == 1] = mask_token_id
            inputs[outcome == 2] = draws[outcome == 2].to(inputs.dtype)
            labels = torch.where(outcome > 0, tokens, torch.full_like(tokens, -100))
            return inputs, labels
    """,
    ),
    alternative(
        "mask_tokens",
        "a random permutation of the ordinary ids, numpy-free loop over specials",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            flat = tokens.reshape(-1)
            is_ordinary = torch.ones_like(flat, dtype=torch.bool)
            for token_id in set(special_token_ids):
                is_ordinary &= flat != token_id
            u = torch.rand(flat.shape, generator=generator, dtype=torch.float64)
            selected = is_ordinary & (u < mask_prob)
            v = torch.rand(flat.shape, generator=generator, dtype=torch.float64)
            ids = torch.arange(vocab_size)
            ids = ids[~torch.isin(ids, torch.tensor(sorted(set(special_token_ids)), dtype=ids.dtype))]
            random_ids = ids[torch.randint(0, ids.numel(), flat.shape, generator=generator)]
            inputs = flat.clone()
            inputs = torch.where(selected & (v >= 0.9), inputs, inputs)
            inputs = torch.where(selected & (v < 0.8), torch.full_like(flat, mask_token_id), inputs)
            inputs = torch.where(selected & (v >= 0.8) & (v < 0.9), random_ids, inputs)
            labels = torch.full_like(flat, -100)
            labels[selected] = flat[selected]
            return inputs.view_as(tokens), labels.view_as(tokens)
    """,
    ),
    bug(
        "mask_tokens",
        "a random replacement that never equals the original token",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_token_ids)])
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            labels = torch.where(selected, tokens, -100)
            u = torch.rand(tokens.shape, generator=generator)
            # a replacement must be a DIFFERENT token: step to another ordinary id
            where = torch.searchsorted(ordinary, tokens.clamp(max=int(ordinary.max())))
            step = torch.randint(1, len(ordinary), tokens.shape, generator=generator)
            other = ordinary[(where + step) % len(ordinary)]
            inputs = torch.where(selected & (u < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (u >= 0.8) & (u < 0.9), other, inputs)
            return inputs, labels
    """,
        fails=("random_tokens_come_from_every_ordinary_id",),
        says="the random token never equals the original one",
    ),
    bug(
        "mask_tokens",
        "generator=None replaced by a fresh torch.Generator()",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            generator = generator or torch.Generator()
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_token_ids)])
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            u = torch.rand(tokens.shape, generator=generator)
            random_ids = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            inputs = torch.where(selected & (u < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (u >= 0.8) & (u < 0.9), random_ids, inputs)
            return inputs, torch.where(selected, tokens, -100)
    """,
        fails=("uses_the_generator",),
        says="two calls with generator=None gave the same result",
    ),
    bug(
        "mask_tokens",
        "a reproducible default: seed 0 when no generator is given",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            if generator is None:
                generator = torch.Generator().manual_seed(0)
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_token_ids)])
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            u = torch.rand(tokens.shape, generator=generator)
            random_ids = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            inputs = torch.where(selected & (u < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (u >= 0.8) & (u < 0.9), random_ids, inputs)
            return inputs, torch.where(selected, tokens, -100)
    """,
        fails=("uses_the_generator",),
        says="generator=None",
    ),
    bug(
        "mask_tokens",
        "int64 random ids written into int32 tokens by index",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_token_ids)])
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            u = torch.rand(tokens.shape, generator=generator)
            random_ids = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            inputs, labels = tokens.clone(), tokens.clone()
            labels[~selected] = -100
            inputs[selected & (u < 0.8)] = mask_token_id
            swap = selected & (u >= 0.8) & (u < 0.9)
            inputs[swap] = random_ids[swap]
            return inputs, labels
    """,
        fails=("returns_inputs_and_labels",),
        says="Index put requires the source and destination dtypes match",
    ),
    alternative(
        "mask_tokens",
        "int64 results whatever the tokens' dtype",
        """
        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            tokens = tokens.long()
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_token_ids)])
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=torch.long))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            u = torch.rand(tokens.shape, generator=generator)
            random_ids = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            inputs, labels = tokens.clone(), tokens.clone()
            labels[~selected] = -100
            inputs[selected & (u < 0.8)] = mask_token_id
            swap = selected & (u >= 0.8) & (u < 0.9)
            inputs[swap] = random_ids[swap]
            return inputs, labels
    """,
    ),
    # --- CausalLM -----------------------------------------------------------------------------
    bug(
        "CausalLM",
        "Post-LN blocks",
        model("CausalLM", POST_LN),
        fails=("matches_the_reference_stack",),
        says="the blocks are Post-LN",
    ),
    bug(
        "CausalLM",
        "the final LayerNorm built but not applied",
        model("CausalLM", NO_FINAL_NORM),
        fails=("matches_the_reference_stack",),
        says="the final LayerNorm (norm) is not applied",
    ),
    bug(
        "CausalLM",
        "no final LayerNorm at all (nanoGPT's name, and not applied)",
        model(
            "CausalLM",
            ("self.norm = nn.LayerNorm(d_model)", "self.ln_f = nn.Identity()"),
            ("return self.head(self.norm(x))", "return self.head(self.ln_f(x))"),
        ),
        fails=("matches_the_reference_stack",),
        says="has no parameter norm.weight",
    ),
    bug(
        "CausalLM",
        "a short sequence gets the last rows of the position table",
        model("CausalLM", LAST_ROWS),
        fails=("shorter_sequences_use_the_first_position_rows",),
        says="rows of the position table",
    ),
    bug(
        "CausalLM",
        "dropout never passed to the blocks",
        model("CausalLM", NO_DROPOUT_DOWN),
        fails=("dropout_acts_inside_the_blocks",),
        says="pass dropout to every TransformerBlock",
    ),
    bug(
        "CausalLM",
        "dropout on the embeddings",
        embedding_dropout("CausalLM"),
        fails=("dropout_acts_inside_the_blocks",),
        says="the embeddings are dropped",
    ),
    bug(
        "CausalLM",
        "embeddings scaled by sqrt(d_model)",
        model("CausalLM", SCALED),
        fails=("matches_the_reference_stack",),
        says="multiplied by sqrt(d_model)",
    ),
    bug(
        "CausalLM",
        "learned position embeddings instead of the sinusoidal table",
        learned_positions("CausalLM"),
        fails=("matches_the_reference_stack",),
        says="the position table is fixed, not trained",
    ),
    bug(
        "CausalLM",
        "no causal mask",
        model("CausalLM", ("mask = causal_mask(T)", "mask = None")),
        fails=("future_tokens_never_change_earlier_logits",),
        says="the model sees the future",
    ),
    bug(
        "CausalLM",
        "the mask lets each position see the next token",
        model("CausalLM", ("mask = causal_mask(T)", "mask = torch.ones(T, T, dtype=torch.bool).tril(1)")),
        fails=("future_tokens_never_change_earlier_logits",),
        says="sees the NEXT token",
    ),
    alternative("CausalLM", "positions computed in forward, no buffer", on_the_fly_positions("CausalLM")),
    alternative(
        "CausalLM",
        "non-persistent table sliced with narrow, its own mask",
        sequential_style("CausalLM", "mask = ~torch.triu(torch.ones(length, length, dtype=torch.bool), 1)"),
    ),
    bug(
        "CausalLM",
        "the blocks in a plain Python list",
        model(
            "CausalLM",
            (
                "self.blocks = nn.ModuleList([TransformerBlock(",
                "self.blocks = ([TransformerBlock(",
            ),
        ),
        fails=("logits_shape",),
        says="use nn.ModuleList",
    ),
    bug(
        "CausalLM",
        "one block whatever num_layers",
        model("CausalLM", ("for _ in range(num_layers)])", "for _ in range(1)])")),
        fails=("logits_shape",),
        says="stack num_layers transformer blocks",
    ),
    bug(
        "CausalLM",
        "a causal mask cut from a fixed 64 x 64 table",
        model(
            "CausalLM",
            (
                "        self.norm = nn.LayerNorm(d_model)\n",
                "        self.norm = nn.LayerNorm(d_model)\n"
                '        self.register_buffer("mask", torch.ones(64, 64, dtype=torch.bool).tril(), persistent=False)\n',
            ),
            ("mask = causal_mask(T)", "mask = self.mask[:T, :T]"),
        ),
        fails=("logits_shape",),
    ),
    bug(
        "CausalLM",
        "the mask of the first call kept for every later call",
        model(
            "CausalLM",
            (
                "        self.norm = nn.LayerNorm(d_model)\n",
                "        self.norm = nn.LayerNorm(d_model)\n        self.mask = None\n",
            ),
            (
                "mask = causal_mask(T)",
                "self.mask = causal_mask(T) if self.mask is None else self.mask\n        mask = self.mask",
            ),
        ),
        fails=("logits_shape",),
    ),
    bug(
        "CausalLM",
        "a persistent position table (saved in the state_dict)",
        sequential_style(
            "CausalLM", "mask = ~torch.triu(torch.ones(length, length, dtype=torch.bool), 1)", persistent=True
        ),
        fails=("matches_the_reference_stack",),
        says="persistent=False",
    ),
    # --- MaskedLM -----------------------------------------------------------------------------
    bug(
        "MaskedLM",
        "a causal mask",
        model("MaskedLM", ("mask = None", "mask = causal_mask(T)")),
        fails=("every_position_reads_both_sides",),
        says="must not use a causal mask",
    ),
    bug(
        "MaskedLM",
        "Post-LN blocks",
        model("MaskedLM", POST_LN),
        fails=("matches_the_reference_stack",),
        says="the blocks are Post-LN",
    ),
    bug(
        "MaskedLM",
        "the final LayerNorm built but not applied",
        model("MaskedLM", NO_FINAL_NORM),
        fails=("matches_the_reference_stack",),
        says="the final LayerNorm (norm) is not applied",
    ),
    bug(
        "MaskedLM",
        "a short sequence gets the last rows of the position table",
        model("MaskedLM", LAST_ROWS),
        fails=("shorter_sequences_use_the_first_position_rows",),
        says="gets the LAST",
    ),
    bug(
        "MaskedLM",
        "dropout never passed to the blocks",
        model("MaskedLM", NO_DROPOUT_DOWN),
        fails=("dropout_acts_inside_the_blocks",),
        says="pass dropout to every TransformerBlock",
    ),
    bug(
        "MaskedLM",
        "no position encoding",
        model(
            "MaskedLM", ("x = self.token_embedding(tokens) + self.positions[:T]", "x = self.token_embedding(tokens)")
        ),
        fails=("uses_positions",),
        says="no idea of positions",
    ),
    alternative("MaskedLM", "positions computed in forward, no buffer", on_the_fly_positions("MaskedLM")),
    alternative(
        "MaskedLM",
        "non-persistent table sliced with narrow, an all-True mask",
        sequential_style("MaskedLM", "mask = torch.ones(length, length, dtype=torch.bool)"),
    ),
    bug(
        "MaskedLM",
        "a persistent position table (saved in the state_dict)",
        sequential_style("MaskedLM", "mask = torch.ones(length, length, dtype=torch.bool)", persistent=True),
        fails=("matches_the_reference_stack",),
        says="persistent=False",
    ),
    bug(
        "MaskedLM",
        "the blocks in a plain Python list",
        model("MaskedLM", ("self.blocks = nn.ModuleList([TransformerBlock(", "self.blocks = ([TransformerBlock(")),
        fails=("logits_shape",),
        says="use nn.ModuleList",
    ),
    # --- red team: more answers to the functions -----------------------------------------------
    bug(
        "shift_for_next_token",
        "targets equal the inputs",
        """
        def shift_for_next_token(tokens):
            return tokens[..., :-1], tokens[..., :-1]
    """,
        fails=("shifts_a_single_sequence", "any_leading_dimensions"),
        says="targets are tokens[..., :-1], the inputs",
    ),
    bug(
        "shift_for_next_token",
        "assumes a 2-D batch",
        """
        def shift_for_next_token(tokens):
            return tokens[:, :-1], tokens[:, 1:]
    """,
        fails=("shifts_a_single_sequence", "any_leading_dimensions"),
        says="inputs for tokens of shape",
    ),
    bug(
        "shift_for_next_token",
        "roll wraps around",
        """
        import torch

        def shift_for_next_token(tokens):
            return tokens, torch.roll(tokens, -1, dims=-1)
    """,
        fails=("shifts_a_single_sequence",),
        says="nothing is shifted",
    ),
    bug(
        "shift_for_next_token",
        "flattens the batch into one stream",
        """
        def shift_for_next_token(tokens):
            flat = tokens.reshape(-1)
            return flat[:-1], flat[1:]
    """,
        fails=("shifts_along_time_in_a_batch", "any_leading_dimensions"),
        says="has shape",
    ),
    bug(
        "shift_for_next_token",
        "length read from dim 1",
        """
        def shift_for_next_token(tokens):
            t = tokens.shape[1]
            return tokens[..., : t - 1], tokens[..., 1:t]
    """,
        fails=("shifts_a_single_sequence", "any_leading_dimensions"),
        says="IndexError",
    ),
    bug(
        "shift_for_next_token",
        "float tokens",
        """
        def shift_for_next_token(tokens):
            return tokens[..., :-1].float(), tokens[..., 1:].float()
    """,
        fails=("shifts_a_single_sequence", "shifts_along_time_in_a_batch", "any_leading_dimensions"),
        says="should keep the dtype of the tokens",
    ),
    alternative(
        "shift_for_next_token",
        "narrow",
        """
        def shift_for_next_token(tokens):
            n = tokens.size(-1) - 1
            return tokens.narrow(-1, 0, n), tokens.narrow(-1, 1, n)
    """,
    ),
    alternative(
        "shift_for_next_token",
        "movedim views",
        """
        def shift_for_next_token(tokens):
            t = tokens.movedim(-1, 0)
            return t[:-1].movedim(0, -1), t[1:].movedim(0, -1)
    """,
    ),
    bug(
        "language_model_loss",
        "bits instead of nats",
        """
        import math
        import torch

        def language_model_loss(logits, labels, ignore_index=-100):
            logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
            keep = labels != ignore_index
            lp = torch.log_softmax(logits[keep], -1)
            return -lp.gather(-1, labels[keep, None]).mean() / math.log(2)
    """,
        fails=("matches_cross_entropy",),
        says="it is in bits",
    ),
    bug(
        "language_model_loss",
        "per-sequence mean then mean over sequences",
        """
        import torch

        def language_model_loss(logits, labels, ignore_index=-100):
            keep = labels != ignore_index
            nll = -torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
            nll = torch.where(keep, nll, torch.zeros_like(nll))
            if nll.dim() == 1:
                return nll.sum() / keep.sum()
            return (nll.sum(-1) / keep.sum(-1)).mean()
    """,
        fails=("ignores_positions_labelled_minus_100",),
        says="differs from the expected value",
    ),
    bug(
        "language_model_loss",
        "assumes 3-D logits",
        """
        import torch

        def language_model_loss(logits, labels, ignore_index=-100):
            B, T, V = logits.shape
            logits, labels = logits.reshape(B * T, V), labels.reshape(B * T)
            keep = labels != ignore_index
            lp = torch.log_softmax(logits[keep], -1)
            return -lp.gather(-1, labels[keep, None]).mean()
    """,
        fails=("matches_cross_entropy", "stable_for_large_logits"),
        says="not enough values to unpack",
    ),
    bug(
        "language_model_loss",
        "global max subtraction",
        """
        import torch

        def language_model_loss(logits, labels, ignore_index=-100):
            logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
            keep = labels != ignore_index
            z = logits[keep] - logits.max()
            lp = z - z.exp().sum(-1, keepdim=True).log()
            return -lp.gather(-1, labels[keep, None]).mean()
    """,
        fails=("stable_for_large_logits",),
        says="infinite or NaN",
    ),
    bug(
        "language_model_loss",
        "log_softmax over dim 0",
        """
        import torch

        def language_model_loss(logits, labels, ignore_index=-100):
            logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
            keep = labels != ignore_index
            lp = torch.log_softmax(logits[keep], 0)
            return -lp.gather(-1, labels[keep, None]).mean()
    """,
        fails=("matches_cross_entropy", "gradient_reaches_the_logits"),
        says="differs from the expected value",
    ),
    advised(
        "language_model_loss",
        "F.cross_entropy, which the exercise forbids",
        """
        import torch.nn.functional as F

        def language_model_loss(logits, labels, ignore_index=-100):
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=ignore_index)
    """,
        advice=("no_library_loss",),
        says="the library loss the checks compare with",
    ),
    advised(
        "language_model_loss",
        "F.cross_entropy inside a TorchScript function",
        """
        import torch
        import torch.nn.functional as F

        @torch.jit.script
        def _loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=ignore_index)

        def language_model_loss(logits, labels, ignore_index=-100):
            return _loss(logits, labels, ignore_index)
    """,
        advice=("no_library_loss",),
        says="the library loss the checks compare with",
    ),
    alternative(
        "language_model_loss",
        "logsumexp minus the label's logit",
        """
        import torch

        def language_model_loss(logits, labels, ignore_index=-100):
            keep = labels != ignore_index
            z = logits[keep]
            y = labels[keep]
            return (torch.logsumexp(z, -1) - z.gather(-1, y[:, None])[:, 0]).mean()
    """,
    ),
    alternative(
        "language_model_loss",
        "weighted sum over all positions",
        """
        import torch

        def language_model_loss(logits, labels, ignore_index=-100):
            keep = labels != ignore_index
            safe = torch.where(keep, labels, torch.zeros_like(labels))
            nll = -torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
            weights = keep.to(nll.dtype)
            return (nll * weights).sum() / weights.sum()
    """,
    ),
    bug(
        "mask_tokens",
        "random ids assume the special ids come first",
        """
        import torch

        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            labels = torch.where(selected, tokens, -100)
            action = torch.rand(tokens.shape, generator=generator)
            rnd = torch.randint(len(special_token_ids), vocab_size, tokens.shape, generator=generator)
            inputs = torch.where(selected & (action < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), rnd, inputs)
            return inputs, labels
    """,
        fails=("never_selects_special_tokens", "random_tokens_come_from_every_ordinary_id"),
        says="random replacements must be drawn from the non-special ids only",
    ),
    bug(
        "mask_tokens",
        "random ids miss the last id",
        """
        import torch

        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            labels = torch.where(selected, tokens, -100)
            action = torch.rand(tokens.shape, generator=generator)
            ordinary = torch.tensor([i for i in range(vocab_size - 1) if i not in special_token_ids])
            rnd = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            inputs = torch.where(selected & (action < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), rnd, inputs)
            return inputs, labels
    """,
        fails=("random_tokens_come_from_every_ordinary_id",),
        says="ids [11] never appear",
    ),
    bug(
        "mask_tokens",
        "labels at every position",
        """
        import torch

        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            labels = tokens.clone()
            action = torch.rand(tokens.shape, generator=generator)
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_token_ids])
            rnd = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            inputs = torch.where(selected & (action < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), rnd, inputs)
            return inputs, labels
    """,
        fails=("labels_and_inputs_follow_the_rules",),
        says="labels equal the tokens everywhere",
    ),
    bug(
        "mask_tokens",
        "80 percent mask, 20 percent random, none unchanged",
        """
        import torch

        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            labels = torch.where(selected, tokens, -100)
            action = torch.rand(tokens.shape, generator=generator)
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_token_ids])
            rnd = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            inputs = torch.where(selected & (action < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (action >= 0.8), rnd, inputs)
            return inputs, labels
    """,
        fails=("replaces_80_10_10",),
        says="no selected position kept its token",
    ),
    bug(
        "mask_tokens",
        "float labels",
        """
        import torch

        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            labels = torch.where(selected, tokens.float(), -100.0)
            action = torch.rand(tokens.shape, generator=generator)
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_token_ids])
            rnd = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
            inputs = torch.where(selected & (action < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), rnd, inputs)
            return inputs, labels
    """,
        fails=("returns_inputs_and_labels",),
        says="labels should be int64",
    ),
    bug(
        "mask_tokens",
        "assumes a 2-D batch of tokens",
        """
        import torch

        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            B, T = tokens.shape
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(B, T, generator=generator) < mask_prob) & ~special
            labels = torch.where(selected, tokens, -100)
            action = torch.rand(B, T, generator=generator)
            ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_token_ids])
            rnd = ordinary[torch.randint(len(ordinary), (B, T), generator=generator)]
            inputs = torch.where(selected & (action < 0.8), mask_token_id, tokens)
            inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), rnd, inputs)
            return inputs, labels
    """,
        fails=("returns_inputs_and_labels",),
        says="not enough values to unpack",
    ),
    bug(
        "mask_tokens",
        "keeps the original where the random token is drawn (90/10/0)",
        """
        import torch

        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
            labels = torch.where(selected, tokens, -100)
            action = torch.rand(tokens.shape, generator=generator)
            inputs = torch.where(selected & (action < 0.9), mask_token_id, tokens)
            return inputs, labels
    """,
        fails=("replaces_80_10_10",),
        says="90% of selected positions became [MASK]",
    ),
    alternative(
        "mask_tokens",
        "one uniform draw decides selection and action",
        """
        import torch

        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            u = torch.rand(tokens.shape, generator=generator, dtype=torch.float64)
            special = torch.zeros(tokens.shape, dtype=torch.bool)
            for s in special_token_ids:
                special |= tokens == s
            selected = (u < mask_prob) & ~special
            labels = tokens.clone()
            labels[~selected] = -100
            ordinary = [i for i in range(vocab_size) if i not in set(special_token_ids)]
            picks = torch.randint(len(ordinary), tokens.shape, generator=generator)
            rnd = torch.tensor(ordinary, dtype=tokens.dtype)[picks]
            inputs = tokens.clone()
            inputs[selected & (u < 0.8 * mask_prob)] = mask_token_id
            r = selected & (u >= 0.8 * mask_prob) & (u < 0.9 * mask_prob)
            inputs[r] = rnd[r]
            return inputs, labels
    """,
    ),
    alternative(
        "mask_tokens",
        "bernoulli and multinomial",
        """
        import torch

        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            special = torch.isin(tokens, torch.as_tensor(list(special_token_ids), dtype=torch.int64))
            selected = torch.bernoulli(torch.full(tokens.shape, mask_prob), generator=generator).bool() & ~special
            choice = torch.multinomial(torch.tensor([0.8, 0.1, 0.1]), tokens.numel(), replacement=True,
                                       generator=generator).view(tokens.shape)
            weights = torch.ones(vocab_size)
            weights[list(special_token_ids)] = 0
            rnd = torch.multinomial(weights, tokens.numel(), replacement=True, generator=generator).view(tokens.shape)
            inputs = torch.where(selected & (choice == 0), torch.full_like(tokens, mask_token_id), tokens)
            inputs = torch.where(selected & (choice == 1), rnd, inputs)
            labels = torch.where(selected, tokens, torch.full_like(tokens, -100))
            return inputs, labels
    """,
    ),
    alternative(
        "mask_tokens",
        "rejection sampling for the random ids",
        """
        import torch

        def mask_tokens(tokens, mask_token_id, vocab_size, mask_prob=0.15, generator=None, special_token_ids=()):
            specials = torch.tensor(sorted(set(special_token_ids)), dtype=torch.int64)
            selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~torch.isin(tokens, specials)
            action = torch.rand(tokens.shape, generator=generator)
            rnd = torch.randint(vocab_size, tokens.shape, generator=generator)
            bad = torch.isin(rnd, specials)
            while bad.any():
                rnd[bad] = torch.randint(vocab_size, (int(bad.sum()),), generator=generator)
                bad = torch.isin(rnd, specials)
            inputs = tokens.clone()
            inputs = torch.where(selected & (action < 0.8), mask_token_id, inputs)
            inputs = torch.where(selected & (action >= 0.9), inputs, torch.where(selected & (action >= 0.8), rnd, inputs))
            labels = torch.full_like(tokens, -100)
            labels[selected] = tokens[selected]
            return inputs, labels
    """,
    ),
    # --- red team: more model answers ---------------------------------------------------------
    *[
        entry
        for name in ("CausalLM", "MaskedLM")
        for entry in (
            bug(
                name,
                "positions sliced by the batch size",
                model(name, ("self.positions[:T]", "self.positions[: tokens.shape[0]]")),
                fails=("logits_shape", "matches_the_reference_stack"),
                says="must match the size of tensor",
            ),
            bug(
                name,
                "head without a bias",
                model(name, ("nn.Linear(d_model, vocab_size)", "nn.Linear(d_model, vocab_size, bias=False)")),
                fails=("matches_the_reference_stack",),
                says="has no parameter head.bias",
            ),
            bug(
                name,
                "returns log-probabilities instead of logits",
                model(
                    name,
                    ("return self.head(self.norm(x))", "return torch.log_softmax(self.head(self.norm(x)), dim=-1)"),
                ),
                fails=("matches_the_reference_stack", "shorter_sequences_use_the_first_position_rows"),
                says="differs from the expected value",
            ),
            bug(
                name,
                "the batch flattened into one long sequence",
                model(
                    name,
                    (
                        "x = self.token_embedding(tokens) + self.positions[:T]",
                        "x = (self.token_embedding(tokens) + self.positions[:T]).reshape(1, -1, self.head.in_features)",
                    ),
                    ("mask = causal_mask(T)", "mask = causal_mask(x.shape[1])") if name == "CausalLM" else ("", ""),
                    (
                        "return self.head(self.norm(x))",
                        "return self.head(self.norm(x)).reshape(tokens.shape[0], T, -1)",
                    ),
                ),
                fails=("batch_rows_are_independent",),
                says="the rows of a batch must not attend to each other",
            ),
            bug(
                name,
                "the sinusoidal table as a trained parameter",
                model(
                    name,
                    (
                        'self.register_buffer("positions", sinusoidal_positional_encoding(max_len, d_model), '
                        "persistent=False)",
                        "self.positions = nn.Parameter(sinusoidal_positional_encoding(max_len, d_model))",
                    ),
                ),
                fails=("matches_the_reference_stack",),
                says="the position table is fixed, not trained",
            ),
            bug(
                name,
                "positions from row 1 of a longer table",
                model(
                    name,
                    (
                        "sinusoidal_positional_encoding(max_len, d_model)",
                        "sinusoidal_positional_encoding(max_len + 1, d_model)",
                    ),
                    ("self.positions[:T]", "self.positions[1 : T + 1]"),
                ),
                fails=("matches_the_reference_stack", "shorter_sequences_use_the_first_position_rows"),
                says="differs from the expected value",
            ),
            bug(
                name,
                "dropout on the logits",
                model(
                    name,
                    (
                        "        self.head = nn.Linear(d_model, vocab_size)\n",
                        "        self.head = nn.Linear(d_model, vocab_size)\n        self.drop = nn.Dropout(dropout)\n",
                    ),
                    ("return self.head(self.norm(x))", "return self.drop(self.head(self.norm(x)))"),
                ),
                fails=("dropout_acts_inside_the_blocks",),
                says="the logits are dropped",
            ),
        )
    ],
    bug(
        "CausalLM",
        "the mask of max_len, not sliced to T",
        model(
            "CausalLM",
            (
                "        self.head = nn.Linear(d_model, vocab_size)\n",
                "        self.head = nn.Linear(d_model, vocab_size)\n"
                '        self.register_buffer("mask", causal_mask(max_len), persistent=False)\n',
            ),
            ("mask = causal_mask(T)", "mask = self.mask"),
        ),
        fails=("logits_shape", "shorter_sequences_use_the_first_position_rows"),
        says="must match the size of tensor",
    ),
    bug(
        "CausalLM",
        "the mask sized by the batch",
        model("CausalLM", ("mask = causal_mask(T)", "mask = causal_mask(tokens.shape[0])")),
        fails=("logits_shape", "future_tokens_never_change_earlier_logits"),
        says="must match the size of tensor",
    ),
    bug(
        "CausalLM",
        "the mask is True on the diagonal and the future",
        model("CausalLM", ("mask = causal_mask(T)", "mask = ~causal_mask(T) | torch.eye(T, dtype=torch.bool)")),
        fails=("future_tokens_never_change_earlier_logits", "each_position_reads_itself_and_the_past"),
        says="the model sees the future",
    ),
    alternative(
        "CausalLM",
        "a (1, 1, T, T) mask from triu, the head applied by hand",
        model(
            "CausalLM",
            ("mask = causal_mask(T)", "mask = ~torch.ones(1, 1, T, T, dtype=torch.bool, device=tokens.device).triu(1)"),
            ("return self.head(self.norm(x))", "return self.norm(x) @ self.head.weight.T + self.head.bias"),
        ),
    ),
    alternative(
        "CausalLM",
        "a mask compared from aranges, positions by narrow",
        model(
            "CausalLM",
            ("self.positions[:T]", "self.positions.narrow(0, 0, T).unsqueeze(0)"),
            ("mask = causal_mask(T)", "mask = torch.arange(T)[None, :] <= torch.arange(T)[:, None]"),
        ),
    ),
    bug(
        "MaskedLM",
        "embeddings scaled by sqrt(d_model)",
        model("MaskedLM", SCALED),
        fails=("matches_the_reference_stack",),
        says="multiplied by sqrt(d_model)",
    ),
    bug(
        "MaskedLM",
        "dropout on the embeddings",
        embedding_dropout("MaskedLM"),
        fails=("dropout_acts_inside_the_blocks",),
        says="the embeddings are dropped",
    ),
    bug(
        "MaskedLM",
        "each position masked out of its own attention",
        model("MaskedLM", ("mask = None", "mask = ~torch.eye(T, dtype=torch.bool)")),
        fails=("matches_the_reference_stack",),
        says="differs from the expected value",
    ),
    bug(
        "MaskedLM",
        "token id 0 masked out as padding",
        model("MaskedLM", ("mask = None", "mask = (tokens != 0)[:, None, None, :]")),
        fails=("matches_the_reference_stack",),
        says="differs from the expected value",
    ),
    alternative(
        "MaskedLM",
        "positions by index, the blocks applied with functools.reduce",
        """
import functools


class MaskedLM(nn.Module):
    def __init__(self, vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout=0.0):
        nn.Module.__init__(self)
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_positional_encoding(max_len, d_model), persistent=False)
        self.blocks = nn.ModuleList([TransformerBlock(d_model, num_heads, d_ff, True, dropout) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens):
        pos = self.positions[torch.arange(tokens.size(1), device=tokens.device)]
        x = functools.reduce(lambda h, block: block(h), self.blocks, self.token_embedding(tokens) + pos)
        return self.head(self.norm(x))
""",
    ),
    # --- input classes: token layouts and dtypes, the model's state across calls ----------------
    bug(
        "CausalLM",
        "tokens flattened with .view for the embedding (a view such as tokens[:, :-1] cannot be)",
        model(
            "CausalLM",
            (
                "x = self.token_embedding(tokens) + self.positions[:T]",
                "x = self.token_embedding(tokens.view(-1)).view(*tokens.shape, -1) + self.positions[:T]",
            ),
        ),
        fails=("matches_the_reference_stack",),
        says="not contiguous",
    ),
    bug(
        "MaskedLM",
        "embedding as one_hot(tokens) @ weight (one_hot takes int64 ids only)",
        model(
            "MaskedLM",
            (
                "x = self.token_embedding(tokens) + self.positions[:T]",
                "one_hot = torch.nn.functional.one_hot(tokens, self.token_embedding.num_embeddings)\n"
                "        x = one_hot.float() @ self.token_embedding.weight + self.positions[:T]",
            ),
        ),
        fails=("matches_the_reference_stack",),
        says="int32",
    ),
    bug(
        "CausalLM",
        "nn.Embedding(max_norm=1.0): every forward renormalizes the embedding rows it reads, in place",
        model(
            "CausalLM",
            (
                "self.token_embedding = nn.Embedding(vocab_size, d_model)",
                "self.token_embedding = nn.Embedding(vocab_size, d_model, max_norm=1.0)",
            ),
        ),
        fails=("logits_shape",),
        says="changed the model's parameters or buffers (token_embedding.weight)",
    ),
    # --- backward in train() mode: the logits are right, the gradients are not -------------------
    bug(
        "CausalLM",
        "embeddings and positions under torch.no_grad() (the table is fixed): the embedding gets no gradient",
        model(
            "CausalLM",
            (
                "x = self.token_embedding(tokens) + self.positions[:T]",
                "with torch.no_grad():  # the position table is fixed: no gradient needed\n"
                "            x = self.token_embedding(tokens) + self.positions[:T]",
            ),
        ),
        fails=("backward_in_train_mode",),
        says="no gradient reaches token_embedding.weight",
    ),
    bug(
        "MaskedLM",
        "embedding rows read from token_embedding.weight.data",
        model(
            "MaskedLM",
            (
                "x = self.token_embedding(tokens) + self.positions[:T]",
                "x = self.token_embedding.weight.data[tokens] + self.positions[:T]",
            ),
        ),
        fails=("backward_in_train_mode",),
        says="no gradient reaches token_embedding.weight",
    ),
    bug(
        "MaskedLM",
        "the head applied by hand with head.weight.data",
        model(
            "MaskedLM",
            ("return self.head(self.norm(x))", "return self.norm(x) @ self.head.weight.data.T + self.head.bias"),
        ),
        fails=("backward_in_train_mode",),
        says="no gradient reaches head.weight",
    ),
    bug(
        "CausalLM",
        "each block's output written into x in place (x[:] = block(x, mask)), which the block's LayerNorm saved",
        model("CausalLM", ("x = block(x, mask)", "x[:] = block(x, mask)  # reuse x's memory")),
        fails=("backward_in_train_mode",),
        says="modified by an inplace operation",
    ),
]
