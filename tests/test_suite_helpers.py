"""The helpers chapters' checks are written with: distinct sizes, and diagnoses that never guess."""

import pytest
import torch

from autograder.grading import format_results
from autograder.student import KernelBackend, Student
from autograder.suite import ADVICE, CheckFailed, Suite, distinct_sizes, expect_close


def test_distinct_sizes_are_in_range_pairwise_distinct_and_avoid_what_is_given():
    for seed in range(50):
        gen = torch.Generator().manual_seed(seed)
        sizes = distinct_sizes(gen, (3, 9), (4, 11), (5, 12), (2, 7), avoid=(5,))
        assert len(set(sizes)) == 4 and 5 not in sizes
        assert all(low <= s <= high for s, (low, high) in zip(sizes, [(3, 9), (4, 11), (5, 12), (2, 7)]))


def test_distinct_sizes_refuses_ranges_that_cannot_be_distinct():
    with pytest.raises(ValueError):
        distinct_sizes(torch.Generator(), (2, 3), (2, 3), (2, 3))


def test_a_diagnosis_is_named_alone_only_when_no_other_one_fits():
    expected, wrong = torch.zeros(3), torch.ones(3)
    with pytest.raises(CheckFailed, match=r"is wrong: scaled twice$"):
        expect_close(wrong, expected, "y", diagnoses=[(wrong, "scaled twice"), (-wrong, "negated")])
    with pytest.raises(CheckFailed, match=r"more than one typical bug on these inputs: scaled twice; or shifted"):
        expect_close(wrong, expected, "y", diagnoses=[(wrong, "scaled twice"), (wrong.clone(), "shifted")])


def _suite_with_advice() -> Suite:
    suite = Suite("double")

    @suite.check(2)
    def values(student, gen):
        expect_close(student(torch.ones(3)), torch.full((3,), 2.0), "double(ones)")

    @suite.advice
    def no_multiplication(student, gen):
        _, names = student.functions(torch.ones(3))
        if "mul" in names:
            raise CheckFailed("double called torch.mul: add the input to itself")

    return suite


@pytest.mark.parametrize("double, passed", [(lambda x: x + x, True), (lambda x: x * 2, False)])
def test_advice_is_worth_nothing_and_is_shown_as_advice(double, passed):
    suite = _suite_with_advice()
    assert suite.max_score == 2
    values, advice = suite.run(Student(KernelBackend({"double": double}), "double"), seed=0)
    assert (values.passed, values.score, values.advice) == (True, 2.0, False)
    assert (advice.passed, advice.score, advice.max_score, advice.advice) == (passed, 0.0, 0.0, True)
    report = format_results([values, advice])
    assert report.splitlines()[0] == "double: 2 / 2 points"
    if passed:
        assert advice.message == "passed" and "[PASS] no_multiplication (0 pt)" in report
    else:
        assert advice.message == ADVICE + "double called torch.mul: add the input to itself"
        assert "[ADVICE] no_multiplication (0 pt): advice (0 points): double called torch.mul" in report


def test_a_function_that_cannot_be_graded_fails_its_advice_as_advice():
    values, advice = _suite_with_advice().failed("double is not defined")
    assert (values.max_score, values.advice, values.message) == (2.0, False, "double is not defined")
    assert (advice.max_score, advice.advice, advice.message) == (0.0, True, ADVICE + "double is not defined")
