"""The memory a call touched, read from outside the process through Linux's ``/proc``: the pages
of memory the process wrote at some time (not its code and the files it only reads) that it read
or wrote during the call and that are still there when it ends.

A peak measured as the growth of resident memory (the sandbox's control group, ``VmHWM``) misses
memory that was resident before the call began: the N x N scores written into a tensor made at
the top of the notebook, or kept from an earlier call, cost it nothing. The pages' accessed bits
see it: they are cleared when the call begins (``clear_refs``) and counted when it ends
(``smaps``' ``Referenced``). An honest tiled call touches its inputs, its outputs and a few pages
of the interpreter's own (4 to 6 MiB at N = 4096); the tiles it frees are gone by the end.
Written memory the process held when the call began and no longer holds at its end counts too:
a buffer filled and then freed (or marked clean with ``MADV_FREE``) is not there to be counted.

A process can reset its own pages' bits: the sandbox takes that away (:mod:`autograder.page_guard`);
the kit's child and a grade cell's kernel keep it (their figures are advice).

Imports only the standard library.
"""

from collections.abc import Callable, Iterable

CLEAR_ACCESSED = "1"  # clear_refs: reset the accessed bits of every page (Documentation/filesystems/proc.rst)


def touch_meter(processes: Callable[[], Iterable[int | str]]) -> Callable[[], int | None]:
    """Start measuring the processes ``processes()`` lists ("self" for this one; listed again at
    the end, so that a process the call started counts too): returns a function that gives the
    bytes of written memory they touched since and still hold, plus the written memory they held
    at the start and no longer hold (freed, or marked clean: a buffer filled and then given back),
    or None where Linux did not let this process reset or read their pages' bits."""
    try:
        folders = [f"/proc/{pid}" for pid in processes()]
        written_before = sum(_written_kib(folder)[1] for folder in folders)
        for folder in folders:
            with open(f"{folder}/clear_refs", "w") as clear:
                clear.write(CLEAR_ACCESSED)
    except (OSError, ValueError):
        return lambda: None

    def touched() -> int | None:
        try:
            pages = [_written_kib(f"/proc/{pid}") for pid in processes()]
        except (OSError, ValueError):
            return None
        touched_kib, written_now = sum(t for t, _ in pages), sum(w for _, w in pages)
        return (touched_kib + max(written_before - written_now, 0)) << 10

    return touched


def _written_kib(folder: str) -> tuple[int, int]:
    """KiB of pages that hold memory the process wrote (dirty: anonymous memory, shared memory, a
    file written through memory; not the code and other files it only reads): those accessed
    since the bits were cleared (of each mapping, the smaller of its ``Referenced`` and its dirty
    pages), and all of them. A process that has ended holds none."""
    touched = written = 0
    mapping = {}
    try:
        with open(f"{folder}/smaps") as smaps:
            for line in smaps:
                key, _, rest = line.partition(":")
                if key in ("Referenced", "Private_Dirty", "Shared_Dirty"):
                    mapping[key] = int(rest.split()[0])
                    if len(mapping) == 3:  # the three fields of one mapping
                        dirty = mapping["Private_Dirty"] + mapping["Shared_Dirty"]
                        touched, written = touched + min(mapping["Referenced"], dirty), written + dirty
                        mapping = {}
    except (FileNotFoundError, ProcessLookupError):
        return 0, 0
    return touched, written
