"""Finding pickles by their content, whatever a file is called: a pickle stream starts with the
PROTO opcode (0x80, protocols 2-5), and Ray's JSON state embeds cloudpickled values under
``CLOUDPICKLE_FALLBACK``."""

from __future__ import annotations

from pathlib import Path


def pickled_files(root: Path) -> list[Path]:
    """Files under ``root`` that are pickles or hold pickled values."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if (
            data[:1] == b"\x80"
            or b"CLOUDPICKLE_FALLBACK" in data
            or path.suffix in (".pkl", ".pickle", ".joblib")
        ):
            found.append(path)
    return found
