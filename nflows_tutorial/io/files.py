"""Writing a file so that a reader finds either the old file or the whole new one, never a part."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write", "PARTIAL_SUFFIX"]

#: Ending of the temporary files :func:`atomic_write` creates beside their target.
PARTIAL_SUFFIX = ".part"


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Give a temporary path beside ``path`` to write to; when the block ends without an error, rename
    it onto ``path`` in one step. On an error the temporary file is removed and ``path`` is untouched.

    The temporary file is ``.<name>.<random>.part`` in the same folder (so the rename never crosses file systems).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "numbers.txt"
        >>> with atomic_write(target) as tmp:
        ...     _ = tmp.write_text("1 2 3")
        >>> target.read_text()
        '1 2 3'
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
