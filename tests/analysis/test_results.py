"""Evaluation helpers: the image-weighted bpd, the speed measurements and the results table."""

from __future__ import annotations

import math

import pytest
import torch

from nflows_tutorial.analysis.bpd import evaluate_bpd, log_likelihood_in_passes
from nflows_tutorial.analysis.results import TABLE_COLUMNS, results_row, results_table, stored_numbers
from nflows_tutorial.analysis.speed import count_parameters, time_likelihood, time_sampling
from nflows_tutorial.flows import Dequantization
from nflows_tutorial.flows.model import ImageFlow
from nflows_tutorial.io.checkpoints import REGISTRY, read_checkpoint
from nflows_tutorial.io.mnist import ImageDataset, make_loader


@pytest.fixture
def tiny_flow() -> ImageFlow:
    """Uniform dequantization onto the prior: no weights, random likelihoods, instant to run."""
    return ImageFlow([Dequantization()], image_shape=(1, 4, 4))


@pytest.fixture
def ten_images() -> ImageDataset:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 1, 4, 4), generator=gen, dtype=torch.uint8)
    return ImageDataset(images, torch.zeros(10, dtype=torch.int64))


def test_bpd_is_the_mean_over_images_not_over_batches(tiny_flow, ten_images):
    loader = make_loader(ten_images, batch_size=4)  # batches of 4, 4 and 2 images
    got = evaluate_bpd(tiny_flow, loader, importance_samples=3, seed=7)
    torch.manual_seed(7)
    per_batch = [tiny_flow.bits_per_dim(imgs, 3).double() for imgs, _ in loader]
    per_image = torch.cat(per_batch)
    assert got == pytest.approx(per_image.mean().item(), rel=1e-6)
    assert got != pytest.approx(torch.stack([b.mean() for b in per_batch]).mean().item(), rel=1e-6)


@pytest.mark.parametrize("images_per_pass", [1, 8, 20, 64])
def test_stacking_draws_into_passes_gives_the_plain_estimate_with_the_same_noise(
    tiny_flow, ten_images, images_per_pass
):
    imgs = ten_images.images[:4].to(torch.int32)
    torch.manual_seed(3)
    plain = tiny_flow.log_likelihood(imgs, importance_samples=5)
    torch.manual_seed(3)
    stacked = log_likelihood_in_passes(tiny_flow, imgs, 5, images_per_pass=images_per_pass)
    torch.testing.assert_close(stacked, plain, rtol=1e-6, atol=1e-4)
    torch.manual_seed(3)
    single = torch.stack([tiny_flow.log_likelihood(imgs) for _ in range(5)])
    torch.testing.assert_close(plain, torch.logsumexp(single, 0) - math.log(5), rtol=1e-6, atol=1e-4)
    with pytest.raises(ValueError, match="images_per_pass must be at least 1"):
        log_likelihood_in_passes(tiny_flow, imgs, 5, images_per_pass=0)


def test_a_seed_makes_bpd_repeatable_and_leaves_the_callers_random_state_alone(tiny_flow, ten_images):
    loader = make_loader(ten_images, batch_size=4)
    before = torch.get_rng_state()
    first = evaluate_bpd(tiny_flow, loader, importance_samples=2, seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    assert evaluate_bpd(tiny_flow, loader, importance_samples=2, seed=1) == first
    assert evaluate_bpd(tiny_flow, loader, importance_samples=2, seed=2) != first


def test_evaluation_restores_the_models_mode(tiny_flow, ten_images):
    tiny_flow.train()
    evaluate_bpd(tiny_flow, make_loader(ten_images, batch_size=5), importance_samples=1)
    assert tiny_flow.training


def test_evaluation_refuses_nonsense(tiny_flow, ten_images):
    with pytest.raises(ValueError, match="importance_samples"):
        evaluate_bpd(tiny_flow, make_loader(ten_images, batch_size=5), importance_samples=0)
    with pytest.raises(ValueError, match="no images"):
        evaluate_bpd(tiny_flow, [], importance_samples=1)


def test_speed_measurements_are_positive_seconds(tiny_flow):
    for measure in (time_likelihood, time_sampling):
        seconds = measure(tiny_flow, batch_size=8, repeats=2)
        assert math.isfinite(seconds) and seconds > 0
    with pytest.raises(ValueError, match="repeats"):
        time_likelihood(tiny_flow, repeats=0)


def test_count_parameters_counts_every_learnable_value():
    assert count_parameters(torch.nn.Linear(3, 2)) == 3 * 2 + 2


@pytest.mark.parametrize("name", ["simple", "vardeq"])
def test_stored_numbers_read_a_published_result(name, published_dir):
    result = read_checkpoint(published_dir / REGISTRY[name].filename)["result"]
    numbers = stored_numbers(result)
    assert numbers["stored_val_bpd"] == result["val"][0]["test_bpd"]
    assert numbers["stored_test_bpd"] == result["test"][0]["test_bpd"]
    assert numbers["stored_inference_ms"] == pytest.approx(1000 * result["time"])
    assert numbers["stored_sampling_ms"] == pytest.approx(1000 * result["samp_time"])


def test_stored_numbers_of_an_empty_result_are_missing():
    assert set(stored_numbers({}).values()) == {None}


def test_results_row_measures_each_split_beside_the_stored_numbers(tiny_flow, ten_images):
    stored = {"val": [{"test_bpd": 1.5}], "time": 0.02}
    row = results_row(
        "tiny",
        tiny_flow,
        {"test": ten_images},
        stored,
        limit=6,
        batch_size=4,
        importance_samples=2,
        seed=3,
        repeats=None,
    )
    assert row["test_bpd"] == evaluate_bpd(tiny_flow, make_loader(ten_images, 4, limit=6), 2, seed=3)
    assert row["val_bpd"] is None and row["inference_ms"] is None and row["sampling_ms"] is None
    assert row["stored_val_bpd"] == 1.5 and row["stored_inference_ms"] == pytest.approx(20.0)
    assert row["stored_test_bpd"] is None
    assert row["images"] == {"test": 6} and row["params"] == 0 and row["device"] == "cpu"
    timed = results_row("tiny", tiny_flow, {"val": ten_images}, limit=4, importance_samples=1, repeats=1)
    assert timed["inference_ms"] > 0 and timed["sampling_ms"] > 0
    with pytest.raises(ValueError, match="'train'"):
        results_row("tiny", tiny_flow, {"train": ten_images})


def table_cells(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()]


def test_results_table_puts_each_measurement_beside_its_stored_value():
    rows = [
        {
            "model": "simple",
            "val_bpd": 1.07981,
            "test_bpd": 1.05236,
            "inference_ms": 812.4,
            "sampling_ms": 960.0,
            "params": 556312,
            "stored_val_bpd": 1.0798,
            "stored_test_bpd": 1.0784,
            "stored_inference_ms": 19.6,
            "stored_sampling_ms": 17.7,
        },
        {"model": "mine", "val_bpd": None, "test_bpd": 2.5, "params": 10},
    ]
    header, _, simple, mine = table_cells(results_table(rows))
    assert header[0] == "Model" and header[-1] == "Parameters"
    assert header[1:-1:2] == [title for _, _, title in TABLE_COLUMNS]
    assert set(header[2:-1:2]) == {"(stored)"}
    assert simple == ["simple", "1.0798", "1.0798", "1.0524", "1.0784", "812", "20", "960", "18", "556,312"]
    assert mine == ["mine", "-", "-", "2.5000", "-", "-", "-", "-", "-", "10"]


def test_results_table_takes_any_tabulate_format():
    row = {"model": "simple", "val_bpd": 1.0, "test_bpd": 1.0, "params": 1}
    assert results_table([row], fmt="html").startswith("<table>")
    assert "simple" in results_table([row], fmt="plain")
