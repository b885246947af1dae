"""The exercise checks as a student meets them: every planted fault fails with a first line that names it, and every
right answer written differently passes.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from dataclasses import dataclass

import planted_faults_more  # noqa: F401  (registers its answers with planted_faults)
import pytest
import torch
from planted_faults import FAULTS, VARIANTS, Planted

from nflows_tutorial.course.checks import exercise

#: Seconds an exercise check waits on an answer that never returns (the layer checks here pass their own limit).
EXERCISE_SECONDS = 2.0

#: The exercise checks' own limit, which the trained model's answers need on a CPU.
TRAINED_SECONDS = exercise.EXERCISE_TIME_LIMIT

#: The share of faults whose first line must name the fault.
NAMED_RATE = 0.9

BY_ID = {entry.id: entry for entry in FAULTS + VARIANTS}


@dataclass(frozen=True)
class Outcome:
    """What a student sees: the error the check raised (None when it passed) and everything it printed."""

    error: Exception | None
    printed: str

    @property
    def first_line(self) -> str:
        return str(self.error).splitlines()[0] if self.error is not None and str(self.error) else ""


@pytest.fixture(scope="module", autouse=True)
def quick_checks():
    """A never-returning answer is stopped after :data:`EXERCISE_SECONDS`, not the two minutes a student waits;
    the checks run on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tensors are tiny: more threads only contend for the cores (4x slower on two)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exercise, "EXERCISE_TIME_LIMIT", EXERCISE_SECONDS)
        yield
    torch.set_num_threads(threads)


@functools.cache
def outcome(entry_id: str) -> Outcome:
    """Run the check on one answer (once per session: the summary reuses it), from a fixed global seed."""
    entry = BY_ID[entry_id]
    torch.manual_seed(0)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        try:
            entry.check(entry.answer)
        except Exception as err:  # the tests tell a failed check (AssertionError) from a crash
            return Outcome(err, printed.getvalue())
    return Outcome(None, printed.getvalue())


def is_named(entry: Planted) -> bool:
    result = outcome(entry.id)
    return (
        isinstance(result.error, AssertionError)
        and re.search(entry.names, result.first_line, re.IGNORECASE) is not None
    )


def _ids(entries: list[Planted], slow: bool) -> list[str]:
    return [e.id for e in entries if e.slow == slow]


@pytest.fixture
def trained_model(published_dir, mnist_root, monkeypatch):
    """For the checks of exercises 9 and 10: the published checkpoints, where the package looks for them, and MNIST."""
    monkeypatch.setenv("PATH_CHECKPOINT", str(published_dir))
    monkeypatch.setattr(exercise, "EXERCISE_TIME_LIMIT", TRAINED_SECONDS)


def _shown(entry: Planted, result: Outcome) -> str:
    return f"{entry.id} ({entry.description})\n--- the check printed ---\n{result.printed}"


def assert_named(entry_id: str) -> None:
    """The check fails with an AssertionError whose first line matches the fault's ``names``."""
    entry, result = BY_ID[entry_id], outcome(entry_id)
    assert result.error is not None, f"the check passed a wrong answer: {_shown(entry, result)}"
    assert isinstance(result.error, AssertionError), (
        f"the check crashed with {type(result.error).__name__}: {result.error}\n{_shown(entry, result)}"
    )
    assert re.search(entry.names, result.first_line, re.IGNORECASE), (
        f"first line {result.first_line!r} does not match {entry.names!r}: {_shown(entry, result)}"
    )


def assert_accepted(entry_id: str) -> None:
    entry, result = BY_ID[entry_id], outcome(entry_id)
    assert result.error is None, f"{type(result.error).__name__}: {result.error}\n{_shown(entry, result)}"


def test_ids_are_unique():
    assert len(BY_ID) == len(FAULTS) + len(VARIANTS)


@pytest.mark.parametrize("entry_id", _ids(FAULTS, slow=False))
def test_fault_fails_with_a_first_line_that_names_it(entry_id):
    assert_named(entry_id)


@pytest.mark.parametrize("entry_id", _ids(VARIANTS, slow=False))
def test_right_answer_written_differently_passes(entry_id):
    assert_accepted(entry_id)


@pytest.mark.slow
@pytest.mark.parametrize("entry_id", _ids(FAULTS, slow=True))
def test_fault_on_the_trained_model_is_named(entry_id, trained_model):
    assert_named(entry_id)


@pytest.mark.slow
@pytest.mark.parametrize("entry_id", _ids(VARIANTS, slow=True))
def test_right_answer_on_the_trained_model_passes(entry_id, trained_model):
    assert_accepted(entry_id)


def test_named_rate():
    """At least :data:`NAMED_RATE` of the faults named (the fast ones), and no right answer rejected."""
    faults = [f for f in FAULTS if not f.slow]
    unnamed = [f for f in faults if not is_named(f)]
    rejected = [v for v in VARIANTS if not v.slow and outcome(v.id).error is not None]
    rate = 1 - len(unnamed) / len(faults)
    lines = [f"  {f.id}: {outcome(f.id).first_line or 'passed'!r}" for f in unnamed]
    lines += [f"  rejected {v.id}: {outcome(v.id).first_line!r}" for v in rejected]
    print(
        f"named {len(faults) - len(unnamed)} of {len(faults)} faults ({rate:.0%}); rejected {len(rejected)} right answers"
    )
    assert rate >= NAMED_RATE and not rejected, f"named rate {rate:.0%}\n" + "\n".join(lines)
