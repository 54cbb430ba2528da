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
removes the group when the sandbox closes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

_numbers = count()
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
    if memory and os.access(memory[0], os.W_OK):
        return "v1", memory[:1] + [f for f in pids[:1] + cpu[:1] if os.access(f, os.W_OK)]
    return None


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
            else:
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
