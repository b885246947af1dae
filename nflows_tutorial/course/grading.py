"""An nbgrader course from the course notebooks: one assignment per notebook, graded by the exercise checks.

Each exercise cell becomes an autograded answer cell (its ``# BEGIN SOLUTION`` ... ``# END SOLUTION``
regions are what nbgrader's ``ClearSolutions`` replaces: it matches ``BEGIN SOLUTION`` anywhere in a line),
and its check cell an autograder test cell worth the cell's ``points`` metadata (default 1). The check
cell gains hidden tests: its calls to the ``check_...`` functions that take a ``seed`` run again with a
seed drawn when the course is written, which the students' copies never show, so that an answer tuned to
the visible inputs fails. Every other cell is read-only; autograding restores it from the source.

Autograding runs only what the graded cells need (:class:`GradingSlice`): the statements of the other
cells that bind a name the exercises and checks read, directly or through other such statements. The
lecture's figures, tables and timings are left out, which halves the time a submission takes on a CPU.
"""

from __future__ import annotations

import ast
import copy
import random
import secrets
import symtable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbformat.v4.nbbase import random_cell_id
from traitlets import Bool

from ..environment import QUICK_VARIABLE
from .checks.exercise import EXERCISE_TIME_LIMIT
from .exercises import ANSWER_LISTING_TAG, BEGIN, END, Exercise, find_exercises, read_course_notebooks
from .outputs import write_outputs

__all__ = [
    "COMMAND",
    "COURSE_ID",
    "CELL_TIMEOUT",
    "BEGIN_HIDDEN",
    "END_HIDDEN",
    "grading_notebook",
    "hidden_tests",
    "write_nbgrader_course",
    "missing_for_grading",
    "sliced_sources",
    "GradingSlice",
    "RestoreSources",
    "autograde_preprocessors",
    "release_preprocessors",
]

COMMAND = "nbgrader"
COURSE_ID = "nflows-tutorial"
#: Seconds a cell may run under autograding: beyond the checks' own limit, so that a loop in a student's
#: function is stopped by the check (which names it) and anything else by nbgrader.
CELL_TIMEOUT = int(EXERCISE_TIME_LIMIT) + 60
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_DELIMITERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
_PACKAGE_IMPORT = (
    "# Graded notebooks run where the course package is installed; they never install it themselves.\n"
    "import nflows_tutorial"
)


def _nbgrader(grade_id: str, *, solution: bool = False, grade: bool = False, points: float = 0) -> dict[str, Any]:
    """nbgrader's cell metadata (schema 3): an answer cell, a test cell worth ``points``, or a read-only cell."""
    meta: dict[str, Any] = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3}
    meta |= {"solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return meta


def _points(exercise: Exercise, nb: nbformat.NotebookNode, where: str) -> float:
    """The points of an exercise: ``points`` in its check cell's or its own metadata, else 1."""
    for cell in (nb.cells[exercise.check], nb.cells[exercise.cell]):
        if "points" in cell.metadata:
            points = cell.metadata["points"]
            if isinstance(points, bool) or not isinstance(points, int | float) or not points >= 0:
                raise ValueError(f"{where}: exercise {exercise.number} has points {points!r}; give a number >= 0")
            return float(points)
    return 1.0


def _seeded_check(node: ast.expr) -> bool:
    """Whether ``node`` names a ``check_...`` function of the course's checks that takes a ``seed``."""
    import inspect

    from . import checks

    if not (isinstance(node, ast.Name) and node.id.startswith("check_")):
        return False
    function = getattr(checks, node.id, None)
    return callable(function) and "seed" in inspect.signature(function).parameters


def hidden_tests(source: str, seed: int) -> str:
    """The statements of a check cell that call a seeded check, each such call given ``seed`` ("" if none)."""
    statements = []
    for statement in ast.parse(source).body:
        calls = [n for n in ast.walk(statement) if isinstance(n, ast.Call) and _seeded_check(n.func)]
        for call in calls:
            call.keywords = [k for k in call.keywords if k.arg != "seed"] + [ast.keyword("seed", ast.Constant(seed))]
        if calls:
            statements.append(ast.unparse(statement))
    return "\n".join(statements)


def _installs_package(cell: nbformat.NotebookNode) -> bool:
    """Whether a code cell installs the course package where importing it fails (the notebooks' Colab cell)."""
    try:
        tree = ast.parse(cell.source)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            imported = {a.name for n in node.body if isinstance(n, ast.Import) for a in n.names}
            if "nflows_tutorial" in imported:
                return True
    return False


def _refuse_delimiters(nb: nbformat.NotebookNode, exercise_cells: set[int], name: str) -> None:
    """Refuse a line that nbgrader would take for a region marker, other than an exercise's solution markers.

    nbgrader looks for its markers anywhere in a line of any cell (``# BEGIN SOLUTION`` holds ``BEGIN SOLUTION``).
    """
    for index, cell in enumerate(nb.cells):
        for line in cell.source.splitlines():
            marker = next((d for d in _DELIMITERS if d in line), None)
            if marker and not (index in exercise_cells and line.strip() in (BEGIN, END)):
                raise ValueError(f"{name}, cell {index}: the line {line.strip()!r} would mark a region for nbgrader")


def grading_notebook(nb: nbformat.NotebookNode, name: str, seeds: random.Random) -> nbformat.NotebookNode:
    """nbgrader's source version of ``nb``: answer, test and read-only cells, hidden tests drawn from ``seeds``."""
    source = copy.deepcopy(nb)
    exercises = find_exercises(source, name)
    _refuse_delimiters(source, {e.cell for e in exercises}, name)
    source.nbformat, source.nbformat_minor = 4, max(source.nbformat_minor, 5)
    source.metadata["kernelspec"] = dict(KERNELSPEC)
    for cell in source.cells:
        cell.setdefault("id", random_cell_id())
        cell.metadata["nbgrader"] = _nbgrader(f"cell-{cell.id}")
        if cell.cell_type == "code" and _installs_package(cell):
            cell.source, cell.outputs, cell.execution_count = _PACKAGE_IMPORT, [], None
        elif cell.cell_type == "code" and ANSWER_LISTING_TAG in cell.metadata.get("tags", []):
            cell.outputs, cell.execution_count = [], None
    for exercise in exercises:
        answer, check = source.cells[exercise.cell], source.cells[exercise.check]
        answer.metadata["nbgrader"] = _nbgrader(f"exercise-{exercise.number}-answer", solution=True)
        points = _points(exercise, source, name)
        check.metadata["nbgrader"] = _nbgrader(f"exercise-{exercise.number}", grade=True, points=points)
        hidden = hidden_tests(check.source, seeds.randrange(1, 2**31))
        if hidden:
            check.source = f"{check.source.rstrip()}\n{BEGIN_HIDDEN}\n{hidden}\n{END_HIDDEN}"
        for cell in (answer, check):
            cell.outputs, cell.execution_count = [], None
    return source


def _config(timeout: int) -> str:
    """The course's ``nbgrader_config.py``."""
    return f'''"""nbgrader settings of the {COURSE_ID} course (written by `python -m nflows_tutorial exercises --nbgrader`)."""

import os

from nflows_tutorial.course.grading import autograde_preprocessors, release_preprocessors

c = get_config()  # noqa: F821 (nbgrader defines it)
c.CourseDirectory.course_id = "{COURSE_ID}"

# Graded notebooks evaluate on a few images; MNIST and the checkpoints must already be on disk (see
# notebooks/grading.md): set PATH_DATASETS, PATH_CHECKPOINT and NFLOWS_TUTORIAL_COURSE_CHECKPOINTS before grading.
os.environ.setdefault("{QUICK_VARIABLE}", "1")

c.Execute.kernel_name = "python3"
# A cell still running after this many seconds is interrupted and fails; the next cells still run.
c.Execute.timeout = {timeout}
c.Execute.interrupt_on_timeout = True
# A deleted test cell is put back (and run) rather than scored as missing.
c.OverwriteCells.add_missing_cells = True
# The release keeps the lecture's outputs; those of the exercises and answer listings are already blank.
c.GenerateAssignment.preprocessors = release_preprocessors()
# Autograding runs only what the exercises and their checks need: c.GradingSlice.enabled = False runs it all.
c.Autograde.autograde_preprocessors = autograde_preprocessors()
'''


def write_nbgrader_course(
    out: Path,
    notebooks: Path | None = None,
    force: bool = False,
    hidden_seed: int | None = None,
    timeout: int = CELL_TIMEOUT,
) -> list[Path]:
    """Write an nbgrader course into ``out``: ``nbgrader_config.py`` and ``source/<notebook>/<notebook>.ipynb``.

    ``hidden_seed`` fixes the hidden tests' seeds (default: drawn afresh); ``timeout`` is the seconds a cell
    may run when graded. Files in ``out`` that this command did not write are kept unless ``force``.
    """
    seeds = random.Random(secrets.randbits(64) if hidden_seed is None else hidden_seed)
    files = {"nbgrader_config.py": _config(timeout).encode("utf-8")}
    for path, nb in read_course_notebooks(notebooks):
        text = nbformat.writes(grading_notebook(nb, path.name, seeds))
        files[f"source/{path.stem}/{path.name}"] = (text if text.endswith("\n") else text + "\n").encode("utf-8")
    return write_outputs(out, files, COMMAND, force)


def missing_for_grading() -> list[str]:
    """What grading would have to download (MNIST, a model's checkpoint), each with why: [] when all is here."""
    from ..flows.builders import MODEL_NAMES
    from ..io.checkpoint_files import CheckpointError
    from ..io.course_models import load_course_model
    from ..io.mnist import DataUnavailableError, load_mnist

    missing = []
    try:
        load_mnist("train", download=False)
        load_mnist("test", download=False)
    except DataUnavailableError as err:
        missing.append(f"MNIST: {str(err).splitlines()[0]}")
    for name in MODEL_NAMES:
        try:
            load_course_model(name, "cpu", download=False)
        except CheckpointError as err:
            missing.append(f"the {name!r} checkpoint: {str(err).splitlines()[0]}")
    return missing


# Running only what grading needs -------------------------------------------------------------------------------
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SCOPES = (*_DEFINITIONS, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _root(node: ast.expr) -> str | None:
    """The variable at the root of ``a.b[c].d`` (``a``)."""
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Starred):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _module_level(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a statement outside the scopes (functions, classes, lambdas, comprehensions) it opens."""
    yield node
    if not isinstance(node, _SCOPES):
        for child in ast.iter_child_nodes(node):
            yield from _module_level(child)


def _binds(statement: ast.stmt, modules: set[str]) -> set[str]:
    """The names a statement binds or may change: stored, defined, imported, or handed to a bare call.

    A call whose result is dropped (``model.eval()``, ``_ = init.normal_(net.weight)``) may change its receiver
    and arguments, unless they are modules (``torch.manual_seed(0)`` changes no variable of the notebook).
    """
    names: set[str | None] = set()
    for node in _module_level(statement):
        if isinstance(node, _DEFINITIONS):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Name | ast.Attribute | ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(_root(node))
        elif isinstance(node, ast.Expr | ast.Assign) and isinstance(node.value, ast.Call) and _discards(node):
            call = node.value
            handed = [call.func.value] if isinstance(call.func, ast.Attribute) else []
            names |= {_root(arg) for arg in [*handed, *call.args, *(k.value for k in call.keywords)]} - modules
    return {name for name in names if name}


def _discards(statement: ast.Expr | ast.Assign) -> bool:
    """Whether a statement drops the value it computes: an expression, or an assignment to ``_``."""
    return isinstance(statement, ast.Expr) or all(isinstance(t, ast.Name) and t.id == "_" for t in statement.targets)


def _replaces(statement: ast.stmt) -> set[str]:
    """The names a top-level ``name = ...`` gives a new value whatever they held before."""
    targets = statement.targets if isinstance(statement, ast.Assign) else []
    flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple | ast.List) else [t])]
    return {e.id for e in flat if isinstance(e, ast.Name)} if all(isinstance(e, ast.Name) for e in flat) else set()


def _reads(code: str) -> set[str]:
    """The global names a piece of code reads, in its own body or in the functions and classes it defines."""
    try:
        tables = [symtable.symtable(code, "<cell>", "exec")]
    except SyntaxError:  # what only IPython accepts (a top-level await): every name the code mentions
        return {node.id for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Name)}
    names: set[str] = set()
    while tables:
        table = tables.pop()
        module = table.get_type() == "module"
        names |= {s.get_name() for s in table.get_symbols() if s.is_referenced() and (module or s.is_global())}
        tables.extend(table.get_children())
    return names


def _parsed(source: str) -> tuple[list[str], list[ast.stmt]] | None:
    """The cell as Python (IPython's magics turned into calls), by line, and its statements; None if it fails."""
    from IPython.core.inputtransformer2 import TransformerManager

    code = TransformerManager().transform_cell(source)
    try:
        return code.splitlines(), ast.parse(code).body
    except SyntaxError:
        return None


def sliced_sources(cells: list[tuple[str, bool]]) -> list[str]:
    """Each cell's statements that grading needs, given ``(source, graded)`` for the code cells in order.

    A graded cell is kept whole and needs every name it reads. Another cell keeps its imports, its IPython
    magics, and the statements that bind or may change a needed name; what these read is needed in turn.
    """
    parsed = [_parsed(source) for source, _ in cells]
    modules = {
        name
        for p in parsed
        if p
        for s in p[1]
        if isinstance(s, ast.Import | ast.ImportFrom)
        for name in _binds(s, set())
    }
    needed: set[str] = set()
    kept = [source for source, _ in cells]
    for index in reversed(range(len(cells))):
        cell = parsed[index]
        if cell is None:
            continue  # left whole: a cell that does not parse fails alike either way
        lines, statements = cell
        if cells[index][1]:
            needed |= _reads("\n".join(lines))
            continue
        chosen: set[int] = set()
        for statement in reversed(statements):
            magic = "get_ipython()" in ast.unparse(statement)
            if isinstance(statement, ast.Import | ast.ImportFrom) or magic or _binds(statement, modules) & needed:
                first = min([statement.lineno, *(d.lineno for d in getattr(statement, "decorator_list", []))])
                last = statement.end_lineno or statement.lineno
                chosen |= set(range(first - 1, last))
                needed = (needed - _replaces(statement)) | _reads("\n".join(lines[first - 1 : last]))
        kept[index] = "\n".join(line for number, line in enumerate(lines) if number in chosen)
    return kept


def _kept_whole(cell: nbformat.NotebookNode) -> bool:
    """Whether grading runs a cell whole: an answer, a test, or a cell the student added (no nbgrader id)."""
    meta = cell.metadata.get("nbgrader", {})
    return "grade_id" not in meta or meta.get("grade", False) or not meta.get("locked", False)


class GradingSlice(Preprocessor):
    """Before autograding runs a notebook, cut the cells that are not graded down to what the graded ones need."""

    enabled = Bool(True, help="Run only what the exercises and their checks need (False: every cell)").tag(config=True)

    def preprocess(self, nb: nbformat.NotebookNode, resources: dict[str, Any]) -> tuple[nbformat.NotebookNode, dict]:
        """Slice the code cells, keeping their full sources in ``resources`` for :class:`RestoreSources`."""
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        resources["full_sources"] = [cell.source for cell in code]
        for cell, source in zip(code, sliced_sources([(c.source, _kept_whole(c)) for c in code])):
            cell.source = source
        return nb, resources


class RestoreSources(Preprocessor):
    """After autograding has run a notebook, give its cells back the sources :class:`GradingSlice` cut."""

    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb: nbformat.NotebookNode, resources: dict[str, Any]) -> tuple[nbformat.NotebookNode, dict]:
        """Put the full sources back, where :class:`GradingSlice` ran."""
        full = resources.pop("full_sources", None)
        if full is not None:
            for cell, source in zip((c for c in nb.cells if c.cell_type == "code"), full):
                cell.source = source
        return nb, resources


def autograde_preprocessors() -> list[type]:
    """nbgrader's autograding steps with :class:`GradingSlice` before the execution and :class:`RestoreSources` after."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute

    steps = list(Autograde.class_traits()["autograde_preprocessors"].default())
    at = steps.index(Execute)
    return [*steps[:at], GradingSlice, Execute, RestoreSources, *steps[at + 1 :]]


def release_preprocessors() -> list[type]:
    """nbgrader's steps that make the students' version, without the one that clears every output."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.preprocessors import ClearOutput

    return [p for p in GenerateAssignment.class_traits()["preprocessors"].default() if p is not ClearOutput]
