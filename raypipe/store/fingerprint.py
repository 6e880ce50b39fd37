"""A media file's identity beyond its id: size, modification time and a hash of its content.

The quick digest hashes the size with the first and last :data:`EDGE_BYTES` bytes (two reads,
whatever the file's length): a truncated, re-encoded or different file changes it; a copy
(new path or time stamp, same bytes) does not. ``full`` hashes every byte (SHA-256), for files
that may change in their middle only. A stored result is reused when its fingerprint matches
the file now: same size, and the same modification time or, when the time differs, the same
digest (a touched or copied file is not recomputed).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from raypipe.errors import MediaError
from raypipe.media.remote import file_infos, is_uri, read_bytes, read_edges

#: Bytes hashed at each end of a file by the quick digest.
EDGE_BYTES = 64 * 1024
#: Digest kinds: ``quick`` (size, head and tail) or ``full`` (every byte).
DIGESTS = ("quick", "full")


@dataclass(frozen=True)
class Fingerprint:
    """What a file looked like: ``size`` in bytes, ``mtime_ns`` (nanoseconds since the epoch)
    and ``digest`` (``q:<sha1 hex>`` or ``f:<sha256 hex>``; None until computed)."""

    size: int
    mtime_ns: int
    digest: str | None = None


def stat(path: str) -> Fingerprint | None:
    """Size and modification time of ``path`` (no digest), or None when it cannot be read.
    ``path`` may be a URI (``s3://...``)."""
    if is_uri(path):
        found = file_infos([path])[0]
        return None if found is None else Fingerprint(*found)
    try:
        info = os.stat(path)
    except OSError:
        return None
    return Fingerprint(info.st_size, info.st_mtime_ns)


def stat_many(paths: Iterable[str], threads: int = 8) -> list[Fingerprint | None]:
    """:func:`stat` of many paths, in order (threads overlap the waits of network disks)."""
    paths = list(paths)
    remote = [i for i, p in enumerate(paths) if is_uri(p)]
    if remote:
        out: list[Fingerprint | None] = stat_many([p for p in paths if not is_uri(p)], threads)
        local = iter(out)
        found = iter(file_infos([paths[i] for i in remote]))
        marks = set(remote)
        return [
            (None if (f := next(found)) is None else Fingerprint(*f)) if i in marks else next(local)
            for i in range(len(paths))
        ]
    if len(paths) < 4 * _CHUNK:
        return [stat(p) for p in paths]
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    with ThreadPoolExecutor(threads) as pool:
        return [found for chunk in pool.map(_stat_chunk, chunks) for found in chunk]


#: Paths one thread stats in a row.
_CHUNK = 4096


def _stat_chunk(paths: list[str]) -> list[Fingerprint | None]:
    return [stat(p) for p in paths]


def digest(path: str, kind: str = "quick") -> str:
    """Content digest of ``path`` (see the module docstring); raises OSError if unreadable."""
    if kind not in DIGESTS:
        raise ValueError(f"digest kind must be one of {DIGESTS}, got {kind!r}")
    if is_uri(path):
        return _remote_digest(path, kind)
    with open(path, "rb") as handle:
        if kind == "full":
            hasher = hashlib.sha256()
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
            return f"f:{hasher.hexdigest()}"
        size = os.fstat(handle.fileno()).st_size
        hasher = hashlib.sha1(str(size).encode())
        hasher.update(handle.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            handle.seek(max(EDGE_BYTES, size - EDGE_BYTES))
            hasher.update(handle.read(EDGE_BYTES))
        return f"q:{hasher.hexdigest()}"


def _remote_digest(uri: str, kind: str) -> str:
    if kind == "full":
        return f"f:{hashlib.sha256(read_bytes(uri)).hexdigest()}"
    size, head, tail = read_edges(uri, EDGE_BYTES)
    hasher = hashlib.sha1(str(size).encode())
    hasher.update(head)
    hasher.update(tail)
    return f"q:{hasher.hexdigest()}"


def fingerprint(path: str, kind: str = "quick") -> Fingerprint | None:
    """Size, modification time and digest of ``path``, or None when it cannot be read."""
    found = stat(path)
    if found is None:
        return None
    try:
        return Fingerprint(found.size, found.mtime_ns, digest(path, kind))
    except (OSError, MediaError):
        return None


def unchanged(
    stored: Fingerprint, path: str, now: Fingerprint | None, same_path: bool = True
) -> bool:
    """Whether the file at ``path`` (stat ``now``) still holds what ``stored`` describes.

    Sizes must match; for the same path equal modification times settle it, otherwise (a new
    time, or an id pointed at another path) the digests decide, so a copied or touched file
    keeps its results and a different file with the same size and time does not. A stored
    fingerprint without a digest trusts size and time alone.
    """
    if now is None or now.size != stored.size:
        return False
    if same_path and now.mtime_ns == stored.mtime_ns:
        return True
    if stored.digest is None:
        return now.mtime_ns == stored.mtime_ns
    kind = "full" if stored.digest.startswith("f:") else "quick"
    try:
        return digest(path, kind) == stored.digest
    except OSError:
        return False
