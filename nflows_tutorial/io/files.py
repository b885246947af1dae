"""Files a reader can trust: written whole or not at all, and damaged ones set aside rather than overwritten."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write", "quarantine", "PARTIAL_SUFFIX"]

#: Ending of the temporary files :func:`atomic_write` creates beside their target.
PARTIAL_SUFFIX = ".part"


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Give a temporary path beside ``path`` to write to; when the block ends without an error, rename
    it onto ``path`` in one step. On an error the temporary file is removed and ``path`` is untouched.

    The temporary file is ``.<name>.<random>.part`` in the same folder (so the rename never crosses file systems);
    ``path`` ends up with the permissions the umask gives a new file (0644 under the usual umask 022).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "numbers.txt"
        >>> with atomic_write(target) as tmp:
        ...     _ = tmp.write_text("1 2 3")
        >>> target.read_text()
        '1 2 3'
    """
    target = Path(path)
    tmp = _create_beside(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _create_beside(target: Path) -> Path:
    """Create an empty, new ``.<name>.<random>.part`` file beside ``target`` and return its path.

    Created with mode 0666 so that the umask decides the permissions, as for any file ``open()``
    creates (``mkstemp`` would give 0600, and the rename keeps a file's mode: a lecturer's
    checkpoints on a shared course server would then be unreadable by the class).
    """
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # another writer drew the same name: draw again
            continue
        return tmp


def quarantine(path: Path) -> Path:
    """Rename a damaged ``path`` to ``<file>.unverified`` (``.unverified.1``, ... if taken) and return the new name.

    An earlier moved-aside file is never replaced. Raises ``OSError`` where the folder is read-only.
    """
    n = 0
    while True:
        aside = path.with_name(path.name + ".unverified" + (f".{n}" if n else ""))
        try:
            os.link(path, aside)  # fails if ``aside`` exists, so nothing is overwritten
        except FileExistsError:
            n += 1
            continue
        except FileNotFoundError:  # a concurrent process moved it first
            return aside
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK):
                raise
            if aside.exists():  # no hard links on this file system: check, then rename
                n += 1
                continue
            os.rename(path, aside)
            return aside
        path.unlink(missing_ok=True)
        return aside
