"""C's heap around a call whose peak memory the grader measures from outside the process (the
sandbox's control group, the kit's or a grade cell's ``/proc`` counters): :func:`freshen`, then
:func:`release`.

What is measured is resident memory, so a call must be served as a new process would serve it.
Two things a process that has run a while does otherwise, with glibc's allocator:

- it keeps freed memory resident for reuse: a call that reuses it looks smaller than it is;
- it reuses free space inside its heap, left by earlier work, before mapping anything new,
  whatever the mmap threshold. Memory freed there stays resident, so a call served from that
  space is charged for every page it touches, freed or not: a tiled answer looped over 20 to 40
  MiB of such space and measured 15 to 30 MiB above its real peak.

Imports only the standard library: it also runs inside the sandbox (see :mod:`autograder.confinement`).
"""

import ctypes

MMAP_THRESHOLD = 128 << 10  # glibc's default, kept from now on (M_MMAP_THRESHOLD is -3 in malloc.h)
M_MMAP_THRESHOLD = -3
IS_MMAPPED = 0x2  # a bit of the size word glibc keeps just before each block it hands out


def freshen() -> list[int]:
    """From now on, serve the blocks of ``MMAP_THRESHOLD`` bytes or more that this thread allocates
    as fresh mappings, unmapped when freed, with the freed memory back with the system: as in a new
    process. The threshold is fixed (glibc otherwise raises it, up to 32 MiB, as large blocks are
    freed), the memory kept free is handed back (``malloc_trim``), and the heap's free chunks of the
    threshold or more are held, untouched: pass what this returns to :func:`release` once the
    measured call is over. Elsewhere than glibc, nothing (and nothing held)."""
    try:
        libc = _glibc()
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.malloc_trim(0)
    except (AttributeError, OSError):  # not glibc
        return []
    return _hold_free_chunks(libc)


def release(held: list[int]):
    """Give back the chunks :func:`freshen` held."""
    if held:
        libc = _glibc()
        for block in held:
            libc.free(block)


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (malloc.h): the allocator's totals, in bytes."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _glibc():
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
    return libc


def _hold_free_chunks(libc) -> list[int]:
    """Allocate, without touching them, blocks that fill the heap's free chunks of
    ``MMAP_THRESHOLD`` bytes or more, largest first: blocks of each size while glibc finds room in
    the heap; the first it has to map says none is left there (it is handed back at once). Never
    more than the heap holds free (``mallinfo2``; without it, glibc before 2.33, nothing is held)."""
    try:
        free = libc.mallinfo2().fordblks
    except AttributeError:
        return []
    held, size = [], 1 << max(free.bit_length() - 1, 0)
    while size >= MMAP_THRESHOLD and free >= size:
        block = libc.malloc(size)
        if block and ctypes.c_size_t.from_address(block - ctypes.sizeof(ctypes.c_size_t)).value & IS_MMAPPED:
            libc.free(block)
            block = None
        if not block:
            size //= 2
            continue
        held.append(block)
        free -= size
    return held
