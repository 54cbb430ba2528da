"""How the learner's code is called, in the learner's kernel or in a sandboxed process.

This file imports only the standard library and torch, because it also runs *as a script*
in the grading sandbox (``python -I -S worker.py CONTROL_FD``), where neither
``autograder`` nor ``solutions`` can be imported. There it is a *fork server*: it imports
torch (and the libraries chapters use) once, then forks one confined child per sandbox.
The child executes a submission's code cells, then answers requests from the trusted
grader over a socket: call a function or a method, read an attribute, with values sent as
plain tensors and numbers only.

Messages are ``torch.save`` payloads behind an 8-byte length; the grader reads them with
``torch.load(weights_only=True)``, which refuses any object that is not plain data.
"""
import io
import linecache
import json
import os
import resource
import select
import shutil
import signal
import socket
import stat
import struct
import sys
import tempfile
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

PLAIN = (bool, int, float, str, type(None))


class CallFailed(Exception):
    """The learner's code raised; the message is what the learner should read."""


def describe_exception(name: str, error: BaseException) -> str:
    if isinstance(error, NotImplementedError):
        return f"{name} is not implemented yet (it raises NotImplementedError)"
    frames = traceback.extract_tb(error.__traceback__)
    where = next((f" (line {f.lineno}: {f.line})" for f in reversed(frames) if f.filename.startswith("<cell")), "")
    return f"{name} raised {type(error).__name__}: {error}{where}"


def plain(value, wrap):
    """``value`` reduced to plain data: tensors become detached ``torch.Tensor`` copies,
    containers are rebuilt, numbers stay numbers, and any other object (a module) is
    handed to ``wrap``, which returns a handle for it."""
    if isinstance(value, torch.Tensor):
        with torch._C.DisableTorchFunctionSubclass():  # a subclass's own methods are not trusted
            value = value.detach().clone()
        return value if type(value) is torch.Tensor else value.as_subclass(torch.Tensor)
    if type(value) in PLAIN:
        return value
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, (tuple, list, torch.Size)):
        items = [plain(v, wrap) for v in value]
        return items if type(value) is list else tuple(items)
    if isinstance(value, dict):
        return {str(k): plain(v, wrap) for k, v in value.items()}
    return wrap(value)


class NumelRecorder(TorchDispatchMode):
    """Records the shape of every tensor that any aten operation produces, the operations'
    names, and whether any of them computed gradients (ran inside autograd's backward pass,
    or is a derivative formula such as ``tanh_backward``, which forward-mode AD also uses)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """False: torch then leaves ``__torch_dispatch__`` unwrapped, and the first traced call
        does not import torch._dynamo (about 6 s per sandbox on a busy machine)."""
        return False

    def __init__(self):
        super().__init__()
        self.shapes, self.ops = [], set()
        self.autograd = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        if torch._C._current_graph_task_id() != -1 or "_backward" in func.__name__:
            self.autograd = True
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def saved_shapes(output, limit=10000) -> list:
    """Shapes of the tensors that the custom ``autograd.Function`` nodes of ``output``'s graph
    keep for backward: ``ctx.saved_tensors`` and tensors stored as ``ctx`` attributes."""
    shapes, seen = [], set()
    todo = [output.grad_fn] if isinstance(output, torch.Tensor) and output.grad_fn is not None else []

    def visit(value):
        if isinstance(value, torch.Tensor):
            shapes.append(tuple(value.shape))
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    while todo and len(seen) < limit:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            visit(list(node.saved_tensors))
            visit(list(vars(node).values()))
        todo.extend(next_node for next_node, _ in node.next_functions)
    return shapes


def _tensor_arguments(args, kwargs):
    """(label, tensor) for every tensor among the arguments, nested in lists, tuples, dicts."""
    found = []

    def visit(value, label):
        if isinstance(value, torch.Tensor):
            found.append((label, value))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, f"{label}[{i}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{label}[{key!r}]")

    for i, arg in enumerate(args):
        visit(arg, f"argument {i + 1}")
    for key, arg in kwargs.items():
        visit(arg, f"argument {key}")
    return found


def _unchanged(before: torch.Tensor, after: torch.Tensor) -> bool:
    if before.shape != after.shape or before.dtype != after.dtype:
        return False
    same = before == after
    if before.is_floating_point() or before.is_complex():
        same |= before.isnan() & after.isnan()
    return bool(same.all())


def call(name, fn, args, kwargs, mode="plain", grad_output=None, grad_inputs=()):
    """Call the learner's ``fn``; returns the raw result, adjusted for ``mode``:

    - ``"plain"``: the result;
    - ``"grad"``: ``(result, grads)``: positional args at ``grad_inputs`` require grad, the
      (first) output is back-propagated with ``grad_output``, grads are theirs;
    - ``"trace"``: ``(result, trace)``, with ``trace`` a dict: ``created``, the shapes of every
      tensor created during the call; ``ops``, the names of the aten operations it ran;
      ``autograd``, whether any operation computed gradients;
      and, when ``grad_inputs`` is given, the call runs as in ``"grad"`` (backward traced too)
      with ``grads`` and ``saved`` (:func:`saved_shapes` of the output, before backward).

    Every graded function's contract leaves its inputs unchanged: a call that modifies a
    tensor argument in place fails with a message naming the argument (in both backends,
    which pass the learner private copies of the arguments).
    """
    with torch._C.DisableTorchFunctionSubclass():
        inputs = [(label, tensor, tensor.detach().clone()) for label, tensor in _tensor_arguments(args, kwargs)]
    result = _call(name, fn, args, kwargs, mode, grad_output, grad_inputs)
    for label, tensor, before in inputs:
        with torch._C.DisableTorchFunctionSubclass():
            if not _unchanged(before, tensor.detach()):
                raise CallFailed(f"{name} changed its {label} in place (shape {tuple(before.shape)}); "
                                 "its inputs must be left unchanged: look for in-place operations "
                                 "(add_, masked_fill_, x[...] = ..., +=) on an input or a view of it")
    return result


def _call(name, fn, args, kwargs, mode, grad_output, grad_inputs):
    try:
        if mode == "trace":
            trace = {}
            with NumelRecorder() as recorder:
                result = _run(fn, args, kwargs, grad_output, grad_inputs, trace, record_saved=True)
            trace.update(created=recorder.shapes, ops=sorted(recorder.ops), autograd=recorder.autograd)
            return result, trace
        if mode == "grad":
            trace = {}
            result = _run(fn, args, kwargs, grad_output, grad_inputs, trace)
            return result, trace["grads"]
        return fn(*args, **kwargs)
    except Exception as error:
        raise CallFailed(describe_exception(name, error)) from None


def _run(fn, args, kwargs, grad_output, grad_inputs, trace, record_saved=False):
    """Call ``fn``; with ``grad_inputs``, also back-propagate and put ``grads`` (and with
    ``record_saved``, ``saved``) in ``trace``."""
    if not grad_inputs:
        return fn(*args, **kwargs)
    args = list(args)
    for i in grad_inputs:
        args[i] = args[i].detach().clone().requires_grad_(True)
    result = fn(*args, **kwargs)
    output = result[0] if isinstance(result, (tuple, list)) else result
    if record_saved:
        trace["saved"] = saved_shapes(output)
    output.backward(grad_output)
    trace["grads"] = tuple(args[i].grad for i in grad_inputs)
    return result


# ---------------------------------------------------------------------------------------
# The sandboxed process: the loop below runs only when this file is the script.

def encode(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def decode(payload: bytes):
    return torch.load(io.BytesIO(payload), weights_only=True)


def read_message(fd):
    header = read_exactly(fd, 8)
    return None if header is None else read_exactly(fd, struct.unpack("<Q", header)[0])


def read_exactly(fd, n):
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_message(fd, payload: bytes):
    data = struct.pack("<Q", len(payload)) + payload
    while data:
        data = data[os.write(fd, data):]


class Session:
    """The learner's namespace and the objects handed to the grader as handles."""

    def __init__(self):
        self.namespace = {"__name__": "__main__"}
        self.handles = []

    def wrap(self, obj):
        self.handles.append(obj)
        return {"__handle__": len(self.handles) - 1, "type": type(obj).__name__}

    def resolve(self, target):
        root, path = target
        obj = self.namespace[root] if isinstance(root, str) else self.handles[root]
        for name in path:
            obj = getattr(obj, name)
        return obj

    def unpack(self, value):
        if isinstance(value, dict):
            if "__handle__" in value:
                return self.handles[value["__handle__"]]
            if "__dtype__" in value:
                return getattr(torch, value["__dtype__"])
            if "__generator__" in value:
                return torch.Generator().set_state(value["__generator__"])
            return {k: self.unpack(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.unpack(v) for v in value)
        return value

    def run_cells(self, cells):
        errors = []
        for index, source in enumerate(cells):
            filename = f"<cell {index}>"
            # Registered so tracebacks quote the failing line and Triton's interpreter can read the source.
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            try:
                exec(compile(source, filename, "exec"), self.namespace)
                errors.append(None)
            except BaseException as error:  # SystemExit too: one bad cell does not end grading
                errors.append(f"{type(error).__name__}: {error}")
        return errors

    def handle(self, request):
        op = request["op"]
        if op == "run_cells":
            return self.run_cells(request["cells"])
        name = request["name"]
        if op == "has":
            try:
                self.resolve(request["target"])
                return True
            except (KeyError, AttributeError, IndexError):
                return False
        try:
            obj = self.resolve(request["target"])
        except (KeyError, AttributeError, IndexError) as error:
            raise CallFailed(f"{name} is not defined ({type(error).__name__}: {error})") from None
        if op == "value":
            return plain(obj, self.wrap)
        result = call(name, obj, self.unpack(request["args"]), self.unpack(request["kwargs"]), request["mode"],
                      self.unpack(request.get("grad_output")), request.get("grad_inputs", ()))
        return plain(result, self.wrap)


def serve(read_fd, write_fd):
    session = Session()
    while (payload := read_message(read_fd)) is not None:
        try:
            reply = {"ok": True, "value": session.handle(decode(payload))}
        except CallFailed as error:
            reply = {"ok": False, "error": str(error)}
        except BaseException as error:
            reply = {"ok": False, "error": describe_exception("your code", error)}
        try:
            message = encode(reply)
        except Exception as error:
            message = encode({"ok": False, "error": f"the result could not be sent back ({error})"})
        write_message(write_fd, message)



# ---------------------------------------------------------------------------------------
# The fork server and the confined child (Linux). The server imports the libraries once;
# per sandbox it forks a *watcher* that enters new namespaces (when the system allows) and
# forks the *child* that runs the learner's code. The watcher never runs learner code: it
# kills the child when the grader asks or goes away, and reports how the child ended.

PRELOAD = ("numpy", "matplotlib.pyplot")  # imported once by the server, not per submission
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x08000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 1 << 12, 1 << 13, 1 << 14, 1 << 18)
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38


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
        self.call("mount", source.encode(), target.encode(), fstype and fstype.encode(), flags,
                  data and data.encode())


def fork_server(control_fd):
    """Serve spawn requests on SOCK_SEQPACKET sockets until all of them close: first
    ``control_fd``, then any socket attached with ``{"attach": true}`` and its descriptor
    (one per grading process). A request is a JSON spec with two descriptors (the child's
    end of its request channel, the watcher's end of its control channel); each request
    is answered b"ok" or with what went wrong."""
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
                data, fds, _, _ = socket.recv_fds(channel, 1 << 16, 2)
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
                    watch(spec, *fds)
                finally:
                    os._exit(70)
            for fd in fds:
                os.close(fd)
            if pid:
                channel.send(b"ok")


def watch(spec, comm_fd, control_fd):
    """The watcher: unshare namespaces, fork the child; kill it on any byte or end of file
    on ``control_fd``; finally write ``{"status": wait status}`` there."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    isolated = False
    if spec["namespaces"]:
        try:
            _Libc().call("unshare", CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC)
            isolated = True
        except OSError:
            pass
    scratch = "/tmp" if isolated else tempfile.mkdtemp(prefix="autograder-")
    child = os.fork()
    if child == 0:
        try:
            os.close(control_fd)
            try:
                in_force = confine(spec, scratch, isolated, comm_fd)
            except Exception as error:
                write_message(comm_fd, encode({"ok": False, "error": f"the sandbox could not be set up: {error}"}))
                raise
            write_message(comm_fd, encode({"ok": True, "value": in_force}))
            serve(comm_fd, comm_fd)
        finally:
            os._exit(0)
    os.close(comm_fd)
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


def confine(spec, scratch, isolated, comm_fd) -> dict:
    """Runs in the child before any learner code; returns which isolation is in force."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # learner output goes nowhere (not to the server's log)
        os.dup2(devnull, fd)
    os.closerange(3, comm_fd)  # nothing of the server's stays open but the request channel
    os.closerange(comm_fd + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    libc = _Libc()
    libc.call("prctl", PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    with open("/proc/self/oom_score_adj", "w") as file:  # out of memory, the kernel kills learner code first
        file.write("1000")
    in_force = {"network": isolated, "pid_namespace": isolated, "hidden_paths": [], "private_tmp": False,
                "uid": spec["uid"]}
    sources = {}
    for name, path in spec["given"].items():  # read before their folder is hidden
        with open(path, "rb") as file:
            sources[name] = file.read()
    blocked = _unreachable(sys.path + [sys.prefix, sys.base_prefix]) if spec["uid"] is not None else {}
    if isolated:
        _private_views(libc, spec, in_force, blocked)
    elif blocked:
        raise OSError(f"the Python installation is not readable by other users ({', '.join(blocked.values())} "
                      "has no o+x), so learner code cannot run as an unprivileged user here")
    home, given = os.path.join(scratch, "home"), os.path.join(scratch, "given")
    os.makedirs(os.path.join(given, "solutions"))
    for name, source in sources.items():
        with open(os.path.join(given, "solutions", name), "wb") as file:
            file.write(source)
    os.makedirs(home)
    os.chmod(scratch, 0o1777 if isolated else 0o755)
    limits, uid = spec["limits"], spec["uid"]
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
        os.setresuid(uid, uid, uid)
    libc.call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    sys.path.insert(0, given)
    return in_force


def _unreachable(paths) -> dict:
    """{subtree: its ancestor that other users cannot enter} for the folders in ``paths``
    (e.g. {"/root/.pyenv": "/root"} when Python is installed in root's home)."""
    found = {}
    for path in paths:
        parts = os.path.realpath(path).split(os.sep)
        for depth in range(2, len(parts)):
            ancestor = os.sep.join(parts[:depth]) or os.sep
            try:
                if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                    found[os.sep.join(parts[:depth + 1])] = ancestor
                    break
            except OSError:
                break
    return found


def _python_folders_under(roots) -> list:
    """The outermost of Python's folders (prefixes, path entries) that lie below ``roots``."""
    folders = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, *sys.path) if os.path.isdir(p)})
    below = [f for f in folders if any(f.startswith(root + os.sep) for root in roots)]
    return [f for f in below if not any(f.startswith(other + os.sep) for other in below if other != f)]


def _private_views(libc, spec, in_force, blocked):
    """In the child's own mount namespace: an empty size-limited /tmp and /dev/shm; the
    ``blocked`` subtrees (the Python installation) made reachable for the unprivileged
    user by covering their closed ancestor with an empty read-only file system and moving
    them back in; the course and reference folders hidden under empty read-only file
    systems; a /proc that shows only its own processes."""
    libc.mount("none", "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates to the host
    size = spec["limits"]["scratch_bytes"]
    # Python's own folders that live under /tmp or /dev/shm (a checkout with its .venv in /tmp)
    # must stay visible under the fresh file systems: hold them open, bind them back after.
    kept = {path: os.open(path, os.O_PATH) for path in _python_folders_under(("/tmp", "/dev/shm"))}
    libc.mount("scratch", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
    staged = []
    for index, subtree in enumerate(blocked):
        stage = f"/tmp/.stage{index}"
        os.mkdir(stage)
        libc.mount(subtree, stage, None, MS_BIND | MS_REC)
        staged.append((stage, subtree))
    for ancestor in set(blocked.values()):
        libc.mount("cover", ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
    for stage, subtree in staged:
        os.makedirs(subtree, exist_ok=True)
        libc.mount(stage, subtree, None, MS_MOVE)
        os.rmdir(stage)
    for ancestor in set(blocked.values()):
        libc.mount("cover", ancestor, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for path in spec["hidden"]:  # covered here, or already gone with the host's /tmp
        if os.path.isdir(path):
            libc.mount("hidden", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
        in_force["hidden_paths"].append(path)
    if os.path.isdir("/dev/shm"):
        libc.mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
    for path, fd in kept.items():
        os.makedirs(path, exist_ok=True)
        libc.mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        libc.mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    in_force["private_tmp"] = True
    try:
        libc.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:  # some containers refuse a new /proc; the pid namespace still hides signals
        pass


if __name__ == "__main__":
    fork_server(int(sys.argv[1]))
