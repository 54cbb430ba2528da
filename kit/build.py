"""Build the learner's kit (``make kit``): exactly one wheel in ``dist/``.

1. Record: run every check suite of every chapter with the reference answers at the public seed,
   recording what the reference returned to the checks (:mod:`autograder.oracle`).
2. Stage: copy ``autograder/`` without the instructor-only modules (and so without anything that
   imports ``solutions``) into ``build/kit/``, with the recording, ``kit/pyproject.toml`` and
   ``kit/README.md``.
3. Build the wheel there with pip, into a clean ``dist/``.

    .venv/bin/python kit/build.py
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # chapter 7's kernel runs in Triton's interpreter without a GPU

import torch  # noqa: E402

from autograder import oracle  # noqa: E402
from autograder.chapters import CHAPTERS  # noqa: E402
from autograder.checks import suites  # noqa: E402
from autograder.student import KernelBackend, Student  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / "build" / "kit"
DIST = ROOT / "dist"
# Modules of the course's own machinery: the batch autograder, the nbgrader course, the sandbox and
# its confinement (which hide the reference), the book's rendering and the given code (both read
# `solutions/`).
INSTRUCTOR_ONLY = {"batch.py", "course.py", "sandbox.py", "confinement.py", "cgroups.py", "release.py", "given.py"}


def record() -> dict:
    """Every suite against its reference answer, at the public seed; all must pass."""
    torch.set_num_threads(1)
    with oracle.recording() as recorded:
        for chapter in CHAPTERS:
            reference = importlib.import_module(f"solutions.{chapter.topic}")
            for name, suite in suites(chapter.topic).items():
                answer = getattr(reference, name)
                failed = [r for r in suite.run(Student(KernelBackend({name: answer}), name), oracle.PUBLIC_SEED)
                          if not r.passed]
                if failed:
                    raise SystemExit(f"the reference fails its own checks: {failed}")
    return recorded


def stage(recorded: dict) -> None:
    shutil.rmtree(STAGE, ignore_errors=True)
    shutil.copytree(ROOT / "autograder", STAGE / "autograder",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *INSTRUCTOR_ONLY))
    oracle.save(recorded, STAGE / "autograder" / oracle.RECORDING.name)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / "kit" / name, STAGE / name)


def build_wheel() -> Path:
    shutil.rmtree(DIST, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(DIST), str(STAGE)], check=True)
    shutil.rmtree(STAGE / "build", ignore_errors=True)
    (wheel,) = DIST.glob("*.whl")
    return wheel


if __name__ == "__main__":
    recorded = record()
    stage(recorded)
    wheel = build_wheel()
    calls = sum(len(c) for c in recorded.values())
    print(f"{wheel.relative_to(ROOT)}: {wheel.stat().st_size / 1024:.0f} KiB, "
          f"{calls} reference calls recorded for {len(recorded)} sub-checks")
