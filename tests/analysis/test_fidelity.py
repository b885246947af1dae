"""The published checkpoints score what the original tutorial's code scores on them (COURSE.md section 3)."""

from __future__ import annotations

import pytest

from nflows_tutorial import load_mnist, make_loader
from nflows_tutorial.analysis.bpd import evaluate_bpd
from nflows_tutorial.io.checkpoints import load_pretrained

# Measured with the tutorial's own code: 8 importance samples, seed 42, batch 64, first 1,000 test images.
SUBSET_BPD = {"simple": 1.0524, "vardeq": 1.0193}


def bpd(name: str, split: str, limit: int | None, published_dir) -> tuple[float, dict]:
    model, result = load_pretrained(name, checkpoint_dir=published_dir, download=False, device="cpu")
    loader = make_loader(load_mnist(split), batch_size=64, limit=limit)
    return evaluate_bpd(model, loader, importance_samples=8, seed=42), result


@pytest.mark.parametrize("name", ["simple", "vardeq"])
def test_first_thousand_test_images_match_the_tutorial_code(name, published_dir):
    measured, _ = bpd(name, "test", 1000, published_dir)
    print(f"{name}: {measured:.4f} bpd on the first 1,000 test images (tutorial code: {SUBSET_BPD[name]})")
    assert measured == pytest.approx(SUBSET_BPD[name], abs=0.004)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["simple", "vardeq"])
@pytest.mark.parametrize("split", ["test", "val"])
def test_full_split_matches_the_stored_result(name, split, published_dir):
    measured, result = bpd(name, split, None, published_dir)
    stored = result[split][0]["test_bpd"]
    print(f"{name} {split}: {measured:.4f} bpd on all 10,000 images (stored: {stored:.4f})")
    assert measured == pytest.approx(stored, abs=0.003)
