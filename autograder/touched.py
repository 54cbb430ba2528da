"""The memory a call touched, read from outside the process through Linux's ``/proc``: the pages
of memory the process wrote at some time (not its code and the files it only reads) that it read
or wrote during the call and that are still there when it ends.

A peak measured as the growth of resident memory (the sandbox's control group, ``VmHWM``) misses
memory that was resident before the call began: the N x N scores written into a tensor made at
the top of the notebook, or kept from an earlier call, cost it nothing. The pages' accessed bits
see it: they are cleared when the call begins (``clear_refs``) and counted when it ends
(``smaps``' ``Referenced``). An honest tiled call touches its inputs, its outputs and a few pages
of the interpreter's own (4 to 6 MiB at N = 4096); the tiles it frees are gone by the end.

Imports only the standard library.
"""

from collections.abc import Callable, Iterable

CLEAR_ACCESSED = "1"  # clear_refs: reset the accessed bits of every page (Documentation/filesystems/proc.rst)


def touch_meter(pids: Iterable[int | str]) -> Callable[[], int | None]:
    """Start measuring the processes ``pids`` ("self" for this one): returns a function that gives
    the bytes of written memory they touched since and still hold, or None where Linux did not
    let this process reset or read their pages' accessed bits (another user's process, no ``/proc``)."""
    folders = [f"/proc/{pid}" for pid in pids]
    try:
        for folder in folders:
            with open(f"{folder}/clear_refs", "w") as clear:
                clear.write(CLEAR_ACCESSED)
    except OSError:
        return lambda: None

    def touched() -> int | None:
        try:
            return sum(_dirty_referenced_kib(folder) for folder in folders) << 10
        except (OSError, ValueError):
            return None

    return touched


def _dirty_referenced_kib(folder: str) -> int:
    """KiB of pages accessed since the bits were cleared that hold memory the process wrote (of each
    mapping, the smaller of its ``Referenced`` and its dirty pages): anonymous memory, shared memory,
    a file written through memory; not the code and other files it only reads. A process that has
    ended holds none."""
    total, mapping = 0, {}
    try:
        with open(f"{folder}/smaps") as smaps:
            for line in smaps:
                key, _, rest = line.partition(":")
                if key in ("Referenced", "Private_Dirty", "Shared_Dirty"):
                    mapping[key] = int(rest.split()[0])
                    if len(mapping) == 3:  # the three fields of one mapping
                        total += min(mapping["Referenced"], mapping["Private_Dirty"] + mapping["Shared_Dirty"])
                        mapping = {}
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return total
