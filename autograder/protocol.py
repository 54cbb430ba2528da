"""The calling protocol: how the learner's code is called, in the learner's kernel or in a
sandboxed child, and the requests the grader sends to that child.

A request is a dict with an ``op``: ``run_cells`` (execute the submission's code cells),
``has`` (does a name or attribute exist), ``value`` (an object as plain data) or ``call``
(call a function or method, in ``mode`` "plain", "grad", "trace" or "functions"). A reply is
``{"ok": True, "value": ...}`` or ``{"ok": False, "error": message for the learner}``.
The modes "trace" and "functions" record, inside the learner's process, what the call ran
(:class:`NumelRecorder`, :class:`FunctionRecorder`, :class:`ExportRecorder`,
:class:`KernelLaunches`); the learner's code can switch any of them off, so what they record
is only ever advice (0 points). A request may also carry ``measure: True``: the *parent*
(the grader's side of the backend) then measures the call's memory and CPU time from outside
(:meth:`autograder.student.Student.measured`): it first sends ``{"op": "prepare_measured_call"}``, so
that the child serves the call that follows as a new process would (:func:`autograder.heap.freshen`),
without Python's garbage collector, and only then starts measuring.
A call may carry ``rng``: the child seeds its random generators with it first (:func:`seed_generators`),
so an answer that draws random numbers (dropout left on) is graded on the same draws in every path.
Values are plain data only (:func:`plain`): tensors, numbers, strings, lists, tuples,
dicts, and handles (``{"__handle__": i}``) on other objects, which stay in the child.
Between processes, requests and replies travel as :mod:`autograder.wire` frames.

Imports only the standard library, torch, :mod:`autograder.wire` and :mod:`autograder.heap`: it
also runs inside the sandbox (see :mod:`autograder.confinement`).
"""

import contextlib
import gc
import linecache
import numbers
import random
import secrets
import socket
import sys
import traceback
import weakref

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from autograder import heap, wire

MAX_ERROR_CHARS = 4000  # a learner's exception message, as much of it as a report shows
PLAIN = (bool, int, float, str, type(None))


class CallFailed(Exception):
    """The learner's code raised; the message is what the learner should read."""


def describe_exception(name: str, error: BaseException) -> str:
    if isinstance(error, NotImplementedError):
        return f"{name} is not implemented yet (it raises NotImplementedError)"
    frames = traceback.extract_tb(error.__traceback__)
    at = next((frame for frame in reversed(frames) if frame.filename.startswith("<cell")), None)
    # two whole templates, each ending in text of the learner's (quoted as it is in any language)
    if at is None:
        return f"{name} raised {type(error).__name__}: {error}"
    return f"{name} raised {type(error).__name__}: {error} (line {at.lineno}: {at.line})"


def plain(value, wrap):
    """``value`` reduced to plain data: tensors become detached ``torch.Tensor`` copies,
    containers are rebuilt, numbers stay numbers, and any other object (a module) is
    handed to ``wrap``, which returns a handle for it."""
    if isinstance(value, torch.Tensor):
        with torch._C.DisableTorchFunctionSubclass():  # a subclass's own methods are not trusted
            value = value.detach().clone()
        return value if type(value) is torch.Tensor else value.as_subclass(torch.Tensor)
    if type(value) in PLAIN:
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):  # numpy's integers
        return int(value)
    if isinstance(value, numbers.Real):  # numpy's floats
        return float(value)
    if type(value).__name__ == "ndarray" and getattr(value, "dtype", None) is not None and value.dtype.kind in "biuf":
        return torch.as_tensor(value).clone()
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, (tuple, list, torch.Size)):
        items = [plain(v, wrap) for v in value]
        return items if type(value) is list else tuple(items)
    if isinstance(value, dict):
        return {str(k): plain(v, wrap) for k, v in value.items()}
    return wrap(value)


class NumelRecorder(TorchDispatchMode):
    """Records the shape of every tensor that any aten operation produces, the operations'
    names, whether any of them computed gradients (ran inside autograd's backward pass,
    or is a derivative formula such as ``tanh_backward``, which forward-mode AD also uses),
    ``peak``: the most elements that the tensors created so far held at one time (each
    storage counted once, while any tensor using it lives; views allocate nothing), and
    ``multiply_adds``: the products that matrix multiplications computed (M x K x N for an
    (M, K) @ (K, N) product, per batch entry), the work that tells one multiplication order
    from another."""

    MATRIX_PRODUCTS = {"mm": 0, "addmm": 1, "bmm": 0, "baddbmm": 1, "addbmm": 1, "mv": 0, "addmv": 1, "dot": 0}

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """False: torch then leaves ``__torch_dispatch__`` unwrapped, and the first traced call
        does not import torch._dynamo (about 6 s per sandbox on a busy machine)."""
        return False

    def __init__(self):
        super().__init__()
        self.shapes, self.ops = [], set()
        self.autograd = False
        self.live, self.elements, self.peak = {}, 0, 0  # storage address -> [tensors using it, elements]
        self.multiply_adds = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        op = func.overloadpacket.__name__
        self.ops.add(op)
        if op in self.MATRIX_PRODUCTS:
            first = args[self.MATRIX_PRODUCTS[op]]  # (..., M, K), times (..., K, N) or (K,)
            second = args[self.MATRIX_PRODUCTS[op] + 1]
            self.multiply_adds += first.numel() * (second.shape[-1] if second.dim() > 1 else 1)
        if torch._C._current_graph_task_id() != -1 or "_backward" in func.__name__:
            self.autograd = True
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
                self._hold(t)
        return out

    def _hold(self, t):
        """Count ``t``'s storage while ``t`` lives (a view's base lives as long as the view)."""
        if t.layout != torch.strided or t.device.type == "meta":
            return  # sparse and meta tensors have no plain storage to count
        try:
            with torch._C.DisableTorchFunction():  # the grader's look, not the learner's export
                storage = t.untyped_storage()
                key = (t.device, storage.data_ptr())
        except (RuntimeError, NotImplementedError):
            return  # torch.func's wrapped tensors (vmap, grad) have no storage of their own
        if key in self.live:
            self.live[key][0] += 1
        elif t._is_view() or storage.nbytes() == 0:
            return  # a view of an input, or nothing allocated
        else:
            self.live[key] = [1, storage.nbytes() // t.element_size()]
            self.elements += self.live[key][1]
            self.peak = max(self.peak, self.elements)
        weakref.finalize(t, self._release, key)

    def _release(self, key):
        entry = self.live.get(key)
        if entry is not None:
            entry[0] -= 1
            if entry[0] == 0:
                self.elements -= entry[1]
                del self.live[key]


def saved_shapes(output, limit=10000) -> list:
    """Shapes of the tensors that the custom ``autograd.Function`` nodes of ``output``'s graph
    keep for backward: ``ctx.saved_tensors`` and tensors stored as ``ctx`` attributes."""
    shapes, seen = [], set()
    todo = [output.grad_fn] if isinstance(output, torch.Tensor) and output.grad_fn is not None else []

    def visit(value):
        if isinstance(value, torch.Tensor):
            shapes.append(tuple(value.shape))
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    while todo and len(seen) < limit:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            visit(list(node.saved_tensors))
            visit(list(vars(node).values()))
        todo.extend(next_node for next_node, _ in node.next_functions)
    return shapes


class FunctionRecorder(TorchFunctionMode):
    """Records the name of every torch function and tensor method called (e.g. ``"softmax"``;
    an aten overload called directly, ``torch.ops.aten.softmax.int``, as ``"softmax"``)."""

    def __init__(self):
        super().__init__()
        self.functions = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.functions.add(getattr(func, "__name__", str(func)).split(".")[0])
        return func(*args, **(kwargs or {}))


class ExportRecorder(TorchFunctionMode):
    """Records how values left PyTorch: ``exports``, the tensor methods that hand a floating-point
    tensor (or an integer view of one) of more than one element to NumPy, Python lists or raw
    memory; ``scalar_reads``, how many values were read out one at a time (``.item()``,
    ``float(t)``) or as integers (``arange(...).tolist()``: a few block starts are fine, values
    scaled to integers are many). Advice only, like every recorder here: what the other recorders
    measure is PyTorch's, and what is computed outside it, they cannot see (the grader's points
    for memory and work come from outside the process)."""

    EXPORTS = {"numpy", "__array__", "tolist", "untyped_storage", "storage", "data_ptr", "__dlpack__"}
    SCALAR_READS = {"item", "__float__"}
    WATCHED = EXPORTS | SCALAR_READS

    def __init__(self):
        super().__init__()
        self.exports, self.scalar_reads = set(), 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        tensor = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if tensor is not None and name in self.WATCHED:
            if name in self.SCALAR_READS:
                self.scalar_reads += 1
            elif tensor.is_floating_point() or (tensor._base is not None and tensor._base.is_floating_point()):
                if tensor.numel() > 1:
                    self.exports.add(name)
            else:
                self.scalar_reads += tensor.numel()  # integers (block starts, or values scaled to integers)
        return func(*args, **(kwargs or {}))


class KernelLaunches:
    """Counts the Triton kernels launched while it is entered (``count``), compiled or run by
    Triton's interpreter: a kernel's ``run``, which ``kernel[grid](...)`` calls, is wrapped. Without
    Triton loaded there is nothing to launch and the count stays 0."""

    CLASSES = (("triton.runtime.jit", "JITFunction"), ("triton.runtime.interpreter", "InterpretedFunction"))

    def __init__(self):
        self.count, self.patched = 0, []

    def __enter__(self):
        for module, name in self.CLASSES:
            cls = getattr(sys.modules.get(module), name, None)
            if cls is not None and "run" in vars(cls):
                self.patched.append((cls, cls.run))
                cls.run = self._counting(cls.run)
        return self

    def _counting(self, run):
        def counted(kernel, *args, **kwargs):
            if not kwargs.get("warmup"):
                self.count += 1
            return run(kernel, *args, **kwargs)

        return counted

    def __exit__(self, *exc):
        for cls, run in self.patched:
            cls.run = run


def _tensor_arguments(args, kwargs):
    """(label, tensor) for every tensor among the arguments, nested in lists, tuples, dicts."""
    found = []

    def visit(value, label):
        if isinstance(value, torch.Tensor):
            found.append((label, value))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, f"{label}[{i}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{label}[{key!r}]")

    for label, arg in _labelled(args, kwargs):
        visit(arg, label)
    return found


def _labelled(args, kwargs):
    """(label, value) of each argument, labelled as the learner's messages name them."""
    yield from ((f"argument {i + 1}", arg) for i, arg in enumerate(args))
    yield from ((f"argument {key}", arg) for key, arg in kwargs.items())


def _replaced(after, before) -> bool:
    """Whether a list's item was replaced (the same object, or an equal plain value, is not)."""
    return after is not before and (
        isinstance(after, torch.Tensor) or isinstance(before, torch.Tensor) or after != before
    )


def _shown(values: list) -> str:
    return repr(values) if len(values) <= 8 else f"[{', '.join(map(repr, values[:8]))}, ...] ({len(values)} items)"


def _unchanged(before: torch.Tensor, after: torch.Tensor) -> bool:
    if before.shape != after.shape or before.dtype != after.dtype:
        return False
    same = before == after
    if before.is_floating_point() or before.is_complex():
        same |= before.isnan() & after.isnan()
    return bool(same.all())


def call(name, fn, args, kwargs, mode="plain", grad_output=None, grad_inputs=()):
    """Call the learner's ``fn``; returns the raw result, adjusted for ``mode``:

    - ``"plain"``: the result;
    - ``"functions"``: ``(result, names)``, the sorted names of the torch functions it called and
      of the aten operations that ran (these also from TorchScript, which calls no Python function);
    - ``"grad"``: ``(result, grads)``: positional args at ``grad_inputs`` require grad, the
      (first) output is back-propagated with ``grad_output``, grads are theirs, in the order of
      ``grad_inputs``; the entry :data:`PARAMETERS` (``"parameters"``) there stands for the
      parameters of ``fn``, an ``nn.Module``: its grad is ``{name: grad or None}`` in
      ``fn.named_parameters()`` order, computed from cleared ``.grad`` (:func:`_parameter_grads`);
    - ``"trace"``: ``(result, trace)``, with ``trace`` a dict: ``created``, the shapes of every
      tensor created during the call; ``ops``, the names of the aten operations it ran;
      ``autograd``, whether any operation computed gradients; ``peak``, the most elements the
      tensors it created held at one time; ``multiply_adds``, the matrix products' work;
      ``exports`` and ``scalar_reads``, how values left PyTorch (:class:`ExportRecorder`);
      ``kernel_launches``, the Triton kernels it launched (:class:`KernelLaunches`);
      and, when ``grad_inputs`` is given, the call runs as in ``"grad"`` (backward traced too)
      with ``grads`` and ``saved`` (:func:`saved_shapes` of the output, before backward).

    Every graded function's contract leaves its inputs unchanged: a call that modifies a
    tensor argument or a list argument in place fails with a message naming the argument (in
    both backends, which pass the learner private copies of the arguments).
    """
    with torch._C.DisableTorchFunctionSubclass():
        inputs = [(label, tensor, tensor.detach().clone()) for label, tensor in _tensor_arguments(args, kwargs)]
    lists = [(label, arg, list(arg)) for label, arg in _labelled(args, kwargs) if isinstance(arg, list)]
    result = _call(name, fn, args, kwargs, mode, grad_output, grad_inputs)
    for label, arg, before in lists:
        if len(arg) != len(before) or any(_replaced(a, b) for a, b in zip(arg, before)):
            raise CallFailed(
                f"{name} changed its {label} in place (a list: {_shown(before)} became {_shown(arg)}); "
                "its inputs must be left unchanged: work on a copy (sorted(x), list(x), x + [...]) "
                "instead of x.sort(), x.append(...) or x[i] = ..."
            )
    for label, tensor, before in inputs:
        with torch._C.DisableTorchFunctionSubclass():
            if not _unchanged(before, tensor.detach()):
                raise CallFailed(
                    f"{name} changed its {label} in place (shape {tuple(before.shape)}); "
                    "its inputs must be left unchanged: look for in-place operations "
                    "(add_, masked_fill_, x[...] = ..., +=) on an input or a view of it"
                )
    return result


def _call(name, fn, args, kwargs, mode, grad_output, grad_inputs):
    try:
        if mode in ("trace", "functions"):  # recorded in this process: the grader's advice, never its points
            return _recorded_call(fn, args, kwargs, mode, grad_output, grad_inputs)
        if mode == "grad":
            trace = {}
            result = _run(fn, args, kwargs, grad_output, grad_inputs, trace)
            return result, trace["grads"]
        return fn(*args, **kwargs)
    except CallFailed:
        raise
    except Exception as error:
        raise CallFailed(describe_exception(name, error)) from None


def _recorded_call(fn, args, kwargs, mode, grad_output, grad_inputs):
    """``(result, record)``: a ``"trace"`` dict, or the ``"functions"`` names."""
    if mode == "trace":
        trace = {}
        with KernelLaunches() as launches, ExportRecorder() as exports, NumelRecorder() as recorder:
            result = _run(fn, args, kwargs, grad_output, grad_inputs, trace, record_saved=True)
        trace.update(
            created=recorder.shapes,
            ops=sorted(recorder.ops),
            autograd=recorder.autograd,
            peak=recorder.peak,
            multiply_adds=recorder.multiply_adds,
            exports=sorted(exports.exports),
            scalar_reads=exports.scalar_reads,
            kernel_launches=launches.count,
        )
        return result, trace
    with FunctionRecorder() as functions, NumelRecorder() as operations:
        result = fn(*args, **kwargs)
    return result, sorted(functions.functions | operations.ops)


PARAMETERS = "parameters"  # in grad_inputs: the gradients of the called module's parameters


def _run(fn, args, kwargs, grad_output, grad_inputs, trace, record_saved=False):
    """Call ``fn``; with ``grad_inputs``, also back-propagate and put ``grads`` (and with
    ``record_saved``, ``saved``) in ``trace``."""
    if not grad_inputs:
        return fn(*args, **kwargs)
    args = list(args)
    for i in grad_inputs:
        if i != PARAMETERS:
            args[i] = wire.layout_copy(args[i]).requires_grad_(True)  # the layout the check chose
    with _parameter_grads(fn, PARAMETERS in grad_inputs) as read_parameter_grads:
        result = fn(*args, **kwargs)
        output = result[0] if isinstance(result, (tuple, list)) else result
        if record_saved:
            trace["saved"] = saved_shapes(output)
        output.backward(grad_output)
        parameter_grads = read_parameter_grads()
    trace["grads"] = tuple(parameter_grads if i == PARAMETERS else args[i].grad for i in grad_inputs)
    return result


@contextlib.contextmanager
def _parameter_grads(module, wanted: bool):
    """Yields a function that reads ``{name: grad or None}`` of ``module``'s parameters (``{}`` unless
    ``wanted``): their ``.grad`` are cleared first (so the call's backward alone is read, not a sum with
    an earlier one), then put back as they were, so that the call leaves the learner's module exactly as
    it found it (a module of the learner's own kernel may hold the gradients of their training loop, and
    none accumulate from one check to the next)."""
    if not wanted:
        yield dict
        return
    if not isinstance(module, torch.nn.Module):
        raise CallFailed(f"{type(module).__name__} is not an nn.Module: it has no parameters to differentiate")
    saved = [(p, p.grad) for p in module.parameters()]
    for p, _ in saved:
        p.grad = None
    try:
        yield lambda: {name: p.grad for name, p in module.named_parameters()}
    finally:
        for p, grad in saved:
            p.grad = grad


class Session:
    """The learner's namespace and the objects handed to the grader as handles."""

    def __init__(self):
        self.namespace = {"__name__": "__main__"}
        self.handles = []
        self.held = []  # blocks of C's heap held for the measured call that comes next (autograder.heap)
        self.collecting = False  # whether Python's garbage collector is to be enabled again after it

    def wrap(self, obj):
        self.handles.append(obj)
        return {"__handle__": len(self.handles) - 1, "type": type(obj).__name__}

    def resolve(self, target):
        root, path = target
        if isinstance(root, str):  # a graded name: as its grade cell saw it, else as the notebook left it
            graded = self.namespace.get("__graded__")
            obj = graded[root] if isinstance(graded, dict) and root in graded else self.namespace[root]
        else:
            obj = self.handles[root]
        for name in path:
            obj = getattr(obj, name)
        return obj

    def unpack(self, value):
        if isinstance(value, dict):
            if "__handle__" in value:
                return self.handles[value["__handle__"]]
            if "__dtype__" in value:
                return getattr(torch, value["__dtype__"])
            if "__generator__" in value:
                return torch.Generator().set_state(value["__generator__"])
            return {k: self.unpack(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.unpack(v) for v in value)
        return value

    def run_cells(self, cells):
        errors = []
        for index, source in enumerate(cells):
            filename = f"<cell {index}>"
            # Registered so tracebacks quote the failing line and Triton's interpreter can read the source.
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            try:
                exec(compile(source, filename, "exec"), self.namespace)
                errors.append(None)
            except BaseException as error:  # SystemExit too: one bad cell does not end grading
                errors.append(f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS])
        return errors

    def handle(self, request):
        if request["op"] == "prepare_measured_call":  # the grader starts measuring once this is answered
            self.end_measured_call()
            self.held, self.collecting = heap.freshen(), gc.isenabled()
            gc.disable()  # a collection would touch every object of the process (see autograder.touched)
            return None
        try:
            return self._answer(request)
        finally:
            self.end_measured_call()

    def end_measured_call(self):
        """Undo what ``prepare_measured_call`` did, once the call it prepared for has ended."""
        heap.release(self.held)
        self.held = []
        if self.collecting:
            gc.enable()
            self.collecting = False

    def _answer(self, request):
        op = request["op"]
        if op == "run_cells":
            return self.run_cells(request["cells"])
        name = request["name"]
        if op == "has":
            try:
                self.resolve(request["target"])
                return True
            except (KeyError, AttributeError, IndexError):
                return False
        try:
            obj = self.resolve(request["target"])
        except (KeyError, AttributeError, IndexError) as error:
            raise CallFailed(f"{name} is not defined ({type(error).__name__}: {error})") from None
        if op == "value":
            return plain(obj, self.wrap)
        if "rng" in request:
            seed_generators(request["rng"])
        with unwritten_memory_as_nan():
            result = call(
                name,
                obj,
                self.unpack(request["args"]),
                self.unpack(request["kwargs"]),
                request["mode"],
                self.unpack(request.get("grad_output")),
                request.get("grad_inputs", ()),
            )
        return plain(result, self.wrap)


@contextlib.contextmanager
def unwritten_memory_as_nan():
    """Within, a tensor made with ``torch.empty`` (or ``new_empty``, ``empty_like``...) holds NaN (the
    largest value for integers) where the code never writes it, in every path, instead of whatever
    the memory held: zeros in a fresh process, old values in one that has run a while. This is
    torch's deterministic mode and its ``fill_uninitialized_memory``, with ``warn_only`` unless the
    learner asked for the strict mode; the learner's own setting is restored on leaving. Set through
    ``torch._C``: ``torch.use_deterministic_algorithms`` first imports inductor's config, which
    imports ``torch._dynamo`` (900 modules, 144 MiB, inside a measured call)."""
    enabled, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch._C._set_deterministic_algorithms(True, warn_only=warn_only or not enabled)
    try:
        yield
    finally:
        torch._C._set_deterministic_algorithms(enabled, warn_only=warn_only)


def seed_generators(seed: int):
    """Seed the generators an answer may draw from: torch's and Python's ``random`` (NumPy's global
    one is left alone: saving and restoring it around every call of a grade cell would cost 70 us).
    ``torch.manual_seed`` would also queue lazy seeds for every accelerator backend: 80 us a call,
    against 1 us for the CPU generator."""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
    random.seed(seed)


def serve(channel: socket.socket, max_request_bytes: int):
    """The child's loop: answer each request frame with a reply frame of the same id,
    until the grader closes the channel."""
    session = Session()
    while True:
        try:
            message_id, request = wire.read_frame(channel.recv, max_request_bytes, max_request_bytes)
        except wire.ChannelClosed:
            return
        try:
            reply = {"ok": True, "value": session.handle(request)}
        except CallFailed as error:
            reply = {"ok": False, "error": str(error)[:MAX_ERROR_CHARS]}
        except BaseException as error:
            reply = {"ok": False, "error": describe_exception("your code", error)[:MAX_ERROR_CHARS]}
        try:
            frame = wire.encode(message_id, reply)
        except Exception as error:
            frame = wire.encode(message_id, {"ok": False, "error": f"the result could not be sent back ({error})"})
        for buffer in frame:
            channel.sendall(buffer)


def new_id() -> str:
    """A request id no code in the child can guess ahead of the request."""
    return secrets.token_hex(16)
