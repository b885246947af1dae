"""Evaluation helpers: the image-weighted bpd, the speed measurements and the results table."""

from __future__ import annotations

import math

import pytest
import torch

from nflows_tutorial.analysis.bpd import evaluate_bpd, log_likelihood_in_passes
from nflows_tutorial.analysis.results import (
    TABLE_COLUMNS,
    Result,
    final_test,
    results_notes,
    results_row,
    results_table,
)
from nflows_tutorial.analysis.speed import count_parameters, time_likelihood, time_sampling
from nflows_tutorial.flows import Dequantization
from nflows_tutorial.flows.model import ImageFlow
from nflows_tutorial.io.checkpoint_files import read_checkpoint
from nflows_tutorial.io.mnist import ImageDataset, load_mnist, make_loader
from nflows_tutorial.io.registry import REGISTRY


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
def test_a_published_result_is_read_and_written_back_as_it_was(name, published_dir):
    result = read_checkpoint(published_dir / REGISTRY[name].filename)["result"]
    stored = Result.from_published(result)
    assert stored.val_bpd == result["val"][0]["test_bpd"]
    assert stored.test_bpd == result["test"][0]["test_bpd"]
    assert stored.inference_ms == pytest.approx(1000 * result["time"])
    assert stored.sampling_ms == pytest.approx(1000 * result["samp_time"])
    assert stored.to_published() == result  # seconds per batch, to the last bit
    row = Result().row(name, stored)
    assert [row[stored_key] for _, stored_key, _ in TABLE_COLUMNS] == [
        stored.val_bpd,
        stored.test_bpd,
        stored.inference_ms,
        stored.sampling_ms,
    ]


def test_the_numbers_of_an_empty_result_are_missing():
    assert Result.from_published({}) == Result()
    row = Result().row("tiny", Result.from_published({}))
    assert {row[key] for key, _, _ in TABLE_COLUMNS} | {row[stored_key] for _, stored_key, _ in TABLE_COLUMNS} == {None}
    assert Result().to_published() == {}


def test_the_published_format_keeps_its_keys_order_and_seconds():
    result = Result(val_bpd=1.08, test_bpd=1.07, inference_s=0.0196, sampling_s=0.0177, params=5, device="cpu")
    published = result.to_published()
    assert list(published) == ["val", "test", "time", "samp_time"]
    assert published == {"val": [{"test_bpd": 1.08}], "test": [{"test_bpd": 1.07}], "time": 0.0196, "samp_time": 0.0177}
    untimed = Result(val_bpd=1.08, test_bpd=1.07)
    assert untimed.to_published() == {"val": [{"test_bpd": 1.08}], "test": [{"test_bpd": 1.07}]}


def test_a_trained_runs_result_makes_the_table_row_the_train_command_printed():
    # A train_flow result: the published entries, then what the run adds.
    result = {"val": [{"test_bpd": 1.25}], "test": [{"test_bpd": 1.2}], "time": 0.0196, "samp_time": 0.0177}
    result.update(global_step=30, epochs=10, processes=1, params=556312, importance_samples=8, images=None)
    by_hand = {
        "model": "simple",
        "val_bpd": 1.25,
        "test_bpd": 1.2,
        "inference_ms": 1000.0 * 0.0196,
        "sampling_ms": 1000.0 * 0.0177,
        "params": 556312,
    }
    row = Result.from_published(result).row("simple")
    assert {key: row[key] for key in by_hand} == by_hand
    assert results_table([row]) == results_table([by_hand])


def test_final_test_and_results_row_measure_alike(mnist_root):
    model = ImageFlow([Dequantization()], image_shape=(1, 28, 28))
    val_set, test_set = load_mnist("val"), load_mnist("test")
    measured = final_test(model, val_set, limit=70, importance_samples=2, seed=5, timing_repeats=0, progress=False)
    row = results_row(
        "deq", model, {"val": val_set, "test": test_set}, limit=70, importance_samples=2, seed=5, repeats=None
    )
    assert measured.to_published() == {"val": [{"test_bpd": row["val_bpd"]}], "test": [{"test_bpd": row["test_bpd"]}]}
    assert measured.row("deq") == row, "results_row is the measured row beside no stored numbers"
    assert measured.images == {"val": 70, "test": 70} and measured.params == 0 and measured.importance_samples == 2
    timed = final_test(model, val_set, limit=64, importance_samples=1, seed=5, timing_repeats=1, progress=False)
    assert list(timed.to_published()) == ["val", "test", "time", "samp_time"]
    assert timed.inference_s > 0 and timed.sampling_s > 0


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


def test_a_stored_result_says_what_it_was_measured_on():
    course = Result.from_published({"val": [{"test_bpd": 1.08}], "test": [{"test_bpd": 1.07}], "time": 0.02})
    assert course.images == {"val": 10_000, "test": 10_000}
    assert course.importance_samples == 8 and course.device == "cuda"  # the course's checkpoints: a GPU
    run = {"test": [{"test_bpd": 1.2}], "time": 0.5, "global_step": 30, "importance_samples": 2, "images": 256}
    mine = Result.from_published(run)
    assert mine.images == {"test": 256} and mine.importance_samples == 2 and mine.device is None
    assert Result.from_published({**run, "images": None, "device": "cuda:1"}).images == {"test": 10_000}
    assert Result.from_published({**run, "device": "cuda:1"}).device == "cuda:1"
    row = Result().row("mine", mine)
    assert (row["stored_images"], row["stored_importance_samples"], row["stored_device"]) == ({"test": 256}, 2, None)


def test_results_notes_say_what_the_numbers_were_measured_on():
    course = Result.from_published({"val": [{"test_bpd": 1.08}], "test": [{"test_bpd": 1.07}], "time": 0.02})
    live = Result(val_bpd=1.03, test_bpd=1.04, inference_s=0.48, images={"val": 256, "test": 256}, device="cpu")
    live = Result(**{**live.__dict__, "importance_samples": 1})
    row = live.row("simple", course)
    assert results_notes([row]) == [
        "Bits per dimension measured here: on the first 256 images of each split, 1 importance sample each.",
        "Bits per dimension stored: on all 10,000 images of each split, 8 importance samples each.",
        "Milliseconds measured here: on this machine's CPU (cpu).",
        "Milliseconds stored: on a GPU (cuda), where the checkpoint was trained.",
    ]
    mine = live.row("mine", Result.from_published({"test": [{"test_bpd": 1.2}], "time": 0.5, "global_step": 3}))
    assert results_notes([row, mine])[1:] == [
        "Bits per dimension stored: simple on all 10,000 images of each split, 8 importance samples each; "
        "mine on all 10,000 images of the test split.",
        "Milliseconds measured here: on this machine's CPU (cpu).",
        "Milliseconds stored: simple on a GPU (cuda), where the checkpoint was trained; "
        "mine where the checkpoint was trained (its device is not recorded).",
    ]
    assert results_notes([Result().row("empty")]) == []


def test_notes_follow_the_table_after_an_empty_line_and_only_when_given():
    row = {"model": "simple", "val_bpd": 1.0, "test_bpd": 1.0, "params": 1}
    plain = results_table([row])
    assert results_table([row], notes=[]) == plain
    assert results_table([row], notes=["one.", "two."]) == plain + "\n\none.\ntwo."
