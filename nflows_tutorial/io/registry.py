"""The published checkpoints: their files, the numbers published with them, and where they are served."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from ..environment import URL_VARIABLE, checkpoint_url_base
from ..flows.builders import check_model_name
from .checkpoint_files import CheckpointError

__all__ = [
    "DEFAULT_BASE_URL",
    "PUBLISHED_ORIGIN",
    "OWN_ORIGIN",
    "PretrainedSpec",
    "REGISTRY",
    "spec_of",
    "checkpoint_url",
    "shows_published_numbers",
]

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/phlippe/saved_models/main/tutorial11/"

#: ``result["origin"]`` from ``load_pretrained`` for the published checkpoint: its numbers are the published ones.
PUBLISHED_ORIGIN = "published checkpoint"
#: ``result["origin"]`` for a checkpoint in the cache that fits the model but is not the published one.
OWN_ORIGIN = "your own checkpoint, not the published one"


@dataclass(frozen=True)
class PretrainedSpec:
    """A published checkpoint: its file name, the numbers published with it and, where known, its size and SHA-256.

    ``bpd`` is the (validation, test) bits per dimension published with the file, to the three
    decimals of the tutorial's table. ``max_size`` bounds a download whose size is not known, so a
    misbehaving server cannot fill the disk.
    """

    name: str
    filename: str
    bpd: tuple[float, float]
    size: int | None = None
    sha256: str | None = None
    max_size: int | None = None


REGISTRY: dict[str, PretrainedSpec] = {
    "simple": PretrainedSpec(
        "simple",
        "MNISTFlow_simple.ckpt",
        (1.080, 1.078),
        2_321_793,
        "d5e596723a9c12240f3180615cc76aa29c82dcf3b52bcf03d71f584494ab5e94",
    ),
    "vardeq": PretrainedSpec(
        "vardeq",
        "MNISTFlow_vardeq.ckpt",
        (1.045, 1.043),
        2_660_225,
        "f571031f2fd719b19e6e23fb32c896b581594b4a690e9377be941b0b51a41791",
    ),
    # No size or SHA-256 is recorded for the multi-scale file (no copy of it could be had to hash), so
    # what is verified for it is what the code checks: a weights_only load whose state dict fits
    # create_multiscale_flow() key for key and shape for shape, a download no larger than max_size, and
    # the numbers stored with it (see shows_published_numbers). Its 1,711,818 float32 weights take
    # 6.8 MB; the other two files are their weights and little more.
    "multiscale": PretrainedSpec("multiscale", "MNISTFlow_multiscale.ckpt", (1.022, 1.020), max_size=32 * 2**20),
}

# The entries of a published ``result`` dict: the bpd of each split and two timings, as the tutorial's
# code stored them. A dict train_flow() writes has more (``params``, ``global_step``, ...).
_PUBLISHED_RESULT_KEYS = frozenset({"val", "test", "time", "samp_time"})


def spec_of(name: str) -> PretrainedSpec:
    """The published checkpoint of model ``name``; ``ValueError`` for an unknown name."""
    # Every model the course builds is published, so an unknown name gets the builders' message.
    return REGISTRY[check_model_name(name)]


def checkpoint_url(name: str) -> str:
    """URL of a published checkpoint; the folder part comes from ``$NFLOWS_TUTORIAL_CHECKPOINT_URL`` if set."""
    filename = spec_of(name).filename
    base = checkpoint_url_base() or DEFAULT_BASE_URL
    if urllib.parse.urlsplit(base).scheme not in ("http", "https", "file"):
        raise CheckpointError(
            f"{URL_VARIABLE}={base!r} is not a URL. Set it to the folder that serves the .ckpt files, "
            "starting with https://, http:// or file:// (for a local folder: file:///path/to/folder/), "
            "or unset it to use the published copies."
        )
    return base.rstrip("/") + "/" + filename


def shows_published_numbers(spec: PretrainedSpec, result: object) -> bool:
    """Whether ``result`` is the ``result`` dict published with ``spec``'s file, as far as it can be told without it.

    It must hold the published entries and no others, with the validation and test bpd that round to
    the published ones (the tutorial printed them with ``%.3f``). The two published files that can be
    hashed pass this; a dict train_flow() wrote fails it by its extra entries, and a model trained
    any other way by its numbers, unless it matches the published model to the third decimal.
    """
    if not isinstance(result, dict) or not result.keys() <= _PUBLISHED_RESULT_KEYS:
        return False
    try:
        stored = (result["val"][0]["test_bpd"], result["test"][0]["test_bpd"])
        return [f"{bpd:.3f}" for bpd in stored] == [f"{bpd:.3f}" for bpd in spec.bpd]
    except (KeyError, IndexError, TypeError, ValueError):
        return False
