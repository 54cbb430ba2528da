"""The learner's kit runs a notebook's code in a plain child process on the learner's own machine.

There is nothing to protect there (the code is the learner's, and the kit holds no reference
solutions), so the child is not confined as the instructors' sandbox (``autograder/sandbox.py``)
confines it; it only keeps a broken notebook from stopping the grader. It answers the same
requests as the sandbox (:mod:`autograder.protocol`, in :mod:`autograder.wire`'s frames: run the
cells, call a function, read a value) over its stdin and a copy of its stdout, on Linux, macOS and
Windows alike, and has the same interface as :class:`autograder.sandbox.Sandbox`, so
:mod:`autograder.grading` uses either.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from autograder import protocol, wire
from autograder.student import StudentError, process_meter

CHILD = "from autograder.local import serve_child; serve_child()"
MAX_BYTES = 1 << 30  # of one request or reply: the learner's own machine, nothing to defend


class LocalProcessError(RuntimeError):
    """The child process could not be started (the machine, not the learner)."""


@dataclass
class Limits:
    """Wall clocks: one request, running the notebook's cells, and the whole notebook."""

    call_seconds: float = 60.0
    setup_seconds: float = 120.0
    notebook_seconds: float = 900.0


def serve_child():
    """In the child: answer requests on stdin through a copy of stdout, while whatever the
    learner's code prints (to stdout or stderr) goes nowhere."""
    replies = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    protocol.serve(_Pipes(0, replies), MAX_BYTES)


class _Pipes:
    """Two pipe ends with the two methods of a socket that :func:`autograder.protocol.serve` uses."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd = read_fd, write_fd

    def recv(self, n: int) -> bytes:
        return os.read(self.read_fd, n)

    def sendall(self, data) -> None:
        view = memoryview(data).cast("B")
        while view.nbytes:
            view = view[os.write(self.write_fd, view) :]


class LocalProcess:
    """One child process serving one notebook; its requests time out like the sandbox's."""

    def __init__(self, limits: Limits | None = None, hidden=(), deadline: float | None = None):
        self.limits = limits or Limits()
        self.deadline = deadline
        self.process = None
        self.dead = None  # why the child is gone, once it is

    def start(self):
        env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"}  # as the sandbox
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", CHILD],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        except OSError as error:
            raise LocalProcessError(f"cannot start a Python process to run the notebook: {error}") from None
        self.replies = queue.Queue()
        threading.Thread(target=self._read_replies, args=(self.process, self.replies), daemon=True).start()
        self.dead = None

    @staticmethod
    def _read_replies(process, replies):
        fd = process.stdout.fileno()
        try:
            while True:
                replies.put(wire.read_frame(lambda n: os.read(fd, n), MAX_BYTES, MAX_BYTES)[1])
        except (wire.ChannelClosed, wire.WireError, OSError):
            replies.put(None)

    @property
    def running(self) -> bool:
        return self.process is not None and not self.dead

    def close(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            for pipe in (self.process.stdin, self.process.stdout):
                pipe.close()
            self.process = None

    def run_cells(self, cells: list[str]) -> list[str | None]:
        return self.request({"op": "run_cells", "cells": cells}, self.limits.setup_seconds)

    def request(self, message, seconds: float | None = None):
        """The value of ``message``'s reply; with ``measure: True``, ``(value, Measurement)``: the
        child's peak memory and CPU time during the request, read from its ``/proc`` files by this
        process (Linux; elsewhere the measurement says it is unavailable)."""
        if self.dead:
            raise StudentError(self.dead)
        if message.get("measure"):
            # Before the meter starts: what the child frees while preparing is not the call's.
            self.request({"op": "prepare_measured_call"}, seconds)
            meter = process_meter(self.process.pid, "the kit's grading process, reading the child's /proc")
            value = self.request({**message, "measure": False}, seconds)
            return value, meter()
        seconds = seconds or self.limits.call_seconds
        late = f"your code took longer than {seconds:.0f} s (time limit) and was stopped; look for an infinite loop"
        if self.deadline is not None and self.deadline < time.monotonic() + seconds:
            seconds = max(self.deadline - time.monotonic(), 0)
            late = (
                f"grading this notebook took longer than {self.limits.notebook_seconds:.0f} s in total "
                "(time limit), so the remaining checks were stopped"
            )
        try:
            _Pipes(-1, self.process.stdin.fileno()).sendall(b"".join(wire.encode(protocol.new_id(), message)))
            reply = self.replies.get(timeout=seconds)
        except queue.Empty:
            self._end(late)
        except OSError:
            reply = None
        if not isinstance(reply, dict):
            self.process.wait()
            self._end(
                f"your code ended the grading process (exit code {self.process.returncode}); "
                "do not call exit() in a notebook"
            )
        if not reply["ok"]:
            raise StudentError(str(reply.get("error")))
        return reply.get("value")

    def _end(self, why: str):
        self.dead = why
        self.close()
        raise StudentError(why)
