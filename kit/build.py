"""Build the learner's kit (``make kit``): exactly one wheel in ``dist/``.

1. Record: run every check suite of every chapter with the reference answers at the practice seed,
   recording what the reference returned to the checks (:mod:`autograder.oracle`), and how long
   the reference takes to pass each suite (the kit's time budgets).
2. Stage: copy the modules of ``autograder/`` that grading needs (none imports ``solutions``) into
   a temporary folder, with the recording, ``kit/pyproject.toml`` and ``kit/README.md``.
3. Build the wheel there with pip, into a clean ``dist/`` (or ``--dist DIR``).

    .venv/bin/python kit/build.py [--dist DIR]
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # chapter 7's kernel runs in Triton's interpreter without a GPU

import torch  # noqa: E402

from autograder import oracle  # noqa: E402
from autograder.chapters import CHAPTERS  # noqa: E402
from autograder.checks import suites  # noqa: E402
from autograder.grading import reference_seconds  # noqa: E402
from autograder.student import KernelBackend, Student  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
# What grading needs, and no module of the course's own machinery (the sandbox and batch, which
# hide and call the reference; the book's rendering and the given code, which read `solutions/`;
# the instructors' exports). tests/test_kit.py grades with the installed kit.
KIT_MODULES = [
    "__init__.py",
    "__main__.py",
    "catalogue.py",
    "chapters.py",
    "figures.py",  # the Chinese notebooks' setup cell: figure labels in Chinese
    "files.py",
    "grading.py",
    "heap.py",
    "local.py",
    "messages.py",
    "locale",
    "oracle.py",
    "protocol.py",
    "seeds.py",
    "student.py",
    "suite.py",
    "touched.py",
    "wire.py",
    "checks",
]


def record() -> dict:
    """Every suite against its reference answer, at the practice seed; all must pass."""
    torch.set_num_threads(1)
    with oracle.recording() as recorded:
        for chapter in CHAPTERS:
            reference = importlib.import_module(f"solutions.{chapter.topic}")
            for name, suite in suites(chapter.topic).items():
                answer = getattr(reference, name)
                failed = [
                    r
                    for r in suite.run(Student(KernelBackend({name: answer}), name), oracle.PRACTICE_SEED)
                    if not r.passed
                ]
                if failed:
                    raise SystemExit(f"the reference fails its own checks: {failed}")
    return recorded


def timings() -> dict[str, float]:
    """What the reference takes to pass each suite here: the kit's time budgets."""
    return {f"{c.topic}.{name}": reference_seconds(c.topic, name) for c in CHAPTERS for name in c.graded_names}


def stage(recorded: dict, seconds: dict[str, float], folder: Path) -> None:
    (folder / "autograder").mkdir(parents=True)
    for name in KIT_MODULES:
        source, target = ROOT / "autograder" / name, folder / "autograder" / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, target)
    oracle.save(recorded, seconds, folder / "autograder" / oracle.RECORDING.name)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / "kit" / name, folder / name)


def build_wheel(folder: Path, dist: Path) -> Path:
    shutil.rmtree(dist, ignore_errors=True)
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
            str(dist),
            str(folder),
        ],
        check=True,
    )
    (wheel,) = dist.glob("*.whl")
    return wheel


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=DIST, help="the folder the wheel is written to (emptied first)")
    dist = parser.parse_args().dist.resolve()
    recorded = record()
    with tempfile.TemporaryDirectory() as folder:
        stage(recorded, timings(), Path(folder))
        wheel = build_wheel(Path(folder), dist)
    calls = sum(len(c) for c in recorded.values())
    print(
        f"{wheel}: {wheel.stat().st_size / 1024:.0f} KiB, "
        f"{calls} reference calls recorded for {len(recorded)} sub-checks"
    )
