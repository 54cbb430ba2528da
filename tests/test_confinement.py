"""The holes of issue 12 that the sandbox closes, each attack reproduced against the real thing
(bubblewrap, control groups, the wire format) and shown contained: the score stays at the
honest baseline, other sandboxes go on, nothing is left behind on the host."""

import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import torch

from autograder import cgroups, confinement
from autograder.grading import grade_cells, submission_cells
from autograder.sandbox import SOLUTIONS, Limits, Sandbox
from autograder.student import Student, StudentError
from notebooks import CHAPTERS, student_notebook

LIMITS = Limits(call_seconds=20, setup_seconds=60, memory_bytes=4 << 30, processes=32)
ATTENTION = next(p for p in CHAPTERS if p.stem == "02_attention")
needs_bwrap = pytest.mark.skipif(
    confinement.bwrap() is None or os.geteuid() != 0, reason="needs bubblewrap (Debian package bubblewrap) and root"
)
needs_cgroups = pytest.mark.skipif(cgroups.available() is None, reason="needs a writable cgroup memory controller")


def value(sandbox, name):
    return sandbox.request({"op": "value", "name": name, "target": (name, [])})


def stub_cells():
    return submission_cells(student_notebook(ATTENTION))


def score(results):
    return sum(r.score for r in results)


@pytest.fixture
def planted():
    """Copies of the reference where a careless host keeps them (another course directory
    under /srv, world-writable /var/tmp) and a gradebook beside one, removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    folders = [Path(f"/srv/autograder-test-{tag}"), Path(f"/var/tmp/autograder-test-{tag}")]
    for folder in folders:
        shutil.copytree(SOLUTIONS, folder / "solutions")
        (folder / "gradebook.db").write_bytes(b"SQLite format 3\0grades")
        folder.chmod(0o755)
    yield folders
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@needs_bwrap
def test_a_copy_of_the_reference_elsewhere_on_the_host_is_not_there(planted):
    """Hole 1: the sandbox's root is an allow-list. A submission that executes a copy of the
    reference found on disk scores what the stub scores, and sees none of the host's files."""
    steal = "".join(
        f"""
try:
    exec(open({str(folder / "solutions" / "attention.py")!r}).read())
except OSError:
    pass
"""
        for folder in planted
    )
    limits = Limits(call_seconds=20, setup_seconds=60)
    baseline = score(grade_cells(stub_cells(), "02_attention", limits=limits))
    attacked = grade_cells([*stub_cells(), steal], "02_attention", limits=limits)
    assert score(attacked) == baseline == 0
    with Sandbox(LIMITS) as box:
        box.run_cells(
            [
                f"""
import os
seen = {{path: os.path.exists(path) for path in {[str(f) for f in planted]!r} + [
    {str(SOLUTIONS)!r}, "/work", "/home", "/etc", "/srv", "/root/.cache", {str(Path.cwd())!r}]}}
top = sorted(os.listdir("/"))
"""
            ]
        )
        assert not any(value(box, "seen").values()), value(box, "seen")
        assert set(value(box, "top")) <= {
            "dev",
            "lib",
            "lib64",
            "proc",
            "python",
            "root",
            "run",
            "tmp",
            "usr",
            "var",
        }, value(box, "top")


@needs_bwrap
def test_files_left_in_world_writable_folders_are_gone_for_the_next_submission():
    """Hole 6: /tmp, /var/tmp, /run/lock and /dev/shm are private and fresh per sandbox: what
    one submission plants there, the next one (and one running beside it) does not find, and
    the host never had it."""
    folders = ["/tmp", "/var/tmp", "/run/lock", "/dev/shm", "/run"]
    name = f"planted-{uuid.uuid4().hex[:8]}.py"
    plant = f"""
import os
planted = []
for folder in {folders!r}:
    try:
        os.makedirs(folder, exist_ok=True)
        open(os.path.join(folder, {name!r}), "w").write("def softmax(x, dim=-1):\\n    return x.softmax(dim)\\n")
        planted.append(folder)
    except OSError:
        pass
"""
    look = f"import os\nfound = [f for f in {folders!r} if os.path.exists(os.path.join(f, {name!r}))]"
    with Sandbox(LIMITS) as first, Sandbox(LIMITS) as beside:
        first.run_cells([plant])
        assert len(value(first, "planted")) == len(folders)  # the attack itself works inside
        beside.run_cells([look])
        assert value(beside, "found") == []
    with Sandbox(LIMITS) as later:
        later.run_cells([look])
        assert value(later, "found") == []
    assert not [f for f in folders if os.path.exists(os.path.join(f, name))]


ALLOCATE = """
import os, time
def hog(mib):
    '''Three processes (this one and two children), each touching mib MiB; returns how
    many got all of theirs.'''
    ready = []
    for _ in range(2):
        read, write = os.pipe()
        if os.fork() == 0:
            block = b"x" * (mib << 20)
            os.write(write, b"1")
            time.sleep(60)
            os._exit(0)
        os.close(write)
        ready.append(read)
    block = b"x" * (mib << 20)
    return 1 + sum(len(os.read(r, 1)) for r in ready)
"""


@needs_cgroups
def test_memory_is_capped_per_sandbox_not_per_process():
    """Hole 8: three processes of 1.5 GiB each under a 3 GiB sandbox: they cannot all get it;
    that sandbox (only) is stopped, with a message about memory, while another sandbox
    computing at the same time is unaffected."""
    limits = Limits(call_seconds=60, setup_seconds=60, memory_bytes=3 << 30, processes=16)
    with Sandbox(limits) as hog, Sandbox(LIMITS) as honest:
        assert hog.isolation["cgroup"] in ("v1", "v2")
        groups = list(hog.group.folders)
        hog.run_cells([ALLOCATE])
        honest.run_cells(["import torch\ndef work(x):\n    return (x @ x.T).sum()"])
        x = torch.randn(64, 64)
        answers, stop = [], threading.Event()

        def keep_working():
            while not stop.is_set():
                answers.append(torch.allclose(Student(honest, "work")(x), (x @ x.T).sum()))

        worker = threading.Thread(target=keep_working)
        worker.start()
        try:
            with pytest.raises(StudentError) as stopped:
                Student(hog, "hog")(1536)
        finally:
            stop.set()
            worker.join()
        assert "used more memory than the sandbox allows (3072 MiB" in str(stopped.value)
        assert "time" not in str(stopped.value)
        assert not hog.running and honest.running
        assert answers and all(answers)
        assert torch.allclose(Student(honest, "work")(x), (x @ x.T).sum())
    assert groups and not any(folder.exists() for folder in groups)  # removed with the sandbox
    with Sandbox(limits) as fits:  # the same code within the cap: all three get their memory
        fits.run_cells([ALLOCATE])
        assert Student(fits, "hog")(512) == 3


FORGE = r"""
import json, os, stat, struct
def frame(message_id, value):
    head = json.dumps({"id": message_id, "value": value, "tensors": []}).encode()
    return b"AGW1" + struct.pack("<IQ", len(head), 0) + head
def channel():
    found = []
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            if fd > 2 and stat.S_ISSOCK(os.fstat(fd).st_mode):
                found.append(fd)
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return found
"""


def test_extra_replies_are_not_read_as_answers_to_later_calls():
    """Hole 11: learner code that writes replies of its own to the grader's channel (well
    formed, with guessed ids, saying the next function returned the right answer) gets
    none of them accepted: the call fails with the reason, and no later call is answered."""
    with Sandbox(LIMITS) as box:
        box.run_cells(
            [
                FORGE
                + """
def first():
    for fd in channel():
        for guess in ("0" * 32, "1", "hello", ""):
            os.write(fd, frame(guess, {"dict": {"ok": True, "value": 42}}))
    return 1
def second():
    return 0
"""
            ]
        )
        with pytest.raises(StudentError, match="reply to no request"):
            Student(box, "first")()
        with pytest.raises(StudentError, match="reply to no request"):
            Student(box, "second")()
        assert not box.running


def test_a_forged_giant_or_nested_reply_is_refused_before_the_grader_allocates():
    """Hole 5: a reply that announces gigabytes, a decompression bomb (torch.save of a
    compressible 1 GiB tensor, what the old format inflated), or deeply nested data is
    refused without the grader's memory growing."""
    attacks = {
        "announces 64 GiB": "os.write(fd, b'AGW1' + struct.pack('<IQ', 100, 64 << 30))",
        "header of 4 GiB": "os.write(fd, b'AGW1' + struct.pack('<IQ', (1 << 32) - 1, 0))",
        "zip bomb": "import io, zipfile\nbuffer = io.BytesIO()\n"
        "with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_DEFLATED) as bomb:\n"
        "    bomb.writestr('archive/data/0', bytes(256 << 20))\n"
        "os.write(fd, buffer.getvalue())",
        "nested": "nested = '[' * 100_000 + ']' * 100_000\n"
        'head = (\'{"id": "x", "tensors": [], "value": \' + nested + \'}\').encode()\n'
        "os.write(fd, b'AGW1' + struct.pack('<IQ', len(head), 0) + head)",
    }
    for label, attack in attacks.items():
        with Sandbox(LIMITS) as box:
            box.run_cells(
                [
                    FORGE
                    + "def f():\n    fd = channel()[0]\n"
                    + "".join(f"    {line}\n" for line in attack.splitlines())
                    + "    return 1"
                ]
            )
            Path("/proc/self/clear_refs").write_text("5")  # resets this process's peak memory
            before = _peak_rss()
            with pytest.raises(StudentError, match="refuses") as refused:
                Student(box, "f")()
            assert _peak_rss() - before < 64 << 20, label
            assert "MiB" in str(refused.value) or "JSON" in str(refused.value) or "format" in str(refused.value)


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmHWM")


def test_autograde_refuses_to_run_without_bubblewrap(tmp_path):
    """Where bwrap is missing, the instructor's command stops with the package to install
    (exit status 2) instead of grading unconfined."""
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    run = subprocess.run(
        # a course seed given, so that the missing sandbox, not the missing seed, is what stops it
        [sys.executable, "-m", "autograder", "autograde", "02_attention", "--course", str(tmp_path), "--seed", "12345"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": str(bin_folder)},
    )
    assert run.returncode == 2 and "bubblewrap" in run.stderr and "--unconfined-i-trust-every-submission" in run.stderr


@needs_bwrap
def test_the_course_distribution_is_not_in_the_sandbox():
    """The environment's site-packages are bound entry by entry, without this course's own
    distribution (its packages, or the editable install's finder and .pth)."""
    hidden = set().union(*(confinement.course_entries(site) for site in confinement.site_folders()))
    assert any(name.endswith(".dist-info") for name in hidden)
    with Sandbox(LIMITS) as box:
        box.run_cells(
            [
                "import os, sys\nentries = sorted(e for p in sys.path if p.startswith('/python/site')"
                " for e in os.listdir(p))",
                "import torch, numpy, matplotlib",
            ]
        )
        entries = set(value(box, "entries"))
    assert entries and "torch" in entries and not entries & hidden
