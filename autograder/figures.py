"""Figure text in the reader's language: titles, axis labels, legends and annotations.

A chapter's plots are drawn by its code cells, which both editions share, so their labels are
English strings. The Chinese edition translates them where they are drawn, not in the code: the
catalogue ``autograder/locale/<lang>/figure_labels.json`` (a list of ``{"en": text, <lang>: translation}``)
maps each label with words in it to its translation; numbers are fields (``"head {0}"`` translates
``"head 3"``), and ``$...$`` maths is never touched. An entry with ``"from": <script>`` labels a
figure that a script draws into a file the book shows (a benchmark's), not a chapter's cell. Tick labels are left alone: they are data (a
sentence's tokens, a model's sizes).

- In a Chinese learner notebook the setup cell calls :func:`speak`: every figure the kernel draws
  from then on is translated just before it is drawn.
- In the book, the reference run of a chapter (``python -m autograder render``) keeps each figure it
  shows (:func:`keep`, a pickle named by the hash of the PNG it produced), and the Chinese edition
  (:mod:`autograder.translated_book`) draws that figure again, translated, instead of running the
  chapter twice.
"""

from __future__ import annotations

import base64
import hashlib
import pickle
import re
from functools import cache
from pathlib import Path

from autograder import catalogue as catalogues
from autograder.messages import ENGLISH, LOCALE, WORDS

# Fonts with the language's glyphs, in order of preference: Linux (Noto CJK, Debian's fonts-noto-cjk;
# Source Han Sans), macOS, Windows.
FONTS = {
    "zh": ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "SimHei")
}
FONT_FILES = re.compile(r"NotoSansCJK|SourceHanSans|PingFang|msyh|simhei", re.IGNORECASE)
MATHS = re.compile(r"(\$[^$]*\$)")
NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
FIELD = re.compile(r"\{(\d+)\}")
SCRIPT = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uff00-\uffef]")  # CJK: what DejaVu Sans cannot draw


def catalogue_path(lang: str) -> Path:
    return LOCALE / lang / "figure_labels.json"


@cache
def table(lang: str) -> dict[str, str]:
    """English label pattern -> its translation, for the labels translated so far."""
    return {item["en"]: item[lang] for item in catalogues.read(catalogue_path(lang), []) if item.get(lang)}


def pattern(text: str) -> tuple[str, list[str]]:
    """``"head 3 of 4 ($d_k = 16$)"`` -> ``("head {0} of {1} ($d_k = 16$)", ["3", "4"])``: the
    catalogue's key for a label, and the numbers it holds outside its maths."""
    numbers: list[str] = []

    def field(found: re.Match) -> str:
        numbers.append(found.group())
        return f"{{{len(numbers) - 1}}}"

    parts = MATHS.split(text)
    key = "".join(part if part.startswith("$") else NUMBER.sub(field, part) for part in parts)
    return key, numbers


def filled(translation: str, numbers: list[str]) -> str:
    """A pattern's translation with its fields replaced by ``numbers`` (its maths untouched)."""
    parts = MATHS.split(translation)
    return "".join(
        part if part.startswith("$") else FIELD.sub(lambda found: numbers[int(found.group(1))], part) for part in parts
    )


def has_words(text: str) -> bool:
    """True when ``text`` has words outside its maths (a label a reader reads, not a formula)."""
    return any(WORDS.search(part) for part in MATHS.split(text) if not part.startswith("$"))


def _text_artists(figure) -> list:
    """The figure's titles, axis labels, legend entries and annotations (not its tick labels)."""
    found = [figure._suptitle, figure._supxlabel, figure._supylabel, *figure.texts]
    legends = [*figure.legends]
    for axes in figure.axes:
        found += [axes.title, axes._left_title, axes._right_title, axes.xaxis.label, axes.yaxis.label]
        found += axes.texts
        if axes.get_legend() is not None:
            legends.append(axes.get_legend())
    for legend in legends:
        found += [legend.get_title(), *legend.get_texts()]
    return [text for text in found if text is not None]


def labels(figure) -> list:
    """The figure's Text artists that carry English words a reader reads (not its tick labels)."""
    return [text for text in _text_artists(figure) if has_words(text.get_text())]


def translate(figure, lang: str) -> list[str]:
    """Translate ``figure``'s labels in place; returns the label patterns with no translation. Text
    in the language's script is drawn with its font first (:func:`fonts`): its Latin letters are
    fine, and maths takes the font of its text from the first family only."""
    missing = []
    for text in _text_artists(figure):
        if has_words(text.get_text()):
            key, numbers = pattern(text.get_text())
            if key in table(lang):
                text.set_text(filled(table(lang)[key], numbers))
            else:
                missing.append(key)
        if SCRIPT.search(text.get_text()) and fonts(lang) and text.get_fontfamily()[0] != fonts(lang)[0]:
            text.set_fontfamily([*fonts(lang), *text.get_fontfamily()])
    return missing


@cache
def fonts(lang: str) -> tuple[str, ...]:
    """The installed fonts of ``lang``'s :data:`FONTS`, in order. A font installed after matplotlib
    last listed the system's fonts (its cache) is found by its file name."""
    from matplotlib import font_manager

    wanted = FONTS.get(lang, ())

    def installed() -> tuple[str, ...]:
        names = {font.name for font in font_manager.fontManager.ttflist}
        return tuple(name for name in wanted if name in names)

    if wanted and not installed():
        for path in font_manager.findSystemFonts():
            if FONT_FILES.search(Path(path).name):
                font_manager.fontManager.addfont(path)
    return installed()


def speak(lang: str) -> None:
    """From now on, every figure this process draws has its labels translated into ``lang``
    (English: drawn as they are)."""
    from matplotlib import rcParams
    from matplotlib.figure import Figure

    if lang == ENGLISH:
        return
    families = [*rcParams["font.family"], *fonts(lang)]  # for text the learner writes
    rcParams["font.family"] = list(dict.fromkeys(families))  # once, however often the setup cell runs

    english = getattr(Figure.draw, "english", Figure.draw)

    def draw(figure, renderer):
        try:
            translate(figure, lang)
        except Exception:  # a figure of the learner's own that this cannot read is drawn as it is
            pass
        return english(figure, renderer)

    draw.english = english
    Figure.draw = draw


def kept_folder(page: Path) -> Path:
    """Where :func:`keep` puts the figures of the reference run of the book's page ``page``."""
    return page.parent / ".figures" / page.stem


def png_hash(png: bytes | str) -> str:
    """The name of a PNG output: its bytes' hash (a notebook keeps it in base64)."""
    data = base64.b64decode(png) if isinstance(png, str) else png
    return hashlib.sha256(data).hexdigest()[:20]


def keep(folder: str) -> None:
    """In a kernel: pickle every figure shown from now on into ``folder``, named by its PNG's hash.
    The inline backend registers its PNG printer when a chapter first draws (and again on
    ``%matplotlib inline``): each printer it registers is wrapped."""
    from IPython import get_ipython
    from matplotlib.figure import Figure

    Path(folder).mkdir(parents=True, exist_ok=True)
    formatter = get_ipython().display_formatter.formatters["image/png"]
    register = formatter.for_type

    def drawn_and_kept(draw_png):
        def draw(figure):
            png = draw_png(figure)
            try:
                (Path(folder) / f"{png_hash(png)}.pickle").write_bytes(pickle.dumps(figure))
            except Exception:  # a figure that cannot be pickled stays English in the other editions
                pass
            return png

        return draw

    def for_type(kind, printer=None):
        if kind is Figure and printer is not None:
            printer = drawn_and_kept(printer)
        return register(kind, printer)

    formatter.for_type = for_type
    if Figure in formatter.type_printers:
        for_type(Figure, formatter.type_printers[Figure])


def kept(folder: Path, png: str):
    """The figure kept by :func:`keep` that drew ``png`` (base64), or None."""
    path = folder / f"{png_hash(png)}.pickle"
    return pickle.loads(path.read_bytes()) if path.exists() else None


def redrawn(figure) -> str:
    """``figure`` drawn as the notebook's inline backend draws it: base64 PNG."""
    from IPython.core.pylabtools import print_figure

    return print_figure(figure, fmt="png", base64=True, bbox_inches="tight")
