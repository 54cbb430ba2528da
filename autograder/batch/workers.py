"""Step 5: worker processes that grade submissions in parallel.

Workers are forked from the main process (which imported torch, nbgrader and the checks,
and measured the reference's time budgets), so they start at once; each has a channel of
its own to the one fork server that starts sandboxes, and a memory control group of its own
(:data:`WORKER_MEMORY_BYTES`, beside the sandboxes' groups: :func:`autograder.cgroups.worker_group`),
so nothing a worker does can make the kernel kill a sandbox grading a classmate. A worker that
dies is replaced, and the submission it held is tried once more before it is reported as not
graded; so is a submission whose sandbox the kernel killed while the machine was short of
memory (:class:`~autograder.sandbox.MachineShortOfMemory`). Neither is recorded: the next run
grades it.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import signal
import warnings
from collections import deque

from autograder import cgroups
from autograder.batch.grade import Failure, grade_submission
from autograder.batch.plan import Job
from autograder.sandbox import ForkServer, MachineShortOfMemory, use_fork_server

PR_SET_PDEATHSIG = 1
WORKER_MEMORY_BYTES = 4 << 30  # one worker and the notebook it reads (capped at 1 GiB more); ~0.5 GB in use


def _work(connection, inherited, server: ForkServer, job: Job, group: cgroups.Group | None):
    """A worker: grade the submissions it is sent until it is sent None or the main process
    goes away (it dies with it)."""
    import torch

    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if group is not None:
        cgroups.join(group)
    for other in inherited:  # the main process's ends of other workers' channels: theirs to close
        other.close()
    torch.set_num_threads(1)
    use_fork_server(server)
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")  # nbformat's and torch's chatter about learners' notebooks
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            outcome = grade_submission(job, *task)
        except MachineShortOfMemory as error:
            outcome = Failure(task[0], str(error), again=True)
        except Exception as error:  # a bug or a broken machine, not the learner: the batch goes on
            outcome = Failure(task[0], f"{type(error).__name__}: {error}")
        try:
            connection.send(outcome)
        except (EOFError, OSError):
            return


class Workers:
    """``count`` worker processes grading the submissions of ``job``."""

    def __init__(self, count: int, server: ForkServer, job: Job):
        self.context = multiprocessing.get_context("fork")
        self.server, self.job = server, job
        self.idle, self.busy = [], {}  # busy: connection -> (process, task, tries)
        self.groups = {}  # worker process -> its memory control group
        for _ in range(count):
            self.idle.append(self._start())

    def _start(self):
        ours, theirs = self.context.Pipe()
        channel = self.server.attach()
        inherited = [ours, self.server.control, *(c for c, _ in self.idle), *self.busy]
        group = cgroups.worker_group(WORKER_MEMORY_BYTES)
        process = self.context.Process(target=_work, args=(theirs, inherited, channel, self.job, group), daemon=True)
        process.start()
        theirs.close()
        channel.control.close()
        if group is not None:
            group.close_procs()
            self.groups[process] = group
        return ours, process

    def _ended(self, process) -> str:
        """Wait for a worker that ended; remove its group; how it ended."""
        process.join()
        group = self.groups.pop(process, None)
        why = f"exit code {process.exitcode}"
        if group is not None:
            if group.oom_kills():
                why = f"it ran out of its {WORKER_MEMORY_BYTES >> 30} GiB of memory"
            group.remove()
        return why

    def run(self, tasks, on_outcome):
        """Grade every task (a (student, folder) pair); ``on_outcome`` is called in this
        process with each Outcome or Failure as it arrives."""
        queue = deque((task, 0) for task in tasks)
        while queue or self.busy:
            while queue and self.idle:
                (task, tries), (connection, process) = queue.popleft(), self.idle.pop()
                connection.send(task)
                self.busy[connection] = (process, task, tries)
            waiting = {**{c: c for c in self.busy}, **{p.sentinel: c for c, (p, _, _) in self.busy.items()}}
            for ready in multiprocessing.connection.wait(list(waiting)):
                connection = waiting[ready]
                if connection not in self.busy:
                    continue
                process, task, tries = self.busy.pop(connection)
                try:
                    outcome = connection.recv()
                except (EOFError, OSError):
                    connection.close()
                    why = self._ended(process)
                    self.idle.append(self._start())
                    if tries == 0:
                        queue.append((task, 1))
                    else:
                        on_outcome(Failure(task[0], f"the grading worker died twice ({why})"))
                    continue
                self.idle.append((connection, process))
                if isinstance(outcome, Failure) and outcome.again and tries == 0:
                    queue.append((task, 1))  # graded again after the others: the pressure may have passed
                else:
                    on_outcome(outcome)

    def close(self):
        for connection, process in self.idle:
            try:
                connection.send(None)
            except OSError:
                pass
            connection.close()
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
            self._ended(process)
