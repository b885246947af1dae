"""Downloads over a real loopback server: retried, timed out, capped, verified, and atomic, as a user meets them."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nflows_tutorial.environment import URL_VARIABLE
from nflows_tutorial.io import download
from nflows_tutorial.io.checkpoint_files import CheckpointError
from nflows_tutorial.io.checkpoints import download_checkpoints, fetch_checkpoint, load_pretrained
from nflows_tutorial.io.registry import REGISTRY

pytestmark = pytest.mark.usefixtures("short_timeouts")

SIMPLE = REGISTRY["simple"].filename
VARDEQ = REGISTRY["vardeq"].filename
MULTISCALE = REGISTRY["multiscale"].filename
ROOT = Path(__file__).resolve().parents[2]


# --- where the file goes ---------------------------------------------------------------------


def test_a_folder_that_cannot_be_created_is_named(server, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should go")
    with pytest.raises(CheckpointError, match=f"cannot create the folder {blocker / 'tutorial11'}"):
        fetch_checkpoint("simple", checkpoint_dir=blocker / "tutorial11", progress=False)
    assert server.requests == []


def test_a_missing_file_on_a_file_url_mirror_is_not_retried(monkeypatch, tmp_path, cache, files_in):
    monkeypatch.setenv(URL_VARIABLE, tmp_path.as_uri())
    with pytest.raises(CheckpointError, match="no such file") as err:
        fetch_checkpoint("vardeq", progress=False)
    assert "gave up" not in str(err.value)
    assert files_in(cache) == []


# --- a server that fails ---------------------------------------------------------------------


def test_a_connection_closed_mid_body_is_retried_then_reported(server, cache, published_dir, files_in):
    server.add(SIMPLE, published_dir / SIMPLE, fault="close")
    closed = r"closed after 1,160,896 of 2,321,793 bytes \(gave up after 2 attempts\)"
    with pytest.raises(CheckpointError, match=closed):
        fetch_checkpoint("simple", progress=False)
    assert server.requests == [SIMPLE, SIMPLE]
    assert files_in(cache) == []


def test_a_half_broken_connection_recovers_on_retry(server, cache, published_dir, capsys, files_in):
    server.add(SIMPLE, published_dir / SIMPLE, fault="close", times=1)
    server.add(VARDEQ, published_dir / VARDEQ, fault="503", times=1)
    download_checkpoints(["simple", "vardeq"])
    assert server.requests == [SIMPLE, SIMPLE, VARDEQ, VARDEQ]
    assert files_in(cache) == [SIMPLE, VARDEQ]
    shown = capsys.readouterr().err
    assert "Attempt 1 of 2 failed: the connection closed after 1,160,896 of 2,321,793 bytes; retrying" in shown
    assert "Attempt 1 of 2 failed: the server answered HTTP 503" in shown


def test_wrong_bytes_fail_the_hash_and_are_not_kept(server, cache, published_dir, files_in):
    server.add(SIMPLE, (published_dir / VARDEQ).read_bytes()[: REGISTRY["simple"].size])
    with pytest.raises(CheckpointError, match=f"not the expected file.*expected {REGISTRY['simple'].sha256}"):
        fetch_checkpoint("simple", progress=False)
    assert server.requests == [SIMPLE]  # the same server would send the same wrong bytes
    assert files_in(cache) == []


def test_a_file_of_the_wrong_size_is_refused_before_it_is_read(server, cache, published_dir, files_in):
    server.add(SIMPLE, published_dir / VARDEQ)
    with pytest.raises(CheckpointError, match="offers 2,660,225 bytes, the expected file has 2,321,793"):
        fetch_checkpoint("simple", progress=False)
    assert files_in(cache) == []


@pytest.mark.parametrize("fault", ["stall", "mute"])  # silent mid-body, or silent before any answer
def test_a_server_that_stalls_past_the_read_timeout(server, cache, published_dir, monkeypatch, fault, files_in):
    monkeypatch.setattr(download, "READ_TIMEOUT", 0.3)
    server.add(SIMPLE, published_dir / SIMPLE, fault=fault)
    with pytest.raises(CheckpointError, match=r"sent nothing for 0.3 s \(read timeout\) \(gave up after 2 attempts\)"):
        fetch_checkpoint("simple", progress=False)
    assert server.requests == [SIMPLE, SIMPLE]
    assert files_in(cache) == []


def test_a_trickling_mirror_counts_as_stalled(server, cache, published_dir, monkeypatch, files_in):
    monkeypatch.setattr(download, "STALL_WINDOW", 0.5)  # 10 bytes a second is far under 1 KiB/s
    server.add(SIMPLE, published_dir / SIMPLE, fault="trickle")
    started = time.monotonic()
    with pytest.raises(
        CheckpointError, match=r"the transfer stalled: \d bytes in 1 s, under 1 KiB/s \(gave up after 2"
    ):
        fetch_checkpoint("simple", progress=False)
    assert time.monotonic() - started < 10
    assert files_in(cache) == []


def test_every_download_has_an_overall_deadline(server, tmp_path, monkeypatch, files_in):
    monkeypatch.setattr(download, "DEADLINE_BASE", 1.0)
    monkeypatch.setattr(download, "STALL_WINDOW", 600.0)  # only the deadline can stop this one
    server.add("slow.bin", b"x" * 1000, fault="trickle")
    started = time.monotonic()
    with pytest.raises(download.DownloadError, match=r"the download took longer than 1 s \(attempt 1\)"):
        download.download_file(server.url + "slow.bin", tmp_path / "slow.bin", progress=False)
    assert time.monotonic() - started < 5
    assert files_in(tmp_path) == []


def test_a_body_without_length_stops_at_the_size_cap(server, cache, files_in):
    server.add(MULTISCALE, b"\0" * 2**20, fault="endless")
    cap = REGISTRY["multiscale"].max_size
    with pytest.raises(CheckpointError, match=f"the server sent more than the {cap:,} bytes this file can have"):
        load_pretrained("multiscale", progress=False)
    assert server.requests == [MULTISCALE]
    assert files_in(cache) == []


# --- temporary files and errors --------------------------------------------------------------


@pytest.mark.subprocess
def test_temporary_files_of_ended_processes_are_swept_but_live_ones_kept(server, cache, published_dir, files_in):
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    host = download._HOST
    gone = cache / f".{SIMPLE}.{host}-{ended.stdout.strip()}-0a1b2c3d.part"  # killed a moment ago
    alive = cache / f".{SIMPLE}.{host}-{os.getppid()}-0a1b2c3d.part"  # a running process
    elsewhere = cache / f".{SIMPLE}.otherhost-999-0a1b2c3d.part"  # another machine sharing the folder
    old_elsewhere = cache / f".{SIMPLE}.otherhost-998-0a1b2c3d.part"
    for part in (gone, alive, elsewhere, old_elsewhere):
        part.write_bytes(b"half a download")
    old = time.time() - 2 * download.STALE_PART_AGE
    os.utime(old_elsewhere, (old, old))
    server.add(SIMPLE, published_dir / SIMPLE)
    fetch_checkpoint("simple", progress=False)
    assert files_in(cache) == sorted([SIMPLE, alive.name, elsewhere.name])


def test_an_interrupted_download_leaves_nothing_behind(server, tmp_path, published_dir, files_in):
    server.add(SIMPLE, published_dir / SIMPLE)

    def interrupt(part: Path) -> None:  # as if the student stopped the kernel just before the rename
        assert part.is_file()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download.download_file(server.url + SIMPLE, tmp_path / "cache" / SIMPLE, verify=interrupt, progress=False)
    assert files_in(tmp_path / "cache") == []


def test_download_errors_name_the_url_and_survive_pickling(server, tmp_path):
    url = server.url + "nothing-here"
    with pytest.raises(download.DownloadError) as err:
        download.download_file(url, tmp_path / "x", progress=False)
    assert (err.value.url, err.value.reason) == (url, "the server answered HTTP 404 Not Found")
    assert str(pickle.loads(pickle.dumps(err.value))) == f"downloading {url} failed: {err.value.reason}"
    with pytest.raises(ValueError, match="retries must be 0 or more"):
        download.download_file(server.url + "x", tmp_path / "x", retries=-1)


# --- two processes at once -------------------------------------------------------------------


@pytest.mark.subprocess
def test_two_processes_downloading_at_once_end_with_one_good_file(server, cache, published_dir, files_in):
    server.add(VARDEQ, published_dir / VARDEQ)
    server.gate(2, timeout=120)  # neither answer starts before both requests have arrived
    script = "from nflows_tutorial.io.checkpoints import fetch_checkpoint as f; print(f('vardeq', progress=False))"
    env = {**os.environ, URL_VARIABLE: server.url, "PATH_CHECKPOINT": str(cache)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
        assert out.strip() == str(cache / VARDEQ)
    assert server.max_in_flight == 2
    assert files_in(cache) == [VARDEQ]
    assert download.sha256_of(cache / VARDEQ) == REGISTRY["vardeq"].sha256
