"""Keeps a sandboxed child from hiding the memory its calls touch (see :mod:`autograder.touched`).

The grader counts the pages a measured call touched by their accessed and dirty bits, which it
clears when the call begins and reads when it ends. Linux lets a process reset those bits on
its own pages: by writing ``/proc/self/clear_refs`` (the grader's own reset), or with
``madvise`` advice that ages pages (``MADV_COLD``, ``MADV_PAGEOUT``) or marks them clean
(``MADV_FREE``), also through ``process_madvise``. A call that filled a buffer made beforehand
and then reset its bits would be measured as touching nothing. So, before any learner code:

- **Landlock** (Linux 5.13+) takes away writing files under ``/proc``; writing any other file
  stays as it was (the rule only names what the child already could write);
- **seccomp** makes those ``madvise`` advices and ``process_madvise`` fail with ``EPERM``, as it
  does every system call made through another architecture's calling convention (the 32-bit
  ``int 0x80`` on x86-64, whose numbers the filter does not check).

Neither can be undone by the process (``no_new_privs`` is set first) and both hold for all it
forks. Imports only the standard library; the structures are Linux's UAPI headers
(``linux/landlock.h``, ``linux/seccomp.h``, ``linux/filter.h``).
"""

import ctypes
import errno
import os
import platform
import struct

# Landlock (linux/landlock.h): system calls numbered alike on every architecture.
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_ACCESS_FS_WRITE_FILE = 1 << 1
LANDLOCK_RULE_PATH_BENEATH = 1
O_PATH = 0o10000000
UNWRITABLE = ("proc",)  # top-level folders whose files the child may not open for writing

# seccomp (linux/seccomp.h, linux/filter.h, linux/audit.h)
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
LOAD_WORD, JUMP_IF_EQUAL, JUMP_IF_AT_LEAST, RETURN = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, ...
NR, ARCH, ARGUMENT_2 = 0, 4, 32  # offsets in struct seccomp_data (args[2]'s low 32 bits, little-endian)
MADV_FREE, MADV_COLD, MADV_PAGEOUT = 8, 20, 21
PROCESS_MADVISE = 440
X32_SYSCALL_BIT = 0x40000000
ARCHITECTURES = {  # platform.machine(): (AUDIT_ARCH_*, __NR_madvise)
    "x86_64": (0xC000003E, 28),
    "aarch64": (0xC00000B7, 233),
}


def guard() -> str | None:
    """Apply both rules to this process (after ``no_new_privs``); returns None, or why the pages'
    bits cannot be protected here (then the grader does not count touched memory)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    try:
        _forbid_writing_proc(libc)
        _forbid_aging_advice(libc)
    except OSError as error:
        return str(error)
    return None


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def _forbid_writing_proc(libc):
    handled = ctypes.create_string_buffer(struct.pack("<Q", LANDLOCK_ACCESS_FS_WRITE_FILE))
    ruleset = _check(
        libc.syscall(LANDLOCK_CREATE_RULESET, handled, ctypes.c_size_t(8), ctypes.c_uint32(0)),
        "Landlock (Linux 5.13 or later)",
    )
    try:
        for entry in sorted(set(os.listdir("/")) - set(UNWRITABLE)):
            try:
                folder = os.open(os.path.join("/", entry), O_PATH | os.O_CLOEXEC)
            except OSError:  # a dangling link: nothing to write there
                continue
            try:
                rule = ctypes.create_string_buffer(struct.pack("<Qi", LANDLOCK_ACCESS_FS_WRITE_FILE, folder))
                _check(
                    libc.syscall(LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, rule, ctypes.c_uint32(0)),
                    f"Landlock rule for /{entry}",
                )
            finally:
                os.close(folder)
        _check(libc.syscall(LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "Landlock restrict_self")
    finally:
        os.close(ruleset)


def _forbid_aging_advice(libc):
    if platform.machine() not in ARCHITECTURES:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {platform.machine()}")
    audit_arch, madvise = ARCHITECTURES[platform.machine()]
    deny = SECCOMP_RET_ERRNO | errno.EPERM
    # (code, jump if true, jump if false, k): jumps count the instructions skipped
    program = [
        (LOAD_WORD, 0, 0, ARCH),
        (JUMP_IF_EQUAL, 1, 0, audit_arch),
        (RETURN, 0, 0, deny),  # another architecture's calling convention
        (LOAD_WORD, 0, 0, NR),
        (JUMP_IF_AT_LEAST, 7, 0, X32_SYSCALL_BIT),  # x86-64's x32 numbers
        (JUMP_IF_EQUAL, 6, 0, PROCESS_MADVISE),
        (JUMP_IF_EQUAL, 0, 4, madvise),
        (LOAD_WORD, 0, 0, ARGUMENT_2),
        (JUMP_IF_EQUAL, 3, 0, MADV_FREE),
        (JUMP_IF_EQUAL, 2, 0, MADV_COLD),
        (JUMP_IF_EQUAL, 1, 0, MADV_PAGEOUT),
        (RETURN, 0, 0, SECCOMP_RET_ALLOW),
        (RETURN, 0, 0, deny),
    ]
    filters = ctypes.create_string_buffer(b"".join(struct.pack("<HBBI", *line) for line in program))
    fprog = struct.pack("HxxxxxxP", len(program), ctypes.addressof(filters))
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.create_string_buffer(fprog), 0, 0), "seccomp")
