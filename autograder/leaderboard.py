"""Leaderboards for the chapters where a number means something beyond pass or fail.

- Chapter 6: the held-out loss of the learner's ``CausalLM``, trained inside the sandbox for
  a fixed number of steps (the same model size, data, batches and optimizer for everyone)
  on text that ships with Python (the help topics of ``pydoc_data``), then evaluated by the
  grader on held-out text it sends only after training. A model that peeks at later tokens
  would win unfairly, so it gets no entry: the grader checks that changing the second half
  of a sequence leaves the logits of the first half unchanged.
- Chapter 7: the time of the learner's ``flash_attention_forward`` at a fixed size (best of
  three calls) and the largest tensor it creates, counted from the shapes of every tensor
  the call produced (``Student.traced``; tracemalloc does not see tensors). A tiled kernel
  never creates the N x N score matrix. A wrong output gets no entry.

Each board runs in a sandbox of its own after grading and costs under 20 s on one core.
A leaderboard is a game beside the grade: it never changes a score.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from autograder.sandbox import Limits, Sandbox
from autograder.student import Student, StudentError

LIMITS = Limits(call_seconds=60, setup_seconds=60, notebook_seconds=120)
VOCAB, D_MODEL, HEADS, D_FF, LAYERS, BLOCK, BATCH, STEPS = 128, 32, 2, 64, 2, 32, 16, 150
HELD_OUT = 20_000  # characters at the end of the text, never sent before training ends
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


def leaderboard(chapter: str, cells: list[str], hidden=()) -> Leaderboard:
    """The chapter's leaderboard entries for a submission's code ``cells`` (none for chapters
    without a board). Raises SandboxError when no sandbox can be started."""
    board = BOARDS.get(chapter)
    if board is None:
        return Leaderboard([])
    with Sandbox(LIMITS, hidden=hidden, deadline=time.monotonic() + LIMITS.notebook_seconds) as box:
        try:  # cells that exit, loop or forge their reply end the sandbox here: no entry, a note
            box.run_cells(cells)
            return board(box)
        except StudentError as error:
            return Leaderboard([], f"No leaderboard entry: {error}")


def text_tokens() -> torch.Tensor:
    """Python's help topics as character ids (non-ASCII characters become 127)."""
    from pydoc_data.topics import topics

    text = "".join(topics[key] for key in sorted(topics))
    return torch.tensor([min(ord(c), VOCAB - 1) for c in text])


def causal_lm_board(box: Sandbox) -> Leaderboard:
    tokens = text_tokens()
    train, held_out = tokens[:-HELD_OUT], tokens[-HELD_OUT:]
    box.run_cells([TRAIN])
    model = Student(box, "_leaderboard_train")(train, 0)
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


def flash_attention_board(box: Sandbox) -> Leaderboard:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*ATTENTION_SHAPE, generator=gen) for _ in range(3))
    student = Student(box, "flash_attention_forward")
    expected = torch.softmax(q.double() @ k.double().transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v.double()
    seconds = []
    for _ in range(3):
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
