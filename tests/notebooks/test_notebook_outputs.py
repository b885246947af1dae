"""The stored notebook outputs can be re-checked in quick mode, hold no environment noise, and stay legible.

The stored outputs come from a full-mode run (`notebooks/execute.sh --full`), while CI re-runs the
notebooks in quick mode under nbval. That only works if every cell nbval compares prints the same in
both modes. `test_compared_cells_read_nothing_mode_dependent` proves it from the source: it follows
every name bound from a mode- or machine-dependent source (quick mode, the device, the environment,
downloads, training, timing, the logs of a run) through the cells, and fails when a compared cell
(one without the `nbval-ignore-output` tag) reads such a name in anything that can print.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9]*.py"))
IGNORE = "nbval-ignore-output"

# Names whose value depends on the mode, the machine or the network, not on the code alone.
MODE_SOURCES = frozenset(
    {
        "quick_mode",
        "QUICK",
        "default_device",
        "os",
        "TRAIN_FROM_SCRATCH",
        "load_pretrained",
        "train_flow",
        "read_checkpoint",
        "read_scalars",
        "time_likelihood",
        "time_sampling",
        "results_row",
    }
)
# Sources that print nothing when called, so a plain assignment from them is silent.
SILENT_SOURCES = frozenset({"quick_mode", "default_device", "os"})
# Strings that betray the machine a notebook ran on rather than the course.
NOISE = [
    r"127\.0\.0\.1",
    r"localhost:\d+",
    r"/tmp/",
    r"litlogger",
    r"Deprecat",
    r"HTTP [1-5]\d\d",
    r"\bTip:",
    # A warning's source location: the path of the checkout or of the installed packages.
    r"site-packages/",
    r"/nflows_tutorial/[\w/]+\.py:\d+",
]


def _code(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _read(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _bound(node: ast.AST) -> set[str]:
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        names.add(node.name)
    return names


def _call_roots(node: ast.AST) -> set[str]:
    roots = set()
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        func = call.func
        while isinstance(func, (ast.Attribute, ast.Call, ast.Subscript)):
            func = func.func if isinstance(func, ast.Call) else func.value
        if isinstance(func, ast.Name):
            roots.add(func.id)
    return roots


def _silent(stmt: ast.stmt, tainted: set[str]) -> bool:
    """A statement that cannot print: a definition, an import, or an assignment that calls no tainted code."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
        return True
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        return not ((_call_roots(stmt) & tainted) - SILENT_SOURCES)
    return False


def mode_dependent_reads(source: Path) -> list[tuple[int, int, str, list[str]]]:
    """Compared cells that read a mode-dependent name where it can reach an output: (cell, line, code, names)."""
    tainted = set(MODE_SOURCES)
    found = []
    for index, cell in enumerate(jupytext.read(source).cells):
        if cell.cell_type != "code":
            continue
        compared = IGNORE not in cell.metadata.get("tags", [])
        for stmt in ast.parse(_code(cell.source)).body:
            hits = _read(stmt) & tainted
            if hits:
                tainted |= _bound(stmt)
                if compared and not _silent(stmt, tainted):
                    found.append((index, stmt.lineno, ast.unparse(stmt).splitlines()[0], sorted(hits)))
    return found


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_compared_cells_read_nothing_mode_dependent(source):
    found = mode_dependent_reads(source)
    assert not found, (
        f"{source.name}: cells that nbval compares read values that differ between quick and full mode or "
        f"between machines, so the quick CI run cannot match the stored full run; tag them "
        f"`{IGNORE}` or compute what they print from fixed inputs: "
        + "; ".join(f"cell {i} line {line} `{code}` reads {names}" for i, line, code, names in found)
    )


def test_the_analysis_catches_a_mode_dependent_print(tmp_path):
    notebook = tmp_path / "probe.py"
    notebook.write_text(
        "# %%\nfrom nflows_tutorial.settings import quick_mode\nQUICK = quick_mode()\nn = 32 if QUICK else None\n"
        "# %%\nprint(n)\n"
        '# %% tags=["nbval-ignore-output"]\nprint(QUICK)\n'
        "# %%\nprint(3)\n"
    )
    found = mode_dependent_reads(notebook)
    assert [(names, code) for _, _, code, names in found] == [(["n"], "print(n)")]


def _outputs_text(notebook: Path) -> list[tuple[int, str]]:
    cells = json.loads(notebook.read_text())["cells"]
    texts = []
    for index, cell in enumerate(cells):
        for output in cell.get("outputs", []):
            parts = [output.get("text", "")] + [
                value for key, value in output.get("data", {}).items() if key.startswith("text/")
            ]
            texts.append((index, "".join("".join(p) if isinstance(p, list) else p for p in parts)))
    return texts


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_stored_outputs_hold_no_environment_noise(source):
    bad = [
        (index, match.group(0))
        for index, text in _outputs_text(source.with_suffix(".ipynb"))
        for pattern in NOISE
        for match in [re.search(pattern, text)]
        if match
    ]
    assert not bad, f"{source.with_suffix('.ipynb').name}: stored outputs show the machine they ran on: {bad}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_stored_figures_are_at_most_ten_inches_wide(source):
    # Inline figures are drawn at 100 dpi, and their text form gives the size in those pixels.
    sizes = [
        (index, int(m.group(1)))
        for index, text in _outputs_text(source.with_suffix(".ipynb"))
        for m in re.finditer(r"<Figure size (\d+)x\d+ with", text)
    ]
    wide = [(index, width) for index, width in sizes if width > 1000]
    assert not wide, f"{source.with_suffix('.ipynb').name}: figures wider than 10 inches (cell, pixels): {wide}"
