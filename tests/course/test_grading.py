"""The nbgrader course: its cells carry nbgrader's metadata, and the real nbgrader grades a class with it.

The end-to-end tests run nbgrader's own commands (``generate_assignment``, ``autograde``,
``generate_feedback``, ``export``) on a course written into a temporary folder, offline (the
checkpoint URL points nowhere) and without a GPU. The default run grades notebooks 1 and 2 for six
students; the slow run grades all three notebooks, which needs the checkpoints, for two.
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from nflows_tutorial.course.exercises import ANSWER_LISTING_TAG, CHECK_TAG, find_exercises
from nflows_tutorial.course.grading import (
    BEGIN_HIDDEN,
    END_HIDDEN,
    grading_notebook,
    hidden_tests,
    missing_for_grading,
    sliced_sources,
    write_nbgrader_course,
)

from support.browser import need_modules

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FIRST, SECOND = (path.stem for path in NOTEBOOKS[:2])


def need_nbgrader() -> None:
    """Skip without nbgrader, or fail where CI requires every optional piece (see support.browser.need)."""
    need_modules("nbgrader", extra="grade")


def nbgrader_meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def by_grade_id(nb) -> dict[str, nbformat.NotebookNode]:
    return {nbgrader_meta(cell)["grade_id"]: cell for cell in nb.cells if "grade_id" in nbgrader_meta(cell)}


# The source version, without running nbgrader ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    before = {path: path.read_bytes() for path in NOTEBOOKS}
    out = tmp_path_factory.mktemp("course")
    write_nbgrader_course(out, hidden_seed=3)
    assert {path: path.read_bytes() for path in NOTEBOOKS} == before, "the course notebooks must stay unchanged"
    return out


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_source_cells_carry_valid_nbgrader_metadata(course, notebook):
    need_nbgrader()
    from nbgrader.nbgraderformat import MetadataValidator

    original = nbformat.read(notebook, as_version=4)
    source = nbformat.read(course / "source" / notebook.stem / notebook.name, as_version=4)
    MetadataValidator().validate_nb(source)  # nbgrader's own schema, and grade ids unique
    assert source.metadata.kernelspec.name == "python3" and len(source.cells) == len(original.cells)
    assert all(cell.get("id") for cell in source.cells)
    exercises = find_exercises(original, notebook.name)
    graded = {e.cell for e in exercises} | {e.check for e in exercises}
    for exercise in exercises:
        answer, check = source.cells[exercise.cell], source.cells[exercise.check]
        assert nbgrader_meta(answer) == {
            "grade": False, "grade_id": f"exercise-{exercise.number}-answer", "locked": False,
            "schema_version": 3, "solution": True, "task": False,
        }  # fmt: skip
        assert nbgrader_meta(check) == {
            "grade": True, "grade_id": f"exercise-{exercise.number}", "locked": True, "points": 1.0,
            "schema_version": 3, "solution": False, "task": False,
        }  # fmt: skip
        assert answer.source == original.cells[exercise.cell].source and answer.outputs == check.outputs == []
        assert check.source.startswith(original.cells[exercise.check].source.rstrip())
    for index, cell in enumerate(source.cells):
        if index not in graded:
            assert nbgrader_meta(cell) == {
                "grade": False, "grade_id": f"cell-{cell.id}", "locked": True,
                "schema_version": 3, "solution": False, "task": False,
            }  # fmt: skip
        if ANSWER_LISTING_TAG in cell.metadata.get("tags", []):
            assert cell.outputs == []


def test_hidden_tests_call_the_same_checks_with_another_seed(course):
    seeded = 0
    for notebook in NOTEBOOKS:
        source = nbformat.read(course / "source" / notebook.stem / notebook.name, as_version=4)
        for cell in source.cells:
            if CHECK_TAG not in cell.metadata.get("tags", []) or BEGIN_HIDDEN not in cell.source:
                continue
            visible, hidden = cell.source.split(BEGIN_HIDDEN)
            assert hidden.strip().endswith(END_HIDDEN) and "seed=" in hidden
            calls = [line.split("(")[0] for line in hidden.splitlines() if line.startswith("check_")]
            assert calls and all(f"{name}(" in visible for name in calls)
            seeded += 1
    assert seeded >= 10, "most exercises' checks take a seed, and should have hidden tests"


def test_hidden_tests_are_made_only_from_seeded_checks():
    source = "from nflows_tutorial.course.checks import check_values\ncheck_values('x', 1, 1)\nprint('ok')"
    assert hidden_tests(source, 5) == ""
    assert hidden_tests("check_quantize(my_quantize, seed=0)", 9) == "check_quantize(my_quantize, seed=9)"
    assert hidden_tests("check_logit_layer(f, alpha=A)", 2) == "check_logit_layer(f, alpha=A, seed=2)"


def test_an_answer_tuned_to_the_visible_check_fails_the_hidden_tests(course):
    """An answer that replays what the visible check asked passes it, and fails the same check on other inputs."""
    from nflows_tutorial.flows.model import bits_per_dim

    seen: dict[tuple, torch.Tensor] = {}

    def recording(log_px, dims):
        seen[(dims, *log_px.tolist())] = bits_per_dim(log_px, dims)
        return seen[(dims, *log_px.tolist())]

    def tuned(log_px, dims):
        return seen.get((dims, *log_px.tolist()), torch.zeros_like(log_px))

    source = nbformat.read(course / "source" / FIRST / f"{FIRST}.ipynb", as_version=4)
    check = by_grade_id(source)["exercise-1"].source
    visible = check.split(BEGIN_HIDDEN)[0]
    exec(visible, {"my_bits_per_dim": recording})
    exec(visible, {"my_bits_per_dim": tuned})
    with pytest.raises(AssertionError, match="Exercise 1"):
        exec(check, {"my_bits_per_dim": tuned})


def test_points_come_from_the_cells_metadata():
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    first = find_exercises(nb, "nb")[0]
    nb.cells[first.check].metadata["points"] = 3
    assert by_grade_id(grading_notebook(nb, "nb", random.Random(0)))["exercise-1"].metadata.nbgrader["points"] == 3
    nb.cells[first.check].metadata["points"] = "three"
    with pytest.raises(ValueError, match="exercise 1 has points 'three'"):
        grading_notebook(nb, "nb", random.Random(0))


def test_a_line_nbgrader_would_take_for_a_region_marker_is_refused():
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    prose = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown")
    nb.cells[prose].source += "\nThe lecturer's copy shows each answer after BEGIN SOLUTION."
    with pytest.raises(ValueError, match=f"cell {prose}: the line .* would mark a region for nbgrader"):
        grading_notebook(nb, "nb", random.Random(0))


def test_grading_runs_only_what_the_graded_cells_need():
    cells = [
        ("%matplotlib inline\nimport torch\nSIZE = 4\nSLOW = 10**9\n_ = torch.manual_seed(0)", False),
        ("results = sum(range(SLOW))\nprint(results)", False),
        ("net = torch.nn.Linear(SIZE, SIZE)\nnet.eval()\n_ = net.requires_grad_(False)\nshown = repr(net)", False),
        ("def mine(x):\n    return net(x)", True),
        ("assert mine(torch.ones(SIZE)).shape == (SIZE,)", True),
    ]
    kept = sliced_sources(cells)
    assert kept[0].splitlines() == ["get_ipython().run_line_magic('matplotlib', 'inline')", "import torch", "SIZE = 4"]
    assert kept[1] == ""
    assert kept[2].splitlines() == ["net = torch.nn.Linear(SIZE, SIZE)", "net.eval()", "_ = net.requires_grad_(False)"]
    assert kept[3:] == [source for source, _ in cells[3:]]


# Grading a class with nbgrader ----------------------------------------------------------------------------------------
def nbgrader_start(root: Path, *args: str) -> subprocess.Popen:
    """Start ``nbgrader ARGS`` on the course in ``root`` as a grader does: the environment's scripts on PATH,
    no GPU, one thread (room for a second grader); its output comes back as one text."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env |= {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={root}"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def nbgrader_run(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` to the end (see :func:`nbgrader_start`); a failure fails the test unless not ``check``."""
    process = nbgrader_start(root, *args)
    output = process.communicate(timeout=900)[0]
    done = subprocess.CompletedProcess(process.args, process.returncode, output, "")
    if check and done.returncode != 0:
        pytest.fail(f"nbgrader {' '.join(args)} failed:\n{output[-3000:]}")
    return done


def released(root: Path, assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(root / "release" / assignment / f"{assignment}.ipynb", as_version=4)


def autograded(root: Path, student: str, assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(root / "autograded" / student / assignment / f"{assignment}.ipynb", as_version=4)


def solved(root: Path, assignment: str, numbers: set[int] | None = None) -> nbformat.NotebookNode:
    """The students' version with the answers to exercises ``numbers`` (default: all) filled in."""
    answers = by_grade_id(nbformat.read(root / "source" / assignment / f"{assignment}.ipynb", as_version=4))
    nb = released(root, assignment)
    for grade_id, cell in by_grade_id(nb).items():
        number = grade_id.removeprefix("exercise-").removesuffix("-answer")
        if grade_id.endswith("-answer") and (numbers is None or int(number) in numbers):
            cell.source = answers[grade_id].source
    return nb


def submit(root: Path, student: str, assignment: str, nb: nbformat.NotebookNode | str) -> None:
    folder = root / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{assignment}.ipynb"
    target.write_text(nb) if isinstance(nb, str) else nbformat.write(nb, target)


def tampered(root: Path, assignment: str) -> nbformat.NotebookNode:
    """The last exercise solved; the first one's test made to pass, the second's deleted, the third's worth 10 points."""
    nb = solved(root, assignment, {max(exercise_numbers(root, assignment))})
    cells = by_grade_id(nb)
    first, second, third = (cells[f"exercise-{n}"] for n in exercise_numbers(root, assignment)[:3])
    first.source = "print('all tests pass')"
    third.source = "pass"
    third.metadata.nbgrader["points"] = 10
    nb.cells.remove(second)
    return nb


def exercise_numbers(root: Path, assignment: str) -> list[int]:
    return sorted(int(i.split("-")[1]) for i in by_grade_id(released(root, assignment)) if i.endswith("-answer"))


def looping(root: Path) -> nbformat.NotebookNode:
    """Exercises 2 to 4 solved; exercise 1's function never returns."""
    nb = solved(root, FIRST, {2, 3, 4})
    answer = by_grade_id(nb)["exercise-1-answer"]
    answer.source = (
        answer.source.split("def ")[0] + "def my_bits_per_dim(log_px, dims):\n    while True:\n        pass\n"
    )
    return nb


def scores(csv_path: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """The score and the most it could be, of each (assignment, student) row of nbgrader's CSV."""
    with csv_path.open(newline="") as file:
        rows = csv.DictReader(file)
        return {(r["assignment"], r["student_id"]): (float(r["score"]), float(r["max_score"])) for r in rows}


@pytest.fixture
def offline(monkeypatch, mnist_root):
    """Grading's environment: nbgrader, MNIST on disk, no checkpoint mirror that answers."""
    need_nbgrader()
    monkeypatch.setenv("PATH_DATASETS", str(mnist_root))
    monkeypatch.setenv("NFLOWS_TUTORIAL_CHECKPOINT_URL", "http://127.0.0.1:9/unreachable/")


def course_of(tmp_path: Path, notebooks: list[Path], **options) -> Path:
    """A course written from ``notebooks`` alone, its assignments generated."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for notebook in notebooks:
        (folder / notebook.name).write_bytes(notebook.read_bytes())
    root = tmp_path / "course"
    write_nbgrader_course(root, folder, **options)
    nbgrader_run(root, "generate_assignment", "*")
    return root


@pytest.mark.subprocess
def test_nbgrader_grades_a_class_of_notebooks_1_and_2(tmp_path, offline):
    root = course_of(tmp_path, NOTEBOOKS[:2], timeout=15)
    most = {assignment: len(exercise_numbers(root, assignment)) for assignment in (FIRST, SECOND)}
    assert sum(len(c.get("outputs", [])) for c in released(root, FIRST).cells) > 0, "the release keeps the lecture"
    for assignment in (FIRST, SECOND):
        submit(root, "solved", assignment, solved(root, assignment))
        submit(root, "untouched", assignment, released(root, assignment))
    submit(root, "partial", FIRST, solved(root, FIRST, {1, 3}))
    submit(root, "partial", SECOND, solved(root, SECOND, {6}))
    submit(root, "tampered", SECOND, tampered(root, SECOND))
    submit(root, "looping", FIRST, looping(root))
    submit(root, "broken", FIRST, '{"cells": [')

    # Two graders side by side, one per assignment, as notebooks/grading.md suggests for a class.
    second = nbgrader_start(root, "autograde", SECOND)
    first = nbgrader_run(root, "autograde", FIRST, check=False)
    second_log = second.communicate(timeout=900)[0]
    assert second.returncode == 0, second_log[-3000:]
    log = first.stdout + first.stderr
    assert first.returncode != 0, "a submission that cannot be read fails the command"
    assert f"error processing assignment '{FIRST}' for student 'broken'" in log
    assert "JSONDecodeError" in log

    restored, tests = by_grade_id(autograded(root, "tampered", SECOND)), by_grade_id(released(root, SECOND))
    for number in exercise_numbers(root, SECOND)[:3]:
        source = restored[f"exercise-{number}"].source  # the deleted one is put back with a line saying so
        assert tests[f"exercise-{number}"].source.rstrip() in source and BEGIN_HIDDEN in source, source
    looped = [
        o for o in by_grade_id(autograded(root, "looping", FIRST))["exercise-1"].outputs if o.output_type == "error"
    ]
    assert "CellTimeoutError" in [output.ename for output in looped], looped

    nbgrader_run(root, "generate_feedback", "*")
    feedback = (root / "feedback" / "partial" / FIRST / f"{FIRST}.html").read_text()
    assert f"Score: 2.0 / {most[FIRST]:.1f}" in feedback
    assert len(list((root / "feedback").glob("*/*/*.html"))) == 8  # one per graded notebook

    nbgrader_run(root, "export", f"--to={root / 'grades.csv'}")
    expected = {
        "solved": (4, 4), "untouched": (0, 0), "partial": (2, 1), "tampered": (0, 1), "looping": (3, 0), "broken": (0, 0),
    }  # fmt: skip
    assert scores(root / "grades.csv") == {
        (assignment, student): (points[index], most[assignment])
        for student, points in expected.items()
        for index, assignment in enumerate((FIRST, SECOND))
    }


@pytest.mark.subprocess
@pytest.mark.slow
def test_nbgrader_grades_the_whole_course_offline(tmp_path, offline, published_dir, monkeypatch):
    monkeypatch.setenv("PATH_CHECKPOINT", str(published_dir))
    missing = missing_for_grading()
    if missing:
        pytest.skip(f"grading notebook 3 needs {missing[0]}; set NFLOWS_TUTORIAL_COURSE_CHECKPOINTS or download it")
    root = course_of(tmp_path, NOTEBOOKS)
    assignments = [path.stem for path in NOTEBOOKS]
    for assignment in assignments:
        submit(root, "solved", assignment, solved(root, assignment))
        submit(root, "untouched", assignment, released(root, assignment))
    nbgrader_run(root, "autograde", "*")
    nbgrader_run(root, "generate_feedback", "*")
    nbgrader_run(root, "export", f"--to={root / 'grades.csv'}")
    most = {assignment: len(exercise_numbers(root, assignment)) for assignment in assignments}
    assert scores(root / "grades.csv") == {
        **{(a, "solved"): (most[a], most[a]) for a in assignments},
        **{(a, "untouched"): (0, most[a]) for a in assignments},
    }
    assert all((root / "feedback" / "solved" / a / f"{a}.html").is_file() for a in assignments)
