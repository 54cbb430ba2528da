"""The course's autograder: check suites (``autograder.checks``), a sandbox for untrusted
submissions, the ``python -m autograder`` command line, and nbgrader integration.

In a notebook's grade cell::

    from autograder import grade
    grade("attention.softmax", softmax)
"""


def grade(qualified_name: str, answer, namespace: dict | None = None):
    """Check the learner's ``answer`` (grade cells call this); prints a report, returns the score.

    ``qualified_name`` is ``"<topic>.<graded name>"``. The score is the cell's last
    expression, which nbgrader reads as partial credit. Warnings are silenced and nothing
    is written to stderr, since nbgrader scores a grade cell that writes to stderr as 0.
    ``namespace`` (default: the calling cell's globals) is where the checks find the learner's
    earlier graded names that this answer may call, to name them first when they are the cause.
    """
    import sys

    from autograder.grading import grade_in_kernel

    namespace = sys._getframe(1).f_globals if namespace is None else namespace  # the notebook's (the cell's)
    return grade_in_kernel(qualified_name, answer, namespace)
