"""Peak memory and time of attention against sequence length (chapter 7's figure).

    .venv/bin/python benchmarks/flash_attention.py                      # N = 512 .. 16384, d = 64
    .venv/bin/python benchmarks/flash_attention.py --lengths 512 1024   # a quick run

Methods: ``naive`` (chapter 2's attention, which builds the N x N weights), ``tiled``
(``solutions.flash_attention.flash_attention_forward``), ``sdpa``
(``torch.nn.functional.scaled_dot_product_attention``) and, on a CUDA GPU only, ``triton``
(``flash_attention_triton`` compiled; the CPU interpreter is far too slow to time).

On CPU each (method, N) runs in a fresh process: its peak resident memory (VmHWM, reset just
before the call through /proc/self/clear_refs) minus its resident memory before the call is
the memory the call needed, whatever allocated it (tensors, library scratch). On a GPU the
measure is ``torch.cuda.max_memory_allocated`` above the inputs. Time is the best of a few
calls. One batch element and one head, float32 on CPU, float16 on GPU. Prints a table and
saves the figure the book shows (``chapters/figures/flash_attention_benchmark.png``; the Chinese
edition's, labelled by ``autograder/figures.py``, as ``.zh.png``) and its figures (``.json`` beside
it), which chapter 7's prose quotes. ``--replot`` draws the figures again from that ``.json``
(after a change to the plot or to a label's translation) without measuring anything.
This is a benchmark, not a test: the full CPU run takes several minutes and about 5 GB of memory
(naive attention at N = 16384).
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE = ROOT / "chapters/figures/flash_attention_benchmark.png"
LENGTHS = [512, 1024, 2048, 4096, 8192, 16384]
CPU_METHODS = ["naive", "tiled", "sdpa"]
GPU_METHODS = ["naive", "tiled", "sdpa", "triton"]


def attention_function(method, block):
    """The attention call to measure: ``fn(q, k, v) -> output``."""
    import torch.nn.functional as F

    from solutions import attention, flash_attention

    return {
        "naive": lambda q, k, v: attention.scaled_dot_product_attention(q, k, v)[0],
        "tiled": lambda q, k, v: flash_attention.flash_attention_forward(q, k, v, block_q=block, block_k=block)[0],
        "sdpa": F.scaled_dot_product_attention,
        "triton": flash_attention.flash_attention_triton,
    }[method]


def best_time(fn, repeats, synchronize=lambda: None):
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def _kib(field):
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def measure_cpu(method, n, d, block, threads):
    """Runs in a fresh process: {"bytes": extra peak resident memory, "seconds": best time}."""
    import torch

    torch.set_num_threads(threads)
    fn = attention_function(method, block)
    q, k, v = (torch.randn(1, 1, n, d) for _ in range(3))
    fn(*(t[..., :256, :] for t in (q, k, v)))  # load kernels and lazy state before measuring
    before = _kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    fn(q, k, v)
    extra = max(0, _kib("VmHWM") - before) * 1024
    seconds = best_time(lambda: fn(q, k, v), repeats=3 if n <= 4096 else 1)
    return {"bytes": extra, "seconds": seconds}


def measure_gpu(method, n, d, block):
    import torch

    fn = attention_function(method, block)
    q, k, v = (torch.randn(1, 1, n, d, device="cuda", dtype=torch.float16) for _ in range(3))
    fn(q, k, v)  # compile (Triton) and warm up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn(q, k, v)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    return {"bytes": extra, "seconds": best_time(lambda: fn(q, k, v), 10, torch.cuda.synchronize)}


def run_cpu(method, n, args):
    """``measure_cpu`` in a fresh interpreter, so that one run's memory does not hide the next's."""
    command = [
        sys.executable,
        __file__,
        "--measure",
        method,
        str(n),
        "--d",
        str(args.d),
        "--block",
        str(args.block),
        "--threads",
        str(args.threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results, lengths):
    lines = []
    for (device, method), rows in results.items():
        for n in lengths:
            r = rows.get(n)
            if r is None:
                continue
            if "error" in r:
                lines.append(f"{device:4} {method:7} {n:6}  failed: {r['error']}")
                continue
            naive = results.get((device, "naive"), {}).get(n, {})
            share = f"{100 * r['bytes'] / naive['bytes']:6.2f}%" if naive.get("bytes") else "      -"
            lines.append(
                f"{device:4} {method:7} {n:6} {r['bytes'] / 2**20:10.1f} {share:>9} {1000 * r['seconds']:10.1f}"
            )
    header = f"{'':4} {'method':7} {'N':>6} {'peak MiB':>10} {'of naive':>9} {'ms':>10}"
    return "\n".join([header, *lines])


def saved(path: Path) -> tuple[dict, int]:
    """``(results, d)`` as a run saved them in the ``.json`` beside the figure ``path``."""
    saved = json.loads(path.with_suffix(".json").read_text())
    results = {}
    for row in saved["rows"]:
        device, method, n = row.pop("device"), row.pop("method"), row.pop("n")
        results.setdefault((device, method), {})[n] = row
    return results, saved["d"]


def save_figure(results, d, path: Path) -> list[Path]:
    """The figure at ``path`` in English, and beside it in each translated language (``.zh.png``)."""
    from autograder import figures
    from autograder.edition import TRANSLATED

    fig = plot(results, d)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    written = [path]
    for lang in TRANSLATED:
        missing = figures.translate(fig, lang)
        if missing:
            raise ValueError(f"no {lang} translation of the labels {missing} ({figures.catalogue_path(lang)})")
        written.append(path.with_suffix(f".{lang}.png"))
        fig.savefig(written[-1], dpi=120)
    return written


def plot(results, d):
    """Memory and time against N, a line per (device, method); returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_memory, ax_time) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {"naive": "C3", "tiled": "C0", "sdpa": "C2", "triton": "C1"}
    for (device, method), rows in results.items():
        ok = sorted((n, r) for n, r in rows.items() if "error" not in r)
        if not ok:
            continue
        ns = [n for n, _ in ok]
        style = dict(
            color=colors[method],
            marker="o" if device == "cpu" else "s",
            linestyle="-" if device == "cpu" else "--",
            label=f"{method} ({device})",
        )
        ax_memory.loglog(ns, [max(r["bytes"], 2**16) / 2**20 for _, r in ok], **style)
        ax_time.loglog(ns, [1000 * r["seconds"] for _, r in ok], **style)
    ax_memory.set(
        xlabel="sequence length N", ylabel="extra peak memory (MiB)", title=f"memory of one attention call (d={d})"
    )
    ax_time.set(xlabel="sequence length N", ylabel="milliseconds", title="time of one attention call")
    for ax in (ax_memory, ax_time):
        ax.set_xticks(sorted({n for rows in results.values() for n in rows}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(True, which="major", alpha=0.3)
    ax_memory.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    parser.add_argument("--d", type=int, default=64, help="head width (default 64)")
    parser.add_argument("--block", type=int, default=128, help="block_q = block_k of the tiled PyTorch version")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads per run (default 1: steady timings on a shared machine)"
    )
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--measure", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--replot", action="store_true", help="draw the figures again from the saved .json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    if args.replot:
        for path in save_figure(*saved(args.figure), args.figure):
            print(f"saved {path}")
        return 0

    if args.measure:  # the child process of run_cpu
        method, n = args.measure
        print(json.dumps(measure_cpu(method, int(n), args.d, args.block, args.threads)))
        return 0

    import torch

    results = {}
    for method in CPU_METHODS:
        rows = results.setdefault(("cpu", method), {})
        for n in args.lengths:
            rows[n] = run_cpu(method, n, args)
            print(f"cpu {method} N={n}: {rows[n]}", flush=True)
    if torch.cuda.is_available():
        for method in GPU_METHODS:
            rows = results.setdefault(("gpu", method), {})
            for n in args.lengths:
                try:
                    rows[n] = measure_gpu(method, n, args.d, args.block)
                except Exception as error:  # e.g. out of memory for naive at large N
                    rows[n] = {"error": f"{type(error).__name__}: {error}"[:200]}
                    torch.cuda.empty_cache()
                print(f"gpu {method} N={n}: {rows[n]}", flush=True)
    print(table(results, args.lengths))
    save_figure(results, args.d, args.figure)
    # The figures beside the plot: chapter 7's prose quotes them, and tests/test_chapter_claims.py holds it to them.
    rows = [
        {"device": device, "method": method, "n": n, **r}
        for (device, method), by_n in results.items()
        for n, r in sorted(by_n.items())
    ]
    args.figure.with_suffix(".json").write_text(
        json.dumps({"d": args.d, "block": args.block, "rows": rows}, indent=1) + "\n"
    )
    print(f"saved {args.figure.relative_to(ROOT) if args.figure.is_relative_to(ROOT) else args.figure} and its .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
