"""The Chinese edition cannot drift from the English one: every prose cell, docstring, quiz and
figure text of each chapter, every message template of the grader and every block of the book's
pages has a translation made from the English as it is now; the Chinese code cells are the English
ones with only those strings replaced; formatted values pass through translated messages intact;
the glossary's terms are the ones the translations use."""

import ast
import copy
import json
import re
from pathlib import Path

import nbformat
import pytest

from autograder import edition, figures, messages, translated_book
from autograder.release import learner_notebook

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_prose_cell_has_a_current_translation(chapter):
    notebook = nbformat.read(chapter, as_version=4)
    assert edition.problems(notebook, edition.load(chapter, "zh")) == []


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chinese_code_cells_are_the_english_ones_with_only_prose_strings_replaced(chapter):
    english = nbformat.read(chapter, as_version=4)
    chinese = edition.translated(english, edition.load(chapter, "zh"), "zh")
    assert [(c.id, c.cell_type) for c in chinese.cells] == [(c.id, c.cell_type) for c in english.cells]
    for mine, theirs in zip(chinese.cells, english.cells):
        if theirs.cell_type != "code":
            continue
        assert edition.same_code(theirs.source, mine.source), theirs.id
        assert mine.outputs == theirs.outputs and mine.metadata.get("nbgrader") == theirs.metadata.get("nbgrader")
        changed = {
            a.value for a, b in zip(_strings(theirs.source), _strings(mine.source), strict=True) if a.value != b.value
        }
        prose = {literal.value for literal in edition.literals(theirs.source, not edition.shown_without_code(theirs))}
        assert changed <= prose, f"cell {theirs.id}: a string that is not prose was translated: {changed - prose}"


def _strings(source: str) -> list[ast.Constant]:
    return [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_an_english_change_without_its_translation_is_found():
    chapter = ROOT / "chapters" / "02_attention.ipynb"
    notebook, catalogue = nbformat.read(chapter, as_version=4), edition.load(chapter, "zh")
    edited = copy.deepcopy(notebook)
    markdown = next(c for c in edited.cells if c.cell_type == "markdown")
    markdown.source += "\n\nA sentence added in English."
    stub = next(c for c in edited.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code")
    stub.source = stub.source.replace('"""', '"""Changed. ', 1)
    edited.cells.append(nbformat.v4.new_markdown_cell("A new cell."))
    found = edition.problems(edited, catalogue)
    assert any(markdown.id in p and "stale" in p for p in found)
    assert any(stub.id in p and "no translation" in p for p in found)
    assert any(edited.cells[-1].id in p for p in found)
    # a stale translation is not applied: the page shows the English it no longer translates
    assert edition.translated(edited, catalogue, "zh").cells[edited.cells.index(markdown)].source == markdown.source


def test_a_translation_cannot_change_code():
    source = 'def f(x):\n    """Twice x."""\n    return x * 2\n'
    assert edition.translate_code(source, {"Twice x.": "x 的两倍。"}, prose_only=True) == (
        'def f(x):\n    """x 的两倍。"""\n    return x * 2\n'
    )
    assert not edition.same_code(source, source.replace("x * 2", "x * 3"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_committed_chinese_learner_notebooks_are_in_sync(chapter):
    committed = ROOT / "notebooks" / "zh" / chapter.name
    assert committed.exists(), "run `make notebooks`"
    expected = nbformat.writes(learner_notebook(chapter, "zh"))
    assert expected == nbformat.writes(nbformat.read(committed, as_version=4)), f"{committed}: run `make notebooks`"


# Modules whose messages were still being translated when this landed: in the Chinese edition their messages stay
# English until they leave this set. Every other module must be complete: a new English message there fails CI.
PENDING = set()


def test_every_message_template_has_a_translation_that_keeps_its_fields():
    problems = messages.problems("zh")
    assert [p for p in problems if p.split(":")[0] not in PENDING] == []
    assert not [m for m in PENDING if not any(p.startswith(m + ":") for p in problems)], "translated: off PENDING"


def test_every_block_of_the_book_pages_has_a_translation():
    assert translated_book.page_problems("zh") == []


def test_formatted_values_come_through_translated_messages_intact():
    """Each template filled with values a check would print (shapes, numbers, names): the Chinese
    message holds each value verbatim."""
    values = ["(2, 4, 8)", "-1.25e-03", "scaled_dot_product_attention", "torch.float32", "[0, 3, 7]"]
    for module in messages.MODULES:
        for template in messages.templates((messages.PACKAGE / module).read_text(encoding="utf-8")):
            fields = sorted(set(messages.PLACEHOLDER.findall(template)), key=int)
            if not fields:
                continue
            filled = messages.PLACEHOLDER.sub(lambda m: values[int(m.group(1)) % len(values)], template)
            filled = filled.replace("{{", "{").replace("}}", "}")
            chinese = messages.translate(filled, "zh").text
            for field in fields:
                assert values[int(field) % len(values)] in chinese, (module, template, chinese)


def glossary() -> list[tuple[str, str, list[str]]]:
    rows = []
    for line in (ROOT / "book" / "glossary.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and cells[0] not in ("English", "---"):
            rows.append((cells[0], cells[1], [v.strip() for v in cells[2].split("、") if v.strip()]))
    return rows


def chinese_texts():
    for chapter in CHAPTERS:
        for cell_id, entry in edition.load(chapter, "zh").items():
            for kind, unit in entry.items():
                for item in unit if kind == "strings" else [unit]:
                    yield f"{chapter.stem} {cell_id}", item["en"], item["zh"]
    for item in json.loads(figures.catalogue_path("zh").read_text(encoding="utf-8")):
        yield "figure labels", item["en"], item["zh"]


def test_the_glossary_terms_are_the_ones_used():
    rows = glossary()
    assert len(rows) >= 50
    avoided = [(variant, term) for _, term, variants in rows for variant in variants]
    for where, _, chinese in chinese_texts():
        for variant, term in avoided:
            assert variant not in chinese, f"{where}: {variant!r} where the glossary says {term!r}"
    # where the English names one of the glossary's multi-word concepts, the Chinese names it the glossary's way
    strict = [(en, zh) for en, zh, _ in rows if " " in en and "(" not in en and en.isascii()]
    misses = []
    for where, english, chinese in chinese_texts():
        prose = re.sub(r"`[^`]*`|\$[^$]*\$", "", english).lower()
        for en, zh in strict:
            if re.search(rf"\b{re.escape(en.lower())}\b", prose) and zh not in chinese:
                misses.append(f"{where}: {en!r} without {zh!r}")
    assert len(misses) <= len(list(chinese_texts())) // 50, "\n".join(misses)


@pytest.mark.parametrize(
    "learner_text",
    [". " * 1990, "x; " * 1300, "the weights are wrong; " * 170, "zzz qqq. " * 440],
    ids=["dots", "semicolons", "known phrases", "unknown words"],
)
def test_a_learners_long_text_cannot_hold_the_translation(learner_text, monkeypatch):
    """An exception's message is the learner's to write (up to protocol.MAX_ERROR_CHARS): quoted as it is,
    and read completely within messages.SECONDS (past it, the reading gives up and leaves English). Any
    other message is read within messages.SECONDS or left English: given no time, it stays English.
    How long each takes: benchmarks/translation_costs.py."""
    from autograder.protocol import describe_exception

    try:
        exec(compile("raise ValueError(text)", "<cell 3>", "exec"), {"text": learner_text[:3900]})
    except ValueError as error:
        raised = describe_exception("scaled_dot_product_attention", error)
    chinese = messages.translate(raised, "zh")
    assert chinese.complete and learner_text[:3900] in chinese.text and "抛出了 ValueError" in chinese.text
    monkeypatch.setattr(messages, "SECONDS", 0.0)
    assert messages.translate(learner_text[:3900], "zh").text == learner_text[:3900]
