"""Leaderboards of chapters 6 and 7, computed in the real sandbox from submissions' code:
a correct model gets an entry, a model that peeks at later tokens or a wrong kernel gets
none, and the memory figure tells a tiled kernel from one that builds the N x N scores.
What a board measures is drawn from the package's private seed: an answer that memorized a text
or precomputed (or cached) its outputs gains nothing."""

import math
from pathlib import Path

import pytest

from autograder.leaderboard import ATTENTION_SHAPE, HELD_OUT, leaderboard, private_text

pytestmark = pytest.mark.xdist_group("leaderboard")
ALTERNATIVES = Path(__file__).resolve().parent / "alternatives"
LM = (ALTERNATIVES / "pretraining.py").read_text()
FLASH = (ALTERNATIVES / "flash_attention.py").read_text()
SEED = 982_451_653  # a course's private seed (the package draws its own)
UNTILED = """
def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v, torch.logsumexp(scores, dim=-1)
"""
# Answers that know the board in advance: the boards used to draw their attention inputs with seed 0 and to
# hold out the end of Python's help topics, which any sandbox can read.
PRECOMPUTED = """
_gen = torch.Generator().manual_seed(0)
_q, _k, _v = (torch.randn(2, 1024, 64, generator=_gen) for _ in range(3))
_known = torch.softmax(_q @ _k.transpose(-2, -1) / 8.0, dim=-1) @ _v

def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    return _known, torch.zeros(q.shape[:-1])  # no work at all
"""
CACHED = """
_cache = []

def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    if not _cache:
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        _cache.append((torch.softmax(scores, dim=-1) @ v, torch.logsumexp(scores, dim=-1)))
    return _cache[0]
"""
MEMORIZED = """
import torch
from pydoc_data.topics import topics as _topics

_CONTEXT = 8
_text = [min(ord(c), 127) for c in "".join(_topics[key] for key in sorted(_topics))]
_next = {tuple(_text[i - _CONTEXT:i]): _text[i] for i in range(_CONTEXT, len(_text))}

class CausalLM(torch.nn.Module):
    \"\"\"Looks the next character up in a memorized copy of the text that ships with Python.\"\"\"

    def __init__(self, vocab_size, d_model, n_heads, d_ff, n_layers, max_len):
        super().__init__()
        self.vocab_size, self.bias = vocab_size, torch.nn.Parameter(torch.zeros(vocab_size))

    def forward(self, tokens):
        logits = torch.zeros(*tokens.shape, self.vocab_size)
        rows = tokens.tolist()
        for b, row in enumerate(rows):
            for t in range(len(row)):
                known = _next.get(tuple(row[max(0, t + 1 - _CONTEXT):t + 1]))
                if known is not None:
                    logits[b, t, known] = 30.0
        return logits + self.bias
"""


def test_causal_lm_gets_its_held_out_loss():
    board = leaderboard("06_pretraining", [LM], seed=SEED)
    assert board.note == "" and len(board.entries) == 1
    entry = board.entries[0]
    assert entry.order == "asc" and 0.5 < entry.value < math.log(128), entry  # it learned something


def test_a_model_that_memorized_a_readable_text_does_not_beat_one_that_learned():
    learned = leaderboard("06_pretraining", [LM], seed=SEED).entries[0].value
    memorized = leaderboard("06_pretraining", [MEMORIZED], seed=SEED)
    assert memorized.entries and memorized.entries[0].value > learned, (memorized, learned)


def test_the_private_language_is_new_for_every_seed():
    train, held_out = private_text(SEED, 50_000)
    _, other_held_out = private_text(SEED + 1, 50_000)
    assert len(held_out) == HELD_OUT and set(train.tolist()) <= set(map(ord, "abcdefghijklmnopqrstuvwxyz. "))
    assert len(words_of(held_out) & words_of(other_held_out)) < 5  # made-up words of 2 to 8 letters
    unseen = words_of(held_out) - words_of(train)  # the training text teaches the language's words, but rare ones
    assert len(unseen) < 0.1 * len(words_of(held_out)), unseen


def words_of(text) -> set[str]:
    """The whole words of a text (its first and last may be cut)."""
    return set(bytes(text.tolist()).decode().replace(".", " ").split()[1:-1])


def test_a_model_that_sees_later_tokens_gets_no_entry():
    board = leaderboard("06_pretraining", [LM, "CausalLM = MaskedLM"], seed=SEED)
    assert board.entries == [] and "not causal" in board.note


def test_tiled_attention_uses_less_memory_than_untiled():
    tiled = {e.name: e.value for e in leaderboard("07_flash_attention", [FLASH], seed=SEED).entries}
    untiled = {e.name: e.value for e in leaderboard("07_flash_attention", [FLASH, UNTILED], seed=SEED).entries}
    heads, n, d = ATTENTION_SHAPE
    memory = "largest tensor created (KiB)"
    assert untiled[memory] == heads * n * n * 4 / 1024  # the full score matrix
    assert tiled[memory] <= heads * n * d * 4 / 1024  # nothing larger than the output
    assert all(value > 0 for value in [*tiled.values(), *untiled.values()])


@pytest.mark.parametrize("answer", [PRECOMPUTED, CACHED], ids=["precomputed", "cached"])
def test_an_answer_that_knows_or_keeps_its_outputs_gets_no_entry(answer):
    board = leaderboard("07_flash_attention", [FLASH, answer], seed=SEED)
    assert board.entries == [] and "wrong" in board.note


def test_wrong_attention_gets_no_entry():
    board = leaderboard("07_flash_attention", [FLASH, UNTILED.replace("/ math.sqrt(q.shape[-1])", "")], seed=SEED)
    assert board.entries == [] and "wrong" in board.note


def test_chapters_without_a_board():
    assert leaderboard("02_attention", ["x = 1"]).entries == []
