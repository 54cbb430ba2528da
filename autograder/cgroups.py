"""Per-sandbox memory, process and CPU caps with Linux control groups.

One group per sandbox, created by the grader (root) below its own group: ``memory.max`` and
``pids.max`` with cgroup v2 where the host has the memory and pids controllers there,
otherwise the v1 ``memory`` (``memory.limit_in_bytes``) and ``pids`` hierarchies; where the
cpu controller is there too, ``cpu.max`` (v1: ``cpu.cfs_quota_us``) caps the sandbox's
processes together at a number of cores, so a submission that forks spinning processes (each
in a session of its own) cannot starve the sandboxes of other submissions graded beside it. The
sandbox's child joins the group before any learner code runs (it writes to the
``cgroup.procs`` descriptors this module opens), so everything it forks is in it: the
processes of one sandbox together cannot use more than its memory, and when they try, the
kernel's OOM killer picks a process of *that* sandbox, never another's or the grader. The
grader reads the group's ``oom_kill`` count to tell the learner why their code stopped, and
removes the group when the sandbox closes. A process killed for memory while its group never
reached its own cap (:meth:`Group.reached_its_limit`) was chosen because the machine, or a group
above, ran short: not the learner's fault. Each worker of ``python -m autograder autograde`` has
a memory group of its own (:func:`worker_group`), beside its sandboxes' groups.

The group's own counters also measure one request from outside the learner's process
(:meth:`Group.meter`): its peak memory (v1 ``memory.max_usage_in_bytes``, reset by writing 0;
v2 ``memory.peak``, reset per open file where the kernel allows) and its CPU time (v1
``cpuacct.usage`` where the cpuacct hierarchy is writable, v2 ``cpu.stat``'s ``usage_usec``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

_numbers = count()
_sandbox_parents = None  # set by join(): where a grading worker creates its sandboxes' groups
PERIOD = 100_000  # microseconds: the CPU cap's accounting period (the kernel's default)


@dataclass
class Group:
    version: str  # "v2" or "v1"
    folders: list[Path]  # the group's folder in each hierarchy (v1: memory, then pids and cpu if mounted)
    procs: list[int] = field(default_factory=list)  # open cgroup.procs descriptors, for the child

    def oom_kills(self) -> int:
        """How many processes of the group the kernel killed for lack of memory."""
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        try:
            for line in (self.folders[0] / name).read_text().splitlines():
                key, _, number = line.partition(" ")
                if key == "oom_kill":
                    return int(number)
        except OSError:
            pass
        return 0

    def pids(self) -> list[int]:
        """The processes in the group, as this process's pid namespace numbers them."""
        return [int(line) for line in (self.folders[0] / "cgroup.procs").read_text().split()]

    def meter(self):
        """Start measuring the group; returns a function that gives ``(peak_bytes, cpu_seconds)``
        since: the most memory its processes used above what they used now, and the CPU time they
        used. Raises OSError (with the reason) where this host's cgroups cannot measure that."""
        memory = self.folders[0]
        if self.version == "v2":
            peak = os.open(memory / "memory.peak", os.O_RDWR | os.O_CLOEXEC)  # its reset holds for this file only
            try:
                os.write(peak, b"reset")
            except OSError:
                os.close(peak)
                raise OSError("this kernel cannot reset a cgroup's memory.peak (Linux 6.12 or later can)") from None
            cpu_file, scale = memory / "cpu.stat", 1e-6
        else:
            (memory / "memory.max_usage_in_bytes").write_text("0")  # the peak starts again from the usage now
            cpu_file = next((f / "cpuacct.usage" for f in self.folders if (f / "cpuacct.usage").exists()), None)
            if cpu_file is None:
                raise OSError("this host gives the grader no cpuacct cgroup to count a sandbox's CPU time")
            scale = 1e-9
        start_memory, start_cpu = _memory_in_use(self), _cpu_counter(cpu_file)

        def measurement() -> tuple[int, float]:
            if self.version == "v2":
                try:
                    os.lseek(peak, 0, os.SEEK_SET)
                    highest = int(os.read(peak, 64))
                finally:
                    os.close(peak)
            else:
                highest = int((memory / "memory.max_usage_in_bytes").read_text())
            return max(highest - start_memory, 0), max(_cpu_counter(cpu_file) - start_cpu, 0) * scale

        return measurement

    def reached_its_limit(self) -> bool:
        """Whether the group's memory ever reached its own cap (v1 ``memory.failcnt`` or
        ``memory.memsw.failcnt``, v2 ``memory.events``' ``max`` and ``oom``). A process of the group
        killed for memory while this is False was killed because the machine, or a group above
        this one, ran short of memory: not because of what the group's processes did. (Not
        ``max_usage_in_bytes``: :meth:`meter` resets it.)"""
        folder = self.folders[0]
        try:
            if self.version == "v2":
                events = dict(line.split() for line in (folder / "memory.events").read_text().splitlines())
                return int(events.get("max", 0)) > 0 or int(events.get("oom", 0)) > 0
            counters = [folder / "memory.failcnt", folder / "memory.memsw.failcnt"]
            if any(int(f.read_text()) > 0 for f in counters if f.exists()):
                return True
            # On this host's kernel (6.18, v1) a group whose processes the OOM killer stopped at its own cap
            # showed failcnt 0 and max_usage_in_bytes equal to the limit: the peak (reset only at the start of a
            # measured call, so a later kill at the cap still shows) within a page of the cap counts too.
            peak = int((folder / "memory.max_usage_in_bytes").read_text())
            return peak + 4096 >= int((folder / "memory.limit_in_bytes").read_text())
        except (OSError, ValueError):
            return True  # unreadable: the group's own limit, as before this was told apart

    def close_procs(self):
        for fd in self.procs:
            os.close(fd)
        self.procs = []

    def remove(self):
        """Remove the group (its processes are gone; a dying one may hold it a moment)."""
        self.close_procs()
        for folder in self.folders:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _memory_in_use(group: Group) -> int:
    name = "memory.current" if group.version == "v2" else "memory.usage_in_bytes"
    return int((group.folders[0] / name).read_text())


def _cpu_counter(path: Path) -> int:
    """``cpuacct.usage`` (nanoseconds) or ``cpu.stat``'s ``usage_usec`` (microseconds)."""
    text = path.read_text()
    if path.name == "cpu.stat":
        return int(next(line.split()[1] for line in text.splitlines() if line.startswith("usage_usec ")))
    return int(text)


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root inside the hierarchy, fs type, super options) of cgroup mounts."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        fstype, options = fields[separator + 1], set(fields[separator + 3].split(","))
        if fstype in ("cgroup", "cgroup2"):
            found.append((fields[4], fields[3], fstype, options))
    return found


def _own_groups() -> dict[str, str]:
    """controller (v1) or "" (v2) -> this process's group path."""
    groups = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            groups[controller] = path
    return groups


def _folder(mount_point: str, root: str, path: str) -> Path:
    relative = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
    return Path(mount_point) / ("" if relative == "." else relative)


def _parents() -> tuple[str, list[Path]] | None:
    """("v2"|"v1", parent folders where this process may create sandbox groups), or None."""
    if _sandbox_parents is not None:  # a grading worker: beside its own group, not in it
        return _sandbox_parents
    mounts, own = _mounts(), _own_groups()
    for point, root, fstype, _ in mounts:
        if fstype == "cgroup2" and "" in own:
            parent = _folder(point, root, own[""])
            try:
                controllers = set((parent / "cgroup.controllers").read_text().split())
                enabled = set((parent / "cgroup.subtree_control").read_text().split())
                if {"memory", "pids"} <= controllers and {"memory", "pids"} <= enabled and os.access(parent, os.W_OK):
                    return "v2", [parent]
            except OSError:
                pass
    memory = [
        _folder(p, r, own["memory"]) for p, r, t, o in mounts if t == "cgroup" and "memory" in o and "memory" in own
    ]
    pids = [_folder(p, r, own["pids"]) for p, r, t, o in mounts if t == "cgroup" and "pids" in o and "pids" in own]
    cpu = [_folder(p, r, own["cpu"]) for p, r, t, o in mounts if t == "cgroup" and "cpu" in o and "cpu" in own]
    cpuacct = [
        _folder(p, r, own["cpuacct"])
        for p, r, t, o in mounts
        if t == "cgroup" and "cpuacct" in o and "cpu" not in o and "cpuacct" in own
    ]  # where cpu and cpuacct share a hierarchy, the cpu folder has cpuacct.usage
    if memory and os.access(memory[0], os.W_OK):
        return "v1", memory[:1] + [f for f in pids[:1] + cpu[:1] + cpuacct[:1] if os.access(f, os.W_OK)]
    return None


def worker_group(memory_bytes: int) -> Group | None:
    """A group capped at ``memory_bytes`` for one grading worker (``python -m autograder
    autograde``), beside the sandboxes' groups: what the worker itself does (reading a
    notebook, the checks) cannot take the machine's memory, so the kernel never has to kill
    a sandbox, a classmate's, for it. The caller removes it once the worker is gone; the
    worker moves itself in with :func:`join`. None where the host has no writable memory
    controller."""
    try:
        found = _parents()
    except (OSError, ValueError):
        return None
    if not found:
        return None
    version, parents = found
    _remove_orphans(parents[0])
    folder = parents[0] / f"autograder-worker-{os.getpid()}-{next(_numbers)}"
    group = Group(version, [])
    try:
        folder.mkdir()
        group.folders.append(folder)
        if version == "v2":
            _write(folder / "memory.max", memory_bytes)
            _write(folder / "memory.swap.max", 0, optional=True)
        else:
            _write(folder / "memory.limit_in_bytes", memory_bytes)
            _write(folder / "memory.memsw.limit_in_bytes", memory_bytes, optional=True)
        group.procs.append(os.open(folder / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
    except OSError:
        group.remove()
        return None
    return group


def _remove_orphans(parent: Path):
    """Remove the empty worker groups of grading runs that were killed before they could
    (the process that created one is gone; a group still in use cannot be removed)."""
    for folder in parent.glob("autograder-worker-*-*"):
        try:
            os.kill(int(folder.name.split("-")[2]), 0)
        except ProcessLookupError:
            try:
                folder.rmdir()
            except OSError:
                pass
        except (ValueError, OSError):
            pass


def join(group: Group):
    """Move this process (a grading worker) into ``group``; the sandbox groups it creates from
    then on still go where they went before, beside ``group`` rather than inside it (the
    worker's cap holds the worker alone; each sandbox has its own)."""
    global _sandbox_parents
    _sandbox_parents = _parents()
    for fd in group.procs:
        os.write(fd, b"0")
    group.close_procs()


def available() -> str | None:
    """ "v2" or "v1" where this process can create sandbox groups, else None."""
    try:
        found = _parents()
    except (OSError, ValueError):
        return None
    return found[0] if found else None


def create(memory_bytes: int, processes: int, cores: float = 1.0) -> Group | None:
    """A new group capped at ``memory_bytes``, ``processes`` and (where the cpu controller is
    there) ``cores`` CPUs; None where the host has no writable memory controller (the sandbox
    then relies on per-process limits only)."""
    try:
        found = _parents()
    except (OSError, ValueError):
        return None
    if not found:
        return None
    version, parents = found
    name = f"autograder-{os.getpid()}-{next(_numbers)}"
    group = Group(version, [])
    try:
        for parent in parents:
            folder = parent / name
            folder.mkdir()
            group.folders.append(folder)
            if version == "v2":
                _write(folder / "memory.max", memory_bytes)
                _write(folder / "memory.swap.max", 0, optional=True)
                _write(folder / "pids.max", processes)
                if (folder / "cpu.max").exists():
                    _write(folder / "cpu.max", f"{round(cores * PERIOD)} {PERIOD}")
            elif (folder / "memory.limit_in_bytes").exists():
                _write(folder / "memory.limit_in_bytes", memory_bytes)
                _write(folder / "memory.memsw.limit_in_bytes", memory_bytes, optional=True)  # no escape to swap
            elif (folder / "cpu.cfs_quota_us").exists():
                _write(folder / "cpu.cfs_period_us", PERIOD)
                _write(folder / "cpu.cfs_quota_us", round(cores * PERIOD))
            elif (folder / "pids.max").exists():
                _write(folder / "pids.max", processes)
            group.procs.append(os.open(folder / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
    except OSError:
        group.remove()
        return None
    return group


def _write(path: Path, value, optional: bool = False):
    try:
        path.write_text(str(value))
    except OSError:
        if not optional:
            raise
