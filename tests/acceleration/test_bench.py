"""The benchmark runs end to end on tiny settings and reports what it measured (it never asserts a speed)."""

import json
import math
import subprocess
import sys

import pytest

from nflows_tutorial.acceleration.bench import format_table

pytestmark = pytest.mark.subprocess

NUMBERS = (
    "train_images_per_s",
    "train_peak_bytes",
    "train_convolution_s",
    "likelihood_s",
    "likelihood_convolution_s",
    "sampling_s",
    "likelihood_gflop",
)
COLUMNS = (
    "model",
    "train images/s (batch 8)",
    "of which convolutions, s",
    "peak GiB, train step",
    "likelihood s / 4",
    "of which convolutions, s",
    "sampling s / 4",
    "likelihood GFLOP/s",
)


def test_bench_tiny_reports_both_paths_of_each_model_with_measured_numbers(mnist_root):
    done = subprocess.run(
        [sys.executable, "-m", "nflows_tutorial", "bench", "--model", "simple", "--tiny", "--json", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [row["model"] for row in report["rows"]] == ["simple"]
    for row in report["rows"]:
        assert set(row) == {"model", "plain", "accelerated"}
        for path in ("plain", "accelerated"):
            numbers = row[path]
            assert numbers["model"] == row["model"] and numbers["path"] == path and numbers["train_batch"] == 8
            for key in NUMBERS:
                assert math.isfinite(numbers[key]) and numbers[key] > 0, f"{row['model']} {path} {key}: {numbers[key]}"
    machine = report["machine"]
    assert machine["threads"] == 1 and machine["sizes"] == {"train_batch": 8, "eval_batch": 4, "repeats": 1}
    for key in ("matmul_gflops", "loader_images_per_s"):
        assert math.isfinite(machine[key]) and machine[key] > 0

    header, rule, *body, footer = format_table(report["rows"], machine).splitlines()
    assert [cell.strip() for cell in header.strip("|").split("|")] == list(COLUMNS)
    assert set(rule) <= set("|-: ")
    assert [line.strip("|").split("|")[0].strip() for line in body] == ["simple"]
    (row,) = report["rows"]
    cells = [cell.strip() for cell in body[0].strip("|").split("|")]
    plain, accelerated = row["plain"]["train_images_per_s"], row["accelerated"]["train_images_per_s"]
    assert cells[1] == f"{plain:.0f} -> {accelerated:.0f} ({accelerated / plain:.2f}x)"
    assert cells[3].endswith("x the memory)")
    assert footer.startswith("plain -> accelerated (speed-up); convolution seconds are the accelerated path's;")
    assert "1 threads" in footer and "data loader" in footer and "images/s" in footer


def test_bench_rejects_an_unknown_model():
    done = subprocess.run(
        [sys.executable, "-m", "nflows_tutorial", "bench", "--model", "glow"], capture_output=True, text=True
    )
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "'glow'" in line and "simple" in line
