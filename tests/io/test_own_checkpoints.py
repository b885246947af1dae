"""A checkpoint of the user's own in the cache: used with a warning for every model, and its numbers labelled as theirs."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from nflows_tutorial.flows.builders import create_model
from nflows_tutorial.io.checkpoint_files import CheckpointError, read_checkpoint
from nflows_tutorial.io.checkpoints import OwnCheckpointWarning, load_pretrained
from nflows_tutorial.io.course_models import load_course_model
from nflows_tutorial.io.registry import OWN_ORIGIN, PUBLISHED_ORIGIN, REGISTRY, shows_published_numbers

pytestmark = pytest.mark.usefixtures("short_timeouts")

MULTISCALE = REGISTRY["multiscale"].filename
# The result dict as the tutorial's code stored it, with the published multi-scale numbers (1.022 and 1.020).
PUBLISHED_MULTISCALE_RESULT = {
    "test": [{"test_bpd": 1.0204}],
    "val": [{"test_bpd": 1.0223}],
    "time": 0.023,
    "samp_time": 0.015,
}
# What train_flow() writes: the same entries and how the run went.
TRAINED_HERE_RESULT = {**PUBLISHED_MULTISCALE_RESULT, "global_step": 93_800, "epochs": 200, "params": 1_711_818}


def multiscale_file(path: Path, result: object) -> Path:
    torch.save({"state_dict": create_model("multiscale").state_dict(), "result": result}, path)
    return path


def test_the_published_files_hold_the_numbers_recorded_for_them(published_dir):
    # The criterion for the file whose hash is unknown holds for both files whose hash is known.
    for name in ("simple", "vardeq"):
        spec = REGISTRY[name]
        assert shows_published_numbers(spec, read_checkpoint(published_dir / spec.filename)["result"])
        assert not shows_published_numbers(REGISTRY["multiscale"], read_checkpoint(published_dir / spec.filename))


@pytest.mark.parametrize(
    "result",
    [
        {"test_bpd": 1.5},
        {"test": [{"test_bpd": 1.0311}], "val": [{"test_bpd": 1.0330}], "time": 0.02},
        TRAINED_HERE_RESULT,
        {},
        "not a dict",
        {"test": [{"test_bpd": "1.020"}], "val": [{"test_bpd": 1.022}]},
    ],
    ids=["other-shape", "other-numbers", "trained-here", "empty", "not-a-dict", "text"],
)
def test_a_multiscale_checkpoint_of_your_own_warns_and_says_whose_numbers_it_holds(cache, result):
    multiscale_file(cache / MULTISCALE, result)
    with pytest.warns(OwnCheckpointWarning, match=rf"using {cache / MULTISCALE}: it is not the published 'multiscale'"):
        _model, stored = load_pretrained("multiscale", download=False, device="cpu", progress=False)
    assert stored["origin"] == OWN_ORIGIN == "your own checkpoint, not the published one"
    assert (cache / MULTISCALE).is_file()  # used as it is, never moved


def test_the_published_multiscale_checkpoint_is_taken_as_published_without_a_warning(cache):
    multiscale_file(cache / MULTISCALE, PUBLISHED_MULTISCALE_RESULT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _model, stored = load_pretrained("multiscale", download=False, device="cpu", progress=False)
    assert stored == {**PUBLISHED_MULTISCALE_RESULT, "origin": PUBLISHED_ORIGIN}


def test_every_model_says_where_its_numbers_come_from(cache, published_dir):
    (cache / REGISTRY["simple"].filename).write_bytes((published_dir / REGISTRY["simple"].filename).read_bytes())
    assert load_pretrained("simple", download=False, device="cpu")[1]["origin"] == PUBLISHED_ORIGIN
    own = {"test": [{"test_bpd": 1.2}], "val": [{"test_bpd": 1.21}]}
    torch.save({"state_dict": create_model("vardeq").state_dict(), "result": own}, cache / REGISTRY["vardeq"].filename)
    with pytest.warns(OwnCheckpointWarning):
        _model, stored = load_pretrained("vardeq", download=False, device="cpu")
    assert stored == {**own, "origin": OWN_ORIGIN}


def test_load_course_model_labels_a_checkpoint_of_your_own(cache, tmp_path):
    multiscale_file(cache / MULTISCALE, TRAINED_HERE_RESULT)
    with pytest.warns(OwnCheckpointWarning):
        loaded = load_course_model("multiscale", "cpu", course_folder=tmp_path, download=False)
    assert loaded.origin == OWN_ORIGIN
    assert loaded.result == TRAINED_HERE_RESULT  # the numbers, without the label mixed in
    assert loaded.note.startswith("The 'multiscale' checkpoint in the cache is your own, not the published one")
    multiscale_file(cache / MULTISCALE, PUBLISHED_MULTISCALE_RESULT)
    published = load_course_model("multiscale", "cpu", course_folder=tmp_path, download=False)
    assert (published.origin, published.result, published.note) == (PUBLISHED_ORIGIN, PUBLISHED_MULTISCALE_RESULT, "")


def test_a_mirror_serving_another_multiscale_checkpoint_is_refused_and_not_kept(server, cache, tmp_path, files_in):
    server.add(MULTISCALE, multiscale_file(tmp_path / MULTISCALE, TRAINED_HERE_RESULT))
    with pytest.raises(CheckpointError) as err:
        load_pretrained("multiscale", progress=False)
    assert str(err.value).splitlines()[0] == (
        "Could not download the 'multiscale' checkpoint: the server sent a file that failed verification: it fits "
        "the 'multiscale' model, but it is not the published checkpoint (size and SHA-256 unknown here; it is "
        "checked by loading it into the model, and by the numbers stored with it: validation 1.022, test 1.020 bpd)"
    )
    assert files_in(cache) == []
    server.add(MULTISCALE, multiscale_file(tmp_path / MULTISCALE, PUBLISHED_MULTISCALE_RESULT))
    _model, stored = load_pretrained("multiscale", device="cpu", progress=False)
    assert stored["origin"] == PUBLISHED_ORIGIN and files_in(cache) == [MULTISCALE]
