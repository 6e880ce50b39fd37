"""Media and manifests on object storage (``s3://``, ``gs://``, whatever pyarrow reads).

Paths with a scheme are read through pyarrow's filesystems; credentials come from the
environment or the machine's role (``AWS_ACCESS_KEY_ID``..., an instance profile), never from
raypipe's configs. Decoders need a local file, so a worker copies a remote media file into
local scratch (``RAYPIPE_SCRATCH``, else the system's temporary folder) for as long as it
processes it, refusing files larger than :data:`MAX_STAGE_BYTES`, and removes the copy after.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.fs as pafs

from raypipe.errors import MediaError

#: Largest remote media file copied to local scratch, bytes (override: RAYPIPE_MAX_STAGE_MB).
MAX_STAGE_BYTES = int(float(os.environ.get("RAYPIPE_MAX_STAGE_MB", "4096")) * 2**20)


def is_uri(path: object) -> bool:
    """Whether ``path`` names a file on a non-local filesystem (``scheme://...``)."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def parent(uri: str) -> str:
    """The folder of a URI (``s3://b/a/m.csv`` -> ``s3://b/a``), query kept."""
    base, _, query = uri.partition("?")
    return base.rsplit("/", 1)[0] + (f"?{query}" if query else "")


def join(folder: str, relative: str) -> str:
    """``relative`` under a folder URI (``./`` parts dropped), query kept."""
    base, _, query = folder.partition("?")
    while relative.startswith("./"):
        relative = relative[2:]
    return f"{base.rstrip('/')}/{relative}" + (f"?{query}" if query else "")


def _split(uri: str) -> tuple[pafs.FileSystem, str]:
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, ValueError) as exc:
        raise MediaError(f"'{uri}' is not a URI pyarrow can open ({exc}).") from None


def read_bytes(uri: str) -> bytes:
    """The bytes of a remote file (raises FileNotFoundError when it does not exist)."""
    fs, path = _split(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def file_infos(uris: Sequence[str]) -> list[tuple[int, int] | None]:
    """(size in bytes, modification time in ns) of each URI, None where there is no file;
    one listing call per filesystem for the lot."""
    out: list[tuple[int, int] | None] = [None] * len(uris)
    groups: dict[str, list[tuple[int, str]]] = {}
    systems: dict[str, pafs.FileSystem] = {}
    for position, uri in enumerate(uris):
        fs, path = _split(uri)
        key = uri.split("://", 1)[0] + "://" + uri.partition("?")[2]
        systems.setdefault(key, fs)
        groups.setdefault(key, []).append((position, path))
    for key, members in groups.items():
        infos = systems[key].get_file_info([path for _, path in members])
        for (position, _), info in zip(members, infos, strict=True):
            if info.type == pafs.FileType.File:
                mtime = info.mtime_ns if info.mtime_ns is not None else 0
                out[position] = (int(info.size or 0), int(mtime))
    return out


def read_edges(uri: str, edge: int) -> tuple[int, bytes, bytes]:
    """Size, first ``edge`` bytes and last ``edge`` bytes of a remote file (two ranged reads)."""
    fs, path = _split(uri)
    with fs.open_input_file(path) as handle:
        size = handle.size()
        head = handle.read_at(min(edge, size), 0)
        tail = handle.read_at(edge, max(edge, size - edge)) if size > edge else b""
    return size, head, tail


@contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local path for ``path``: itself when local, else a copy in local scratch, removed on
    exit. The copy keeps the file's name, so messages about it still name the media."""
    if not is_uri(path):
        yield path
        return
    fs, remote = _split(path)
    info = fs.get_file_info(remote)
    if info.type != pafs.FileType.File:
        raise MediaError(f"{path}: no such file on its object store; fix the manifest row.")
    if (info.size or 0) > MAX_STAGE_BYTES:
        raise MediaError(
            f"{path}: {info.size / 2**20:.0f} MiB is more than the {MAX_STAGE_BYTES / 2**20:.0f}"
            " MiB a worker copies to local scratch; raise RAYPIPE_MAX_STAGE_MB."
        )
    folder = tempfile.mkdtemp(prefix="raypipe-media-", dir=os.environ.get("RAYPIPE_SCRATCH"))
    local = os.path.join(folder, remote.rsplit("/", 1)[-1] or "media")
    try:
        with fs.open_input_stream(remote) as source, open(local, "wb") as target:
            while block := source.read(1 << 22):
                target.write(block)
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)
