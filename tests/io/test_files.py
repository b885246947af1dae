"""Files written by the package get the permissions the user's umask asks for, as any file ``open()`` creates."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from nflows_tutorial.analysis.sampling import save_image_grid
from nflows_tutorial.flows.builders import create_model
from nflows_tutorial.io.checkpoints import fetch_checkpoint, save_published
from nflows_tutorial.io.download import download_file
from nflows_tutorial.io.files import atomic_write
from nflows_tutorial.io.registry import REGISTRY

UMASKS = [0o022, 0o002, 0o077, 0o027]


@pytest.fixture(params=UMASKS, ids=[f"umask{m:03o}" for m in UMASKS])
def umask(request) -> Iterator[int]:
    """The process umask set to the parameter for the test, and put back afterwards."""
    before = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(before)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_honours_the_umask(tmp_path, umask):
    target = tmp_path / "numbers.txt"
    with atomic_write(target) as tmp:
        tmp.write_text("1 2 3")
    assert mode_of(target) == 0o666 & ~umask
    # Compared with what open() gives a new file under the same umask.
    plain = tmp_path / "plain.txt"
    plain.write_text("1 2 3")
    assert mode_of(target) == mode_of(plain)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["numbers.txt", "plain.txt"]


def test_atomic_write_replacing_a_file_honours_the_umask_too(tmp_path, umask):
    target = tmp_path / "numbers.txt"
    target.write_text("old")
    target.chmod(0o600)
    with atomic_write(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and mode_of(target) == 0o666 & ~umask


def test_a_saved_checkpoint_and_a_png_honour_the_umask(tmp_path, umask):
    ckpt = tmp_path / "MNISTFlow_simple.ckpt"
    save_published(create_model("simple"), {"test": [{"test_bpd": 1.5}]}, ckpt)
    png = save_image_grid(torch.rand(4, 1, 28, 28), tmp_path / "samples.png")
    assert mode_of(ckpt) == mode_of(png) == 0o666 & ~umask


def test_a_downloaded_checkpoint_honours_the_umask(monkeypatch, published_dir, tmp_path, umask):
    monkeypatch.setenv("NFLOWS_TUTORIAL_CHECKPOINT_URL", published_dir.as_uri() + "/")
    path = fetch_checkpoint("simple", checkpoint_dir=tmp_path / "cache", progress=False)
    assert mode_of(path) == 0o666 & ~umask
    if umask == 0o022:
        assert mode_of(path) == 0o644  # readable by the class on a shared course server
    copied = download_file(
        (published_dir / REGISTRY["vardeq"].filename).as_uri(), tmp_path / "copy.ckpt", progress=False
    )
    assert mode_of(copied) == 0o666 & ~umask
