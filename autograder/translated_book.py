"""The book's Chinese edition: a Jupyter Book source tree written from the English one.

``make book`` builds the English book at ``_build/html``, then runs this module, which writes
``_build/zh/source`` (config, table of contents, pages and chapter notebooks in Chinese) for
Jupyter Book to build into ``_build/html/zh``. Nothing is executed twice: a chapter page is the
English rendered page (``book/chapters/*.ipynb``, with the reference run's outputs) translated by
its catalogue (:mod:`autograder.edition`); only the cells the book shows by their output alone and
whose text was translated (quizzes, concept figures: no chapter state, milliseconds each) are run
again, in one kernel per chapter, so that their output speaks Chinese. The figures of every cell
are drawn again from the reference run's pickles with their labels translated
(:mod:`autograder.figures`, catalogue ``autograder/locale/zh/figure_labels.json``).

The book's own pages (``book/*.md``) are translated block by block (paragraphs, lists, tables,
directives: text between blank lines, a fenced block whole) by ``book/<lang>/<page>.json``, a list
of ``{"en": block, "zh": translation}``; a block whose English changed has no translation, which
:func:`page_problems` reports, as :func:`autograder.edition.problems` does for chapters.
``python -m autograder.translated_book --write`` writes the skeletons of the pages' catalogues and
of the figure labels' (which needs the rendered pages: ``make book``).
"""

from __future__ import annotations

import ast
import builtins
import copy
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient

from autograder import catalogue as catalogues
from autograder import figures
from autograder.edition import load, shown_without_code, translated
from autograder.launch import launch_links

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("intro", "setup", "learner_guide", "instructor_guide", "references", "glossary")
TITLE = {"zh": "Transformers, Graded：动手实现并自动评分的 Transformer 课程"}
CAPTIONS = {"zh": {"Getting started": "入门", "Chapters": "章节", "Further reading": "延伸阅读"}}
SPHINX_LANGUAGE = {"zh": "zh_CN"}
FENCE = re.compile(r"^(`{3,}|~{3,})")
# What the re-run cells may read besides the earlier cells they name: the chapters' usual imports.
PRELUDE = "import math\n\nimport matplotlib.pyplot as plt\nimport torch\n"


def blocks(text: str) -> list[str]:
    """A markdown page cut at blank lines; a fenced block (code, a directive) stays whole."""
    found, current, fence = [], [], None
    for line in text.split("\n"):
        opening = FENCE.match(line.strip())
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and line.strip().startswith(fence) and line.strip() == fence:
            fence = None
        if fence is None and not line.strip() and current:
            found.append("\n".join(current))
            current = []
        elif line.strip() or fence is not None:
            current.append(line)
    if current:
        found.append("\n".join(current))
    return found


def page_catalogue_path(page: str, lang: str) -> Path:
    return ROOT / "book" / lang / f"{page}.json"


def _english_blocks(page: str) -> list[str]:
    return blocks((ROOT / "book" / f"{page}.md").read_text(encoding="utf-8"))


def page_problems(lang: str) -> list[str]:
    """Blocks of the book's pages with no translation, and translations of blocks that are gone."""
    found = []
    for page in PAGES:
        english, items = _english_blocks(page), catalogues.read(page_catalogue_path(page, lang), [])
        known = {item["en"]: item.get(lang) for item in items}
        found += [f"book/{page}.md: no translation of {block[:60]!r}" for block in english if not known.get(block)]
        found += [
            f"book/{page}.md: {en[:60]!r} is no longer on the page (stale)" for en in catalogues.stale(english, items)
        ]
    return found


def write_page_skeletons(lang: str) -> None:
    for page in PAGES:
        path = page_catalogue_path(page, lang)
        catalogues.write(path, catalogues.skeleton(_english_blocks(page), path, lang))


def translated_page(page: str, lang: str) -> str:
    items = catalogues.read(page_catalogue_path(page, lang), [])
    translation = {item["en"]: item[lang] for item in items if item.get(lang)}
    return "\n\n".join(translation.get(block, block) for block in _english_blocks(page)) + "\n"


def _defining_cell(cells, name: str):
    """The last code cell of ``cells`` that binds ``name`` at top level."""
    for cell in reversed(cells):
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        targets = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        if name in targets:
            return cell
    return None


def _bound_names(source: str) -> set[str]:
    tree = ast.parse(source)
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    bound |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    bound |= {
        a.asname or a.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }
    return bound | {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}


def _free_names(source: str) -> set[str]:
    """The names ``source`` reads that neither it, Python nor the :data:`PRELUDE` defines."""
    used = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return used - _bound_names(source) - set(dir(builtins)) - _bound_names(PRELUDE)


def rerun_translated_outputs(english, page, folder: Path, kept_in: Path) -> None:
    """Run again, in one kernel, the cells of ``page`` shown by their output whose code the
    translation changed (with the earlier cells that define what they read), and keep their outputs
    (and their figures, in ``kept_in``)."""
    changed = [
        (index, cell)
        for index, (cell, original) in enumerate(zip(page.cells, english.cells))
        if cell.cell_type == "code" and shown_without_code(cell) and cell.source != original.source
    ]
    if not changed:
        return
    keeping = f"from autograder.figures import keep\n\nkeep({str(kept_in)!r})"
    run = [nbformat.v4.new_code_cell(PRELUDE), nbformat.v4.new_code_cell(keeping)]
    for index, cell in changed:
        for name in sorted(_free_names(cell.source)):
            needed = _defining_cell(page.cells[:index], name)
            if needed is not None and all(needed.source != c.source for c in run):
                run.append(nbformat.v4.new_code_cell(needed.source))
        run.append(nbformat.v4.new_code_cell(cell.source, metadata={"index": index}))
    notebook = nbformat.v4.new_notebook(cells=run, metadata=copy.deepcopy(page.metadata))
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    for cell in notebook.cells:
        if "index" in cell.metadata:
            page.cells[cell.metadata["index"]].outputs = cell.outputs


def figure_outputs(page):
    """``(cell, output)`` for every PNG a page's code cells show."""
    return [
        (cell, output)
        for cell in page.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]


def translate_figures(page, folders: list[Path], lang: str) -> None:
    """Draw again, with their labels in ``lang``, the figures ``page`` shows that were kept in
    ``folders`` (:mod:`autograder.figures`); a figure that was not kept stays as it is."""
    import matplotlib.pyplot as plt

    for _, output in figure_outputs(page):
        png = output.data["image/png"]
        figure = next((f for f in (figures.kept(folder, png) for folder in folders) if f is not None), None)
        if figure is not None:
            figures.translate(figure, lang)
            output.data["image/png"] = figures.redrawn(figure)
            plt.close(figure)


def figure_labels(lang: str) -> list[tuple[str, str]]:
    """``(page, label pattern)`` for every label of the book's figures that the figure catalogue must
    translate: labels the chapter's own catalogue does not already translate in the code (the
    strings of a cell shown without its code). Needs the rendered pages (``make book``)."""
    import matplotlib.pyplot as plt

    found = []
    for english_page in sorted((ROOT / "book" / "chapters").glob("*.ipynb")):
        page = nbformat.read(english_page, as_version=4)
        catalogue = load(ROOT / "chapters" / english_page.name, lang)
        for cell, output in figure_outputs(page):
            figure = figures.kept(figures.kept_folder(english_page), output.data["image/png"])
            if figure is None:
                found.append((english_page.stem, None))
                continue
            in_code = {item["en"] for item in catalogue.get(cell.get("id"), {}).get("strings", [])}
            for text in figures.labels(figure):
                if not (shown_without_code(cell) and text.get_text() in in_code):
                    found.append((english_page.stem, figures.pattern(text.get_text())[0]))
            plt.close(figure)
    return found


def figure_problems(lang: str, labels: list[tuple[str, str]] | None = None) -> list[str]:
    """Figures the edition ``lang`` cannot translate: figures that were not kept, labels with no
    translation, translations of labels that are gone (``labels``: :func:`figure_labels`, found again
    when not given)."""
    labels = figure_labels(lang) if labels is None else labels
    found = [f"{page}: a figure was not kept, its labels stay English" for page, key in labels if key is None]
    keys = [key for _, key in labels if key is not None]
    items = catalogues.read(figures.catalogue_path(lang), [])
    known = {item["en"]: item.get(lang) for item in items}
    items = [item for item in items if not item.get("from")]  # a script's figure (its tests check those)
    found += [
        f"{page}: no translation of the figure label {key!r}" for page, key in labels if key and not known.get(key)
    ]
    found += [f"figure label {en!r} is no longer in any figure (stale)" for en in catalogues.stale(keys, items)]
    return list(dict.fromkeys(found))


def chapter_page(english_page: Path, lang: str) -> nbformat.NotebookNode:
    """The rendered English page ``book/chapters/NN.ipynb`` in ``lang``."""
    english = nbformat.read(english_page, as_version=4)
    chapter = ROOT / "chapters" / english_page.name
    page = translated(english, load(chapter, lang), lang)
    for cell in page.cells:
        if cell.get("id") == "launch-links":
            cell.source = launch_links(english_page.stem, ROOT / "_config.yml", lang).markdown(lang)
    with tempfile.TemporaryDirectory() as rerun:  # the figures of the cells run again
        rerun_translated_outputs(english, page, ROOT / "chapters", Path(rerun))
        translate_figures(page, [figures.kept_folder(english_page), Path(rerun)], lang)
    return page


def write_source_tree(lang: str, target: Path, rendered: Path = ROOT / "book" / "chapters") -> None:
    """Everything Jupyter Book needs to build the edition ``lang`` at ``target``, a tree of its own
    (the public edition ships it), from the English pages in ``rendered``."""
    if target.exists():
        shutil.rmtree(target)
    (target / "book" / "chapters").mkdir(parents=True)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["title"] = TITLE[lang]
    sphinx = config["sphinx"]["config"]
    sphinx["language"] = SPHINX_LANGUAGE[lang]
    sphinx["html_css_files"] = [*sphinx.get("html_css_files", []), "chinese.css"]
    for static in sphinx["html_static_path"]:  # MathJax, the language switch, the fonts' CSS
        shutil.copytree(ROOT / static, target / static, dirs_exist_ok=True)
    (target / "_config.yml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    for part in toc["parts"]:
        part["caption"] = CAPTIONS[lang].get(part["caption"], part["caption"])
    (target / "_toc.yml").write_text(yaml.safe_dump(toc, allow_unicode=True, sort_keys=False))
    for page in PAGES:
        (target / "book" / f"{page}.md").write_text(translated_page(page, lang), encoding="utf-8")
    shutil.copy(ROOT / "book" / "references.bib", target / "book" / "references.bib")
    shown_from_files = rendered / "figures"
    if shown_from_files.exists():
        shutil.copytree(shown_from_files, target / "book" / "chapters" / "figures")
    shutil.copytree(ROOT / "notebooks" / lang, target / "notebooks" / lang)  # the pages' downloads
    for english_page in sorted(rendered.glob("*.ipynb")):
        nbformat.write(chapter_page(english_page, lang), target / "book" / "chapters" / english_page.name)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--write"]:
        write_page_skeletons("zh")
        labels = figure_labels("zh")
        keys = [key for _, key in labels if key is not None]
        path = figures.catalogue_path("zh")
        drawn_elsewhere = [item for item in catalogues.read(path, []) if item.get("from")]
        catalogues.write(path, catalogues.skeleton(list(dict.fromkeys(keys)), path, "zh") + drawn_elsewhere)
        print("\n".join(page_problems("zh") + figure_problems("zh", labels)))
        return 0
    lang, target = argv
    write_source_tree(lang, Path(target))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
