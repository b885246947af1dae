"""The command line, run as a user runs it, on settings small enough for CI: every sub-command and its errors."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from nflows_tutorial import cli
from nflows_tutorial.cli.options import devices, duration
from nflows_tutorial.io.checkpoint_files import read_checkpoint
from nflows_tutorial.io.checkpoints import load_pretrained
from nflows_tutorial.io.registry import REGISTRY

from support.cli import run_cli

# Small enough for a shared 2-core machine: 8 images, one dequantization draw each, no speed runs.
TINY_EVAL = ["--limit", "8", "--batch-size", "8", "--importance-samples", "1", "--no-timing", "--quiet"]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# Bad requests: one line, exit code 2, no traceback ------------------------------------------------------------
@pytest.mark.subprocess
def test_help_lists_every_job():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("evaluate", "train", "sample", "interpolate", "download", "exercises", "slides", "bench", "site"):
        assert command in result.stdout


def test_an_unknown_model_is_one_line_and_exit_code_2():
    result = run_cli("evaluate", "--model", "glow")
    assert result.returncode == cli.USAGE_ERROR
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert "'glow'" in line and "simple" in line


@pytest.mark.parametrize(
    "argv, words",
    [
        (["evaluate", "--limit", "-5"], "positive"),
        (["evaluate", "--importance-samples", "0"], "positive"),
        (["train", "--model", "simple", "--epochs", "-1"], "positive"),
        (["train", "--model", "simple", "--devices", "-2"], "positive"),
        (["train", "--model", "simple", "--max-time", "soon"], "duration"),
        (["train", "--model", "simple", "--lr", "0"], "positive"),
        (["train"], "--model"),
        (["sample", "--model", "simple", "-n", "0", "--out", "x.png"], "positive"),
        (["sample", "--model", "simple", "--out", "grid.jpg"], ".png"),
        (["interpolate", "--model", "simple", "--steps", "1", "--out", "x.png"], "--steps"),
        (["interpolate", "--model", "simple", "--first", "-1", "--out", "x.png"], "--first"),
        (["download", "flowpp"], "'flowpp'"),
        (["download"], "--all"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_code_2(argv, words, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as stop:
        code = stop.code
    assert code == cli.USAGE_ERROR
    (line,) = error_lines(capsys.readouterr().err)
    assert words in line


def test_missing_data_offline_is_one_line_and_exit_code_1(tmp_path, published_dir, capsys, monkeypatch):
    monkeypatch.setenv("PATH_DATASETS", str(tmp_path))
    code = cli.main(["evaluate", "--model", "simple", "--offline", "--checkpoint-dir", str(published_dir), *TINY_EVAL])
    assert code == 1  # the machine's state, not a bad request
    (line,) = error_lines(capsys.readouterr().err)
    assert "MNIST" in line and str(tmp_path) in line


def test_a_gpu_asked_for_on_a_machine_without_one_is_a_usage_error(published_dir, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU, so asking for one is not an error here")
    code = cli.main(
        [
            "sample",
            "--model",
            "simple",
            "--device",
            "cuda",
            "--offline",
            "--checkpoint-dir",
            str(published_dir),
            "--out",
            "never.png",
        ]
    )
    assert code == cli.USAGE_ERROR
    assert "--device cpu" in capsys.readouterr().err


def test_options_lightning_rejects_are_one_line_and_exit_code_2(tmp_path, mnist_root, capsys):
    code = cli.main(["train", "--model", "simple", "--precision", "fp7", "--out-dir", str(tmp_path), "--quiet"])
    assert code == cli.USAGE_ERROR
    (line,) = error_lines(capsys.readouterr().err)
    assert "'fp7'" in line and "bf16-mixed" in line


def test_argument_types():
    from datetime import timedelta

    assert duration("90") == duration("90s") == duration("1:30") == timedelta(seconds=90)
    assert duration("2h") == duration("00:02:00:00") == timedelta(hours=2)
    assert devices("auto") == "auto" and devices("2") == 2 and devices("0,1") == [0, 1]


# evaluate --------------------------------------------------------------------------------------------------------
def test_evaluate_json_scores_the_published_models_and_skips_one_it_cannot_get(published_dir, mnist_root, capsys):
    code = cli.main(
        [
            "evaluate",
            "--model",
            "simple",
            "vardeq",
            "multiscale",
            "--offline",
            "--checkpoint-dir",
            str(published_dir),
            "--json",
            "--allow-partial",
            *TINY_EVAL,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    rows = json.loads(captured.out)
    assert [row["model"] for row in rows] == ["simple", "vardeq"]
    (skipped,) = error_lines(captured.err)
    assert skipped.startswith("multiscale: skipped")
    for row in rows:
        stored = read_checkpoint(published_dir / REGISTRY[row["model"]].filename)["result"]
        assert row["stored_val_bpd"] == pytest.approx(stored["val"][0]["test_bpd"])
        assert row["stored_test_bpd"] == pytest.approx(stored["test"][0]["test_bpd"])
        assert row["stored_inference_ms"] == pytest.approx(1000 * stored["time"])
        assert row["params"] == sum(
            p.numel()
            for p in load_pretrained(row["model"], checkpoint_dir=published_dir, download=False, device="cpu")[
                0
            ].parameters()
        )
        assert row["images"] == {"val": 8, "test": 8} and row["importance_samples"] == 1
        assert row["inference_ms"] is None and row["sampling_ms"] is None
        # Eight images are a noisy sample, but a trained model is near its published score (an
        # untrained one is above 3 bpd).
        for split in ("val", "test"):
            assert abs(row[f"{split}_bpd"] - row[f"stored_{split}_bpd"]) < 0.2
    # Variational dequantization is the better model on the same images, as published.
    assert rows[1]["val_bpd"] < rows[0]["val_bpd"]


def test_evaluate_prints_the_table_with_speeds_beside_the_stored_numbers(published_dir, mnist_root, capsys):
    code = cli.main(
        [
            "evaluate",
            "--model",
            "simple",
            "--split",
            "test",
            "--limit",
            "8",
            "--batch-size",
            "8",
            "--importance-samples",
            "1",
            "--repeats",
            "1",
            "--quiet",
            "--offline",
            "--checkpoint-dir",
            str(published_dir),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    header, _rule, row, *_notes = out.strip().splitlines()
    assert "Inference ms / 64" in header and "Sampling ms / 64" in header and "Parameters" in header
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    model, stored = load_pretrained("simple", checkpoint_dir=published_dir, download=False, device="cpu")
    assert cells[0] == "simple"
    assert cells[1] == "-"  # validation was not asked for; its stored value is still shown
    assert cells[2] == f"{stored['val'][0]['test_bpd']:.4f}" and cells[4] == f"{stored['test'][0]['test_bpd']:.4f}"
    assert cells[6] == f"{1000 * stored['time']:.0f}" and cells[8] == f"{1000 * stored['samp_time']:.0f}"
    assert float(cells[5]) > 0 and float(cells[7]) > 0  # measured here: positive times
    assert cells[-1] == f"{sum(p.numel() for p in model.parameters()):,}"


def test_evaluate_fails_only_when_no_model_could_be_evaluated(tmp_path, mnist_root, capsys):
    code = cli.main(["evaluate", "--model", "simple", "--offline", "--checkpoint-dir", str(tmp_path), *TINY_EVAL])
    err = capsys.readouterr().err
    assert code == 1
    assert "simple: skipped" in err and "no model could be evaluated" in err


# sample, interpolate ----------------------------------------------------------------------------------------------
def test_sample_writes_a_repeatable_png_grid(tmp_path, published_dir):
    common = ["sample", "--model", "simple", "-n", "4", "--offline", "--checkpoint-dir", str(published_dir), "--quiet"]
    paths = [tmp_path / name for name in ("a.png", "b.png", "c.png")]
    for path, seed in zip(paths, ("3", "3", "4")):
        assert cli.main([*common, "--seed", seed, "--out", str(path)]) == 0
    a, b, c = (Image.open(path) for path in paths)
    assert a.mode == "L" and a.size == (4 * 30 + 2, 30 + 2)
    assert a.tobytes() == b.tobytes() != c.tobytes()
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_interpolate_writes_one_row_per_pair(tmp_path, published_dir, mnist_root):
    out = tmp_path / "lerp.png"
    code = cli.main(
        [
            "interpolate",
            "--model",
            "vardeq",
            "--pairs",
            "2",
            "--steps",
            "5",
            "--offline",
            "--checkpoint-dir",
            str(published_dir),
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert Image.open(out).size == (5 * 30 + 2, 2 * 30 + 2)


# download ---------------------------------------------------------------------------------------------------------
def test_download_fetches_named_checkpoints_and_reports_the_rest(tmp_path, published_dir, capsys, monkeypatch):
    monkeypatch.setenv("NFLOWS_TUTORIAL_CHECKPOINT_URL", published_dir.as_uri() + "/")  # a folder as a mirror
    code = cli.main(["download", "simple", "vardeq", "--checkpoint-dir", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    for name in ("simple", "vardeq"):
        assert (tmp_path / REGISTRY[name].filename).read_bytes() == (
            published_dir / REGISTRY[name].filename
        ).read_bytes()
        assert f"{name}: {tmp_path / REGISTRY[name].filename}" in out

    code = cli.main(["download", "--all", "--checkpoint-dir", str(tmp_path), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1  # the multi-scale file is not on this mirror
    assert "simple:" in captured.out and "vardeq:" in captured.out
    assert captured.err.startswith("multiscale: failed")
