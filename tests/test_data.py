"""MNIST loads as integer pixels, with the tutorial's exact train/validation split."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import random_split

from nflows_tutorial import load_mnist, make_loader
from nflows_tutorial.data import DataUnavailableError, split_indices


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
