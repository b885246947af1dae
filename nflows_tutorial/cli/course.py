"""The lecturer's commands: ``exercises``, ``slides`` and ``site`` built from the notebooks, and ``bench``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..io.paths import CHECKOUT
from .options import (
    Command,
    MachineError,
    UsageError,
    add_compile,
    add_json,
    add_model,
    chosen_models,
    number,
    say,
)

__all__ = [
    "COMMANDS",
    "add_material_arguments",
    "add_exercises_arguments",
    "run_exercises",
    "add_slides_arguments",
    "run_slides",
    "add_site_arguments",
    "run_site",
    "add_bench_arguments",
    "run_bench",
]


@contextmanager
def _needs_extra(command: str, extra: str = "test") -> Iterator[None]:
    """Turn a missing optional package, met while importing what ``command`` needs, into a usage error."""
    try:
        yield
    except ModuleNotFoundError as err:
        raise UsageError(f"{command} needs {err.name}; install it with: pip install -e '.[{extra}]'") from None


def _add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="overwrite files in --out that this command did not write, or that were edited since "
        "(without it the command refuses and names them)",
    )


def _add_notebooks(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        help="folder of the course notebooks (default: notebooks/ of this checkout)",
    )


def add_material_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``slides``: where to write, which notebooks to build from, and --force."""
    parser.add_argument("--out", type=Path, required=True, help="folder to write into (created when missing)")
    _add_notebooks(parser)
    _add_force(parser)


def add_exercises_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``exercises``: student copies into --out, or an nbgrader course into --nbgrader."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="folder to write the student copies into (created when missing)")
    where.add_argument(
        "--nbgrader",
        type=Path,
        metavar="DIR",
        help="write an nbgrader course into DIR instead: nbgrader_config.py and one assignment per notebook, "
        "each exercise's check an autograded test with hidden tests (see notebooks/grading.md)",
    )
    _add_notebooks(parser)
    _add_force(parser)


def run_exercises(args: argparse.Namespace) -> int:
    """Write the student copies into ``args.out``, or the nbgrader course into ``args.nbgrader``, and list the files."""
    if args.nbgrader is not None:
        return _run_nbgrader(args)
    with _needs_extra("exercises"):
        from ..course.exercises import write_student_copies
    for path in write_student_copies(args.out, args.notebooks, force=args.force):
        print(path)
    return 0


def _run_nbgrader(args: argparse.Namespace) -> int:
    """Write the nbgrader course, list its files, and say what grading still lacks here and what comes next."""
    with _needs_extra("exercises --nbgrader", extra="grade"):
        from ..course.grading import missing_for_grading, write_nbgrader_course
    for path in write_nbgrader_course(args.nbgrader, args.notebooks, force=args.force):
        print(path)
    for missing in missing_for_grading():
        say(f"grading needs {missing}")
    say(
        f'next: cd {args.nbgrader} && nbgrader generate_assignment "*" (notebooks/grading.md: the steps to a CSV of marks)'
    )
    return 0


def add_slides_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``slides``: those of :func:`add_material_arguments`, and the PDFs to print."""
    add_material_arguments(parser)
    parser.add_argument(
        "--pdf",
        action="store_true",
        help="also print each deck to a PDF beside it, one page per slide (needs Playwright and Chromium)",
    )
    parser.add_argument(
        "--notes", action="store_true", help="with --pdf: a page of speaker notes after each slide that has notes"
    )


def run_slides(args: argparse.Namespace) -> int:
    """Write the decks (and their PDFs) into ``args.out`` and list them with their slide and page counts."""
    if args.notes and not args.pdf:
        raise UsageError("--notes puts speaker notes into the PDFs: add --pdf")
    with _needs_extra("slides"):
        from ..course.handouts import PdfExportError
        from ..course.slides import write_decks
    try:
        decks = write_decks(args.out, args.notebooks, force=args.force, pdf=args.pdf, notes=args.notes)
    except PdfExportError as err:
        raise MachineError(str(err)) from None
    for deck in decks:
        print(f"{deck.path}  ({deck.slides} slides)")
        if deck.pdf is not None:
            print(f"{deck.pdf}  ({deck.pages} pages)")
    return 0


def add_site_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``site`` command's options."""
    parser.add_argument(
        "--out",
        type=Path,
        default=CHECKOUT / "build" / "site",
        metavar="DIR",
        help="folder to write the website into (default: build/site in the checkout)",
    )
    parser.add_argument(
        "--pdf",
        action="store_true",
        help="also print each deck's PDF handout into the site (needs Playwright and Chromium)",
    )
    parser.add_argument("--verbose", action="store_true", help="show Sphinx's progress, not only its warnings")
    _add_force(parser)


def run_site(args: argparse.Namespace) -> int:
    """Build the website and say where its landing page is."""
    from ..course.handouts import PdfExportError
    from ..course.site import build_site

    try:
        index = build_site(args.out, quiet=not args.verbose, force=args.force, pdf=args.pdf)
    except PdfExportError as err:
        raise MachineError(str(err)) from None
    print(f"website written to {index.parent}; preview: python -m http.server --directory {index.parent}")
    return 0


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` command's options."""
    add_model(parser, several="time")
    parser.add_argument("--tiny", action="store_true", help="tiny batches, one repeat: proves the bench runs (CI)")
    add_json(parser, "the rows")
    parser.add_argument(
        "--threads",
        type=number(int, lambda v: v >= 1, "a number of threads, 1 or more"),
        default=None,
        help="torch CPU threads (default: torch's choice)",
    )
    add_compile(parser)


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark and print its table, or its rows and machine as JSON."""
    from ..acceleration.bench import benchmark, format_table

    report = benchmark(chosen_models(args), tiny=args.tiny, threads=args.threads, compiled=args.compiled)
    print(json.dumps(report, indent=2) if args.json else format_table(report["rows"], report["machine"]))
    return 0


_EXERCISES = (
    "student copies of the notebooks (solutions replaced by stubs, their outputs cleared) or an nbgrader course"
)
_SLIDES = "one reveal.js deck per notebook, viewable offline (and, with --pdf, one PDF per deck)"
_BENCH = "the plain and the accelerated path of each model side by side, on this machine"

COMMANDS = (
    Command("exercises", f"write {_EXERCISES}", add_exercises_arguments, run_exercises, f"Write {_EXERCISES}."),
    Command("slides", f"write {_SLIDES}", add_slides_arguments, run_slides, f"Write {_SLIDES}."),
    Command("bench", f"benchmarks: {_BENCH}", add_bench_arguments, run_bench, f"Benchmarks: {_BENCH}."),
    Command(
        "site", "build the course website (notebooks, decks, pages, API) into a folder", add_site_arguments, run_site
    ),
)
