"""Output folders of the course commands: a command never overwrites a file it did not write.

Each command keeps a manifest in its output folder, ``.nflows-tutorial-<command>.json``, with the
SHA-256 of every file it wrote there. A file already in the folder is replaced only when it is one the
command wrote and nobody has edited since (its digest is in the manifest), or when it already holds
what the command would write. Any other file in the way (a student's solutions, a lecturer's own
page) makes the command refuse, naming the files, unless it is forced. Files the command would not
write are never touched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from ..errors import SettingsError
from ..io.files import atomic_write

__all__ = ["OutputFolderError", "manifest_path", "output_folder", "write_outputs"]

#: How many of the files in the way a refusal names before it counts the rest.
_NAMED = 5


class OutputFolderError(SettingsError, ValueError):
    """The output folder cannot be written as asked: it is a file, or it holds files the command did not write."""


def manifest_path(out: Path, command: str) -> Path:
    """The file in ``out`` that records what ``command`` wrote there."""
    return Path(out) / f".nflows-tutorial-{command}.json"


def output_folder(out: str | Path) -> Path:
    """``out`` as a path, once it is checked that neither it nor a folder above it is a file."""
    out = Path(out)
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                raise OutputFolderError(f"{folder} is a file, not a folder; choose a folder for {{out}}", out=...)
            break
    return out


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _content(source: bytes | Path) -> bytes:
    return source if isinstance(source, bytes) else source.read_bytes()


def _recorded(out: Path, command: str) -> dict[str, list[str]]:
    """The digests ``command`` wrote into ``out``, by relative path; none when the manifest is missing or damaged."""
    try:
        files = json.loads(manifest_path(out, command).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # a damaged manifest vouches for nothing: every file in the way is then the user's
    if not isinstance(files, dict):
        return {}
    return {name: digests for name, digests in files.items() if isinstance(digests, list)}


def _record(out: Path, command: str, files: Mapping[str, list[str]]) -> None:
    with atomic_write(manifest_path(out, command)) as tmp:
        tmp.write_text(json.dumps({"command": command, "files": dict(sorted(files.items()))}, indent=1))


def _in_the_way(target: Path, digest: str, recorded: list[str]) -> bool:
    """Whether writing ``target`` would destroy something: it exists, differs, and the command did not write it."""
    if not target.exists() and not target.is_symlink():
        return False
    if not target.is_file():
        return True
    current = _digest(target.read_bytes())
    return current != digest and current not in recorded


def _refusal(out: Path, command: str, names: list[str]) -> OutputFolderError:
    shown = ", ".join(names[:_NAMED]) + (f" and {len(names) - _NAMED} more" if len(names) > _NAMED else "")
    return OutputFolderError(
        f"{out} holds {len(names)} file(s) that {command} would overwrite but did not write, or that were edited "
        f"since: {shown}; keep them by choosing another {{out}}, or overwrite them with {{force}}",
        out=...,
        force=True,
    )


def write_outputs(out: str | Path, files: Mapping[str, bytes | Path], command: str, force: bool = False) -> list[Path]:
    """Write ``files`` (relative path -> content, or a file to copy) into ``out`` for ``command``; return them.

    Raises :class:`OutputFolderError`, before writing anything, where ``out`` is a file or where a
    file in the way was not written by ``command`` (unless ``force``). Each file is replaced whole.
    """
    out = output_folder(out)
    recorded = _recorded(out, command)
    digests = {name: _digest(_content(source)) for name, source in files.items()}
    in_the_way = sorted(name for name, d in digests.items() if _in_the_way(out / name, d, recorded.get(name, [])))
    if in_the_way and not force:
        raise _refusal(out, command, in_the_way)
    out.mkdir(parents=True, exist_ok=True)
    # Recorded before writing, so that a run stopped half-way leaves every file it wrote vouched for.
    _record(out, command, {**recorded, **{name: [*recorded.get(name, []), d] for name, d in digests.items()}})
    for name, source in files.items():
        target = out / name
        if target.is_file() and _digest(target.read_bytes()) == digests[name]:
            continue  # already what it should be: left as it is, modification time included
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target) as tmp:
            tmp.write_bytes(_content(source))
    _record(out, command, {**recorded, **{name: [d] for name, d in digests.items()}})
    return [out / name for name in files]
