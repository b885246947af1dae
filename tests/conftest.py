"""Fixtures of the unit tests: the published checkpoints, fetched as a user gets them, and an isolated cache per test.

MNIST (``mnist_root``) and quick mode come from the repository's top-level ``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

PUBLISHED = ("simple", "vardeq")  # the checkpoints whose files and hashes are published


@pytest.fixture(scope="session")
def published_dir() -> Path:
    """The checkpoint cache (``$PATH_CHECKPOINT``, else ``saved_models/tutorial11``) holding the published
    ``simple`` and ``vardeq`` checkpoints, downloaded and verified by the package on first use from
    ``$NFLOWS_TUTORIAL_CHECKPOINT_URL`` (default: the published location).

    Skips the test, with one line saying how to provide them, where they cannot be had.
    """
    from nflows_tutorial.environment import URL_VARIABLE
    from nflows_tutorial.io.checkpoints import REGISTRY, CheckpointError, fetch_checkpoint
    from nflows_tutorial.io.download import sha256_of
    from nflows_tutorial.io.paths import checkpoint_dir

    folder = checkpoint_dir()
    for name in PUBLISHED:
        try:
            path = fetch_checkpoint(name, folder, progress=False)
        except CheckpointError as err:
            files = " and ".join(REGISTRY[n].filename for n in PUBLISHED)
            pytest.skip(
                f"published checkpoints unavailable: {str(err).splitlines()[0]}. Set {URL_VARIABLE} to a "
                f"mirror serving {files}, or run 'python -m nflows_tutorial download simple vardeq'"
            )
        if sha256_of(path) != REGISTRY[name].sha256:
            pytest.skip(
                f"{path} is not the published {name!r} checkpoint (one you trained?); move it elsewhere, "
                "or point PATH_CHECKPOINT at another folder"
            )
    return folder


@pytest.fixture(autouse=True)
def _isolated_paths(tmp_path_factory, monkeypatch):
    """Every test caches checkpoints in a fresh folder and, unless it sets its own mirror, never reaches the network."""
    monkeypatch.setenv("PATH_CHECKPOINT", str(tmp_path_factory.mktemp("ckpt")))
    monkeypatch.setenv("NFLOWS_TUTORIAL_CHECKPOINT_URL", "http://127.0.0.1:9/unreachable/")
    torch.manual_seed(0)
