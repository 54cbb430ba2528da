"""Chapter 7's Triton kernel on a real GPU: compiled, checked, timed (one command, a few minutes).

    python benchmarks/gpu_check.py                      # on a machine with a CUDA GPU
    python benchmarks/gpu_check.py --dry-run            # anywhere: the same steps on CPU, in Triton's interpreter

1. Correctness: ``solutions.flash_attention.flash_attention_triton`` (the kernel that learners write)
   against attention computed in float64, at several shapes: square and ragged N (not multiples of
   the 64-row blocks), N_q != N_k, causal, head dims 16 to 128, float32 and float16.
2. Speed: one forward pass, batch x heads = 16, d = 64, float16, for N = 1024 .. 8192, of the Triton
   kernel, ``torch.nn.functional.scaled_dot_product_attention`` and the chapter's tiled PyTorch
   version (``flash_attention_forward``, blocks of 128): the best of a few calls after a warm-up.
3. A small JSON result (``--output``, default ``gpu_check.json``): the device, versions, every
   comparison and every time. Exits with 1 when a comparison failed.

The interpreter ignores rules that compiled Triton enforces (``tl.dot`` needs block dimensions of at
least 16, ``tl.arange`` a power of two, shared memory is finite): only the GPU run is the final word.
``--dry-run`` runs the same code with small sizes on CPU, so CI keeps this script working.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent

# (batch dims, N_q, N_k, d, causal): ragged N, N_q != N_k, causal, and head dims 16..128.
SHAPES = [
    ((1, 1), 128, 128, 64, False),
    ((2, 4), 1000, 1000, 64, False),
    ((2, 4), 1000, 1000, 64, True),
    ((1, 2), 777, 333, 32, False),
    ((3,), 515, 515, 16, True),
    ((1, 2), 1024, 1024, 128, True),
]
DRY_SHAPES = [((1, 1), 64, 64, 16, False), ((2,), 70, 45, 16, False), ((2,), 77, 77, 32, True)]
LENGTHS = [1024, 2048, 4096, 8192]
TOLERANCE = {"float32": 2e-4, "float16": 2e-2}  # largest absolute error against float64, values of order 1


def reference(q, k, v, causal):
    """softmax(q k^T / sqrt(d)) v in float64 (a mask above the diagonal when causal)."""
    q, k, v = (t.double() for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(
            ~torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril(), float("-inf")
        )
    return torch.softmax(scores, -1) @ v


def check_correctness(attention, device: str, shapes, dtypes) -> list[dict]:
    """``attention(q, k, v, causal)`` against :func:`reference`, one row per shape and dtype."""
    rows = []
    gen = torch.Generator().manual_seed(0)
    for batch, n_q, n_k, d, causal in shapes:
        for dtype in dtypes:
            q, k, v = (torch.randn(*batch, n, d, generator=gen) for n in (n_q, n_k, n_k))
            q, k, v = (t.to(device=device, dtype=getattr(torch, dtype)) for t in (q, k, v))
            row = {"batch": list(batch), "n_q": n_q, "n_k": n_k, "d": d, "causal": causal, "dtype": dtype}
            try:
                output = attention(q, k, v, causal)
                error = (output.double() - reference(q, k, v, causal)).abs().max().item()
                row.update(max_error=error, passed=bool(error <= TOLERANCE[dtype]))
            except Exception as failure:  # a kernel that does not compile or launch is a failed row
                row.update(max_error=None, passed=False, error=f"{type(failure).__name__}: {failure}"[:500])
            rows.append(row)
            print(
                f"{'ok  ' if row['passed'] else 'FAIL'} {dtype:8} batch={batch} N_q={n_q} N_k={n_k} d={d} "
                f"causal={causal}: "
                + (f"max error {row['max_error']:.1e}" if row["max_error"] is not None else row["error"])
            )
    return rows


def best_ms(fn, device: str, repeats: int) -> float:
    """The fastest of ``repeats`` calls after one warm-up call (which compiles), in milliseconds."""
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fn()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def time_methods(methods: dict, device: str, lengths, dtype: str, repeats: int, slices: int = 16, d: int = 64):
    rows = []
    for n in lengths:
        q, k, v = (torch.randn(slices, n, d, device=device, dtype=getattr(torch, dtype)) for _ in range(3))
        row = {"n": n, "d": d, "slices": slices, "dtype": dtype}
        for name, fn in methods.items():
            try:
                row[f"{name}_ms"] = best_ms(lambda fn=fn: fn(q, k, v), device, repeats)
            except Exception as failure:
                row[f"{name}_ms"], row[f"{name}_error"] = None, f"{type(failure).__name__}: {failure}"[:300]
        rows.append(row)
        print(
            f"N={n:6}: "
            + ", ".join(
                f"{name} {row[f'{name}_ms']:.2f} ms" if row[f"{name}_ms"] else f"{name} failed" for name in methods
            )
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU and Triton's interpreter, small sizes (for CI)")
    parser.add_argument("--output", type=Path, default=Path("gpu_check.json"), help="where the JSON result goes")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"
    else:
        os.environ.pop("TRITON_INTERPRET", None)  # compiled, as on a learner's GPU runtime
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU here; run with --dry-run to check the script on CPU", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    import triton  # after TRITON_INTERPRET is decided

    from solutions.flash_attention import flash_attention_forward, flash_attention_triton

    device = "cpu" if args.dry_run else "cuda"
    if args.dry_run:
        torch.set_num_threads(1)  # tiny tensors on a shared CPU
    correctness = check_correctness(
        flash_attention_triton,
        device,
        DRY_SHAPES if args.dry_run else SHAPES,
        ["float32"] if args.dry_run else ["float32", "float16"],
    )
    methods = {
        "triton": lambda q, k, v: flash_attention_triton(q, k, v),
        "sdpa": F.scaled_dot_product_attention,
        "tiled_pytorch": lambda q, k, v: flash_attention_forward(q, k, v, block_q=128, block_k=128)[0],
    }
    timings = time_methods(
        methods,
        device,
        [64] if args.dry_run else LENGTHS,
        "float32" if args.dry_run else "float16",
        repeats=1 if args.dry_run else 5,
        slices=2 if args.dry_run else 16,
    )
    result = {
        "mode": "dry run: CPU, Triton's interpreter" if args.dry_run else "GPU, compiled Triton",
        "device": "cpu" if args.dry_run else torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "correctness": correctness,
        "timings": timings,
        "all_correct": all(row["passed"] for row in correctness),
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{args.output}: {'every comparison passed' if result['all_correct'] else 'SOME COMPARISONS FAILED'}, {result['seconds']} s"
    )
    return 0 if result["all_correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
