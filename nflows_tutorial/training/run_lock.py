"""One training run per run folder at a time: a lock file there names the process that holds it.

The lock is created with ``O_CREAT | O_EXCL``, so of two runs starting together exactly one gets
it. It is removed when the run ends in any way Python sees (its end, an error, Ctrl-C, a SIGTERM
that :func:`~.run.train_flow` turns into an interrupt); one left by a run killed outright is
stale once its process is gone, and the next run replaces it.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from .errors import RunFolderInUseError

__all__ = ["LOCK_NAME", "LockOwner", "run_folder_lock", "lock_owner", "takes_the_lock"]

#: Name of the lock file in a run folder.
LOCK_NAME = "train.lock"

# Set to a process's rank by Lightning's launcher, torchrun and SLURM; a rank other than 0 is a
# helper process of a run whose first process holds the lock.
_RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "RANK", "SLURM_PROCID")


@dataclass(frozen=True)
class LockOwner:
    """The process that holds a run folder's lock: PID, host, when it took the lock, and the kernel's
    start time of the process (``None`` where unknown), which tells a reused PID from the holder."""

    pid: int
    host: str
    started: str
    process_start: str | None = None

    def __str__(self) -> str:
        return f"PID {self.pid} on {self.host}, started {self.started}"

    def is_alive(self) -> bool:
        """Whether the holder still runs; a process on another host is taken to run, as it cannot be checked."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: alive
            pass
        state, start = _process_state(self.pid)
        if state == "Z":  # ended, not yet reaped by its parent
            return False
        return self.process_start is None or start is None or start == self.process_start


def _process_state(pid: int) -> tuple[str | None, str | None]:
    """The state letter and the start time (clock ticks after boot) of ``pid`` from ``/proc``; ``None`` where absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None, None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return fields[0], fields[19]


def takes_the_lock() -> bool:
    """Whether this process is the first of its run (rank 0 everywhere), the one that locks the run folder."""
    return all(os.environ.get(name, "0") == "0" for name in _RANK_VARIABLES)


def lock_owner(folder: str | os.PathLike) -> LockOwner | None:
    """The holder named in ``folder``'s lock file; ``None`` when there is none.

    Raises :class:`~.errors.RunFolderInUseError` for a lock file that cannot be read as one.
    """
    path = Path(folder) / LOCK_NAME
    try:
        return LockOwner(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as err:
        raise RunFolderInUseError(
            f"{path} is not a readable training lock ({err}); if no training run uses {path.parent}, delete it",
        ) from None


def _refusal(folder: Path, owner: LockOwner) -> RunFolderInUseError:
    lock = folder / LOCK_NAME
    remote = "" if owner.host == socket.gethostname() else f"; if that run has ended, delete {lock}"
    return RunFolderInUseError(
        f"{folder} is in use by another training run ({owner}; lock file {lock}), so nothing there was changed: "
        f"wait for that run to end or stop it, or choose another {{out_dir}}{remote}",
        out_dir=...,
    )


def _remove_stale(lock: Path, stale: LockOwner) -> None:
    """Remove ``lock`` if it still names ``stale``; a lock another run took meanwhile is put back."""
    aside = lock.with_name(f".{LOCK_NAME}.{os.getpid()}.stale")
    try:
        os.rename(lock, aside)  # atomic: of two runs removing the same stale lock, one moves it
    except FileNotFoundError:
        return
    try:
        if LockOwner(**json.loads(aside.read_text())) != stale:
            os.link(aside, lock)  # a live run's new lock: back into place, unless yet another took the name
    except (OSError, ValueError, TypeError):  # unreadable, or the name taken again: nothing to put back
        pass
    finally:
        aside.unlink(missing_ok=True)


def _create(folder: Path, me: LockOwner) -> int:
    """Create the lock file naming ``me`` and return its descriptor; refuse while a live process holds it."""
    lock = folder / LOCK_NAME
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = lock_owner(folder)
            if owner is None:  # removed meanwhile: try again
                continue
            if owner.is_alive():
                raise _refusal(folder, owner) from None
            _remove_stale(lock, owner)
            continue
        os.write(fd, json.dumps(asdict(me)).encode())
        return fd
    raise _refusal(folder, lock_owner(folder) or me)


@contextmanager
def run_folder_lock(folder: str | os.PathLike) -> Iterator[Path | None]:
    """Hold the lock of run folder ``folder`` for the block and give its path (``None`` in a helper process
    of a multi-process run, which works under its first process's lock).

    Raises :class:`~.errors.RunFolderInUseError`, naming the holder, while another live run holds it.
    """
    if not takes_the_lock():
        yield None
        return
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    me = LockOwner(pid, socket.gethostname(), started, _process_state(pid)[1])
    fd = _create(path, me)
    lock = path / LOCK_NAME
    try:
        yield lock
    finally:
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:  # still ours: never remove another run's lock
                lock.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
