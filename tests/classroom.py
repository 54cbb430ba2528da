"""A class of chapter-2 submissions in a real nbgrader course, for the class-scale benchmark
(``benchmarks/class_scale.py``) and its tests: correct answers written two ways, plausible
bugs, unanswered stubs, and a small share of hostile notebooks (infinite loops, memory
bombs, crashes), collected where ``nbgrader collect`` puts them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from autograder.course import create_course
from notebooks import filled_notebook, write

ASSIGNMENT = "02_attention"
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # nbgrader runs `alembic`

ALTERNATIVE = (ROOT / "tests" / "alternatives" / "attention.py").read_text()
CORRECT = {
    "softmax": "import torch\n\ndef softmax(x, dim=-1):\n"
    "    e = (x - x.max(dim=dim, keepdim=True).values).exp()\n    return e / e.sum(dim=dim, keepdim=True)",
    "scaled_dot_product_attention": "import math\n\ndef scaled_dot_product_attention(q, k, v, mask=None):\n"
    "    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
    "    if mask is not None:\n        scores = scores.masked_fill(~mask, -math.inf)\n"
    "    weights = softmax(scores)\n    return weights @ v, weights",
    "causal_mask": "def causal_mask(n):\n    return torch.ones(n, n, dtype=torch.bool).tril()",
}
BUGS = {  # one plausible bug per graded function
    "softmax": "import torch\n\ndef softmax(x, dim=-1):\n    return x.exp() / x.exp().sum(dim=dim, keepdim=True)",
    "scaled_dot_product_attention": CORRECT["scaled_dot_product_attention"].replace(" / math.sqrt(q.shape[-1])", ""),
    "causal_mask": "def causal_mask(n):\n    return torch.ones(n, n, dtype=torch.bool).triu()",
}
HOSTILE = {  # answer cells that attack the grader's time, memory or process
    "loop_at_top": {"softmax": "while True:\n    pass"},
    "loop_in_function": {"softmax": "def softmax(x, dim=-1):\n    while True:\n        pass"},
    "memory_bomb": {"softmax": "hoard = []\nwhile True:\n    hoard.append(b'x' * (64 << 20))"},
    "memory_bomb_in_function": {
        "scaled_dot_product_attention": "def scaled_dot_product_attention(q, k, v, mask=None):\n"
        "    hoard = []\n    while True:\n        hoard.append(b'x' * (64 << 20))"
    },
    "segfault": {"causal_mask": "import ctypes\nctypes.string_at(0)"},
    "exit_in_function": {"causal_mask": "import os\n\ndef causal_mask(n):\n    os._exit(3)"},
}


def kinds() -> dict[str, dict]:
    """kind -> answers (grade_id -> answer cell source) of the ordinary submissions."""
    ordinary = {"correct": CORRECT, "alternative": {"*": ALTERNATIVE}, "stub": {}}
    for name, source in BUGS.items():
        ordinary[f"bug_{name}"] = {**CORRECT, name: source}
    ordinary["all_bugs"] = BUGS
    return ordinary


def kind_of(index: int, size: int, hostile_share: float) -> str:
    """The kind of student ``index``'s submission: hostile ones spread evenly through the class."""
    hostile = max(1, round(size * hostile_share)) if hostile_share else 0
    stride = size // hostile if hostile else 0
    if hostile and index % stride == stride // 2 and index // stride < hostile:
        names = sorted(HOSTILE)
        return names[(index // stride) % len(names)]
    names = sorted(kinds())
    return names[index % len(names)]


def answers_of(kind: str) -> dict:
    return {**CORRECT, **HOSTILE[kind]} if kind in HOSTILE else kinds()[kind]


def nbgrader(course: Path, *args) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [str(BIN / "nbgrader"), *args], cwd=course, env=ENV, capture_output=True, text=True, timeout=600
    )
    if run.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return run


def make_course(course: Path) -> Path:
    """An nbgrader course with chapter 2 released; returns the released notebook."""
    create_course(course, chapters=[ASSIGNMENT])
    nbgrader(course, "generate_assignment", ASSIGNMENT)
    return course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"


def submit(course: Path, release: Path, student: str, kind: str, when="2026-01-15 12:00:00.000000 UTC") -> Path:
    """Put ``student``'s notebook of ``kind`` where ``nbgrader collect`` would."""
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "timestamp.txt").write_text(when)
    return write(filled_notebook(release, answers_of(kind)), folder / f"{ASSIGNMENT}.ipynb")


def make_class(course: Path, size: int, hostile_share: float = 0.02) -> dict[str, str]:
    """A released course with ``size`` submissions; returns student -> kind."""
    release = make_course(course)
    roster = {f"student{i:03d}": kind_of(i, size, hostile_share) for i in range(size)}
    for student, kind in roster.items():
        submit(course, release, student, kind)
    return roster
