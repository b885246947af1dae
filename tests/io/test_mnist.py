"""MNIST loads as integer pixels, with the tutorial's exact train/validation split."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch.utils.data import random_split

from nflows_tutorial import load_mnist, make_loader
from nflows_tutorial.io.mnist import DataUnavailableError, split_indices


def test_splits_have_the_published_sizes_and_dtype(mnist_root):
    sizes = {split: len(load_mnist(split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 50_000, "val": 10_000, "test": 10_000}
    img, label = load_mnist("test")[0]
    assert img.dtype == torch.int32 and img.shape == (1, 28, 28) and 0 <= int(label) <= 9
    assert img.min() >= 0 and img.max() <= 255 and img.max() > 200


def test_split_equals_random_split_after_seeding_42():
    torch.manual_seed(42)  # what pl.seed_everything(42) does to torch's generator
    train, val = random_split(range(60_000), [50_000, 10_000])
    ours_train, ours_val = split_indices()
    assert ours_train.tolist() == list(train.indices) and ours_val.tolist() == list(val.indices)


def test_loader_batches_whole_tensors_and_limit_takes_the_first_images(mnist_root):
    test = load_mnist("test")
    imgs, labels = next(iter(make_loader(test, batch_size=64, limit=100)))
    assert imgs.shape == (64, 1, 28, 28) and imgs.dtype == torch.int32
    assert torch.equal(imgs, test.images[:64].to(torch.int32)) and torch.equal(labels, test.labels[:64])
    assert sum(b[0].shape[0] for b in make_loader(test, batch_size=64, limit=100)) == 100


def test_missing_data_offline_names_the_folder_and_files(tmp_path, monkeypatch):
    with pytest.raises(DataUnavailableError, match=r"MNIST/raw.*t10k-images-idx3-ubyte"):
        load_mnist("test", root=tmp_path, download=False)
    # A download attempt that cannot reach the network gives the same clear story.
    monkeypatch.setattr("torchvision.datasets.MNIST.mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataUnavailableError, match="PATH_DATASETS"):
        load_mnist("test", root=tmp_path, download=True)
    assert not any(p.suffix == ".gz" for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("bad", [{"split": "validation"}, {"batch_size": 0}, {"limit": -1}])
def test_bad_arguments_are_rejected(bad, mnist_root):
    with pytest.raises(ValueError):
        if "split" in bad:
            load_mnist(bad["split"])
        else:
            make_loader(load_mnist("test"), **{"batch_size": 8, **bad})


def idx_file(path, magic: int, shape: tuple[int, ...], body: bytes | None = None) -> None:
    """Write an MNIST idx file: magic number, dimensions, then the values (zeros unless given)."""
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + (body if body is not None else bytes(int(torch.tensor(shape).prod()))))


def test_the_gz_files_alone_are_enough_offline(tmp_path, mnist_root):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_root / "MNIST" / "raw" / name, raw / name)
    test = load_mnist("test", root=tmp_path, download=False)
    assert len(test) == 10_000
    assert torch.equal(test.images, load_mnist("test", root=mnist_root, download=False).images)


def test_a_corrupt_gz_is_reported_as_corrupt_not_as_a_network_failure(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00 truncated")
    with pytest.raises(DataUnavailableError, match=r"t10k-images-idx3-ubyte.gz is corrupt .*delete it"):
        load_mnist("test", root=tmp_path, download=False)
    monkeypatch.setattr("torchvision.datasets.MNIST.mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataUnavailableError, match=r"could not download MNIST.*t10k-images-idx3-ubyte.gz is corrupt"):
        load_mnist("test", root=tmp_path, download=True)


def test_a_damaged_idx_file_is_reported_as_corrupt(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    idx_file(raw / "t10k-images-idx3-ubyte", 0x803, (10_000, 28, 28), body=b"\0" * 1000)  # cut short
    idx_file(raw / "t10k-labels-idx1-ubyte", 0x801, (10_000,))
    with pytest.raises(DataUnavailableError, match=r"t10k-images-idx3-ubyte is corrupt \(not an MNIST idx file"):
        load_mnist("test", root=tmp_path, download=False)


def test_a_train_file_with_too_few_images_is_refused(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    idx_file(raw / "train-images-idx3-ubyte", 0x803, (1000, 28, 28))
    idx_file(raw / "train-labels-idx1-ubyte", 0x801, (1000,))
    with pytest.raises(DataUnavailableError, match=r"holds 1,000 entries where MNIST has 60,000"):
        load_mnist("val", root=tmp_path, download=False)
