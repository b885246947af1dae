"""The published checkpoints of the course: where they live, how they are verified, how they load."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .builders import MODEL_NAMES, create_model
from .download import DownloadError, download_file, sha256_of
from .model import ImageFlow
from .paths import checkpoint_dir as _resolve_dir

__all__ = [
    "CheckpointError",
    "PretrainedSpec",
    "REGISTRY",
    "DEFAULT_BASE_URL",
    "checkpoint_url",
    "read_checkpoint",
    "load_state_dict_checked",
    "fetch_checkpoint",
    "load_pretrained",
    "default_device",
]

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/phlippe/saved_models/main/tutorial11/"
URL_VARIABLE = "NFLOWS_TUTORIAL_CHECKPOINT_URL"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unsafe, corrupt, or belongs to another model."""


@dataclass(frozen=True)
class PretrainedSpec:
    """A published checkpoint: its file name and, where known, its size and SHA-256."""

    name: str
    filename: str
    size: int | None = None
    sha256: str | None = None


REGISTRY: dict[str, PretrainedSpec] = {
    "simple": PretrainedSpec(
        "simple", "MNISTFlow_simple.ckpt", 2_321_793, "d5e596723a9c12240f3180615cc76aa29c82dcf3b52bcf03d71f584494ab5e94"
    ),
    "vardeq": PretrainedSpec(
        "vardeq", "MNISTFlow_vardeq.ckpt", 2_660_225, "f571031f2fd719b19e6e23fb32c896b581594b4a690e9377be941b0b51a41791"
    ),
    # Size and hash of the multi-scale file are not known to us: it is verified by structure instead
    # (a weights_only load whose state dict matches create_multiscale_flow() key for key, shape for shape).
    "multiscale": PretrainedSpec("multiscale", "MNISTFlow_multiscale.ckpt"),
}
assert tuple(REGISTRY) == MODEL_NAMES


def _spec(name: str) -> PretrainedSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)}") from None


def checkpoint_url(name: str) -> str:
    """URL of a published checkpoint; the base comes from ``$NFLOWS_TUTORIAL_CHECKPOINT_URL`` if set."""
    base = os.environ.get(URL_VARIABLE) or DEFAULT_BASE_URL
    return base.rstrip("/") + "/" + _spec(name).filename


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; refuse files that need arbitrary unpickling."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects that only a full (unsafe) unpickling could build, "
            f"and a checkpoint needs only tensors and plain values ({str(err).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({err})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a checkpoint of this course: it has no 'state_dict' entry")
    return ckpt


def load_state_dict_checked(model: ImageFlow, state_dict: dict[str, torch.Tensor], name: str) -> None:
    """Load ``state_dict`` strictly; on mismatch say which model and which key differs first."""
    own = model.state_dict()
    bad = [
        k for k in own.keys() | state_dict.keys()
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


def _verify_structure(name: str, path: Path) -> None:
    load_state_dict_checked(create_model(name), read_checkpoint(path)["state_dict"], name)


def _verify(spec: PretrainedSpec, path: Path) -> None:
    if spec.sha256 is not None:
        found = sha256_of(path)
        if found != spec.sha256:
            raise CheckpointError(f"SHA-256 mismatch: expected {spec.sha256}, found {found}")
    else:
        _verify_structure(spec.name, path)


def fetch_checkpoint(
    name: str, checkpoint_dir: str | os.PathLike | None = None, download: bool = True, progress: bool = True
) -> Path:
    """Return the path of a verified checkpoint file, downloading it on first use.

    A cached file that fails verification is moved aside (``*.corrupt``) and fetched again once.
    """
    spec = _spec(name)
    folder = _resolve_dir(checkpoint_dir)
    path = folder / spec.filename
    url = checkpoint_url(name)
    if path.is_file():
        try:
            _verify(spec, path)
            return path
        except CheckpointError as err:
            if not download:
                raise CheckpointError(f"{path} failed verification: {err}. {_how_to_place(url, folder)}") from None
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            print(f"{path} failed verification ({err}); moved it to {aside.name} and downloading again.")
    elif not download:
        raise CheckpointError(f"no checkpoint for {name!r} at {path} and download=False. {_how_to_place(url, folder)}")
    if progress:
        print(f"Downloading {url} -> {path}")
    try:
        download_file(
            url, path, sha256=spec.sha256, size=spec.size,
            verify=None if spec.sha256 else lambda tmp: _verify_structure(name, tmp),
            progress=progress,
        )
    except (DownloadError, CheckpointError) as err:
        raise CheckpointError(f"could not get the {name!r} checkpoint: {err}. {_how_to_place(url, folder)}") from None
    return path


def _how_to_place(url: str, folder: Path) -> str:
    return (
        f"Either download {url} by hand and place it in {folder.resolve()}, "
        f"or set {URL_VARIABLE} to a mirror that serves the file (a course server, a local folder over http)."
    )


def default_device() -> torch.device:
    """The first CUDA device if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_pretrained(
    name: str,
    checkpoint_dir: str | os.PathLike | None = None,
    download: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[ImageFlow, dict[str, Any]]:
    """Return ``(model, result)`` for a published checkpoint: the model in eval mode on ``device``,
    and the result dict stored with it (``{}`` when it has none).

    The file is looked up in ``checkpoint_dir`` (default ``$PATH_CHECKPOINT`` or
    ``saved_models/tutorial11``) and downloaded from ``checkpoint_url(name)`` when missing.
    """
    path = fetch_checkpoint(name, checkpoint_dir, download=download, progress=progress)
    ckpt = read_checkpoint(path)
    model = create_model(name)
    load_state_dict_checked(model, ckpt["state_dict"], name)
    model.to(default_device() if device is None else device).eval()
    return model, dict(ckpt.get("result") or {})
