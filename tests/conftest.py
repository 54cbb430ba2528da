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


UNGROUPED: list[str] = []  # grouped tests that pytest-xdist failed to keep together


@pytest.hookimpl(trylast=True)  # after pytest-xdist's worker has tagged the items with their group
def pytest_collection_modifyitems(config, items):
    """Under ``--dist loadgroup`` a module marked ``xdist_group`` runs in one worker: its module
    fixture (a book build, a graded course, the kit) is set up once. pytest-xdist 3.8 tags grouped
    items by rewriting ``item._nodeid``, which pytest 9.2 no longer reads: the group is ignored, both
    workers build the book in the same folder at once, and builds fail at random."""
    if getattr(config.option, "loadgroup", False):  # set in pytest-xdist's workers only
        UNGROUPED.extend(i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid)


@pytest.fixture(autouse=True, scope="session")
def groups_kept_together():
    """Every test errors, before any module fixture runs, when the groups are not in effect."""
    if UNGROUPED:
        pytest.fail(
            f"pytest-xdist ignored the xdist_group of {UNGROUPED[0]} and {len(UNGROUPED) - 1} more tests: "
            "this pytest and pytest-xdist do not work together; install the versions in requirements.txt"
        )


@pytest.fixture(params=[0, 1, 2])
def seed(request):
    """Grading seeds: a correct answer must pass, and a bug must fail, whatever the draw."""
    return request.param


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Checks run tiny tensors: extra threads only spin-wait, badly so on a busy 2-core machine."""
    import torch

    torch.set_num_threads(1)
