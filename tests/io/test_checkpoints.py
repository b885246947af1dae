"""Pretrained checkpoints: downloaded once over a real loopback server, verified, loaded safely, explained offline."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch

from nflows_tutorial.environment import URL_VARIABLE
from nflows_tutorial.flows.builders import MODEL_NAMES, create_model
from nflows_tutorial.io import download
from nflows_tutorial.io.checkpoints import (
    DEFAULT_BASE_URL,
    REGISTRY,
    CheckpointError,
    IncompleteDownloadError,
    OwnCheckpointWarning,
    checkpoint_url,
    download_checkpoints,
    fetch_checkpoint,
    load_pretrained,
    read_checkpoint,
)

from support.helpers import permission_denied
from support.http_fixtures import LoopbackServer

SIMPLE = REGISTRY["simple"].filename
VARDEQ = REGISTRY["vardeq"].filename
MULTISCALE = REGISTRY["multiscale"].filename
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fast_network(monkeypatch):
    """Short timeouts and no back-off pauses, so every failure below is met within seconds;
    loopback requests bypass any proxy the machine is configured with."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(download, "CONNECT_TIMEOUT", 5.0)
    monkeypatch.setattr(download, "READ_TIMEOUT", 5.0)  # the stall tests lower it; a busy CI box needs slack
    monkeypatch.setattr(download, "RETRIES", 1)
    monkeypatch.setattr(download, "BACKOFF", 0.0)


@pytest.fixture
def cache() -> Path:
    """The checkpoint cache the autouse conftest fixture set up for this test."""
    return Path(os.environ["PATH_CHECKPOINT"])


@pytest.fixture
def server(monkeypatch):
    """A loopback server that the package uses as its checkpoint mirror."""
    with LoopbackServer() as srv:
        monkeypatch.setenv(URL_VARIABLE, srv.url)
        yield srv


@pytest.fixture(scope="module")
def multiscale_ckpt(tmp_path_factory) -> Path:
    """A stand-in for the unpublished multi-scale checkpoint: right structure, random weights."""
    path = tmp_path_factory.mktemp("multiscale") / MULTISCALE
    torch.save({"state_dict": create_model("multiscale").state_dict(), "result": {"test_bpd": 1.5}}, path)
    return path


class _RunsCodeOnLoad:
    """Pickles to an instruction that creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "result": _RunsCodeOnLoad(marker)}, path)
    return path


def files_in(folder: Path) -> list[str]:
    """Every entry of the cache folder, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- registry and URLs ---------------------------------------------------------------------------


def test_registry_covers_every_model_and_matches_the_published_files(published_dir, monkeypatch):
    monkeypatch.delenv(URL_VARIABLE)
    assert tuple(REGISTRY) == MODEL_NAMES
    for name, spec in REGISTRY.items():
        assert checkpoint_url(name) == DEFAULT_BASE_URL + spec.filename
    for name in ("simple", "vardeq"):
        spec = REGISTRY[name]
        assert (published_dir / spec.filename).stat().st_size == spec.size
        assert download.sha256_of(published_dir / spec.filename) == spec.sha256
    assert REGISTRY["multiscale"].sha256 is None


def test_mirror_variable_sets_the_base_url(monkeypatch):
    monkeypatch.setenv(URL_VARIABLE, "https://course.example.org/ckpt")
    assert checkpoint_url("vardeq") == "https://course.example.org/ckpt/" + VARDEQ
    monkeypatch.setenv(URL_VARIABLE, "course.example.org/ckpt")
    with pytest.raises(CheckpointError, match=f"{URL_VARIABLE}=.*is not a URL.*file:///"):
        checkpoint_url("vardeq")
    with pytest.raises(ValueError, match="unknown model 'flowy'.*simple, vardeq, multiscale"):
        checkpoint_url("flowy")


# --- the first run and the ones after ------------------------------------------------------------


def test_first_call_downloads_and_verifies_then_later_calls_stay_offline(server, cache, published_dir, capsys):
    server.add(SIMPLE, published_dir / SIMPLE)
    model, result = load_pretrained("simple", device="cpu")

    assert server.requests == [SIMPLE]
    assert files_in(cache) == [SIMPLE]
    assert download.sha256_of(cache / SIMPLE) == REGISTRY["simple"].sha256
    assert not model.training
    stored = torch.load(published_dir / SIMPLE, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(model.state_dict()["flows.1.network.nn.0.weight"], stored["flows.1.network.nn.0.weight"])
    assert result["test"][0]["test_bpd"] == pytest.approx(1.0784, abs=1e-4)
    shown = capsys.readouterr().err
    assert f"Downloading the 'simple' checkpoint (2.21 MiB) from {server.url}{SIMPLE}" in shown
    assert "100%" in shown and "2.21M/2.21M" in shown

    _again, result_again = load_pretrained("simple", device="cpu")
    assert server.requests == [SIMPLE]  # the verified cache answered
    assert result_again == result
    assert capsys.readouterr().err == ""


def test_a_file_url_mirror_serves_a_local_folder(monkeypatch, tmp_path, cache, published_dir):
    monkeypatch.setenv(URL_VARIABLE, published_dir.as_uri() + "/")
    assert fetch_checkpoint("vardeq", progress=False) == cache / VARDEQ
    assert download.sha256_of(cache / VARDEQ) == REGISTRY["vardeq"].sha256
    # An explicit folder wins over $PATH_CHECKPOINT.
    assert fetch_checkpoint("simple", checkpoint_dir=tmp_path, progress=False) == tmp_path / SIMPLE
    assert files_in(cache) == [VARDEQ]


def test_a_folder_that_cannot_be_created_is_named(server, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should go")
    with pytest.raises(CheckpointError, match=f"cannot create the folder {blocker / 'tutorial11'}"):
        fetch_checkpoint("simple", checkpoint_dir=blocker / "tutorial11", progress=False)
    assert server.requests == []


def test_a_missing_file_on_a_file_url_mirror_is_not_retried(monkeypatch, tmp_path, cache):
    monkeypatch.setenv(URL_VARIABLE, tmp_path.as_uri())
    with pytest.raises(CheckpointError, match="no such file") as err:
        fetch_checkpoint("vardeq", progress=False)
    assert "gave up" not in str(err.value)
    assert files_in(cache) == []


# --- a server that fails -------------------------------------------------------------------------


def test_404_is_reported_with_the_url_and_both_ways_out(server, cache):
    with pytest.raises(CheckpointError) as err:
        load_pretrained("vardeq", progress=False)
    message = str(err.value)
    assert "HTTP 404" in message
    assert f"URL:    {server.url}{VARDEQ}" in message
    assert str(cache / VARDEQ) in message and REGISTRY["vardeq"].sha256 in message
    assert DEFAULT_BASE_URL + VARDEQ in message and URL_VARIABLE in message
    assert server.requests == [VARDEQ]  # a 404 is not retried
    assert files_in(cache) == []


def test_a_connection_closed_mid_body_is_retried_then_reported(server, cache, published_dir):
    server.add(SIMPLE, published_dir / SIMPLE, fault="close")
    closed = r"closed after 1,160,896 of 2,321,793 bytes \(gave up after 2 attempts\)"
    with pytest.raises(CheckpointError, match=closed):
        fetch_checkpoint("simple", progress=False)
    assert server.requests == [SIMPLE, SIMPLE]
    assert files_in(cache) == []


def test_a_half_broken_connection_recovers_on_retry(server, cache, published_dir, capsys):
    server.add(SIMPLE, published_dir / SIMPLE, fault="close", times=1)
    server.add(VARDEQ, published_dir / VARDEQ, fault="503", times=1)
    download_checkpoints(["simple", "vardeq"])
    assert server.requests == [SIMPLE, SIMPLE, VARDEQ, VARDEQ]
    assert files_in(cache) == [SIMPLE, VARDEQ]
    shown = capsys.readouterr().err
    assert "Attempt 1 of 2 failed: the connection closed after 1,160,896 of 2,321,793 bytes; retrying" in shown
    assert "Attempt 1 of 2 failed: the server answered HTTP 503" in shown


def test_wrong_bytes_fail_the_hash_and_are_not_kept(server, cache, published_dir):
    server.add(SIMPLE, (published_dir / VARDEQ).read_bytes()[: REGISTRY["simple"].size])
    with pytest.raises(CheckpointError, match=f"not the expected file.*expected {REGISTRY['simple'].sha256}"):
        fetch_checkpoint("simple", progress=False)
    assert server.requests == [SIMPLE]  # the same server would send the same wrong bytes
    assert files_in(cache) == []


def test_a_file_of_the_wrong_size_is_refused_before_it_is_read(server, cache, published_dir):
    server.add(SIMPLE, published_dir / VARDEQ)
    with pytest.raises(CheckpointError, match="offers 2,660,225 bytes, the expected file has 2,321,793"):
        fetch_checkpoint("simple", progress=False)
    assert files_in(cache) == []


@pytest.mark.parametrize("fault", ["stall", "mute"])  # silent mid-body, or silent before any answer
def test_a_server_that_stalls_past_the_read_timeout(server, cache, published_dir, monkeypatch, fault):
    monkeypatch.setattr(download, "READ_TIMEOUT", 0.3)
    server.add(SIMPLE, published_dir / SIMPLE, fault=fault)
    with pytest.raises(CheckpointError, match=r"sent nothing for 0.3 s \(read timeout\) \(gave up after 2 attempts\)"):
        fetch_checkpoint("simple", progress=False)
    assert server.requests == [SIMPLE, SIMPLE]
    assert files_in(cache) == []


def test_offline_error_names_url_folder_and_ways_out_and_nothing_else(cache):
    # conftest points the mirror variable at a closed loopback port: the connection is refused.
    with pytest.raises(CheckpointError) as err:
        load_pretrained("simple")
    message = str(err.value)
    assert "the server refused the connection (gave up after 2 attempts)" in message
    assert "URL:    http://127.0.0.1:9/unreachable/" + SIMPLE in message
    assert f"folder: {cache}" in message
    assert "1. Place the file by hand" in message and f"2. Set {URL_VARIABLE}" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__
    shown = "".join(traceback.format_exception(err.value))
    assert "During handling" not in shown and "URLError" not in shown and "urllib/" not in shown
    assert files_in(cache) == []


def test_download_false_never_touches_the_network(server, cache):
    with pytest.raises(CheckpointError, match=r"No 'simple' checkpoint in .*download=False(.|\n)*with download=True"):
        load_pretrained("simple", download=False)
    assert server.requests == []


# --- the cache -----------------------------------------------------------------------------------


def test_a_corrupted_cached_file_is_moved_aside_and_replaced(server, cache, published_dir):
    (cache / SIMPLE).write_bytes((published_dir / SIMPLE).read_bytes()[:1000])
    server.add(SIMPLE, published_dir / SIMPLE)
    with pytest.warns(RuntimeWarning, match="failed verification.*found 1,000 bytes.*moved it to"):
        load_pretrained("simple", device="cpu", progress=False)
    assert server.requests == [SIMPLE]
    assert files_in(cache) == [SIMPLE, SIMPLE + ".unverified"]
    assert download.sha256_of(cache / SIMPLE) == REGISTRY["simple"].sha256


def test_a_corrupted_cache_that_cannot_be_refetched_explains_everything(server, cache, published_dir):
    (cache / SIMPLE).write_bytes(b"<html>captive portal</html>")
    with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError) as err:
        fetch_checkpoint("simple", progress=False)
    message = str(err.value)
    assert "HTTP 404" in message
    assert f"cached copy: expected 2,321,793 bytes, SHA-256 {REGISTRY['simple'].sha256}; found 27 bytes" in message
    assert f"moved to {cache / SIMPLE}.unverified" in message
    assert "Place the file by hand" in message
    assert files_in(cache) == [SIMPLE + ".unverified"]


def test_a_corrupted_cache_with_download_false_says_what_differs(cache):
    (cache / VARDEQ).write_bytes(b"x" * 10)
    differs = "failed verification: expected 2,660,225 bytes.*found 10 bytes.*not a checkpoint of this model"
    with pytest.raises(CheckpointError, match=differs):
        fetch_checkpoint("vardeq", download=False)
    assert files_in(cache) == [VARDEQ]  # download=False leaves the folder as it was


def own_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Write a checkpoint that fits the ``simple`` model but is not the published one: a model you trained."""
    own = create_model("simple").state_dict()
    torch.save({"state_dict": own, "result": {"test_bpd": 3.0}}, path)
    return own


@pytest.mark.parametrize("download_allowed", [False, True])
def test_a_checkpoint_you_trained_is_used_as_it_is_and_never_moved(server, cache, published_dir, download_allowed):
    own = own_checkpoint(cache / SIMPLE)
    before = (cache / SIMPLE).read_bytes()
    server.add(SIMPLE, published_dir / SIMPLE)
    for _ in range(2):  # twice: a second run must not lose what the first kept
        with pytest.warns(OwnCheckpointWarning, match=rf"using {cache / SIMPLE}: it is not the published 'simple'"):
            model, result = load_pretrained("simple", download=download_allowed, device="cpu", progress=False)
        assert result == {"test_bpd": 3.0}
        assert torch.equal(model.state_dict()["flows.1.network.nn.0.weight"], own["flows.1.network.nn.0.weight"])
    assert server.requests == []
    assert files_in(cache) == [SIMPLE]
    assert (cache / SIMPLE).read_bytes() == before


def test_damaged_files_are_moved_aside_without_overwriting_an_earlier_one(server, cache, published_dir):
    server.add(SIMPLE, published_dir / SIMPLE)
    damaged = [b"first damaged copy", b"second damaged copy", b"third damaged copy"]
    for junk in damaged:
        (cache / SIMPLE).write_bytes(junk)
        with pytest.warns(RuntimeWarning, match="failed verification"):
            fetch_checkpoint("simple", progress=False)
        assert download.sha256_of(cache / SIMPLE) == REGISTRY["simple"].sha256
    asides = [SIMPLE + ".unverified", SIMPLE + ".unverified.1", SIMPLE + ".unverified.2"]
    assert files_in(cache) == [SIMPLE, *asides]
    assert [(cache / name).read_bytes() for name in asides] == damaged


def test_a_damaged_file_in_a_read_only_cache_is_one_clear_error(server, cache, monkeypatch):
    (cache / SIMPLE).write_bytes(b"not a checkpoint")

    monkeypatch.setattr(os, "link", permission_denied)
    monkeypatch.setattr(os, "rename", permission_denied)
    with pytest.raises(CheckpointError) as err:
        fetch_checkpoint("simple", progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert "failed verification" in message and "cannot be moved aside" in message and "Permission denied" in message
    assert "PATH_CHECKPOINT" in message
    assert files_in(cache) == [SIMPLE] and server.requests == []


def test_temporary_files_of_ended_processes_are_swept_but_live_ones_kept(server, cache, published_dir):
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


def test_download_errors_name_the_url_and_survive_pickling(server, tmp_path):
    url = server.url + "nothing-here"
    with pytest.raises(download.DownloadError) as err:
        download.download_file(url, tmp_path / "x", progress=False)
    assert (err.value.url, err.value.reason) == (url, "the server answered HTTP 404 Not Found")
    assert str(pickle.loads(pickle.dumps(err.value))) == f"downloading {url} failed: {err.value.reason}"
    with pytest.raises(ValueError, match="retries must be 0 or more"):
        download.download_file(server.url + "x", tmp_path / "x", retries=-1)


def test_an_interrupted_download_leaves_nothing_behind(server, tmp_path, published_dir):
    server.add(SIMPLE, published_dir / SIMPLE)

    def interrupt(part: Path) -> None:  # as if the student stopped the kernel just before the rename
        assert part.is_file()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download.download_file(server.url + SIMPLE, tmp_path / "cache" / SIMPLE, verify=interrupt, progress=False)
    assert files_in(tmp_path / "cache") == []


# --- safety: weights only ------------------------------------------------------------------------


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, cache, server):
    marker = tmp_path / "code-ran"
    evil = malicious_checkpoint(tmp_path / "evil.ckpt", marker)

    with pytest.raises(CheckpointError, match=r"refusing to load .*evil.ckpt: it is unsafe, as it asks to run io.open"):
        read_checkpoint(evil)
    # In the cache, under a hashed name: the hash differs, and the weights-only load refuses it.
    (cache / SIMPLE).write_bytes(evil.read_bytes())
    with pytest.raises(CheckpointError, match="failed verification: expected 2,321,793 bytes.*refusing to load"):
        load_pretrained("simple", download=False)
    # In the cache, under the name checked by structure: the weights-only load refuses it.
    (cache / MULTISCALE).write_bytes(evil.read_bytes())
    with pytest.raises(CheckpointError, match="refusing to load.*io.open"):
        load_pretrained("multiscale", download=False)
    # Served by a mirror: refused, and not kept.
    (cache / MULTISCALE).unlink()
    server.add(MULTISCALE, evil)
    with pytest.raises(CheckpointError, match="server sent a file that failed verification: refusing to load"):
        load_pretrained("multiscale", progress=False)
    assert files_in(cache) == [SIMPLE]
    assert not marker.exists()

    # The file really is dangerous: an unsafe load would have run its code.
    torch.load(evil, weights_only=False)["result"].close()  # "result" became the file it opened
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's remark on a non-torch file
def test_a_plain_pickle_is_refused_too(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "plain.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": _RunsCodeOnLoad(marker)}))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(path)
    assert not marker.exists()


# --- the multi-scale checkpoint: verified by structure -------------------------------------------


def test_multiscale_without_a_hash_is_verified_by_structure(server, cache, multiscale_ckpt):
    server.add(MULTISCALE, multiscale_ckpt)
    model, result = load_pretrained("multiscale", device="cpu", progress=False)
    assert result == {"test_bpd": 1.5}
    expected = torch.load(multiscale_ckpt, weights_only=True)["state_dict"]
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())
    assert files_in(cache) == [MULTISCALE]


def test_a_checkpoint_of_another_model_is_rejected_and_not_kept(server, cache, published_dir):
    server.add(MULTISCALE, published_dir / SIMPLE)
    with pytest.raises(CheckpointError, match="does not fit the 'multiscale' model"):
        load_pretrained("multiscale", progress=False)
    assert files_in(cache) == []


# --- filling the cache (the `download` command) ---------------------------------------------------


def test_download_checkpoints_fills_the_cache_with_every_model(server, cache, published_dir, multiscale_ckpt):
    for name in (SIMPLE, VARDEQ):
        server.add(name, published_dir / name)
    server.add(MULTISCALE, multiscale_ckpt)
    paths = download_checkpoints(progress=False)
    assert paths == {name: cache / spec.filename for name, spec in REGISTRY.items()}
    assert files_in(cache) == sorted(spec.filename for spec in REGISTRY.values())
    assert download_checkpoints("vardeq", progress=False) == {"vardeq": cache / VARDEQ}
    assert len(server.requests) == 3


def test_download_checkpoints_rejects_typos_before_downloading(server):
    with pytest.raises(ValueError, match="unknown model 'vardq'"):
        download_checkpoints(["simple", "vardq"])
    assert server.requests == []


def test_download_checkpoints_tries_every_name_and_lists_the_failures(server, cache, published_dir):
    server.add(VARDEQ, published_dir / VARDEQ)
    with pytest.raises(IncompleteDownloadError) as err:
        download_checkpoints(["multiscale", "vardeq"], progress=False)
    message = str(err.value)
    assert message.startswith("1 of 2 checkpoints could not be fetched (verified: vardeq).")
    assert "[multiscale] Could not download the 'multiscale' checkpoint: the server answered HTTP 404" in message
    assert err.value.fetched == {"vardeq": cache / VARDEQ}
    assert list(err.value.failed) == ["multiscale"] and "HTTP 404" in str(err.value.failed["multiscale"])
    assert str(pickle.loads(pickle.dumps(err.value))) == message  # it can cross a process boundary
    assert files_in(cache) == [VARDEQ]


# --- two processes at once ------------------------------------------------------------------------


def test_two_processes_downloading_at_once_end_with_one_good_file(server, cache, published_dir):
    server.add(VARDEQ, published_dir / VARDEQ)
    server.gate(2, timeout=120)  # neither answer starts before both requests have arrived
    script = "from nflows_tutorial.pretrained import fetch_checkpoint as f; print(f('vardeq', progress=False))"
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


# --- files and servers that are not what they claim ------------------------------------------------


class _RunsShellOnLoad:
    """Pickles to an os.system call: torch words this refusal differently from the builtins.open one."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload, runs", [(_RunsCodeOnLoad, "io.open"), (_RunsShellOnLoad, "posix.system")])
def test_unsafe_pickles_are_reported_as_unsafe_in_one_line(tmp_path, payload, runs):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "result": payload(marker)}, path)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert str(err.value).startswith(f"refusing to load {path}: it is unsafe, as it asks to run {runs} while loading")
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_a_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("my training notes\nlr 1e-3\n")
    with pytest.raises(CheckpointError, match=r"^\S+notes.ckpt is not a PyTorch checkpoint \(another kind of file"):
        read_checkpoint(path)


def test_a_mirror_serving_junk_is_one_line_that_names_no_temporary_file(server, cache):
    server.add(MULTISCALE, b"<html><body>Sign in to the campus network</body></html>")
    with pytest.raises(CheckpointError) as err:
        load_pretrained("multiscale", progress=False)
    first = str(err.value).splitlines()[0]
    assert first == (
        "Could not download the 'multiscale' checkpoint: the server sent a file that failed verification: "
        "the downloaded file is not a PyTorch checkpoint (another kind of file, or damaged)"
    )
    assert ".part" not in str(err.value)
    assert files_in(cache) == []


def test_a_trickling_mirror_counts_as_stalled(server, cache, published_dir, monkeypatch):
    monkeypatch.setattr(download, "STALL_WINDOW", 0.5)  # 10 bytes a second is far under 1 KiB/s
    server.add(SIMPLE, published_dir / SIMPLE, fault="trickle")
    started = time.monotonic()
    with pytest.raises(
        CheckpointError, match=r"the transfer stalled: \d bytes in 1 s, under 1 KiB/s \(gave up after 2"
    ):
        fetch_checkpoint("simple", progress=False)
    assert time.monotonic() - started < 10
    assert files_in(cache) == []


def test_every_download_has_an_overall_deadline(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "DEADLINE_BASE", 1.0)
    monkeypatch.setattr(download, "STALL_WINDOW", 600.0)  # only the deadline can stop this one
    server.add("slow.bin", b"x" * 1000, fault="trickle")
    started = time.monotonic()
    with pytest.raises(download.DownloadError, match=r"the download took longer than 1 s \(attempt 1\)"):
        download.download_file(server.url + "slow.bin", tmp_path / "slow.bin", progress=False)
    assert time.monotonic() - started < 5
    assert files_in(tmp_path) == []


def test_a_body_without_length_stops_at_the_size_cap(server, cache):
    server.add(MULTISCALE, b"\0" * 2**20, fault="endless")
    cap = REGISTRY["multiscale"].max_size
    with pytest.raises(CheckpointError, match=f"the server sent more than the {cap:,} bytes this file can have"):
        load_pretrained("multiscale", progress=False)
    assert server.requests == [MULTISCALE]
    assert files_in(cache) == []
