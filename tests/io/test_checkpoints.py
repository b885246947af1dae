"""Published checkpoints: the registry, the cache verified on every call, weights-only loads, clear errors offline."""

from __future__ import annotations

import builtins
import os
import pickle
import traceback
from pathlib import Path

import pytest
import torch

from nflows_tutorial.environment import URL_VARIABLE
from nflows_tutorial.flows.builders import MODEL_NAMES, create_model
from nflows_tutorial.io import download
from nflows_tutorial.io.checkpoint_files import CheckpointError, read_checkpoint
from nflows_tutorial.io.checkpoints import (
    IncompleteDownloadError,
    OwnCheckpointWarning,
    download_checkpoints,
    fetch_checkpoint,
    load_pretrained,
)
from nflows_tutorial.io.registry import DEFAULT_BASE_URL, OWN_ORIGIN, PUBLISHED_ORIGIN, REGISTRY, checkpoint_url

from support.helpers import permission_denied

pytestmark = pytest.mark.usefixtures("short_timeouts")

SIMPLE = REGISTRY["simple"].filename
VARDEQ = REGISTRY["vardeq"].filename
MULTISCALE = REGISTRY["multiscale"].filename


# The result dict of the published multi-scale checkpoint as far as it is known: the tutorial's entries, its numbers.
MULTISCALE_RESULT = {"test": [{"test_bpd": 1.0204}], "val": [{"test_bpd": 1.0223}], "time": 0.023, "samp_time": 0.015}


@pytest.fixture(scope="module")
def multiscale_ckpt(tmp_path_factory) -> Path:
    """A stand-in for the multi-scale checkpoint that is not mirrored here: right structure and numbers, random weights."""
    path = tmp_path_factory.mktemp("multiscale") / MULTISCALE
    torch.save({"state_dict": create_model("multiscale").state_dict(), "result": MULTISCALE_RESULT}, path)
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


# --- registry and URLs -----------------------------------------------------------------------


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


# --- the first run and the ones after --------------------------------------------------------


def test_first_call_downloads_and_verifies_then_later_calls_stay_offline(
    server, cache, published_dir, capsys, files_in
):
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


def test_a_file_url_mirror_serves_a_local_folder(monkeypatch, tmp_path, cache, published_dir, files_in):
    monkeypatch.setenv(URL_VARIABLE, published_dir.as_uri() + "/")
    assert fetch_checkpoint("vardeq", progress=False) == cache / VARDEQ
    assert download.sha256_of(cache / VARDEQ) == REGISTRY["vardeq"].sha256
    # An explicit folder wins over $PATH_CHECKPOINT.
    assert fetch_checkpoint("simple", checkpoint_dir=tmp_path, progress=False) == tmp_path / SIMPLE
    assert files_in(cache) == [VARDEQ]


# --- a checkpoint that cannot be had ---------------------------------------------------------


def test_404_is_reported_with_the_url_and_both_ways_out(server, cache, files_in):
    with pytest.raises(CheckpointError) as err:
        load_pretrained("vardeq", progress=False)
    message = str(err.value)
    assert "HTTP 404" in message
    assert f"URL:    {server.url}{VARDEQ}" in message
    assert str(cache / VARDEQ) in message and REGISTRY["vardeq"].sha256 in message
    assert DEFAULT_BASE_URL + VARDEQ in message and URL_VARIABLE in message
    assert server.requests == [VARDEQ]  # a 404 is not retried
    assert files_in(cache) == []


def test_offline_error_names_url_folder_and_ways_out_and_nothing_else(cache, files_in):
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


# --- the cache -------------------------------------------------------------------------------


def test_a_corrupted_cached_file_is_moved_aside_and_replaced(server, cache, published_dir, files_in):
    (cache / SIMPLE).write_bytes((published_dir / SIMPLE).read_bytes()[:1000])
    server.add(SIMPLE, published_dir / SIMPLE)
    with pytest.warns(RuntimeWarning, match="failed verification.*found 1,000 bytes.*moved it to"):
        load_pretrained("simple", device="cpu", progress=False)
    assert server.requests == [SIMPLE]
    assert files_in(cache) == [SIMPLE, SIMPLE + ".unverified"]
    assert download.sha256_of(cache / SIMPLE) == REGISTRY["simple"].sha256


def test_a_corrupted_cache_that_cannot_be_refetched_explains_everything(server, cache, published_dir, files_in):
    (cache / SIMPLE).write_bytes(b"<html>captive portal</html>")
    with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError) as err:
        fetch_checkpoint("simple", progress=False)
    message = str(err.value)
    assert "HTTP 404" in message
    assert f"cached copy: expected 2,321,793 bytes, SHA-256 {REGISTRY['simple'].sha256}; found 27 bytes" in message
    assert f"moved to {cache / SIMPLE}.unverified" in message
    assert "Place the file by hand" in message
    assert files_in(cache) == [SIMPLE + ".unverified"]


def test_a_corrupted_cache_with_download_false_says_what_differs(cache, files_in):
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
def test_a_checkpoint_you_trained_is_used_as_it_is_and_never_moved(
    server, cache, published_dir, download_allowed, files_in
):
    own = own_checkpoint(cache / SIMPLE)
    before = (cache / SIMPLE).read_bytes()
    server.add(SIMPLE, published_dir / SIMPLE)
    for _ in range(2):  # twice: a second run must not lose what the first kept
        with pytest.warns(OwnCheckpointWarning, match=rf"using {cache / SIMPLE}: it is not the published 'simple'"):
            model, result = load_pretrained("simple", download=download_allowed, device="cpu", progress=False)
        assert result == {"test_bpd": 3.0, "origin": OWN_ORIGIN}
        assert torch.equal(model.state_dict()["flows.1.network.nn.0.weight"], own["flows.1.network.nn.0.weight"])
    assert server.requests == []
    assert files_in(cache) == [SIMPLE]
    assert (cache / SIMPLE).read_bytes() == before


def test_damaged_files_are_moved_aside_without_overwriting_an_earlier_one(server, cache, published_dir, files_in):
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


def test_a_damaged_file_in_a_read_only_cache_is_one_clear_error(server, cache, monkeypatch, files_in):
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


# --- safety: weights only --------------------------------------------------------------------


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, cache, server, files_in):
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


# --- the multi-scale checkpoint: verified by structure and its numbers ---------------------------------------


def test_multiscale_without_a_hash_is_verified_by_structure(server, cache, multiscale_ckpt, files_in):
    server.add(MULTISCALE, multiscale_ckpt)
    model, result = load_pretrained("multiscale", device="cpu", progress=False)
    assert result == {**MULTISCALE_RESULT, "origin": PUBLISHED_ORIGIN}
    expected = torch.load(multiscale_ckpt, weights_only=True)["state_dict"]
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())
    assert files_in(cache) == [MULTISCALE]


def test_a_checkpoint_of_another_model_is_rejected_and_not_kept(server, cache, published_dir, files_in):
    server.add(MULTISCALE, published_dir / SIMPLE)
    with pytest.raises(CheckpointError, match="does not fit the 'multiscale' model"):
        load_pretrained("multiscale", progress=False)
    assert files_in(cache) == []


# --- filling the cache (the `download` command) ----------------------------------------------


def test_download_checkpoints_fills_the_cache_with_every_model(server, cache, published_dir, multiscale_ckpt, files_in):
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


def test_download_checkpoints_tries_every_name_and_lists_the_failures(server, cache, published_dir, files_in):
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


# --- files and servers that are not what they claim ------------------------------------------


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


def test_a_mirror_serving_junk_is_one_line_that_names_no_temporary_file(server, cache, files_in):
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
