"""Reading what students submitted (autograder.files, autograder.batch.submission): regular
files only, never through a symbolic link, never blocking, never more than the cap. The
end-to-end cases (each in a real class, graded by the real batch) are in test_batch_autograde.py."""

import os
import re

import pytest

from autograder.batch.submission import read_submission
from autograder.files import NotAFile, read_file

NOTEBOOK = b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}'


def submitted(tmp_path, student="alice"):
    folder = tmp_path / "submitted" / student / "02_attention"
    folder.mkdir(parents=True)
    return folder


def test_a_regular_file_is_read(tmp_path):
    (tmp_path / "a.ipynb").write_bytes(NOTEBOOK)
    assert read_file(tmp_path / "a.ipynb", 1 << 20) == NOTEBOOK


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda path: path.mkdir(), "a.ipynb is a directory, not a file"),
        (os.mkfifo, "a.ipynb is a FIFO (named pipe), not a file"),  # opened, it would block until a writer came
        (lambda path: path.symlink_to(path.parent / "elsewhere"), "a.ipynb is a symbolic link, not a file"),
        (lambda path: path.write_bytes(b" " * 2048), "a.ipynb is too large to grade"),
    ],
)
def test_what_is_not_a_small_regular_file_is_refused(tmp_path, make, reason):
    (tmp_path / "elsewhere").write_bytes(NOTEBOOK)
    make(tmp_path / "a.ipynb")
    with pytest.raises(NotAFile, match=re.escape(reason)):
        read_file(tmp_path / "a.ipynb", 1024)


def test_a_missing_file_is_not_an_error_of_the_submission(tmp_path):
    folder = submitted(tmp_path)
    submission = read_submission("alice", folder, ["02_attention"])
    assert submission.problem is None and submission.notebooks == {"02_attention": None}
    assert submission.timestamp is None


def test_a_submission_is_read_with_its_timestamp(tmp_path):
    folder = submitted(tmp_path)
    (folder / "02_attention.ipynb").write_bytes(NOTEBOOK)
    (folder / "timestamp.txt").write_text("2026-01-15 12:00:00.000000 UTC")
    submission = read_submission("alice", folder, ["02_attention"])
    assert submission.problem is None and submission.notebooks["02_attention"] == NOTEBOOK
    assert submission.timestamp == "2026-01-15 12:00:00.000000 UTC"


@pytest.mark.parametrize(
    "attack, reason",
    [
        ("student_folder_link", "bob is a symbolic link, not a folder"),
        ("assignment_folder_link", "02_attention is a symbolic link, not a folder"),
        ("timestamp_link", "timestamp.txt is a symbolic link, not a file"),
        ("huge_timestamp", "timestamp.txt is too large to grade"),
    ],
)
def test_links_anywhere_in_a_submission_are_refused(tmp_path, attack, reason):
    alice = submitted(tmp_path)
    (alice / "02_attention.ipynb").write_bytes(NOTEBOOK)
    (tmp_path / "secret").write_text("the grader can read this")
    bob = tmp_path / "submitted" / "bob"
    if attack == "student_folder_link":
        bob.symlink_to(alice.parent)
    else:
        bob.mkdir()
        if attack == "assignment_folder_link":
            (bob / "02_attention").symlink_to(alice)
        else:
            folder = submitted(tmp_path, "bob")
            (folder / "02_attention.ipynb").write_bytes(NOTEBOOK)
            if attack == "timestamp_link":
                (folder / "timestamp.txt").symlink_to(tmp_path / "secret")
            else:
                (folder / "timestamp.txt").write_text("2026-01-15 12:00:00 UTC" + " " * 2000)
    submission = read_submission("bob", bob / "02_attention", ["02_attention"])
    assert submission.problem.startswith(reason)
    assert submission.notebooks == {"02_attention": None} and submission.timestamp is None
