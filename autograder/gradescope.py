"""A Gradescope autograder for one chapter: the package an instructor uploads, and the
grading that runs inside it.

``python -m autograder gradescope 02_attention -o attention.zip`` writes a zip holding::

    setup.sh          installs the pinned CPU environment (Gradescope runs it once, as root)
    run_autograder    grades one submission (Gradescope runs it per submission)
    requirements.txt, pyproject.toml, autograder/, solutions/
                      the grader, its checks and its reference (the oracle)
    gradescope.json   which chapter the package grades
    private/seed      the private grading seed, drawn when the package is built
    private/public_seed  the seed of the half whose results the learner sees at once, drawn likewise

Gradescope unpacks it into ``/autograder/source`` and puts a learner's files in
``/autograder/submission``; ``run_autograder`` runs ``python -m autograder.gradescope ROOT``,
which grades the one notebook there in the sandbox that ``python -m autograder autograde``
uses, twice: on public inputs (the package's public seed, results visible at once) and on
private inputs (its private seed, results shown once the instructor publishes grades). Neither
is the practice seed of the notebook's own grade cells and the learner's kit
(:mod:`autograder.seeds`), so replaying what the kit recorded earns nothing here. Each
sub-check's points are split evenly between the two, so an answer tuned to the public inputs
earns half. The results go to
``ROOT/results/results.json`` in Gradescope's format (its "Autograder Specifications"
page); whatever happens, that file is written.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time
import traceback
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autograder.chapters import BY_NAME, Chapter
from autograder.checks import suites
from autograder.grading import GradingError, grade_cells, load_notebook, submission_cells
from autograder.leaderboard import Leaderboard, LeaderboardEntry, leaderboard
from autograder.messages import ENGLISH, language, term, translate
from autograder.sandbox import Limits, SandboxError
from autograder.seeds import draw_official_seed
from autograder.suite import Result

REPOSITORY = Path(__file__).resolve().parent.parent
LIMITS = Limits(notebook_seconds=240)  # per seed; Gradescope stops a run after 10 minutes by default

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (Ubuntu): Python 3.11,
# bubblewrap for the sandbox, and the course's pinned requirements with torch's CPU build.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends bubblewrap ca-certificates
if ! apt-cache show python3.11-venv >/dev/null 2>&1; then  # Ubuntu releases without 3.11: deadsnakes
    apt-get install -y --no-install-recommends software-properties-common gpg-agent
    add-apt-repository -y ppa:deadsnakes/ppa
    apt-get update
fi
apt-get install -y --no-install-recommends python3.11 python3.11-venv
python3.11 -m venv "$HERE/.venv"
"$HERE/.venv/bin/python" -m pip install --quiet --upgrade pip
# The public index's Linux torch wheel is the CUDA build (GBs); the same version from PyTorch's CPU index
# (TORCH_INDEX_URL: a mirror of it).
"$HERE/.venv/bin/python" -m pip install --quiet --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" \
    "$(grep -E '^torch==' "$HERE/requirements.txt")"
"$HERE/.venv/bin/python" -m pip install --quiet -r "$HERE/requirements.txt"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this per submission: grade the notebook in $ROOT/submission, write
# $ROOT/results/results.json. AUTOGRADER_ROOT replaces /autograder (to try the package
# without a container); AUTOGRADER_PYTHON replaces the interpreter setup.sh installed.
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${AUTOGRADER_PYTHON:-$ROOT/source/.venv/bin/python}"
case "$PYTHON" in */*) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;; esac
mkdir -p "$ROOT/results"
cd "$ROOT/source" && PYTHONPATH="$ROOT/source" "$PYTHON" -m autograder.gradescope "$ROOT"
if [ ! -s "$ROOT/results/results.json" ]; then  # the grader could not even start: say so, score 0
    printf '%s\n' '{"score": 0, "output": "The autograder failed to start; your instructor has been told.",' \
        '"output_format": "md", "stdout_visibility": "hidden", "tests": []}' > "$ROOT/results/results.json"
fi
"""


@dataclass
class GradescopeTest:
    """One entry of ``tests``: one sub-check on public or on private inputs."""

    name: str
    number: str
    score: float
    max_score: float
    status: str  # "passed" or "failed"
    output: str
    visibility: str  # "visible" (public inputs) or "after_published" (private inputs)
    output_format: str = "text"  # the checks' messages are plain text (they quote learners' exceptions)


@dataclass
class GradescopeResults:
    """``results.json``: the fields of Gradescope's specification this grader fills in."""

    score: float
    execution_time: int  # seconds
    output: str
    tests: list[GradescopeTest]
    leaderboard: list[LeaderboardEntry] = field(default_factory=list)
    output_format: str = "md"
    stdout_visibility: str = "hidden"  # the grader's log is for the instructor

    def write(self, path: Path):
        report = asdict(self)
        if not self.leaderboard:
            del report["leaderboard"]
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(report, indent=1))
        os.replace(partial, path)


_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def markdown_text(text: str) -> str:
    """``text`` (a file name, an exception's message) as literal Markdown for the summary: each ASCII
    punctuation character backslash-escaped (CommonMark lets any be), line breaks as spaces, so it can
    make no link, image, HTML, autolink or heading."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))


class SubmissionError(Exception):
    """The submission holds no single gradable notebook; the message tells the learner why."""


# ---------------------------------------------------------------------------------------
# Building the package


def build_package(chapter: str, target: Path, seed: int | None = None, public_seed: int | None = None) -> Path:
    """Write the Gradescope package of ``chapter`` (e.g. ``"02_attention"``) to ``target``, with
    its private and public seeds (default: drawn, never the practice seed)."""
    if chapter not in BY_NAME:
        raise ValueError(f"unknown chapter {chapter!r}; one of {', '.join(BY_NAME)}")
    seed = draw_official_seed() if seed is None else seed
    public_seed = draw_official_seed() if public_seed is None else public_seed
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as package:
        _add(package, "setup.sh", SETUP_SH, 0o755)
        _add(package, "run_autograder", RUN_AUTOGRADER, 0o755)
        _add(package, "gradescope.json", json.dumps({"chapter": chapter}) + "\n", 0o644)
        _add(package, "private/seed", f"{seed}\n", 0o600)
        _add(package, "private/public_seed", f"{public_seed}\n", 0o600)
        for name in ("requirements.txt", "pyproject.toml"):
            _add(package, name, (REPOSITORY / name).read_text(), 0o644)
        for folder in ("autograder", "solutions"):
            for path in sorted((REPOSITORY / folder).rglob("*.py")):
                _add(package, str(path.relative_to(REPOSITORY)), path.read_text(), 0o644)
        for path in sorted((REPOSITORY / "autograder" / "locale").rglob("*.json")):  # messages in other languages
            _add(package, str(path.relative_to(REPOSITORY)), path.read_text(encoding="utf-8"), 0o644)
    return target


def _add(package: zipfile.ZipFile, name: str, text: str, mode: int):
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    package.writestr(info, text)


# ---------------------------------------------------------------------------------------
# Grading one submission (inside the package)


def find_notebook(folder: Path) -> Path:
    """The one notebook in ``folder`` (searched recursively, checkpoints ignored); raises
    SubmissionError when there is none, more than one, or it is not a regular file."""
    found = []
    for parent, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if f != ".ipynb_checkpoints")
        found += [Path(parent) / name for name in sorted(files + folders) if name.endswith(".ipynb")]
    names = [str(path.relative_to(folder)) for path in found]
    if not found:
        raise SubmissionError("No notebook (`.ipynb` file) was submitted. Upload your filled-in chapter notebook.")
    if len(found) > 1:
        raise SubmissionError(
            f"{len(found)} notebooks were submitted ({', '.join(names)}); upload only your filled-in chapter notebook."
        )
    kind = os.lstat(found[0]).st_mode
    if not stat.S_ISREG(kind):
        what = "a symbolic link" if stat.S_ISLNK(kind) else "a folder" if stat.S_ISDIR(kind) else "not a regular file"
        raise SubmissionError(f"`{names[0]}` is {what}, not a notebook file; upload the notebook itself.")
    return found[0]


def grade_submission(root: Path) -> GradescopeResults:
    """Grade ``root/submission`` with the package in ``root/source``."""
    start = time.monotonic()
    source = root / "source"
    chapter = BY_NAME[json.loads((source / "gradescope.json").read_text())["chapter"]]
    private = source / "private"
    private.chmod(0o700)  # learner code runs as another user: it cannot read the seed
    private_seed, public_seed = (int((private / name).read_text()) for name in ("seed", "public_seed"))
    hidden = [str(private), str(root / "results")]
    lang = language()  # the notebook's, once it is read
    try:
        path = find_notebook(root / "submission")
        notebook = load_notebook(path)
        lang = language(notebook=notebook)
        cells = submission_cells(notebook)
        public = grade_cells(cells, chapter.name, seed=public_seed, limits=LIMITS, hidden=hidden)
        secret = grade_cells(cells, chapter.name, seed=private_seed, limits=LIMITS, hidden=hidden)
    except (SubmissionError, GradingError, SandboxError) as error:
        message = str(error).replace(str(root / "submission") + "/", "")
        if isinstance(error, SandboxError):
            message = f"The grader could not start its sandbox ({message}); this is not your fault."
        failed = _all_failed(chapter, message)
        note = "**" + translate(f"Not graded: {markdown_text(message)}", lang).text + "**"
        return _results(chapter, failed, failed, [], note, start, lang=lang)
    try:
        board = leaderboard(chapter.name, cells, seed=private_seed, hidden=hidden)  # private inputs
    except SandboxError as error:
        board = Leaderboard([], f"No leaderboard entry: {error}")
    note = translate(board.note, lang).text
    return _results(chapter, public, secret, board.entries, note, start, notebook=path.name, lang=lang)


def _all_failed(chapter: Chapter, message: str) -> list[Result]:
    return [result for name in chapter.graded_names for result in suites(chapter.topic)[name].failed(message)]


def _results(chapter, public, secret, board, note, start, notebook=None, lang=ENGLISH) -> GradescopeResults:
    tests = _tests(chapter, public, "public inputs", "visible", 0, lang) + _tests(
        chapter, secret, "private inputs", "after_published", 1, lang
    )
    title = f"**Chapter {chapter.number}: {chapter.title}**" + (f" ({markdown_text(notebook)})" if notebook else "")
    lines = [
        title,
        "",
        "Each check runs twice: on public inputs (shown now) and on private inputs (shown when grades are "
        "published), both drawn for this course, not the practice inputs of your notebook's own grade cells; "
        "each run is worth half of the check's points. "
        "Written answers are graded by your instructor, not here.",
    ]
    lines = [translate(line, lang).text for line in lines]
    if note:  # in the learner's language already
        lines += ["", markdown_text(note)]
    if board:
        entries = markdown_text(", ".join(f"{e.name} {e.value:g}" for e in board))
        lines += ["", term("Leaderboard:", lang) + " " + entries]
    return GradescopeResults(
        score=round(sum(t.score for t in tests), 6),
        output="\n".join(lines),
        tests=tests,
        execution_time=round(time.monotonic() - start),
        leaderboard=board,
    )


def _tests(
    chapter: Chapter, results: list[Result], inputs: str, visibility: str, half: int, lang: str
) -> list[GradescopeTest]:
    """One test per sub-check, worth half its points; numbered ``function.check``, the
    private run after the public one (``1.1``..``1.3`` public, ``1.4``..``1.6`` private)."""
    tests = []
    for number, name in enumerate(chapter.graded_names, start=1):
        mine = [r for r in results if r.function == name]
        for index, r in enumerate(mine, start=1):
            tests.append(
                GradescopeTest(
                    name=f"{name}: {r.check.replace('_', ' ')} ({inputs}{', advice, 0 points' if r.advice else ''})",
                    number=f"{number}.{index + half * len(mine)}",
                    score=round(r.score / 2, 6),
                    max_score=round(r.max_score / 2, 6),
                    status="passed" if r.passed else "failed",
                    output=translate(r.message, lang).text,
                    visibility=visibility,
                )
            )
    return tests


def main(argv=None) -> int:
    """``python -m autograder.gradescope ROOT``: what ``run_autograder`` runs."""
    root = Path((argv or sys.argv[1:] or [os.environ.get("AUTOGRADER_ROOT", "/autograder")])[0]).resolve()
    (root / "results").mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        results = grade_submission(root)
    except Exception:  # a fault of the grader, not the learner: score 0, and the log says what happened
        traceback.print_exc()
        results = GradescopeResults(
            0.0,
            round(time.monotonic() - start),
            "**The autograder failed on this submission; your instructor can see why in its log.**",
            [],
        )
    results.write(root / "results" / "results.json")
    passed = sum(t.status == "passed" for t in results.tests)
    print(
        f"grader {Path(__file__).parent}: score {results.score:g}; {passed} of {len(results.tests)} tests passed; "
        f"{results.execution_time} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
