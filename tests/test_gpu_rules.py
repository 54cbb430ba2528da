"""Chapter 7's Triton kernel is held to compiled Triton's block rule in the interpreter: a kernel
that only the interpreter would run (a tl.dot on blocks under 16) is refused with a message, by the
sandboxed grader that runs the chapter's setup cell (which installs the rule), while the reference
passes. (A length that is not a power of two the interpreter refuses by itself: tl.arange.)"""

import pytest
from test_chapter7_without_triton import answered_learner_notebook

from autograder.grading import grade_cells, submission_cells

PADDED = "BLOCK_DV=max(16, triton.next_power_of_2(d_v))"


@pytest.mark.parametrize("padded", [True, False], ids=["blocks of 16", "BLOCK_DV of 8"])
def test_a_kernel_only_the_interpreter_accepts_is_refused(padded):
    notebook = answered_learner_notebook()
    cell = next(c for c in notebook.cells if "flash_attention_kernel[grid]" in c.source)
    assert PADDED in cell.source
    if not padded:  # d_v = 8 in several checks: a (BLOCK_N x 8) block of V in p @ v
        cell.source = cell.source.replace(PADDED, "BLOCK_DV=triton.next_power_of_2(d_v)")
    results = [
        r
        for r in grade_cells(submission_cells(notebook), "07_flash_attention", ["flash_attention_triton"], seed=0)
        if not r.advice
    ]
    failed = [r for r in results if not r.passed]
    if padded:
        assert not failed, failed
    else:
        assert failed and all("every block dimension of tl.dot must be at least 16" in r.message for r in failed)
        assert all(", 8] block" in r.message for r in failed)  # V's (BLOCK_N x 8) block in p @ v
