"""Chapter 9 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``).

The chapter's setup cell imports math, time, torch, ``nn``, ``torch.nn.functional as F`` and the given
code of chapters 2 to 6 (``causal_mask``, ``scaled_dot_product_attention``, ``MultiHeadAttention``,
``split_heads``, ``merge_heads``, ``sinusoidal_positional_encoding``, ``FeedForward``,
``TransformerBlock``, ``CausalLM``). A ``Seq2SeqTransformer`` answer brings its own ``DecoderBlock``
(in the released notebook that cell is still the stub). Most bugs are one change to a correct
answer, written as a replacement of one line, as a learner's slip would be.
"""

from corpus import advised, alternative, bug

# ---------------------------------------------------------------------------------------
# DecoderBlock

DECODER_BLOCK = """
class DecoderBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.0, norm_first=True):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.cross_attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = FeedForward(d_model, d_ff, dropout=dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, memory, memory_mask=None):
        T = x.shape[1]
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        pad = None if memory_mask is None else memory_mask[:, None, None, :]
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.drop(self.self_attn(h, h, h, mask=causal)[0])
            h = self.norm2(x)
            x = x + self.drop(self.cross_attn(h, memory, memory, mask=pad)[0])
            x = x + self.drop(self.ffn(self.norm3(x)))
        else:
            x = self.norm1(x + self.drop(self.self_attn(x, x, x, mask=causal)[0]))
            x = self.norm2(x + self.drop(self.cross_attn(x, memory, memory, mask=pad)[0]))
            x = self.norm3(x + self.drop(self.ffn(x)))
        return x
"""


def changed(source: str, old: str, new: str, count: int = -1) -> str:
    """``source`` with ``old`` replaced by ``new`` (which must be there)."""
    assert old in source, old
    return source.replace(old, new, count)


def block_bug(label, old, new, fails, says="", count=-1):
    return bug("DecoderBlock", label, changed(DECODER_BLOCK, old, new, count), fails=fails, says=says)


ENTRIES = [
    block_bug(
        "no causal mask",
        "mask=causal)",
        "mask=None)",
        ["future_targets_never_change_earlier_outputs", "matches_the_reference_pre_ln"],
        "future",
    ),
    block_bug(
        "causal mask lets each position see the next",
        "torch.tril(torch.ones(T, T, dtype=torch.bool))",
        "torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=1)",
        ["future_targets_never_change_earlier_outputs"],
        "future",
    ),
    block_bug(
        "cross-attention queries from memory",
        "self.cross_attn(h, memory, memory, mask=pad)",
        "self.cross_attn(memory, h, h)",
        ["output_shape", "matches_the_reference_pre_ln"],
    ),
    block_bug(
        "memory mask ignored",
        "mask=pad)",
        "mask=None)",
        ["memory_mask_hides_padding"],
        "padding",
    ),
    block_bug(
        "memory mask inverted",
        "memory_mask[:, None, None, :]",
        "~memory_mask[:, None, None, :]",
        ["memory_mask_hides_padding"],
    ),
    block_bug(
        "memory normalised by norm2",
        "self.cross_attn(h, memory, memory, mask=pad)",
        "self.cross_attn(h, self.norm2(memory), self.norm2(memory), mask=pad)",
        ["matches_the_reference_pre_ln"],
        "memory",
    ),
    block_bug(
        "Pre-LN feed-forward without norm3",
        "x = x + self.drop(self.ffn(self.norm3(x)))",
        "x = x + self.drop(self.ffn(x))",
        ["matches_the_reference_pre_ln"],
    ),
    block_bug(
        "dropout on the residual stream",
        "x = x + self.drop(self.ffn(self.norm3(x)))",
        "x = self.drop(x + self.ffn(self.norm3(x)))",
        ["dropout_acts_on_sublayer_outputs"],
        "dropout",
    ),
    block_bug(
        "memory mask without the head axis",
        "memory_mask[:, None, None, :]",
        "memory_mask[:, None, :]",
        ["memory_mask_hides_padding"],
    ),
    block_bug(
        "always Pre-LN",
        "if self.norm_first:",
        "if True:",
        ["matches_the_reference_post_ln"],
        "Pre-LN",
    ),
    block_bug(
        "one LayerNorm for every sublayer",
        "h = self.norm2(x)",
        "h = self.norm1(x)",
        ["matches_the_reference_pre_ln"],
    ),
    block_bug(
        "zeroes padded memory in place",
        "        pad = None",
        "        if memory_mask is not None:\n            memory.mul_(memory_mask[..., None])\n        pad = None",
        ["memory_mask_hides_padding"],
        "in place",
    ),
    alternative(
        "DecoderBlock",
        "triu complement, expanded masks, functional dropout",
        """
        class DecoderBlock(nn.Module):
            def __init__(self, d_model, num_heads, d_ff, dropout=0.0, norm_first=True):
                nn.Module.__init__(self)
                self.self_attn, self.cross_attn = MultiHeadAttention(d_model, num_heads), MultiHeadAttention(d_model, num_heads)
                self.ffn = FeedForward(d_model, d_ff, "relu", dropout)
                self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
                self.p, self.norm_first = dropout, norm_first

            def sublayers(self, x, memory, memory_mask):
                T, S = x.shape[1], memory.shape[1]
                future = torch.ones(T, T).triu(1).bool()
                keys = None
                if memory_mask is not None:
                    keys = memory_mask.unsqueeze(1).unsqueeze(2).expand(-1, 1, T, S)
                return [
                    lambda y: self.self_attn(y, y, y, ~future)[0],
                    lambda y: self.cross_attn(y, memory, memory, keys)[0],
                    self.ffn,
                ]

            def forward(self, x, memory, memory_mask=None):
                norms = [self.norm1, self.norm2, self.norm3]
                for norm, sublayer in zip(norms, self.sublayers(x, memory, memory_mask)):
                    if self.norm_first:
                        x = x + F.dropout(sublayer(norm(x)), self.p, self.training)
                    else:
                        x = norm(x + F.dropout(sublayer(x), self.p, self.training))
                return x
    """,
    ),
    alternative(
        "DecoderBlock",
        "float64 inside, mask built from positions",
        """
        class DecoderBlock(nn.Module):
            def __init__(self, d_model, num_heads, d_ff, dropout=0.0, norm_first=True):
                super().__init__()
                self.norm_first = norm_first
                self.self_attn = MultiHeadAttention(d_model, num_heads)
                self.cross_attn = MultiHeadAttention(d_model, num_heads)
                self.ffn = FeedForward(d_model, d_ff, "relu", dropout)
                self.norm1 = nn.LayerNorm(d_model)
                self.norm2 = nn.LayerNorm(d_model)
                self.norm3 = nn.LayerNorm(d_model)
                self.dropout = nn.Dropout(dropout)

            def forward(self, x, memory, memory_mask=None):
                position = torch.arange(x.shape[1])
                causal = position[None, :] <= position[:, None]
                cross = memory_mask.view(memory_mask.shape[0], 1, 1, -1) if memory_mask is not None else None
                if not self.norm_first:
                    x = self.norm1(x + self.dropout(self.self_attn(x, mask=causal)[0]))
                    x = self.norm2(x + self.dropout(self.cross_attn(x, memory, mask=cross)[0]))
                    return self.norm3(x + self.dropout(self.ffn(x)))
                a = self.norm1(x)
                x = x + self.dropout(self.self_attn(a, mask=causal)[0])
                x = x + self.dropout(self.cross_attn(self.norm2(x), memory, mask=cross)[0])
                return x + self.dropout(self.ffn(self.norm3(x)))
    """,
    ),
    alternative(
        "DecoderBlock",
        "padding applied with masked_fill on a full (B, H, T, S) mask",
        """
        class DecoderBlock(nn.Module):
            def __init__(self, d_model, num_heads, d_ff, dropout=0.0, norm_first=True):
                super().__init__()
                self.heads = num_heads
                self.norm_first = norm_first
                self.self_attn = MultiHeadAttention(d_model, num_heads)
                self.cross_attn = MultiHeadAttention(d_model, num_heads)
                self.ffn = FeedForward(d_model, d_ff, dropout=dropout)
                self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
                self.dropout = nn.Dropout(dropout)

            def forward(self, x, memory, memory_mask=None):
                B, T, _ = x.shape
                S = memory.shape[1]
                causal = causal_mask(T)
                full = torch.ones(B, self.heads, T, S, dtype=torch.bool)
                if memory_mask is not None:
                    full = full.masked_fill(~memory_mask[:, None, None, :], False)
                if self.norm_first:
                    y = self.norm1(x)
                    x = x + self.dropout(self.self_attn(y, y, y, causal)[0])
                    y = self.norm2(x)
                    x = x + self.dropout(self.cross_attn(y, memory, memory, full)[0])
                    return x + self.dropout(self.ffn(self.norm3(x)))
                x = self.norm1(x + self.dropout(self.self_attn(x, x, x, causal)[0]))
                x = self.norm2(x + self.dropout(self.cross_attn(x, memory, memory, full)[0]))
                return self.norm3(x + self.dropout(self.ffn(x)))
    """,
    ),
]

# ---------------------------------------------------------------------------------------
# Seq2SeqTransformer

SEQ2SEQ = (
    DECODER_BLOCK
    + """

class Seq2SeqTransformer(nn.Module):
    def __init__(self, src_vocab_size, tgt_vocab_size, d_model, num_heads, d_ff, num_layers, max_len,
                 dropout=0.0, pad_id=0):
        super().__init__()
        self.pad_id = pad_id
        self.src_embedding = nn.Embedding(src_vocab_size, d_model)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_positional_encoding(max_len, d_model), persistent=False)
        self.encoder_blocks = nn.ModuleList(
            [TransformerBlock(d_model, num_heads, d_ff, norm_first=True, dropout=dropout) for _ in range(num_layers)]
        )
        self.encoder_norm = nn.LayerNorm(d_model)
        self.decoder_blocks = nn.ModuleList([DecoderBlock(d_model, num_heads, d_ff, dropout) for _ in range(num_layers)])
        self.decoder_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, tgt_vocab_size)

    def encode(self, src):
        keep = (src != self.pad_id)[:, None, None, :]
        x = self.src_embedding(src) + self.positions[: src.shape[1]]
        for block in self.encoder_blocks:
            x = block(x, keep)
        return self.encoder_norm(x)

    def decode(self, tgt_in, memory, src):
        keep = src != self.pad_id
        x = self.tgt_embedding(tgt_in) + self.positions[: tgt_in.shape[1]]
        for block in self.decoder_blocks:
            x = block(x, memory, keep)
        return self.head(self.decoder_norm(x))

    def forward(self, src, tgt_in):
        return self.decode(tgt_in, self.encode(src), src)
"""
)


def model_bug(label, old, new, fails, says="", count=-1):
    return bug("Seq2SeqTransformer", label, changed(SEQ2SEQ, old, new, count), fails=fails, says=says)


ENTRIES += [
    model_bug(
        "encoder reads padding",
        "x = block(x, keep)",
        "x = block(x)",
        ["padding_is_never_attended"],
        "padding",
    ),
    model_bug(
        "cross-attention reads padding",
        "x = block(x, memory, keep)",
        "x = block(x, memory)",
        ["padding_is_never_attended"],
        "padding",
    ),
    model_bug(
        "padding mask inverted in the encoder",
        "keep = (src != self.pad_id)[:, None, None, :]",
        "keep = (src == self.pad_id)[:, None, None, :]",
        ["matches_the_reference"],
    ),
    model_bug(
        "pad_id hard-coded as 0",
        "!= self.pad_id",
        "!= 0",
        ["respects_pad_id"],
        "pad_id",
    ),
    model_bug(
        "no final encoder LayerNorm",
        "return self.encoder_norm(x)",
        "return x",
        ["encode_matches_the_reference", "matches_the_reference"],
        "encoder_norm",
    ),
    model_bug(
        "no positions on the target side",
        "x = self.tgt_embedding(tgt_in) + self.positions[: tgt_in.shape[1]]",
        "x = self.tgt_embedding(tgt_in)",
        ["matches_the_reference"],
    ),
    model_bug(
        "forward feeds source embeddings as memory",
        "return self.decode(tgt_in, self.encode(src), src)",
        "return self.decode(tgt_in, self.src_embedding(src), src)",
        ["matches_the_reference", "encode_and_decode_make_forward"],
    ),
    model_bug(
        "embeddings scaled by sqrt(d_model)",
        "x = self.src_embedding(src) + self.positions",
        "x = self.src_embedding(src) * math.sqrt(self.head.in_features) + self.positions",
        ["encode_matches_the_reference"],
        "sqrt(d_model)",
    ),
    model_bug(
        "positions as a trained parameter",
        'self.register_buffer("positions", sinusoidal_positional_encoding(max_len, d_model), persistent=False)',
        "self.positions = nn.Parameter(sinusoidal_positional_encoding(max_len, d_model))",
        ["matches_the_reference"],
        "register_buffer",
    ),
    model_bug(
        "decoder blocks without a causal mask",
        "mask=causal)",
        "mask=None)",
        ["future_target_tokens_never_change_earlier_logits"],
        "future",
    ),
    model_bug(
        "decoder blocks Post-LN",
        "DecoderBlock(d_model, num_heads, d_ff, dropout)",
        "DecoderBlock(d_model, num_heads, d_ff, dropout, norm_first=False)",
        ["matches_the_reference"],
    ),
    alternative(
        "Seq2SeqTransformer",
        "persistent position buffer, (B, 1, S, S) encoder mask, positions sliced with narrow",
        changed(
            changed(SEQ2SEQ, "persistent=False", "persistent=True"),
            "keep = (src != self.pad_id)[:, None, None, :]",
            "keep = (src != self.pad_id)[:, None, :].expand(-1, src.shape[1], -1)[:, None]",
        ).replace("self.positions[: tgt_in.shape[1]]", "self.positions.narrow(0, 0, tgt_in.shape[1])"),
    ),
    alternative(
        "Seq2SeqTransformer",
        "eq/logical_not masks, blocks applied by a helper",
        changed(
            SEQ2SEQ,
            "keep = src != self.pad_id\n",
            "keep = src.eq(self.pad_id).logical_not()\n",
        ).replace(
            "    def forward(self, src, tgt_in):\n        return self.decode(tgt_in, self.encode(src), src)",
            "    def forward(self, src, tgt_in):\n        memory = self.encode(src)\n"
            "        logits = self.decode(tgt_in, memory, src)\n        return logits",
        ),
    ),
    alternative(
        "Seq2SeqTransformer",
        "its own Post-LN-capable decoder block, positions computed once per call",
        changed(
            SEQ2SEQ,
            "        x = self.src_embedding(src) + self.positions[: src.shape[1]]",
            "        table = self.positions\n        x = self.src_embedding(src) + table[torch.arange(src.shape[1])]",
        ),
    ),
]

# ---------------------------------------------------------------------------------------
# greedy_decode

GREEDY = """
def greedy_decode(model, src, bos_id, eos_id, max_len):
    memory = model.encode(src)
    B = src.shape[0]
    out = torch.full((B, 1), bos_id, dtype=torch.long)
    finished = torch.zeros(B, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(max_len):
            logits = model.decode(out, memory, src)
            nxt = logits[:, -1].argmax(-1)
            nxt[finished] = model.pad_id
            out = torch.cat([out, nxt[:, None]], dim=1)
            finished = finished | (nxt == eos_id)
            if finished.all():
                break
    return out[:, 1:]
"""


def greedy_bug(label, old, new, fails, says=""):
    return bug("greedy_decode", label, changed(GREEDY, old, new), fails=fails, says=says)


ENTRIES += [
    greedy_bug("returns BOS too", "return out[:, 1:]", "return out", ["returns_token_ids_per_row"], "BOS"),
    greedy_bug("argmax of the first position", "logits[:, -1]", "logits[:, 0]", ["matches_greedy_on_a_known_model"]),
    greedy_bug(
        "keeps generating after EOS",
        "            nxt[finished] = model.pad_id\n",
        "",
        ["pads_each_row_after_its_first_eos"],
        "pad_id",
    ),
    greedy_bug(
        "pads with EOS",
        "nxt[finished] = model.pad_id",
        "nxt[finished] = eos_id",
        ["pads_each_row_after_its_first_eos"],
        "pad_id",
    ),
    greedy_bug(
        "never stops early",
        "            if finished.all():\n                break\n",
        "",
        ["stops_when_every_row_has_ended"],
        "every row",
    ),
    greedy_bug(
        "stops when the first row ends",
        "if finished.all():",
        "if finished.any():",
        ["stops_when_every_row_has_ended"],
    ),
    advised(
        "greedy_decode",
        "runs the encoder at every step (right tokens, repeated work)",
        changed(
            GREEDY, "logits = model.decode(out, memory, src)", "logits = model.decode(out, model.encode(src), src)"
        ),
        advice=["encoder_runs_once"],
        says="once",
    ),
    advised(
        "greedy_decode",
        "calls the whole model on every prefix (right tokens, the source encoded at every step)",
        changed(GREEDY, "logits = model.decode(out, memory, src)", "logits = model(src, out)"),
        advice=["encoder_runs_once"],
        says="once",
    ),
    greedy_bug(
        "one step short",
        "for _ in range(max_len):",
        "for _ in range(max_len - 1):",
        ["runs_max_len_steps_without_eos"],
        "max_len",
    ),
    greedy_bug(
        "samples instead of taking the argmax",
        "nxt = logits[:, -1].argmax(-1)",
        "nxt = torch.multinomial(logits[:, -1].softmax(-1), 1).squeeze(-1)",
        ["matches_greedy_on_a_known_model"],
    ),
    alternative(
        "greedy_decode",
        "one row at a time, padded at the end",
        """
        def greedy_decode(model, src, bos_id, eos_id, max_len):
            rows = []
            for b in range(src.shape[0]):
                row_src = src[b : b + 1]
                memory = model.encode(row_src)
                tokens = [bos_id]
                while len(tokens) - 1 < max_len and (len(tokens) == 1 or tokens[-1] != eos_id):
                    logits = model.decode(torch.tensor([tokens]), memory, row_src)
                    tokens.append(int(logits[0, -1].argmax()))
                rows.append(tokens[1:])
            length = max(len(r) for r in rows)
            out = torch.full((len(rows), length), model.pad_id, dtype=torch.long)
            for b, r in enumerate(rows):
                out[b, : len(r)] = torch.tensor(r)
            return out
    """,
    ),
    alternative(
        "greedy_decode",
        "only the rows still running are decoded",
        """
        @torch.no_grad()
        def greedy_decode(model, src, bos_id, eos_id, max_len):
            memory = model.encode(src)
            B = src.shape[0]
            prefix = torch.full((B, max_len + 1), model.pad_id, dtype=torch.long)
            prefix[:, 0] = bos_id
            running = torch.arange(B)
            steps = 0
            for t in range(1, max_len + 1):
                logits = model.decode(prefix[running, :t], memory[running], src[running])
                chosen = logits[:, -1].argmax(dim=-1)
                prefix[running, t] = chosen
                steps = t
                running = running[chosen != eos_id]
                if len(running) == 0:
                    break
            return prefix[:, 1 : steps + 1]
    """,
    ),
    alternative(
        "greedy_decode",
        "Python lists and a done flag per row",
        """
        def greedy_decode(model, src, bos_id, eos_id, max_len):
            with torch.no_grad():
                memory = model.encode(src)
                seqs = [[bos_id] for _ in range(len(src))]
                done = [False] * len(src)
                while not all(done) and len(seqs[0]) <= max_len:
                    logits = model.decode(torch.tensor(seqs), memory, src)[:, -1, :]
                    for i, token in enumerate(logits.argmax(-1).tolist()):
                        seqs[i].append(model.pad_id if done[i] else token)
                        done[i] = done[i] or token == eos_id
                return torch.tensor(seqs, dtype=torch.int64)[:, 1:]
    """,
    ),
]

# ---------------------------------------------------------------------------------------
# sample_next_token

SAMPLE = """
def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    scores = logits / temperature
    if top_k is not None:
        k = min(top_k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        probs = sorted_scores.softmax(-1)
        cum = probs.cumsum(-1)
        remove = cum - probs >= top_p
        sorted_scores = sorted_scores.masked_fill(remove, float("-inf"))
        scores = torch.full_like(scores, float("-inf")).scatter(-1, order, sorted_scores)
    probs = scores.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
"""


def sample_bug(label, old, new, fails, says=""):
    return bug("sample_next_token", label, changed(SAMPLE, old, new), fails=fails, says=says)


ENTRIES += [
    sample_bug(
        "temperature multiplies",
        "scores = logits / temperature",
        "scores = logits * temperature",
        ["temperature_divides_the_logits"],
        "temperature",
    ),
    sample_bug(
        "nucleus without the crossing token",
        "remove = cum - probs >= top_p",
        "remove = cum > top_p",
        ["top_p_keeps_the_nucleus"],
        "crosses",
    ),
    sample_bug(
        "top-k keeps k - 1",
        "scores < kth",
        "scores <= kth",
        ["top_k_keeps_the_k_most_likely"],
    ),
    sample_bug(
        "nucleus chosen before the temperature",
        "sorted_scores, order = scores.sort(dim=-1, descending=True)",
        "sorted_scores, order = (scores * temperature).sort(dim=-1, descending=True)",
        ["top_k_and_top_p_combine"],
    ),
    sample_bug(
        "ignores the generator",
        "torch.multinomial(probs, 1, generator=generator)",
        "torch.multinomial(probs, 1)",
        ["reproducible_with_a_generator"],
        "generator",
    ),
    sample_bug(
        "seeds the global generator",
        "    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)",
        "    torch.manual_seed(0)\n    return torch.multinomial(probs, 1).squeeze(-1)",
        ["reproducible_with_a_generator"],
        "generator",
    ),
    sample_bug(
        "one random number for the whole batch",
        "    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)",
        "    u = torch.rand(1, generator=generator)\n"
        "    return (probs.cumsum(-1) < u).sum(-1).clamp(max=probs.shape[-1] - 1)",
        ["draws_follow_the_softmax"],
    ),
    sample_bug(
        "no argmax branch for temperature 0",
        "    if temperature == 0:\n        return logits.argmax(-1)\n",
        "",
        ["temperature_zero_is_argmax"],
    ),
    sample_bug(
        "softmax over the batch",
        "probs = scores.softmax(-1)\n    return",
        "probs = scores.softmax(0)\n    return",
        ["draws_follow_the_softmax"],
    ),
    sample_bug(
        "nucleus measured on the probabilities before top-k",
        "probs = sorted_scores.softmax(-1)",
        "probs = (logits / temperature).sort(dim=-1, descending=True).values.softmax(-1)",
        ["top_k_and_top_p_combine"],
    ),
    sample_bug(
        "always the argmax",
        "    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)",
        "    return probs.argmax(-1)",
        ["draws_follow_the_softmax"],
    ),
    alternative(
        "sample_next_token",
        "Gumbel-max trick",
        """
        def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
            if temperature == 0:
                return logits.argmax(dim=-1)
            scores = logits.double() / temperature
            if top_k is not None and top_k < scores.shape[-1]:
                threshold = scores.topk(top_k, dim=-1).values[..., -1, None]
                scores = torch.where(scores >= threshold, scores, torch.tensor(-math.inf, dtype=scores.dtype))
            if top_p is not None:
                p = scores.softmax(-1)
                p_sorted, idx = p.sort(-1, descending=True)
                keep_sorted = p_sorted.cumsum(-1) - p_sorted < top_p
                keep = torch.zeros_like(keep_sorted).scatter(-1, idx, keep_sorted)
                scores = scores.masked_fill(~keep, -math.inf)
            u = torch.rand(scores.shape, generator=generator, dtype=torch.float64).clamp(1e-300, 1.0)
            gumbel = -torch.log(-torch.log(u))
            return (scores + gumbel).argmax(-1)
    """,
    ),
    alternative(
        "sample_next_token",
        "inverse CDF in float64",
        """
        def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
            if temperature == 0:
                return torch.argmax(logits, -1)
            probs = torch.softmax(logits.double() / temperature, -1)
            keep = torch.ones_like(probs, dtype=torch.bool)
            if top_k is not None:
                order = probs.argsort(-1, descending=True)
                keep = torch.zeros_like(keep).scatter(-1, order[:, :top_k], True)
                probs = torch.where(keep, probs, 0.0)
                probs = probs / probs.sum(-1, keepdim=True)
            if top_p is not None:
                sorted_p, order = probs.sort(-1, descending=True)
                before = torch.cumsum(sorted_p, -1) - sorted_p
                keep = torch.zeros_like(keep).scatter(-1, order, before < top_p) & keep
                probs = torch.where(keep, probs, 0.0)
                probs = probs / probs.sum(-1, keepdim=True)
            u = torch.rand(probs.shape[0], 1, generator=generator, dtype=torch.float64)
            cdf = probs.cumsum(-1)
            index = (cdf < u * cdf[:, -1:]).sum(-1)
            last = torch.where(keep, torch.arange(probs.shape[-1]), -1).amax(-1)
            return torch.minimum(index, last)
    """,
    ),
    alternative(
        "sample_next_token",
        "one row at a time with Python sets",
        """
        def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
            out = []
            for row in logits:
                if temperature == 0:
                    out.append(int(row.argmax()))
                    continue
                scaled = row / temperature
                ranked = scaled.argsort(descending=True).tolist()
                if top_k is not None:
                    ranked = ranked[:top_k]
                probs = torch.softmax(scaled[ranked], 0)
                if top_p is not None:
                    total, n = 0.0, 0
                    for prob in probs.tolist():
                        n += 1
                        total += prob
                        if total >= top_p:
                            break
                    ranked, probs = ranked[:n], probs[:n] / probs[:n].sum()
                choice = torch.multinomial(probs, 1, generator=generator)
                out.append(ranked[int(choice)])
            return torch.tensor(out)
    """,
    ),
]

# ---------------------------------------------------------------------------------------
# beam_search

BEAM = """
def beam_search(next_log_probs, bos_id, eos_id, beam_size, max_len):
    beams = [([bos_id], 0.0)]
    finished = []
    for step in range(max_len):
        logp = next_log_probs(torch.tensor([seq for seq, _ in beams]))
        candidates = []
        for (seq, score), row in zip(beams, logp):
            for token in range(row.shape[0]):
                candidates.append((seq + [token], score + row[token].item()))
        candidates.sort(key=lambda c: c[1], reverse=True)
        beams = []
        for seq, score in candidates[:beam_size]:
            if seq[-1] == eos_id or len(seq) - 1 == max_len:
                finished.append((seq, score))
            else:
                beams.append((seq, score))
        if not beams:
            break
    best_seq, best_score = max(finished, key=lambda c: c[1])
    return torch.tensor(best_seq[1:]), best_score
"""


def beam_bug(label, old, new, fails, says=""):
    return bug("beam_search", label, changed(BEAM, old, new), fails=fails, says=says)


ENTRIES += [
    beam_bug(
        "length-normalised scores",
        "max(finished, key=lambda c: c[1])",
        "max(finished, key=lambda c: c[1] / (len(c[0]) - 1))",
        ["finds_what_greedy_misses"],
    ),
    beam_bug(
        "EOS does not end a hypothesis",
        "if seq[-1] == eos_id or len(seq) - 1 == max_len:",
        "if len(seq) - 1 == max_len:",
        ["finds_what_greedy_misses"],
    ),
    beam_bug(
        "adds probabilities instead of log-probabilities",
        "score + row[token].item()",
        "score + row[token].exp().item()",
        ["wide_beam_equals_exhaustive_search"],
    ),
    beam_bug(
        "returns the first hypothesis to finish",
        "best_seq, best_score = max(finished, key=lambda c: c[1])",
        "best_seq, best_score = finished[0]",
        ["finds_what_greedy_misses"],
    ),
    beam_bug(
        "one token too many",
        "len(seq) - 1 == max_len",
        "len(seq) - 1 == max_len + 1",
        ["returns_tokens_and_their_log_probability"],
    ),
    beam_bug(
        "returns BOS too",
        "return torch.tensor(best_seq[1:]), best_score",
        "return torch.tensor(best_seq), best_score",
        ["returns_tokens_and_their_log_probability"],
        "BOS",
    ),
    beam_bug(
        "beam size ignored (greedy)",
        "candidates[:beam_size]",
        "candidates[:1]",
        ["finds_what_greedy_misses"],
    ),
    beam_bug(
        "drops the EOS token",
        "return torch.tensor(best_seq[1:]), best_score",
        "return torch.tensor([t for t in best_seq[1:] if t != eos_id]), best_score",
        ["returns_tokens_and_their_log_probability"],
    ),
    beam_bug(
        "score of the last step only",
        "score + row[token].item()",
        "row[token].item()",
        ["wide_beam_equals_exhaustive_search"],
    ),
    alternative(
        "beam_search",
        "finished hypotheses compete, topk over a flat tensor",
        """
        def beam_search(next_log_probs, bos_id, eos_id, beam_size, max_len):
            beam = [([bos_id], 0.0, False)]
            while not all(done for _, _, done in beam):
                live = [b for b in beam if not b[2]]
                logp = next_log_probs(torch.tensor([s for s, _, _ in live])).double()
                totals = torch.tensor([score for _, score, _ in live], dtype=torch.float64)[:, None] + logp
                V = logp.shape[-1]
                best = totals.flatten().topk(min(beam_size, totals.numel()))
                pool = [b for b in beam if b[2]]
                for value, index in zip(best.values.tolist(), best.indices.tolist()):
                    seq = live[index // V][0] + [index % V]
                    pool.append((seq, value, seq[-1] == eos_id or len(seq) - 1 >= max_len))
                beam = sorted(pool, key=lambda b: b[1], reverse=True)[:beam_size]
            seq, score, _ = beam[0]
            return torch.tensor(seq[1:]), score
    """,
    ),
    alternative(
        "beam_search",
        "one prefix per call",
        """
        def beam_search(next_log_probs, bos_id, eos_id, beam_size, max_len):
            beams, finished = [((bos_id,), 0.0)], []
            for _ in range(max_len):
                candidates = []
                for seq, score in beams:
                    row = next_log_probs(torch.tensor([seq]))[0]
                    candidates += [(seq + (t,), score + float(row[t])) for t in range(len(row))]
                candidates.sort(key=lambda c: -c[1])
                beams = []
                for seq, score in candidates[:beam_size]:
                    (finished if seq[-1] == eos_id else beams).append((seq, score))
            finished += beams
            seq, score = max(finished, key=lambda c: c[1])
            return torch.tensor(seq[1:], dtype=torch.long), score
    """,
    ),
    alternative(
        "beam_search",
        "heapq and a 0-dim tensor score",
        """
        import heapq

        def beam_search(next_log_probs, bos_id, eos_id, beam_size, max_len):
            alive, done = [(0.0, [bos_id])], []
            while alive:
                lp = next_log_probs(torch.tensor([s for _, s in alive], dtype=torch.long)).double()
                pool = [(score + lp[i, t].item(), seq + [t]) for i, (score, seq) in enumerate(alive) for t in range(lp.shape[1])]
                pool += done
                kept = heapq.nlargest(beam_size, pool, key=lambda c: c[0])
                done = [c for c in kept if c[1][-1] == eos_id or len(c[1]) > max_len]
                alive = [c for c in kept if c not in done]
            score, seq = max(done, key=lambda c: c[0])
            return torch.tensor(seq[1:]), torch.tensor(score)
    """,
    ),
]

# ---------------------------------------------------------------------------------------
# CachedSelfAttention

CACHED = """
class CachedSelfAttention(nn.Module):
    def __init__(self, d_model, num_heads):
        super().__init__()
        self.h = num_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)

    def forward(self, x_new, cache=None):
        q = split_heads(self.w_q(x_new), self.h)
        k = split_heads(self.w_k(x_new), self.h)
        v = split_heads(self.w_v(x_new), self.h)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        T, L = q.shape[2], k.shape[2]
        mask = torch.ones(T, L, dtype=torch.bool).tril(diagonal=L - T)
        out, _ = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(merge_heads(out)), (k, v)
"""


def cached_bug(label, old, new, fails, says=""):
    return bug("CachedSelfAttention", label, changed(CACHED, old, new), fails=fails, says=says)


ENTRIES += [
    cached_bug(
        "causal mask not shifted by the cache",
        ".tril(diagonal=L - T)",
        ".tril()",
        ["uses_the_cache_it_is_given"],
    ),
    cached_bug(
        "no causal mask",
        "out, _ = scaled_dot_product_attention(q, k, v, mask)",
        "out, _ = scaled_dot_product_attention(q, k, v)",
        ["without_a_cache_is_causal_attention"],
        "future",
    ),
    cached_bug(
        "new keys put before the cache",
        "k = torch.cat([cache[0], k], dim=2)\n            v = torch.cat([cache[1], v], dim=2)",
        "k = torch.cat([k, cache[0]], dim=2)\n            v = torch.cat([v, cache[1]], dim=2)",
        ["returns_the_extended_cache"],
    ),
    bug(
        "CachedSelfAttention",
        "keeps its own cache and ignores the one given",
        changed(
            changed(
                CACHED,
                "        if cache is not None:\n",
                "        cache = getattr(self, 'kept', None) if cache is not None else None\n        if cache is not None:\n",
            ),
            "        return self.w_o(merge_heads(out)), (k, v)",
            "        self.kept = (k, v)\n        return self.w_o(merge_heads(out)), (k, v)",
        ),
        fails=["uses_the_cache_it_is_given"],
    ),
    cached_bug(
        "returns only the new keys and values",
        "return self.w_o(merge_heads(out)), (k, v)",
        "return self.w_o(merge_heads(out)), (k[:, :, L - T :], v[:, :, L - T :])",
        ["returns_the_extended_cache", "token_by_token_equals_the_whole_sequence"],
    ),
    cached_bug(
        "cache holds keys before the head split",
        "return self.w_o(merge_heads(out)), (k, v)",
        "return self.w_o(merge_heads(out)), (merge_heads(k), merge_heads(v))",
        ["returns_the_extended_cache"],
    ),
    cached_bug(
        "keys cached as values",
        "return self.w_o(merge_heads(out)), (k, v)",
        "return self.w_o(merge_heads(out)), (k, k)",
        ["returns_the_extended_cache", "token_by_token_equals_the_whole_sequence"],
    ),
    cached_bug(
        "scores divided by sqrt(d_model)",
        "        out, _ = scaled_dot_product_attention(q, k, v, mask)",
        "        w = (q @ k.transpose(-2, -1) / math.sqrt(x_new.shape[-1])).masked_fill(~mask, float('-inf')).softmax(-1)\n"
        "        out = w @ v",
        ["without_a_cache_is_causal_attention"],
    ),
    cached_bug(
        "causal mask shifted the wrong way",
        ".tril(diagonal=L - T)",
        ".tril(diagonal=T - L)",
        ["uses_the_cache_it_is_given"],
    ),
    alternative(
        "CachedSelfAttention",
        "einsum and positions",
        """
        class CachedSelfAttention(nn.Module):
            def __init__(self, d_model, num_heads):
                nn.Module.__init__(self)
                self.num_heads, self.d_head = num_heads, d_model // num_heads
                self.w_q, self.w_k = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
                self.w_v, self.w_o = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

            def heads(self, t):
                B, T, _ = t.shape
                return t.view(B, T, self.num_heads, self.d_head).permute(0, 2, 1, 3)

            def forward(self, x_new, cache=None):
                q, k, v = self.heads(self.w_q(x_new)), self.heads(self.w_k(x_new)), self.heads(self.w_v(x_new))
                past = 0 if cache is None else cache[0].shape[2]
                if past:
                    k, v = torch.cat((cache[0], k), 2), torch.cat((cache[1], v), 2)
                scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(self.d_head)
                query_pos = past + torch.arange(q.shape[2])
                scores = scores.masked_fill(torch.arange(k.shape[2])[None, :] > query_pos[:, None], -math.inf)
                out = torch.einsum("bhqk,bhkd->bhqd", scores.softmax(-1), v)
                B, H, T, D = out.shape
                return self.w_o(out.permute(0, 2, 1, 3).reshape(B, T, H * D)), (k, v)
    """,
    ),
    alternative(
        "CachedSelfAttention",
        "torch's fused attention",
        """
        class CachedSelfAttention(nn.Module):
            def __init__(self, d_model, num_heads):
                super().__init__()
                self.num_heads = num_heads
                for name in ("w_q", "w_k", "w_v", "w_o"):
                    setattr(self, name, nn.Linear(d_model, d_model))

            def forward(self, x_new, cache=None):
                q, k, v = (split_heads(w(x_new), self.num_heads) for w in (self.w_q, self.w_k, self.w_v))
                if cache is not None:
                    k, v = torch.cat([cache[0], k], -2), torch.cat([cache[1], v], -2)
                n, total = q.shape[-2], k.shape[-2]
                allowed = torch.ones(n, total, dtype=torch.bool).tril(total - n)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
                return self.w_o(merge_heads(out)), (k, v)
    """,
    ),
    alternative(
        "CachedSelfAttention",
        "new tokens one at a time inside",
        """
        class CachedSelfAttention(nn.Module):
            def __init__(self, d_model, num_heads):
                super().__init__()
                self.num_heads = num_heads
                self.w_q = nn.Linear(d_model, d_model)
                self.w_k = nn.Linear(d_model, d_model)
                self.w_v = nn.Linear(d_model, d_model)
                self.w_o = nn.Linear(d_model, d_model)

            def forward(self, x_new, cache=None):
                keys = [] if cache is None else [cache[0]]
                values = [] if cache is None else [cache[1]]
                outputs = []
                for t in range(x_new.shape[1]):
                    x = x_new[:, t : t + 1]
                    keys.append(split_heads(self.w_k(x), self.num_heads))
                    values.append(split_heads(self.w_v(x), self.num_heads))
                    q = split_heads(self.w_q(x), self.num_heads)
                    out, _ = scaled_dot_product_attention(q, torch.cat(keys, 2), torch.cat(values, 2))
                    outputs.append(merge_heads(out))
                return self.w_o(torch.cat(outputs, 1)), (torch.cat(keys, 2), torch.cat(values, 2))
    """,
    ),
]

# ---------------------------------------------------------------------------------------
# grouped_query_attention

GQA = """
def grouped_query_attention(q, k, v, mask=None):
    B, H, N, d = q.shape
    G, M = k.shape[1], k.shape[2]
    r = H // G
    qg = q.reshape(B, G, r * N, d)
    scores = qg @ k.transpose(-1, -2) / math.sqrt(d)
    if mask is not None:
        full = mask.expand(B, H, N, M).reshape(B, G, r * N, M)
        scores = scores.masked_fill(~full, float("-inf"))
    out = scores.softmax(-1) @ v
    return out.reshape(B, H, N, v.shape[-1])
"""


def gqa_bug(label, old, new, fails, says=""):
    return bug("grouped_query_attention", label, changed(GQA, old, new), fails=fails, says=says)


ENTRIES += [
    bug(
        "grouped_query_attention",
        "heads grouped round-robin (repeat)",
        """
        def grouped_query_attention(q, k, v, mask=None):
            H, G = q.shape[1], k.shape[1]
            k = k.repeat(1, H // G, 1, 1)
            v = v.repeat(1, H // G, 1, 1)
            out, _ = scaled_dot_product_attention(q, k, v, mask)
            return out
    """,
        fails=["query_head_reads_its_group"],
        says="h // (H/G)",
    ),
    bug(
        "grouped_query_attention",
        "heads grouped round-robin (h % G)",
        """
        def grouped_query_attention(q, k, v, mask=None):
            H, G = q.shape[1], k.shape[1]
            group = torch.arange(H) % G
            scores = q @ k[:, group].transpose(-1, -2) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            return torch.softmax(scores, dim=-1) @ v[:, group]
    """,
        fails=["query_head_reads_its_group"],
        says="h // (H/G)",
    ),
    gqa_bug("mask ignored", "    if mask is not None:\n", "    if False:\n", ["applies_masks"]),
    gqa_bug(
        "mask taken as (N, N_k) only",
        "full = mask.expand(B, H, N, M).reshape(B, G, r * N, M)",
        "full = mask.reshape(N, M).repeat(r, 1)",
        ["applies_masks"],
    ),
    gqa_bug(
        "scores divided by sqrt(d_v)",
        "math.sqrt(d)",
        "math.sqrt(v.shape[-1])",
        ["matches_multi_head_when_g_equals_h"],
        "sqrt(d_v)",
    ),
    advised(
        "grouped_query_attention",
        "keys and values repeated for every head (right values, the memory GQA saves is spent)",
        """
        def grouped_query_attention(q, k, v, mask=None):
            r = q.shape[1] // k.shape[1]
            out, _ = scaled_dot_product_attention(q, k.repeat_interleave(r, 1), v.repeat_interleave(r, 1), mask)
            return out
    """,
        advice=["never_copies_keys_for_every_head"],
        says="repeated for every query head",
    ),
    gqa_bug(
        "softmax over the queries",
        "scores.softmax(-1)",
        "scores.softmax(-2)",
        ["matches_multi_head_when_g_equals_h"],
    ),
    gqa_bug(
        "only G = H or G = 1 work",
        "    qg = q.reshape(B, G, r * N, d)\n    scores = qg @ k.transpose(-1, -2) / math.sqrt(d)",
        "    scores = (q @ k.transpose(-1, -2) / math.sqrt(d)).reshape(B, G, r * N, M)",
        ["query_head_reads_its_group"],
    ),
    gqa_bug(
        "mask inverted",
        "masked_fill(~full,",
        "masked_fill(full,",
        ["applies_masks"],
    ),
    alternative(
        "grouped_query_attention",
        "einsum over (group, head-in-group)",
        """
        def grouped_query_attention(q, k, v, mask=None):
            B, H, N, d = q.shape
            G = k.shape[1]
            q5 = q.view(B, G, H // G, N, d)
            s = torch.einsum("bgjnd,bgmd->bgjnm", q5, k) * d**-0.5
            if mask is not None:
                m = torch.broadcast_to(mask, (B, H, N, k.shape[2])).reshape(B, G, H // G, N, k.shape[2])
                s = s.masked_fill(m.logical_not(), -math.inf)
            out = torch.einsum("bgjnm,bgme->bgjne", torch.softmax(s, -1), v)
            return out.reshape(B, H, N, v.shape[-1])
    """,
    ),
    alternative(
        "grouped_query_attention",
        "a loop over groups",
        """
        def grouped_query_attention(q, k, v, mask=None):
            B, H, N, d = q.shape
            G = k.shape[1]
            r = H // G
            if mask is not None:
                mask = mask.expand(B, H, N, k.shape[2])
            outs = []
            for g in range(G):
                qg = q[:, g * r : (g + 1) * r].reshape(B, r * N, d)
                s = qg @ k[:, g].transpose(1, 2) / math.sqrt(d)
                if mask is not None:
                    s = s.masked_fill(~mask[:, g * r : (g + 1) * r].reshape(B, r * N, -1), float("-inf"))
                outs.append((s.softmax(-1) @ v[:, g]).reshape(B, r, N, -1))
            return torch.cat(outs, dim=1)
    """,
    ),
    alternative(
        "grouped_query_attention",
        "float64 and the chapter-2 function on stacked queries",
        """
        def grouped_query_attention(q, k, v, mask=None):
            B, H, N, d = q.shape
            G, M = k.shape[1], k.shape[2]
            stacked = q.double().reshape(B, G, H // G * N, d)
            allowed = None
            if mask is not None:
                allowed = mask.expand(B, H, N, M).reshape(B, G, H // G * N, M)
            out, _ = scaled_dot_product_attention(stacked, k.double(), v.double(), allowed)
            return out.reshape(B, H, N, -1).to(q.dtype)
    """,
    ),
]

# ---------------------------------------------------------------------------------------
# kv_cache_bytes

KV = """
def kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_value=2):
    return 2 * num_layers * num_kv_heads * head_dim * seq_len * batch_size * bytes_per_value
"""


def kv_bug(label, old, new, fails, says=""):
    return bug("kv_cache_bytes", label, changed(KV, old, new), fails=fails, says=says)


ENTRIES += [
    kv_bug("keys only", "return 2 * num_layers", "return num_layers", ["counts_keys_and_values"], "values"),
    kv_bug(
        "bytes_per_value ignored",
        "* bytes_per_value",
        "* 2",
        ["respects_bytes_per_value"],
        "bytes_per_value",
    ),
    kv_bug("batch ignored", " * batch_size", "", ["counts_keys_and_values"], "batch"),
    kv_bug("layers ignored", "2 * num_layers * ", "2 * ", ["counts_keys_and_values"], "layer"),
    kv_bug(
        "gibibytes",
        "return 2 * num_layers * num_kv_heads * head_dim * seq_len * batch_size * bytes_per_value",
        "return 2 * num_layers * num_kv_heads * head_dim * seq_len * batch_size * bytes_per_value / 2**30",
        ["counts_keys_and_values"],
    ),
    kv_bug("a float", "return 2 *", "return 2.0 *", ["counts_keys_and_values"], "int"),
    kv_bug("bits", "* bytes_per_value", "* bytes_per_value * 8", ["counts_keys_and_values"]),
    kv_bug("head_dim squared", "* head_dim *", "* head_dim**2 *", ["counts_keys_and_values"]),
    kv_bug(
        "a tensor",
        "return 2 * num_layers * num_kv_heads * head_dim * seq_len * batch_size * bytes_per_value",
        "return torch.tensor(2 * num_layers * num_kv_heads * head_dim * seq_len * batch_size * bytes_per_value)",
        ["counts_keys_and_values"],
        "int",
    ),
    alternative(
        "kv_cache_bytes",
        "math.prod",
        """
        def kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_value=2):
            return math.prod([2, num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_value])
    """,
    ),
    alternative(
        "kv_cache_bytes",
        "bytes per token times tokens",
        """
        def kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_value=2):
            per_token = num_layers * 2 * num_kv_heads * head_dim * bytes_per_value
            tokens = seq_len * batch_size
            return per_token * tokens
    """,
    ),
    alternative(
        "kv_cache_bytes",
        "an int of a float product",
        """
        def kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_value=2):
            keys = float(num_layers) * num_kv_heads * head_dim * seq_len * batch_size * bytes_per_value
            return int(round(2 * keys))
    """,
    ),
]

# ---------------------------------------------------------------------------------------
# Input classes the first checks never drew (issue 21): views, backward in train() mode, state kept
# between calls, int32 tokens, generator=None

ENTRIES += [
    gqa_bug(
        "queries stacked with view",
        "qg = q.reshape(B, G, r * N, d)",
        "qg = q.view(B, G, r * N, d)",
        ["query_head_reads_its_group"],
        "not contiguous",
    ),
    block_bug(
        "in-place residual after norm2 read x",
        "x = x + self.drop(self.cross_attn(h, memory, memory, mask=pad)[0])",
        "x += self.drop(self.cross_attn(h, memory, memory, mask=pad)[0])",
        ["dropout_acts_on_sublayer_outputs"],
        "in place",
    ),
    block_bug(
        "causal mask kept from the first call",
        "        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))\n",
        "        if not hasattr(self, 'causal'):\n"
        "            self.causal = torch.tril(torch.ones(T, T, dtype=torch.bool))\n"
        "        causal = self.causal\n",
        ["matches_the_reference_pre_ln"],
        "kept from the earlier call",
    ),
    model_bug(
        "in-place residual in its decoder block",
        "x = x + self.drop(self.cross_attn(h, memory, memory, mask=pad)[0])",
        "x += self.drop(self.cross_attn(h, memory, memory, mask=pad)[0])",
        ["encode_and_decode_make_forward"],
        "in place",
    ),
    model_bug(
        "target embedding as a one-hot product (int64 only)",
        "x = self.tgt_embedding(tgt_in) + self.positions[: tgt_in.shape[1]]",
        "x = F.one_hot(tgt_in, self.head.out_features).float() @ self.tgt_embedding.weight"
        " + self.positions[: tgt_in.shape[1]]",
        ["matches_the_reference"],
        "int32",
    ),
    sample_bug(
        "generator=None becomes a new torch.Generator()",
        "    probs = scores.softmax(-1)\n    return",
        "    probs = scores.softmax(-1)\n    generator = torch.Generator() if generator is None else generator\n    return",
        ["reproducible_with_a_generator"],
        "global generator",
    ),
    alternative(
        "grouped_query_attention",
        "queries made contiguous, then stacked with view",
        changed(GQA, "qg = q.reshape(B, G, r * N, d)", "qg = q.contiguous().view(B, G, r * N, d)"),
    ),
    alternative(
        "Seq2SeqTransformer",
        "tokens flattened with reshape and cast to int64 before the embeddings",
        changed(
            changed(
                SEQ2SEQ,
                "x = self.src_embedding(src) + self.positions",
                "x = self.src_embedding(src.reshape(-1).long()).reshape(*src.shape, -1) + self.positions",
            ),
            "x = self.tgt_embedding(tgt_in) + self.positions",
            "x = self.tgt_embedding(tgt_in.long()) + self.positions",
        ),
    ),
]
