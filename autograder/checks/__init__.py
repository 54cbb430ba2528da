"""Check suites, one module per chapter topic; each module defines ``SUITES``, a dict from
the graded name (function or class) to its :class:`autograder.suite.Suite`.

``CHAPTERS`` maps a chapter notebook's name (``chapters/<name>.ipynb``) to its module.
"""
import importlib

CHAPTERS = {
    "01_before_transformers": "sequence_models",
    "02_attention": "attention",
    "03_multi_head_attention": "multi_head_attention",
    "04_positional_encoding": "positional_encoding",
    "05_transformer_block": "transformer_block",
    "06_pretraining": "pretraining",
    "07_flash_attention": "flash_attention",
}


def earlier_topics(chapter: str) -> list[str]:
    """Topics of the chapters before ``chapter``: their reference code is *given* to a later
    chapter (chapter 5 builds on chapter 3's ``MultiHeadAttention``), so the grading sandbox
    lets a submission import them; the graded chapter's own reference stays out of reach."""
    names = list(CHAPTERS)
    return [CHAPTERS[c] for c in names[: names.index(chapter)]]


def suites(topic: str) -> dict:
    """The suites of one check module, e.g. ``suites("attention")["softmax"]``."""
    return importlib.import_module(f"autograder.checks.{topic}").SUITES
