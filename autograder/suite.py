"""Suites of named, weighted sub-checks, and the comparisons they are written with.

A chapter's check module (``autograder/checks/<topic>.py``) builds one :class:`Suite` per
graded function or class. Each sub-check is a plain function ``check(student, gen)`` that
draws its inputs from the seeded ``torch.Generator`` it is given, calls the learner's code
through ``student`` (a :class:`autograder.student.Student` handle, so the same check runs
in the learner's kernel or against a sandboxed process) and raises :class:`CheckFailed`
with a message in the learner's terms when the answer is wrong.

Points come only from what the grader measures outside the learner's process: values it
compares, and the sandbox's own counters of memory and CPU time (:meth:`Student.measured`).
A rule that only the learner's process can observe (which torch functions it called, whether
it launched a Triton kernel) is registered with :meth:`Suite.advice`: worth 0 points, its
failure is shown to the learner as advice (:data:`ADVICE`), and every report marks it so.
"""

from __future__ import annotations

import contextvars
import dataclasses
import importlib.util
import math
import os
import re
import zlib
from collections.abc import Callable

import torch

from autograder import oracle
from autograder.seeds import PRACTICE_SEED
from autograder.student import Student, StudentError, seeded_calls


class CheckFailed(AssertionError):
    """The learner's answer is wrong; the message says how, in the learner's terms."""


ADVICE = "advice (0 points): "  # how a failed advice sub-check's message begins, in every report


@dataclasses.dataclass
class Result:
    """The outcome of one sub-check (the fields of the ``--json`` report)."""

    function: str
    check: str
    score: float
    max_score: float
    passed: bool
    message: str
    advice: bool = False  # an advice sub-check: worth 0 points, its failure is only shown


@dataclasses.dataclass
class Check:
    name: str
    points: float
    run: Callable
    advice: bool = False


def default_seed() -> int:
    """The grading seed: ``AUTOGRADER_SEED`` from the environment (a course's ``nbgrader_config.py``
    sets it to the course's private seed), else the practice seed, the one the learner's kit holds
    the expected values for (:mod:`autograder.seeds`)."""
    return int(os.environ.get("AUTOGRADER_SEED", PRACTICE_SEED))


class Suite:
    """The sub-checks of one graded function or class, in the order they run."""

    def __init__(self, function: str, needs: tuple[str, str] | None = None, depends_on: tuple[Suite, ...] = ()):
        """``needs``: (module, why) when the suite can only run where that module is installed
        (chapter 7's Triton kernel); elsewhere every sub-check fails with ``why``, nothing crashes.
        ``depends_on``: the suites of earlier graded names of the same chapter that the learner's
        answer may call (attention calls the learner's softmax); a sub-check names a failing one
        first where the evidence shows it is the cause (:func:`blame_dependency`)."""
        self.function = function
        self.needs = needs
        self.depends_on = tuple(depends_on)
        self.checks: list[Check] = []

    def check(self, points: float):
        """Decorator: register ``fn(student, gen)`` as a sub-check worth ``points``."""

        def register(fn):
            self.checks.append(Check(fn.__name__, points, fn))
            return fn

        return register

    def advice(self, fn):
        """Decorator: register ``fn(student, gen)`` as advice, a sub-check worth 0 points whose
        failure is shown to the learner (message prefixed with :data:`ADVICE`) and never costs a
        point: for rules the grader can only observe inside the learner's process."""
        self.checks.append(Check(fn.__name__, 0.0, fn, advice=True))
        return fn

    def unmet(self) -> str | None:
        """Why this suite cannot run here (a module it ``needs`` is not installed), or None. Graders
        report that reason, not a missing answer: the exercise is not attempted here."""
        if self.needs and importlib.util.find_spec(self.needs[0]) is None:
            return self.needs[1]
        return None

    def failed(self, message: str) -> list[Result]:
        """Every sub-check failed with ``message`` (the function could not be graded at all)."""
        return [self._failed(check, message) for check in self.checks]

    @property
    def max_score(self) -> float:
        return float(sum(c.points for c in self.checks))

    def run(self, student, seed: int | None = None) -> list[Result]:
        """Run every sub-check against ``student``; never raises for a wrong or broken answer."""
        seed = default_seed() if seed is None else seed
        if unmet := self.unmet():
            return self.failed(unmet)
        results = []
        context = _RUNNING.set(_Run(self, student, seed))
        try:
            self._run_checks(student, seed, results)
        finally:
            _RUNNING.reset(context)
        return results

    def _run_checks(self, student, seed: int, results: list) -> None:
        for check in self.checks:
            check_seed = seed + zlib.crc32(f"{self.function}/{check.name}".encode())
            gen = torch.Generator().manual_seed(check_seed)
            try:
                with oracle.checking(f"{self.function}/{check.name}", seed), seeded_calls(check_seed):
                    check.run(student, gen)
            except CheckFailed as failure:
                results.append(self._failed(check, str(failure)))
            except StudentError as error:
                results.append(self._failed(check, explain_error(str(error))))
            except oracle.Undecided as undecided:  # the learner's kit: scored as not passed (see oracle.py)
                results.append(self._failed(check, str(undecided)))
            except Exception as error:  # a check that breaks on odd output must not stop grading
                results.append(self._failed(check, f"could not check your answer ({type(error).__name__}: {error})"))
            else:
                points = float(check.points)
                results.append(Result(self.function, check.name, points, points, True, "passed", check.advice))

    def _failed(self, check: Check, message: str) -> Result:
        message = ADVICE + message if check.advice else message
        return Result(self.function, check.name, 0.0, float(check.points), False, message, check.advice)


@dataclasses.dataclass
class _Run:
    """The suite running now, for :func:`blame_dependency`; ``verdicts``: each dependency's first
    failure ("" when it passes), found once per run."""

    suite: Suite
    student: Student
    seed: int
    verdicts: dict = dataclasses.field(default_factory=dict)


_RUNNING: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("autograder_suite_run", default=None)


def blame_dependency(name: str, evidence: Callable, shows: str, failure: str) -> None:
    """Call where a sub-check has found the answer wrong (``failure``, its message), before it
    fails: when the learner's ``name`` (a graded name whose suite the running suite ``depends_on``)
    fails its own checks and ``evidence(handle)`` is true, raise a failure that names ``name`` first.
    ``handle`` calls the learner's ``name``; the evidence is that the wrong answer is exactly what
    that broken function makes it (attention's weights equal the learner's softmax of the right
    scores), which ``shows`` says in words. Otherwise return, and the sub-check fails as it would
    have. The dependency's checks run at most once per run of the suite, with the same seed (the
    learner saw the same verdict at its own grade cell)."""
    run = _RUNNING.get()
    dependency = next((d for d in run.suite.depends_on if d.function == name), None) if run else None
    if dependency is None:
        return
    if name not in run.verdicts:
        run.verdicts[name] = _first_failure(dependency, run)
    if not run.verdicts[name]:
        return
    try:
        shown = bool(evidence(Student(run.student._backend, name)))
    except Exception:  # the learner's function failed, or gave what the evidence cannot use: no evidence
        return
    if shown:
        raise CheckFailed(
            f"fix your {name} first: it fails its own checks ({run.verdicts[name]}), and {shows}. "
            f"What this check found: {failure}"
        )


def _first_failure(dependency: Suite, run: _Run) -> str:
    """``"<sub-check>: <message>"`` of the learner's ``dependency.function`` first failing a check
    that counts, or "" when it passes them or is not defined."""
    backend, name = run.student._backend, dependency.function
    try:
        if not backend.request({"op": "has", "name": name, "target": (name, [])}):
            return ""
    except StudentError:
        return ""
    for result in dependency.run(Student(backend, name), run.seed):
        if not result.passed and not result.advice:
            message = result.message if len(result.message) <= 200 else result.message[:200] + "..."
            return f"{result.check}: {message}"
    return ""


HINTS = (  # (what a learner's error says, its cause and where to look): added only on these words
    (
        re.compile(r"view size is not compatible with input tensor's size and stride"),
        "an input here is a view whose memory is not contiguous (as slices and transposes are, and "
        "your own code passes such tensors too); .view needs contiguous memory: use .reshape(...), "
        "or .contiguous() before .view",
    ),
    (
        re.compile(r"modified by an inplace operation"),
        "an in-place operation (x /= ..., x += ..., masked_fill_, exp_, x[...] = ...) changed a tensor "
        "that autograd kept for the backward pass; use the out-of-place form (x = x / ..., masked_fill)",
    ),
    (
        re.compile(r"functions with out=\.\.\. arguments don't support automatic differentiation"),
        "out=... cannot write a result that needs gradients: assign the result instead (h = torch.tanh(...))",
    ),
    (
        re.compile(
            r"Expected dtype int64 for index|expected scalar type Long but found Int|only applicable to index tensor"
            r"|Expected a long tensor for index"
        ),
        "the indices here are int32, which the contract allows, and this operation takes int64 only: "
        "convert them with .long() first",
    ),
)
TRANSPOSE_ALL = re.compile(r"\(line \d+: .*(\.T\b|\.t\(\))")  # the failing line quoted by the learner's error
SHAPE_ERRORS = re.compile(
    r"size of tensor a|shapes cannot be multiplied|Expected size for first two dimensions|"
    r"expects a tensor with <= 2 dimensions|must match the size|should have the same number of dimensions"
)


def explain_error(message: str) -> str:
    """A learner's error message, with the cause named where its words point to a known one: a
    ``.view`` on a non-contiguous input, an in-place change of a tensor autograd saved, ``out=``
    under autograd, int64-only operations given int32 indices, and ``.T`` (or ``.t()``) on a tensor
    of more than two dimensions when the line that failed uses it and the error is about shapes."""
    hints = [hint for pattern, hint in HINTS if pattern.search(message)]
    if TRANSPOSE_ALL.search(message) and SHAPE_ERRORS.search(message):
        hints.append(
            "on a tensor of more than 2 dimensions, .T reverses all of them (and .t() refuses it): "
            "to swap the last two, as k^T needs with batch and head dimensions, use .transpose(-2, -1) or .mT"
        )
    return message + "".join(f"; likely cause: {hint}" for hint in hints)


# ---------------------------------------------------------------------------------------
# Comparisons. They accept float64 answers and any correct order of operations, and
# explain a mismatch by shape, by NaN/inf, or by the size of the error.

RTOL, ATOL = 1e-4, 1e-5


def as_tensor(value, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise CheckFailed(f"{what} should be a torch.Tensor, got {type(value).__name__}")
    return value


def expect_state_unchanged(model, before: dict, what: str) -> None:
    """Fail when the module's state_dict differs from ``before``: forward (and backward) only read it."""
    after = model.state_dict()
    changed = sorted(set(before) ^ set(after)) + [
        key
        for key, value in before.items()
        if key in after
        and not (
            isinstance(after[key], torch.Tensor) and after[key].shape == value.shape and torch.equal(after[key], value)
        )
    ]
    if changed:
        raise CheckFailed(
            f"{what} changed the module's parameters or buffers ({', '.join(changed[:4])}): forward only reads "
            "them (updating parameters is the optimizer's job), and registers nothing new"
        )


def expect_shape(value, shape, what: str) -> torch.Tensor:
    value = as_tensor(value, what)
    if tuple(value.shape) != tuple(shape):
        raise CheckFailed(f"{what} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    return value


def is_close(actual: torch.Tensor, expected: torch.Tensor, rtol=RTOL, atol=ATOL, equal_nan=False) -> bool:
    """True when the shapes agree and the values agree to tolerance (compared in float64)."""
    if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
        return False
    if actual.is_complex() or expected.is_complex():
        return False
    return torch.allclose(
        actual.detach().double(), expected.detach().double(), rtol=rtol, atol=atol, equal_nan=equal_nan
    )


def expect_close(actual, expected: torch.Tensor, what: str, rtol=RTOL, atol=ATOL, diagnoses=()):
    """Fail unless ``actual`` matches ``expected``.

    ``diagnoses`` is a sequence of ``(wrong_value, explanation)``: when the answer matches a
    known wrong value (the result of a typical bug, computed on the same inputs), the
    failure message names the bug instead of only quoting the error.
    """
    actual = expect_shape(actual, expected.shape, what)
    if actual.dtype == torch.bool or expected.dtype == torch.bool:
        if actual.dtype != expected.dtype:
            raise CheckFailed(f"{what} should have dtype {expected.dtype}, got {actual.dtype}")
        if torch.equal(actual, expected):
            return
        raise CheckFailed(
            _explain(actual, expected, what, diagnoses, rtol, atol)
            or f"{what} differs from the expected value at {int((actual != expected).sum())} entries"
        )
    if is_close(actual, expected, rtol, atol):
        return
    raise CheckFailed(
        _explain(actual, expected, what, diagnoses, rtol, atol) or _describe_error(actual, expected, what)
    )


def _explain(actual, expected, what, diagnoses, rtol, atol):
    """The explanation of the typical bug the answer matches; when it matches several (sizes
    that coincide can make two bugs give one answer), all of them, since naming one would guess."""
    found = []
    for wrong, explanation in diagnoses:
        if isinstance(wrong, torch.Tensor) and wrong.shape == actual.shape and explanation not in found:
            same = (
                torch.equal(actual, wrong)
                if wrong.dtype == torch.bool
                else is_close(actual, wrong, rtol, atol, equal_nan=True)
            )
            if same:
                found.append(explanation)
    if not found:
        return None
    if len(found) == 1:
        return f"{what} is wrong: {found[0]}"
    return f"{what} is wrong, in a way that fits more than one typical bug on these inputs: " + "; or ".join(found)


def _describe_error(actual: torch.Tensor, expected: torch.Tensor, what: str) -> str:
    a, e = actual.detach().double(), expected.detach().double()
    if not torch.isfinite(a).all() and torch.isfinite(e).all():
        bad = int((~torch.isfinite(a)).sum())
        return f"{what} contains {bad} NaN or infinite values where the expected values are finite"
    error = (a - e).abs()
    worst = int(error.argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), a.shape)) if a.dim() else ()
    return (
        f"{what} differs from the expected value: largest difference {error.max().item():.3g} "
        f"at index {index} (got {a.flatten()[worst].item():.6g}, expected {e.flatten()[worst].item():.6g})"
    )


def expect_bounded(shapes, limit: int, what: str, allowed: str, describe=lambda shape: ""):
    """Fail when a tensor among ``shapes`` (from a :class:`autograder.student.Trace`) has more
    than ``limit`` elements, naming the largest. ``what`` says where the shapes come from
    ("flash_attention_forward created"), ``allowed`` what the limit is made of, and
    ``describe(shape)`` what a tensor of that shape is (e.g. "the full matrix of scores")."""
    largest = max(shapes, key=math.prod, default=())
    if shapes and math.prod(largest) > limit:
        kind, shape, size = describe(tuple(largest)), tuple(largest), math.prod(largest)
        if kind:
            raise CheckFailed(
                f"{what} a tensor of shape {shape} ({size} elements): {kind}. At most {limit} elements per tensor "
                f"are allowed here: {allowed}"
            )
        raise CheckFailed(
            f"{what} a tensor of shape {shape} ({size} elements). At most {limit} elements per tensor are allowed "
            f"here: {allowed}"
        )


def expect_computed_in_torch(trace, what: str, input_elements: int):
    """Fail when the traced call took its values out of PyTorch: a rule about memory or work is
    measured on PyTorch's operations, and NumPy arrays, Python lists or values read one at a time
    (``trace.exports``, ``trace.scalar_reads``) escape it. ``input_elements``: how many elements
    the inputs hold (a few scalars, such as a maximum per tile, or a list of block starts stay far
    below half)."""
    if trace.exports:
        used = ", ".join(f"Tensor.{name}" for name in trace.exports)
        raise CheckFailed(
            f"{what} took tensors out of PyTorch ({used}): compute with PyTorch operations on tensors. "
            "NumPy arrays and Python lists hide the memory and work this rule is about"
        )
    if trace.scalar_reads > input_elements // 2:
        raise CheckFailed(
            f"{what} read {trace.scalar_reads} values out of tensors into Python numbers (.item(), float(...), "
            ".tolist() of integers): compute with PyTorch operations on whole tensors or tiles. Python numbers "
            "hide the memory and work this rule is about"
        )


def expect_measured(measurement, what: str):
    """Stop the sub-check, scored as not passed, when ``measurement`` (see
    :meth:`autograder.student.Student.measured`) could not be taken here: points are given only for
    what was measured. ``what`` names the quantity ("how much memory flash_attention_forward uses")."""
    if measurement.unavailable:
        raise oracle.Undecided(
            f"{what} could not be measured here ({measurement.unavailable}); the official grade measures it "
            "from outside the grader's sandbox"
        )


def expect_little_touched(measurement, cap: int, call: str, advice: str):
    """Fail the sub-check when ``call`` read or wrote more than ``cap`` bytes of memory that its
    process held before the call or still holds after it, or gave back during it
    (``measurement.touched_bytes``, see :mod:`autograder.touched`): a buffer made beforehand and
    filled during the call is memory the call used, though the process's memory never grew.
    Nothing is decided where it was not measured."""
    touched = measurement.touched_bytes
    if touched is not None and touched > cap:
        raise CheckFailed(
            f"{call} read or wrote {touched / 2**20:.0f} MiB of memory that the process held before the call "
            f"or still holds after it, or gave back during it (measured by reading the process's /proc files); at most "
            f"{cap >> 20} MiB are allowed. "
            "A buffer made beforehand (at the top of the notebook, or in an earlier call) and filled during the "
            f"call is memory the call uses all the same. {advice}"
        )


def randn(gen: torch.Generator, *shape, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    """Standard normal values drawn from ``gen`` (so a failing input can be reproduced)."""
    return torch.randn(*shape, generator=gen, dtype=dtype) * scale


def randint(gen: torch.Generator, low: int, high: int) -> int:
    """One integer in [low, high] drawn from ``gen``: odd sizes that change with the seed."""
    return int(torch.randint(low, high + 1, (1,), generator=gen))


def distinct_sizes(gen: torch.Generator, *ranges, avoid=()) -> list[int]:
    """One size from each inclusive ``(low, high)`` range, all different from each other and from
    ``avoid``: when a failure message names a size (N_k, d_k, d_v), no other size can explain it."""
    sizes: list[int] = []
    for low, high in ranges:
        choices = [n for n in range(low, high + 1) if n not in sizes and n not in avoid]
        if not choices:
            raise ValueError(f"no size in [{low}, {high}] differs from {sizes + list(avoid)}")
        sizes.append(choices[int(torch.randint(len(choices), (1,), generator=gen))])
    return sizes


def noncontiguous(tensor: torch.Tensor) -> torch.Tensor:
    """The same values as ``tensor`` (same shape and dtype) in a layout no learner's code may assume:
    the dimensions are stored in reverse order and every element is followed by a gap, so the result
    is not contiguous whenever it has two or more elements, no two of its dimensions merge
    (``.view(-1, d)``, ``.view(B * H, N, d)``, ``.view(B, N * h)`` raise on it, as on a learner's own
    transposed tensor; splitting one dimension with ``.view`` still works) and its last dimension's
    stride is not 1 (a Triton kernel or ``data_ptr`` arithmetic that assumes it reads the gaps). The
    gaps hold NaN (floats), False (bool) or the dtype's smallest integer, so code that reads memory
    past the view's elements gets values that show it.

    Both grading paths hand it to the learner with this layout (``autograder.wire.layout_copy``,
    checked in ``tests/test_layouts.py``). A check draws it for any tensor argument whose contract
    does not ask for contiguity: ``student(noncontiguous(q), noncontiguous(k), v)``, also in
    ``student.with_grad((noncontiguous(x), ...), ...)``; compute the expected values on the original
    (same values). The result is a new tensor; ``tensor`` is left unchanged."""
    if tensor.dim() == 0:
        return tensor.clone()
    if tensor.is_floating_point() or tensor.is_complex():
        gap = float("nan")
    else:
        gap = False if tensor.dtype == torch.bool else torch.iinfo(tensor.dtype).min
    reverse = tuple(range(tensor.dim() - 1, -1, -1))
    memory = torch.full((*tensor.shape[::-1], 2), gap, dtype=tensor.dtype)
    memory[..., 0] = tensor.detach().permute(reverse)
    return memory[..., 0].permute(reverse)  # dimension i has stride 2 * (the sizes before it)


def random_mask(gen: torch.Generator, shape) -> torch.Tensor:
    """A random bool attention mask (True = may attend) in which every query may attend to at
    least one key (key 0), so no row of weights is undefined."""
    mask = torch.rand(*shape, generator=gen) < 0.6
    mask[..., 0] = True
    return mask
