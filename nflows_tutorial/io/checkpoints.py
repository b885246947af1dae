"""The published checkpoints of the course: where they live, how they are verified, how they load."""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import sys
import urllib.parse
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..environment import URL_VARIABLE, checkpoint_url_base
from ..errors import SettingsError
from ..flows.builders import check_model_name, create_model
from ..flows.model import ImageFlow
from ..runtime import default_device
from .download import DownloadError, download_file, sha256_of
from .files import atomic_write, quarantine
from .paths import checkpoint_dir as _resolve_dir

__all__ = [
    "CheckpointError",
    "IncompleteDownloadError",
    "OwnCheckpointWarning",
    "PretrainedSpec",
    "REGISTRY",
    "DEFAULT_BASE_URL",
    "URL_VARIABLE",
    "checkpoint_url",
    "read_checkpoint",
    "load_state_dict_checked",
    "fetch_checkpoint",
    "download_checkpoints",
    "load_pretrained",
    "save_published",
]

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/phlippe/saved_models/main/tutorial11/"


class CheckpointError(SettingsError, RuntimeError):
    """A checkpoint is missing, unsafe, corrupt, or belongs to another model; the message says what to do."""


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


@dataclass(frozen=True)
class PretrainedSpec:
    """A published checkpoint: its file name and, where known, its size and SHA-256.

    ``max_size`` bounds a download whose size is not known, so a misbehaving server cannot fill the disk.
    """

    name: str
    filename: str
    size: int | None = None
    sha256: str | None = None
    max_size: int | None = None


REGISTRY: dict[str, PretrainedSpec] = {
    "simple": PretrainedSpec(
        "simple", "MNISTFlow_simple.ckpt", 2_321_793, "d5e596723a9c12240f3180615cc76aa29c82dcf3b52bcf03d71f584494ab5e94"
    ),
    "vardeq": PretrainedSpec(
        "vardeq", "MNISTFlow_vardeq.ckpt", 2_660_225, "f571031f2fd719b19e6e23fb32c896b581594b4a690e9377be941b0b51a41791"
    ),
    # No size or SHA-256 is recorded for the multi-scale file, so what is verified for it is what the
    # code checks: a weights_only load whose state dict fits create_multiscale_flow() key for key and
    # shape for shape, and a download no larger than max_size. Its 1,711,818 float32 weights take
    # 6.8 MB; the other two files are their weights and little more.
    "multiscale": PretrainedSpec("multiscale", "MNISTFlow_multiscale.ckpt", max_size=32 * 2**20),
}


def _spec(name: str) -> PretrainedSpec:
    # Every model the course builds is published, so an unknown name gets the builders' message.
    return REGISTRY[check_model_name(name)]


def checkpoint_url(name: str) -> str:
    """URL of a published checkpoint; the folder part comes from ``$NFLOWS_TUTORIAL_CHECKPOINT_URL`` if set."""
    filename = _spec(name).filename
    base = checkpoint_url_base() or DEFAULT_BASE_URL
    if urllib.parse.urlsplit(base).scheme not in ("http", "https", "file"):
        raise CheckpointError(
            f"{URL_VARIABLE}={base!r} is not a URL. Set it to the folder that serves the .ckpt files, "
            "starting with https://, http:// or file:// (for a local folder: file:///path/to/folder/), "
            "or unset it to use the published copies."
        )
    return base.rstrip("/") + "/" + filename


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; refuse files that need arbitrary unpickling."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch names the global that the pickle asks to call or build beyond tensors and plain containers
        # ("Unsupported global: GLOBAL io.open was not an allowed global", "unsupported GLOBAL posix.system
        # whose module posix is blocked"): that is how a malicious file runs code.
        unsafe = re.search(r"GLOBAL ([\w.]+\w)", str(err))
        if unsafe:
            raise CheckpointError(
                f"refusing to load {path}: it is unsafe, as it asks to run {unsafe.group(1)} while loading, which only "
                "an unsafe (weights_only=False) load would do. A checkpoint of this course holds nothing but tensors "
                "and plain values, so this file is not one of ours: do not load it any other way."
            ) from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (another kind of file, or damaged)") from None
    except OSError as err:
        raise CheckpointError(f"cannot read {path} ({err.strerror or err})") from None
    except (RuntimeError, EOFError) as err:
        first_line = str(err).splitlines()[0] if str(err) else "the file ends too early"
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint, probably truncated ({first_line})"
        ) from None
    except Exception:  # torch's reader meets a file of another kind with KeyError, ValueError, ...
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (another kind of file, or damaged)") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a checkpoint of this course: it has no 'state_dict' entry")
    return ckpt


def load_state_dict_checked(model: ImageFlow, state_dict: dict[str, torch.Tensor], name: str) -> None:
    """Load ``state_dict`` strictly; on mismatch say which model and which key differs first."""
    own = model.state_dict()
    bad = [
        k
        for k in own.keys() | state_dict.keys()
        if k not in state_dict or k not in own or own[k].shape != state_dict[k].shape
    ]
    if bad:
        first = min(bad)
        if first not in state_dict:
            detail = f"the checkpoint lacks {first!r}"
        elif first not in own:
            detail = f"the checkpoint has {first!r}, which the model does not"
        else:
            detail = f"{first!r} has shape {list(state_dict[first].shape)}, the model expects {list(own[first].shape)}"
        raise CheckpointError(f"this checkpoint does not fit the {name!r} model: {detail} ({len(bad)} keys differ)")
    model.load_state_dict(state_dict, strict=True)


def _expected(spec: PretrainedSpec) -> str:
    if spec.sha256 is None:
        return "size and SHA-256 unknown here; it is checked by loading it into the model"
    size = "" if spec.size is None else f"{spec.size:,} bytes, "
    return f"{size}SHA-256 {spec.sha256}"


def _check_fits(spec: PretrainedSpec, path: Path) -> None:
    """Raise unless ``path`` loads weights-only into a fresh model of ``spec.name``, key for key, shape for shape."""
    load_state_dict_checked(create_model(spec.name), read_checkpoint(path)["state_dict"], spec.name)


def _is_published(spec: PretrainedSpec, path: Path) -> bool:
    """Whether ``path`` is the published file, by SHA-256 where it is known and by structure where it is not.

    A file whose hash is known but differs is the user's own if it fits the model (``False``); one that
    cannot be read or does not fit raises :class:`CheckpointError` saying what was expected and found.
    """
    if spec.sha256 is None:
        _check_fits(spec, path)
        return True
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


def _verify_download(spec: PretrainedSpec, part: Path, url: str) -> None:
    try:
        _check_fits(spec, part)
    except CheckpointError as err:
        # The temporary file is gone by the time anyone reads this: name what was downloaded instead.
        reason = str(err).replace(str(part), "the downloaded file")
        raise CheckpointError(f"the server sent a file that failed verification: {reason}") from None


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


def _cached_problem(spec: PretrainedSpec, path: Path, download: bool) -> str | None:
    """``None`` when the cached file at ``path`` is to be used as it is; otherwise what is wrong with it.

    A file that fails verification is moved aside (the returned text says where), so that it can be
    fetched again; with ``download=False`` it stays and :class:`CheckpointError` says what differs.
    """
    try:
        if not _is_published(spec, path):
            warnings.warn(
                f"using {path}: it is not the published {spec.name!r} checkpoint, but it fits the model, so it is "
                "taken as your own (move it elsewhere to get the published one)",
                OwnCheckpointWarning,
                stacklevel=3,
            )
        return None
    except CheckpointError as err:
        problem = err
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
        stacklevel=3,
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
            verify=None if spec.sha256 else lambda part: _verify_download(spec, part, url),
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


def fetch_checkpoint(
    name: str, checkpoint_dir: str | os.PathLike | None = None, download: bool = True, progress: bool = True
) -> Path:
    """Return the path of a checkpoint file for model ``name``, downloading the published one on first use.

    A cached file is checked on every call (SHA-256, or structure where the hash is unknown). One that
    is not the published file but loads weights-only into the model key for key (one you trained, say)
    is used as it is, with a warning naming it: it is never renamed, replaced or deleted. One that cannot
    be read or does not fit the model is moved aside as ``<file>.unverified`` (``.unverified.1``, ...;
    never over an earlier one) with a warning and fetched again, once; with ``download=False`` it is
    reported instead. Raises :class:`CheckpointError` with the URL, the folder and how to place the file by hand.
    """
    spec = _spec(name)
    folder = _resolve_dir(checkpoint_dir)
    path = folder / spec.filename
    cached_problem = None
    if path.is_file():
        cached_problem = _cached_problem(spec, path, download)
        if cached_problem is None:
            return path
    elif not download:
        raise CheckpointError(
            f"No {name!r} checkpoint in {folder.absolute()}, and {{download}}.\n{_ways_out(spec, folder, download)}",
            download=False,
        )
    return _download(spec, folder, cached_problem, progress)


def download_checkpoints(
    names: Sequence[str] | None = None, checkpoint_dir: str | os.PathLike | None = None, progress: bool = True
) -> dict[str, Path]:
    """Fill the checkpoint cache: fetch and verify the named models (``None``: all of them).

    Returns each model's verified file, in the order asked. An unknown name raises ``ValueError``
    before anything is downloaded. Every name is tried even when an earlier one fails; then
    :class:`IncompleteDownloadError` lists each failure with its way out.
    """
    if isinstance(names, str):
        names = [names]
    chosen = list(dict.fromkeys(REGISTRY if names is None else names))
    for name in chosen:
        _spec(name)
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
    (default: :func:`default_device`), and the result dict stored with it (``{}`` when it has none).

    The file is looked up in ``checkpoint_dir`` (default ``$PATH_CHECKPOINT`` or
    ``<project>/saved_models/tutorial11``) and downloaded from ``checkpoint_url(name)`` when missing;
    see :func:`fetch_checkpoint` for verification and errors.
    """
    path = fetch_checkpoint(name, checkpoint_dir, download=download, progress=progress)
    ckpt = read_checkpoint(path)  # onto the CPU first: the published tensors were saved on a GPU
    model = create_model(name)
    load_state_dict_checked(model, ckpt["state_dict"], name)
    model.to(default_device() if device is None else device).eval()
    return model, dict(ckpt.get("result") or {})


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
