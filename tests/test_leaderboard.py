"""Leaderboards of chapters 6 and 7, computed in the real sandbox from submissions' code:
a correct model gets an entry, a model that peeks at later tokens or a wrong kernel gets
none, and the memory figure tells a tiled kernel from one that builds the N x N scores."""

import math
from pathlib import Path

import pytest

from autograder.leaderboard import ATTENTION_SHAPE, leaderboard

pytestmark = pytest.mark.xdist_group("leaderboard")
ALTERNATIVES = Path(__file__).resolve().parent / "alternatives"
LM = (ALTERNATIVES / "pretraining.py").read_text()
FLASH = (ALTERNATIVES / "flash_attention.py").read_text()
UNTILED = """
def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v, torch.logsumexp(scores, dim=-1)
"""


def test_causal_lm_gets_its_held_out_loss():
    board = leaderboard("06_pretraining", [LM])
    assert board.note == "" and len(board.entries) == 1
    entry = board.entries[0]
    assert entry.order == "asc" and 0.5 < entry.value < math.log(128), entry  # it learned something


def test_a_model_that_sees_later_tokens_gets_no_entry():
    board = leaderboard("06_pretraining", [LM, "CausalLM = MaskedLM"])
    assert board.entries == [] and "not causal" in board.note


def test_tiled_attention_uses_less_memory_than_untiled():
    tiled = {e.name: e.value for e in leaderboard("07_flash_attention", [FLASH]).entries}
    untiled = {e.name: e.value for e in leaderboard("07_flash_attention", [FLASH, UNTILED]).entries}
    heads, n, d = ATTENTION_SHAPE
    memory = "largest tensor created (KiB)"
    assert untiled[memory] == heads * n * n * 4 / 1024  # the full score matrix
    assert tiled[memory] <= heads * n * d * 4 / 1024  # nothing larger than the output
    assert all(value > 0 for value in [*tiled.values(), *untiled.values()])


def test_wrong_attention_gets_no_entry():
    board = leaderboard("07_flash_attention", [FLASH, UNTILED.replace("/ math.sqrt(q.shape[-1])", "")])
    assert board.entries == [] and "wrong" in board.note


def test_chapters_without_a_board():
    assert leaderboard("02_attention", ["x = 1"]).entries == []
