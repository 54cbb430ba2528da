"""A separate, confined, resource-limited process that runs one submission's code.

Children come from a *fork server* (``python -I -S autograder/worker.py``), started once per
grading process: it imports torch and the libraries chapters use, then forks a fresh child
per sandbox in milliseconds. Isolated mode ignores PYTHONPATH and the current directory,
and without ``site`` no ``.pth`` file runs, so the editable install of this course
(``autograder``, ``solutions``) is not on the child's path; only the interpreter's
site-packages directories are added back. Each child, before any learner code runs:

- gets new network, pid, IPC and mount namespaces when the system allows it (root here):
  no network at all, it sees and can signal only its own processes (killing the first
  kills them all), the course directory and the reference and check folders are hidden
  under empty read-only file systems, and ``/tmp`` and ``/dev/shm`` are fresh, size-limited
  and private;
- runs as an unprivileged user of its own (when the grader runs as root; one uid per live
  sandbox, so sandboxes cannot signal each other), so it can neither write the course
  directory or gradebook nor signal the grader, with ``no_new_privs`` set;
- has limits on CPU time, address space, file size, open files and processes (a fork
  bomb stops at ``Limits.processes``), a wall clock per request and per notebook, and a cap
  on the size of replies; its stdout and stderr are discarded; when the machine runs out
  of memory, the kernel kills learner code first (``oom_score_adj``).

:attr:`Sandbox.isolation` says which of these are in force. Reference modules of earlier
chapters can be given to it (copied into its scratch folder). The trusted parent (this
module) sends requests and reads replies with ``torch.load(weights_only=True)``, so the
child can only ever return plain data.
"""
from __future__ import annotations

import fcntl
import io
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import solutions
from autograder import worker
from autograder.student import StudentError

WORKER = Path(worker.__file__).resolve()
REPOSITORY = WORKER.parent.parent
SOLUTIONS = Path(solutions.__file__).resolve().parent
# Hidden from every child: the references, the checks, and the folders that hold copies of them.
HIDDEN = [SOLUTIONS, WORKER.parent, *(REPOSITORY / name for name in ("tests", "chapters", "book", ".git"))]
UID_BASE = int(os.environ.get("AUTOGRADER_UID_BASE", "2100000000"))  # uids no account uses
UID_COUNT = 4096


class SandboxError(RuntimeError):
    """No sandbox could be started (the machine, not the learner: the message says why)."""


@dataclass
class Limits:
    """Per-submission limits. ``call_seconds`` bounds one request (a wall clock),
    ``notebook_seconds`` all requests of one notebook together."""

    cpu_seconds: int = 600
    memory_bytes: int = 6 << 30
    file_bytes: int = 64 << 20
    scratch_bytes: int = 256 << 20
    processes: int = 64
    reply_bytes: int = 256 << 20
    setup_seconds: float = 120.0
    call_seconds: float = 60.0
    notebook_seconds: float = 900.0


BOOTSTRAP = """
import sys
sys.path[:0] = {paths!r}
sys.argv = [{worker!r}, *sys.argv[1:]]
exec(compile(open({worker!r}).read(), {worker!r}, "exec"), {{"__name__": "__main__"}})
"""


class ForkServer:
    """The trusted process that forks sandbox children (see the module docstring). Other
    processes get their own channel to the same server with :meth:`attach`."""

    def __init__(self):
        self.home = tempfile.TemporaryDirectory(prefix="autograder-server-")
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
        matplotlib_cache = Path.home() / ".cache" / "autograder-matplotlib"  # its font list, built once
        matplotlib_cache.mkdir(parents=True, exist_ok=True)
        env = {"PATH": "/usr/bin:/bin", "HOME": self.home.name, "TMPDIR": self.home.name,
               "MPLCONFIGDIR": str(matplotlib_cache), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
               "TRITON_INTERPRET": "1", "PYTHONHASHSEED": "0"}
        self.log = os.path.join(self.home.name, "server.log")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", BOOTSTRAP.format(paths=paths, worker=str(WORKER)),
                 str(theirs.fileno())],
                cwd=self.home.name, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                pass_fds=(theirs.fileno(),), start_new_session=True)
        theirs.close()
        self.control.settimeout(600)  # its first answer waits for its imports; it never takes longer
        self.owner = self.user = os.getpid()  # the process that started it, the one that may use this channel
        self.broken = False

    def _ask(self, spec: dict, fds: list[int]) -> None:
        try:
            socket.send_fds(self.control, [json.dumps(spec).encode()], fds)
            reply = self.control.recv(4096)
        except OSError as error:
            reply = str(error).encode()
        if reply != b"ok":
            self.broken = True
            log = Path(self.log).read_text(errors="replace")[-2000:] if os.path.exists(self.log) else ""
            reason = reply.decode(errors="replace") or "it stopped"
            raise SandboxError(f"the grading fork server failed ({reason})\n{log}")

    def spawn(self, spec: dict) -> tuple[socket.socket, socket.socket]:
        """A new child: returns (its request channel, its watcher's control channel)."""
        comm, comm_child = socket.socketpair()
        control, control_child = socket.socketpair()
        try:
            self._ask(spec, [comm_child.fileno(), control_child.fileno()])
        except SandboxError:
            comm.close()
            control.close()
            raise
        finally:
            comm_child.close()
            control_child.close()
        return comm, control

    def attach(self) -> "ForkServer":
        """A handle on this server with a channel of its own, for another process (a
        forked grading worker) to use while this one keeps its own."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._ask({"attach": True}, [theirs.fileno()])
        finally:
            theirs.close()
        handle = object.__new__(ForkServer)
        handle.__dict__.update(self.__dict__, control=ours, owner=None, user=None)
        return handle

    def close(self):
        """Close this channel; the process that started the server also stops it (sandboxes
        still open live on: each is ended by its own watcher)."""
        self.control.close()
        if self.owner == os.getpid():
            self.process.kill()
            self.process.wait()
            self.home.cleanup()


_server: ForkServer | None = None


def fork_server() -> ForkServer:
    """This process's fork server: started on first use, after it broke, or when the one
    known was inherited from the parent of a fork."""
    if _server is None or _server.broken or _server.user != os.getpid():
        use_fork_server(ForkServer())
    return _server


def use_fork_server(server: ForkServer):
    """Make ``server`` (e.g. a channel from :meth:`ForkServer.attach`) this process's."""
    global _server
    server.user = os.getpid()
    _server = server


def claim_uid():
    """An unprivileged uid that no other live sandbox on this machine uses, and the lock
    file that holds it (None, None when this process cannot change users)."""
    if os.geteuid() != 0:
        return None, None
    folder = Path(tempfile.gettempdir()) / "autograder-uids"
    folder.mkdir(mode=0o700, exist_ok=True)
    for uid in range(UID_BASE, UID_BASE + UID_COUNT):
        lock = open(folder / str(uid), "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return uid, lock
        except BlockingIOError:
            lock.close()
    raise SandboxError(f"all {UID_COUNT} sandbox uids from {UID_BASE} are in use")


class Sandbox:
    """One child process serving one submission. Use as a context manager.

    ``hidden``: more folders the child must not see (the course directory); ``deadline``:
    a ``time.monotonic()`` after which every request fails (the notebook's time budget);
    ``namespaces=False`` forgoes them (to test what the separate uid alone protects).
    """

    def __init__(self, limits: Limits | None = None, given_topics: list[str] = (), hidden=(), deadline=None,
                 namespaces=True):
        self.namespaces = namespaces and os.geteuid() == 0
        self.limits = limits or Limits()
        self.given_topics = list(given_topics)
        self.hidden = [str(Path(p).resolve()) for p in [*HIDDEN, *hidden]]
        self.deadline = deadline
        self.channel = None  # the socket to the child while it lives
        self.dead = None  # why the child is gone, once it is
        self.isolation = {}  # what worker.confine reported in force
        self.uid_lock = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        self.uid, self.uid_lock = claim_uid()
        spec = {"uid": self.uid, "namespaces": self.namespaces, "hidden": self.hidden,
                "limits": asdict(self.limits),
                "given": {f"{t}.py": str(SOLUTIONS / f"{t}.py") for t in self.given_topics}}
        try:
            self.channel, self.control = fork_server().spawn(spec)
        except BaseException:
            self._release_uid()
            raise
        self.dead, self.exit_status, self._ended = None, None, False
        try:
            hello = self._read_reply(self.limits.setup_seconds)
        except (StudentError, OSError) as error:
            self.close()
            raise SandboxError(f"the sandbox did not start: {error}") from None
        if not hello.get("ok"):
            self.close()
            raise SandboxError(str(hello.get("error")))
        self.isolation = hello["value"]

    @property
    def running(self) -> bool:
        return self.channel is not None and not self.dead

    def close(self):
        """Kill the child (and everything it started), wait until it is gone."""
        if self.channel is not None:
            self._status()
            self.channel.close()
            self.control.close()
            self.channel = None
            self._release_uid()

    def _release_uid(self):
        if self.uid_lock is not None:
            self.uid_lock.close()
            self.uid_lock = None

    def _status(self) -> int | None:
        """Have the watcher kill the child (if it still runs); the child's wait status."""
        if not self._ended:
            self._ended = True
            try:
                self.control.send(b"k")
                ready, _, _ = select.select([self.control], [], [], 30)
                if ready:
                    self.exit_status = json.loads(self.control.recv(4096) or "{}").get("status")
            except (OSError, ValueError):
                pass
        return self.exit_status

    def run_cells(self, cells: list[str]) -> list[str | None]:
        """Execute the submission's code cells in order; one error message (or None) per cell."""
        return self.request({"op": "run_cells", "cells": cells}, self.limits.setup_seconds)

    def request(self, message, seconds: float | None = None):
        if self.dead:
            raise StudentError(self.dead)
        try:
            payload = worker.encode(message)
            self.channel.sendall(struct.pack("<Q", len(payload)) + payload)
            reply = self._read_reply(seconds or self.limits.call_seconds)
        except StudentError as error:
            self.dead = str(error)
            self.close()
            raise
        except OSError:  # the child is gone (broken pipe, connection reset)
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
        if self.deadline is not None and self.deadline < deadline:
            deadline = self.deadline
            late = (f"grading this notebook took longer than {self.limits.notebook_seconds:.0f} s in total "
                    "(time limit), so the remaining checks were stopped")
        else:
            late = f"your code took longer than {seconds:.0f} s (time limit) and was stopped; look for an infinite loop"
        header = self._read(8, deadline, late)
        size = struct.unpack("<Q", header)[0]
        if size > self.limits.reply_bytes:
            raise StudentError(f"your code returned {size / 2**20:.0f} MiB, more than the grader accepts")
        payload = self._read(size, deadline, late)
        try:
            with warnings.catch_warnings():  # torch warns about odd pickle protocols: the child's doing
                warnings.simplefilter("ignore")
                return torch.load(io.BytesIO(payload), weights_only=True)
        except Exception as error:
            raise StudentError(f"your code sent back data the grader refuses ({type(error).__name__})") from None

    def _read(self, n, deadline, late):
        chunks = []
        while n:
            ready, _, _ = select.select([self.channel], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise StudentError(late)
            chunk = self.channel.recv(min(n, 1 << 20))
            if not chunk:
                raise StudentError(self._death_message())
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _death_message(self):
        status = self._status()
        if status is None:
            return "the process running your code stopped"
        code = os.waitstatus_to_exitcode(status)
        if code == -signal.SIGXCPU:
            return "your code used more CPU time than allowed and was stopped"
        if code == -signal.SIGKILL:
            return "your code was stopped: it used more CPU time or memory than allowed"
        if code < 0:
            return f"the process running your code was killed by signal {signal.Signals(-code).name} (out of memory?)"
        return f"your code ended the grading process (exit code {code}); do not call exit() in a notebook"
