"""Running one step of a grading worker in a child process with a memory cap and a wall clock.

Reading a submitted notebook (JSON, nbformat's conversion and validation, nbgrader's
sanitizing preprocessors, a deep copy) costs memory and time in proportion to what the learner
wrote, and a notebook of a few MiB can hold a million tiny objects. The worker does that in a
forked child whose address space is capped (``RLIMIT_AS``: what the worker maps already, plus
:data:`MEMORY_BYTES`) and which is killed after :data:`SECONDS`; the child sends back its result
pickled (the worker's own code produced it). A child that runs out of its memory or time raises
:class:`Exceeded` with a reason fit for a "not graded" row, and the worker goes on; one killed
from outside (the kernel, short of memory) raises RuntimeError: the grader's failure, not
recorded, graded again by the next run.
"""

from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import time

MEMORY_BYTES = 1 << 30  # a notebook at the 100 MiB size cap, parsed and copied, needs far less
SECONDS = 30.0  # the same notebook takes ~5 s on a busy core


class Exceeded(Exception):
    """The step ran out of its memory or time (the message says which)."""


def run_capped(function, *args, memory_bytes: int = MEMORY_BYTES, seconds: float = SECONDS):
    """``function(*args)`` computed in a forked child capped at ``memory_bytes`` more than this
    process maps and ``seconds`` of wall clock; raises Exceeded when it needs more, and
    RuntimeError with the child's error when it fails otherwise."""
    limit = _mapped_bytes() + memory_bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, leave without running the worker's exit handlers
        try:
            os.close(read)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            try:
                reply = ("ok", function(*args))
            except MemoryError:
                reply = ("memory", None)
            except Exception as error:
                reply = ("error", f"{type(error).__name__}: {error}")
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write, "wb") as pipe:
                pipe.write(data)
        finally:
            os._exit(0)
    os.close(write)
    data = None  # also when the wait is interrupted: the child is killed
    try:
        data = _read_until(read, time.monotonic() + seconds)
    finally:
        os.close(read)
        if data is None:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if data is None:
        raise Exceeded(f"reading it took longer than the grader allows ({seconds:.0f} s)")
    if not data:  # killed before it could answer: by the kernel, for the machine's memory, not its own cap
        raise RuntimeError(f"the process reading the notebook ended without an answer (wait status {status})")
    kind, value = pickle.loads(data)
    if kind == "memory":
        raise Exceeded(f"reading it needs more memory than the grader allows ({memory_bytes >> 20} MiB)")
    if kind == "error":
        raise RuntimeError(f"reading the notebook failed ({value})")
    return value


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything the child writes to ``fd`` until it closes it; None at ``deadline``."""
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            return None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _mapped_bytes() -> int:
    """This process's address space now (``VmSize``): the child's cap counts from there."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) << 10
    return 0
