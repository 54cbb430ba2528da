"""Benchmark (not a test): what the sandbox measures of chapter 7's forward on the measured case
(N = 4096, d = 32, causal, blocks 256 x 512): the reference (tiled), full attention whose N x N
scores go into a buffer made before the call, and that buffer attack followed by each way a
process could hide its touched pages (:mod:`autograder.page_guard` takes them away); and what
the guard costs a sandbox's start.

    .venv/bin/python benchmarks/sandbox_touched.py
"""

import subprocess
import sys
import time

import torch

from autograder.sandbox import SOLUTIONS, Limits, Sandbox
from autograder.student import Student

N, D, BLOCKS = 4096, 32, (256, 512)
BUFFER = """
import ctypes, math, torch
LIBC = ctypes.CDLL(None)
SCORES = torch.zeros(4096 * 4096)  # 64 MiB, made before any call

def into_the_buffer(q, k, v, hide=""):
    s = SCORES.view(q.shape[0], k.shape[0])
    torch.matmul(q, k.T, out=s)
    s.mul_(1 / math.sqrt(q.shape[-1]))
    top = s.amax(-1)
    total = s.sub_(top[:, None]).exp_().sum(-1)
    out = s.div_(total[:, None]) @ v
    start, size = (SCORES.data_ptr() + 4095) & ~4095, SCORES.numel() * 4 - 8192
    if hide == "clear_refs":
        LIBC.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
        try:
            open("/proc/self/clear_refs", "w").write("1")
        except OSError:
            pass
    elif hide:
        LIBC.madvise(ctypes.c_void_p(start), ctypes.c_size_t(size), {"cold": 20, "pageout": 21, "free": 8}[hide])
    return out, top + total.log()
"""


GUARD_COST = """
import ctypes, time
ctypes.CDLL(None).prctl(38, 1, 0, 0, 0)  # no_new_privs, as the sandbox's child has
start = time.perf_counter()
from autograder import page_guard
why = page_guard.guard()
print(f"page_guard.guard() in a fresh process: {(time.perf_counter() - start) * 1e3:.1f} ms ({why or 'in force'})")
"""


def main():
    subprocess.run([sys.executable, "-c", GUARD_COST], check=True)
    torch.manual_seed(0)
    q, k, v = (torch.randn(N, D) for _ in range(3))
    started = time.perf_counter()
    with Sandbox(Limits(memory_bytes=2 << 30)) as box:
        start_seconds = time.perf_counter() - started
        box.run_cells([(SOLUTIONS / "flash_attention.py").read_text(), BUFFER])
        print(f"sandbox start (fork, confinement, Landlock and seccomp included): {start_seconds:.2f} s")
        print(f"page bits unguarded because: {box.isolation['page_bits_unguarded']}")
        reference, attack = Student(box, "flash_attention_forward"), Student(box, "into_the_buffer")
        reference(q[:64], k[:64], v[:64])  # first-call costs
        for run in range(3):
            _, m = reference.measured(q, k, v, causal=True, block_q=BLOCKS[0], block_k=BLOCKS[1])
            report(f"reference (tiled), run {run + 1}", m)
        for hide in ("", "clear_refs", "cold", "pageout", "free"):
            _, m = attack.measured(q, k, v, hide=hide)
            report(f"scores in a buffer made before{', then ' + hide if hide else ''}", m)


def report(label, m):
    print(f"{label:48} peak {m.peak_bytes / 2**20:6.1f} MiB  touched {m.touched_bytes / 2**20:6.1f} MiB")


if __name__ == "__main__":
    main()
