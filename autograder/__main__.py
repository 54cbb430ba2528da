"""Command line of the course's autograder.

    python -m autograder grade NOTEBOOK [--json]     grade one filled-in chapter notebook
    python -m autograder render SOURCE TARGET        execute a chapter, write its student view (the book's page)
    python -m autograder student FOLDER SOURCE...    write clean student notebooks (stubs, no outputs)
    python -m autograder course DIR [CHAPTER...]     create an nbgrader course directory from the chapters

``grade`` exits with status 0 when grading ran (whatever the score), 2 when it could not (the reason goes
to stderr): a missing file, something that is not a notebook, an unknown chapter.
"""
import argparse
import json
import sys
from pathlib import Path

from autograder.checks import CHAPTERS
from autograder.grading import GradingError, format_results, grade_notebook
from autograder.suite import Result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description="The course's autograder.")
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("grade", help="grade one filled-in chapter notebook")
    grade.add_argument("notebook")
    grade.add_argument("--json", action="store_true", help="print the report as JSON")
    grade.add_argument("--chapter", choices=sorted(CHAPTERS), help="which chapter (default: from the notebook)")
    grade.add_argument("--seed", type=int, help="grading seed (default: $AUTOGRADER_SEED or 0)")
    render = commands.add_parser("render", help="execute a source chapter and write its student view with outputs")
    render.add_argument("source")
    render.add_argument("target")
    student = commands.add_parser("student", help="write clean student notebooks into FOLDER")
    student.add_argument("folder")
    student.add_argument("sources", nargs="+")
    course = commands.add_parser("course", help="create an nbgrader course directory from the chapters")
    course.add_argument("folder")
    course.add_argument("chapters", nargs="*", help="chapter names (default: all)")
    args = parser.parse_args(argv)

    if args.command == "course":
        from autograder.course import create_course
        for name in create_course(Path(args.folder), chapters=args.chapters):
            print(f"assignment {name}: {args.folder}/source/{name}/{name}.ipynb")
        return 0

    if args.command in ("render", "student"):
        from autograder.release import render_for_book, write_student_notebooks  # slow imports (nbgrader)
    if args.command == "render":
        render_for_book(Path(args.source), Path(args.target))
        return 0
    if args.command == "student":
        for path in write_student_notebooks([Path(s) for s in args.sources], Path(args.folder)):
            print(path)
        return 0
    try:
        report = grade_notebook(args.notebook, chapter=args.chapter, seed=args.seed)
    except GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_results([Result(**t) for t in report["tests"]]))
        print(f"\nTotal: {report['score']:g} / {report['max_score']:g} autograded points ({report['notebook']})")
        print("Written answers are graded by your instructor.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
