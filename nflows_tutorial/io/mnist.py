"""MNIST as one in-memory tensor of integer pixels, with the course's train/validation/test splits."""

from __future__ import annotations

import gzip
import os
import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import SettingsError
from .paths import dataset_root

__all__ = ["ImageDataset", "DataUnavailableError", "load_mnist", "make_loader", "SPLITS"]

SPLITS = ("train", "val", "test")
TRAIN_SIZE, VAL_SIZE, TEST_SIZE = 50_000, 10_000, 10_000
SPLIT_SEED = 42
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DataUnavailableError(SettingsError, RuntimeError):
    """MNIST is neither on disk nor downloadable."""


class ImageDataset(Dataset):
    """Images ``[N, C, H, W]`` (uint8) and labels ``[N]`` held in memory.

    Items are ``(int32 image, label)``. A whole batch is gathered with one indexing operation
    (``__getitems__``), so a loader never assembles a batch image by image.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError(f"images must be a uint8 tensor [N, C, H, W], got {images.dtype} {list(images.shape)}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index].to(torch.int32), self.labels[index]

    def __getitems__(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices)
        return self.images[idx].to(torch.int32), self.labels[idx]

    def subset(self, indices: torch.Tensor | slice) -> ImageDataset:
        """A new dataset holding the selected images (a copy when ``indices`` is a tensor)."""
        return ImageDataset(self.images[indices], self.labels[indices])


def _describe_download_error(err: Exception) -> str:
    """torchvision's nested account of a failed MNIST download, as one line."""
    text = " ".join(str(err).split())
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo failed" in text:
        return "cannot look up the servers' addresses: this machine seems to be offline"
    return f"{type(err).__name__}: {text}"


def _unpack(raw: Path, names: Sequence[str]) -> None:
    """Decompress ``<name>.gz`` where only the archive is on disk; a damaged archive is reported as such."""
    for name in names:
        target, archive = raw / name, raw / f"{name}.gz"
        if target.is_file() or not archive.is_file():
            continue
        part = raw / f".{name}.{os.getpid()}.part"
        try:
            with gzip.open(archive, "rb") as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(part, target)
        except (OSError, EOFError, zlib.error) as err:
            if not isinstance(err, (gzip.BadGzipFile, EOFError, zlib.error)):
                raise DataUnavailableError(
                    f"cannot unpack {archive} into {raw} ({err.strerror or err}); make the folder writable, "
                    "or point PATH_DATASETS at a writable folder holding MNIST/raw"
                ) from None
            raise DataUnavailableError(
                f"{archive} is corrupt ({err or type(err).__name__}); delete it and run again to download it, "
                "or replace it with a good copy"
            ) from None
        finally:
            part.unlink(missing_ok=True)


def _read_idx(raw: Path, images_file: str, labels_file: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one split's image and label files, refusing damaged files and ones with too few images."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    tensors = []
    for name, read in ((images_file, read_image_file), (labels_file, read_label_file)):
        try:
            tensor = read(str(raw / name))
        except (AssertionError, KeyError, RuntimeError, TypeError, ValueError, IndexError) as err:
            raise DataUnavailableError(
                f"{raw / name} is corrupt (not an MNIST idx file{': ' + str(err) if str(err) else ''}); delete it "
                "(and its .gz) and run again to download it, or replace it with a good copy"
            ) from None
        if tensor.shape[0] != count:
            raise DataUnavailableError(
                f"{raw / name} holds {tensor.shape[0]:,} entries where MNIST has {count:,}, so the course's splits "
                "cannot be cut from it; delete it (and its .gz) and run again to download it, or replace it"
            )
        tensors.append(tensor)
    images, labels = tensors
    if images.shape[1:] != (28, 28):
        raise DataUnavailableError(f"{raw / images_file} holds images of {list(images.shape[1:])}, not MNIST's 28x28")
    return images.unsqueeze(1).contiguous(), labels


def _read_mnist(root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST

    raw = root / "MNIST" / "raw"
    prefix = "train" if train else "t10k"
    names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    count = TRAIN_SIZE + VAL_SIZE if train else TEST_SIZE
    damaged = None
    try:
        _unpack(raw, names)
    except DataUnavailableError as err:
        if not download:
            raise
        damaged = str(err).split(";")[0]  # a fresh download replaces the damaged archive
    missing = [f for f in names if not (raw / f).is_file()]
    if missing and not download:
        raise DataUnavailableError(
            f"MNIST is not in {raw.resolve()} (missing: {', '.join(missing)}) and {{download}}; "
            "place these files (or their .gz) there, or point PATH_DATASETS at a folder that holds MNIST/raw",
            download=False,
        )
    if missing:
        try:
            MNIST(root=str(root), train=train, download=True)
        except Exception as err:  # torchvision raises RuntimeError, URLError, HTTPError, OSError...
            also = f"; {damaged}" if damaged else ""
            raise DataUnavailableError(
                f"could not download MNIST into {raw.resolve()} ({_describe_download_error(err)}){also}. Place the "
                f"files {', '.join(RAW_FILES)} (or their .gz) there, or set PATH_DATASETS to a folder that holds MNIST/raw"
            ) from None
    return _read_idx(raw, *names, count)


def split_indices() -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation indices into the 60,000 training images, as the published models used.

    Equal to ``pl.seed_everything(42)`` followed by ``random_split(dataset, [50000, 10000])``,
    but with a private generator so the global random state is left alone.
    """
    perm = torch.randperm(TRAIN_SIZE + VAL_SIZE, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return perm[:TRAIN_SIZE], perm[TRAIN_SIZE:]


def load_mnist(split: str, root: str | os.PathLike | None = None, download: bool = True) -> ImageDataset:
    """Load one split of MNIST (``train`` 50,000, ``val`` 10,000 or ``test`` 10,000) into memory."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    images, labels = _read_mnist(dataset_root(root), train=split != "test", download=download)
    if split == "test":
        return ImageDataset(images, labels)
    train_idx, val_idx = split_indices()
    return ImageDataset(images, labels).subset(train_idx if split == "train" else val_idx)


def _collate_batch(batch):
    # ImageDataset.__getitems__ already returns stacked tensors.
    return batch


def make_loader(
    dataset: ImageDataset,
    batch_size: int,
    shuffle: bool = False,
    drop_last: bool = False,
    limit: int | None = None,
    seed: int | None = None,
) -> DataLoader:
    """A single-process loader of ``(images, labels)`` batches; ``limit`` keeps the first images only."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        dataset = dataset.subset(slice(0, limit))
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        collate_fn=_collate_batch,
        generator=generator,
    )
