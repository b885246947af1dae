"""The lecturer's commands never destroy what they did not write, and check every input before writing anything."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from nflows_tutorial.cli import main
from nflows_tutorial.course.exercises import CHECK_TAG, EXERCISE_TAG

EXERCISE = "# Exercise 1: add\ndef add(a, b):\n    # BEGIN SOLUTION\n    return a + b\n    # END SOLUTION\n"


def tiny_notebook(title: str = "Tiny") -> nbformat.NotebookNode:
    """A course notebook with one titled slide and one exercise with its check."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {title}", metadata={"slideshow": {"slide_type": "slide"}}),
        nbformat.v4.new_code_cell(EXERCISE, metadata={"tags": [EXERCISE_TAG]}),
        nbformat.v4.new_code_cell("assert add(1, 2) == 3", metadata={"tags": [CHECK_TAG]}),
        nbformat.v4.new_code_cell("print('hello')", metadata={"slideshow": {"slide_type": "slide"}}),
    ]
    return nb


@pytest.fixture
def notebooks(tmp_path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(tiny_notebook(), folder / "01_tiny.ipynb")
    return folder


def run(capsys, *argv: str) -> tuple[int, str]:
    """Exit code and standard error of the command line run in this process."""
    code = main(list(argv))
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# A student's work is never overwritten -----------------------------------------------------------------------
def test_exercises_again_refuses_to_overwrite_an_edited_copy(tmp_path, notebooks, capsys):
    out = tmp_path / "student"
    assert run(capsys, "exercises", "--out", str(out), "--notebooks", str(notebooks))[0] == 0
    edited = out / "01_tiny.py"
    solved = edited.read_text().replace('raise NotImplementedError("Exercise 1: add")', "return a + b")
    edited.write_text(solved)
    untouched = (out / "01_tiny.ipynb").read_bytes()

    code, err = run(capsys, "exercises", "--out", str(out), "--notebooks", str(notebooks))
    line = one_line(err)
    assert code == 2 and "01_tiny.py" in line and "01_tiny.ipynb" not in line and "--force" in line
    assert edited.read_text() == solved and (out / "01_tiny.ipynb").read_bytes() == untouched

    assert run(capsys, "exercises", "--out", str(out), "--notebooks", str(notebooks), "--force")[0] == 0
    assert 'raise NotImplementedError("Exercise 1: add")' in edited.read_text()


def test_exercises_refuses_a_copy_it_did_not_write(tmp_path, notebooks, capsys):
    out = tmp_path / "student"
    out.mkdir()
    (out / "01_tiny.ipynb").write_text("my own notes")
    code, err = run(capsys, "exercises", "--out", str(out), "--notebooks", str(notebooks))
    assert code == 2 and "01_tiny.ipynb" in one_line(err)
    assert (out / "01_tiny.ipynb").read_text() == "my own notes" and not (out / "01_tiny.py").exists()


def test_exercises_updates_its_own_unedited_copies(tmp_path, notebooks, capsys):
    out = tmp_path / "student"
    assert run(capsys, "exercises", "--out", str(out), "--notebooks", str(notebooks))[0] == 0
    (out / "notes.txt").write_text("a student's own file, never touched")
    nbformat.write(tiny_notebook("Tiny, second edition"), notebooks / "01_tiny.ipynb")
    assert run(capsys, "exercises", "--out", str(out), "--notebooks", str(notebooks))[0] == 0
    assert "second edition" in (out / "01_tiny.py").read_text()
    assert (out / "notes.txt").read_text() == "a student's own file, never touched"


def test_slides_refuse_to_overwrite_files_they_did_not_write(tmp_path, notebooks, capsys):
    out = tmp_path / "lecture"
    out.mkdir()
    (out / "01_tiny.slides.html").write_text("the lecturer's hand-made deck")
    code, err = run(capsys, "slides", "--out", str(out), "--notebooks", str(notebooks))
    assert code == 2 and "01_tiny.slides.html" in one_line(err) and "--force" in err
    assert (out / "01_tiny.slides.html").read_text() == "the lecturer's hand-made deck"
    assert not (out / "static").exists()

    assert run(capsys, "slides", "--out", str(out), "--notebooks", str(notebooks), "--force")[0] == 0
    assert "reveal" in (out / "01_tiny.slides.html").read_text()
    assert run(capsys, "slides", "--out", str(out), "--notebooks", str(notebooks))[0] == 0, "its own files"

    script = out / "static" / "reveal.js" / "dist" / "reveal.js"
    script.write_text("// patched by the lecturer")
    code, err = run(capsys, "slides", "--out", str(out), "--notebooks", str(notebooks))
    assert code == 2 and "static/reveal.js/dist/reveal.js" in one_line(err)
    assert script.read_text() == "// patched by the lecturer"


def _fake_sphinx(monkeypatch, page: str) -> None:
    """Sphinx replaced by a build that writes two pages: the site's own rules, without a minute of Sphinx."""

    def build_main(argv: list[str]) -> int:
        out = Path(argv[-1])
        (out / "_static").mkdir(parents=True, exist_ok=True)
        (out / "index.html").write_text(page)
        (out / "_static" / "theme.css").write_text("body {}")
        return 0

    monkeypatch.setattr("sphinx.cmd.build.build_main", build_main)


def test_site_refuses_to_overwrite_files_it_did_not_write(tmp_path, monkeypatch, capsys):
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("the course's old hand-written page")
    _fake_sphinx(monkeypatch, "<html>built</html>")
    code, err = run(capsys, "site", "--out", str(out))
    assert code == 2 and "index.html" in one_line(err) and "--force" in err
    assert (out / "index.html").read_text() == "the course's old hand-written page"
    assert not (out / "_static").exists()

    assert run(capsys, "site", "--out", str(out), "--force")[0] == 0
    assert (out / "index.html").read_text() == "<html>built</html>"
    _fake_sphinx(monkeypatch, "<html>built again</html>")
    assert run(capsys, "site", "--out", str(out))[0] == 0, "a rebuild replaces what the last build wrote"
    assert (out / "index.html").read_text() == "<html>built again</html>"

    (out / "_static" / "theme.css").write_text("body { color: red }")
    code, err = run(capsys, "site", "--out", str(out))
    assert code == 2 and "_static/theme.css" in one_line(err)
    assert (out / "_static" / "theme.css").read_text() == "body { color: red }"


# Files, folders and broken notebooks -------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["slides", "exercises"])
def test_out_given_a_file_is_named_as_a_file(tmp_path, notebooks, capsys, command):
    file = tmp_path / "decks.html"
    file.write_text("keep me")
    code, err = run(capsys, command, "--out", str(file), "--notebooks", str(notebooks))
    line = one_line(err)
    assert code == 2 and f"{file} is a file, not a folder" in line and "--out" in line
    assert file.read_text() == "keep me"


def test_site_out_given_a_file_is_named_as_a_file(tmp_path, monkeypatch, capsys):
    file = tmp_path / "site.html"
    file.write_text("keep me")
    _fake_sphinx(monkeypatch, "<html>built</html>")
    code, err = run(capsys, "site", "--out", str(file / "html"))
    assert code == 2 and f"{file} is a file, not a folder" in one_line(err)
    assert file.read_text() == "keep me"


BROKEN = [
    ('{"cells": [', "not valid JSON", "line 1 column"),
    ("[1, 2]", "its JSON is a list", "not a notebook"),
    (
        json.dumps({**nbformat.v4.new_notebook(), "cells": [{**nbformat.v4.new_code_cell(), "source": 5}]}),
        "not a Jupyter notebook",
        "at cells/0/source",
    ),
]


@pytest.mark.parametrize("command", ["slides", "exercises"])
@pytest.mark.parametrize(("text", "words", "detail"), BROKEN)
def test_a_broken_notebook_is_named_before_anything_is_written(
    tmp_path, notebooks, capsys, command, text, words, detail
):
    broken = notebooks / "02_broken.ipynb"
    broken.write_text(text)
    out = tmp_path / "out"
    code, err = run(capsys, command, "--out", str(out), "--notebooks", str(notebooks))
    line = one_line(err)
    assert code == 2 and str(broken) in line and words in line and detail in line
    assert not out.exists(), f"{command} wrote {sorted(p.name for p in out.iterdir())} before reading every input"


def test_manifest_is_valid_json_naming_what_was_written(tmp_path, notebooks, capsys):
    out = tmp_path / "student"
    assert run(capsys, "exercises", "--out", str(out), "--notebooks", str(notebooks))[0] == 0
    manifest = json.loads((out / ".nflows-tutorial-exercises.json").read_text())
    assert manifest["command"] == "exercises" and sorted(manifest["files"]) == ["01_tiny.ipynb", "01_tiny.py"]


def test_a_notebook_that_is_not_text_is_named(tmp_path, notebooks, capsys):
    broken = notebooks / "02_binary.ipynb"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n")
    code, err = run(capsys, "exercises", "--out", str(tmp_path / "out"), "--notebooks", str(notebooks))
    assert code == 2 and f"{broken}: not a notebook: not UTF-8 text" in one_line(err)
    assert not (tmp_path / "out").exists()
