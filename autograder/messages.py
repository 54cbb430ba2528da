"""Every message the checks, the grader and the kit print, in the learner's language.

The checks write their messages in English, as f-strings, where they find the fault; nothing in
them knows about languages. Each module's messages are *templates* read from its source (an
f-string ``f"{what} should have shape {shape}"`` is the template ``"{0} should have shape {1}"``),
and a catalogue per module, ``autograder/locale/<lang>/<module>.json``, gives each template's
translation: a list of ``{"en": template, "zh": translation}``, where ``zh`` keeps every
placeholder and may reorder them, and ``null`` marks a string that never reaches a learner (a
command, a file name).

:func:`translate` turns a finished English message into the language: it finds the template the
whole message is an instance of, translates the values that filled its placeholders when they are
messages themselves (``what`` above is often an f-string of its own), and fills the translation
with them; shapes, numbers and names pass through untouched. A message made of sentences from
several templates is translated sentence by sentence. Text that no template explains stays
English, and :func:`translate` says so: the corpus test requires every message to translate.

``python -m autograder.messages`` prints what is left to translate; with ``--write`` it first
writes the catalogues' skeletons (new templates with an empty translation, vanished ones dropped).
"""

from __future__ import annotations

import ast
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from autograder import catalogue as catalogues

PACKAGE = Path(__file__).resolve().parent
LOCALE = PACKAGE / "locale"
ENGLISH = "en"
LANGUAGES = (ENGLISH, "zh")
ENVIRONMENT = "TRANSFORMERS_GRADED_LANG"  # overrides the notebook's language; --lang overrides both
# The modules whose strings reach learners and instructors, relative to the package.
MODULES = (
    *sorted(str(path.relative_to(PACKAGE)) for path in (PACKAGE / "checks").glob("[a-z]*.py")),
    "suite.py",
    "student.py",
    "protocol.py",
    "grading.py",
    "local.py",
    "sandbox.py",
    "report.py",
    "gradescope.py",
    "batch/grade.py",
    "__main__.py",
)
WORDS = re.compile(r"[A-Za-z]{2,}")
PLACEHOLDER = re.compile(r"\{(\d+)\}")
ADJACENT = re.compile(r"\{(\d+)\}\{(\d+)\}")
ENGLISH_WORD = re.compile(r"[(\"']?[A-Za-z][a-z]+'?s?[)\"',.;:!?]*")  # a word, not CamelCase or snake_case
CONNECTIVES = {"zh": {"or ": "或者"}}  # words that join two messages (suite's "; or "), outside any template
NAMED = re.compile(r"(\S+) (.+)", re.DOTALL)
UNBALANCED = 100  # how much worse than a reading whose last field swallows a sentence a bracket cut in two is
COMPOSED = {"zh": "{0}（{1}）"}  # a name followed by a phrase no template joins them in
# The most time one message may take to translate (a message of the corpus takes ~8 ms). Text a learner
# controls (a returned string, a code line) can be read many ways; past this, the message stays English.
SECONDS = 2.0
SENTENCES = re.compile(r"(?<=[.;:!?])\s+|\n")  # where a message made of several templates may be cut
PUNCTUATION = {mark: {"zh": full} for mark, full in zip(".;:!?", "。；：！？")}


def language(explicit: str | None = None, notebook=None) -> str:
    """The language to speak: ``explicit`` (``--lang``), else ``$TRANSFORMERS_GRADED_LANG``, else
    the notebook's (``metadata.transformers_graded.language``), else English. ``zh_CN``, ``zh-Hans``
    and the like mean ``zh``; a language the course does not have means English."""
    metadata = (getattr(notebook, "metadata", None) or {}) if notebook is not None else {}
    chosen = metadata.get("transformers_graded", {}) if isinstance(metadata, dict) else {}
    for choice in (explicit, os.environ.get(ENVIRONMENT), chosen.get("language") if isinstance(chosen, dict) else None):
        if isinstance(choice, str) and choice.strip():
            short = re.split(r"[-_.]", choice.strip().lower())[0]
            return short if short in LANGUAGES else ENGLISH
    return ENGLISH


def term(text: str, lang: str) -> str:
    """A short label (``PASS``, ``points``) in ``lang``: the catalogue's exact translation, or ``text``."""
    return text if lang == ENGLISH else catalogue(lang)[0].get(text, text)


def catalogue_path(module: str, lang: str) -> Path:
    """``checks/attention.py`` -> ``autograder/locale/zh/checks.attention.json``."""
    return LOCALE / lang / (module.removesuffix(".py").replace("/", ".") + ".json")  # batch/grade.py: batch.grade


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def templates(source: str) -> list[str]:
    """The message templates of a module: every string literal with at least three words in it, or
    two words of English ("random tokens"), docstrings excluded, every f-string with a word outside its fields (``"{0} is wrong: {1}"``
    joins two messages), every module constant of two words or more (``ADVICE``), and every label
    passed to :func:`term`; an f-string's fields become ``{0}``, ``{1}``, ..."""
    tree = ast.parse(source)
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skipped.add(id(first.value))
        if isinstance(node, ast.JoinedStr):
            skipped.update(id(part) for part in ast.walk(node) if part is not node)
    terms = {
        id(node.args[0])
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) == "term"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    constants = {  # e.g. ADVICE = "advice (0 points): ", which begins messages
        id(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.JoinedStr):
            fields = iter(range(len(node.values)))
            template = "".join(
                _escape(part.value) if isinstance(part, ast.Constant) else f"{{{next(fields)}}}" for part in node.values
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            template = _escape(node.value)
        else:
            continue
        fielded = isinstance(node, ast.JoinedStr) and PLACEHOLDER.search(template) and _words(template)
        constant = id(node) in constants and _words(template) >= 2
        phrase = _english_words(template) >= 2  # "random tokens", "x itself"
        if (_is_prose(template) or fielded or constant or phrase or id(node) in terms) and template not in found:
            found.append(template)
    return found


def _words(text: str) -> int:
    """How many words with letters the text has outside its fields."""
    return len([word for word in PLACEHOLDER.sub(" ", text).split() if WORDS.search(word)])


def _sentences_in(value: str) -> int:
    """How many sentence boundaries (". ", ": ", "; ") a field's value holds outside brackets."""
    depth, count = 0, 0
    for index, char in enumerate(value):
        depth += char in "([{"
        depth -= char in ")]}"
        count += depth <= 0 and char in ".:;" and value[index + 1 : index + 2] == " "
    return count


def _bare(text: str) -> str:
    """A message without the punctuation that joins it to the one before (``": the output ..."``)."""
    return text.strip().lstrip(":;,.：；，。").strip()


def _english_words(text: str) -> int:
    """How many words of English ``text`` holds: words of letters only, so that names, numbers and
    code (``blocks.0.attn.w_q``, ``MultiHeadAttention``) do not count."""
    return len([word for word in text.split() if ENGLISH_WORD.fullmatch(word)])


def _english(text: str) -> int:
    """How many words of English prose ``text`` holds, when it is prose (three words or more)."""
    words = _english_words(text)
    return words if words >= 3 else 0


def _is_prose(text: str) -> bool:
    """Three or more words with letters: a sentence, not a name or a command."""
    return _words(text) >= 3


def _unescape(text: str) -> str:
    return text.replace("{{", "{").replace("}}", "}")


@dataclass(frozen=True)
class Template:
    english: str
    translation: str
    verbatim: frozenset[str]  # fields quoted as they are (an exception's own message), never translated
    pattern: re.Pattern  # each field as short as it can be
    greedy: re.Pattern  # each field as long as it can be: "f(x of shape {0}, {1})" on "f(x of shape (2, 3), 4)"

    @property
    def weight(self) -> int:
        """How much fixed text the template has: the most specific template is tried first."""
        return len(PLACEHOLDER.sub("", self.english))


def _pattern(english: str, lazy: str = "?") -> re.Pattern:
    parts = re.split(r"(\{\d+\})", english)
    regex = "".join(
        f"(?P<f{PLACEHOLDER.fullmatch(part).group(1)}>.*{lazy})"
        if PLACEHOLDER.fullmatch(part)
        else re.escape(_unescape(part))
        for part in parts
    )
    return re.compile(regex, re.DOTALL)


def _balanced(value: str) -> bool:
    """A field's value never splits a bracketed value (a shape, a list, a call) in two."""
    depth = {"(": 0, "[": 0, "{": 0}
    for char in value:
        if char in depth:
            depth[char] += 1
        elif char in ")]}":
            opening = "([{"[")]}".index(char)]
            depth[opening] -= 1
            if depth[opening] < 0:
                return False
    return not any(depth.values())


def _fields(template: Template, message: str) -> tuple[dict[str, str], bool] | None:
    """The template's fields in ``message`` and whether their values are balanced: the shortest
    reading whose values are, else the longest if its are, else the shortest (a quoted line of code
    may be unbalanced itself, but a reading that cuts a shape in two is a wrong one)."""
    readings = []
    for pattern in (template.pattern, template.greedy):
        match = pattern.fullmatch(message)
        if match is None:
            return None
        readings.append({name[1:]: value for name, value in match.groupdict().items()})
        if all(_balanced(value) for value in readings[-1].values()):
            return readings[-1], True
    return readings[0], False


@cache
def catalogue(lang: str) -> tuple[dict[str, str], tuple[Template, ...]]:
    """The language's translations: exact messages (templates without fields) by their text, and
    templates with fields, most specific first."""
    exact, fielded = {}, []
    for module in MODULES:
        for item in catalogues.read(catalogue_path(module, lang), []):
            if not item.get(lang):
                continue
            if PLACEHOLDER.search(item["en"]):
                verbatim = frozenset(str(field) for field in item.get("verbatim", []))
                fielded.append(
                    Template(item["en"], item[lang], verbatim, _pattern(item["en"]), _pattern(item["en"], ""))
                )
            else:
                exact[_bare(_unescape(item["en"]))] = _bare(_unescape(item[lang]))
    return exact, tuple(sorted(fielded, key=lambda t: -t.weight))


@dataclass(frozen=True)
class Translation:
    text: str
    left: int = 0  # how many words of English prose no template explained (they stay English)

    @property
    def complete(self) -> bool:
        return self.left == 0


class _OutOfTime(Exception):
    """The message took longer than :data:`SECONDS` to read."""


_budget = threading.local()  # when this thread's translation must end


def translate(message: str, lang: str) -> Translation:
    """``message`` (English, as a check wrote it) in ``lang``; English where it cannot be read in
    :data:`SECONDS` (or within Python's recursion limit)."""
    if lang == ENGLISH or not message:
        return Translation(message)
    _budget.deadline = time.monotonic() + SECONDS
    try:
        return _translate(message, lang, depth=0)
    except (_OutOfTime, RecursionError):
        return Translation(message, _english(message))
    finally:
        _budget.deadline = None


@lru_cache(maxsize=65536)
def _translate(message: str, lang: str, depth: int) -> Translation:
    """The best reading of ``message``: of the templates it is an instance of (most specific first),
    the first whose fields translate completely, else the one that leaves the least English; else
    the message cut in two at a sentence's end, a semicolon or a colon, the head translated as one
    sentence and the tail in the same way as the message."""
    if getattr(_budget, "deadline", None) is not None and time.monotonic() > _budget.deadline:
        raise _OutOfTime
    exact, fielded = catalogue(lang)
    if (bare := _bare(message)) in exact:
        return Translation(exact[bare])
    best, overreach = None, 0
    for template in fielded if depth < 5 else ():
        reading = _fields(template, message)
        if reading is not None:
            fields, balanced = reading
            # a template that ends in a field can swallow the sentences after it ("{0}, causal={1}" reading
            # "..., causal=False is wrong: ..."): of the complete readings, the one whose last field does least,
            # and any reading before one that cuts a bracket in two
            last = PLACEHOLDER.fullmatch(template.english[template.english.rfind("{") :])
            swallows = last and last.group(1) not in template.verbatim  # quoted text may hold any sentences
            reach = (_sentences_in(fields[last.group(1)]) if swallows else 0) + (0 if balanced else UNBALANCED)
            if best is not None and not best.left and reach >= overreach:
                continue
            for first, second in ADJACENT.findall(template.english):
                fields[first], fields[second] = _split(fields[first] + fields[second], lang, depth)
            values = {
                name: Translation(value) if name in template.verbatim else _translate(value, lang, depth + 1)
                for name, value in fields.items()
            }
            text = PLACEHOLDER.sub(lambda m: values[m.group(1)].text, _unescape(template.translation))
            found = Translation(text, sum(value.left for value in values.values()))
            if best is None or found.left < best.left or (not found.left and reach < overreach):
                best, overreach = found, reach
            if not best.left and not overreach:
                return best
    for cut in SENTENCES.finditer(message) if best is None or best.left else ():  # a cut cannot beat complete
        head = _sentence(message[: cut.start()], lang, depth)
        tail = _translate(message[cut.end() :], lang, depth)
        split = Translation(head.text + cut.group() + tail.text, head.left + tail.left)
        if best is None or split.left < best.left:
            best = split
        if not best.left:
            break
    named = NAMED.fullmatch(message)  # "{name} {what}": a name, then a phrase the catalogue knows ("acc after ...")
    if depth and named and (best is None or best.left) and lang in COMPOSED:
        phrase = _translate(named.group(2), lang, depth + 1)
        if phrase.complete and phrase.text != named.group(2):
            best = Translation(COMPOSED[lang].format(named.group(1), phrase.text))
    if depth and (best is None or best.left) and not message.endswith(","):  # a phrase whose comma was cut off
        with_comma = _translate(message + ",", lang, depth)
        if best is None or with_comma.left < best.left:
            best = with_comma if with_comma.text != message + "," else best
    for connective, translation in CONNECTIVES.get(lang, {}).items():  # "...; or <another diagnosis>"
        if best is not None and best.left and message.startswith(connective):
            rest = _translate(message[len(connective) :], lang, depth)
            if rest.left < best.left:
                best = Translation(translation + rest.text, rest.left)
    return best or Translation(message, _english(message))


def _sentence(piece: str, lang: str, depth: int) -> Translation:
    """One piece of a message cut at its punctuation: with the punctuation it ends in, or without it
    (the templates seldom end in it), followed by the language's own mark."""
    whole = _translate(piece, lang, depth)
    if whole.left and piece[-1:] in PUNCTUATION:
        bare = _translate(piece[:-1], lang, depth)
        if bare.left < whole.left:
            return Translation(bare.text + PUNCTUATION[piece[-1]].get(lang, piece[-1]), bare.left)
    return whole


def _split(joined: str, lang: str, depth: int) -> tuple[str, str]:
    """Two fields side by side (``"{name}{alone}"``): the first is a value, the second, when there
    is one, a fragment of message (``", when only q requires grad"``). The split is the earliest
    where the rest is a fragment the catalogue translates."""
    for cut in range(1, len(joined)):
        rest = joined[cut:]
        if _balanced(joined[:cut]) and WORDS.search(rest):
            translated = _translate(rest, lang, depth + 1)
            if translated.complete and translated.text != rest:
                return joined[:cut], rest
    return joined, ""


def problems(lang: str) -> list[str]:
    """Templates of the modules with no translation (or a translation that lost a field), and
    translations of templates the code no longer has."""
    found = []
    for module in MODULES:
        english = templates((PACKAGE / module).read_text(encoding="utf-8"))
        items = catalogues.read(catalogue_path(module, lang), [])
        known = {item["en"]: item for item in items}
        for template in english:
            item = known.get(template)
            if item is None or item.get(lang) == "":
                found.append(f"{module}: no translation of {template[:70]!r}")
            elif item[lang] is not None and sorted(PLACEHOLDER.findall(item[lang])) != sorted(
                PLACEHOLDER.findall(template)
            ):
                found.append(f"{module}: the translation of {template[:70]!r} does not keep its fields")
        found += [f"{module}: {en[:70]!r} is no longer in the code (stale)" for en in catalogues.stale(english, items)]
    return found


def write_skeletons(lang: str) -> None:
    """Each module's catalogue with every current template: translations kept, new ones empty."""
    for module in MODULES:
        path = catalogue_path(module, lang)
        catalogues.write(
            path, catalogues.skeleton(templates((PACKAGE / module).read_text(encoding="utf-8")), path, lang)
        )


if __name__ == "__main__":
    arguments = sys.argv[1:]
    for language_code in [a for a in arguments if not a.startswith("--")] or ["zh"]:
        if "--write" in arguments:
            write_skeletons(language_code)
        left = problems(language_code)
        print(f"{language_code}: {len(left)} to translate", *left, sep="\n")
