"""A separate, resource-limited process that runs one submission's code.

The child is ``python -I -S autograder/worker.py``: isolated mode ignores PYTHONPATH and the
current directory, and without ``site`` no ``.pth`` file runs, so the editable install of
this course (``autograder``, ``solutions``) is not on its path; only the interpreter's
site-packages directories are added back. It starts in an empty scratch directory, with
limits on CPU time, memory, file size and open files, with stdout and stderr discarded.
Reference modules of earlier chapters can be given to it (copied into its scratch folder).
The trusted parent (this module) sends requests and reads replies with
``torch.load(weights_only=True)``, so the child can only ever return plain data.
"""
from __future__ import annotations

import io
import os
import shutil
import resource
import select
import signal
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from autograder import worker
from autograder.student import StudentError

WORKER = Path(worker.__file__).resolve()
SOLUTIONS = WORKER.parent.parent / "solutions"


@dataclass
class Limits:
    """Per-submission limits. ``call_seconds`` bounds one request (a wall clock)."""

    cpu_seconds: int = 600
    memory_bytes: int = 6 << 30
    file_bytes: int = 64 << 20
    reply_bytes: int = 256 << 20
    setup_seconds: float = 120.0
    call_seconds: float = 60.0


def _child_setup(limits: Limits):
    def apply():
        os.setsid()
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


BOOTSTRAP = """
import sys
sys.path[:0] = {paths!r}
sys.argv = [{worker!r}, *sys.argv[1:]]
exec(compile(open({worker!r}).read(), {worker!r}, "exec"), {{"__name__": "__main__"}})
"""


class Sandbox:
    """One child process serving one submission. Use as a context manager."""

    def __init__(self, limits: Limits | None = None, given_topics: list[str] = ()):
        self.limits = limits or Limits()
        self.given_topics = list(given_topics)
        self.process = None
        self.dead = None  # why the child is gone, once it is

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        self.scratch = tempfile.TemporaryDirectory(prefix="autograder-")
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
        if self.given_topics:
            paths.insert(0, self._copy_given_solutions())
        env = {"PATH": "/usr/bin:/bin", "HOME": self.scratch.name, "TMPDIR": self.scratch.name,
               "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "TRITON_INTERPRET": "1", "PYTHONHASHSEED": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", BOOTSTRAP.format(paths=paths, worker=str(WORKER)),
             str(to_child_r), str(from_child_w)],
            cwd=self.scratch.name, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, pass_fds=(to_child_r, from_child_w), preexec_fn=_child_setup(self.limits))
        os.close(to_child_r)
        os.close(from_child_w)
        self.dead = None

    def _copy_given_solutions(self) -> str:
        """Copy the given (earlier chapters') reference modules into the scratch folder."""
        folder = Path(self.scratch.name) / "given"
        package = folder / "solutions"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text('"""Reference code of earlier chapters, given to this one."""\n')
        for topic in self.given_topics:
            shutil.copy(SOLUTIONS / f"{topic}.py", package / f"{topic}.py")
        return str(folder)

    def close(self):
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait()
            os.close(self.to_child)
            os.close(self.from_child)
            self.scratch.cleanup()
            self.process = None

    def run_cells(self, cells: list[str]) -> list[str | None]:
        """Execute the submission's code cells in order; one error message (or None) per cell."""
        return self.request({"op": "run_cells", "cells": cells}, self.limits.setup_seconds)

    def request(self, message, seconds: float | None = None):
        if self.dead:
            raise StudentError(self.dead)
        try:
            payload = worker.encode(message)
            os.write(self.to_child, struct.pack("<Q", len(payload)) + payload)
            reply = self._read_reply(seconds or self.limits.call_seconds)
        except StudentError as error:
            self.dead = str(error)
            self.close()
            raise
        except BrokenPipeError:
            self.dead = self._death_message()
            self.close()
            raise StudentError(self.dead) from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise StudentError("your code sent back something that is not a reply")
        if not reply["ok"]:
            raise StudentError(str(reply.get("error")))
        return reply.get("value")

    def _read_reply(self, seconds):
        deadline = time.monotonic() + seconds
        header = self._read(8, deadline, seconds)
        size = struct.unpack("<Q", header)[0]
        if size > self.limits.reply_bytes:
            raise StudentError(f"your code returned {size / 2**20:.0f} MiB, more than the grader accepts")
        try:
            payload = self._read(size, deadline, seconds)
            return torch.load(io.BytesIO(payload), weights_only=True)
        except Exception as error:
            raise StudentError(f"your code sent back data the grader refuses ({type(error).__name__})") from None

    def _read(self, n, deadline, seconds):
        chunks = []
        while n:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.from_child], [], [], max(left, 0))
            if not ready:
                raise StudentError(f"your code took longer than {seconds:.0f} s (time limit) "
                                   "and was stopped; look for an infinite loop")
            chunk = os.read(self.from_child, min(n, 1 << 20))
            if not chunk:
                raise StudentError(self._death_message())
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _death_message(self):
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if code == -signal.SIGXCPU or code == -signal.SIGKILL:
            return "your code used more CPU time than allowed and was stopped"
        if code is not None and code < 0:
            return f"the process running your code was killed by signal {signal.Signals(-code).name} (out of memory?)"
        return f"your code ended the grading process (exit code {code}); do not call exit() in a notebook"
