"""The benchmark runs end to end on tiny settings (CI proves it works; it never asserts a time)."""

import json
import subprocess
import sys

from nflows_tutorial.acceleration.bench import format_table


def test_bench_tiny_reports_both_paths_with_measured_memory(mnist_root):
    done = subprocess.run(
        [sys.executable, "-m", "nflows_tutorial", "bench", "--model", "simple", "--tiny", "--json", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (row,) = report["rows"]
    assert row["model"] == "simple"
    for path in ("plain", "fast"):
        numbers = row[path]
        assert numbers["path"] == {"plain": "plain", "fast": "fast"}[path]
        assert numbers["train_images_per_s"] > 0 and numbers["likelihood_s"] > 0 and numbers["sampling_s"] > 0
        assert numbers["train_peak_bytes"] > 0 and numbers["likelihood_gflop"] > 0
        assert numbers["train_convolution_s"] > 0 and numbers["likelihood_convolution_s"] > 0
    assert report["machine"]["matmul_gflops"] > 0 and report["machine"]["loader_images_per_s"] > 0
    table = format_table(report["rows"], report["machine"])
    assert table.splitlines()[2].startswith("| simple") and "the memory" in table


def test_bench_rejects_an_unknown_model():
    done = subprocess.run(
        [sys.executable, "-m", "nflows_tutorial", "bench", "--model", "glow"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "glow" in done.stderr
