"""The grading seeds: which inputs the checks draw, on each path.

Every sub-check draws its inputs from its grading seed (:meth:`autograder.suite.Suite.run`).
There are two kinds of seed, and no path uses the other's:

- **the practice seed** (:data:`PRACTICE_SEED`, fixed and public): the learner's own grading, in
  the notebook's grade cells and with the kit's ``python -m autograder grade``. The kit holds the
  reference's values for these inputs only (``make kit`` records them, :mod:`autograder.oracle`),
  so it can decide every check there without the answer key.
- **official seeds** (:func:`draw_official_seed`, drawn at random, never the practice seed): a
  course's private seed, written into its ``nbgrader_config.py`` by ``python -m autograder course``
  and read by ``nbgrader autograde``, ``python -m autograder autograde`` and, inside the course,
  ``python -m autograder grade``; and each Gradescope package's two seeds (the half whose results
  the learner sees at once, and the private half). An answer that replays what the kit recorded
  meets none of their inputs.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

PRACTICE_SEED = 31415  # the learner's seed: the kit's recording is made for it; no official grade uses it
COURSE_CONFIG = "nbgrader_config.py"  # where `python -m autograder course` writes the course's seed
SEED_LINE = 'os.environ.setdefault("AUTOGRADER_SEED", "{seed}")'  # the course config's line that sets it
_SEED_IN_CONFIG = re.compile(r'^os\.environ\.setdefault\("AUTOGRADER_SEED", "(\d+)"\)$', re.M)


def draw_official_seed() -> int:
    """A fresh seed for an official grade: random in [1, 2**31 - 1], never the practice seed."""
    while (seed := secrets.randbelow(2**31 - 1) + 1) == PRACTICE_SEED:
        pass
    return seed


def course_seed(folder: Path) -> int | None:
    """The private seed of the course whose directory is ``folder`` (read from the line
    :data:`SEED_LINE` of its ``nbgrader_config.py``, without running the file), or None."""
    config = Path(folder) / COURSE_CONFIG
    try:
        found = _SEED_IN_CONFIG.search(config.read_text())
    except (OSError, UnicodeDecodeError):
        return None
    return int(found.group(1)) if found else None
