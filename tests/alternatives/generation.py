"""Correct chapter-9 answers written differently from the reference: its own einsum attention,
feed-forward network, encoder block and position table (this module must not import the earlier
chapters' references), a decoder block driven by a list of sublayers, masks built from positions,
rows decoded only while running, Gumbel-max sampling, a flat top-k beam, einsum attention with the
cache, a loop over key/value groups."""

import math

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.w_q, self.w_k = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.w_v, self.w_o = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value

        def heads(t):
            return t.unflatten(-1, (self.num_heads, -1))  # (B, N, H, d_head)

        q, k, v = heads(self.w_q(query)), heads(self.w_k(key)), heads(self.w_v(value))
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return self.w_o(torch.einsum("bhqk,bkhd->bqhd", weights, v).flatten(-2)), weights


class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.p = dropout

    def forward(self, x):
        return self.linear2(F.dropout(F.relu(self.linear1(x)), self.p, self.training))


class TransformerBlock(nn.Module):
    """The encoder's Pre-LN block (chapter 5's names: attn, ffn, norm1, norm2)."""

    def __init__(self, d_model, num_heads, d_ff, norm_first, dropout=0.0):
        super().__init__()
        self.attn, self.ffn = MultiHeadAttention(d_model, num_heads), FeedForward(d_model, d_ff, "relu", dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.p = dropout

    def forward(self, x, mask=None):
        h = self.norm1(x)
        x = x + F.dropout(self.attn(h, h, h, mask)[0], self.p, self.training)
        return x + F.dropout(self.ffn(self.norm2(x)), self.p, self.training)


def sinusoidal_positional_encoding(num_positions, d_model):
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]
    angle = position * torch.pow(10000.0, -torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2).float()


class DecoderBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.0, norm_first=True):
        nn.Module.__init__(self)
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.cross_attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = FeedForward(d_model, d_ff, "relu", dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.p, self.norm_first = dropout, norm_first

    def forward(self, x, memory, memory_mask=None):
        position = torch.arange(x.shape[1])
        causal = position[None, :] <= position[:, None]
        keys = None if memory_mask is None else memory_mask.unsqueeze(1).unsqueeze(2)
        sublayers = [
            (self.norm1, lambda y: self.self_attn(y, y, y, causal)[0]),
            (self.norm2, lambda y: self.cross_attn(y, memory, memory, keys)[0]),
            (self.norm3, self.ffn),
        ]
        for norm, sublayer in sublayers:
            if self.norm_first:
                x = x + F.dropout(sublayer(norm(x)), self.p, self.training)
            else:
                x = norm(x + F.dropout(sublayer(x), self.p, self.training))
        return x


class Seq2SeqTransformer(nn.Module):
    def __init__(
        self, src_vocab_size, tgt_vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout=0.0, pad_id=0
    ):
        super().__init__()
        self.pad_id = pad_id
        self.src_embedding = nn.Embedding(src_vocab_size, d_model)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_positional_encoding(max_len, d_model), persistent=False)
        self.encoder_blocks = nn.ModuleList(
            TransformerBlock(d_model, num_heads, d_ff, True, dropout) for _ in range(num_layers)
        )
        self.encoder_norm = nn.LayerNorm(d_model)
        self.decoder_blocks = nn.ModuleList(DecoderBlock(d_model, num_heads, d_ff, dropout) for _ in range(num_layers))
        self.decoder_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, tgt_vocab_size)

    def encode(self, src):
        length = src.shape[1]
        real = src.ne(self.pad_id)
        x = self.src_embedding(src) + self.positions[torch.arange(length)]
        mask = real[:, None, :].expand(-1, length, -1)[:, None]  # (B, 1, S, S)
        for block in self.encoder_blocks:
            x = block(x, mask)
        return self.encoder_norm(x)

    def decode(self, tgt_in, memory, src):
        x = self.tgt_embedding(tgt_in) + self.positions.narrow(0, 0, tgt_in.shape[1])
        for block in self.decoder_blocks:
            x = block(x, memory, src.ne(self.pad_id))
        return self.head(self.decoder_norm(x))

    def forward(self, src, tgt_in):
        memory = self.encode(src)
        return self.decode(tgt_in, memory, src)


@torch.no_grad()
def greedy_decode(model, src, bos_id, eos_id, max_len):
    memory = model.encode(src)
    prefix = torch.full((src.shape[0], max_len + 1), model.pad_id, dtype=torch.long)
    prefix[:, 0] = bos_id
    running = torch.arange(src.shape[0])
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


def beam_search(next_log_probs, bos_id, eos_id, beam_size, max_len):
    beam = [([bos_id], 0.0, False)]
    while not all(done for _, _, done in beam):
        live = [b for b in beam if not b[2]]
        log_probs = next_log_probs(torch.tensor([seq for seq, _, _ in live])).double()
        totals = torch.tensor([score for _, score, _ in live], dtype=torch.float64)[:, None] + log_probs
        vocab = log_probs.shape[-1]
        best = totals.flatten().topk(min(beam_size, totals.numel()))
        pool = [b for b in beam if b[2]]
        for value, index in zip(best.values.tolist(), best.indices.tolist()):
            seq = live[index // vocab][0] + [index % vocab]
            pool.append((seq, value, seq[-1] == eos_id or len(seq) - 1 >= max_len))
        beam = sorted(pool, key=lambda b: b[1], reverse=True)[:beam_size]
    seq, score, _ = beam[0]
    return torch.tensor(seq[1:]), score


def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits.double() / temperature
    if top_k is not None and top_k < scores.shape[-1]:
        threshold = scores.topk(top_k, dim=-1).values[..., -1, None]
        scores = torch.where(scores >= threshold, scores, torch.tensor(-math.inf, dtype=scores.dtype))
    if top_p is not None:
        p = scores.softmax(-1)
        p_sorted, order = p.sort(-1, descending=True)
        keep_sorted = p_sorted.cumsum(-1) - p_sorted < top_p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        scores = scores.masked_fill(~keep, -math.inf)
    u = torch.rand(scores.shape, generator=generator, dtype=torch.float64).clamp(1e-300, 1.0)
    return (scores - torch.log(-torch.log(u))).argmax(-1)


class CachedSelfAttention(nn.Module):
    def __init__(self, d_model, num_heads):
        nn.Module.__init__(self)
        self.num_heads, self.d_head = num_heads, d_model // num_heads
        self.w_q, self.w_k = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.w_v, self.w_o = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def heads(self, t):
        return t.view(t.shape[0], t.shape[1], self.num_heads, self.d_head).permute(0, 2, 1, 3)

    def forward(self, x_new, cache=None):
        q, k, v = self.heads(self.w_q(x_new)), self.heads(self.w_k(x_new)), self.heads(self.w_v(x_new))
        past = 0 if cache is None else cache[0].shape[2]
        if cache is not None:
            k, v = torch.cat((cache[0], k), 2), torch.cat((cache[1], v), 2)
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(self.d_head)
        query_position = past + torch.arange(q.shape[2])
        scores = scores.masked_fill(torch.arange(k.shape[2])[None, :] > query_position[:, None], -math.inf)
        out = torch.einsum("bhqk,bhkd->bhqd", scores.softmax(-1), v)
        batch, heads, length, width = out.shape
        return self.w_o(out.permute(0, 2, 1, 3).reshape(batch, length, heads * width)), (k, v)


def grouped_query_attention(q, k, v, mask=None):
    batch, heads, n, d = q.shape
    groups = k.shape[1]
    r = heads // groups
    if mask is not None:
        mask = mask.expand(batch, heads, n, k.shape[2])
    outputs = []
    for g in range(groups):
        scores = q[:, g * r : (g + 1) * r].reshape(batch, r * n, d) @ k[:, g].transpose(1, 2) / math.sqrt(d)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, g * r : (g + 1) * r].reshape(batch, r * n, -1), float("-inf"))
        outputs.append((scores.softmax(-1) @ v[:, g]).reshape(batch, r, n, -1))
    return torch.cat(outputs, dim=1)


def kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_value=2):
    per_token = num_layers * 2 * num_kv_heads * head_dim * bytes_per_value
    return per_token * seq_len * batch_size
