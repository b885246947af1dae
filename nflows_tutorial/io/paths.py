"""Where the course keeps its data and checkpoints (overridable by environment variables) and its notebooks."""

from __future__ import annotations

import os
from pathlib import Path

from ..environment import checkpoint_folder, datasets_folder

__all__ = ["CHECKOUT", "project_dir", "dataset_root", "checkpoint_dir", "notebooks_dir", "course_notebooks"]

#: The folder above the installed package: a source checkout when the package runs from one.
CHECKOUT = Path(__file__).resolve().parents[2]


def project_dir() -> Path:
    """The source checkout this package runs from (it holds ``pyproject.toml``), else the working directory.

    Anchoring defaults here means a notebook run from ``notebooks/`` and a command run from the
    repository root share one data folder and one checkpoint cache.
    """
    return CHECKOUT if (CHECKOUT / "pyproject.toml").is_file() else Path.cwd()


def dataset_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``MNIST/raw``: ``root``, else ``$PATH_DATASETS``, else ``<project>/data``."""
    if root is not None:
        return Path(root)
    return datasets_folder() or project_dir() / "data"


def checkpoint_dir(folder: str | os.PathLike | None = None) -> Path:
    """The checkpoint cache: ``folder``, else ``$PATH_CHECKPOINT``, else ``<project>/saved_models/tutorial11``."""
    if folder is not None:
        return Path(folder)
    return checkpoint_folder() or project_dir() / "saved_models" / "tutorial11"


def notebooks_dir() -> Path:
    """The ``notebooks/`` folder of the checkout this package was imported from."""
    return CHECKOUT / "notebooks"


def course_notebooks(folder: str | os.PathLike | None = None) -> list[Path]:
    """The course notebooks (``NN_name.ipynb``) in ``folder``, else in :func:`notebooks_dir`, in course order."""
    folder = notebooks_dir() if folder is None else Path(folder)
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise ValueError(
            f"no course notebooks (NN_*.ipynb) in {folder}; pass the notebooks/ folder of a clone of the course repository"
        )
    return found
