"""A separate, confined, resource-limited process that runs one submission's code.

Children come from a *fork server* started once per grading process: it imports torch and
the libraries chapters use, then forks a fresh child per sandbox in milliseconds. How the
server and its children are confined, and what they can see, is
:mod:`autograder.confinement` (bubblewrap with an allow-list of folders, fresh private
``/tmp``, ``/var/tmp``, ``/dev/shm`` and ``/run`` per child, no network, own pid namespace,
an unprivileged uid of its own per live sandbox); the memory, processes and CPU (one core) of each sandbox
together are capped by a control group of its own (:mod:`autograder.cgroups`); each
process also has limits on CPU time, address space, file size, open files and processes.
Requests have a wall clock each and per notebook, replies a cap on their size.

The server's handle, :class:`~autograder.confinement.ForkServer`, and :class:`SandboxError` live in
:mod:`autograder.confinement`, which imports no torch (``grade`` starts the server first), and are
imported here for the callers; its docstring says which confinement policies there are.
:attr:`Sandbox.isolation` says what is in force.

The trusted parent (this module) sends requests and reads replies as
:mod:`autograder.wire` frames: the child can only ever return plain data, sized within
``Limits.reply_bytes`` before anything is allocated, and each reply must carry the random
id of the request it answers.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import solutions
from autograder import cgroups, protocol, wire
from autograder.confinement import ForkServer, SandboxError
from autograder.student import Measurement, StudentError
from autograder.touched import touch_meter

SOLUTIONS = Path(solutions.__file__).resolve().parent
UID_BASE = int(os.environ.get("AUTOGRADER_UID_BASE", "2100000000"))  # uids no account uses
UID_COUNT = 4096
REPLY_HEADER_BYTES = 16 << 20  # the plain-data part of one reply (its tensors are capped by Limits.reply_bytes)


class MachineShortOfMemory(SandboxError):
    """The kernel killed a sandbox's process for memory while the sandbox was under its own
    cap: the machine (or a control group above the sandbox's) was short of memory. Not the
    submission's fault: nothing is recorded, and the submission is graded again."""


@dataclass
class Limits:
    """Per-submission limits. ``memory_bytes`` caps the sandbox's processes together (a
    control group) and each one's address space; ``call_seconds`` bounds one request (a
    wall clock), ``notebook_seconds`` all requests of one notebook together."""

    cpu_seconds: int = 600
    memory_bytes: int = 6 << 30
    file_bytes: int = 64 << 20
    scratch_bytes: int = 256 << 20
    processes: int = 64
    cpu_cores: float = 1.0  # all its processes together (a control group): neighbours keep theirs
    reply_bytes: int = 256 << 20
    setup_seconds: float = 120.0
    call_seconds: float = 60.0
    notebook_seconds: float = 900.0


_server: ForkServer | None = None


def fork_server() -> ForkServer:
    """This process's fork server: started on first use, after it broke, or when the one
    known was inherited from the parent of a fork."""
    if _server is None or _server.broken or _server.user != os.getpid():
        use_fork_server(ForkServer())
    return _server


def use_fork_server(server: ForkServer):
    """Make ``server`` (e.g. a channel from :meth:`ForkServer.attach`, or one started with
    another confinement) this process's."""
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

    ``given_topics``: earlier chapters whose reference modules the child may import (as
    ``solutions.<topic>``); ``deadline``: a ``time.monotonic()`` after which every request
    fails (the notebook's time budget). ``hidden`` is accepted for callers of the deny-list
    era and changes nothing: the allow-list shows no host folder that is not Python's.
    """

    def __init__(self, limits: Limits | None = None, given_topics: list[str] = (), hidden=(), deadline=None):
        self.limits = limits or Limits()
        self.given_topics = list(given_topics)
        self.deadline = deadline
        self.channel = None  # the socket to the child while it lives
        self.dead = None  # why the child is gone, once it is
        self.isolation = {}  # what the child reported in force
        self.uid_lock = self.group = None
        self.killed_by_host_pressure = None  # why, when the machine's memory pressure killed the child

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        server = fork_server()
        confined = server.confinement == "bwrap"
        # Unconfined, Python may live where another uid cannot read it (/root): the child keeps the grader's.
        self.uid, self.uid_lock = claim_uid() if confined else (None, None)
        self.group = cgroups.create(self.limits.memory_bytes, self.limits.processes, self.limits.cpu_cores)
        spec = {
            "uid": self.uid,
            "limits": asdict(self.limits),
            "confinement": server.confinement,
            "cgroup": self.group and self.group.version,
            "given": {f"{t}.py": (SOLUTIONS / f"{t}.py").read_text() for t in self.given_topics},
        }
        try:
            self.channel, self.control = server.spawn(spec, self.group.procs if self.group else ())
        except BaseException:
            self._release()
            raise
        if self.group:
            self.group.close_procs()
        self.channel.settimeout(self.limits.setup_seconds)  # a send to a child that stopped reading fails, not hangs
        self.dead, self.exit_status, self._ended = None, None, False
        try:
            hello = self._read_reply("hello", self.limits.setup_seconds)
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
        self._release()

    def _release(self):
        if self.group is not None:
            self.group.remove()
            self.group = None
        if self.uid_lock is not None:
            self.uid_lock.close()
            self.uid_lock = None

    def _status(self) -> int | None:
        """Have the watcher kill the child (if it still runs); the child's wait status."""
        if not self._ended:
            self._ended = True
            try:
                self.control.send(b"k")
            except OSError:  # the watcher saw the child end, reported it and left first
                pass
            try:
                ready, _, _ = select.select([self.control], [], [], 30)
                if ready:
                    self.exit_status = json.loads(self.control.recv(4096) or "{}").get("status")
            except (OSError, ValueError):
                pass
        return self.exit_status

    def run_cells(self, cells: list[str]) -> list[str | None]:
        """Execute the submission's code cells in order; one error message (or None) per cell.
        Raises StudentError when the reply is not that (code that rewrote the child's replies)."""
        errors = self.request({"op": "run_cells", "cells": cells}, self.limits.setup_seconds)
        if not (
            isinstance(errors, list) and len(errors) == len(cells) and all(e is None or type(e) is str for e in errors)
        ):
            raise StudentError("your code sent back something that is not a reply")
        return [e if e is None else e[: protocol.MAX_ERROR_CHARS] for e in errors]

    def request(self, message, seconds: float | None = None):
        """Send ``message`` (see :mod:`autograder.protocol`); the value of its reply. Raises
        StudentError with the learner's message when their code failed, or when the child
        is gone, late, out of memory, or sent anything but the reply to this request. A message
        with ``measure: True`` returns ``(value, Measurement)``: the sandbox's peak memory and CPU
        time during the request, read by this process from the sandbox's control group."""
        if message.get("measure"):
            return self._measured(message, seconds)
        if self.dead:
            raise StudentError(self.dead)
        message_id = protocol.new_id()
        try:
            wire.send(self.channel, message_id, message)
            reply = self._read_reply(message_id, seconds or self.limits.call_seconds)
        except StudentError as error:
            self._end(str(error))
        except OSError:  # the child is gone (broken pipe, connection reset)
            self._end(self._death_message())
        if self._out_of_memory():  # one of its processes was killed: the rest cannot be trusted to go on
            self._end(self._memory_message())
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise StudentError("your code sent back something that is not a reply")
        if not reply["ok"]:  # the child caps its messages; code that rewrote its replies gets the same cap
            raise StudentError(str(reply.get("error"))[: protocol.MAX_ERROR_CHARS])
        return reply.get("value")

    def _measured(self, message, seconds):
        by = "the sandbox's control group, read by the grader"
        plain = {**message, "measure": False}
        # Before the meter starts: what the child frees while preparing is not the call's.
        self.request({"op": "prepare_measured_call"}, seconds)
        try:
            if self.group is None:
                raise OSError("this host gives the grader no control group for the sandbox")
            # Where the child could reset its pages' bits (no Landlock here), what it touched is not measured.
            unguarded = self.isolation.get("page_bits_unguarded")
            meter, touched = self.group.meter(), (lambda: None) if unguarded else touch_meter(self.group.pids)
        except (OSError, ValueError, StopIteration) as error:
            return self.request(plain, seconds), Measurement(
                None, None, by, f"the grader cannot measure here ({error})"
            )
        try:
            value = self.request(plain, seconds)
        finally:
            try:
                peak, cpu = meter()  # also when the request failed: a v2 meter holds a file open
            except (OSError, ValueError, StopIteration) as error:
                peak = cpu = None
                unread = f"the sandbox's counters could not be read ({error})"
        return value, Measurement(peak, cpu, by, None if peak is not None else unread, touched())

    def _end(self, why: str):
        self.dead = self._memory_message() if self._out_of_memory() else why
        self.close()
        raise StudentError(self.dead) from None

    def _out_of_memory(self) -> bool:
        if self.group is None or self.group.oom_kills() == 0:
            return False
        if not self.group.reached_its_limit():  # the kernel chose it while the machine ran short
            self.killed_by_host_pressure = (
                "the machine ran short of memory and the kernel stopped this submission's sandbox while it "
                f"used less than its own {self.limits.memory_bytes >> 20} MiB; grade it again"
            )
        return True

    def _memory_message(self) -> str:
        if self.killed_by_host_pressure:
            return self.killed_by_host_pressure
        return (
            f"your code used more memory than the sandbox allows ({self.limits.memory_bytes >> 20} MiB, "
            "all its processes together) and was stopped"
        )

    def _read_reply(self, message_id: str, seconds: float):
        deadline = time.monotonic() + seconds
        if self.deadline is not None and self.deadline < deadline:
            deadline = self.deadline
            late = (
                f"grading this notebook took longer than {self.limits.notebook_seconds:.0f} s in total "
                "(time limit), so the remaining checks were stopped"
            )
        else:
            late = f"your code took longer than {seconds:.0f} s (time limit) and was stopped; look for an infinite loop"

        def read(n):
            ready, _, _ = select.select([self.channel], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise StudentError(late)
            return self.channel.recv(n)

        try:
            got, value = wire.read_frame(read, REPLY_HEADER_BYTES, self.limits.reply_bytes)
        except wire.ChannelClosed:
            raise StudentError(self._death_message()) from None
        except wire.WireError as error:
            raise StudentError(f"your code sent back data the grader refuses: {error}") from None
        if got != message_id:
            raise StudentError(
                "the grader received a reply to no request it made (your code wrote to the "
                "grader's channel), so it stopped your code"
            )
        return value

    def _death_message(self):
        status = self._status()
        if self._out_of_memory():
            return self._memory_message()
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
