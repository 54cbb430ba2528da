"""The helpers chapters' checks are written with: distinct sizes, and diagnoses that never guess."""

import pytest
import torch

from autograder.suite import CheckFailed, distinct_sizes, expect_close


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
