"""The checks' expected values, with the reference solutions or without them.

A check module asks for a chapter's reference through a proxy, ``ref = reference("attention")``,
and calls it as it would call the module: ``ref.softmax(x)``, ``ref.MultiHeadAttention(8, 2)(x)``.
The proxy works in one of three ways:

- **reference** (the course's checkout, where ``solutions`` is importable): it calls the
  reference. This is what instructors' official grades use.
- **record** (inside :func:`recording`, while ``make kit`` builds the learner's kit): it also
  writes down, per sub-check of the practice seed (:data:`autograder.seeds.PRACTICE_SEED`) and in
  call order, what each call returned, with
  a fingerprint of its inputs (structure, shapes, dtypes, and for float tensors a few sums that
  are compared with a tolerance).
- **replay** (the learner's kit, which has no ``solutions``): the calls of a sub-check return
  what was recorded for a call of the same function whose inputs have the same fingerprint.
  A call that was not recorded (another seed, or inputs that differ) raises :class:`Undecided`:
  that sub-check cannot be decided without the reference, and :meth:`autograder.suite.Suite.run`
  reports it as not passed, saying that the official grade decides it.

A call that returns an object that is not plain data (an instance of a reference class) returns
the real object where the reference is; the kit cannot replay it, and a sub-check that asks for
one would be undecided there. So checks ask for plain data: chapter 6 compares a learner's model
with ``stack_logits(weights, tokens, ...)`` of the reference, not with a reference model object.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import math
import zlib
from pathlib import Path

import torch

from autograder.seeds import PRACTICE_SEED

RECORDING = Path(__file__).resolve().parent / "recorded.pt"  # written into the kit by `make kit`
HAS_REFERENCE = importlib.util.find_spec("solutions") is not None
TOLERANCE = 1e-5  # relative, on the sums of a float tensor (inputs drawn on another CPU differ in the last bits)


class Undecided(Exception):
    """A sub-check needs a value of the reference that the kit does not hold."""


class _Context:
    """The sub-check being run: its key, seed, and (recording) its calls or (replay) where it is."""

    def __init__(self, key: str, seed: int):
        self.key, self.seed = key, seed
        self.calls: list[dict] = []
        self.cursor = 0


_current: _Context | None = None
_recorded: dict | None = None  # {check key: [call, ...]} while recording
_replay: dict | None = None  # the kit's recording, loaded on first use


@contextlib.contextmanager
def checking(key: str, seed: int):
    """Run one sub-check (``"<graded name>/<sub-check>"``) with grading seed ``seed``."""
    global _current
    saved, _current = _current, _Context(key, seed)
    try:
        yield
    finally:
        if _recorded is not None and _current.seed == PRACTICE_SEED:
            _recorded[key] = _current.calls
        _current = saved


@contextlib.contextmanager
def recording():
    """Record every reference call of the sub-checks run inside; yields the recording."""
    global _recorded
    if not HAS_REFERENCE:
        raise RuntimeError("recording needs the reference solutions")
    _recorded = {}
    try:
        yield _recorded
    finally:
        _recorded = None


def save(recorded: dict, seconds: dict[str, float], path: Path) -> None:
    """Write the recording, with ``seconds``: {"topic.name": what the reference took to pass
    its checks} (the kit's time budgets, :func:`autograder.grading.time_budget`)."""
    buffer = io.BytesIO()
    torch.save({"seed": PRACTICE_SEED, "torch": str(torch.__version__), "checks": recorded, "seconds": seconds}, buffer)
    Path(path).write_bytes(buffer.getvalue())


def recorded_seconds(key: str) -> float:
    """What the reference took for the checks of ``key`` ("topic.name") when the kit was built."""
    return float(_load_recording()["seconds"].get(key, math.inf))


def reference(topic: str) -> _Proxy:
    """The proxy of ``solutions.<topic>``."""
    return _Proxy(("module", topic), ())


class _Proxy:
    def __init__(self, root, path):
        self._root, self._path = root, tuple(path)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Proxy(self._root, self._path + (name,))

    def __call__(self, *args, **kwargs):
        return _call(self._root, self._path, args, kwargs)

    def __repr__(self):
        return f"<reference {'.'.join(map(str, (*self._root, *self._path)))}>"


def _call(root, path, args, kwargs):
    if HAS_REFERENCE:
        return _call_reference(root, path, args, kwargs)
    return _call_recorded(root, path, args, kwargs)


def _call_reference(root, path, args, kwargs):
    target = importlib.import_module(f"solutions.{root[1]}")
    for name in path:
        target = getattr(target, name)
    result = target(*args, **kwargs)
    context = _current
    if _recorded is not None and context is not None and context.seed == PRACTICE_SEED:
        context.calls.append(
            {"function": _name(root, path), "inputs": _fingerprint((args, kwargs)), "output": _plain(result)}
        )
    return result


def _name(root, path) -> str:
    return ".".join([root[1], *path])


def _plain(value):
    """A recorded output: tensors copied, dtypes as strings, any other object (an instance of a
    reference class) as {"__object__": its type}, which the kit cannot replay."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value)}
    if isinstance(value, (list, tuple)):
        return (list if isinstance(value, list) else tuple)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return {"__object__": type(value).__name__}


def _unplain(value):
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        if "__object__" in value:
            raise Undecided(
                f"not checked here, counted as failed: this check needs the reference's own "
                f"{value['__object__']} object, which the learner's kit does not hold; only the official "
                "grade can run it"
            )
        if "__dtype__" in value:
            return getattr(torch, value["__dtype__"].removeprefix("torch."))
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_unplain(v) for v in value)
    return value


# ---------------------------------------------------------------------------------------
# Fingerprints of a call's inputs, and the replay


def _fingerprint(value):
    if isinstance(value, torch.Tensor):
        t = value.detach()
        shape, dtype = list(t.shape), str(t.dtype)
        if t.is_floating_point():
            d = t.double().flatten()
            finite = torch.isfinite(d)
            f = torch.where(finite, d, torch.zeros_like(d))
            weights = torch.cos(torch.arange(d.numel(), dtype=torch.float64) * 0.61 + 0.2)
            counts = [int(d.isnan().sum()), int((d == math.inf).sum()), int((d == -math.inf).sum())]
            return ["float", shape, dtype, [float(f.sum()), float(f.abs().sum()), float((f * weights).sum())], counts]
        data = t.contiguous().cpu().numpy().tobytes() if t.numel() else b""
        return ["exact", shape, dtype, zlib.crc32(data)]
    if isinstance(value, torch.nn.Module):
        return ["object", type(value).__name__]
    if isinstance(value, (list, tuple)):
        return ["sequence", [_fingerprint(v) for v in value]]
    if isinstance(value, dict):
        return ["dict", [[str(k), _fingerprint(value[k])] for k in sorted(value, key=str)]]
    if isinstance(value, float):
        return ["number", value]
    return ["plain", repr(value)]


def _same(recorded, now) -> bool:
    """Whether two fingerprints agree (float tensors' sums to a tolerance, the rest exactly)."""
    kind = recorded[0]
    if kind != now[0]:
        return False
    if kind == "float":
        if recorded[1:3] != now[1:3] or recorded[4] != now[4]:
            return False
        scale = TOLERANCE * (abs(recorded[3][1]) + 1e-3)
        return all(abs(a - b) <= scale for a, b in zip(recorded[3], now[3]))
    if kind == "number":
        return math.isclose(recorded[1], now[1], rel_tol=1e-9) or recorded[1] == now[1]
    if kind == "sequence":
        return len(recorded[1]) == len(now[1]) and all(_same(a, b) for a, b in zip(recorded[1], now[1]))
    if kind == "dict":
        return len(recorded[1]) == len(now[1]) and all(
            a[0] == b[0] and _same(a[1], b[1]) for a, b in zip(recorded[1], now[1])
        )
    return recorded == now


def _load_recording() -> dict:
    global _replay
    if _replay is None:
        if not RECORDING.exists():
            raise Undecided(
                "not checked, counted as failed: the kit's recorded expected values are missing; reinstall the kit"
            )
        _replay = torch.load(io.BytesIO(RECORDING.read_bytes()), weights_only=True)
    return _replay


def _call_recorded(root, path, args, kwargs):
    context = _current
    if context is None:
        raise Undecided("a reference value was asked for outside a check")
    recording_ = _load_recording()
    if context.seed != recording_["seed"]:
        raise Undecided(
            f"not checked, counted as failed: the learner's kit holds the checks' expected values for the practice "
            f"seed {recording_['seed']} only, and this is seed {context.seed}; grade without a seed "
            "(no --seed, no AUTOGRADER_SEED) to check your answer"
        )
    calls = recording_["checks"].get(context.key, [])
    function, inputs = _name(root, path), _fingerprint((args, kwargs))
    for index in [*range(context.cursor, len(calls)), *range(context.cursor)]:
        call = calls[index]
        if call["function"] == function and _same(call["inputs"], inputs):
            context.cursor = index + 1
            return _unplain(call["output"])
    raise Undecided(
        f"not checked, counted as failed: this check asked {function} about inputs the learner's kit holds "
        "no expected values for. The kit recorded the reference's results for the inputs this check reaches "
        "with a correct answer, so your answer led it elsewhere: look at this function's other failed checks "
        f"first. If every check says this, your torch ({torch.__version__}) draws other random numbers than "
        f"the kit's ({_load_recording()['torch']}): install the course's torch"
    )
