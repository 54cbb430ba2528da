"""Seeds (autograder/seeds.py): the practice seed the learner's kit records is never a seed an
official grade uses. `python -m autograder grade` grades with the practice seed, except inside a
course directory, where it grades with the course's private seed; every report says which seed it
used. An answer that replays the kit's recording gains points at the practice seed only."""

import json
import os
import subprocess
import sys

import pytest
from kit_replay import replaying_answers

from autograder import seeds
from autograder.course import create_course
from autograder.seeds import PRACTICE_SEED, course_seed
from autograder.suite import default_seed
from notebooks import CHAPTERS, filled_notebook, write

ATTENTION = next(p for p in CHAPTERS if p.stem == "02_attention")
ENV = {k: v for k, v in os.environ.items() if k != "AUTOGRADER_SEED"}


def grade(notebook, cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(notebook), *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


COURSE_SEED = 12345  # a course seed fixed for the replay test: see below


def test_grade_in_a_course_uses_its_seed_and_replaying_the_kit_gains_nothing_there(tmp_path):
    create_course(tmp_path / "course", chapters=["02_attention"])
    drawn = course_seed(tmp_path / "course")
    assert drawn is not None and drawn != PRACTICE_SEED
    # The seed is fixed here because a few checks draw from tiny domains: causal_mask's n from 5..13, so
    # one course seed in 9 meets the n the kit recorded, which is memorizing causal_mask(n), not the seed.
    config = tmp_path / "course" / seeds.COURSE_CONFIG
    config.write_text(config.read_text().replace(str(drawn), str(COURSE_SEED)))
    seed = course_seed(tmp_path / "course")
    assert seed == COURSE_SEED
    notebook = write(filled_notebook(ATTENTION, {"*": replaying_answers("attention")}), tmp_path / "replay.ipynb")

    practice = grade(notebook, tmp_path, "--json")  # outside a course: the learner's practice seed
    assert practice.returncode == 0, practice.stderr[-2000:]
    report = json.loads(practice.stdout)
    assert report["seed"] == PRACTICE_SEED and "practice seed" in report["seed_from"]
    assert report["score"] >= 3, "the replayed recording scores at the practice seed (else this test proves nothing)"

    official = grade(notebook, tmp_path / "course", "--json")
    assert official.returncode == 0, official.stderr[-2000:]
    report = json.loads(official.stdout)
    assert report["seed"] == seed and str(tmp_path / "course") in report["seed_from"]
    assert report["score"] == 0, [t for t in report["tests"] if t["passed"]]

    text = grade(notebook, tmp_path, "--course", str(tmp_path / "course"))
    assert text.returncode == 0, text.stderr[-2000:]
    assert f"Inputs drawn from seed {seed} (the private seed of the course in {tmp_path / 'course'})" in text.stdout


def test_grade_says_which_seed_it_used_when_one_is_given(tmp_path):
    create_course(tmp_path / "course", chapters=["02_attention"])
    stub = write(filled_notebook(ATTENTION, {}), tmp_path / "stub.ipynb")
    given = json.loads(grade(stub, tmp_path / "course", "--json", "--seed", "5").stdout)  # --seed wins over the course
    assert (given["seed"], given["seed_from"]) == (5, "--seed")
    env = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(stub)],
        cwd=tmp_path,
        env={**ENV, "AUTOGRADER_SEED": "11"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "Inputs drawn from seed 11 ($AUTOGRADER_SEED)" in env.stdout, env.stderr[-2000:]


def test_autograde_refuses_the_practice_seed_and_a_course_without_a_seed(tmp_path):
    create_course(tmp_path / "course", chapters=["02_attention"])

    def autograde(*args):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "autograder",
                "autograde",
                "02_attention",
                "--course",
                str(tmp_path / "course"),
                *args,
            ],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )

    refused = autograde("--seed", str(PRACTICE_SEED))
    assert refused.returncode == 2 and "practice seed" in refused.stderr
    config = tmp_path / "course" / seeds.COURSE_CONFIG
    config.write_text("\n".join(line for line in config.read_text().splitlines() if "AUTOGRADER_SEED" not in line))
    refused = autograde()
    assert (
        refused.returncode == 2 and "private seed" in refused.stderr and "python -m autograder course" in refused.stderr
    )


def test_official_seeds_are_never_the_practice_seed(monkeypatch, tmp_path):
    draws = iter([PRACTICE_SEED - 1, PRACTICE_SEED - 1, 41])  # randbelow + 1: the practice seed, twice, then 42
    monkeypatch.setattr(seeds.secrets, "randbelow", lambda n: next(draws))
    assert seeds.draw_official_seed() == 42
    (tmp_path / seeds.COURSE_CONFIG).write_text(seeds.SEED_LINE.format(seed=PRACTICE_SEED) + "\n")
    monkeypatch.setattr("autograder.course.draw_official_seed", lambda: 43)
    create_course(tmp_path, chapters=["02_attention"])  # a course config holding the practice seed gets a new one
    assert course_seed(tmp_path) == 43


def test_grade_cells_use_the_practice_seed_unless_a_course_sets_one(monkeypatch):
    monkeypatch.delenv("AUTOGRADER_SEED", raising=False)
    assert default_seed() == PRACTICE_SEED  # what the kit recorded: the notebook's own grade cells decide
    monkeypatch.setenv("AUTOGRADER_SEED", "77")  # what a course's nbgrader_config.py sets for `nbgrader autograde`
    assert default_seed() == 77


@pytest.mark.parametrize("text", ["", "c = get_config()\n", 'os.environ.setdefault("AUTOGRADER_SEED", "x")\n'])
def test_a_folder_without_a_course_seed_has_none(tmp_path, text):
    (tmp_path / seeds.COURSE_CONFIG).write_text(text)
    assert course_seed(tmp_path) is None
    assert course_seed(tmp_path / "missing") is None


def test_an_answer_that_draws_random_numbers_gets_the_same_messages_in_both_paths(tmp_path):
    """Dropout left on draws from torch's global generator: each call of the learner's code is seeded
    from the check's seed first, so the sandbox and the grade cell report the same differences."""
    from corpus import entries
    from grade_paths import cells_of, entry_answers, kernel_verdict, sandbox_verdict, write_submission

    from autograder.chapters import BY_TOPIC

    chapter = BY_TOPIC["multi_head_attention"]
    (entry,) = [e for e in entries(chapter.topic) if e.label == "dropout on the weights"]
    cells = cells_of(write_submission(chapter, entry_answers(chapter, entry), tmp_path / "submission.ipynb"))
    sandbox = sandbox_verdict(cells, chapter, [entry.name])
    kernel, _ = kernel_verdict(cells, chapter, [entry.name])
    assert any(not passed for passed, _, _ in sandbox.values())
    assert sandbox == kernel


def test_grading_in_the_notebook_leaves_its_random_draws_as_they_were():
    """A grade cell seeds the learner's generators for each call and restores them afterwards: the
    notebook's next random numbers are those it would have drawn without grading."""
    import random

    import torch

    from autograder import grade
    from solutions.attention import softmax

    def noisy_softmax(x, dim=-1):
        return softmax(x + 0 * torch.rand_like(x) + 0 * random.random(), dim)

    torch.manual_seed(7)
    random.seed(7)
    expected = torch.rand(3), random.random()
    torch.manual_seed(7)
    random.seed(7)
    assert grade("attention.softmax", noisy_softmax) > 0
    after = torch.rand(3), random.random()
    assert torch.equal(after[0], expected[0]) and after[1] == expected[1]
