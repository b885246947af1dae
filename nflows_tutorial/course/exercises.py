"""Student copies of the course notebooks: each exercise's solution replaced by a stub, its outputs cleared.

Markup in the notebook sources: an exercise is a code cell tagged ``exercise`` whose first line reads
``# Exercise N: <title>``; its solution lies between a line ``# BEGIN SOLUTION`` and a line
``# END SOLUTION`` (several such regions may share a cell); the next cell, tagged ``exercise-check``,
checks it. A cell tagged ``answer-listing`` shows the package's own answer to an exercise (a later one,
possibly in another notebook): a student copy keeps the cell but not its output.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..io.paths import course_notebooks
from .outputs import write_outputs

__all__ = [
    "EXERCISE_TAG",
    "CHECK_TAG",
    "ANSWER_LISTING_TAG",
    "Exercise",
    "find_exercises",
    "student_notebook",
    "read_notebook",
    "read_course_notebooks",
    "write_student_copies",
]

EXERCISE_TAG = "exercise"
CHECK_TAG = "exercise-check"
ANSWER_LISTING_TAG = "answer-listing"
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
_TITLE = re.compile(r"#\s*Exercise\s+(\d+):\s*(\S.*?)\s*$")
FORMATS = ("ipynb", "py")


@dataclass(frozen=True)
class Exercise:
    """One exercise of a notebook: its number, title, and the indices of its cell and check cell."""

    number: int
    title: str
    cell: int
    check: int

    @property
    def stub(self) -> str:
        """The statement that stands in for the solution in a student copy."""
        return f"raise NotImplementedError({json.dumps(f'Exercise {self.number}: {self.title}')})"


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def find_exercises(nb: nbformat.NotebookNode, name: str = "notebook") -> list[Exercise]:
    """The exercises of ``nb``, validated: a title line, balanced solution markers, a check cell right after."""
    found = []
    for index, cell in enumerate(nb.cells):
        if EXERCISE_TAG not in _tags(cell):
            continue
        where = f"{name}, cell {index}"
        first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
        match = _TITLE.match(first)
        if cell.cell_type != "code" or not match:
            raise ValueError(
                f"{where}: an exercise must be a code cell whose first line reads "
                f"'# Exercise N: <title>', found {first!r}"
            )
        _solution_regions(cell.source, where)
        following = nb.cells[index + 1] if index + 1 < len(nb.cells) else None
        if following is None or CHECK_TAG not in _tags(following):
            raise ValueError(
                f"{where}: exercise {match.group(1)} needs a check cell tagged {CHECK_TAG!r} right after it"
            )
        found.append(Exercise(int(match.group(1)), match.group(2), index, index + 1))
    return found


def _solution_regions(source: str, where: str) -> list[tuple[int, int]]:
    """(BEGIN line, END line) index pairs of the solution regions in ``source``."""
    regions, start = [], None
    for number, line in enumerate(source.splitlines()):
        marker = line.strip()
        if marker == BEGIN:
            if start is not None:
                raise ValueError(f"{where}: '{BEGIN}' on line {number + 1} before the previous region ended")
            start = number
        elif marker == END:
            if start is None:
                raise ValueError(f"{where}: '{END}' on line {number + 1} without a '{BEGIN}' before it")
            regions.append((start, number))
            start = None
    if start is not None:
        raise ValueError(f"{where}: '{BEGIN}' on line {start + 1} is never closed by '{END}'")
    if not regions:
        raise ValueError(f"{where}: an exercise cell needs a solution between '{BEGIN}' and '{END}' lines")
    return regions


def _stubbed(source: str, exercise: Exercise, where: str) -> str:
    lines = source.splitlines()
    for begin, end in reversed(_solution_regions(source, where)):
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        lines[begin : end + 1] = [indent + exercise.stub]
    return "\n".join(lines)


def _clear(cell: nbformat.NotebookNode) -> None:
    cell.outputs = []
    cell.execution_count = None


def student_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """A copy of ``nb`` with every solution replaced by its stub, and the outputs of the exercise, check and
    answer-listing cells cleared."""
    student = copy.deepcopy(nb)
    for cell in student.cells:
        if ANSWER_LISTING_TAG in _tags(cell) and cell.cell_type == "code":
            _clear(cell)
    for exercise in find_exercises(student, name):
        cell = student.cells[exercise.cell]
        cell.source = _stubbed(cell.source, exercise, f"{name}, cell {exercise.cell}")
        _clear(cell)
        _clear(student.cells[exercise.check])
    return student


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook in ``path``, or a ``ValueError`` naming the file and what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a notebook: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a notebook: its JSON is a {type(data).__name__}, a notebook's is an object")
    try:
        # nbformat.reads only logs a schema violation; validating here makes it an error that names the file.
        nb = nbformat.convert(nbformat.reader.reads(text), 4)
        nbformat.validate(nb)
    # nbformat meets a foreign document with whichever error its converters happen to raise.
    except (nbformat.ValidationError, ValueError, KeyError, TypeError, AttributeError) as err:
        where = "/".join(str(part) for part in getattr(err, "absolute_path", []))
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: not a Jupyter notebook: {reason}{f' (at {where})' if where else ''}") from None
    return nb


def read_course_notebooks(folder: Path | None = None) -> list[tuple[Path, nbformat.NotebookNode]]:
    """Every course notebook of ``folder`` (default: the checkout's), read and validated, in course order."""
    return [(path, read_notebook(path)) for path in course_notebooks(folder)]


def write_student_copies(
    out: Path, notebooks: Path | None = None, formats: tuple[str, ...] = FORMATS, force: bool = False
) -> list[Path]:
    """Write a student copy of each course notebook into ``out`` (as ``.ipynb`` and/or ``.py``); return the files.

    The exercise numbers must run 1, 2, ... across the notebooks in order, so that a stub's message
    points at one exercise of the course. A copy a student may have edited is never overwritten
    unless ``force``: see :mod:`nflows_tutorial.course.outputs`.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"unknown format {', '.join(unknown) or '(none given)'}; choose from {', '.join(FORMATS)}")
    files: dict[str, bytes] = {}
    numbers = []
    for path, nb in read_course_notebooks(notebooks):
        numbers += [exercise.number for exercise in find_exercises(nb, path.name)]
        student = student_notebook(nb, path.name)
        if "ipynb" in formats:
            files[path.name] = _text_file(nbformat.writes(student))
        if "py" in formats:
            import jupytext

            files[path.with_suffix(".py").name] = _text_file(jupytext.writes(student, fmt="py:percent"))
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"exercise numbers must run 1..{len(numbers)} across the notebooks in order, found {numbers}")
    return write_outputs(out, files, "exercises", force)


def _text_file(text: str) -> bytes:
    """``text`` as a file holds it: UTF-8, ending with a newline (as nbformat and jupytext write files)."""
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")
