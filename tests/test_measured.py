"""Memory and CPU time measured from outside the learner's process (``Student.measured``), in
every backend: the sandbox (its control group, read by the grader), the learner's kit (the
child's ``/proc`` files, read by the parent) and a grade cell (the kernel measuring itself).
And the design's promise: switching the in-process recorders off costs an honest answer no
point and gains a dishonest one none, because points come only from what is measured outside."""

import pytest
from corpus.flash_attention import NUMPY_ATTENTION
from grade_paths import answer_cell_id, cells_of, kernel_verdict, sandbox_verdict, write_submission

from autograder import cgroups
from autograder.chapters import BY_TOPIC
from autograder.local import LocalProcess
from autograder.sandbox import Limits, Sandbox
from autograder.student import KernelBackend, Student

MIB = 1 << 20
CELLS = [
    "import time, torch\n"
    "def allocate(mib):\n"
    "    x = torch.ones(mib * 262144)\n"  # float32: 4 bytes each
    "    return float(x.sum())\n"
    "SCORES = torch.zeros(16 << 20)  # 64 MiB, resident before any call\n"
    "def fill():\n"
    "    SCORES.add_(1.0)\n"
    "    return float(SCORES[-1])\n"
    "def spin(seconds):\n"
    "    end = time.process_time() + seconds\n"
    "    while time.process_time() < end:\n"
    "        pass\n"
    "    return seconds\n"
]


@pytest.fixture(params=["sandbox", "kit", "kernel"])
def backend(request):
    if request.param == "kernel":
        namespace = {"__name__": "__main__"}
        exec(CELLS[0], namespace)
        yield KernelBackend(namespace)
        return
    process = Sandbox(Limits(memory_bytes=2 << 30)) if request.param == "sandbox" else LocalProcess()
    process.start()
    try:
        assert process.run_cells(CELLS) == [None]
        yield process
    finally:
        process.close()


def test_peak_memory_and_cpu_time_of_one_call(backend):
    if isinstance(backend, Sandbox) and (backend.group is None or cgroups.available() is None):
        pytest.skip("this host gives the grader no control group")
    allocate, spin = Student(backend, "allocate"), Student(backend, "spin")
    allocate(8)  # first call: whatever it costs once is not measured below
    value, big = allocate.measured(200)
    _, small = allocate.measured(4)
    _, busy = spin.measured(0.3)
    assert value == 200 * 262144 and big.unavailable is None
    assert 190 * MIB <= big.peak_bytes <= 260 * MIB, big
    assert small.peak_bytes <= 24 * MIB, small
    assert 0.25 <= busy.cpu_seconds <= 1.5, busy
    assert small.cpu_seconds < 0.25, small


READ_THROUGH_MEMORY = (
    "import mmap, os, tempfile\n"
    "FILE = tempfile.TemporaryFile()\n"
    "FILE.write(bytes(64 << 20))\n"
    "FILE.flush()\n"
    "os.fsync(FILE.fileno())  # on disk: clean pages, as a library's are\n"
    "PAGES = mmap.mmap(FILE.fileno(), 0, access=mmap.ACCESS_READ)  # mapped, none of it read yet\n"
    "def read_mapped():\n"
    "    return sum(PAGES[::4096])\n"
)


@pytest.mark.parametrize("where", ["kit", "kernel"])
def test_pages_of_a_file_read_through_memory_are_not_the_calls_memory(where):
    """The kit and a grade cell measure a process's resident memory: the pages of files it maps and
    only reads (its libraries' code, faulted in by a first call or again after the system reclaimed
    them) are not counted, what it allocates is."""
    if where == "kernel":
        namespace = {"__name__": "__main__"}
        exec(CELLS[0] + READ_THROUGH_MEMORY, namespace)
        backend = KernelBackend(namespace)
    else:
        backend = LocalProcess()
        backend.start()
        assert backend.run_cells([CELLS[0] + READ_THROUGH_MEMORY]) == [None]
    try:
        value, read = Student(backend, "read_mapped").measured()
        _, allocated = Student(backend, "allocate").measured(64)
    finally:
        if where == "kit":
            backend.close()
    assert value == 0 and read.peak_bytes <= 8 * MIB, read
    assert allocated.peak_bytes >= 60 * MIB, allocated


def test_memory_made_before_the_call_and_used_in_it_counts(backend):
    """A buffer made before the call is resident already: filling it costs the call's peak nothing,
    but the pages it touched are counted; a call that allocates and frees is not charged for them."""
    if isinstance(backend, Sandbox) and (backend.group is None or cgroups.available() is None):
        pytest.skip("this host gives the grader no control group")
    fill, allocate = Student(backend, "fill"), Student(backend, "allocate")
    value, filled = fill.measured()
    _, allocated = allocate.measured(64)
    assert value == 1.0 and filled.peak_bytes <= 8 * MIB, filled
    assert filled.touched_bytes >= 62 * MIB, filled
    assert allocated.peak_bytes >= 62 * MIB and allocated.touched_bytes <= 16 * MIB, allocated


RESET_BITS = (
    "    LIBC.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: its /proc files become its own\n"
    "    try:\n"
    "        open('/proc/self/clear_refs', 'w').write('1')\n"
    "    except OSError:\n"
    "        pass\n"
)


def _fill_then(hide: str) -> str:
    """The body of a call that fills a 64 MiB buffer made before it, then hides that it did."""
    return "    global SCORES\n    SCORES.add_(1.0)\n" + hide + "    return 1\n"


HIDING = {  # the body of `hide`
    "resets its pages' accessed bits": _fill_then(RESET_BITS),
    "ages the pages (MADV_COLD)": _fill_then("    advise(20)\n"),
    "pages them out (MADV_PAGEOUT)": _fill_then("    advise(21)\n"),
    "marks them clean (MADV_FREE)": _fill_then("    advise(8)\n"),
    "frees the buffer": _fill_then("    SCORES = None\n"),
    "fills it from a process it forks": "    return fork_and_fill(stay=False)\n",
    "fills it from a process it forks and leaves running": "    return fork_and_fill(stay=True)\n",
}
HIDING_CELL = (
    "import ctypes, mmap, os, time, torch\n"
    "LIBC = ctypes.CDLL(None)\n"
    "SCORES = torch.zeros(16 << 20)  # 64 MiB, resident before any call\n"
    "def advise(advice):  # on the buffer's whole pages\n"
    "    start = (SCORES.data_ptr() + 4095) & ~4095\n"
    "    LIBC.madvise(ctypes.c_void_p(start), ctypes.c_size_t(SCORES.numel() * 4 - 8192), advice)\n"
    "SHARED = mmap.mmap(-1, 64 << 20)  # shared with the processes it forks\n"
    "SHARED.write(bytes(64 << 20))\n"
    "ONES = b'\\x01' * (64 << 20)\n"
    "def fork_and_fill(stay):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:  # the child writes the buffer through its own page tables\n"
    "        SHARED[:] = ONES\n"
    "        time.sleep(60 if stay else 0)\n"
    "        os._exit(0)\n"
    "    if not stay:\n"
    "        os.waitpid(pid, 0)\n"
    "    else:\n"
    "        while SHARED[-1] != 1:\n"
    "            time.sleep(0.01)\n"
    "    return SHARED[-1]\n"
)


@pytest.mark.parametrize("how", list(HIDING))
def test_a_call_cannot_hide_the_memory_it_touched_in_the_sandbox(how):
    """In the sandbox a call that fills a buffer made beforehand is charged for it whatever it does
    after: its process cannot reset its pages' bits (Landlock, seccomp), a buffer it frees counts as
    given back, and a process it started is measured too. (The kit's child and a grade cell's kernel
    keep these powers: their figures are advice.)"""
    with Sandbox(Limits(memory_bytes=2 << 30)) as box:
        if box.group is None or cgroups.available() is None:
            pytest.skip("this host gives the grader no control group")
        if box.isolation["page_bits_unguarded"]:
            pytest.skip(f"the child's page bits cannot be guarded here: {box.isolation['page_bits_unguarded']}")
        box.run_cells([HIDING_CELL + "def hide():\n" + HIDING[how]])
        value, measurement = Student(box, "hide").measured()
    assert value == 1 and measurement.touched_bytes >= 60 * MIB, measurement


def test_without_a_control_group_the_sandbox_says_so_and_grades_on(monkeypatch):
    """A host without writable cgroups: the measurement is unavailable, with the reason, and the
    measured sub-check is not passed (no points for what was not measured), nothing crashes."""
    monkeypatch.setattr(cgroups, "create", lambda *args, **kwargs: None)
    with Sandbox(Limits()) as box:
        box.run_cells(CELLS)
        value, measurement = Student(box, "allocate").measured(4)
    assert value == 4 * 262144 and measurement.peak_bytes is None
    assert "no control group" in measurement.unavailable


FORWARD = BY_TOPIC["flash_attention"]
TILED = """
def _attention(q, k, v, causal, block_q, block_k):
    n_q, n_k, scale = q.shape[-2], k.shape[-2], q.shape[-1] ** -0.5
    outputs, lses = [], []
    for q0 in range(0, n_q, block_q):
        qb = q[..., q0 : q0 + block_q, :]
        rows = torch.arange(q0, q0 + qb.shape[-2])[:, None]
        top = torch.full(qb.shape[:-1], float("-inf"), dtype=q.dtype)
        total, acc = torch.zeros_like(top), q.new_zeros(*qb.shape[:-1], v.shape[-1])
        for k0 in range(0, n_k, block_k):
            if causal and k0 > q0 + qb.shape[-2] - 1:
                break
            s = qb @ k[..., k0 : k0 + block_k, :].transpose(-2, -1) * scale
            if causal:
                s = s.masked_fill(torch.arange(k0, k0 + s.shape[-1])[None, :] > rows, float("-inf"))
            new_top = torch.maximum(top, s.amax(-1))
            p = torch.exp(s - new_top[..., None])
            shrink = torch.exp(top - new_top)
            total = total * shrink + p.sum(-1)
            acc = acc * shrink[..., None] + p @ v[..., k0 : k0 + block_k, :]
            top = new_top
        outputs.append(acc / total[..., None])
        lses.append(top + total.log())
    return torch.cat(outputs, -2), torch.cat(lses, -1)
"""
FULL = """
def _attention(q, k, v, causal, block_q, block_k):
    s = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v, s.logsumexp(-1)
"""
HIDDEN = {  # ways to hide a call from the recorders in the learner's process: (before, body of the answer)
    "DisableTorchFunction": (
        "",
        "    with torch._C.DisableTorchFunction():\n        return _attention(q, k, v, causal, block_q, block_k)\n",
    ),
    "a worker thread": (
        "import concurrent.futures\n",
        "    with concurrent.futures.ThreadPoolExecutor(1) as pool:\n"
        "        return pool.submit(_attention, q, k, v, causal, block_q, block_k).result()\n",
    ),
    "code compiled under torch's file name": (
        'exec(compile(_SOURCE, torch.__file__, "exec"), globals())\n',
        "    return _attention(q, k, v, causal, block_q, block_k)\n",
    ),
}


def _answer(hidden: str, full: bool) -> str:
    before, body = HIDDEN[hidden]
    attention = FULL if full else TILED
    defined = f"_SOURCE = {attention!r}\n" if "_SOURCE" in before else attention
    return (
        "import torch\n"
        + defined
        + before
        + "\n\ndef flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):\n"
        + body
    )


@pytest.mark.parametrize("hidden", list(HIDDEN))
@pytest.mark.parametrize("full", [False, True], ids=["tiled", "full attention"])
def test_a_switched_off_recorder_costs_no_points_and_gains_none(hidden, full, tmp_path):
    """A tiled answer that hides from the recorders keeps its points (the advice cannot see it,
    and costs nothing anyway); full attention that hides loses the measured points in both paths."""
    path = write_submission(
        FORWARD, {answer_cell_id(FORWARD, "flash_attention_forward"): _answer(hidden, full)}, tmp_path / "07.ipynb"
    )
    cells = cells_of(path)
    for verdict in (
        sandbox_verdict(cells, FORWARD, ["flash_attention_forward"]),
        kernel_verdict(cells, FORWARD, ["flash_attention_forward"])[0],
    ):
        passed, _, message = verdict["flash_attention_forward", "never_materializes_scores"]
        assert passed != full, message
        if full:
            assert "MiB of memory beyond what it held" in message, message
        lost = [check for (_, check), (ok, _, _) in verdict.items() if not ok and check != "never_materializes_scores"]
        assert set(lost) <= {"tile_by_tile_in_pytorch"}, lost


def test_numpy_attention_behind_a_switch_loses_the_measured_points_in_the_sandbox(tmp_path):
    """NumPy attention behind ``DisableTorchFunction``: the recorders see nothing, the sandbox's
    control group sees the N x N matrix."""
    answer = NUMPY_ATTENTION + (
        "\n\ndef flash_attention_forward(q, k, v, causal=False, block_q=64, block_k=64):\n"
        "    with torch._C.DisableTorchFunction():\n"
        "        qn, kn, vn = (t.detach().numpy() for t in (q, k, v))\n"
        "    p, lse = _attention(qn, kn, vn, causal)\n"
        "    return torch.from_numpy(p @ vn), torch.from_numpy(lse)\n"
    )
    path = write_submission(
        FORWARD, {answer_cell_id(FORWARD, "flash_attention_forward"): answer}, tmp_path / "07.ipynb"
    )
    verdict = sandbox_verdict(cells_of(path), FORWARD, ["flash_attention_forward"])
    passed, score, message = verdict["flash_attention_forward", "never_materializes_scores"]
    assert not passed and score == 0 and "the sandbox's control group" in message, message
