"""Step 2: reading one student's submission, as files rather than paths.

``submitted/<student>/<assignment>/`` is filled by students (``nbgrader submit`` and
``collect`` copy whatever is there), and the grader often runs as root. So every file is
read through :mod:`autograder.files`: a folder or file that is a symbolic link, a directory,
a FIFO or anything but a regular file, or that is too large, is refused with a reason, and
the student gets a "not graded: <reason>" row while the rest of the class is graded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from autograder.batch.plan import Job
from autograder.files import NotAFile, open_folder, read_file
from autograder.grading import MAX_NOTEBOOK_BYTES

TIMESTAMP_BYTES = 1 << 10  # nbgrader writes one line of about 30 characters


@dataclass
class Submission:
    """What one student submitted: each notebook's bytes (None: not submitted), the text of
    ``timestamp.txt`` (None: none), and why it cannot be graded at all (None: it can)."""

    student: str
    notebooks: dict[str, bytes | None]
    timestamp: str | None
    problem: str | None = None

    def fingerprint(self, job: Job) -> str:
        """What a grade depends on: these files, the plan, the seed."""
        digest = hashlib.sha256(f"{job.plan.fingerprint()}/{job.seed}/{self.problem}".encode())
        for name, data in self.notebooks.items():
            digest.update(name.encode() + b"\0" + (b"<missing>" if data is None else data))
        digest.update(b"timestamp\0" + (self.timestamp or "<missing>").encode())
        return digest.hexdigest()


def read_submission(student: str, folder: Path, notebooks) -> Submission:
    """The submission in ``folder`` (``submitted/<student>/<assignment>``) of the notebooks
    named in ``notebooks``; never follows a symbolic link, never blocks, never raises."""
    contents = dict.fromkeys(notebooks)
    try:
        student_folder = open_folder(folder.parent)
        try:
            assignment_folder = open_folder(folder.name, student_folder)
        finally:
            os.close(student_folder)
        try:
            for name in notebooks:
                contents[name] = _read_if_there(f"{name}.ipynb", MAX_NOTEBOOK_BYTES, assignment_folder)
            timestamp = _read_if_there("timestamp.txt", TIMESTAMP_BYTES, assignment_folder)
        finally:
            os.close(assignment_folder)
    except NotAFile as error:
        return Submission(student, dict.fromkeys(notebooks), None, str(error))
    except OSError as error:
        return Submission(student, dict.fromkeys(notebooks), None, f"the submission cannot be read ({error.strerror})")
    return Submission(student, contents, None if timestamp is None else timestamp.decode(errors="replace"))


def _read_if_there(name: str, max_bytes: int, folder: int) -> bytes | None:
    try:
        return read_file(name, max_bytes, folder)
    except FileNotFoundError:
        return None
