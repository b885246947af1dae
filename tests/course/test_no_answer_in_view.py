"""Student copies show no answer in advance: no cell above an exercise lists the package code that it asks for.

The notebooks read the package's source with ``show_source``; a listing of the very function an exercise
asks for belongs after the exercise's check. A cell tagged ``answer-listing`` lists an answer to a later
exercise as well, so student copies hold it without its output.
"""

from __future__ import annotations

import ast
import html
import inspect
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from nflows_tutorial import Dequantization, ImageFlow, SqueezeFlow, bits_per_dim
from nflows_tutorial.analysis.sampling import interpolate, latent_path
from nflows_tutorial.course.exercises import (
    ANSWER_LISTING_TAG,
    find_exercises,
    read_course_notebooks,
    read_notebook,
    write_student_copies,
)

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
CHEATSHEET = NOTEBOOKS / "cheatsheet.md"

#: Exercise number -> the package code that answers it.
ANSWERS: dict[int, tuple[Callable, ...]] = {
    1: (bits_per_dim,),
    2: (Dequantization.logit, Dequantization.sigmoid),
    3: (Dequantization.forward, Dequantization.sigmoid),
    4: (ImageFlow.log_likelihood,),
    7: (SqueezeFlow.forward,),
    9: (ImageFlow.log_likelihood, ImageFlow.bits_per_dim),
    10: (interpolate, latent_path),
}

#: Exercises whose answer the course lists after the exercise: the search must find those listings.
LISTED_LATER = (1, 2, 3, 4, 7)

#: Shorter lines (``return z, ldj``) are common to many functions and tell nothing.
MIN_LENGTH = 25

_TAG = re.compile(r"<[^>]*>")


def answer_lines(obj: Callable) -> set[str]:
    """The telling lines of a function's body: its statements, without the docstring, comments or short lines."""
    source = textwrap.dedent(inspect.getsource(obj))
    function = next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef))
    body = function.body[1:] if ast.get_docstring(function) is not None else function.body
    lines = source.splitlines()
    found = set()
    for statement in body:
        for line in lines[statement.lineno - 1 : statement.end_lineno]:
            text = line.strip()
            if len(text) >= MIN_LENGTH and not text.startswith("#"):
                found.add(text)
    return found


def lines_answering(number: int) -> set[str]:
    """The telling lines of all the package code that answers exercise ``number``."""
    return set().union(*(answer_lines(obj) for obj in ANSWERS[number]))


def visible_text(cell: nbformat.NotebookNode) -> str:
    """A cell's source and the text of its outputs as a reader sees them (HTML without its markup)."""
    parts = [cell.source]
    for output in cell.get("outputs", []):
        parts.append(str(output.get("text", "")))
        parts += [str(line) for line in output.get("traceback", [])]
        for kind, data in output.get("data", {}).items():
            if kind == "text/html":
                parts.append(html.unescape(_TAG.sub("", str(data))))
            elif kind.startswith("text/"):
                parts.append(str(data))
    return "\n".join(parts)


Course = list[tuple[str, nbformat.NotebookNode]]


@pytest.fixture(scope="module")
def course() -> Course:
    """Each course notebook as ``(file name, notebook)``, in course order."""
    return [(path.name, nb) for path, nb in read_course_notebooks(NOTEBOOKS)]


@pytest.fixture(scope="module")
def student_copies(course: Course, tmp_path_factory: pytest.TempPathFactory) -> dict[str, nbformat.NotebookNode]:
    """The student copies that ``python -m nflows_tutorial exercises`` writes, read back, by file name."""
    out = tmp_path_factory.mktemp("exercises")
    write_student_copies(out, NOTEBOOKS, formats=("ipynb",))
    return {name: read_notebook(out / name) for name, _ in course}


def where(number: int, course: Course) -> tuple[int, int]:
    """(index of its notebook in the course, index of its cell) of exercise ``number``."""
    for index, (name, nb) in enumerate(course):
        for exercise in find_exercises(nb, name):
            if exercise.number == number:
                return index, exercise.cell
    raise AssertionError(f"no exercise {number} in {', '.join(name for name, _ in course)}")


def test_every_listed_answer_is_an_exercise_with_telling_lines(course):
    for number, objects in ANSWERS.items():
        where(number, course)
        for obj in objects:
            assert answer_lines(obj), f"exercise {number}: {obj.__qualname__} has no line to look for"


@pytest.mark.parametrize("number", sorted(ANSWERS))
def test_no_answer_above_its_exercise(course, student_copies, number):
    notebook, cell = where(number, course)
    secret = lines_answering(number)
    shown = []
    for position, (name, _) in enumerate(course[: notebook + 1]):
        student = student_copies[name]
        end = cell if position == notebook else len(student.cells)
        shown += [(name, index, visible_text(c)) for index, c in enumerate(student.cells[:end])]
    leaks = [(name, index, line) for name, index, text in shown for line in sorted(secret) if line in text]
    assert not leaks, (
        f"exercise {number}: the student copies show its answer before it, e.g. {leaks[0][0]}, cell {leaks[0][1]}: "
        f"{leaks[0][2]!r} ({len(leaks)} such lines); move that listing after the exercise's check cell, or tag it "
        f"{ANSWER_LISTING_TAG!r} if it follows an earlier exercise that asks for the same code"
    )


@pytest.mark.parametrize("number", LISTED_LATER)
def test_the_search_sees_the_listings_after_an_exercise(course, number):
    # Proves that the lines are looked for where listings put them (an HTML or text output).
    notebook, cell = where(number, course)
    text = "\n".join(visible_text(c) for c in course[notebook][1].cells[cell + 1 :])
    missing = sorted(line for line in lines_answering(number) if line not in text)
    assert not missing, f"exercise {number}: no listing after it shows {missing[0]!r}; re-execute the notebook?"


def test_cheatsheet_holds_no_answer():
    text = CHEATSHEET.read_text(encoding="utf-8")
    leaks = sorted((number, line) for number in ANSWERS for line in lines_answering(number) if line in text)
    assert not leaks, f"the cheat sheet holds the answer to exercise {leaks[0][0]}: {leaks[0][1]!r}"
