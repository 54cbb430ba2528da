"""Handles on the learner's code, the only way a check touches it.

A :class:`Student` names an object in the learner's namespace (a function, a class, or a
module that the learner's class returned) and forwards calls to a *backend*: the learner's
own kernel (:class:`KernelBackend`, used by the notebook's grade cells) or a sandboxed
process (:class:`autograder.sandbox.Sandbox`, used by ``python -m autograder``). Either
way a call returns plain data only: ``torch.Tensor`` copies, numbers, strings, tuples,
lists, dicts, and further :class:`Student` handles for other objects.

    student = Student(backend, "scaled_dot_product_attention")
    output, weights = student(q, k, v, mask=mask)
    mha = Student(backend, "MultiHeadAttention")(16, 4)   # a handle on the new module
    state = mha.state_dict()                               # dict of plain tensors
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import random
import time

import torch

from autograder import protocol, wire
from autograder.touched import touch_meter


@dataclasses.dataclass
class Trace:
    """What one traced call computed (see ``protocol.call``, mode ``"trace"``)."""

    created: list  # the shape of every tensor any torch operation created, forward and backward
    ops: list  # the names of the aten operations that ran (e.g. "mm", "exp")
    autograd: bool  # whether any operation computed gradients (autograd's backward, forward-mode AD)
    saved: list = dataclasses.field(default_factory=list)  # shapes kept for backward by autograd.Function nodes
    peak: int = 0  # the most elements that the tensors the call created held at one time
    multiply_adds: int = 0  # the products matrix multiplications computed (M x K x N each)
    exports: list = dataclasses.field(default_factory=list)  # e.g. "numpy", "tolist": values handed out of torch
    scalar_reads: int = 0  # values read out as Python numbers (.item(), float(t), integers' .tolist())
    kernel_launches: int = 0  # Triton kernels launched (kernel[grid](...))


@dataclasses.dataclass
class Measurement:
    """What one call cost, measured by a process other than the learner's code where the backend
    allows (see :meth:`Student.measured`): ``peak_bytes``, the most memory in use during the call
    above what was in use when it began, and ``cpu_seconds``, the CPU time it used. ``by`` says who
    measured; ``unavailable``, when set, why nothing could be measured (both numbers are then None).
    ``touched_bytes``: the memory the process held already, or still holds, that the call read or
    wrote, and what it held and gave back (:mod:`autograder.touched`; None where the host does not
    let the grader see it, or lets the learner's code hide it)."""

    peak_bytes: int | None
    cpu_seconds: float | None
    by: str
    unavailable: str | None = None
    touched_bytes: int | None = None


_CALLS: contextvars.ContextVar[list | None] = contextvars.ContextVar("autograder_seeded_calls", default=None)


@contextlib.contextmanager
def seeded_calls(seed: int):
    """Within: each call of the learner's code carries its own seed (``seed`` plus the call's index),
    with which the learner's process seeds its random generators first (``protocol.seed_generators``):
    an answer that draws random numbers gets the same draws in the sandbox, the kit and a grade cell."""
    token = _CALLS.set([seed])
    try:
        yield
    finally:
        _CALLS.reset(token)


class StudentError(Exception):
    """The learner's code failed or is missing; the message is written for the learner."""


class Student:
    def __init__(self, backend, root, path=(), name=None):
        self._backend, self._root, self._path = backend, root, tuple(path)
        self._name = name or ".".join([str(root), *path])

    def __getattr__(self, attr) -> Student:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Student(self._backend, self._root, self._path + (attr,), f"{self._name}.{attr}")

    def _request(self, op, **fields):
        if op == "call" and (calls := _CALLS.get()) is not None:
            fields["rng"], calls[0] = calls[0], (calls[0] + 1) % 2**63
        return self._backend.request({"op": op, "name": self._name, "target": (self._root, list(self._path)), **fields})

    def __call__(self, *args, **kwargs):
        return self._call("plain", args, kwargs)

    def traced(self, *args, **kwargs) -> tuple:
        """Call and return ``(result, trace)``, a :class:`Trace` of what the call computed
        (to check that no N x N matrix was materialized, or that no autograd was used)."""
        result, trace = self._call("trace", args, kwargs)
        return result, Trace(**trace)

    def traced_with_grad(self, args, grad_output, grad_inputs, **kwargs) -> tuple:
        """As :meth:`with_grad`, traced through forward and backward: ``(result, grads, trace)``."""
        result, trace = self._call("trace", args, kwargs, grad_output=pack(grad_output), grad_inputs=list(grad_inputs))
        return result, trace.pop("grads"), Trace(**trace)

    def measured(self, *args, **kwargs) -> tuple:
        """Call and return ``(result, measurement)``, a :class:`Measurement` of the call's peak
        memory and CPU time. The sandbox's come from its control group, read by the grader; the
        learner's kit reads its child process's ``/proc`` counters; a grade cell (the learner's own
        kernel) can only measure itself, which the official grade does not rely on."""
        value, measurement = self._request("call", args=pack(args), kwargs=pack(kwargs), mode="plain", measure=True)
        return self._unpack(value), measurement

    def measured_with_grad(self, args, grad_output, grad_inputs, **kwargs) -> tuple:
        """As :meth:`with_grad`, forward and backward measured together: ``(result, grads, measurement)``."""
        fields = {"grad_output": pack(grad_output), "grad_inputs": list(grad_inputs)}
        value, measurement = self._request(
            "call", args=pack(args), kwargs=pack(kwargs), mode="grad", measure=True, **fields
        )
        result, grads = self._unpack(value)
        return result, grads, measurement

    def functions(self, *args, **kwargs):
        """Call and return ``(result, names)``: the names of the torch functions and tensor
        methods the call used (to check a contract rule such as "not torch.softmax")."""
        return self._call("functions", args, kwargs)

    def with_grad(self, args, grad_output, grad_inputs, **kwargs):
        """Call with the positional args at ``grad_inputs`` requiring grad, back-propagate
        ``grad_output`` from the (first) output; returns ``(result, grads)``, one grad per entry of
        ``grad_inputs``. The entry ``"parameters"`` (:data:`autograder.protocol.PARAMETERS`) asks, of a
        called ``nn.Module``, for its parameters' gradients: ``{name: grad or None}`` in
        ``named_parameters()`` order (the module's ``.grad`` are left as they were)."""
        return self._call("grad", args, kwargs, grad_output=pack(grad_output), grad_inputs=list(grad_inputs))

    def _call(self, mode, args, kwargs, **fields):
        value = self._request("call", args=pack(args), kwargs=pack(kwargs), mode=mode, **fields)
        return self._unpack(value)

    def has(self, attr: str) -> bool:
        """Whether the object has the attribute ``attr`` (``hasattr`` across the backend)."""
        return self._backend.request({"op": "has", "name": self._name, "target": (self._root, [*self._path, attr])})

    def value(self):
        """The object itself as plain data (e.g. a tensor attribute)."""
        return self._unpack(self._request("value"))

    def _unpack(self, value):
        if isinstance(value, dict):
            if "__handle__" in value:
                return Student(self._backend, value["__handle__"], (), f"{self._name}(...)")
            if "__dtype__" in value:
                return getattr(torch, value["__dtype__"])
            return {k: self._unpack(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._unpack(v) for v in value)
        return value

    def __repr__(self):
        return f"<learner's {self._name}>"


def pack(value):
    """Arguments for the learner's code as plain data (handles, dtypes and generators marked)."""
    if isinstance(value, Student):
        if value._path:
            raise TypeError("only handles returned by the learner's code can be passed back")
        return {"__handle__": value._root}
    if isinstance(value, torch.Generator):
        return {"__generator__": value.get_state()}
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, (list, tuple)):
        return type(value)(pack(v) for v in value)
    if isinstance(value, dict):
        return {k: pack(v) for k, v in value.items()}
    return value


class KernelBackend:
    """Runs requests in this process, on objects of the learner's namespace.

    Used by grade cells: quick feedback, but not tamper-proof (the learner's earlier cells
    ran in this same process); the sandbox is what instructors' grades rely on. A measured
    request (``measure: True``, see :meth:`Student.measured`) is measured by this same process
    through ``/proc/self`` (:func:`process_meter`): honest answers get the sandbox's verdict, but
    the learner's code could change what this process reports, so only the sandbox's measure counts.
    """

    def __init__(self, namespace: dict):
        self.session = protocol.Session()
        self.session.namespace = namespace

    def request(self, message):
        if message.get("measure"):
            self._handle({"op": "prepare_measured_call"})
            meter = process_meter("self", "this notebook's own kernel (the official grade measures the sandbox)")
            value = self._handle(message)
            return value, meter()
        return self._handle(message)

    def _handle(self, message):
        try:
            with _generators_kept():  # a seeded call leaves the notebook's own random draws as they were
                return self.session.handle(_private_copy(message))
        except protocol.CallFailed as error:
            raise StudentError(str(error)) from None


@contextlib.contextmanager
def _generators_kept():
    """Restore the states of the generators ``protocol.seed_generators`` seeds, on leaving."""
    cuda = torch.cuda.is_initialized()
    states = torch.default_generator.get_state(), torch.cuda.get_rng_state_all() if cuda else None, random.getstate()
    try:
        yield
    finally:
        torch.default_generator.set_state(states[0])
        if cuda:
            torch.cuda.set_rng_state_all(states[1])
        random.setstate(states[2])


def process_meter(pid, by: str):
    """Start measuring process ``pid`` ("self" for this one) through Linux's ``/proc``: its peak
    resident memory is reset (``clear_refs``) and its CPU time read; returns a function that, when
    called, gives the :class:`Measurement` since (what the call touched included). Pages of files
    the process maps without writing them (its libraries' code, faulted in by a first call, or again
    after the system reclaimed them) are not memory the call allocated: their growth during the call
    is not counted. Without ``/proc`` (macOS, Windows), or where the reset is refused, the
    measurement says it is unavailable."""
    folder = f"/proc/{pid}"
    try:
        with open(f"{folder}/clear_refs", "w") as clear:
            clear.write("5")  # VmHWM := VmRSS
        start_clean, touched = _clean_file_kib(folder), touch_meter(lambda: [pid])
        start_rss, start_cpu = _status_kib(folder, "VmRSS"), _cpu_seconds(folder)  # last: the above takes time
    except (OSError, ValueError) as error:
        reason = f"this system does not let the grader measure the process ({type(error).__name__}: {error})"
        return lambda: Measurement(None, None, by, reason)

    def measurement() -> Measurement:
        try:
            peak, cpu = _status_kib(folder, "VmHWM"), _cpu_seconds(folder)
        except (OSError, ValueError) as error:
            return Measurement(None, None, by, f"the process could not be measured ({error})")
        end_clean = _clean_file_kib(folder)
        mapped = max(end_clean - start_clean, 0) if None not in (start_clean, end_clean) else 0
        return Measurement(max(peak - start_rss - mapped, 0) << 10, max(cpu - start_cpu, 0.0), by, None, touched())

    return measurement


def _clean_file_kib(folder: str) -> int | None:
    """KiB of clean pages the process maps (``smaps_rollup``'s Private_Clean and Shared_Clean):
    files it reads through memory, code above all. Memory it allocates and writes (anonymous,
    shared memory, a file it writes through a mapping) is dirty. None where Linux does not say."""
    try:
        with open(f"{folder}/smaps_rollup") as rollup:
            return sum(int(line.split()[1]) for line in rollup if line.startswith(("Private_Clean:", "Shared_Clean:")))
    except (OSError, ValueError, IndexError):
        return None


def _status_kib(folder: str, field: str) -> int:
    with open(f"{folder}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise ValueError(f"no {field} in {folder}/status")


def _cpu_seconds(folder: str) -> float:
    """CPU time of the process: of all its threads (``schedstat``, in nanoseconds) and of the
    children it waited for (``stat``'s cutime and cstime, in clock ticks)."""
    if folder == "/proc/self":
        children = os.times()
        return time.process_time() + children.children_user + children.children_system
    threads = 0
    for task in os.listdir(f"{folder}/task"):
        try:
            with open(f"{folder}/task/{task}/schedstat") as schedstat:
                threads += int(schedstat.read().split()[0])
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    with open(f"{folder}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return threads / 1e9 + sum(int(f) for f in fields[13:15]) / os.sysconf("SC_CLK_TCK")


def _private_copy(value):
    """The message with every tensor copied: the learner's code gets its own copies of the
    checks' inputs, laid out exactly as the sandbox's wire format delivers them
    (:func:`autograder.wire.layout_copy`: a check's non-contiguous view stays one)."""
    if isinstance(value, torch.Tensor):
        return wire.layout_copy(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_private_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _private_copy(v) for k, v in value.items()}
    return value
