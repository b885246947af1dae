"""The course notebooks: each .py and its .ipynb hold the same cells, and the .ipynb keeps a full run."""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupytext.config import find_jupytext_configuration_file, load_jupytext_configuration_file

from nflows_tutorial.course.repository import REPO_URL

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.py"))


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source.strip(), sorted(c.get("metadata", {}).get("tags", []))) for c in nb.cells]


def code_of(cell: nbformat.NotebookNode) -> str:
    """The Python of a code cell, with IPython magics blanked out."""
    return "\n".join("" if line.lstrip().startswith("%") else line for line in cell.source.splitlines())


def test_jupytext_config_pairs_py_and_ipynb():
    found = find_jupytext_configuration_file(str(NOTEBOOKS))
    assert found is not None and Path(found) == ROOT / "jupytext.toml", f"jupytext finds {found}, not the repo's"
    config = load_jupytext_configuration_file(found)
    formats = config.default_formats(str(NOTEBOOKS / "any.ipynb"))
    assert set(formats.split(",")) == {"ipynb", "py:percent"}


def test_every_notebook_is_a_pair():
    assert SOURCES, f"no notebooks found in {NOTEBOOKS}"
    assert {p.stem for p in SOURCES} == {p.stem for p in NOTEBOOKS.glob("*.ipynb")}, (
        "each notebooks/*.py needs its .ipynb and vice versa; run `jupytext --sync notebooks/*.py`"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_py_and_ipynb_hold_the_same_cells(source):
    text = jupytext.read(source)
    stored = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    assert cells(text) == cells(stored), (
        f"{source.name} and its .ipynb have drifted apart; the .py is the source: run "
        f"`notebooks/execute.sh {source.relative_to(ROOT)}` to rebuild and re-execute the .ipynb from it"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_py_is_exactly_what_jupytext_writes_for_the_ipynb(source):
    # JupyterLab's Jupytext refuses to open a pair whose texts differ (say, in the order of a cell's
    # metadata) when the .ipynb is the newer file, as it can be in a fresh clone.
    stored = jupytext.read(source.with_suffix(".ipynb"))
    assert jupytext.writes(stored, fmt="py:percent") == source.read_text(encoding="utf-8"), (
        f"{source.name} is not in Jupytext's own form; run "
        f"`jupytext --to py:percent {source.with_suffix('.ipynb').relative_to(ROOT)}`"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_stored_notebook_is_one_complete_run(source):
    stored = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    code = [c for c in stored.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{source.with_suffix('.ipynb').name} was not executed top to bottom in one run (execution counts "
        f"{counts}); re-run it with `notebooks/execute.sh {source.relative_to(ROOT)}`"
    )
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"stored outputs contain an error: {errors[0].ename}: {errors[0].evalue}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_installs_the_package_and_redefines_none_of_it(source):
    nb = jupytext.read(source)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert f'REPO_URL = "{REPO_URL}"' in code[0].source, "the first code cell must install the package from REPO_URL"
    assert "import nflows_tutorial" in code[0].source
    for cell in code:
        if {"exercise", "exercise-check"} & set(cell.metadata.get("tags", [])):
            continue  # an exercise defines its own code (student copies replace its bodies by stubs), its check wraps it
        tree = ast.parse(code_of(cell))
        classes = [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
        assert not classes, f"{source.name} defines class {classes[0]}; show the package's own with show_source"
        functions = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        assert not functions, f"{source.name} defines function {functions[0]}; put it in the package and import it"
