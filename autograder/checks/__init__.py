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


def suites(topic: str) -> dict:
    """The suites of one check module, e.g. ``suites("attention")["softmax"]``."""
    return importlib.import_module(f"autograder.checks.{topic}").SUITES
