"""The oracle proxy (autograder/oracle.py): what it records from the reference, the replay of it
without the reference, and the calls it cannot replay."""
import pytest
import torch

from autograder import oracle


def _check():
    """A sub-check's reference calls: a function, and a class whose instance is called and loaded."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 8, generator=gen)
    mha = oracle.reference("multi_head_attention")
    model = mha.MultiHeadAttention(8, 2)
    state = model.state_dict()
    model.load_state_dict({k: torch.full_like(v, 0.1) for k, v in state.items()})
    output, weights = model(x)
    return mha.split_heads(x, 2), sorted(state), output, weights


@pytest.fixture
def replaying(monkeypatch, tmp_path):
    with oracle.recording() as recorded, oracle.checking("MultiHeadAttention/example", oracle.PUBLIC_SEED):
        expected = _check()
    oracle.save(recorded, {}, tmp_path / "recorded.pt")
    monkeypatch.setattr(oracle, "HAS_REFERENCE", False)
    monkeypatch.setattr(oracle, "RECORDING", tmp_path / "recorded.pt")
    monkeypatch.setattr(oracle, "_replay", None)
    return expected


def test_replay_gives_what_the_reference_gave(replaying):
    with oracle.checking("MultiHeadAttention/example", oracle.PUBLIC_SEED):
        replayed = _check()
    assert torch.equal(replayed[0], replaying[0]) and replayed[1] == replaying[1]
    assert torch.equal(replayed[2], replaying[2]) and torch.equal(replayed[3], replaying[3])


def test_inputs_that_were_not_recorded_are_undecided(replaying):
    split_heads = oracle.reference("multi_head_attention").split_heads
    with oracle.checking("MultiHeadAttention/example", oracle.PUBLIC_SEED):
        with pytest.raises(oracle.Undecided, match="official grade"):
            split_heads(torch.randn(2, 5, 8) + 1, 2)
    with oracle.checking("MultiHeadAttention/example", 7):
        with pytest.raises(oracle.Undecided, match="seed 0 only"):
            _check()
