"""The course's trained models: the published checkpoint where it can be had, else the course's own.

The course's own checkpoints live in one folder (``$NFLOWS_TUTORIAL_COURSE_CHECKPOINTS``): a file
``MNISTFlow_<name>.ckpt`` per model, a ``PROVENANCE.md`` whose bullet "How it was made" says how they
were trained, and the training run folders under ``run/<name>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..environment import COURSE_CHECKPOINTS_VARIABLE, course_checkpoints_folder
from ..flows.builders import create_model
from ..flows.model import ImageFlow
from ..runtime import default_device
from .checkpoint_files import CheckpointError, load_state_dict_checked, read_checkpoint
from .checkpoints import load_pretrained
from .registry import OWN_ORIGIN, PUBLISHED_ORIGIN

__all__ = ["PUBLISHED_ORIGIN", "OWN_ORIGIN", "COURSE_ORIGIN", "CourseModel", "load_course_model"]

#: :attr:`CourseModel.origin` of a model loaded from the course's own checkpoint.
COURSE_ORIGIN = "course checkpoint, not the published one"


@dataclass(frozen=True)
class CourseModel:
    """A trained model of the course, with where it came from.

    ``model`` is in eval mode on the device asked for. ``result`` holds the numbers stored with the
    checkpoint (``{}`` for a course checkpoint, which stores none). ``origin`` says whose they are:
    :data:`PUBLISHED_ORIGIN`, :data:`OWN_ORIGIN` (a checkpoint of the user's own in the checkpoint cache,
    taken in place of the published one) or :data:`COURSE_ORIGIN`. ``run_dir`` is the folder of the training
    run behind a course checkpoint (its logs), where one was kept, else ``None``. ``note`` says why the model
    is not the published one (and for a course checkpoint how it was made), for the caller to show; ``""``
    for the published one.
    """

    model: ImageFlow
    result: dict[str, Any]
    origin: str
    run_dir: Path | None
    note: str


def _how_it_was_made(course_folder: Path) -> str:
    """The bullet of ``PROVENANCE.md`` that starts "How it was made", on one line."""
    provenance = course_folder / "PROVENANCE.md"
    if not provenance.is_file():
        return "How it was made: not recorded (no PROVENANCE.md)"
    bullets = [" ".join(item.split()) for item in provenance.read_text(encoding="utf-8").split("\n- ")]
    return next(
        (item for item in bullets if item.startswith("How it was made")),
        f"How it was made: not recorded in {provenance}",
    )


def _load_course_checkpoint(name: str, path: Path) -> ImageFlow:
    """A fresh ``name`` model holding the weights of ``path``, read weights-only and loaded strictly."""
    model = create_model(name)
    try:
        load_state_dict_checked(model, read_checkpoint(path)["state_dict"], name)
    except CheckpointError as err:
        raise CheckpointError(
            f"The course checkpoint {path} cannot be used: {str(err).replace(str(path), 'it')}"
        ) from None
    return model


def _neither(name: str, course_path: Path | None, published: CheckpointError) -> CheckpointError:
    """The error for a model that has neither a published nor a course checkpoint here: where each was looked for."""
    if course_path is None:
        course = f"none, as {COURSE_CHECKPOINTS_VARIABLE} is not set (set it to a folder holding MNISTFlow_{name}.ckpt)"
    else:
        course = f"no file {course_path.absolute()}"
    return CheckpointError(
        f"No {name!r} checkpoint can be had here. Course checkpoint: {course}. Published checkpoint: "
        + published.message,
        **published.settings,
    )


def load_course_model(
    name: str,
    device: str | torch.device | None = None,
    *,
    course_folder: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = False,
) -> CourseModel:
    """The trained ``name`` model: the published checkpoint, else the course's own checkpoint.

    The published checkpoint comes from :func:`load_pretrained` (``checkpoint_dir``, ``download`` and
    ``progress`` go to it; it downloads and verifies the file, and takes a file of the user's own in the
    cache, with a warning: then :attr:`CourseModel.origin` is :data:`OWN_ORIGIN`). Where it cannot be had, the model is
    read from ``MNISTFlow_<name>.ckpt`` in ``course_folder`` (default
    ``$NFLOWS_TUTORIAL_COURSE_CHECKPOINTS``; no folder, no course checkpoint) with the same strict,
    weights-only reader, and :attr:`CourseModel.note` says so, with the "How it was made" bullet of the
    folder's ``PROVENANCE.md``. The model lands on ``device`` (default: :func:`default_device`). Nothing
    is printed unless ``progress`` (then the download's messages and bar go to stderr).

    Raises ``ValueError`` for an unknown ``name``, and :class:`CheckpointError` where neither checkpoint
    can be had (naming both places looked in) or where the course checkpoint cannot be used.
    """
    device = default_device() if device is None else device
    try:
        model, result = load_pretrained(
            name, checkpoint_dir=checkpoint_dir, download=download, device=device, progress=progress
        )
    except CheckpointError as err:
        published = err
    else:
        origin = result.pop("origin")
        own = f"The {name!r} checkpoint in the cache is your own, not the published one: its stored numbers are yours."
        return CourseModel(model, result, origin, None, "" if origin == PUBLISHED_ORIGIN else own)
    folder = course_checkpoints_folder() if course_folder is None else Path(course_folder)
    path = None if folder is None else folder / f"MNISTFlow_{name}.ckpt"
    if path is None or not path.is_file():
        raise _neither(name, path, published)
    model = _load_course_checkpoint(name, path).to(device).eval()
    run_dir = path.parent / "run" / name
    note = (
        f"The published {name!r} checkpoint cannot be had here ({type(published).__name__}).\n"
        f"Using the course's own {name!r} checkpoint instead. {_how_it_was_made(path.parent)}"
    )
    return CourseModel(model, {}, COURSE_ORIGIN, run_dir if run_dir.is_dir() else None, note)
