"""Student copies: no solution text, everything else as in the course, and they fail only at the exercises."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from nflows_tutorial.cli import main
from nflows_tutorial.course.exercises import (
    ANSWER_LISTING_TAG,
    BEGIN,
    CHECK_TAG,
    END,
    EXERCISE_TAG,
    find_exercises,
    student_notebook,
    write_student_copies,
)

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NAMES = [path.name for path in NOTEBOOKS]


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def notebook_text(nb) -> str:
    """Every source and every textual output of a notebook, one after the other."""
    parts = []
    for cell in nb.cells:
        parts.append(cell.source)
        for output in cell.get("outputs", []):
            parts.append(str(output.get("text", "")))
            parts += [str(v) for k, v in output.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


def solution_lines(nb) -> set[str]:
    """Lines that only the solutions hold: long enough to be telling, and found nowhere else in the notebook
    (the package's own source, shown in outputs, may legitimately share a line with a solution)."""
    inside, rest = set(), copy.deepcopy(nb)
    for cell in rest.cells:
        within, kept = False, []
        for line in cell.source.splitlines():
            text = line.strip()
            if text in (BEGIN, END):
                within = text == BEGIN
            elif within:
                inside.add(text)
            else:
                kept.append(line)
        cell.source = "\n".join(kept)
    elsewhere = notebook_text(rest)
    return {line for line in inside if len(line) >= 12 and line not in elsewhere}


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    write_student_copies(out)
    return out


def test_every_notebook_has_exercises_numbered_across_the_course():
    numbers = []
    for path in NOTEBOOKS:
        exercises = find_exercises(nbformat.read(path, as_version=4), path.name)
        assert len(exercises) >= 4, f"{path.name} has {len(exercises)} exercises, expected at least 4"
        numbers += [exercise.number for exercise in exercises]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 12


@pytest.mark.parametrize("name", NAMES)
def test_student_copy_holds_no_solution_text(copies, name):
    solution = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    secret = solution_lines(solution)
    assert len(secret) >= 4, "the solutions of a notebook should hold several telling lines"
    texts = {
        name: notebook_text(nbformat.read(copies / name, as_version=4)),
        Path(name).with_suffix(".py").name: (copies / name).with_suffix(".py").read_text(),
    }
    for file, text in texts.items():
        assert BEGIN not in text and END not in text
        leaked = sorted(line for line in secret if line in text)
        assert not leaked, f"{file} still holds solution text: {leaked[:3]}"


@pytest.mark.parametrize("name", NAMES)
def test_student_copy_is_otherwise_identical(copies, name):
    solution = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    student = nbformat.read(copies / name, as_version=4)
    exercises = find_exercises(solution, name)
    assert len(student.cells) == len(solution.cells) and student.metadata == solution.metadata
    for exercise in exercises:
        ex_cell, check = student.cells[exercise.cell], student.cells[exercise.check]
        assert f'raise NotImplementedError("Exercise {exercise.number}: {exercise.title}")' in ex_cell.source
        assert ex_cell.outputs == [] and check.outputs == [] and check.execution_count is None
        assert check.source == solution.cells[exercise.check].source
    changed = {i for e in exercises for i in (e.cell, e.check)}
    for index, (ours, theirs) in enumerate(zip(student.cells, solution.cells)):
        if ANSWER_LISTING_TAG in tags(theirs):
            assert ours.source == theirs.source and ours.get("outputs") == [], f"{name}, cell {index} shows an answer"
        elif index not in changed:
            assert ours == theirs, f"{name}, cell {index} differs although it is not an exercise"


def test_cli_writes_both_formats(tmp_path, capsys):
    assert main(["exercises", "--out", str(tmp_path / "copies")]) == 0
    files = sorted(p.name for p in (tmp_path / "copies").iterdir())
    written = [name for name in files if name != ".nflows-tutorial-exercises.json"]  # the record of what it wrote
    assert (
        written == sorted(NAMES + [Path(n).with_suffix(".py").name for n in NAMES]) and len(files) == len(written) + 1
    )
    assert capsys.readouterr().out.count(str(tmp_path)) == len(written)


def test_cli_names_a_folder_without_notebooks(tmp_path, capsys):
    assert main(["exercises", "--out", str(tmp_path / "o"), "--notebooks", str(tmp_path)]) == 2
    assert "no course notebooks" in capsys.readouterr().err


def notebook(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for source, cell_tags in cells:
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": cell_tags}))
    return nb


CHECK = ("my_f()", [CHECK_TAG])


def test_stub_keeps_the_indentation_and_every_region():
    source = (
        "# Exercise 3: two parts\ndef f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n\n\ndef g():\n"
        "    if True:\n        # BEGIN SOLUTION\n        return 2\n        # END SOLUTION\n"
    )
    student = student_notebook(notebook((source, [EXERCISE_TAG]), CHECK))
    stub = 'raise NotImplementedError("Exercise 3: two parts")'
    assert student.cells[0].source.splitlines() == [
        "# Exercise 3: two parts",
        "def f():",
        f"    {stub}",
        "",
        "",
        "def g():",
        "    if True:",
        f"        {stub}",
    ]


def test_an_answer_listing_keeps_its_cell_but_not_its_output():
    course = notebook(
        ("show_source(f)", [ANSWER_LISTING_TAG]),
        ("# Exercise 1: f\n# BEGIN SOLUTION\n# END SOLUTION", [EXERCISE_TAG]),
        CHECK,
    )
    course.cells[0].outputs = [nbformat.v4.new_output("stream", text="def f():\n    return 42\n")]
    student = student_notebook(course)
    assert student.cells[0].source == "show_source(f)" and student.cells[0].outputs == []
    assert course.cells[0].outputs, "the course notebook keeps the listing"


@pytest.mark.parametrize(
    ("cells", "words"),
    [
        (
            [("x = 1\n# BEGIN SOLUTION\n# END SOLUTION", [EXERCISE_TAG]), CHECK],
            "first line reads '# Exercise N: <title>'",
        ),
        ([("# Exercise 1: t\n# BEGIN SOLUTION\nx = 1", [EXERCISE_TAG]), CHECK], "never closed"),
        ([("# Exercise 1: t\nx = 1\n# END SOLUTION", [EXERCISE_TAG]), CHECK], "without a '# BEGIN SOLUTION'"),
        ([("# Exercise 1: t\nx = 1", [EXERCISE_TAG]), CHECK], "needs a solution between"),
        ([("# Exercise 1: t\n# BEGIN SOLUTION\nx = 1\n# END SOLUTION", [EXERCISE_TAG])], "needs a check cell"),
    ],
)
def test_malformed_markup_is_refused_naming_the_cell(cells, words):
    with pytest.raises(ValueError, match="nb.ipynb, cell 0") as info:
        student_notebook(notebook(*cells), "nb.ipynb")
    assert words in str(info.value)


# Executing the student copies is the expensive part: each notebook runs once, shared by the tests below.
_executed: dict[str, nbformat.NotebookNode] = {}


@pytest.fixture(scope="module")
def execute(copies, mnist_root, published_dir):
    def run(name: str) -> nbformat.NotebookNode:
        if name not in _executed:
            nb = nbformat.read(copies / name, as_version=4)
            env = {
                "NFLOWS_TUTORIAL_QUICK": "1",
                "PATH_DATASETS": str(mnist_root),
                # The published checkpoints as the package fetched them; the multiscale one is not among them.
                "PATH_CHECKPOINT": str(published_dir),
                "MPLBACKEND": "Agg",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            }
            with pytest.MonkeyPatch.context() as patch:  # the kernel inherits this process's environment
                for key, value in env.items():
                    patch.setenv(key, value)
                NotebookClient(
                    nb, timeout=900, allow_errors=True, resources={"metadata": {"path": str(copies)}}
                ).execute()
            _executed[name] = nb
        return _executed[name]

    return run


@pytest.mark.notebook
@pytest.mark.parametrize("name", NAMES)
def test_student_copy_fails_exactly_at_the_exercises(execute, name):
    nb = execute(name)
    exercises = find_exercises(nbformat.read(ROOT / "notebooks" / name, as_version=4), name)  # same cell indices
    exercise_cells = {i: e for e in exercises for i in (e.cell, e.check)}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, f"{name}, cell {index} never ran"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if index not in exercise_cells:
            assert not errors, f"{name}, cell {index} failed outside an exercise: {errors[0].ename}: {errors[0].evalue}"
            continue
        exercise = exercise_cells[index]
        for error in errors:
            assert error.ename == "NotImplementedError" and error.evalue.startswith(f"Exercise {exercise.number}:")
        if index == exercise.check:
            assert errors, f"{name}: the check of exercise {exercise.number} passed without a solution"
