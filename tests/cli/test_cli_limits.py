"""What the command line refuses before it starts (sizes no machine serves), and what evaluate owns up to:
the models it skipped, and what its numbers were measured on."""

from __future__ import annotations

import json

import pytest

from nflows_tutorial import cli

HUGE = str(2**40)  # 1099511627776: an allocation no machine makes, or a run with no end in sight


def outcome(argv: list[str], capsys) -> tuple[int, str, list[str]]:
    """Run the command line in this process: the exit code, standard output, and the non-empty lines on stderr."""
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


# Sizes refused while the arguments are read ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, words",
    [
        (["sample", "-n", "99999999999999999999"], "argument -n: expected a positive number of images, at most 4,096"),
        (["sample", "-n", HUGE], "argument -n: expected a positive number of images, at most 4,096"),
        (["interpolate", "--steps", HUGE], "argument --steps: expected a number of steps, at most 4,096"),
        (["evaluate", "--importance-samples", HUGE, "--quiet"], "at most 256 (the time grows with each"),
    ],
)
def test_sizes_no_machine_serves_are_one_line_saying_the_limit_and_why(argv, words, capsys, tmp_path):
    command, *options = argv
    model = [] if command == "evaluate" else ["--model", "simple", "--out", str(tmp_path / "grid.png")]
    argv = [command, *model, *options, "--offline", "--checkpoint-dir", str(tmp_path)]
    code, out, lines = outcome(argv, capsys)
    assert code == cli.USAGE_ERROR and out == ""
    (line,) = lines
    assert words in line and f"got '{options[1]}'" in line
    assert "memory" in line or "hours" in line  # why: what it would cost
    assert not (tmp_path / "grid.png").exists()


def test_the_limits_themselves_are_accepted():
    from nflows_tutorial.cli.options import MAX_IMAGES, MAX_IMPORTANCE_SAMPLES, image_count, importance_samples

    assert image_count(str(MAX_IMAGES)) == MAX_IMAGES
    assert importance_samples(str(MAX_IMPORTANCE_SAMPLES)) == MAX_IMPORTANCE_SAMPLES


def test_an_interpolation_grid_over_the_limit_is_refused_before_anything_is_read(capsys, tmp_path):
    argv = ["interpolate", "--model", "simple", "--pairs", "600", "--steps", "8", "--out", str(tmp_path / "a.png")]
    code, _, lines = outcome([*argv, "--offline", "--checkpoint-dir", str(tmp_path)], capsys)
    assert code == cli.USAGE_ERROR
    (line,) = lines
    assert "--pairs 600 with --steps 8 make 4,800 images; a grid holds at most 4,096" in line


# evaluate: a skipped model, and what the numbers are ---------------------------------------------------------------
TINY = ["--split", "test", "--limit", "8", "--batch-size", "8", "--importance-samples", "1", "--quiet", "--offline"]


def test_a_skipped_model_fails_the_run_unless_partial_results_are_allowed(published_dir, mnist_root, capsys):
    argv = ["evaluate", "--model", "multiscale", "simple", "--checkpoint-dir", str(published_dir), *TINY, "--no-timing"]
    code, out, lines = outcome(argv, capsys)
    assert code == cli.FAILED
    assert "| simple " in out and "multiscale" not in out  # the others' table still prints
    skipped, verdict = lines
    assert skipped.startswith("multiscale: skipped")
    assert verdict.startswith("multiscale skipped, so the table lacks 1 of the 2 models asked for")
    assert verdict.endswith("--allow-partial accepts a partial table")

    code, partial, lines = outcome([*argv, "--allow-partial"], capsys)
    assert code == 0 and partial == out
    assert [line.split(",")[0] for line in lines] == ["multiscale: skipped"]


def test_the_table_says_what_each_number_was_measured_on(published_dir, mnist_root, capsys, monkeypatch):
    from nflows_tutorial.analysis import results

    # The timing itself is tested elsewhere; here only where it was taken matters.
    monkeypatch.setattr(results, "time_likelihood", lambda model, repeats: 0.481)
    monkeypatch.setattr(results, "time_sampling", lambda model, repeats: 0.5)
    argv = ["evaluate", "--model", "simple", "--checkpoint-dir", str(published_dir), "--device", "cpu", *TINY]
    code, out, _ = outcome(argv, capsys)
    assert code == 0
    table, notes = out.strip().split("\n\n")
    assert len(table.splitlines()) == 3  # header, rule, simple: the notes are no rows
    assert notes.splitlines() == [
        "Bits per dimension measured here: on the first 8 test images, 1 importance sample each.",
        "Bits per dimension stored: on all 10,000 images of each split, 8 importance samples each.",
        "Milliseconds measured here: on this machine's CPU (cpu).",
        "Milliseconds stored: on a GPU (cuda), where the checkpoint was trained.",
    ]

    code, out, _ = outcome([*argv, "--json"], capsys)
    (row,) = json.loads(out)
    assert code == 0
    assert row["images"] == {"test": 8} and row["importance_samples"] == 1 and row["device"] == "cpu"
    assert row["stored_images"] == {"val": 10_000, "test": 10_000}
    assert row["stored_importance_samples"] == 8 and row["stored_device"] == "cuda"
