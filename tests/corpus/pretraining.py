"""Chapter 6 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``).

The chapter's setup cell imports math, torch, ``nn``, and the given ``causal_mask`` (chapter 2),
``sinusoidal_positional_encoding`` (chapter 4) and ``TransformerBlock`` (chapter 5). The model
answers below start from one learner's working model (:data:`LANGUAGE_MODEL`) with one line
changed, as a learner's bug usually is."""

from corpus import alternative, bug

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


def sequential_style(name, mask_line):
    """Alternative: a persistent table sliced with narrow, blocks built in a loop, its own mask."""
    return f"""
class {name}(nn.Module):
    def __init__(self, vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout=0.0):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_positional_encoding(max_len, d_model))
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
    # --- mask_tokens --------------------------------------------------------------------------
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
            inputs[outcome == 2] = draws[outcome == 2]
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
        says="differs from the expected value",
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
        "persistent table sliced with narrow, its own mask",
        sequential_style("CausalLM", "mask = ~torch.triu(torch.ones(length, length, dtype=torch.bool), 1)"),
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
        "persistent table sliced with narrow, an all-True mask",
        sequential_style("MaskedLM", "mask = torch.ones(length, length, dtype=torch.bool)"),
    ),
]
