"""Command line of the course's autograder.

    python -m autograder grade NOTEBOOK [--json]     grade one filled-in chapter notebook (in a course directory:
                                                     with the course's private seed; elsewhere the practice seed);
                                                     --lang en|zh (default: $TRANSFORMERS_GRADED_LANG, else the
                                                     notebook's edition)
    python -m autograder render SOURCE TARGET        execute a chapter, write its student view (the book's page)
    python -m autograder student FOLDER SOURCE...    write clean student notebooks that do not exist yet (--reset:
                                                     overwrite them; --lang zh: the Chinese edition)
    python -m autograder course DIR [CHAPTER...]     create an nbgrader course directory from the chapters
    python -m autograder autograde ASSIGNMENT        grade every submission of an nbgrader course, in sandboxes
    python -m autograder gradescope CHAPTER [-o ZIP] write a Gradescope autograder package for a chapter
    python -m autograder report ASSIGNMENT           write reports/ASSIGNMENT.html, the class's results (in a course)
    python -m autograder canvas [-o CSV]             write the gradebook as a CSV for Canvas's grade import

``grade`` exits with status 0 when grading ran (whatever the score), 2 when it could not (the reason goes
to stderr): a missing file, something that is not a notebook, an unknown chapter (or one the notebook
contradicts itself about), no sandbox. ``autograde`` (run in the course directory, or pass --course) exits with 0
when every submission is recorded (one that is not a readable notebook is recorded as not graded, with 0 points
and the reason; each is listed), 1 when the grader could not grade some (each is listed; the next run retries
them), 2 when it could not run (no gradebook, no such assignment).
"""

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

from autograder.chapters import BY_NAME  # modules that import torch are imported where needed (see grade_command)
from autograder.messages import ENVIRONMENT, LANGUAGES, language, translate
from autograder.seeds import PRACTICE_SEED, course_seed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description="The course's autograder.")
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("grade", help="grade one filled-in chapter notebook")
    grade.add_argument("notebook")
    grade.add_argument("--json", action="store_true", help="print the report as JSON")
    grade.add_argument("--chapter", choices=list(BY_NAME), help="which chapter (default: from the notebook)")
    grade.add_argument(
        "--seed",
        type=int,
        help="grading seed (default: $AUTOGRADER_SEED, else the private seed of the course in --course, "
        f"else the practice seed {PRACTICE_SEED}, the one the learner's kit holds expected values for)",
    )
    grade.add_argument(
        "--course",
        default=".",
        help="an nbgrader course directory (made by `python -m autograder course`) whose private seed grades "
        "when no seed is given (default: the current directory, if it is one)",
    )
    grade.add_argument(
        "--lang",
        choices=LANGUAGES,
        help=f"the language of the report (default: ${ENVIRONMENT}, else the notebook's, else English)",
    )
    render = commands.add_parser("render", help="execute a source chapter and write its student view with outputs")
    render.add_argument("source")
    render.add_argument("target")
    student = commands.add_parser("student", help="write clean student notebooks into FOLDER")
    student.add_argument("folder")
    student.add_argument("sources", nargs="+")
    student.add_argument("--lang", choices=LANGUAGES, default="en", help="the edition: English or Chinese")
    student.add_argument(
        "--reset",
        action="store_true",
        help="overwrite notebooks that exist already (the default keeps them: they hold your work)",
    )
    course = commands.add_parser("course", help="create an nbgrader course directory from the chapters")
    course.add_argument("folder")
    course.add_argument("chapters", nargs="*", help="chapter names (default: all)")
    course.add_argument("--lang", choices=LANGUAGES, default="en", help="the edition the learners receive")
    batch = commands.add_parser(
        "autograde",
        help="grade every submission of an assignment of an nbgrader course "
        "into its gradebook, in parallel sandboxes (instead of `nbgrader autograde`)",
    )
    batch.add_argument("assignment")
    batch.add_argument("--course", default=".", help="the nbgrader course directory (default: the current one)")
    batch.add_argument("--student", action="append", help="grade only this student (repeatable)")
    batch.add_argument("--workers", type=int, help="parallel grading processes (default: one per CPU core)")
    batch.add_argument("--force", action="store_true", help="regrade submissions that are already graded")
    batch.add_argument(
        "--seed",
        type=int,
        help="grading seed (default: $AUTOGRADER_SEED, else the course's private seed from its config)",
    )
    batch.add_argument(
        "--lang", choices=LANGUAGES, help="the feedback's language for every notebook (default: each notebook's)"
    )
    batch.add_argument("--call-seconds", type=float, default=60.0, help="wall-clock limit of one call of learner code")
    batch.add_argument(
        "--cell-seconds",
        type=float,
        default=60.0,
        help="wall-clock limit of running a notebook's code cells (demo cells are skipped; "
        "the chapters' own take about a second)",
    )
    batch.add_argument("--notebook-seconds", type=float, default=900.0, help="wall-clock limit of one notebook")
    batch.add_argument("--memory-mb", type=int, default=6144, help="memory limit of a sandbox (all its processes)")
    batch.add_argument(
        "--unconfined-i-trust-every-submission",
        action="store_true",
        help="run submissions without bubblewrap, with this machine in their reach (development only)",
    )
    gradescope = commands.add_parser("gradescope", help="write a Gradescope autograder package for a chapter")
    gradescope.add_argument("chapter", choices=list(BY_NAME))
    gradescope.add_argument("-o", "--output", help="the zip to write (default: gradescope_CHAPTER.zip)")
    report = commands.add_parser("report", help="write reports/ASSIGNMENT.html: the class's results for the instructor")
    report.add_argument("assignment")
    report.add_argument("--course", default=".", help="the nbgrader course directory (default: the current one)")
    canvas = commands.add_parser("canvas", help="write the gradebook's grades as a CSV for Canvas's grade import")
    canvas.add_argument("--course", default=".", help="the nbgrader course directory (default: the current one)")
    canvas.add_argument("-o", "--output", default="canvas_grades.csv", help="the CSV to write")
    args = parser.parse_args(argv)
    if args.command == "grade":
        return grade_command(args)
    from autograder import oracle

    if not oracle.HAS_REFERENCE:
        print(
            f"error: `{args.command}` is for the course's maintainers and instructors (it needs the course's "
            "checkout); the learner's kit has `grade`",
            file=sys.stderr,
        )
        return 2

    if args.command == "gradescope":
        from autograder.gradescope import build_package

        print(build_package(args.chapter, Path(args.output or f"gradescope_{args.chapter}.zip")))
        return 0
    if args.command == "report":
        from autograder.report import ReportError, write_report

        try:
            print(write_report(Path(args.course), args.assignment))
        except ReportError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    if args.command == "canvas":
        from autograder.canvas import export_canvas

        print(export_canvas(Path(args.course), Path(args.output)))
        return 0

    if args.command == "autograde":
        return autograde_command(args)

    if args.command == "course":
        from autograder.course import create_course

        for name in create_course(Path(args.folder), chapters=args.chapters, lang=args.lang):
            print(f"assignment {name}: {args.folder}/source/{name}/{name}.ipynb")
        return 0

    from autograder.release import render_for_book, write_student_notebooks  # slow imports (nbgrader)

    if args.command == "render":
        render_for_book(Path(args.source), Path(args.target))
        return 0
    sources = [Path(s) for s in args.sources]
    for path, written in write_student_notebooks(sources, Path(args.folder), args.reset, args.lang):
        print(path if written else f"{path}: exists, kept (--reset writes a fresh copy over it)")
    return 0


def grade_command(args) -> int:
    """``grade``: in the course's checkout, in the sandbox; the sandbox's fork server starts first, so
    that it imports torch (inside bubblewrap) while this process imports it, on another core."""
    server = None  # the learner's kit runs the learner's own code in a plain child process
    if importlib.util.find_spec("solutions") is not None:  # oracle.HAS_REFERENCE, before torch is imported
        from autograder.confinement import ForkServer

        server = ForkServer("preferred")  # the learner's own code: bubblewrap if it works here, else unconfined
    from autograder.grading import GradingError, ProcessError, format_results, grade_notebook
    from autograder.suite import Result

    try:
        if server is not None:
            from autograder.sandbox import use_fork_server

            use_fork_server(server)
        seed, origin = grading_seed(args.seed, Path(args.course))
        report = grade_notebook(args.notebook, chapter=args.chapter, seed=seed)
    except (GradingError, ProcessError) as error:
        print(translate(f"error: {error}", language(args.lang)).text, file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.close()
    lang = language(args.lang) if args.lang else report["language"]
    report.update(seed=seed, seed_from=origin, language=lang)
    if args.json:
        for test in report["tests"]:
            test["message"] = translate(test["message"], lang).text
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    lines = [
        format_results([Result(**t) for t in report["tests"]], lang),
        f"\nTotal: {report['score']:g} / {report['max_score']:g} autograded points ({report['notebook']})",
        f"Inputs drawn from seed {seed} ({origin}).",
        "Written answers are graded by your instructor.",
    ]
    if server is not None and server.confinement == "none":
        lines.append("(Your code ran unconfined: bubblewrap is not installed. Fine for your own notebook.)")
    print("\n".join([lines[0], *(translate(line, lang).text for line in lines[1:])]))
    return 0


def grading_seed(seed: int | None, course: Path) -> tuple[int, str]:
    """The seed ``grade`` draws the checks' inputs from, and where it comes from: ``seed`` (--seed),
    else $AUTOGRADER_SEED, else the private seed of the course in ``course``, else the practice seed."""
    if seed is None and "AUTOGRADER_SEED" in os.environ:
        from autograder.suite import default_seed

        return default_seed(), "$AUTOGRADER_SEED"
    if seed is None and (private := course_seed(course)) is not None:
        return private, f"the private seed of the course in {course.resolve()}"
    if seed is None or seed == PRACTICE_SEED:
        return PRACTICE_SEED, "the practice seed, whose expected values the learner's kit holds"
    return seed, "--seed"


def autograde_command(args) -> int:
    from autograder.sandbox import ForkServer, Limits, SandboxError

    seed = args.seed if args.seed is not None else grading_seed(None, Path(args.course))[0]
    if seed is None or seed == PRACTICE_SEED:
        print(
            f"error: {'the practice seed' if seed else 'no seed'}: official grades need the course's private seed "
            f"(the learners' kit holds the expected values of the practice seed {PRACTICE_SEED}). "
            f"`python -m autograder course {args.course}` writes one into its nbgrader_config.py; or pass --seed",
            file=sys.stderr,
        )
        return 2
    try:  # it imports torch while this process imports nbgrader
        server = ForkServer("off" if args.unconfined_i_trust_every_submission else None)
    except SandboxError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if server.confinement == "none":
        print(
            "WARNING: grading UNCONFINED: every submission can read and change this machine's files, "
            "including the gradebook and the reference solutions.",
            file=sys.stderr,
        )
    from autograder.batch import BatchError, autograde

    limits = Limits(
        call_seconds=args.call_seconds,
        setup_seconds=args.cell_seconds,
        notebook_seconds=args.notebook_seconds,
        memory_bytes=args.memory_mb << 20,
    )
    try:
        summary = autograde(
            Path(args.course),
            args.assignment,
            students=args.student,
            workers=args.workers,
            force=args.force,
            seed=seed,
            limits=limits,
            server=server,
            language=args.lang,
        )
    except BatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        server.close()
    print(
        f"graded {len(summary['graded'])}, already graded {len(summary['skipped'])}, "
        f"could not grade {len(summary['failed'])}, in {summary['seconds']:.1f} s"
    )
    for student, reason in summary["not_graded"].items():
        print(f"recorded as not graded, with 0 points: {student}: {reason}")
    for student, reason in summary["failed"].items():
        print(f"not graded: {student}: {reason}", file=sys.stderr)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    status = main()
    if sys.argv[1:2] == ["grade"]:
        # A learner waits for `grade` after every attempt. It has closed its sandbox and fork server and
        # written nothing but its report: it leaves without the interpreter's teardown of torch, sympy and
        # nbformat's modules, which took 0.6-1.2 s of that wait (2 busy cores).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
