"""Training: resumable data order, early refusals, and real runs that are killed, go wrong, or use two processes."""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from nflows_tutorial import GatedConvNet
from nflows_tutorial.acceleration import is_accelerated
from nflows_tutorial.io.checkpoint_files import read_checkpoint
from nflows_tutorial.io.checkpoints import load_pretrained
from nflows_tutorial.io.mnist import ImageDataset
from nflows_tutorial.training import TrainerSettings, TrainingError, UnwritableOutputError, make_trainer, train_flow
from nflows_tutorial.training.callbacks import ResumableBatches
from nflows_tutorial.training.logs import read_scalars
from nflows_tutorial.training.run_folder import check_writable, run_paths

from support.cli import run_cli, start_cli
from support.helpers import modules_of

# A training run a 2-core machine finishes in about a minute: 3 steps of 8 images per epoch. TINY_TRAIN skips
# torch.compile, which every fresh process would wait for; one test keeps the compiled route, the command's default.
STEPS_PER_EPOCH = 3
TINY_TRAIN_COMPILED = [
    "train",
    "--model",
    "simple",
    "--limit",
    str(8 * STEPS_PER_EPOCH),
    "--batch-size",
    "8",
    "--importance-samples",
    "1",
    "--no-timing",
    "--accelerator",
    "cpu",
    "--quiet",
]
TINY_TRAIN = [*TINY_TRAIN_COMPILED, "--no-compile"]


def numbered_images(n: int) -> ImageDataset:
    """Images whose first pixel is their index, so a batch tells which images it holds."""
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return ImageDataset(images, torch.zeros(n, dtype=torch.int64))


def ids(batches) -> list[list[int]]:
    return [batch[0][:, 0, 0, 0].tolist() for batch in batches]


def following(batches: ResumableBatches, epoch: int = 0, rank: int = 0, world_size: int = 1) -> ResumableBatches:
    batches.follow(SimpleNamespace(current_epoch=epoch, global_rank=rank, world_size=world_size))
    return batches


# The data order ----------------------------------------------------------------------------------------------------
def test_batch_order_depends_only_on_seed_and_epoch():
    data = numbered_images(40)
    first = ids(following(ResumableBatches(data, 8, seed=1), epoch=0))
    assert first == ids(following(ResumableBatches(data, 8, seed=1), epoch=0))
    assert first != ids(following(ResumableBatches(data, 8, seed=1), epoch=1))
    assert first != ids(following(ResumableBatches(data, 8, seed=2), epoch=0))
    assert sorted(i for batch in first for i in batch) == list(range(40))  # a permutation, every batch full


def test_processes_share_out_disjoint_full_batches():
    data = numbered_images(42)
    shards = [ids(following(ResumableBatches(data, 5, seed=0), rank=r, world_size=2)) for r in range(2)]
    assert [len(s) for s in shards] == [4, 4]  # 21 images each, 4 full batches of 5
    seen = [i for shard in shards for batch in shard for i in batch]
    assert all(len(batch) == 5 for shard in shards for batch in shard)
    assert len(seen) == len(set(seen)) == 40


def test_a_restored_state_continues_after_the_batches_already_trained_on():
    data = numbered_images(40)
    whole = ids(following(ResumableBatches(data, 8, seed=3), epoch=2))
    resumed = following(ResumableBatches(data, 8, seed=3), epoch=2)
    resumed.load_state_dict({"epoch": 2, "consumed": 3})
    assert ids(resumed) == whole[3:]
    assert ids(resumed) == whole  # only the first iteration after a restore skips ahead


# Refusals before any training ---------------------------------------------------------------------------------------
def test_an_unwritable_output_folder_is_reported_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(TrainingError, match="cannot write training output"):
        train_flow("simple", out_dir=blocker / "runs", progress=False)


def test_a_full_disk_is_reported_before_training(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(TrainingError, match=r"MiB free .* needs about"):
        check_writable(tmp_path / "runs", need_bytes=free + 2**40)


def test_the_writability_probe_names_what_was_to_be_written_and_the_callers_setting(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(UnwritableOutputError) as caught:
        check_writable(blocker / "pictures", what="samples.png", setting="out")
    assert str(caught.value).startswith(f"cannot write samples.png to {blocker / 'pictures'} (")
    assert str(caught.value).endswith("choose a writable folder with out=...")
    assert caught.value.spelled(lambda name, value: "--" + name).endswith("choose a writable folder with --out")
    check_writable(tmp_path / "new" / "folder")  # created, written to, and left empty
    assert list((tmp_path / "new" / "folder").iterdir()) == []


def test_resume_needs_a_last_checkpoint_and_a_new_run_will_not_overwrite_one(tmp_path):
    with pytest.raises(TrainingError, match="nothing to resume"):
        train_flow("simple", out_dir=tmp_path, resume=True, progress=False)
    paths = run_paths("simple", tmp_path)
    paths["checkpoints"].mkdir(parents=True, exist_ok=True)
    paths["last"].write_bytes(b"from an earlier run")
    with pytest.raises(TrainingError, match=r"resume=True.*overwrite=True"):
        train_flow("simple", out_dir=tmp_path, progress=False)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match=r"batch_size=8 asks for more images per step than limit=4 leaves"):
        train_flow("simple", limit=4, batch_size=8)
    with pytest.raises(ValueError, match="max_steps must be positive"):
        train_flow("simple", max_steps=0)
    with pytest.raises(ValueError, match="num_nodes must be positive, got 0"):
        TrainerSettings(num_nodes=0)


def test_trainer_settings_reach_lightning_as_they_are(tmp_path):
    settings = TrainerSettings(accelerator="cpu", devices=1, precision="64-true")
    trainer, best = make_trainer(
        run_paths("simple", tmp_path),
        ResumableBatches(numbered_images(16), 8, seed=0),
        epochs=3,
        settings=settings,
        progress=False,
    )
    assert trainer.precision == "64-true" and trainer.num_devices == 1 and trainer.max_epochs == 3
    assert type(trainer.accelerator).__name__ == "CPUAccelerator" and best.monitor == "val_bpd"
    assert isinstance(trainer.logger, CSVLogger), "CSV logs always, whatever else is installed"


# Real runs -----------------------------------------------------------------------------------------------------------
def kill_mid_epoch(proc, last: Path, log: Path, timeout: float = 900.0) -> dict:
    """SIGKILL the training process at a moment when ``last`` holds a mid-epoch checkpoint; return it.

    The process is frozen (SIGSTOP) while the file is read, so it cannot write a newer one between
    the check and the kill.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training ended (code {proc.returncode}) before it could be killed:\n{log.read_text()}")
        if last.is_file():
            proc.send_signal(signal.SIGSTOP)
            ckpt = torch.load(last, map_location="cpu", weights_only=True)
            if ckpt["global_step"] % STEPS_PER_EPOCH:
                proc.kill()
                proc.wait()
                return ckpt
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no mid-epoch checkpoint at {last} after {timeout} s")


def optimizer_step(ckpt: dict) -> int:
    return int(ckpt["optimizer_states"][0]["state"][0]["step"])


@pytest.mark.subprocess
def test_a_killed_run_resumes_at_the_same_step_and_ends_where_an_unbroken_run_does(tmp_path, mnist_root):
    killed_dir, whole_dir = tmp_path / "killed", tmp_path / "whole"
    # Far more steps than the test waits for, a last.ckpt after every step, then SIGKILL mid-epoch.
    log = tmp_path / "killed.log"
    proc = start_cli(*TINY_TRAIN, "--epochs", "100", "--checkpoint-every", "1", "--out-dir", str(killed_dir), log=log)
    last = run_paths("simple", killed_dir)["last"]
    at_kill = kill_mid_epoch(proc, last, log)
    step = at_kill["global_step"]
    epoch, consumed = divmod(step, STEPS_PER_EPOCH)
    assert optimizer_step(at_kill) == step
    assert at_kill["lr_schedulers"][0]["last_epoch"] == epoch
    assert at_kill["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": epoch, "consumed": consumed}]

    target = step + STEPS_PER_EPOCH + 1  # across the next epoch boundary
    resumed = run_cli(
        *TINY_TRAIN, "--epochs", "100", "--resume", "--max-steps", str(target), "--out-dir", str(killed_dir)
    )
    assert resumed.returncode == 0, resumed.stderr
    unbroken = run_cli(*TINY_TRAIN, "--epochs", "100", "--max-steps", str(target), "--out-dir", str(whole_dir))
    assert unbroken.returncode == 0, unbroken.stderr

    assert list(last.parent.glob("best-*.ckpt"))  # validation ran after the epoch boundary
    after = torch.load(last, map_location="cpu", weights_only=True)
    reference = torch.load(run_paths("simple", whole_dir)["last"], map_location="cpu", weights_only=True)
    assert after["global_step"] == reference["global_step"] == target
    assert optimizer_step(after) == optimizer_step(reference) == target
    assert after["lr_schedulers"] == reference["lr_schedulers"]
    # Same batches, same noise, same optimizer moments: the weights match the unbroken run.
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(after["state_dict"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    for key, value in reference["optimizer_states"][0]["state"][0].items():
        torch.testing.assert_close(after["optimizer_states"][0]["state"][0][key], value, rtol=1e-4, atol=1e-8)


@pytest.mark.subprocess
def test_a_nan_loss_stops_training_and_says_at_which_step_and_what_to_try(tmp_path, mnist_root):
    # A learning rate of 1e30 sends the weights past float32 range in one step: a real divergence.
    result = run_cli(*TINY_TRAIN, "--lr", "1e30", "--out-dir", str(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    message = next(line for line in result.stderr.splitlines() if line.startswith("training stopped"))
    assert re.search(r"loss became (nan|inf|-inf) at step \d+", message)
    assert "--lr" in message
    assert not run_paths("simple", tmp_path)["published"].exists()


def test_a_run_on_the_cpu_trains_on_the_kernels_and_returns_an_accelerated_model(tmp_path, mnist_root, monkeypatch):
    on_kernels = []

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            on_kernels.append(all(is_accelerated(net) for net in modules_of(pl_module, GatedConvNet)))

    def make_trainer_with_probe(*args, **kwargs):
        trainer, best = make_trainer(*args, **kwargs)
        trainer.callbacks.append(Probe())
        return trainer, best

    monkeypatch.setattr("nflows_tutorial.training.run.make_trainer", make_trainer_with_probe)
    model, result = train_flow(
        "simple",
        settings=TrainerSettings(accelerator="cpu"),
        limit=16,
        batch_size=8,
        max_steps=2,
        importance_samples=1,
        timing_repeats=0,
        checkpoint_every=None,
        compiled=False,
        progress=False,
        out_dir=tmp_path,
    )
    assert on_kernels == [True, True] and result["global_step"] == 2
    assert all(is_accelerated(net) for net in modules_of(model, GatedConvNet))


@pytest.mark.subprocess
def test_two_processes_train_with_lightning_ddp_on_cpu_and_publish_a_loadable_checkpoint(tmp_path, mnist_root):
    # The one tiny run on the compiled route, the command's default: training and final test on compiled kernels.
    result = run_cli(
        *TINY_TRAIN_COMPILED,
        *("--devices", "2", "--strategy", "ddp", "--max-steps", "2", "--json", "--out-dir", str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["processes"] == 2 and summary["global_step"] == 2
    model, stored = load_pretrained("simple", checkpoint_dir=tmp_path, download=False, device="cpu")
    assert stored["test"] == summary["test"] and stored["val"] == summary["val"]
    assert not model.training
    paths = run_paths("simple", tmp_path)
    assert read_checkpoint(paths["last"])["global_step"] == 2
    logs = paths["run"] / "logs"
    assert list(logs.rglob("metrics.csv")) and not list(logs.rglob("events.out.tfevents*"))
    assert len(read_scalars(paths["run"])["val_bpd"]) == 2  # one batch per process and epoch: two epochs


def test_quiet_lightning_drops_the_advertising_tip_and_the_pytree_deprecation_only(caplog):
    import logging
    import warnings

    from pytorch_lightning.utilities.rank_zero import rank_zero_info

    from nflows_tutorial.training.run import quiet_lightning

    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_lightning():
            rank_zero_info("💡 Tip: try installing [litlogger](https://pypi.org/project/litlogger/)")
            rank_zero_info("GPU available: False, used: False")
            warnings.warn(
                "`isinstance(treespec, LeafSpec)` is deprecated, use something else", FutureWarning, stacklevel=2
            )
            warnings.warn("the run is slow", UserWarning, stacklevel=2)
    messages = [record.getMessage() for record in caplog.records]
    assert not any("litlogger" in m for m in messages)
    assert "GPU available: False, used: False" in messages
    assert [str(w.message) for w in caught] == ["the run is slow"]
    caplog.clear()
    rank_zero_info("💡 Tip: litlogger")  # outside the block nothing is filtered
    assert any("litlogger" in record.getMessage() for record in caplog.records)
