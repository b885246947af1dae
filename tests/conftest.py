"""Fixtures shared by the test suite: the read-only fixtures in ../shared and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NFLOWS_TUTORIAL_SHARED", ROOT.parent / "shared"))
SHARED_DATA = SHARED / "data"
SHARED_CHECKPOINTS = SHARED / "checkpoints" / "tutorial11"


@pytest.fixture
def mnist_root(monkeypatch) -> Path:
    """Folder holding MNIST/raw (the offline copy in ../shared), which ``load_mnist`` reads during the test."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.fail(f"MNIST fixture missing: expected {SHARED_DATA}/MNIST/raw (set NFLOWS_TUTORIAL_SHARED)")
    monkeypatch.setenv("PATH_DATASETS", str(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture(scope="session")
def published_dir() -> Path:
    """Folder holding the two published checkpoints (simple, vardeq)."""
    if not (SHARED_CHECKPOINTS / "MNISTFlow_simple.ckpt").is_file():
        pytest.fail(f"checkpoint fixtures missing: expected {SHARED_CHECKPOINTS} (set NFLOWS_TUTORIAL_SHARED)")
    return SHARED_CHECKPOINTS


@pytest.fixture(autouse=True)
def _isolated_paths(tmp_path_factory, monkeypatch):
    """Every test caches checkpoints in a fresh folder and never reaches the checkpoint server."""
    monkeypatch.setenv("PATH_CHECKPOINT", str(tmp_path_factory.mktemp("ckpt")))
    monkeypatch.setenv("NFLOWS_TUTORIAL_CHECKPOINT_URL", "http://127.0.0.1:9/unreachable/")
    torch.manual_seed(0)
