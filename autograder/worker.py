"""How the learner's code is called, in the learner's kernel or in a sandboxed process.

This file imports only the standard library and torch, because it also runs *as a script*
in the grading sandbox (``python -I -S worker.py READ_FD WRITE_FD``), where neither
``autograder`` nor ``solutions`` can be imported. There it executes a submission's code
cells, then answers requests from the trusted grader over a pipe: call a function or a
method, read an attribute, with values sent as plain tensors and numbers only.

Messages are ``torch.save`` payloads behind an 8-byte length; the grader reads them with
``torch.load(weights_only=True)``, which refuses any object that is not plain data.
"""
import io
import os
import struct
import sys
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

PLAIN = (bool, int, float, str, type(None))


class CallFailed(Exception):
    """The learner's code raised; the message is what the learner should read."""


def describe_exception(name: str, error: BaseException) -> str:
    if isinstance(error, NotImplementedError):
        return f"{name} is not implemented yet (it raises NotImplementedError)"
    frames = traceback.extract_tb(error.__traceback__)
    where = next((f" (line {f.lineno}: {f.line})" for f in reversed(frames) if f.filename.startswith("<cell")), "")
    return f"{name} raised {type(error).__name__}: {error}{where}"


def plain(value, wrap):
    """``value`` reduced to plain data: tensors become detached ``torch.Tensor`` copies,
    containers are rebuilt, numbers stay numbers, and any other object (a module) is
    handed to ``wrap``, which returns a handle for it."""
    if isinstance(value, torch.Tensor):
        value = value.detach().clone()
        return value if type(value) is torch.Tensor else value.as_subclass(torch.Tensor)
    if type(value) in PLAIN:
        return value
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, (tuple, list, torch.Size)):
        items = [plain(v, wrap) for v in value]
        return items if type(value) is list else tuple(items)
    if isinstance(value, dict):
        return {str(k): plain(v, wrap) for k, v in value.items()}
    return wrap(value)


class NumelRecorder(TorchDispatchMode):
    """Records the shape of every tensor that any aten operation produces."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def call(name, fn, args, kwargs, mode="plain", grad_output=None, grad_inputs=()):
    """Call the learner's ``fn``; returns the raw result, adjusted for ``mode``:

    - ``"plain"``: the result;
    - ``"trace"``: ``(result, shapes)``, the shapes of every tensor created during the call;
    - ``"grad"``: ``(result, grads)``: positional args at ``grad_inputs`` require grad, the
      (first) output is back-propagated with ``grad_output``, grads are theirs.
    """
    try:
        if mode == "trace":
            with NumelRecorder() as recorder:
                result = fn(*args, **kwargs)
            return result, recorder.shapes
        if mode == "grad":
            args = list(args)
            for i in grad_inputs:
                args[i] = args[i].detach().clone().requires_grad_(True)
            result = fn(*args, **kwargs)
            output = result[0] if isinstance(result, (tuple, list)) else result
            output.backward(grad_output)
            return result, tuple(args[i].grad for i in grad_inputs)
        return fn(*args, **kwargs)
    except Exception as error:
        raise CallFailed(describe_exception(name, error)) from None


# ---------------------------------------------------------------------------------------
# The sandboxed process: the loop below runs only when this file is the script.

def encode(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def decode(payload: bytes):
    return torch.load(io.BytesIO(payload), weights_only=True)


def read_message(fd):
    header = read_exactly(fd, 8)
    return None if header is None else read_exactly(fd, struct.unpack("<Q", header)[0])


def read_exactly(fd, n):
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_message(fd, payload: bytes):
    data = struct.pack("<Q", len(payload)) + payload
    while data:
        data = data[os.write(fd, data):]


class Session:
    """The learner's namespace and the objects handed to the grader as handles."""

    def __init__(self):
        self.namespace = {"__name__": "__main__"}
        self.handles = []

    def wrap(self, obj):
        self.handles.append(obj)
        return {"__handle__": len(self.handles) - 1, "type": type(obj).__name__}

    def resolve(self, target):
        root, path = target
        obj = self.namespace[root] if isinstance(root, str) else self.handles[root]
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
            try:
                exec(compile(source, f"<cell {index}>", "exec"), self.namespace)
                errors.append(None)
            except BaseException as error:  # SystemExit too: one bad cell does not end grading
                errors.append(f"{type(error).__name__}: {error}")
        return errors

    def handle(self, request):
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
        result = call(name, obj, self.unpack(request["args"]), self.unpack(request["kwargs"]), request["mode"],
                      self.unpack(request.get("grad_output")), request.get("grad_inputs", ()))
        return plain(result, self.wrap)


def serve(read_fd, write_fd):
    session = Session()
    while (payload := read_message(read_fd)) is not None:
        try:
            reply = {"ok": True, "value": session.handle(decode(payload))}
        except CallFailed as error:
            reply = {"ok": False, "error": str(error)}
        except BaseException as error:
            reply = {"ok": False, "error": describe_exception("your code", error)}
        try:
            message = encode(reply)
        except Exception as error:
            message = encode({"ok": False, "error": f"the result could not be sent back ({error})"})
        write_message(write_fd, message)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
