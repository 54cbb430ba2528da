"""Memory layout: a check's non-contiguous input reaches the learner's code with the same shape,
strides and values in every backend (the grade cells' :class:`KernelBackend`, the sandbox, the
kit's :class:`LocalProcess`), in plain calls and as an input that requires grad; and the wire
format refuses a layout description that does not match the bytes it announces."""

import json

import pytest
import torch

from autograder import wire
from autograder.local import Limits as LocalLimits
from autograder.local import LocalProcess
from autograder.sandbox import Limits, Sandbox
from autograder.student import KernelBackend, Student
from autograder.suite import noncontiguous

PROBE = """
import torch

def probe(x, others=()):
    probe.seen = [[list(t.stride()), t.is_contiguous(), t.storage_offset()] for t in (x, *others)]
    return x * 2
"""


def inputs():
    gen = torch.Generator().manual_seed(0)
    return [
        noncontiguous(torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)),
        noncontiguous(torch.randn(3, 4, generator=gen)),
        noncontiguous(torch.randint(0, 9, (7,), generator=gen, dtype=torch.int32)),
        noncontiguous(torch.rand(1, 1, 4, generator=gen) < 0.5),  # a (B, 1, 1, N)-like mask
        torch.randn(4, 6, generator=gen)[:, 1:4],  # a slice of a check's own tensor
        torch.randn(3, 1, generator=gen).expand(3, 4),  # stride 0
        torch.randn(2, 3, generator=gen),  # contiguous stays contiguous
    ]


def expected_layout(tensors):
    """What every backend must hand the learner: the check's strides (contiguous ones as
    torch's canonical strides), storage offset 0."""
    return [[list(t.contiguous().stride() if t.is_contiguous() else t.stride()), t.is_contiguous(), 0] for t in tensors]


def in_kernel():
    namespace = {"__name__": "__main__"}
    exec(PROBE, namespace)
    yield KernelBackend(namespace)


def in_sandbox():
    with Sandbox(Limits(call_seconds=30, setup_seconds=60)) as box:
        assert box.run_cells([PROBE]) == [None]
        yield box


def in_local_process():
    process = LocalProcess(LocalLimits(call_seconds=30, setup_seconds=60))
    process.start()
    try:
        assert process.run_cells([PROBE]) == [None]
        yield process
    finally:
        process.close()


@pytest.fixture(params=[in_kernel, in_sandbox, in_local_process], ids=["kernel", "sandbox", "local"])
def backend(request):
    yield from request.param()


def test_noncontiguous_inputs_arrive_with_the_checks_strides(backend):
    tensors = inputs()
    assert [not t.is_contiguous() for t in tensors] == [True] * 6 + [False]
    probe = Student(backend, "probe")
    result = probe(tensors[0], others=tensors)
    assert probe.seen.value() == expected_layout([tensors[0], *tensors])
    assert torch.equal(result, tensors[0] * 2)
    for tensor in tensors:  # the values too, element by element
        returned = Student(backend, "probe")(tensor)
        assert torch.equal(returned, tensor * 2) and returned.dtype == (tensor * 2).dtype


def test_an_input_that_requires_grad_keeps_its_layout(backend):
    x = noncontiguous(torch.randn(3, 4, 5, dtype=torch.float64))
    probe = Student(backend, "probe")
    _, (grad,) = probe.with_grad((x,), torch.ones(3, 4, 5, dtype=torch.float64), [0])
    assert probe.seen.value() == expected_layout([x])
    assert torch.equal(grad, torch.full((3, 4, 5), 2.0, dtype=torch.float64))


def test_view_fails_on_a_noncontiguous_input_in_every_backend(backend):
    """The bug the layout exists to catch: ``.view`` that merges dimensions of an input."""
    backend_cells = "def flatten(x):\n    return x.view(-1, x.shape[-1])\n"
    if isinstance(backend, KernelBackend):
        exec(backend_cells, backend.session.namespace)
    else:
        assert backend.run_cells([backend_cells]) == [None]
    flatten = Student(backend, "flatten")
    x = torch.randn(2, 3, 4)
    assert torch.equal(flatten(x), x.view(-1, 4))
    with pytest.raises(Exception, match="view size is not compatible"):
        flatten(noncontiguous(x))


def test_noncontiguous_keeps_values_and_dtype_and_is_never_contiguous():
    for shape in [(2,), (5, 1), (1, 5), (4, 1, 1), (1, 1, 5), (2, 3, 4), (2, 3, 1, 4)]:
        for dtype in (torch.float32, torch.float64, torch.bool, torch.int32, torch.int64):
            t = (torch.randn(shape) * 5).to(dtype)
            view = noncontiguous(t)
            assert view.dtype == dtype and torch.equal(view, t) and not view.is_contiguous(), (shape, dtype)
            assert view.stride()[-1] != 1


def frame(tensor_spec, body: bytes):
    head = json.dumps({"id": "x", "value": {"tensor": 0}, "tensors": [tensor_spec]}).encode()
    return frame_reader(wire.PREFIX.pack(wire.MAGIC, len(head), len(body)) + head + body)


def test_the_wire_round_trips_layouts_and_refuses_lies():
    x = noncontiguous(torch.arange(12.0).reshape(3, 4))
    buffers = wire.encode("x", x)
    joined = b"".join(bytes(b) for b in buffers)
    _, back = wire.read_frame(frame_reader(joined), 1 << 20, 1 << 20)
    assert back.stride() == x.stride() and torch.equal(back, x)
    span = (1 + 2 * 2 + 3 * 6) * 4  # elements from the first to the last, float32
    assert wire.read_frame(frame(["float32", [3, 4], span, [2, 6]], bytes(span)), 1 << 20, 1 << 20)[1].shape == (3, 4)
    for spec, why in [
        (["float32", [3, 4], span, [2, 7]], "byte length"),  # strides that need more memory than sent
        (["float32", [3, 4], span, [2, -6]], "strides"),
        (["float32", [3, 4], span, [2]], "strides"),
        (["float32", [3, 4], span, "2,6"], "strides"),
        (["float32", [3, 4], span, [2.0, 6]], "strides"),
    ]:
        with pytest.raises(wire.WireError, match=why):
            wire.read_frame(frame(spec, bytes(span)), 1 << 20, 1 << 20)


def frame_reader(data: bytes):
    chunks = [data]

    def read(n):
        out, chunks[0] = chunks[0][:n], chunks[0][n:]
        return out

    return read
