"""Why a training run cannot start or cannot go on."""

from __future__ import annotations

from pathlib import Path

from ..errors import SettingsError, Spelling, as_keyword

__all__ = [
    "TrainingError",
    "UnusableSettingsError",
    "UnwritableOutputError",
    "RunFolderInUseError",
    "NonFiniteLossError",
    "TrainingInterrupted",
]


class TrainingError(SettingsError, RuntimeError):
    """Training cannot start, or cannot go on; the message says why and what to do, naming the settings that help."""


class UnusableSettingsError(TrainingError, ValueError):
    """Settings no run can train with (a batch larger than the data it is cut from, say): a bad request."""


class UnwritableOutputError(TrainingError):
    """The output folder cannot be written, or has too little space: the machine's state, not the request."""


class RunFolderInUseError(UnwritableOutputError):
    """Another live training run holds the lock of the run folder, so this run may not write there."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C or SIGTERM, at a safe point or with every file written whole.

    ``resume_from`` is the checkpoint a resumed run would continue from, ``None`` when the run stopped
    before writing one; ``signum`` is the signal that stopped it (``SIGINT`` for Ctrl-C).
    """

    def __init__(self, resume_from: Path | None, signum: int) -> None:
        self.resume_from = resume_from
        self.signum = signum
        super().__init__(self.advice(as_keyword))

    def advice(self, spell: Spelling) -> str:
        """One line saying that training stopped and what can be done next, settings written by ``spell``."""
        if self.resume_from is None:
            return (
                "training interrupted before its first checkpoint was written, so there is nothing to resume; "
                "run the same command again to start afresh"
            )
        folder = spell("out_dir", ...).removesuffix("...").rstrip(" =")  # the setting's name, without a value
        return f"training interrupted; continue it with {spell('resume', True)} (same {folder})"

    def __reduce__(self):  # rebuilt from its parts when it travels between processes
        return type(self), (self.resume_from, self.signum)
