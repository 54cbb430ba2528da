"""Shared test helpers: run a check suite in-process against any implementation."""

import pytest

from autograder.checks import suites
from autograder.student import KernelBackend, Student


def run_suite(topic: str, name: str, answer, seed: int = 0):
    """Results of the suite ``topic.name`` on ``answer`` (a function or class), run in-process."""
    return suites(topic)[name].run(Student(KernelBackend({name: answer}), name), seed)


def score(results) -> float:
    return sum(r.score for r in results)


def messages(results) -> str:
    return "\n".join(r.message for r in results if not r.passed)


def not_implemented(*args, **kwargs):
    """What every stub does."""
    raise NotImplementedError()


@pytest.fixture(params=[0, 1, 2])
def seed(request):
    """Grading seeds: a correct answer must pass, and a bug must fail, whatever the draw."""
    return request.param


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Checks run tiny tensors: extra threads only spin-wait, badly so on a busy 2-core machine."""
    import torch

    torch.set_num_threads(1)
