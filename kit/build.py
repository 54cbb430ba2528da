"""Build the learner's kit (``make kit``): exactly one wheel in ``dist/``.

1. Record: run every check suite of every chapter with the reference answers at the public seed,
   recording what the reference returned to the checks (:mod:`autograder.oracle`), and how long
   the reference takes to pass each suite (the kit's time budgets).
2. Stage: copy the modules of ``autograder/`` that grading needs (none imports ``solutions``) into
   ``build/kit/``, with the recording, ``kit/pyproject.toml`` and
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
from autograder.grading import reference_seconds  # noqa: E402
from autograder.student import KernelBackend, Student  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / "build" / "kit"
DIST = ROOT / "dist"
# What grading needs, and no module of the course's own machinery (the sandbox and batch, which
# hide and call the reference; the book's rendering and the given code, which read `solutions/`;
# the instructors' exports). tests/test_kit.py grades with the installed kit.
KIT_MODULES = [
    "__init__.py",
    "__main__.py",
    "chapters.py",
    "files.py",
    "grading.py",
    "local.py",
    "oracle.py",
    "protocol.py",
    "student.py",
    "suite.py",
    "wire.py",
    "checks",
]


def record() -> dict:
    """Every suite against its reference answer, at the public seed; all must pass."""
    torch.set_num_threads(1)
    with oracle.recording() as recorded:
        for chapter in CHAPTERS:
            reference = importlib.import_module(f"solutions.{chapter.topic}")
            for name, suite in suites(chapter.topic).items():
                answer = getattr(reference, name)
                failed = [
                    r
                    for r in suite.run(Student(KernelBackend({name: answer}), name), oracle.PUBLIC_SEED)
                    if not r.passed
                ]
                if failed:
                    raise SystemExit(f"the reference fails its own checks: {failed}")
    return recorded


def timings() -> dict[str, float]:
    """What the reference takes to pass each suite here: the kit's time budgets."""
    return {f"{c.topic}.{name}": reference_seconds(c.topic, name) for c in CHAPTERS for name in c.graded_names}


def stage(recorded: dict, seconds: dict[str, float]) -> None:
    shutil.rmtree(STAGE, ignore_errors=True)
    (STAGE / "autograder").mkdir(parents=True)
    for name in KIT_MODULES:
        source, target = ROOT / "autograder" / name, STAGE / "autograder" / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, target)
    oracle.save(recorded, seconds, STAGE / "autograder" / oracle.RECORDING.name)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / "kit" / name, STAGE / name)


def build_wheel() -> Path:
    shutil.rmtree(DIST, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(DIST),
            str(STAGE),
        ],
        check=True,
    )
    shutil.rmtree(STAGE / "build", ignore_errors=True)
    (wheel,) = DIST.glob("*.whl")
    return wheel


if __name__ == "__main__":
    recorded = record()
    stage(recorded, timings())
    wheel = build_wheel()
    calls = sum(len(c) for c in recorded.values())
    print(
        f"{wheel.relative_to(ROOT)}: {wheel.stat().st_size / 1024:.0f} KiB, "
        f"{calls} reference calls recorded for {len(recorded)} sub-checks"
    )
