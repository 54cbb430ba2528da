"""The oracle proxy (autograder/oracle.py): what it records from the reference, the replay of it
without the reference, and the calls it cannot replay."""

import pytest
import torch

from autograder import oracle


def _check():
    """A sub-check's reference calls."""
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    mha = oracle.reference("multi_head_attention")
    return mha.split_heads(x, 2), mha.merge_heads(mha.split_heads(x, 4))


@pytest.fixture
def replaying(monkeypatch, tmp_path):
    with oracle.recording() as recorded:
        with oracle.checking("split_heads/example", oracle.PRACTICE_SEED):
            expected = _check()
        with oracle.checking("MultiHeadAttention/example", oracle.PRACTICE_SEED):
            oracle.reference("multi_head_attention").MultiHeadAttention(8, 2)
    oracle.save(recorded, {}, tmp_path / "recorded.pt")
    monkeypatch.setattr(oracle, "HAS_REFERENCE", False)
    monkeypatch.setattr(oracle, "RECORDING", tmp_path / "recorded.pt")
    monkeypatch.setattr(oracle, "_replay", None)
    return expected


def test_replay_gives_what_the_reference_gave(replaying):
    with oracle.checking("split_heads/example", oracle.PRACTICE_SEED):
        replayed = _check()
    assert all(torch.equal(a, b) for a, b in zip(replayed, replaying))


def test_what_was_not_recorded_is_undecided(replaying):
    split_heads = oracle.reference("multi_head_attention").split_heads
    with oracle.checking("split_heads/example", oracle.PRACTICE_SEED):
        with pytest.raises(oracle.Undecided, match="inputs the learner.s kit holds no expected values for"):
            split_heads(torch.randn(2, 5, 8) + 1, 2)
    with oracle.checking("split_heads/example", 7):
        with pytest.raises(oracle.Undecided, match=f"practice seed {oracle.PRACTICE_SEED} only"):
            _check()
    with oracle.checking("MultiHeadAttention/example", oracle.PRACTICE_SEED):
        with pytest.raises(oracle.Undecided, match="reference's own MultiHeadAttention"):
            oracle.reference("multi_head_attention").MultiHeadAttention(8, 2)
