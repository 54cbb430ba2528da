"""The public edition: what a course can publish, without the answer key (``make public``).

The teaching repository holds the answer key: ``solutions/`` (the reference of every exercise), the
chapters' nbgrader sources in ``chapters/`` (solutions inside), the corpus of correct alternatives and
bugs in ``tests/``, and the grader that calls the reference. It must stay private. The public edition
is a separate tree, built from an allowlist, for the public repository that ``_config.yml`` names
(``repository.url``): the launch links (:mod:`autograder.launch`) open its ``notebooks/`` and the
notebooks' setup cell (:mod:`autograder.release`) installs the kit from its latest release::

    README.md                 what this is, and how to publish it
    _config.yml, _toc.yml     the book's settings and table of contents (as in the teaching repository)
    requirements.txt          the pinned environment (Binder builds it)
    book/                     the book's pages: the prose, and each chapter as ``make book`` renders it
                              (the student view with the outputs of the reference run; no solution)
    zh/                       the Chinese edition's book source (:mod:`autograder.translated_book`)
    notebooks/                the learner notebooks (stubs, no outputs, the setup cell)
    kit/<wheel>               the learner's kit (``make kit``): the checks and the values recorded from
                              the reference at the practice seed, no reference; attach it to a release

Before anything is written, :func:`answer_key_in` scans the tree (the wheel's files included) and the
build fails if it finds a ``solutions`` folder, a course config or private folder, a seed line, or the
body of any function of ``solutions/`` or of the test corpus. The one exception is *given* code: a
chapter's notebook gives learners the references of what it builds on from earlier chapters
(:mod:`autograder.given`), so publishing every chapter at once publishes those; the instructor guide
lists them.

    python -m autograder.public TARGET [--kit WHEEL] [--rendered book/chapters]
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import nbformat
import yaml

from autograder.chapters import CHAPTERS
from autograder.edition import TRANSLATED
from autograder.launch import NOTEBOOKS, launch_links
from autograder.release import KIT_WHEEL
from autograder.translated_book import write_source_tree

ROOT = Path(__file__).resolve().parent.parent
MARKER = ".public-edition"  # a folder holding it is a previous edition, which a new build replaces
ANSWER_SOURCES = ("solutions/*.py", "tests/alternatives/*.py", "tests/corpus/*.py")  # bodies never published
COPIED = ("_config.yml", "_toc.yml", "requirements.txt")
BOOK_FILES = ("*.md", "*.bib")
PRIVATE_NAMES = re.compile(r"^(tests|chapters)/|(^|/)(solutions|private)/|(^|/)nbgrader_config\.py$|gradebook\.db$")
SEED_VALUE = re.compile(r"""AUTOGRADER_SEED["']?\s*[,=:]\s*["']?\d""")  # a seed set, not one read

README = """\
# {title}: the public edition

The book, the learner notebooks and the learner's kit of *{title}*, without the answer key.
Written by `make public` in the course's teaching repository (which stays private: it holds the
reference solutions).

- `book/`: the book's pages (`jupyter-book build .` builds them; the chapters are already executed).
- `zh/`: the Chinese edition of the book, a source tree of its own; every page's language switch
  finds it at `zh/` beside the English book:
  `jupyter-book build zh --path-output _build/zh && cp -r _build/zh/_build/html _build/html/zh`.
- `notebooks/`: the exercises (`notebooks/zh/`: in Chinese). Open one in Colab or Binder from the book's
  chapter pages, or locally.
  Its first cell installs the kit from this repository's latest release
  (`{kit_url}`).
- `kit/{wheel}`: the learner's kit: the checks and `python -m autograder grade NOTEBOOK`, with the
  expected values recorded at the practice seed and no reference solution. Attach it to a release of
  this repository ({repository}) so that the notebooks' setup cell finds it.
"""


class AnswerKeyFound(Exception):
    """The tree holds something of the answer key; the message lists what and where."""


def write_public(target: Path, wheel: Path, rendered: Path = ROOT / "book" / "chapters") -> Path:
    """Write the public edition into ``target`` (a new or empty folder, or a previous edition, which is
    replaced). ``wheel`` is the kit (``make kit``), ``rendered`` the chapters as ``make book`` renders them.
    Raises AnswerKeyFound, writing nothing, when the edition would hold any of the answer key."""
    target, wheel, rendered = Path(target).resolve(), Path(wheel), Path(rendered)
    if target.exists() and any(target.iterdir()) and not (target / MARKER).exists():
        raise FileExistsError(f"{target} is not empty and not a previous public edition: choose another folder")
    missing = [c.name for c in CHAPTERS if not (rendered / f"{c.name}.ipynb").exists()]
    if missing:
        raise FileNotFoundError(f"no rendered chapter {', '.join(missing)} in {rendered}: run `make book` first")
    with tempfile.TemporaryDirectory(dir=target.parent if target.parent.exists() else None) as staging:
        tree = Path(staging) / "public"
        _stage(tree, wheel, rendered)
        found = answer_key_in(tree)
        if found:
            raise AnswerKeyFound("the public edition would hold the answer key:\n  " + "\n  ".join(found))
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tree, target)
    return target


def _stage(tree: Path, wheel: Path, rendered: Path) -> None:
    (tree / "book" / "chapters").mkdir(parents=True)
    for name in COPIED:
        shutil.copy(ROOT / name, tree / name)
    for pattern in BOOK_FILES:
        for path in (ROOT / "book").glob(pattern):
            shutil.copy(path, tree / "book" / path.name)
    for chapter in CHAPTERS:
        shutil.copy(rendered / f"{chapter.name}.ipynb", tree / "book" / "chapters" / f"{chapter.name}.ipynb")
    for folder in ("figures",):  # figures chapters show from files
        if (rendered / folder).is_dir():
            shutil.copytree(rendered / folder, tree / "book" / "chapters" / folder)
    if (ROOT / "book" / "_static").is_dir():  # MathJax, once `make book` has unpacked it
        shutil.copytree(ROOT / "book" / "_static", tree / "book" / "_static")
    shutil.copytree(ROOT / NOTEBOOKS, tree / NOTEBOOKS, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for lang in TRANSLATED:  # each edition's book source, translated and its figures drawn again
        write_source_tree(lang, tree / lang, rendered)
    (tree / "kit").mkdir()
    shutil.copy(wheel, tree / "kit" / KIT_WHEEL)
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    title = yaml.safe_load((ROOT / "_config.yml").read_text())["title"]
    kit_url = f"{repository.rstrip('/')}/releases/latest/download/{KIT_WHEEL}"
    (tree / "README.md").write_text(README.format(title=title, kit_url=kit_url, wheel=KIT_WHEEL, repository=repository))
    (tree / MARKER).write_text("Written by `make public` (autograder/public.py); replaced by the next build.\n")
    for chapter in CHAPTERS:  # the launch links of every page open a notebook of this tree
        assert (tree / launch_links(chapter.name).notebook).exists(), chapter.name


# ---------------------------------------------------------------------------------------
# Finding the answer key


def answer_key_in(tree: Path) -> list[str]:
    """What of the answer key ``tree`` holds: ``"path: why"`` for each finding (empty: none)."""
    files = _texts(tree)
    found = [f"{name}: a private path" for name in files if PRIVATE_NAMES.search(name)]
    found += [f"{name}: sets a grading seed" for name, text in files.items() if SEED_VALUE.search(text)]
    given, normalized = _given_names(tree), {name: "\n".join(_normalized(text)) for name, text in files.items()}
    for key, body in reference_bodies().items():
        if key.split(".")[1] not in given:
            found += [f"{name}: the body of {key}" for name, text in normalized.items() if body in text]
    return found


def reference_bodies() -> dict[str, str]:
    """``{"module.function": body}`` (``"module.Class.method"`` for methods) of every function of the
    answer sources (``ANSWER_SOURCES``): its lines without docstring, comments and indentation, for
    bodies of two lines or more (a one-line body such as ``return x.tril()`` is too common to mean a leak)."""
    bodies = {}
    for pattern in ANSWER_SOURCES:
        for path in sorted(ROOT.glob(pattern)):
            source = path.read_text()
            for node in ast.parse(source).body:
                if isinstance(node, ast.ClassDef):
                    functions = [(m, f"{node.name}.{m.name}") for m in node.body if isinstance(m, ast.FunctionDef)]
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    functions = [(node, node.name)]
                else:
                    continue
                for function, key in functions:
                    body = function.body[1:] if ast.get_docstring(function) is not None else function.body
                    lines = _normalized(_lines(source, body[0].lineno, body[-1].end_lineno)) if body else []
                    if len(lines) >= 2:
                        bodies[f"{path.parent.name}/{path.stem}.{key}"] = "\n".join(lines)
    return bodies


def _given_names(tree: Path) -> set[str]:
    """The names defined by the given cells of the tree's learner notebooks (earlier chapters' references)."""
    names = set()
    for path in sorted((tree / NOTEBOOKS).glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if "given" in cell.metadata.get("tags", []):
                names |= {n.name for n in ast.parse(cell.source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    return names


def _texts(tree: Path) -> dict[str, str]:
    """Every file of ``tree`` (and of each wheel in it) as text, by relative path: notebooks by their cells'
    sources and outputs, decoded from JSON, so a body matches line for line."""
    files = {}
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        name = str(path.relative_to(tree))
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    files[f"{name}!{member}"] = archive.read(member).decode("latin-1")
        elif path.suffix == ".ipynb":
            notebook = nbformat.read(path, as_version=4)
            outputs = [
                o.get("text", "") or str(o.get("data", "")) for c in notebook.cells for o in c.get("outputs", [])
            ]
            files[name] = "\n".join([c.source for c in notebook.cells] + outputs)
        else:
            files[name] = path.read_bytes().decode("latin-1")
    return files


def _lines(source: str, first: int, last: int) -> str:
    return "\n".join(source.splitlines()[first - 1 : last])


def _normalized(text: str) -> list[str]:
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.public", description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="the folder to write (new, empty, or a previous edition)")
    parser.add_argument("--kit", type=Path, default=ROOT / "dist" / KIT_WHEEL, help="the kit's wheel (make kit)")
    parser.add_argument("--rendered", type=Path, default=ROOT / "book" / "chapters", help="rendered chapters")
    args = parser.parse_args(argv)
    try:
        target = write_public(args.target, args.kit, args.rendered)
    except (AnswerKeyFound, FileExistsError, FileNotFoundError) as error:
        print(f"make public: {error}", file=sys.stderr)
        return 2
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    print(f"The public edition is in {target}: push it to {repository} and attach kit/{KIT_WHEEL} to a release")
    return 0


if __name__ == "__main__":
    sys.exit(main())
