"""Given code: what a chapter builds on from earlier chapters, written into its released notebook.

A chapter's source notebook imports what it builds on from the references of earlier chapters,
one line per module::

    from solutions.multi_head_attention import MultiHeadAttention  # chapter 3, given

Learners have no ``solutions`` (the learner's kit holds no answer key). When a notebook is
released (:func:`autograder.release.student_view`, the nbgrader course's source notebooks), each
such line is replaced by a read-only *given* cell with the source of the imported definitions
and of everything they use from ``solutions/``, dependencies first. Maintainers change the code
in one place, and an instructor who releases chapters one at a time hands out only the answers
of chapters that came before.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from autograder.chapters import BY_NAME, BY_TOPIC, earlier_topics

SOLUTIONS = Path(__file__).resolve().parent.parent / "solutions"
IMPORT = re.compile(r"^from solutions\.(\w+) import ([^#\n]+?)\s*(#.*)?$", re.M)
GIVEN_TAGS = ["given", "hide-input"]  # hide-input: the book shows the cell folded


class Module:
    """The top-level definitions of one ``solutions`` module and what each uses."""

    def __init__(self, topic: str):
        self.topic = topic
        source = (SOLUTIONS / f"{topic}.py").read_text()
        tree = ast.parse(source)
        self.imports, self.definitions, self.uses, self.from_solutions = [], {}, {}, {}
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("solutions."):
                    for alias in node.names:
                        self.from_solutions[alias.asname or alias.name] = (node.module.split(".")[1], alias.name)
                else:
                    self.imports.append(ast.get_source_segment(source, node))
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Assign)):
                first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
                code = "\n".join(source.splitlines()[first - 1 : node.end_lineno])
                for name in _defined(node):
                    self.definitions[name] = code
                    self.uses[name] = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - {name}


def _defined(node) -> list[str]:
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    return [node.name]


def given_source(imports: list[tuple[str, str, str]]) -> str:
    """The code that defines ``imports`` = [(topic, name, alias)], and all they use."""
    modules: dict[str, Module] = {}
    order: list[tuple[str, str]] = []

    def visit(topic, name):
        module = modules.setdefault(topic, Module(topic))
        if (topic, name) in order:
            return
        if name in module.from_solutions:
            visit(*module.from_solutions[name])
            return
        for used in sorted(module.uses[name]):
            if used in module.definitions or used in module.from_solutions:
                visit(topic, used)
        if (topic, name) not in order:
            order.append((topic, name))

    for topic, name, _ in imports:
        visit(topic, name)
    lines = []
    for topic in dict.fromkeys(t for t, _ in order):
        lines += [i for i in modules[topic].imports if i not in lines]
    blocks = list(dict.fromkeys(modules[t].definitions[n] for t, n in order))
    aliases = [f"{alias} = {name}" for _, name, alias in imports if alias != name]
    chapters = ", ".join(str(n) for n in sorted({BY_TOPIC[t].number for t, _ in order}))
    header = (
        f"# Given: code from chapter{'s' if ',' in chapters else ''} {chapters}, which this chapter "
        "builds on. Run this cell; there is nothing to change in it."
    )
    return "\n\n\n".join(["\n".join([header, *lines]), *blocks, *(["\n".join(aliases)] if aliases else [])]) + "\n"


def parse_imports(source: str) -> list[tuple[str, str, str]]:
    """[(topic, name, alias)] of the ``from solutions.<topic> import ...`` lines of a cell."""
    found = []
    for match in IMPORT.finditer(source):
        for item in match.group(2).strip("() ").split(","):
            name, _, alias = item.strip().partition(" as ")
            found.append((match.group(1), name.strip(), (alias or name).strip()))
    return found


def with_given_code(notebook):
    """``notebook`` (an nbformat notebook, changed in place and returned) with every import from
    ``solutions`` outside its solution regions replaced by a given cell after the importing cell.
    Raises ValueError when a chapter imports its own or a later chapter's reference."""
    chapter = BY_NAME.get(notebook.metadata.get("transformers_graded", {}).get("chapter"))
    allowed = earlier_topics(chapter) if chapter else []
    cells = []
    for cell in notebook.cells:
        cells.append(cell)
        if cell.cell_type != "code" or "BEGIN SOLUTION" in cell.source or not IMPORT.search(cell.source):
            continue
        imports = parse_imports(cell.source)
        wrong = sorted({t for t, _, _ in imports if t not in allowed})
        if wrong:
            raise ValueError(
                f"{chapter.name if chapter else 'a notebook'} imports solutions.{wrong[0]}: only earlier "
                "chapters' code can be given"
            )
        cell.source = re.sub(r"\n{3,}", "\n\n", IMPORT.sub("", cell.source)).strip("\n")
        given = type(cell)(
            cell_type="code",
            id=f"{cell.get('id', 'cell')}-given",
            source=given_source(imports),
            outputs=[],
            execution_count=None,
            metadata={"tags": list(GIVEN_TAGS), "editable": False, "deletable": False},
        )
        cells.append(given)
    notebook.cells = cells
    return notebook
