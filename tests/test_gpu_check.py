"""benchmarks/gpu_check.py, the compiled Triton check for a machine with a GPU, stays runnable: its
--dry-run takes the same steps on CPU in Triton's interpreter, and its comparisons catch wrong output."""

import importlib.util
import json
import math
import subprocess
import sys

from notebooks import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def test_dry_run_checks_and_times_the_kernel(tmp_path):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--output", str(tmp_path / "result.json")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["all_correct"] and result["mode"].startswith("dry run")
    rows = result["correctness"]
    assert (
        any(r["causal"] for r in rows) and any(r["n_q"] % 16 for r in rows) and any(r["n_q"] != r["n_k"] for r in rows)
    )
    assert all(r["max_error"] < 1e-5 for r in rows)
    assert {"triton_ms", "sdpa_ms", "tiled_pytorch_ms"} <= set(result["timings"][0])


def test_a_wrong_kernel_fails_its_rows():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)

    def unscaled(q, k, v, causal):  # forgets 1/sqrt(d)
        return gpu_check.reference(q * math.sqrt(q.shape[-1]), k, v, causal).to(q.dtype)

    def broken(q, k, v, causal):
        raise RuntimeError("tl.dot: Input shapes should have M >= 16")

    shapes = [((2,), 20, 20, 8, True)]
    assert all(r["passed"] for r in gpu_check.check_correctness(gpu_check.reference, "cpu", shapes, ["float32"]))
    assert not any(r["passed"] for r in gpu_check.check_correctness(unscaled, "cpu", shapes, ["float32"]))
    (row,) = gpu_check.check_correctness(broken, "cpu", shapes, ["float32"])
    assert not row["passed"] and "M >= 16" in row["error"]
