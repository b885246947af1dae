"""The course's models: the published checkpoint where it can be had, else the course's own, else a clear error."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from nflows_tutorial.environment import COURSE_CHECKPOINTS_VARIABLE, URL_VARIABLE
from nflows_tutorial.io.checkpoint_files import CheckpointError
from nflows_tutorial.io.course_models import COURSE_ORIGIN, PUBLISHED_ORIGIN, load_course_model
from nflows_tutorial.io.registry import REGISTRY

pytestmark = pytest.mark.usefixtures("short_timeouts")

SIMPLE = REGISTRY["simple"].filename
OFFLINE_URL = "http://127.0.0.1:9/unreachable/"  # what the suite's conftest sets: a closed port

PROVENANCE = """# Checkpoints trained with this package

- `MNISTFlow_simple.ckpt`: `{"state_dict"}`, loads with `weights_only=True`.
- How it was made: `python -m nflows_tutorial train --model simple`, on a
  2-core CPU, stopped after 10 epochs.
- `run/simple/`: the training run folder.
"""
HOW = "How it was made: `python -m nflows_tutorial train --model simple`, on a 2-core CPU, stopped after 10 epochs."


@pytest.fixture
def course_folder(tmp_path, published_dir) -> Path:
    """A folder of course checkpoints as the course ships one: the file, its PROVENANCE.md, its run folder."""
    folder = tmp_path / "course"
    (folder / "run" / "simple").mkdir(parents=True)
    shutil.copyfile(published_dir / SIMPLE, folder / SIMPLE)
    (folder / "PROVENANCE.md").write_text(PROVENANCE)
    return folder


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def same_weights(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(value.cpu(), expected[key]) for key, value in model.state_dict().items())


def test_the_published_checkpoint_comes_first(monkeypatch, published_dir, course_folder, cache, capsys):
    monkeypatch.setenv(URL_VARIABLE, published_dir.as_uri() + "/")  # a mirror that serves the published files
    loaded = load_course_model("simple", "cpu", course_folder=course_folder)
    assert loaded.origin == PUBLISHED_ORIGIN == "published checkpoint"
    assert loaded.result["test"][0]["test_bpd"] == pytest.approx(1.0784, abs=1e-4)
    assert (loaded.run_dir, loaded.note) == (None, "")
    assert not loaded.model.training and next(loaded.model.parameters()).device.type == "cpu"
    assert same_weights(loaded.model, weights(published_dir / SIMPLE))
    assert (cache / SIMPLE).is_file()  # fetched into the cache, verified, as load_pretrained does
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("given_by", ["argument", "variable"])
def test_offline_the_course_checkpoint_stands_in(monkeypatch, course_folder, cache, files_in, capsys, given_by):
    if given_by == "variable":
        monkeypatch.setenv(COURSE_CHECKPOINTS_VARIABLE, str(course_folder))
    loaded = load_course_model("simple", "cpu", course_folder=course_folder if given_by == "argument" else None)
    assert loaded.origin == COURSE_ORIGIN == "course checkpoint, not the published one"
    assert loaded.result == {}
    assert loaded.run_dir == course_folder / "run" / "simple"
    assert loaded.note == (
        "The published 'simple' checkpoint cannot be had here (CheckpointError).\n"
        f"Using the course's own 'simple' checkpoint instead. {HOW}"
    )
    assert not loaded.model.training and next(loaded.model.parameters()).device.type == "cpu"
    assert same_weights(loaded.model, weights(course_folder / SIMPLE))
    assert files_in(cache) == []
    assert capsys.readouterr() == ("", "")  # the caller shows the note; the loader prints nothing


def test_download_false_reaches_the_course_checkpoint_without_the_network(server, course_folder):
    loaded = load_course_model("simple", "cpu", course_folder=course_folder, download=False)
    assert loaded.origin == COURSE_ORIGIN
    assert server.requests == []


def test_without_provenance_or_run_folder_the_note_says_so_and_run_dir_is_none(tmp_path, published_dir):
    shutil.copyfile(published_dir / SIMPLE, tmp_path / SIMPLE)
    loaded = load_course_model("simple", "cpu", course_folder=tmp_path)
    assert loaded.note.endswith("instead. How it was made: not recorded (no PROVENANCE.md)")
    assert loaded.run_dir is None
    (tmp_path / "PROVENANCE.md").write_text("# Checkpoints\n\n- trained somewhere\n")
    note = load_course_model("simple", "cpu", course_folder=tmp_path).note
    assert note.endswith(f"instead. How it was made: not recorded in {tmp_path / 'PROVENANCE.md'}")


def test_neither_checkpoint_is_one_error_naming_both_places(monkeypatch, tmp_path, cache):
    monkeypatch.delenv(COURSE_CHECKPOINTS_VARIABLE, raising=False)
    with pytest.raises(CheckpointError) as err:
        load_course_model("simple", "cpu")
    first, *rest = str(err.value).splitlines()
    assert first == (
        "No 'simple' checkpoint can be had here. Course checkpoint: none, as "
        f"{COURSE_CHECKPOINTS_VARIABLE} is not set (set it to a folder holding {SIMPLE}). Published checkpoint: "
        "Could not download the 'simple' checkpoint: the server refused the connection (gave up after 2 attempts)"
    )
    assert f"  URL:    {OFFLINE_URL}{SIMPLE}" in rest and f"  folder: {cache}" in rest
    assert "1. Place the file by hand" in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__ is False and err.value.__context__ is None

    with pytest.raises(
        CheckpointError, match=re.escape(f"Course checkpoint: no file {tmp_path / SIMPLE}. Published checkpoint: ")
    ):
        load_course_model("simple", "cpu", course_folder=tmp_path)


def test_neither_offline_keeps_the_setting_a_front_end_spells_its_own_way(tmp_path, cache):
    with pytest.raises(CheckpointError) as err:
        load_course_model("simple", "cpu", course_folder=tmp_path, download=False)
    assert f"Published checkpoint: No 'simple' checkpoint in {cache}, and download=False." in str(err.value)
    assert "and --offline." in err.value.spelled(lambda name, value: "--offline")


def test_a_course_checkpoint_that_cannot_be_used_is_named(tmp_path, published_dir):
    path = tmp_path / SIMPLE
    shutil.copyfile(published_dir / REGISTRY["vardeq"].filename, path)
    with pytest.raises(
        CheckpointError,
        match="^"
        + re.escape(f"The course checkpoint {path} cannot be used: this checkpoint does not fit the 'simple' model"),
    ):
        load_course_model("simple", "cpu", course_folder=tmp_path)
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError) as err:
        load_course_model("simple", "cpu", course_folder=tmp_path)
    assert str(err.value) == (
        f"The course checkpoint {path} cannot be used: it is not a PyTorch checkpoint (another kind of file, or damaged)"
    )


def test_an_unknown_model_is_refused_before_anything_is_looked_up(server, tmp_path):
    with pytest.raises(ValueError, match="unknown model 'simpel'; choose one of simple, vardeq, multiscale"):
        load_course_model("simpel", course_folder=tmp_path)
    assert server.requests == []
