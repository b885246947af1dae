"""The package's public modules, found from its files: what the website's API page must document."""

from __future__ import annotations

from pathlib import Path

import nflows_tutorial


def public_modules(package_dir: Path = Path(nflows_tutorial.__file__).parent) -> list[str]:
    """Every module of the package in ``package_dir`` whose dotted name has no part starting with an underscore.

    Read from the files (``x.py`` and packages ``x/__init__.py``), independently of how the site
    lists them, so that a module the site misses is caught.
    """
    names = {package_dir.name}
    for path in package_dir.rglob("*.py"):
        parts = path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        folders = [package_dir.joinpath(*path.relative_to(package_dir).parts[:i]) for i in range(1, len(parts))]
        in_packages = all((folder / "__init__.py").is_file() for folder in folders)
        if parts and in_packages and not any(part.startswith("_") for part in parts):
            names.add(".".join((package_dir.name, *parts)))
    return sorted(names)
