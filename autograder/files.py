"""Reading files that learners hand in: regular files only, never through a symbolic link,
never blocking, never more than a cap.

The batch grader runs as the instructor (often root) over folders that students filled
(``nbgrader submit``/``collect`` copy whatever is there): a notebook may be a directory, a
FIFO that blocks a reader forever, or a symbolic link to a classmate's notebook or to any
file the grader can read. Each of these is refused with a reason instead of being read.
"""

from __future__ import annotations

import errno
import os
import stat

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
}


class NotAFile(Exception):
    """The path is there but cannot be graded (the message says why, naming only the file)."""


def open_folder(path, folder: int | None = None) -> int:
    """A descriptor of the directory ``path`` (relative to the open directory ``folder`` when
    given), which must not be a symbolic link; raises FileNotFoundError when it is absent and
    NotAFile when it is not a real directory."""
    _refuse_odd(path, stat.S_IFDIR, folder)
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise NotAFile(f"{os.path.basename(path)} cannot be opened ({error.strerror})") from None


def read_file(path, max_bytes: int, folder: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (relative to the open directory ``folder`` when
    given). Raises FileNotFoundError when it is absent, and NotAFile when it is a symbolic
    link, a directory, a FIFO or another non-regular file, or holds more than ``max_bytes``."""
    _refuse_odd(path, stat.S_IFREG, folder)
    try:
        fd = os.open(path, OPEN_FLAGS, dir_fd=folder)
    except FileNotFoundError:
        raise
    except OSError as error:  # ELOOP: it became a symbolic link after the check
        reason = "a symbolic link" if error.errno == errno.ELOOP else f"unreadable ({error.strerror})"
        raise NotAFile(f"{os.path.basename(path)} is {reason}, not a file") from None
    try:
        _refuse_odd_fd(fd, os.path.basename(path), max_bytes)
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise NotAFile(_too_large(os.path.basename(path), max_bytes))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _refuse_odd(path, expected: int, folder: int | None = None):
    """``lstat`` first: refuse what is not of the ``expected`` kind before opening it."""
    mode = os.lstat(path, dir_fd=folder).st_mode  # FileNotFoundError passes through
    if stat.S_IFMT(mode) != expected:
        raise NotAFile(
            f"{os.path.basename(path)} is {KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, "
            f"not a {'folder' if expected == stat.S_IFDIR else 'file'}"
        )


def _refuse_odd_fd(fd: int, name: str, max_bytes: int):
    info = os.fstat(fd)  # what was opened, whatever the path names now
    if not stat.S_ISREG(info.st_mode):
        raise NotAFile(f"{name} is {KINDS.get(stat.S_IFMT(info.st_mode), 'not a regular file')}, not a file")
    if info.st_size > max_bytes:
        raise NotAFile(_too_large(name, max_bytes))


def _too_large(name: str, max_bytes: int) -> str:
    limit = f"{max_bytes >> 20} MiB" if max_bytes >= 1 << 20 else f"{max_bytes} bytes"
    return f"{name} is too large to grade (over {limit}; a notebook's outputs can be cleared)"
