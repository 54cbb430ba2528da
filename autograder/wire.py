"""The wire format between the grader and a sandboxed child: one frame per message, both ways.

A frame is a fixed prefix, a JSON header, then the raw bytes of the message's tensors:

    b"AGW1" | header length (u32, little endian) | body length (u64) | header | body

The header is ``{"id": ..., "value": ..., "tensors": [[dtype, shape, nbytes], ...]}``; a tensor
that is not contiguous travels as ``[dtype, shape, nbytes, strides]``: its bytes are the span of
memory its elements cover, and the reader rebuilds the same strides over them
(:func:`layout_copy`), so learner code gets the layout the check made, transposed or strided
views included, in the sandbox as in the grade cells. In
``value`` a JSON list is a list, and every JSON object is tagged with one key: ``{"tuple":
[...]}``, ``{"dict": {...}}`` or ``{"tensor": i}`` (the i-th entry of ``tensors``, whose bytes
follow in order in the body). Only plain dtypes travel (no pickle, no compression).

:func:`read_frame` checks the sizes that the prefix announces against the caller's caps
*before* it allocates anything, then checks that the header's tensors account for exactly
the body's bytes, and bounds the value's nesting and its number of elements: a frame that
claims more, or lies, is refused with :class:`WireError` whose message says why.

Imports only the standard library and torch: it also runs inside the sandbox.
"""

from __future__ import annotations

import json
import math
import socket
import struct

import torch

MAGIC = b"AGW1"
PREFIX = struct.Struct("<4sIQ")
MAX_DEPTH = 64
MAX_ELEMENTS = 1_000_000
DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.bool,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.complex64,
        torch.complex128,
    )
}


class WireError(Exception):
    """A frame that breaks the format or the caps; the message says how."""


class ChannelClosed(Exception):
    """The other end closed the channel before a whole frame arrived."""


def encode(message_id: str, value) -> list:
    """The frame of ``value`` (plain data: see the module docstring) as a list of buffers."""
    tensors = []
    header = {"id": message_id, "value": _to_json(value, tensors, 0), "tensors": []}
    body = []
    for tensor in tensors:
        with torch._C.DisableTorchFunctionSubclass():
            tensor = tensor.detach().resolve_conj().resolve_neg()
            strides = None if tensor.is_contiguous() else list(tensor.stride())
            flat = tensor.reshape(-1) if strides is None else _memory_span(tensor)
        data = flat.view(torch.uint8) if flat.dtype is not torch.uint8 else flat
        spec = [str(tensor.dtype).removeprefix("torch."), list(tensor.shape), data.numel()]
        header["tensors"].append(spec if strides is None else [*spec, strides])
        body.append(memoryview(data.numpy()))
    head = json.dumps(header, separators=(",", ":")).encode()
    size = sum(b.nbytes for b in body)
    return [PREFIX.pack(MAGIC, len(head), size), head, *body]


def layout_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor`` in memory of its own, laid out as the wire delivers it: a contiguous
    tensor as a contiguous one; any other with the same shape and strides (storage offset 0) over
    a copy of the memory span its elements cover, so a transposed or strided view stays one and
    ``.view`` fails on it as on the original. Grade cells give learner code these copies
    (``autograder.student``), so both grading paths hand the learner the same layout."""
    with torch._C.DisableTorchFunctionSubclass():
        tensor = tensor.detach().resolve_conj().resolve_neg()
        if tensor.is_contiguous():
            return tensor.clone(memory_format=torch.contiguous_format)
        return _memory_span(tensor).clone().as_strided(tensor.shape, tensor.stride())


def _span(shape, strides) -> int:
    """How many elements of memory a tensor of this shape and these strides covers (0 when empty)."""
    if math.prod(shape) == 0:
        return 0
    return 1 + sum((n - 1) * s for n, s in zip(shape, strides))


def _memory_span(tensor: torch.Tensor) -> torch.Tensor:
    """The 1-D run of memory from ``tensor``'s first element to its last (a view, no copy)."""
    return torch.as_strided(tensor, (_span(tensor.shape, tensor.stride()),), (1,))


def _to_json(value, tensors, depth):
    if depth > MAX_DEPTH:
        raise WireError(f"the value is nested deeper than {MAX_DEPTH} levels")
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, torch.Tensor):
        if (
            value.layout != torch.strided
            or value.device.type != "cpu"
            or str(value.dtype).removeprefix("torch.") not in DTYPES
        ):
            raise WireError(f"a tensor of dtype {value.dtype}, layout {value.layout} on {value.device} cannot be sent")
        tensors.append(value)
        return {"tensor": len(tensors) - 1}
    if type(value) is list:
        return [_to_json(v, tensors, depth + 1) for v in value]
    if type(value) is tuple:
        return {"tuple": [_to_json(v, tensors, depth + 1) for v in value]}
    if type(value) is dict and all(type(k) is str for k in value):
        return {"dict": {k: _to_json(v, tensors, depth + 1) for k, v in value.items()}}
    raise WireError(f"a {type(value).__name__} cannot be sent (only tensors, numbers, strings, lists, tuples, dicts)")


def send(channel: socket.socket, message_id: str, value) -> None:
    for buffer in encode(message_id, value):
        channel.sendall(buffer)


def read_frame(read, max_header: int, max_body: int) -> tuple[str, object]:
    """``(id, value)`` of the next frame; ``read(n)`` returns up to n bytes (b"" at the end)
    and ``readinto(buffer)`` semantics are emulated over it. Raises WireError for a frame
    over the caps or not in the format, ChannelClosed when the channel ends first."""
    magic, head_size, body_size = PREFIX.unpack(_read_exactly(read, PREFIX.size))
    if magic != MAGIC:
        raise WireError("the data is not a frame of the grader's format")
    if head_size > max_header or body_size > max_body:
        raise WireError(
            f"the reply announces {(head_size + body_size) / 2**20:.0f} MiB, more than the "
            f"{(max_header + max_body) / 2**20:.0f} MiB accepted"
        )
    try:
        header = json.loads(_read_exactly(read, head_size))
    except (ValueError, RecursionError) as error:
        raise WireError(f"the header is not valid JSON ({type(error).__name__})") from None
    if (
        not isinstance(header, dict)
        or not isinstance(header.get("id"), str)
        or not isinstance(header.get("tensors"), list)
    ):
        raise WireError("the header is not a frame's header")
    specs = [_tensor_spec(spec) for spec in header["tensors"]]
    if sum(spec[2] for spec in specs) != body_size:
        raise WireError("the header's tensors do not account for the body's bytes")
    tensors = []
    for dtype, shape, nbytes, strides in specs:  # sizes checked above: this allocates at most max_body bytes
        data = torch.empty(nbytes, dtype=torch.uint8)
        _read_into(read, memoryview(data.numpy()))
        try:  # an empty tensor's shape can still overflow torch's sizes ([0, 2**63], [2**62, 2**62, 0])
            values = data.view(dtype)
            tensors.append(values.reshape(shape) if strides is None else values.as_strided(shape, strides))
        except (RuntimeError, TypeError, ValueError) as error:
            raise WireError(
                f"a tensor's shape {str(shape)[:80]} is not one torch can hold ({type(error).__name__})"
            ) from None
    counter = [0]
    return header["id"], _from_json(header.get("value"), tensors, 0, counter)


def _tensor_spec(spec):
    """``(dtype, shape, nbytes, strides)`` of a header's tensor entry; strides None: contiguous."""
    if not (
        isinstance(spec, list)
        and len(spec) in (3, 4)
        and spec[0] in DTYPES
        and isinstance(spec[1], list)
        and len(spec[1]) <= MAX_DEPTH
        and all(type(n) is int and n >= 0 for n in spec[1])
        and type(spec[2]) is int
    ):
        raise WireError(f"a tensor's description is not [dtype, shape, bytes] of a plain dtype: {str(spec)[:80]}")
    dtype, shape, strides = DTYPES[spec[0]], spec[1], spec[3] if len(spec) == 4 else None
    if strides is not None and not (
        isinstance(strides, list) and len(strides) == len(shape) and all(type(s) is int and s >= 0 for s in strides)
    ):
        raise WireError(f"a tensor's strides are not one non-negative integer per dimension: {str(spec)[:80]}")
    elements = math.prod(shape) if strides is None else _span(shape, strides)
    if elements * dtype.itemsize != spec[2]:
        raise WireError(f"a tensor's byte length does not match its shape {shape}, strides and dtype {spec[0]}")
    return dtype, shape, spec[2], strides


def _from_json(value, tensors, depth, counter):
    counter[0] += 1
    if counter[0] > MAX_ELEMENTS or depth > MAX_DEPTH:
        raise WireError(f"the value has more than {MAX_ELEMENTS} elements or {MAX_DEPTH} levels of nesting")
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is list:
        return [_from_json(v, tensors, depth + 1, counter) for v in value]
    if type(value) is dict and len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "tensor" and type(inner) is int and 0 <= inner < len(tensors):
            return tensors[inner]
        if tag == "tuple" and type(inner) is list:
            return tuple(_from_json(v, tensors, depth + 1, counter) for v in inner)
        if tag == "dict" and type(inner) is dict:
            return {k: _from_json(v, tensors, depth + 1, counter) for k, v in inner.items()}
    raise WireError("the value holds something that is not plain data")


def _read_exactly(read, n: int) -> bytes:
    buffer = bytearray(n)
    _read_into(read, memoryview(buffer))
    return bytes(buffer)


def _read_into(read, view: memoryview) -> None:
    while view.nbytes:
        chunk = read(min(view.nbytes, 1 << 20))
        if not chunk:
            raise ChannelClosed()
        view[: len(chunk)] = chunk
        view = view[len(chunk) :]
