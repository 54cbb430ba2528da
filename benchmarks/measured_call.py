"""Benchmark (not a test): what a grade cell measures of chapter 7's forward on the measured case
(N = 4096, d = 32, blocks 256 x 512), in a fresh process and in one whose heap holds free space
left by earlier work (as a kernel after a notebook's cells, or a pytest worker after the
leaderboard tests), with the heap's free chunks held during the call (``heap.freshen``, what the
grader does) and only trimmed (what it did before); and what the measurement itself costs.

    .venv/bin/python benchmarks/measured_call.py
"""

import math
import subprocess
import sys
import time

import torch

from autograder import heap
from autograder.leaderboard import leaderboard
from autograder.student import process_meter
from solutions.flash_attention import flash_attention_forward

N, D, BLOCKS = 4096, 32, (256, 512)
SCORES = torch.zeros(N * N)  # a buffer made before any call


def into_a_buffer_made_before(q, k, v, causal=False, block_q=64, block_k=64):
    """Full attention whose N x N scores live in SCORES: the process never grows."""
    s = SCORES.view(N, N)
    torch.matmul(q, k.T, out=s)
    s.mul_(1 / math.sqrt(q.shape[-1]))
    top = s.amax(-1)
    total = s.sub_(top[:, None]).exp_().sum(-1)
    return s.div_(total[:, None]) @ v, top + total.log()


def earlier_work():
    """What a pytest worker did before its measured calls went wrong: chapter 7's leaderboard, whose
    untiled attention (in the sandbox) and expected values (here) free large blocks, which raises
    glibc's mmap threshold; the replies and tensors after them are served from the heap and leave
    free chunks there."""
    untiled = (
        "import math, torch\n"
        "def flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):\n"
        "    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
        "    return torch.softmax(s, dim=-1) @ v, torch.logsumexp(s, dim=-1)\n"
    )
    leaderboard("07_flash_attention", [untiled], seed=1)


def measured(answer, fresh: bool):
    q, k, v = (torch.randn(N, D) for _ in range(3))
    start = time.perf_counter()
    held = heap.freshen()
    if not fresh:  # as the grader did before: the threshold fixed and the heap trimmed, nothing held
        heap.release(held)
        held = []
    prepared = time.perf_counter()
    meter = process_meter("self", "this process")
    started = time.perf_counter()
    answer(q, k, v, causal=True, block_q=BLOCKS[0], block_k=BLOCKS[1])
    called = time.perf_counter()
    measurement = meter()
    read = time.perf_counter()
    heap.release(held)
    costs = (prepared - start, started - prepared, read - called)
    return measurement, costs


def report(label, answer, fresh):
    measurement, (freshen, begin, end) = measured(answer, fresh)
    print(
        f"{label:58} peak {measurement.peak_bytes / 2**20:6.1f} MiB  touched {measurement.touched_bytes / 2**20:6.1f} MiB"
        f"  | freshen {freshen * 1e3:5.1f} ms, meter start {begin * 1e3:5.1f} ms, read {end * 1e3:5.1f} ms"
    )


def main():
    """This process first does the earlier work (before anything fixes the mmap threshold); a child
    process measures the same calls fresh."""
    torch.set_num_threads(1)
    fresh = "--fresh" in sys.argv
    if not fresh:
        subprocess.run([sys.executable, __file__, "--fresh"], check=True)
        earlier_work()
    where = "fresh process" if fresh else "after the leaderboard"
    flash_attention_forward(*(torch.randn(64, D) for _ in range(3)), causal=True)  # first-call costs
    for held in (False, True):
        report(f"{where}, tiled (reference), free chunks held={held}", flash_attention_forward, held)
    if not fresh:
        report(f"{where}, scores in a buffer made before", into_a_buffer_made_before, True)


if __name__ == "__main__":
    main()
