"""Check suites, one module per chapter topic; each module defines ``SUITES``, a dict from
the graded name (function or class) to its :class:`autograder.suite.Suite`. Which chapter
uses which module is said once, in :mod:`autograder.chapters`.
"""

import importlib


def suites(topic: str) -> dict:
    """The suites of one check module, e.g. ``suites("attention")["softmax"]``."""
    return importlib.import_module(f"autograder.checks.{topic}").SUITES
