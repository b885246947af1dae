"""A file where the checkpoint folder should be, or a folder where a checkpoint file should be: one line that says so."""

from __future__ import annotations

import pytest

from nflows_tutorial import cli
from nflows_tutorial.cli.options import PROG
from nflows_tutorial.io.checkpoint_files import CheckpointError
from nflows_tutorial.io.checkpoints import download_checkpoints, fetch_checkpoint
from nflows_tutorial.io.registry import REGISTRY

pytestmark = pytest.mark.usefixtures("short_timeouts")

SIMPLE = REGISTRY["simple"].filename


@pytest.mark.parametrize("download", [False, True])
def test_a_file_given_as_the_checkpoint_folder_is_named_as_a_file(server, tmp_path, download):
    given = tmp_path / "notes.txt"
    given.write_text("not a folder")
    with pytest.raises(CheckpointError) as err:
        fetch_checkpoint("simple", checkpoint_dir=given, download=download, progress=False)
    assert str(err.value) == (
        f"the checkpoint folder in checkpoint_dir={given} is a file, not a folder: give the folder that holds "
        "(or is to hold) the MNISTFlow_<model>.ckpt files"
    )
    assert server.requests == [] and given.read_text() == "not a folder"


def test_a_file_set_as_path_checkpoint_names_the_variable(server, tmp_path, monkeypatch):
    given = tmp_path / "notes.txt"
    given.write_text("not a folder")
    monkeypatch.setenv("PATH_CHECKPOINT", str(given))
    with pytest.raises(CheckpointError, match=f"^the checkpoint folder {given} is a file, not a folder: set PATH_"):
        download_checkpoints(progress=False)  # one error for all three models, not one each
    assert server.requests == []


@pytest.mark.parametrize("download", [False, True])
def test_a_folder_where_the_checkpoint_file_should_be_is_named_as_a_folder(
    server, cache, published_dir, download, files_in
):
    (cache / SIMPLE).mkdir()
    (cache / SIMPLE / "kept.txt").write_text("mine")
    server.add(SIMPLE, published_dir / SIMPLE)
    with pytest.raises(CheckpointError) as err:
        fetch_checkpoint("simple", download=download, progress=False)
    assert str(err.value) == (
        f"{cache / SIMPLE} is a folder, where the 'simple' checkpoint file should be: move that folder away or "
        "rename it (nothing in it is used), then run this again"
    )
    assert server.requests == [] and files_in(cache) == [SIMPLE]
    assert (cache / SIMPLE / "kept.txt").read_text() == "mine"


def test_download_given_a_file_as_its_folder_is_a_bad_request_in_one_line(tmp_path, capsys):
    given = tmp_path / "notes.txt"
    given.write_text("not a folder")
    code = cli.main(["download", "--all", "--quiet", "--checkpoint-dir", str(given)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"{PROG} download: error: the checkpoint folder in --checkpoint-dir {given} is a file, "
        "not a folder: give the folder that holds (or is to hold) the MNISTFlow_<model>.ckpt files\n"
    )


def test_download_onto_a_folder_named_like_the_checkpoint_says_so_in_one_line(server, cache, published_dir, capsys):
    (cache / SIMPLE).mkdir()
    server.add(SIMPLE, published_dir / SIMPLE)
    code = cli.main(["download", "simple", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err == (
        f"simple: failed, {cache / SIMPLE} is a folder, where the 'simple' checkpoint file should be: move that "
        "folder away or rename it (nothing in it is used), then run this again\n"
    )
    assert server.requests == []
