"""The package's shape holds: functions and modules of a readable size, one home per concern, imports one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import nflows_tutorial

PACKAGE = Path(nflows_tutorial.__file__).parent
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "static" not in p.relative_to(PACKAGE).parts)
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
MAX_TOP_LEVEL_MODULES = 6


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _imports(path: Path) -> list[str]:
    """The package modules ``path`` imports, as paths relative to the package (``flows/model``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = path.relative_to(PACKAGE).parent.parts[
                : len(path.relative_to(PACKAGE).parent.parts) - node.level + 1
            ]
            found.append("/".join([*base, *(node.module or "").split(".")]).strip("/"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nflows_tutorial"):
            found.append(node.module.removeprefix("nflows_tutorial").strip(".").replace(".", "/"))
    return found


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_functions_and_modules_stay_short(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{_name(path)} has more than {MAX_MODULE_LINES} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            assert lines <= MAX_FUNCTION_LINES, f"{_name(path)}: {node.name} has {lines} lines"


def test_few_modules_stay_at_the_top_level():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_the_maths_imports_nothing_but_itself(path):
    """flows/ is the ground floor: what a student reads needs no training, I/O, plotting or course tooling."""
    if _name(path).startswith("flows/"):
        outside = [m for m in _imports(path) if not m.startswith("flows")]
        assert not outside, f"{_name(path)} imports {outside}"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_only_the_command_line_parses_arguments(path):
    if not _name(path).startswith("cli/"):
        assert "argparse" not in path.read_text(encoding="utf-8"), f"{_name(path)} uses argparse; it belongs in cli/"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_the_course_settings_are_read_in_one_place(path):
    if _name(path) != "environment.py":
        text = path.read_text(encoding="utf-8")
        for variable in ("NFLOWS_TUTORIAL_", "PATH_DATASETS", "PATH_CHECKPOINT"):
            reads = [line for line in text.splitlines() if "environ" in line and variable in line]
            assert not reads, f"{_name(path)} reads {variable}... itself; add an accessor to environment.py"
