"""What learner code can do inside the grading sandbox, and what it cannot: each test runs
hostile code in a real sandbox (fork server under bubblewrap, namespaces, unprivileged uid,
limits) and checks that the grader, the course directory and other sandboxes are unharmed.
The holes of issue 12 that the sandbox closes have their own tests in test_confinement.py."""

import os
import signal
import socket
import time
from pathlib import Path

import pytest
import torch

from autograder.sandbox import SOLUTIONS, Limits, Sandbox, fork_server
from autograder.student import Student, StudentError

LIMITS = Limits(call_seconds=15, setup_seconds=30, memory_bytes=4 << 30, processes=32)
ROOT = os.geteuid() == 0
REPOSITORY = SOLUTIONS.parent


def value(sandbox, name):
    return sandbox.request({"op": "value", "name": name, "target": (name, [])})


@pytest.fixture
def sandbox():
    with Sandbox(LIMITS) as box:
        yield box


@pytest.fixture
def course(tmp_path):
    """A stand-in course directory: a gradebook and a submission."""
    (tmp_path / "gradebook.db").write_bytes(b"grades")
    (tmp_path / "submitted").mkdir()
    (tmp_path / "submitted" / "alice.ipynb").write_text("{}")
    return tmp_path


def isolated(sandbox, what):
    if not sandbox.isolation.get(what):
        pytest.skip(f"{what} isolation is not available here (needs root and Linux namespaces)")


def test_isolation_in_force_when_root(sandbox):
    if not ROOT:
        pytest.skip("the grader does not run as root: no separate uid")
    assert sandbox.isolation["confinement"] == "bwrap"
    assert sandbox.isolation["network"] and sandbox.isolation["pid_namespace"] and sandbox.isolation["private_tmp"]
    solutions = str(REPOSITORY / "solutions")
    sandbox.run_cells(
        [f"import os\nme = os.getuid()\nseen = os.listdir({solutions!r}) if os.path.isdir({solutions!r}) else []"]
    )
    assert value(sandbox, "me") == sandbox.isolation["uid"] != 0
    assert value(sandbox, "seen") == []


def test_no_network_not_even_loopback(sandbox):
    isolated(sandbox, "network")
    server = socket.create_server(("127.0.0.1", 0))
    try:
        port = server.getsockname()[1]
        errors = sandbox.run_cells([f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)"])
    finally:
        server.close()
    assert errors[0] is not None and errors[0].startswith(("OSError", "ConnectionRefusedError")), errors


def test_course_and_references_are_hidden_and_unwritable(course):
    with Sandbox(LIMITS) as box:
        isolated(box, "private_tmp")
        box.run_cells(
            [
                f"""
import os, shutil
outcomes = {{}}
for what, action in [
    ("write gradebook", lambda: open({str(course / "gradebook.db")!r}, "wb").write(b"0")),
    ("delete gradebook", lambda: os.remove({str(course / "gradebook.db")!r})),
    ("delete submissions", lambda: shutil.rmtree({str(course / "submitted")!r})),
    ("new file in course", lambda: open({str(course / "x")!r}, "w").write("x")),
    ("read reference", lambda: open({str(REPOSITORY / "solutions" / "attention.py")!r}).read()),
    ("read checks", lambda: open({str(REPOSITORY / "autograder" / "checks" / "attention.py")!r}).read()),
]:
    try:
        action()
        outcomes[what] = "done"
    except OSError as error:
        outcomes[what] = type(error).__name__
"""
            ]
        )
        outcomes = value(box, "outcomes")
    assert "done" not in outcomes.values(), outcomes
    assert (course / "gradebook.db").read_bytes() == b"grades"
    assert (course / "submitted" / "alice.ipynb").exists() and not (course / "x").exists()


def test_references_and_checks_cannot_be_imported(sandbox):
    errors = sandbox.run_cells(
        [
            "import autograder",
            "from solutions.attention import softmax",
            "import autograder.checks.attention",
            "import __editable___transformers_graded_0_1_0_finder as finder\nfinder.install()\nimport solutions.attention",
        ]
    )
    assert all(e and ("ModuleNotFoundError" in e or "ImportError" in e) for e in errors), errors


def test_killing_the_grader_or_other_sandboxes_fails(sandbox):
    with Sandbox(LIMITS) as other:
        other.run_cells(["import os\npid = os.getpid()"])
        sandbox.run_cells(
            [
                f"""
import os, signal
for target in (os.getppid(), {os.getpid()}, -1, 0):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass
for entry in os.listdir('/proc'):
    if entry.isdigit() and int(entry) != os.getpid():
        try:
            os.kill(int(entry), signal.SIGKILL)
        except OSError:
            pass
"""
            ]
        )
        assert value(other, "pid") is not None  # the other sandbox still answers
    if sandbox.isolation["pid_namespace"]:  # it could not even kill itself (init of its namespace)
        assert value(sandbox, "signal") is signal.SIGKILL or value(sandbox, "target") == 0


def test_a_fork_bomb_stops_at_the_process_limit_and_is_cleaned_up():
    with Sandbox(LIMITS) as box:
        if box.isolation["uid"] is None:
            pytest.skip("the process limit needs a separate uid (root)")
        box.run_cells(
            [
                """
import os, time
forked = 0
try:
    while forked < 10_000:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        forked += 1
except OSError as error:
    stopped = type(error).__name__
"""
            ]
        )
        assert value(box, "forked") < LIMITS.processes and value(box, "stopped") == "BlockingIOError"
        uid = box.isolation["uid"]
    deadline = time.monotonic() + 10  # killed at close; a loaded machine takes a moment to reap them
    while (
        left := [p for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) == uid]
    ) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes of the sandbox uid survived 10 s after it closed: {left}"


def _uid_of(pid):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def test_exit_in_a_cell_does_not_end_grading(sandbox):
    errors = sandbox.run_cells(["import sys\nsys.exit(0)", "raise SystemExit(3)", "x = 1"])
    assert "SystemExit" in errors[0] and "SystemExit" in errors[1] and errors[2] is None
    assert value(sandbox, "x") == 1


def test_os_exit_is_reported_not_crashed(sandbox):
    sandbox.run_cells(["import os\ndef f():\n    os._exit(3)"])
    with pytest.raises(StudentError, match="exit code 3"):
        Student(sandbox, "f")()
    with pytest.raises(StudentError, match="exit code 3"):  # and stays reported
        Student(sandbox, "f")()


def test_an_infinite_loop_hits_the_wall_clock():
    with Sandbox(Limits(call_seconds=3, setup_seconds=30)) as box:
        box.run_cells(["def f():\n    while True:\n        pass"])
        start = time.monotonic()
        with pytest.raises(StudentError, match="longer than 3 s"):
            Student(box, "f")()
        assert time.monotonic() - start < 15


def test_a_huge_allocation_fails_inside_the_sandbox(sandbox):
    errors = sandbox.run_cells(
        [
            "import torch\nx = torch.ones(2 ** 31)",  # 8 GiB, over the 4 GiB limit
            "blob = bytearray(8 << 30)",
            "y = 2",
        ]
    )
    assert "RuntimeError" in errors[0] or "MemoryError" in errors[0], errors
    assert "MemoryError" in errors[1] and errors[2] is None and value(sandbox, "y") == 2


def test_an_output_flood_goes_nowhere(sandbox):
    log = Path(fork_server().log)
    size, start = log.stat().st_size, time.monotonic()
    errors = sandbox.run_cells(
        [
            "import os, sys\nfor _ in range(20_000):\n    print('x' * 1000)\n"
            "    sys.stderr.write('y' * 1000)\n    os.write(2, b'z' * 1000)"
        ]
    )
    assert errors == [None] and time.monotonic() - start < 60
    assert log.stat().st_size == size  # not even into the fork server's log


def test_replies_are_plain_tensors_whatever_the_code_returns(sandbox):
    sandbox.run_cells(
        [
            """
import torch
class Liar(torch.Tensor):
    def __eq__(self, other):
        return torch.ones(self.shape, dtype=torch.bool)
class Hijacker(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return True
class Anything:
    def __eq__(self, other):
        return True
def subclass():
    return torch.zeros(3).as_subclass(Liar)
def hijacker():
    return torch.zeros(3).as_subclass(Hijacker)
def anything():
    return Anything()
"""
        ]
    )
    for name in ("subclass", "hijacker"):
        result = Student(sandbox, name)()
        assert type(result) is torch.Tensor and not torch.allclose(result, torch.ones(3))
    handle = Student(sandbox, "anything")()
    assert isinstance(handle, Student) and not isinstance(handle, torch.Tensor)


def test_a_forged_reply_is_refused_not_unpickled(sandbox, tmp_path):
    """Learner code that writes its own reply to the grader's channel (here: a pickle that
    would run a command when loaded) gets it refused; nothing is ever unpickled."""
    marker = tmp_path / "pwned"
    sandbox.run_cells(
        [
            f"""
import os, pickle, stat
class Evil:
    def __reduce__(self):
        return (os.system, ("touch {marker}",))
def f():
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.write(fd, pickle.dumps(Evil()))
        except OSError:
            pass
    return 1
"""
        ]
    )
    with pytest.raises(StudentError, match="refuses"):
        Student(sandbox, "f")()
    assert not marker.exists()


def test_writes_go_to_a_private_size_limited_scratch(sandbox):
    isolated(sandbox, "private_tmp")
    errors = sandbox.run_cells(
        [
            "import os\nhome = os.getcwd()\nopen('out.txt', 'w').write('x')\nlisting = os.listdir('/tmp')",
            "open('/tmp/big', 'wb').write(b'0' * (300 << 20))",
        ]
    )  # over the scratch size
    assert errors[0] is None and errors[1] is not None and errors[1].startswith("OSError"), errors
    assert value(sandbox, "home").startswith("/tmp/") and sorted(value(sandbox, "listing")) == ["given", "home"]


def test_the_child_is_gone_after_close():
    box = Sandbox(LIMITS)
    box.start()
    box.run_cells(["import os\npid = os.getpid()"])
    box.close()
    assert box.exit_status is not None and os.WIFSIGNALED(box.exit_status)
    assert os.WTERMSIG(box.exit_status) == signal.SIGKILL
