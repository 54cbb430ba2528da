"""Grading a whole class: ``python -m autograder autograde ASSIGNMENT`` in an nbgrader course.

It reads nbgrader's ``submitted/<student>/<assignment>/`` folders, grades every notebook in
sandboxes (:mod:`autograder.sandbox`; worker processes in parallel, each with one fork
server that imported torch once), and writes what ``nbgrader autograde`` writes, through
nbgrader's own API and preprocessors, so ``nbgrader formgrader``, ``generate_feedback``
and ``export`` work unchanged:

- the gradebook: the submission, its ``auto_score`` per grade cell, "No response." comments
  and late penalties, committed in **one transaction per submission**;
- ``autograded/<student>/<assignment>/<notebook>.ipynb``: the submission after nbgrader's own
  sanitizing (locked and grade cells restored from the gradebook, deleted grade cells added
  back when ``OverwriteCells.add_missing_cells`` is set), each autograded grade cell's
  output replaced by the checks' report and its score; written answers keep the learner's
  text for manual grading in formgrader;
- ``autograded/<student>/<assignment>/results.json``: the same scores in Gradescope's format
  (``{"score", "tests": [{"name", "score", "max_score", "output", "visibility"}], ...}``),
  written last: it marks the submission as done.

Which grade cells exist, their points and what they check come from the gradebook (the
source notebook that ``nbgrader generate_assignment`` recorded), never from the student's
copy: a grade cell whose source calls ``grade("<topic>.<name>", name)`` is autograded by
that suite, scaled to the cell's points; any other grade cell is left for manual grading.

A second run skips every submission that is complete (``results.json`` records a
fingerprint of the submitted files and the plan, and the gradebook holds a score for every
autograded cell); ``--force`` regrades. An interrupted run therefore resumes, and since
nbgrader's rows are unique per student and cell, no grade is ever duplicated.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import sys
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbgrader import utils as nbgrader_utils
from nbgrader.api import Comment, Grade, Gradebook, MissingEntry, SubmittedAssignment, SubmittedNotebook
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds,
                                    OverwriteCells, OverwriteKernelspec)
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from autograder.chapters import BY_NAME, BY_TOPIC
from autograder.checks import suites
from autograder.grading import DEMO_TAG, GradingError, format_results, grade_cells, load_notebook, submission_cells
from autograder.sandbox import ForkServer, Limits, use_fork_server
from autograder.suite import Result

GRADE_CALL = re.compile(r"""\bgrade\(\s*["'](\w+)\.(\w+)["']\s*,""")
PR_SET_PDEATHSIG = 1
SANITIZERS = (ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata)


class BatchError(Exception):
    """The batch cannot run at all (no course, no such assignment); the message says why."""


@dataclass
class GradeCell:
    grade_id: str
    points: float
    function: str | None  # the graded name its grade("topic.name", name) call checks; None: graded by hand


@dataclass
class Plan:
    """What the gradebook says the assignment holds (trusted: from the source notebook)."""

    assignment: str
    chapter: str
    notebooks: dict[str, list[GradeCell]]
    db_url: str
    course: str
    config: Config = field(repr=False)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps([self.chapter, {k: [asdict(c) for c in v] for k, v in self.notebooks.items()}],
                                         sort_keys=True).encode()).hexdigest()


def course_directory(course: Path) -> tuple[CourseDirectory, Config]:
    """nbgrader's view of the course at ``course``, with its nbgrader_config.py."""
    config = Config()
    if (course / "nbgrader_config.py").exists():
        config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    coursedir = CourseDirectory(config=config)
    if "root" not in config.get("CourseDirectory", {}):
        coursedir.root = str(course)
    return coursedir, config


def make_plan(coursedir: CourseDirectory, config: Config, assignment: str) -> Plan:
    """The assignment's notebooks and grade cells, from the gradebook; BatchError if none."""
    database = Path(coursedir.db_url.removeprefix("sqlite:///"))
    if coursedir.db_url.startswith("sqlite:///") and not database.exists():
        raise BatchError(f"no gradebook at {database}; run `nbgrader generate_assignment {assignment}` first")
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        try:
            source = gradebook.find_assignment(assignment)
        except MissingEntry:
            raise BatchError(f"the gradebook has no assignment {assignment!r}; "
                             f"run `nbgrader generate_assignment {assignment}` first") from None
        topics, notebooks = set(), {}
        for notebook in source.notebooks:
            order = {cell.name: index for index, cell in enumerate(notebook.source_cells)}
            cells = []
            for cell in sorted(notebook.grade_cells, key=lambda c: order.get(c.name, len(order))):
                text = gradebook.find_source_cell(cell.name, notebook.name, assignment).source
                match = GRADE_CALL.search(text) if cell.cell_type == "code" else None
                if match:
                    topic, name = match.groups()
                    if topic not in BY_TOPIC or name not in suites(topic):
                        raise BatchError(f"grade cell {cell.name} of {notebook.name} calls grade(\"{topic}.{name}\"), "
                                         "which has no check suite")
                    topics.add(topic)
                cells.append(GradeCell(cell.name, float(cell.max_score), match.group(2) if match else None))
            notebooks[notebook.name] = cells
    if len(topics) != 1:
        raise BatchError(f"the grade cells of {assignment} must check exactly one chapter "
                         f"(they check {sorted(topics) or 'none'})")
    chapter = BY_TOPIC[topics.pop()].name
    return Plan(assignment, chapter, notebooks, coursedir.db_url, coursedir.root, config)


# ---------------------------------------------------------------------------------------
# Grading one submission (in a worker process; no gradebook writes here)

def grade_submission(plan: Plan, student: str, folder: str, release: str, seed, limits: Limits) -> dict:
    """Every notebook of one submission graded: ``{"student", "timestamp", "fingerprint",
    "notebooks": {name: {"grades": {grade_id: score or None}, "comments": {grade_id: text
    or None}, "tests": [result dicts], "notebook": autograded JSON or None}}}``."""
    start = time.monotonic()
    outcome = {"student": student, "timestamp": _timestamp(folder), "fingerprint": fingerprint(plan, folder, seed),
               "notebooks": {}}
    for name, cells in plan.notebooks.items():
        outcome["notebooks"][name] = _grade_notebook(plan, student, name, cells, Path(folder) / f"{name}.ipynb",
                                                     Path(release) / f"{name}.ipynb", seed, limits)
    outcome["seconds"] = time.monotonic() - start
    return outcome


def _grade_notebook(plan, student, name, cells, path, release, seed, limits) -> dict:
    """One notebook: sanitized by nbgrader, its code graded in sandboxes, its grade cells'
    outputs replaced by the reports; a notebook that cannot be read scores 0 with the reason."""
    auto = [c for c in cells if c.function]
    if not path.exists():
        problem = f"{path.name} was not submitted"
        results = {c.function: _all_failed(plan, c.function, problem) for c in auto}
        return {"grades": {c.grade_id: 0.0 for c in cells}, "comments": {}, "notebook": None,
                "tests": _tests(auto, results)}
    notebook, problem = _sanitized(plan, student, name, path)
    if notebook is None:
        results = {c.function: _all_failed(plan, c.function, problem) for c in auto}
    else:
        skip = {DEMO_TAG, plan.config.get("Execute", {}).get("skip_cells_with_tag", DEMO_TAG)}
        graded = grade_cells(submission_cells(notebook, skip_tags=skip), plan.chapter, names=[c.function for c in auto],
                             seed=seed, limits=limits, hidden=[plan.course])
        results = {c.function: [r for r in graded if r.function == c.function] for c in auto}
    if notebook is None or problem:  # feedback then shows the release, with the reason in each grade cell
        notebook = nbformat.read(release, as_version=4) if release.exists() else None
    grades, comments = {}, {}
    for cell in notebook.cells if notebook is not None else []:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if nbgrader_utils.is_solution(cell) and not nbgrader_utils.is_task(cell):
            unanswered = meta.get("checksum") == nbgrader_utils.compute_checksum(cell)
            comments[grade_id] = "No response." if unanswered and not problem else None
        spec = next((c for c in cells if c.grade_id == grade_id), None)
        if spec is None or not nbgrader_utils.is_grade(cell):
            continue
        if spec.function:
            grades[grade_id] = _write_report(cell, spec, results[spec.function], problem)
        elif nbgrader_utils.is_solution(cell) and not problem:
            grades[grade_id] = nbgrader_utils.determine_grade(cell)[0]  # 0 when unanswered, else None: by hand
        else:
            grades[grade_id] = None  # graded by hand (a test cell this grader does not run)
    for spec in cells:
        grades.setdefault(spec.grade_id, _scaled(spec, results[spec.function]) if spec.function else None)
    return {"grades": grades, "comments": comments, "tests": _tests(auto, results),
            "notebook": nbformat.writes(notebook) if notebook is not None else None}


def _sanitized(plan, student, name, path):
    """(the submission after nbgrader's sanitizing preprocessors, None) or, when it cannot be
    read at all, (None, why); a notebook whose nbgrader metadata is broken is graded, with a
    problem noted."""
    try:
        raw = load_notebook(path)
    except GradingError as error:
        return None, str(error).replace(str(path), path.name)
    try:
        notebook = nbformat.from_dict(raw)
        resources = {"nbgrader": {"notebook": name, "assignment": plan.assignment, "student": student,
                                  "db_url": plan.db_url}}
        for preprocessor in SANITIZERS:
            notebook, resources = preprocessor(config=plan.config).preprocess(notebook, resources)
        return notebook, None
    except Exception as error:
        logging.getLogger("autograder").debug("sanitizing %s failed", path, exc_info=True)
        return nbformat.from_dict(raw), (f"the nbgrader metadata of {path.name} is broken ({type(error).__name__}), "
                                         "so the feedback shows the released notebook; your code was graded")


def _all_failed(plan, function, message) -> list[Result]:
    suite = suites(BY_NAME[plan.chapter].topic)[function]
    return [Result(function, c.name, 0.0, float(c.points), False, message) for c in suite.checks]


def _scaled(spec: GradeCell, results: list[Result]) -> float:
    """The cell's score: the suite's score scaled to the grade cell's points."""
    total = sum(r.max_score for r in results)
    return round(spec.points * sum(r.score for r in results) / total, 6) if total else 0.0


def _write_report(cell, spec, results, problem) -> float:
    score = _scaled(spec, results)
    text = format_results(results) + (f"\n({problem})" if problem else "")
    if spec.points != sum(r.max_score for r in results):
        text += f"\nScaled to this cell's {spec.points:g} points: {score:g}"
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n"),
                    nbformat.v4.new_output("execute_result", data={"text/plain": repr(score)}, execution_count=1)]
    cell.execution_count = 1
    return score


def _tests(auto, results) -> list[dict]:
    """Gradescope's test entries, one per sub-check, scaled to the grade cells' points."""
    tests = []
    for spec in auto:
        total = sum(r.max_score for r in results[spec.function]) or 1.0
        for r in results[spec.function]:
            tests.append({"name": f"{r.function}: {r.check}", "score": round(r.score * spec.points / total, 6),
                          "max_score": round(r.max_score * spec.points / total, 6),
                          "output": r.message, "visibility": "visible"})
    return tests


def _timestamp(folder) -> str | None:
    """The submission time nbgrader recorded (ISO format), None when absent or unreadable."""
    try:
        with open(Path(folder) / "timestamp.txt", errors="replace") as file:
            return nbgrader_utils.parse_utc(file.read(100).strip()).isoformat()
    except (OSError, ValueError, OverflowError):
        return None


def fingerprint(plan: Plan, folder, seed) -> str:
    """What a grade depends on: the submitted notebooks and timestamp, the plan, the seed."""
    digest = hashlib.sha256(f"{plan.fingerprint()}/{seed}".encode())
    for name in [*(f"{n}.ipynb" for n in plan.notebooks), "timestamp.txt"]:
        path = Path(folder) / name
        digest.update(name.encode() + (path.read_bytes() if path.exists() else b"<missing>"))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Recording (in the main process: the only writer of the gradebook and of autograded/)

def record(gradebook: Gradebook, plan: Plan, outcome: dict, destination: Path, submitted: Path):
    """One transaction for the submission's grades, then the autograded files, results.json last."""
    student = outcome["student"]
    try:
        gradebook.find_student(student)
    except MissingEntry:
        gradebook.add_student(student)
    db = gradebook.db
    try:
        submission = _submission(gradebook, plan.assignment, student)
        if outcome["timestamp"]:
            submission.timestamp = nbgrader_utils.parse_utc(outcome["timestamp"])
        notebooks = {n.name: n for n in submission.notebooks}
        for name, result in outcome["notebooks"].items():
            grades = {g.name: g for g in notebooks[name].grades}
            for grade_id, score in result["grades"].items():
                grade = grades[grade_id]
                grade.auto_score = score
                grade.needs_manual_grade = grade.manual_score is not None or score is None
            comments = {c.name: c for c in notebooks[name].comments}
            for grade_id, text in result["comments"].items():
                if grade_id in comments:
                    comments[grade_id].auto_comment = text
        db.flush()
        _late_penalties(gradebook, plan, submission)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    destination.mkdir(parents=True, exist_ok=True)
    for name, result in outcome["notebooks"].items():
        if result["notebook"] is not None:
            _write_atomically(destination / f"{name}.ipynb", result["notebook"])
    if (submitted / "timestamp.txt").exists():
        shutil.copy(submitted / "timestamp.txt", destination / "timestamp.txt")
    tests = [t for result in outcome["notebooks"].values() for t in result["tests"]]
    _write_atomically(destination / "results.json", json.dumps({
        "score": round(sum(t["score"] for t in tests), 6), "execution_time": round(outcome["seconds"], 2),
        "tests": tests,
        "extra_data": {"student": student, "assignment": plan.assignment, "fingerprint": outcome["fingerprint"]},
    }, indent=1))


def _submission(gradebook: Gradebook, assignment: str, student: str) -> SubmittedAssignment:
    """The submission's rows, created as ``Gradebook.add_submission`` does but not committed."""
    try:
        return gradebook.find_submission(assignment, student)
    except MissingEntry:
        pass
    source, learner = gradebook.find_assignment(assignment), gradebook.find_student(student)
    with gradebook.db.no_autoflush:
        submission = SubmittedAssignment(assignment=source, student=learner)
        for notebook in source.notebooks:
            submitted = SubmittedNotebook(notebook=notebook, assignment=submission)
            for cell in notebook.grade_cells:
                Grade(cell_id=cell.id, notebook=submitted)
            for cell in notebook.solution_cells:
                Comment(cell_id=cell.id, notebook=submitted)
            for cell in notebook.task_cells:
                Comment(cell_id=cell.id, notebook=submitted)
                Grade(cell_id=cell.id, notebook=submitted)
        gradebook.db.add(submission)
    gradebook.db.flush()
    return submission


def _late_penalties(gradebook: Gradebook, plan: Plan, submission: SubmittedAssignment):
    """What nbgrader's AssignLatePenalties does, with the plugin the course configured."""
    assigner = AssignLatePenalties(config=plan.config)
    assigner.init_plugin()
    for notebook in submission.notebooks:
        notebook.late_submission_penalty = None
        if submission.total_seconds_late > 0:
            gradebook.db.expire(notebook, ["score"])  # the score of the grades just written
            penalty = assigner.plugin_inst.late_submission_penalty(
                submission.student.id, notebook.score, submission.total_seconds_late)
            if penalty is not None:
                notebook.late_submission_penalty = min(max(penalty, 0), notebook.score)


def _write_atomically(path: Path, text: str):
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def is_done(gradebook: Gradebook, plan: Plan, student: str, destination: Path, expected: str) -> bool:
    """Graded before, from the same files and plan, with a score for every autograded cell."""
    try:
        extra = json.loads((destination / "results.json").read_text()).get("extra_data", {})
        if extra.get("fingerprint") != expected:
            return False
        submission = gradebook.find_submission(plan.assignment, student)
    except (OSError, ValueError, AttributeError, MissingEntry):
        return False
    auto = {c.grade_id for cells in plan.notebooks.values() for c in cells if c.function}
    scored = {g.name for n in submission.notebooks for g in n.grades if g.auto_score is not None}
    return auto <= scored


# ---------------------------------------------------------------------------------------
# Worker processes

def _work(connection, inherited, server, plan, seed, limits):
    """A worker: grade the submissions it is sent until it is sent None or the main process
    goes away (it dies with it)."""
    import ctypes
    import torch
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
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
            outcome = grade_submission(plan, *task, seed, limits)
        except Exception as error:  # a bug or a broken machine, not the learner: the batch goes on
            outcome = {"student": task[0], "error": f"{type(error).__name__}: {error}"}
        try:
            connection.send(outcome)
        except (EOFError, OSError):
            return


class Workers:
    """Worker processes forked from this one (which imported torch, nbgrader and the
    checks, so they start at once). A worker that dies is replaced, and the submission it
    held is tried once more before it is reported as not graded."""

    def __init__(self, count: int, server: ForkServer, plan: Plan, seed, limits: Limits):
        self.context = multiprocessing.get_context("fork")
        self.server, self.args = server, (plan, seed, limits)
        self.idle, self.busy = [], {}  # busy: connection -> (process, task, tries)
        for _ in range(count):
            self.idle.append(self._start())

    def _start(self):
        ours, theirs = self.context.Pipe()
        channel = self.server.attach()
        inherited = [ours, self.server.control, *(c for c, _ in self.idle), *self.busy]
        process = self.context.Process(target=_work, args=(theirs, inherited, channel, *self.args), daemon=True)
        process.start()
        theirs.close()
        channel.control.close()
        return ours, process

    def run(self, tasks, on_outcome):
        """Grade every task ((student, folder, release) tuples); ``on_outcome`` is called
        in this process with each outcome as it arrives."""
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
                process, task, tries = self.busy[connection]
                try:
                    outcome = connection.recv()
                except (EOFError, OSError):
                    del self.busy[connection]
                    process.join()
                    self.idle.append(self._start())
                    if tries == 0:
                        queue.append((task, 1))
                    else:
                        on_outcome({"student": task[0],
                                    "error": f"the grading worker died twice (exit code {process.exitcode})"})
                    continue
                del self.busy[connection]
                self.idle.append((connection, process))
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


# ---------------------------------------------------------------------------------------

def autograde(course: Path, assignment: str, students=None, workers: int | None = None, force: bool = False,
              seed: int | None = None, limits: Limits | None = None, server: ForkServer | None = None,
              out=sys.stdout) -> dict:
    """Grade every submission of ``assignment`` in the course at ``course``; returns a
    summary ``{"graded": [...], "skipped": [...], "failed": {student: why}, "seconds"}``.
    ``server``: a fork server started early (it imports torch meanwhile); default: a new one."""
    start = time.monotonic()
    own_server, server = server is None, server or ForkServer()
    try:
        return _autograde(course, assignment, students, workers, force, seed, limits or Limits(), server, out, start)
    finally:
        if own_server:
            server.close()


def _autograde(course, assignment, students, workers, force, seed, limits, server, out, start) -> dict:
    coursedir, config = course_directory(Path(course).resolve())
    plan = make_plan(coursedir, config, assignment)
    submitted = _submissions(coursedir, assignment)
    if students:
        unknown = sorted(set(students) - set(submitted))
        if unknown:
            raise BatchError(f"no submission of {assignment} by {', '.join(unknown)}")
        submitted = {s: submitted[s] for s in students}
    release = Path(coursedir.format_path(coursedir.release_directory, ".", assignment))
    summary = {"graded": [], "skipped": [], "failed": {}, "seconds": 0.0}
    tasks = []
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        for student, folder in submitted.items():
            destination = Path(coursedir.format_path(coursedir.autograded_directory, student, assignment))
            if not force and is_done(gradebook, plan, student, destination, fingerprint(plan, folder, seed)):
                summary["skipped"].append(student)
            else:
                tasks.append((student, str(folder), str(release)))
    print(f"{assignment}: {len(tasks)} to grade, {len(summary['skipped'])} already graded "
          f"(chapter {plan.chapter}, {workers or _default_workers()} workers)", file=out, flush=True)
    if tasks:
        pool = Workers(min(workers or _default_workers(), len(tasks)), server, plan, seed, limits)
        try:
            with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
                def on_outcome(outcome):
                    student = outcome["student"]
                    if "error" in outcome:
                        summary["failed"][student] = outcome["error"]
                        print(f"  {student}: NOT GRADED ({outcome['error']})", file=out, flush=True)
                        return
                    destination = Path(coursedir.format_path(coursedir.autograded_directory, student, assignment))
                    try:
                        record(gradebook, plan, outcome, destination, submitted[student])
                    except Exception as error:  # e.g. the gradebook is locked: retried on the next run
                        summary["failed"][student] = f"could not record the grades ({type(error).__name__}: {error})"
                        print(f"  {student}: NOT RECORDED ({error})", file=out, flush=True)
                        return
                    summary["graded"].append(student)
                    tests = [t for n in outcome["notebooks"].values() for t in n["tests"]]
                    print(f"  [{len(summary['graded'])}/{len(tasks)}] {student}: "
                          f"{sum(t['score'] for t in tests):g} / {sum(t['max_score'] for t in tests):g} "
                          f"({outcome['seconds']:.1f} s)", file=out, flush=True)
                pool.run(tasks, on_outcome)
        finally:
            pool.close()
    summary["seconds"] = round(time.monotonic() - start, 2)
    return summary


def _submissions(coursedir: CourseDirectory, assignment: str) -> dict[str, Path]:
    """student id -> submitted folder, found as nbgrader finds them."""
    pattern = coursedir.format_path(coursedir.submitted_directory, "*", assignment)
    regex = re.compile(coursedir.format_path(coursedir.submitted_directory, "(?P<student_id>[^/]+)", assignment,
                                             escape=True) + "$")
    excluded = set(filter(None, coursedir.student_id_exclude.split(",")))
    found = {}
    for folder in sorted(glob.glob(pattern)):
        match = regex.match(folder)
        if match and os.path.isdir(folder) and match["student_id"] not in excluded:
            found[match["student_id"]] = Path(folder)
    return found


def _default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))
