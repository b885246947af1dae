"""The published checkpoints of the course: where they live, how they are verified, how they load."""

from __future__ import annotations

import errno
import os
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..environment import CHECKPOINT_VARIABLE, URL_VARIABLE, checkpoint_folder
from ..flows.builders import create_model
from ..flows.model import ImageFlow
from ..runtime import default_device
from .checkpoint_files import CheckpointError, load_state_dict_checked, read_checkpoint
from .download import DownloadError, download_file, sha256_of
from .files import atomic_write, quarantine
from .paths import checkpoint_dir as _resolve_dir
from .registry import (
    DEFAULT_BASE_URL,
    OWN_ORIGIN,
    PUBLISHED_ORIGIN,
    REGISTRY,
    PretrainedSpec,
    checkpoint_url,
    shows_published_numbers,
    spec_of,
)

__all__ = [
    "IncompleteDownloadError",
    "OwnCheckpointWarning",
    "checkpoint_folder_checked",
    "fetch_checkpoint",
    "download_checkpoints",
    "load_pretrained",
    "save_published",
]


class OwnCheckpointWarning(UserWarning):
    """The checkpoint file found is not the published one, but fits the model, so it is used as the user's own."""


class IncompleteDownloadError(CheckpointError):
    """:func:`download_checkpoints` could not fetch some of the models.

    ``fetched`` maps each model that is now in the cache to its file, ``failed`` each other model
    to the error that stopped it.
    """

    def __init__(self, fetched: dict[str, Path], failed: dict[str, CheckpointError]) -> None:
        self.fetched = fetched
        self.failed = failed
        super().__init__(str(self))

    def __reduce__(self):  # rebuilt from both parts when it travels between processes
        return type(self), (self.fetched, self.failed)

    def __str__(self) -> str:
        done = f" (verified: {', '.join(self.fetched)})" if self.fetched else ""
        details = "\n\n".join(f"[{name}] {err}" for name, err in self.failed.items())
        total = len(self.fetched) + len(self.failed)
        return f"{len(self.failed)} of {total} checkpoints could not be fetched{done}.\n\n{details}"


def _expected(spec: PretrainedSpec) -> str:
    if spec.sha256 is None:
        val, test = spec.bpd
        return (
            "size and SHA-256 unknown here; it is checked by loading it into the model, and by the numbers "
            f"stored with it: validation {val:.3f}, test {test:.3f} bpd"
        )
    size = "" if spec.size is None else f"{spec.size:,} bytes, "
    return f"{size}SHA-256 {spec.sha256}"


def _check_fits(spec: PretrainedSpec, path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``; raise unless it loads weights-only into a fresh ``spec.name`` model, key for key."""
    ckpt = read_checkpoint(path)
    load_state_dict_checked(create_model(spec.name), ckpt["state_dict"], spec.name)
    return ckpt


def _is_published(spec: PretrainedSpec, path: Path) -> bool:
    """Whether ``path`` is the published file: by SHA-256 where it is known, else by the numbers stored with it.

    A file that is not the published one is the user's own if it fits the model (``False``); one that
    cannot be read or does not fit raises :class:`CheckpointError` saying what was expected and found.
    """
    if spec.sha256 is None:
        return shows_published_numbers(spec, _check_fits(spec, path).get("result"))
    found = sha256_of(path)
    if found == spec.sha256:
        return True
    try:
        _check_fits(spec, path)
    except CheckpointError as err:
        raise CheckpointError(
            f"expected {_expected(spec)}; found {path.stat().st_size:,} bytes, SHA-256 {found}, "
            f"and it is not a checkpoint of this model trained elsewhere either: {err}"
        ) from None
    return False


def _verify_download(spec: PretrainedSpec, part: Path) -> None:
    """Raise unless the downloaded file ``part`` fits the model and holds the published numbers."""
    try:
        published = _is_published(spec, part)
    except CheckpointError as err:
        # The temporary file is gone by the time anyone reads this: name what was downloaded instead.
        reason = str(err).replace(str(part), "the downloaded file")
        raise CheckpointError(f"the server sent a file that failed verification: {reason}") from None
    if not published:
        raise CheckpointError(
            f"the server sent a file that failed verification: it fits the {spec.name!r} model, but it is not the "
            f"published checkpoint ({_expected(spec)})"
        )


def _ways_out(spec: PretrainedSpec, folder: Path, download: bool) -> str:
    again = "run this again" if download else "run this again with download=True"
    return (
        "Two ways out:\n"
        f"  1. Place the file by hand: fetch {DEFAULT_BASE_URL}{spec.filename} on any machine with internet\n"
        f"     and save it as {folder.absolute() / spec.filename}\n"
        f"     ({_expected(spec)}).\n"
        "     (If you keep a copy elsewhere, point PATH_CHECKPOINT at its folder instead.)\n"
        f"  2. Set {URL_VARIABLE} to a mirror folder that serves {spec.filename}\n"
        f"     (a course server, or a local folder as file:///path/to/folder/), then {again}."
    )


def _origin_of_cached(spec: PretrainedSpec, path: Path) -> str:
    """:data:`PUBLISHED_ORIGIN` or, with an :class:`OwnCheckpointWarning`, :data:`OWN_ORIGIN` for the cached file
    at ``path``; :class:`CheckpointError` where it is neither (it cannot be read, or does not fit the model)."""
    if _is_published(spec, path):
        return PUBLISHED_ORIGIN
    warnings.warn(
        f"using {path}: it is not the published {spec.name!r} checkpoint, but it fits the model, so it is taken as "
        "your own, and the numbers stored with it are yours (move it elsewhere to get the published one)",
        OwnCheckpointWarning,
        stacklevel=4,  # the caller of fetch_checkpoint or load_pretrained
    )
    return OWN_ORIGIN


def _set_aside(spec: PretrainedSpec, path: Path, problem: CheckpointError, download: bool) -> str:
    """Move the cached file at ``path``, which failed verification, aside to fetch it again; return what to report.

    With ``download=False`` it stays, and :class:`CheckpointError` says what differs.
    """
    if not download:
        raise CheckpointError(
            f"The cached {spec.name!r} checkpoint {path} failed verification: {problem}\n"
            + _ways_out(spec, path.parent, download)
        )
    try:
        aside = quarantine(path)
    except OSError as move_err:
        raise CheckpointError(
            f"The cached {spec.name!r} checkpoint {path} failed verification ({problem}), and it cannot be moved aside "
            f"to fetch it again ({move_err.strerror or move_err}): delete it, or point PATH_CHECKPOINT at a "
            "writable folder"
        ) from None
    warnings.warn(
        f"the cached {spec.name!r} checkpoint failed verification ({problem}); moved it to {aside.name} "
        "and downloading it again",
        RuntimeWarning,
        stacklevel=4,
    )
    return f"{problem}; it was moved to {aside}"


def _download(spec: PretrainedSpec, folder: Path, cached_problem: str | None, progress: bool) -> Path:
    """Download the published file of ``spec`` into ``folder`` and return its path.

    ``cached_problem`` says what was wrong with the cached copy this replaces, for the error message.
    """
    path = folder / spec.filename
    url = checkpoint_url(spec.name)
    if progress:
        size = "" if spec.size is None else f" ({spec.size / 2**20:.2f} MiB)"
        print(f"Downloading the {spec.name!r} checkpoint{size} from {url}\n  into {folder.absolute()}", file=sys.stderr)
    try:
        download_file(
            url,
            path,
            sha256=spec.sha256,
            size=spec.size,
            max_size=spec.max_size,
            verify=None if spec.sha256 else lambda part: _verify_download(spec, part),
            progress=progress,
        )
    except (DownloadError, CheckpointError) as err:
        reason = err.reason if isinstance(err, DownloadError) else str(err)
        cached = "" if cached_problem is None else f"\n  cached copy: {cached_problem}"
        raise CheckpointError(
            f"Could not download the {spec.name!r} checkpoint: {reason}\n"
            f"  URL:    {url}\n"
            f"  folder: {folder.absolute()}{cached}\n"
            f"{_ways_out(spec, folder, download=True)}"
        ) from None
    return path


def checkpoint_folder_checked(checkpoint_dir: str | os.PathLike | None = None) -> Path:
    """The checkpoint folder (``checkpoint_dir``, else ``$PATH_CHECKPOINT``, else the project's); it may not exist yet.

    Raises :class:`CheckpointError` naming the setting to change where it is a file, not a folder.
    """
    folder = _resolve_dir(checkpoint_dir)
    if not folder.exists() or folder.is_dir():
        return folder
    if checkpoint_dir is not None:
        raise CheckpointError(
            "the checkpoint folder in {checkpoint_dir} is a file, not a folder: give the folder that holds "
            "(or is to hold) the MNISTFlow_<model>.ckpt files",
            checkpoint_dir=checkpoint_dir,
        )
    what = f"the checkpoint folder {folder.absolute()} is a file, not a folder"
    if checkpoint_folder() is not None:
        raise CheckpointError(f"{what}: set {CHECKPOINT_VARIABLE} to the folder that holds the checkpoints")
    raise CheckpointError(f"{what}: move that file away, or set {CHECKPOINT_VARIABLE} to another folder")


def _fetch(name: str, checkpoint_dir: str | os.PathLike | None, download: bool, progress: bool) -> tuple[Path, str]:
    """:func:`fetch_checkpoint`'s path, with where the file comes from (:data:`PUBLISHED_ORIGIN`, :data:`OWN_ORIGIN`)."""
    spec = spec_of(name)
    folder = checkpoint_folder_checked(checkpoint_dir)
    path = folder / spec.filename
    if path.is_dir():
        raise CheckpointError(
            f"{path.absolute()} is a folder, where the {name!r} checkpoint file should be: move that folder away or "
            "rename it (nothing in it is used), then run this again"
        )
    cached_problem = None
    if path.is_file():
        try:
            return path, _origin_of_cached(spec, path)
        except CheckpointError as err:
            cached_problem = _set_aside(spec, path, err, download)
    elif not download:
        raise CheckpointError(
            f"No {name!r} checkpoint in {folder.absolute()}, and {{download}}.\n{_ways_out(spec, folder, download)}",
            download=False,
        )
    return _download(spec, folder, cached_problem, progress), PUBLISHED_ORIGIN


def fetch_checkpoint(
    name: str, checkpoint_dir: str | os.PathLike | None = None, download: bool = True, progress: bool = True
) -> Path:
    """Return the path of a checkpoint file for model ``name``, downloading the published one on first use.

    A cached file is checked on every call (SHA-256, or, where the hash is unknown, structure and the
    numbers stored with it). One that is not the published file but loads weights-only into the model
    key for key (one you trained, say) is used as it is, with an :class:`OwnCheckpointWarning` naming it:
    it is never renamed, replaced or deleted. One that cannot be read or does not fit the model is moved
    aside as ``<file>.unverified`` (``.unverified.1``, ...; never over an earlier one) with a warning and
    fetched again, once; with ``download=False`` it is reported instead. Raises :class:`CheckpointError`
    with the URL, the folder and how to place the file by hand, and in one line where the folder is a file
    or the checkpoint's name is taken by a folder.
    """
    return _fetch(name, checkpoint_dir, download, progress)[0]


def download_checkpoints(
    names: Sequence[str] | None = None, checkpoint_dir: str | os.PathLike | None = None, progress: bool = True
) -> dict[str, Path]:
    """Fill the checkpoint cache: fetch and verify the named models (``None``: all of them).

    Returns each model's verified file, in the order asked. An unknown name raises ``ValueError``
    before anything is downloaded, and a folder that is a file a :class:`CheckpointError`. Every name
    is tried even when an earlier one fails; then :class:`IncompleteDownloadError` lists each failure
    with its way out.
    """
    if isinstance(names, str):
        names = [names]
    chosen = list(dict.fromkeys(REGISTRY if names is None else names))
    for name in chosen:
        spec_of(name)
    checkpoint_folder_checked(checkpoint_dir)  # a file given as the folder is one error, not one per model
    fetched: dict[str, Path] = {}
    failed: dict[str, CheckpointError] = {}
    for name in chosen:
        try:
            fetched[name] = fetch_checkpoint(name, checkpoint_dir, progress=progress)
        except CheckpointError as err:
            failed[name] = err
    if failed:
        raise IncompleteDownloadError(fetched, failed)
    return fetched


def load_pretrained(
    name: str,
    checkpoint_dir: str | os.PathLike | None = None,
    download: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[ImageFlow, dict[str, Any]]:
    """Return ``(model, result)`` for a published checkpoint: the model in eval mode on ``device``
    (default: :func:`default_device`), and the result dict stored with it (``{}`` where it has none), with an
    ``origin`` entry added.

    The file is looked up in ``checkpoint_dir`` (default ``$PATH_CHECKPOINT`` or
    ``<project>/saved_models/tutorial11``) and downloaded from ``checkpoint_url(name)`` when missing;
    see :func:`fetch_checkpoint` for verification and errors. ``result["origin"]`` says whose numbers the
    others are: :data:`PUBLISHED_ORIGIN`, or :data:`OWN_ORIGIN` for a file in the cache that fits the model
    but is not the published one (then an :class:`OwnCheckpointWarning` says so too).
    """
    path, origin = _fetch(name, checkpoint_dir, download, progress)
    ckpt = read_checkpoint(path)  # onto the CPU first: the published tensors were saved on a GPU
    model = create_model(name)
    load_state_dict_checked(model, ckpt["state_dict"], name)
    model.to(default_device() if device is None else device).eval()
    stored = ckpt.get("result")
    return model, {**(stored if isinstance(stored, dict) else {}), "origin": origin}


def save_published(model: ImageFlow, result: dict[str, Any], path: Path) -> None:
    """Write ``{"state_dict", "result"}`` atomically: a reader finds the old file or the whole new one."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_write(path) as tmp:
        try:
            torch.save({"state_dict": state, "result": result}, tmp)
        except RuntimeError as err:  # torch's writer reports a failed write (a full disk, say) this way
            free = shutil.disk_usage(path.parent).free
            raise OSError(
                errno.ENOSPC if free < 2**20 else errno.EIO,
                f"could not write the checkpoint ({str(err).splitlines()[0]})",
                str(path),
            ) from None
