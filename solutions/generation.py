"""Chapter 9: the whole Transformer (encoder, decoder, cross-attention) and generation.

Shapes: ``B`` batch, ``S`` source tokens, ``T`` target tokens, ``D = d_model``, ``H`` query
heads of width ``d_head = D / H``, ``G`` key/value heads, ``V`` vocabulary size. Token ids given
to the models are int32 or int64 (``nn.Embedding`` takes both); token ids returned are int64. Masks
are boolean and True where attending is allowed, as in chapters 2 and 3. Any tensor argument may be
a non-contiguous view (a slice or a transpose, as a caller's own tensors often are): dimensions are
merged with ``.reshape``, never ``.view``. Methods call ``nn.Module.__init__(self)`` and
module-level helpers, never zero-argument ``super()``, so a notebook class can delegate to them. No
function or module changes its inputs; a module's forward only reads its parameters and buffers and
keeps nothing between calls, and backward works in ``train()`` mode (no in-place change to a tensor
that autograd saved).
"""

import math

import torch
from torch import nn

from solutions.attention import causal_mask, scaled_dot_product_attention
from solutions.multi_head_attention import MultiHeadAttention, merge_heads, split_heads
from solutions.positional_encoding import sinusoidal_positional_encoding
from solutions.transformer_block import FeedForward, TransformerBlock

# ---------------------------------------------------------------------------------------
# The encoder-decoder (Vaswani et al., 2017)


class DecoderBlock(nn.Module):
    """One decoder block: causal self-attention, cross-attention, feed-forward network.

    ``DecoderBlock(d_model, num_heads, d_ff, dropout=0.0, norm_first=True)``. Submodules (their
    names are the contract: the grader loads weights by name): ``self_attn`` and ``cross_attn``
    (chapter 3's ``MultiHeadAttention(d_model, num_heads)``), ``ffn`` (chapter 5's
    ``FeedForward(d_model, d_ff, "relu", dropout)``), ``norm1``, ``norm2``, ``norm3``
    (``nn.LayerNorm(d_model)``). ``norm_first=True`` is Pre-LN::

        x = x + dropout(self_attn(n1, n1, n1, causal mask)),        n1 = norm1(x)
        x = x + dropout(cross_attn(n2, memory, memory, memory mask)), n2 = norm2(x)
        x = x + dropout(ffn(norm3(x)))

    and ``norm_first=False`` Post-LN: ``x = norm1(x + dropout(self_attn(x, x, x)))``, then
    ``x = norm2(x + dropout(cross_attn(x, memory, memory)))``, ``x = norm3(x + dropout(ffn(x)))``.
    Cross-attention takes its queries from the decoder's stream and its keys and values from
    ``memory`` as given (the block does not normalise memory). Dropout acts on each sublayer's
    output before the residual sum, and inside ``ffn``; nowhere else.

    forward(x (B, T, D), memory (B, S, D), memory_mask=None) -> (B, T, D). Target position t
    attends to target positions 0..t only. ``memory_mask``: bool (B, S), True at real source
    tokens; cross-attention never reads a position where it is False (None: every position).
    B, T and S may be 1, and each call may have other sizes (the masks are built from each call's
    inputs: nothing is kept between calls). Backward works in ``train()`` mode: the residual sums
    are ``x = x + ...``, never ``x += ...`` (LayerNorm keeps its input for the backward pass).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.0, norm_first: bool = True):
        nn.Module.__init__(self)
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.cross_attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = FeedForward(d_model, d_ff, "relu", dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        causal = causal_mask(x.shape[1]).to(x.device)
        cross = None if memory_mask is None else memory_mask[:, None, None, :]  # (B, 1, 1, S): every head, query
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout(self.self_attn(h, h, h, mask=causal)[0])
            h = self.norm2(x)
            x = x + self.dropout(self.cross_attn(h, memory, memory, mask=cross)[0])
            return x + self.dropout(self.ffn(self.norm3(x)))
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, mask=causal)[0]))
        x = self.norm2(x + self.dropout(self.cross_attn(x, memory, memory, mask=cross)[0]))
        return self.norm3(x + self.dropout(self.ffn(x)))


class Seq2SeqTransformer(nn.Module):
    """An encoder-decoder Transformer for translation, Pre-LN throughout.

    ``Seq2SeqTransformer(src_vocab_size, tgt_vocab_size, d_model, num_heads, d_ff, num_layers,
    max_len, dropout=0.0, pad_id=0)``. Submodules and attributes (names are the contract):

    - ``src_embedding`` ``nn.Embedding(src_vocab_size, D)``, ``tgt_embedding``
      ``nn.Embedding(tgt_vocab_size, D)`` (not scaled, not tied);
    - ``positions``: a buffer, ``register_buffer(..., persistent=False)``, holding chapter 4's
      ``sinusoidal_positional_encoding(max_len, D)``; a sequence of n tokens gets rows 0..n-1;
    - ``encoder_blocks``: ``nn.ModuleList`` of ``num_layers`` chapter-5
      ``TransformerBlock(D, num_heads, d_ff, norm_first=True, dropout=dropout)``, then
      ``encoder_norm`` (``nn.LayerNorm(D)``);
    - ``decoder_blocks``: ``nn.ModuleList`` of ``num_layers``
      ``DecoderBlock(D, num_heads, d_ff, dropout, norm_first=True)``, then ``decoder_norm``
      (``nn.LayerNorm(D)``) and ``head`` (``nn.Linear(D, tgt_vocab_size)``);
    - ``pad_id``: the int given.

    ``encode(src (B, S))`` -> memory (B, S, D) = ``encoder_norm(blocks(src_embedding(src) +
    positions[:S]))``, where no query attends to a key whose token is ``pad_id``.
    ``decode(tgt_in (B, T), memory, src)`` -> logits (B, T, tgt_vocab_size) =
    ``head(decoder_norm(blocks(tgt_embedding(tgt_in) + positions[:T], memory)))``, with the
    blocks' cross-attention masked where ``src == pad_id`` (the target side needs no padding
    mask: the causal mask keeps real positions from reading the padding that follows them).
    ``forward(src, tgt_in) = decode(tgt_in, encode(src), src)`` (teacher forcing:
    ``logits[:, t]`` scores the target token after ``tgt_in[:, :t+1]``). So padding the source
    with more ``pad_id`` tokens never changes the logits. Dropout acts inside the blocks only.
    ``src`` and ``tgt_in`` hold int32 or int64 ids; B, S and T may be 1; every call encodes its own
    ``src`` (nothing, memory or mask, is kept between calls); backward works in ``train()`` mode.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        num_layers: int,
        max_len: int,
        dropout: float = 0.0,
        pad_id: int = 0,
    ):
        nn.Module.__init__(self)
        self.pad_id = pad_id
        self.src_embedding = nn.Embedding(src_vocab_size, d_model)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_positional_encoding(max_len, d_model), persistent=False)
        self.encoder_blocks = nn.ModuleList(
            TransformerBlock(d_model, num_heads, d_ff, norm_first=True, dropout=dropout) for _ in range(num_layers)
        )
        self.encoder_norm = nn.LayerNorm(d_model)
        self.decoder_blocks = nn.ModuleList(
            DecoderBlock(d_model, num_heads, d_ff, dropout, norm_first=True) for _ in range(num_layers)
        )
        self.decoder_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, tgt_vocab_size)

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        x = self.src_embedding(src) + self.positions[: src.shape[1]]
        keys = (src != self.pad_id)[:, None, None, :]  # (B, 1, 1, S): no query reads padding
        for block in self.encoder_blocks:
            x = block(x, keys)
        return self.encoder_norm(x)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        x = self.tgt_embedding(tgt_in) + self.positions[: tgt_in.shape[1]]
        for block in self.decoder_blocks:
            x = block(x, memory, src != self.pad_id)
        return self.head(self.decoder_norm(x))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(tgt_in, self.encode(src), src)


# ---------------------------------------------------------------------------------------
# Decoding


@torch.no_grad()
def greedy_decode(model, src: torch.Tensor, bos_id: int, eos_id: int, max_len: int) -> torch.Tensor:
    """Greedy decoding with an encoder-decoder ``model`` (anything with ``encode(src)``,
    ``decode(tgt_in, memory, src)`` as in :class:`Seq2SeqTransformer`, and ``pad_id``).

    src (B, S) int64. The encoder runs once; then each step feeds every row's prefix (BOS and
    the tokens chosen so far, (B, t)) to ``decode`` and appends the most likely next token
    (the argmax of the last position's logits). A row ends at its first ``eos_id``; after it,
    the row holds ``model.pad_id``. Decoding stops when every row has ended, or after
    ``max_len`` tokens. Returns the generated tokens without BOS: int64 (B, L), where L is the
    number of steps run (L <= max_len; L < max_len only when every row has ended, the last
    of them at step L). Each row depends only on its own source. Runs without gradients.
    """
    memory = model.encode(src)
    tokens = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
    ended = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        best = model.decode(tokens, memory, src)[:, -1].argmax(-1)
        best = torch.where(ended, model.pad_id, best)
        tokens = torch.cat([tokens, best[:, None]], dim=1)
        ended |= best == eos_id
        if ended.all():
            break
    return tokens[:, 1:]


def sampling_probs(logits: torch.Tensor, temperature: float = 1.0, top_k=None, top_p=None) -> torch.Tensor:
    """The distribution :func:`sample_next_token` draws from, (B, V) float64 (for the grader and
    the chapter's plots): temperature 0 puts all mass on the argmax."""
    logits = logits.double()
    if temperature == 0:
        return nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).double()
    scores = logits / temperature
    if top_k is not None:
        kth = scores.topk(min(top_k, scores.shape[-1]), dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, -math.inf)
    if top_p is not None:
        probs, order = torch.softmax(scores, -1).sort(-1, descending=True)
        before = probs.cumsum(-1) - probs  # the mass of the tokens more likely than each one
        drop = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, order, before >= top_p)
        scores = scores.masked_fill(drop, -math.inf)
    return torch.softmax(scores, -1)


def sample_next_token(
    logits: torch.Tensor, temperature: float = 1.0, top_k=None, top_p=None, generator=None
) -> torch.Tensor:
    """Draw one token per row: logits (B, V) float -> (B,) int64.

    ``temperature == 0`` returns the argmax of each row (no randomness). Otherwise, in this
    order: divide the logits by ``temperature``; if ``top_k`` (an int >= 1) is given, keep the
    ``top_k`` largest (all of them when top_k >= V; Fan et al., 2018); if ``top_p`` (0 < p <= 1)
    is given, keep the smallest set of most likely tokens, by the softmax of the scores kept so
    far, whose probability reaches ``top_p``, the token that crosses it included (nucleus
    sampling, Holtzman et al., 2020). Then draw from the softmax over the kept tokens
    (renormalised), each row independently of the others. Every random number comes from
    ``generator``; None means torch's global generator (pass None on to ``torch.multinomial`` or
    ``torch.rand``), so after ``torch.manual_seed(s)`` the draws repeat for the same s. Two calls
    with generators in the same state return the same tokens. Only kept tokens are ever drawn;
    logits (possibly a non-contiguous view) is left unchanged.
    """
    if temperature == 0:
        return logits.argmax(-1)
    probs = sampling_probs(logits, temperature, top_k, top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _finished(tokens: list[int], eos_id: int, max_len: int) -> bool:
    return len(tokens) > 1 and (tokens[-1] == eos_id or len(tokens) - 1 == max_len)


@torch.no_grad()
def beam_search(next_log_probs, bos_id: int, eos_id: int, beam_size: int, max_len: int):
    """Beam search (sum of log-probabilities, no length normalisation).

    ``next_log_probs(prefixes)``: prefixes (K, t) int64, all beginning with ``bos_id`` and of
    one length t, -> (K, V) log-probabilities of the next token. A hypothesis is finished when
    its last token is ``eos_id`` or when it holds ``max_len`` tokens after BOS. Start from
    [BOS]; at each step extend every unfinished hypothesis in the beam by every token, and keep
    the ``beam_size`` best (by total log-probability) of these extensions and the finished
    hypotheses already in the beam. Stop when every kept hypothesis is finished. Returns
    ``(tokens, log_prob)``: the best kept hypothesis's tokens after BOS, int64 (L,) with
    1 <= L <= max_len (ending with ``eos_id`` if it finished by EOS), and its total
    log-probability as a float. ``beam_size=1`` is greedy decoding; a beam as large as the
    number of possible sequences is exhaustive search (:func:`exhaustive_search`).
    """
    beam = [([bos_id], 0.0)]
    while not all(_finished(tokens, eos_id, max_len) for tokens, _ in beam):
        alive = [(tokens, score) for tokens, score in beam if not _finished(tokens, eos_id, max_len)]
        candidates = [(tokens, score) for tokens, score in beam if _finished(tokens, eos_id, max_len)]
        log_probs = next_log_probs(torch.tensor([tokens for tokens, _ in alive])).double()
        for (tokens, score), row in zip(alive, log_probs.tolist()):
            candidates += [(tokens + [token], score + value) for token, value in enumerate(row)]
        beam = sorted(candidates, key=lambda candidate: -candidate[1])[:beam_size]
    tokens, score = beam[0]
    return torch.tensor(tokens[1:]), score


@torch.no_grad()
def exhaustive_search(next_log_probs, bos_id: int, eos_id: int, max_len: int):
    """The most likely sequence of all (tokens after BOS ending at EOS, or max_len tokens long),
    by visiting every prefix: ``(tokens, log_prob)`` as :func:`beam_search` returns them."""
    best, level = ([], -math.inf), [([bos_id], 0.0)]
    while level:
        log_probs = next_log_probs(torch.tensor([tokens for tokens, _ in level])).double()
        following = []
        for (tokens, score), row in zip(level, log_probs.tolist()):
            for token, value in enumerate(row):
                candidate = (tokens + [token], score + value)
                if _finished(candidate[0], eos_id, max_len):
                    best = max(best, candidate, key=lambda c: c[1])
                else:
                    following.append(candidate)
        level = following
    return torch.tensor(best[0][1:]), best[1]


# ---------------------------------------------------------------------------------------
# Serving: the KV cache (Pope et al., 2022) and grouped-query attention (Ainslie et al., 2023)


class CachedSelfAttention(nn.Module):
    """Causal multi-head self-attention that keeps its keys and values between calls.

    ``CachedSelfAttention(d_model, num_heads)``: the parameters of chapter 3's
    ``MultiHeadAttention`` (``w_q``, ``w_k``, ``w_v``, ``w_o``, each ``nn.Linear(D, D)`` with a
    bias; head h owns features h*d_head .. (h+1)*d_head).

    ``forward(x_new, cache=None)`` -> ``(output, cache)``. x_new (B, T_new, D): the next tokens.
    ``cache``: None (nothing before) or a tuple ``(keys, values)``, each (B, H, P, d_head): the
    projected keys and values (``split_heads(w_k(x))``, ``split_heads(w_v(x))``) of the P tokens
    before. Only x_new is projected; its queries attend to the P cached positions and to the new
    positions up to their own (causal: new token i sits at position P + i). Returns output
    (B, T_new, D) and the new cache ``(keys, values)``, each (B, H, P + T_new, d_head): the cache
    given, followed by the new tokens' keys and values. So feeding a sequence in pieces, passing
    each returned cache to the next call, gives the outputs of causal attention over the whole
    sequence. The module keeps no state between calls (the cache is the state); x_new and the
    cache given (either may be a non-contiguous view) are left unchanged.
    """

    def __init__(self, d_model: int, num_heads: int):
        nn.Module.__init__(self)
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)

    def forward(self, x_new: torch.Tensor, cache=None):
        q = split_heads(self.w_q(x_new), self.num_heads)
        k = split_heads(self.w_k(x_new), self.num_heads)
        v = split_heads(self.w_v(x_new), self.num_heads)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        past, new = k.shape[2] - q.shape[2], q.shape[2]
        mask = torch.arange(past + new, device=x_new.device)[None, :] <= past + torch.arange(new)[:, None]
        heads, _ = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(merge_heads(heads)), (k, v)


def grouped_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None) -> torch.Tensor:
    """Scaled dot-product attention with G key/value heads shared by H query heads.

    q (B, H, N_q, d), k (B, G, N_k, d), v (B, G, N_k, d_v), with G dividing H; mask bool,
    broadcastable to (B, H, N_q, N_k), True where a query may attend. Query head h reads
    key/value head ``h // (H // G)`` (consecutive query heads share one: heads 0..H/G-1 the
    first). Returns (B, H, N_q, d_v); equals chapter 2's attention with each key/value head
    repeated H/G times in place (multi-head attention when G = H, multi-query attention when
    G = 1; Shazeer, 2019). Computed without a copy of the keys or values for every query head:
    the queries of a group are stacked against their one key/value head (with ``.reshape``: q may
    be a non-contiguous view, on which ``.view`` cannot merge dimensions). Inputs are left unchanged.
    """
    batch, heads, n_q, d = q.shape
    groups, n_k = k.shape[1], k.shape[2]
    if heads % groups:
        raise ValueError(f"{groups} key/value heads do not divide {heads} query heads")
    per_group = heads // groups
    grouped = q.reshape(batch, groups, per_group * n_q, d)  # head h = g * per_group + j: rows of group g
    scores = grouped @ k.transpose(-2, -1) / math.sqrt(d)  # (B, G, per_group * N_q, N_k)
    if mask is not None:
        allowed = mask.expand(batch, heads, n_q, n_k).reshape(batch, groups, per_group * n_q, n_k)
        scores = scores.masked_fill(~allowed, -math.inf)
    output = torch.softmax(scores, dim=-1) @ v  # (B, G, per_group * N_q, d_v)
    return output.reshape(batch, heads, n_q, v.shape[-1])


def kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_value=2) -> int:
    """Bytes of a KV cache: every layer keeps a key and a value vector of ``head_dim`` numbers
    per key/value head, per token, per sequence: 2 * layers * kv heads * head_dim * seq_len *
    batch * bytes_per_value (2 for float16/bfloat16). Returns an int."""
    return int(2 * num_layers * num_kv_heads * head_dim * seq_len * batch_size * bytes_per_value)


# ---------------------------------------------------------------------------------------
# For the grader: the models' outputs from plain data (a state dict and the constructor's
# arguments), which the learner's kit can record.


def parameter_shapes(model: str, config: dict) -> dict[str, tuple[int, ...]]:
    """{name: shape} of the state dict of ``DecoderBlock`` or ``Seq2SeqTransformer`` (``model``)
    built with ``config``."""
    built = {"DecoderBlock": DecoderBlock, "Seq2SeqTransformer": Seq2SeqTransformer}[model](**config)
    return {key: tuple(value.shape) for key, value in built.state_dict().items()}


def _loaded(cls, weights, config):
    model = cls(**config).double().eval()
    model.load_state_dict({key: value.double() for key, value in weights.items()})
    return model


@torch.no_grad()
def decoder_block_output(weights, config, x, memory, memory_mask=None, causal=True, normalized_memory=False):
    """DecoderBlock's output, float64, eval mode; ``causal=False`` drops the causal mask and
    ``normalized_memory=True`` passes memory through norm2 too (two typical mistakes)."""
    block = _loaded(DecoderBlock, weights, config)
    if not causal:
        block.self_attn.forward = _without_mask(block.self_attn)
    if normalized_memory:
        memory = block.norm2(memory.double())
    return block(x.double(), memory.double(), memory_mask)


def _without_mask(attention):
    def forward(query, key=None, value=None, mask=None):
        return MultiHeadAttention.forward(attention, query, key, value, None)

    return forward


@torch.no_grad()
def seq2seq_outputs(weights, config, src, tgt_in, encoder_norm=True, embedding_scale=1.0) -> dict:
    """{"memory": encode(src), "logits": forward(src, tgt_in)} of the reference model, float64;
    ``encoder_norm=False`` leaves out the final encoder LayerNorm and ``embedding_scale``
    multiplies the source embeddings (two typical mistakes)."""
    model = _loaded(Seq2SeqTransformer, weights, config)
    if not encoder_norm:
        model.encoder_norm = nn.Identity()
    model.src_embedding.weight.mul_(embedding_scale)
    memory = model.encode(src)
    return {"memory": memory, "logits": model.decode(tgt_in, memory, src)}


@torch.no_grad()
def cached_attention_output(weights, d_model, num_heads, x_new, cache=None):
    """``CachedSelfAttention(d_model, num_heads)`` holding ``weights``: its (output, cache), float64."""
    attention = _loaded(CachedSelfAttention, weights, {"d_model": d_model, "num_heads": num_heads})
    cache = None if cache is None else tuple(t.double() for t in cache)
    return attention(x_new.double(), cache)
