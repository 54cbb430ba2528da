"""Leaderboards for the chapters where a number means something beyond pass or fail.

Whatever a board measures is drawn from the Gradescope package's private seed (``private/seed``,
which the sandbox cannot read; :func:`board_seed` derives each board's own seed from it), so no
answer can precompute or memorize it:

- Chapter 6: the held-out loss of the learner's ``CausalLM``, trained inside the sandbox for a
  fixed number of steps (the same model size, batches and optimizer for everyone) on text of a
  *private language*, then evaluated by the grader on more text of that language that it sends only
  after training. The language (:func:`private_text`) exists nowhere before the board draws it: a
  vocabulary of made-up words and which word tends to follow which, both drawn from the seed. Text
  that ships with Python or with the course would be readable in the sandbox or known in advance (a
  model that looks up the next character in a memorized copy wins). A model that peeks at later
  tokens would win unfairly too, so it gets no entry: the grader checks that changing the second half
  of a sequence leaves the logits of the first half unchanged.
- Chapter 7: the time of the learner's ``flash_attention_forward`` at a fixed size (best of
  three calls, each on fresh private inputs, each output checked, so neither a precomputed nor a
  cached answer passes) and the largest tensor it creates, counted from the shapes of every tensor
  the call produced (``Student.traced``; tracemalloc does not see tensors). A tiled kernel
  never creates the N x N score matrix. A wrong output gets no entry.

Each board runs in a sandbox of its own after grading and costs under 20 s on one core.
A leaderboard is a game beside the grade: it never changes a score.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import time
from dataclasses import dataclass

import torch

from autograder.sandbox import Limits, Sandbox
from autograder.seeds import draw_official_seed
from autograder.student import Student, StudentError

LIMITS = Limits(call_seconds=60, setup_seconds=60, notebook_seconds=120)
VOCAB, D_MODEL, HEADS, D_FF, LAYERS, BLOCK, BATCH, STEPS = 128, 32, 2, 64, 2, 32, 16, 150
TRAIN_CHARACTERS, HELD_OUT = 200_000, 20_000  # of the private language; held-out text is sent after training
WORDS, SUCCESSORS, LETTERS = 400, 8, "abcdefghijklmnopqrstuvwxyz"  # the private language's vocabulary
ATTENTION_SHAPE = (2, 1024, 64)  # heads, tokens, head dimension

TRAIN = f"""
def _leaderboard_train(tokens, seed):
    import torch
    torch.manual_seed(seed)
    model = CausalLM({VOCAB}, {D_MODEL}, {HEADS}, {D_FF}, {LAYERS}, {BLOCK})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    for _ in range({STEPS}):
        starts = torch.randint(len(tokens) - {BLOCK} - 1, ({BATCH},), generator=generator).tolist()
        windows = torch.stack([tokens[s:s + {BLOCK} + 1] for s in starts])
        logits = model(windows[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, {VOCAB}), windows[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
"""


@dataclass
class LeaderboardEntry:
    """One quantity on Gradescope's leaderboard; ``order`` "asc": lower ranks higher."""

    name: str
    value: float
    order: str = "asc"


@dataclass
class Leaderboard:
    entries: list[LeaderboardEntry]
    note: str = ""  # why there is no entry, for the learner


def leaderboard(chapter: str, cells: list[str], seed: int | None = None, hidden=()) -> Leaderboard:
    """The chapter's leaderboard entries for a submission's code ``cells`` (none for chapters
    without a board), measured on inputs drawn from ``seed`` (the package's private seed; None: a
    fresh one). Raises SandboxError when no sandbox can be started."""
    board = BOARDS.get(chapter)
    if board is None:
        return Leaderboard([])
    seed = board_seed(chapter, draw_official_seed() if seed is None else seed)
    with Sandbox(LIMITS, hidden=hidden, deadline=time.monotonic() + LIMITS.notebook_seconds) as box:
        try:  # cells that exit, loop or forge their reply end the sandbox here: no entry, a note
            box.run_cells(cells)
            return board(box, seed)
        except StudentError as error:
            return Leaderboard([], f"No leaderboard entry: {error}")


def board_seed(chapter: str, seed: int) -> int:
    """The seed of ``chapter``'s board, derived from the private ``seed`` (never equal to a grading seed's
    draws: the checks' inputs and the board's are unrelated)."""
    digest = hashlib.sha256(f"leaderboard/{chapter}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def private_text(seed: int, characters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training text, held-out text) of the private language drawn from ``seed``, as character ids:
    ``characters`` and ``HELD_OUT`` characters of lower-case words (2 to 8 letters each) separated by
    spaces, with a full stop now and then. Each word has ``SUCCESSORS`` private followers, drawn with Zipf
    weights ``1/(i+1)`` over the vocabulary (so a few words are common), one of which comes next (an order-1
    chain over words). Both texts continue one chain: the held-out text is new sentences of the language."""
    draw = random.Random(seed)  # Python's Mersenne Twister: the same text on every platform and version
    words = ["".join(draw.choices(LETTERS, k=draw.randint(2, 8))) for _ in range(WORDS)]
    zipf = [1.0 / (i + 1) for i in range(WORDS)]
    followers = [draw.choices(range(WORDS), weights=zipf, k=SUCCESSORS) for _ in range(WORDS)]
    weights = [list(itertools.accumulate(draw.random() ** 3 for _ in range(SUCCESSORS))) for _ in range(WORDS)]
    pieces, length, word = [], 0, 0
    while length < characters + HELD_OUT:
        word = draw.choices(followers[word], cum_weights=weights[word])[0]
        pieces.append(words[word] + (". " if draw.random() < 0.1 else " "))
        length += len(pieces[-1])
    text = torch.tensor([ord(c) for c in "".join(pieces)[: characters + HELD_OUT]])
    return text[:characters], text[characters:]


def causal_lm_board(box: Sandbox, seed: int) -> Leaderboard:
    train, held_out = private_text(seed, TRAIN_CHARACTERS)
    box.run_cells([TRAIN])
    model = Student(box, "_leaderboard_train")(train, seed % 2**31)
    windows = held_out[: (len(held_out) // (BLOCK + 1)) * (BLOCK + 1)].reshape(-1, BLOCK + 1)[:64]
    logits = model(windows[:, :-1])
    if not isinstance(logits, torch.Tensor) or logits.shape != (len(windows), BLOCK, VOCAB):
        return Leaderboard([], "No leaderboard entry: CausalLM did not return logits of shape (B, T, vocab_size)")
    changed = windows[:, :-1].clone()
    changed[:, BLOCK // 2 :] = (changed[:, BLOCK // 2 :] + 1) % VOCAB
    peeked = model(changed)
    if not torch.allclose(logits[:, : BLOCK // 2].double(), peeked[:, : BLOCK // 2].double(), rtol=1e-4, atol=1e-5):
        return Leaderboard([], "No leaderboard entry: CausalLM's early positions see later tokens (not causal)")
    loss = torch.nn.functional.cross_entropy(logits.double().reshape(-1, VOCAB), windows[:, 1:].reshape(-1))
    if not math.isfinite(loss.item()):
        return Leaderboard([], "No leaderboard entry: the held-out loss is not finite")
    return Leaderboard([LeaderboardEntry(f"held-out loss after {STEPS} steps (nats/char)", round(loss.item(), 4))])


def flash_attention_board(box: Sandbox, seed: int) -> Leaderboard:
    generator = torch.Generator().manual_seed(seed)
    student = Student(box, "flash_attention_forward")
    seconds = []
    for _ in range(3):  # fresh inputs each time: an answer cached from the first call is wrong on the next
        q, k, v = (torch.randn(*ATTENTION_SHAPE, generator=generator) for _ in range(3))
        scores = q.double() @ k.double().transpose(-2, -1) / math.sqrt(q.shape[-1])
        expected = torch.softmax(scores, dim=-1) @ v.double()
        start = time.perf_counter()
        result = student(q, k, v)
        seconds.append(time.perf_counter() - start)
        output = result[0] if isinstance(result, (tuple, list)) and result else result
        if (
            not isinstance(output, torch.Tensor)
            or output.shape != expected.shape
            or not torch.allclose(output.double(), expected, rtol=1e-3, atol=1e-4)
        ):
            return Leaderboard(
                [], f"No leaderboard entry: flash_attention_forward's output at size {ATTENTION_SHAPE} is wrong"
            )
    _, trace = student.traced(q, k, v)
    shapes = trace.created
    largest = max((math.prod(shape) for shape in shapes), default=0) * 4  # float32 bytes
    return Leaderboard(
        [
            LeaderboardEntry(f"time at N={ATTENTION_SHAPE[1]} (ms)", round(min(seconds) * 1000, 1)),
            LeaderboardEntry("largest tensor created (KiB)", round(largest / 1024, 1)),
        ]
    )


BOARDS = {"06_pretraining": causal_lm_board, "07_flash_attention": flash_attention_board}
