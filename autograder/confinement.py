"""The confinement of learner code: a fork server under bubblewrap, one confined child per sandbox.

What a sandboxed child sees (``python -m autograder autograde`` on Linux with ``bwrap``,
Debian package ``bubblewrap``):

- read-only: the Python installation (``sys.base_prefix``), the site-packages folders of the
  grader's environment *entry by entry, without the course's own distribution* (no
  ``autograder``, ``solutions`` or editable-install finder), ``/usr/lib`` and ``/usr/lib64``
  (the C libraries Python and torch load), this module with :mod:`autograder.protocol`,
  :mod:`autograder.wire`, :mod:`autograder.heap` and :mod:`autograder.page_guard` (copied into a
  private folder), and the earlier chapters' reference modules it is given (as
  ``solutions.<topic>``), and matplotlib's font list
  (``/python/cache``, which only the server, before any child, writes);
- a fresh ``/proc`` of its own pid namespace and a minimal ``/dev``;
- its own empty, size-limited tmpfs on ``/tmp`` (its working directory), ``/var/tmp``,
  ``/dev/shm`` and ``/run``, made anew for every child: nothing one submission writes is
  there for the next;
- no network (not even a loopback shared with other sandboxes), its own pid, IPC and UTS
  namespaces, a uid of its own with no capabilities and ``no_new_privs``;
- no writing under ``/proc`` and no ``madvise`` that ages or cleans pages
  (:mod:`autograder.page_guard`): its calls cannot hide the memory they touched.

Nothing else of the host exists inside: not ``/work``, ``/home``, ``/etc``, ``/srv``, the
rest of ``/usr`` or of the folders that hold Python (``/root``), the course directory, its
gradebook, the checks or any copy of the references.

How: the grader starts this file as a *fork server* (``python -I -S`` with the bootstrap of
:func:`bootstrap`) under ``bwrap`` with the allow-list above (:func:`bwrap_command`),
keeping only the capabilities the per-child setup needs. The server imports torch and the
libraries chapters use once, then per sandbox forks a *watcher*, which enters new mount,
pid, network, IPC and UTS namespaces and forks the *child*. The child joins its sandbox's
control groups (descriptors the grader passes; see :mod:`autograder.cgroups`), mounts its
private folders, sets its limits, drops to its uid and serves requests
(:func:`autograder.protocol.serve`). The watcher never runs learner code: it kills the
child's whole pid namespace when the grader asks or goes away, and reports how it ended.

Without ``bwrap`` (the explicit, unconfined opt-out, or a learner grading their own
notebook) the same server runs directly on the host: the host's files are visible, and
only the limits, the control groups and (as root) the namespaces hold, and the child keeps
the grader's uid (another could not read a Python installed under ``/root``);
:attr:`autograder.sandbox.Sandbox.isolation` says which.

The host side (:class:`ForkServer` and the command it runs) imports only the standard library,
so that ``python -m autograder grade`` starts the server before it imports torch itself: the two
imports of torch then overlap. The server imports torch, with this package's protocol and wire
modules, when it starts (:func:`serve_forks`), once, before any fork.
"""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

DISTRIBUTION = "transformers-graded"  # this course's, as pyproject.toml names it
PRIVATE = ("/tmp", "/var/tmp", "/dev/shm", "/run")  # a fresh tmpfs for each child
LIBRARIES = ("/usr/lib", "/usr/lib64")
INSIDE_SITE = "/python/site-packages"  # where the environment's site-packages appear inside
INSIDE_LIB = "/python/grader"  # this module and the protocol's, copied
INSIDE_CACHE = "/python/cache"  # matplotlib's font list, written by the server (root) only
CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL")
SOURCES = ("__init__.py", "protocol.py", "wire.py", "heap.py", "page_guard.py", "confinement.py")
# Imported once by the server, not per submission; torch.fx's symbolic shapes bring sympy, which torch
# imports at a process's first backward with an explicit gradient (every check of gradients): 0.4-0.7 s.
PRELOAD = ("numpy", "matplotlib.pyplot", "torch.fx.experimental.symbolic_shapes")
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = (
    0x00020000,
    0x04000000,
    0x08000000,
    0x20000000,
    0x40000000,
)
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
MAX_REQUEST_BYTES = 1 << 30  # what the child reads of one request (the grader's cells and arguments)
OPT_OUT = "AUTOGRADER_UNCONFINED_I_TRUST_EVERY_SUBMISSION"
NO_BWRAP = (
    "grading other people's notebooks needs bubblewrap (Debian/Ubuntu package `bubblewrap`, command "
    "`bwrap`), which is not installed: `apt-get install bubblewrap`. To run every submission unconfined, "
    f"with the whole machine in its reach (development only), pass --unconfined-i-trust-every-submission "
    f"or set {OPT_OUT}=1"
)


# ---------------------------------------------------------------------------------------
# The host side: what to bind, and the command that starts the server.


def bwrap() -> str | None:
    """The ``bwrap`` executable, or None where bubblewrap is not installed."""
    return shutil.which("bwrap")


def copy_sources(folder: str) -> str:
    """This module and the ones it imports, as package ``autograder`` under ``folder``."""
    here = os.path.dirname(os.path.abspath(__file__))
    package = os.path.join(folder, "autograder")
    os.makedirs(package)
    for name in SOURCES:
        if name == "__init__.py":
            open(os.path.join(package, name), "w").close()
        else:
            shutil.copyfile(os.path.join(here, name), os.path.join(package, name))
    return folder


def course_entries(site: str) -> set[str]:
    """The entries of ``site`` that belong to this course's distribution (its packages, or the
    editable install's finder and .pth), which the sandbox must not see. ``__pycache__`` is
    shared with other modules and stays (the finder's compiled copy names host folders only)."""
    from importlib import metadata

    entries = set()
    for dist in metadata.distributions(name=DISTRIBUTION, path=[site]):
        entries |= {str(f).split("/")[0] for f in dist.files or () if not str(f).startswith("..")} - {"__pycache__"}
    return entries


def site_folders() -> list[str]:
    import sysconfig

    paths = sysconfig.get_paths()
    return [p for p in dict.fromkeys((paths["purelib"], paths["platlib"])) if os.path.isdir(p)]


def bwrap_command(grader_lib: str, cache: str, trial: bool = False) -> tuple[list[str], list[str]]:
    """``(command prefix, sys.path inside)`` of a fork server under bubblewrap. ``trial``: the
    same namespaces and capabilities without the site-packages entries, to learn cheaply whether
    bubblewrap works here (bwrap reads the mount table again for each bind: the ~350 entries cost
    0.3-0.8 s on 2 busy cores, the trial 0.04 s)."""
    base = os.path.realpath(sys.base_prefix)
    if any(base == p or base.startswith(p + "/") for p in PRIVATE):
        raise OSError(
            f"Python is installed under {base}, which the sandbox replaces with a private folder; "
            "install it elsewhere to grade confined"
        )
    binds = [("--ro-bind-try", folder, folder) for folder in LIBRARIES] + [("--ro-bind", base, base)]
    python = os.path.realpath(sys.executable)
    if not python.startswith(base + "/"):  # a virtual environment's own copy of the interpreter
        binds.append(("--ro-bind", python, python))
    paths = [INSIDE_LIB]
    for index, site in enumerate([] if trial else site_folders()):
        inside = f"{INSIDE_SITE}-{index}"
        hidden = course_entries(site)
        binds += [
            ("--ro-bind", os.path.join(site, entry), f"{inside}/{entry}")
            for entry in sorted(os.listdir(site))
            if entry not in hidden
        ]
        paths.append(inside)
    binds += [("--ro-bind", grader_lib, INSIDE_LIB), ("--bind", cache, INSIDE_CACHE)]
    command = [
        bwrap(),
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]
    for capability in CAPABILITIES:
        command += ["--cap-add", capability]
    command += ["--proc", "/proc", "--dev", "/dev"]
    made = {"/", "/dev", "/proc"}
    for inside in [*PRIVATE, *(bind[2] for bind in binds)]:  # the folders above: searchable (bwrap makes them 0700)
        parts = inside.split("/")
        for folder in ("/".join(parts[:depth]) for depth in range(2, len(parts))):
            if folder not in made:
                made.add(folder)
                command += ["--perms", "0755", "--dir", folder]
    for folder in PRIVATE:
        command += ["--tmpfs", folder]
    command += ["--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64"]
    for bind in binds:
        command += bind
    command += ["--chdir", "/tmp", "--"]
    return command, paths


def bootstrap(paths: list[str]) -> str:
    """The ``python -I -S -c`` program that starts the fork server (isolated mode: no
    PYTHONPATH, no current directory, no ``site``, so no .pth file runs)."""
    return (
        f"import sys\nsys.path[:0] = {paths!r}\n"
        "from autograder.confinement import serve_forks\nserve_forks(int(sys.argv[1]))\n"
    )


# ---------------------------------------------------------------------------------------
# The grader's handle on the server.


class SandboxError(RuntimeError):
    """No sandbox could be started (the machine, not the learner: the message says why)."""


def default_confinement() -> str:
    return "off" if os.environ.get(OPT_OUT) == "1" else "required"


class ForkServer:
    """The trusted process that forks sandbox children (see the module docstring);
    :attr:`confinement` is what is in force ("bwrap" or "none"). Other processes get their own
    channel to the same server with :meth:`attach`.

    ``policy`` is ``"required"`` by default (``python -m autograder autograde``): without
    ``bwrap`` no sandbox starts, and :class:`SandboxError` names the package to install. A
    learner grading their own notebook (``python -m autograder grade``) uses ``"preferred"``:
    bubblewrap when it works here, the bare process otherwise. ``"off"`` (the opt-out
    ``--unconfined-i-trust-every-submission``, or ``AUTOGRADER_UNCONFINED_I_TRUST_EVERY_SUBMISSION=1``,
    the default then) runs every submission with the host's files in view, for development only.
    The server imports what it preloads while the caller goes on; its first answer waits for it."""

    def __init__(self, policy: str | None = None):
        wanted = policy or default_confinement()
        if wanted == "required" and not bwrap():
            raise SandboxError(NO_BWRAP)
        self.home = tempfile.TemporaryDirectory(prefix="autograder-server-")
        lib = copy_sources(os.path.join(self.home.name, "grader-lib"))
        python = os.path.realpath(sys.executable)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "MPLCONFIGDIR": INSIDE_CACHE,
            "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1",
            "TRITON_INTERPRET": "1",
            "PYTHONHASHSEED": "0",
        }
        confined = self._confined(lib, python, wanted) if wanted != "off" and bwrap() else None
        self.confinement = "bwrap" if confined else "none"
        if confined:
            command, paths = confined
        else:
            command, paths = [], [lib, *site_folders()]
            env.update(HOME=self.home.name, TMPDIR=self.home.name, MPLCONFIGDIR=str(_matplotlib_cache("none")))
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.log = os.path.join(self.home.name, "server.log")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [*command, python, "-I", "-S", "-c", bootstrap(paths), str(theirs.fileno())],
                cwd=self.home.name,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        theirs.close()
        self.control.settimeout(600)  # its first answer waits for its imports; it never takes longer
        self.owner = self.user = os.getpid()  # the process that started it, the one that may use this channel
        self.broken = False

    @staticmethod
    def _confined(lib: str, python: str, wanted: str) -> tuple[list[str], list[str]] | None:
        """(bwrap command prefix, sys.path inside); where confinement is only preferred, after
        a trial run (:func:`bwrap_command`'s ``trial``), and None where bubblewrap cannot confine here."""
        cache = str(_matplotlib_cache("bwrap"))
        try:
            command, paths = bwrap_command(lib, cache)
        except OSError as error:
            if wanted == "required":
                raise SandboxError(str(error)) from None
            return None
        if wanted == "required":  # if bwrap fails, the first sandbox says why (its message is in the server's log)
            return command, paths
        trial = subprocess.run(
            [*bwrap_command(lib, cache, trial=True)[0], python, "-I", "-S", "-c", ""],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return (command, paths) if trial.returncode == 0 else None

    def _ask(self, spec: dict, fds: list[int]) -> None:
        try:
            socket.send_fds(self.control, [json.dumps(spec).encode()], fds)
            reply = self.control.recv(4096)
        except OSError as error:
            reply = str(error).encode()
        if reply != b"ok":
            self.broken = True
            log = Path(self.log).read_text(errors="replace")[-2000:] if os.path.exists(self.log) else ""
            reason = reply.decode(errors="replace") or "it stopped"
            raise SandboxError(f"the grading fork server failed ({reason})\n{log}")

    def spawn(self, spec: dict, extra_fds=()) -> tuple[socket.socket, socket.socket]:
        """A new child: returns (its request channel, its watcher's control channel).
        ``extra_fds`` (the sandbox's cgroup.procs files) go to the child."""
        comm, comm_child = socket.socketpair()
        control, control_child = socket.socketpair()
        try:
            self._ask(spec, [comm_child.fileno(), control_child.fileno(), *extra_fds])
        except SandboxError:
            comm.close()
            control.close()
            raise
        finally:
            comm_child.close()
            control_child.close()
        return comm, control

    def attach(self) -> ForkServer:
        """A handle on this server with a channel of its own, for another process (a
        forked grading worker) to use while this one keeps its own."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._ask({"attach": True}, [theirs.fileno()])
        finally:
            theirs.close()
        handle = object.__new__(ForkServer)
        handle.__dict__.update(self.__dict__, control=ours, owner=None, user=None)
        return handle

    def close(self):
        """Close this channel; the process that started the server also stops it (sandboxes
        still open live on: each is ended by its own watcher)."""
        self.control.close()
        if self.owner == os.getpid():
            self.process.kill()
            self.process.wait()
            self.home.cleanup()


def _matplotlib_cache(kind: str) -> Path:
    """Where the fork server keeps matplotlib's font list (built once; paths differ inside bwrap)."""
    folder = Path.home() / ".cache" / f"autograder-matplotlib-{kind}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------------------------------
# The fork server, the watcher and the child (Linux).


class _Libc:
    """The few Linux calls Python 3.11 lacks (unshare, mount, prctl), raising OSError."""

    def __init__(self):
        import ctypes

        self.ctypes, self.lib = ctypes, ctypes.CDLL(None, use_errno=True)

    def call(self, name, *args):
        if getattr(self.lib, name)(*args) != 0:
            errno = self.ctypes.get_errno()
            raise OSError(errno, f"{name}{args[:2]}: {os.strerror(errno)}")

    def mount(self, source, target, fstype, flags, data=None):
        self.call("mount", source.encode(), target.encode(), fstype and fstype.encode(), flags, data and data.encode())


def serve_forks(control_fd):
    """Serve spawn requests on SOCK_SEQPACKET sockets until all of them close: first
    ``control_fd``, then any socket attached with ``{"attach": true}`` and its descriptor
    (one per grading process). A request is a JSON spec with its descriptors: the child's
    end of its request channel, the watcher's end of its control channel, then the
    ``cgroup.procs`` files of the sandbox's control groups; each request is answered
    b"ok" or with what went wrong."""
    from autograder import protocol  # noqa: F401 (torch with it: imported once, here, before any fork)

    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:  # a library that is missing or broken is imported (and fails) per submission
            pass
    channels = [socket.socket(fileno=control_fd)]
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished watchers
    while channels:
        for channel in select.select(channels, [], [])[0]:
            try:
                data, fds, _, _ = socket.recv_fds(channel, 1 << 20, 8)
            except OSError:
                data, fds = b"", []
            if not data:
                channels.remove(channel)
                channel.close()
                continue
            spec = json.loads(data)
            if spec.get("attach"):
                channels.append(socket.socket(fileno=fds[0]))
                channel.send(b"ok")
                continue
            try:
                pid = os.fork()
            except OSError as error:
                pid = None
                channel.send(f"cannot fork: {error}".encode())
            if pid == 0:
                try:
                    for other in channels:
                        other.close()
                    watch(spec, fds[0], fds[1], fds[2:])
                finally:
                    os._exit(70)
            for fd in fds:
                os.close(fd)
            if pid:
                channel.send(b"ok")


def watch(spec, comm_fd, control_fd, cgroup_fds):
    """The watcher: enter new namespaces, fork the child; kill it on any byte or end of file
    on ``control_fd``; finally write ``{"status": wait status}`` there."""
    from autograder import protocol  # loaded by serve_forks already

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    try:
        _Libc().call("unshare", CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
        isolated = True
    except OSError:  # unconfined, not root: no namespaces
        isolated = False
    scratch = "/tmp" if isolated else tempfile.mkdtemp(prefix="autograder-")
    child = os.fork()
    if child == 0:
        channel = socket.socket(fileno=comm_fd)
        try:
            os.close(control_fd)
            try:
                in_force = confine(spec, scratch, isolated, comm_fd, cgroup_fds)
            except Exception as error:
                _send(channel, {"ok": False, "error": f"the sandbox could not be set up: {error}"})
                raise
            _send(channel, {"ok": True, "value": in_force})
            _forget_grader_modules()
            protocol.serve(channel, MAX_REQUEST_BYTES)
        finally:
            os._exit(0)
    os.close(comm_fd)
    for fd in cgroup_fds:
        os.close(fd)
    pidfd = os.pidfd_open(child)
    ready = []
    while pidfd not in ready:
        ready, _, _ = select.select([control_fd, pidfd], [], [])
        if control_fd in ready:
            for target in (-child, child):  # its process group, then itself (init of its pid namespace)
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
            break
    _, status = os.waitpid(child, 0)
    if not isolated:
        if spec["uid"] is not None:
            _kill_every_process_of(spec["uid"])
        shutil.rmtree(scratch, ignore_errors=True)
    try:
        os.write(control_fd, json.dumps({"status": status}).encode())
    except OSError:
        pass


def _send(channel, reply):
    from autograder import wire  # loaded by serve_forks already

    wire.send(channel, "hello", reply)


def _forget_grader_modules():
    """The learner's ``import autograder`` must fail as on any machine without the course:
    the modules this server runs stay referenced, but are no longer importable by name."""
    for name in [n for n in sys.modules if n == "autograder" or n.startswith("autograder.")]:
        del sys.modules[name]
    sys.path[:] = [p for p in sys.path if p != INSIDE_LIB and not p.endswith("/grader-lib")]


def _kill_every_process_of(uid):
    """Without a pid namespace, what the child forked may have left its process group."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)  # every process of this uid but the caller
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def confine(spec, scratch, isolated, comm_fd, cgroup_fds) -> dict:
    """Runs in the child before any learner code; returns which isolation is in force."""
    from autograder import page_guard

    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # learner output goes nowhere (not to the server's log)
        os.dup2(devnull, fd)
    for fd in cgroup_fds:  # into the sandbox's control groups, before anything else is allocated
        os.write(fd, b"0")
        os.close(fd)
    os.closerange(3, comm_fd)  # nothing of the server's stays open but the request channel
    os.closerange(comm_fd + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    libc = _Libc()
    libc.call("prctl", PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    in_force = {
        "confinement": spec["confinement"],
        "network": isolated,
        "pid_namespace": isolated,
        "private_tmp": False,
        "uid": spec["uid"],
        "cgroup": spec["cgroup"],
    }
    limits, uid = spec["limits"], spec["uid"]
    if isolated:
        libc.mount("none", "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates to the server
        for folder in PRIVATE:
            if os.path.isdir(folder):
                libc.mount(
                    "scratch", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"size={limits['scratch_bytes']},mode=1777"
                )
        in_force["private_tmp"] = True
        try:
            libc.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        except OSError:  # some containers refuse a new /proc; the pid namespace still hides signals
            pass
    home, given = os.path.join(scratch, "home"), os.path.join(scratch, "given")
    os.makedirs(os.path.join(given, "solutions"))
    for name, source in spec["given"].items():
        with open(os.path.join(given, "solutions", name), "w") as file:
            file.write(source)
    os.makedirs(home)
    os.chmod(scratch, 0o1777 if isolated else 0o755)
    if uid is not None:
        os.chown(home, uid, uid)
    os.chdir(home)
    os.environ.update(HOME=home, TMPDIR=home, MPLCONFIGDIR=home)
    tempfile.tempdir = None
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    if uid is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # all capabilities go with root
    libc.call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    in_force["page_bits_unguarded"] = page_guard.guard()  # None, or why the call's touched pages can hide
    sys.path.insert(0, given)
    return in_force
