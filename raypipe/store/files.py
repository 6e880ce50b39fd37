"""Files of one store on a local disk or any pyarrow filesystem: atomic writes, checksums.

A file is written to a temporary name beside its target and renamed into place (local disks), or
sent in one PUT (object stores, where an object appears whole or not at all). A failed write
removes its temporary file, so a full disk leaves nothing behind but the error.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypipe.errors import RaypipeError
from raypipe.media import remote
from raypipe.store.layout import TEMPORARY_PREFIX


def _reason(exc: OSError) -> str:
    """What went wrong, in the system's words (``no space left on device``), one line."""
    code = exc.errno
    if code is None and (found := re.search(r"\[errno (\d+)\]", str(exc), re.IGNORECASE)):
        code = int(found.group(1))
    if code:
        return os.strerror(code).lower()
    return " ".join(str(exc).split())[:200]


def _single_put(uri: str) -> str:
    """An ``s3://`` URI with ``allow_delayed_open=true`` (unless it says otherwise): a file
    smaller than one upload part then goes in a single PUT instead of a three-request
    multipart upload."""
    if not uri.startswith("s3://") or "allow_delayed_open=" in uri:
        return uri
    return f"{uri}{'&' if '?' in uri else '?'}allow_delayed_open=true"


class StoreFiles:
    """Reads and writes files under ``uri`` (a path, ``file://``, ``s3://``...)."""

    def __init__(self, uri: str) -> None:
        self.uri = str(uri)
        try:
            self.fs, root = pafs.FileSystem.from_uri(_single_put(self.uri))
        except (pa.ArrowInvalid, ValueError):
            self.fs, root = pafs.LocalFileSystem(), self.uri
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        if self.local:
            root = os.path.abspath(root)
        self.root = root.rstrip("/")

    def path(self, relative: str) -> str:
        """Absolute path (within the store's filesystem) of a store-relative path."""
        return f"{self.root}/{relative}" if relative else self.root

    def relative(self, absolute: str) -> str:
        """Store-relative form of an absolute path inside the store."""
        return absolute[len(self.root) + 1 :]

    def location(self, relative: str = "") -> str:
        """Path or URI (query kept) of a store-relative file or folder, for users and tools."""
        if self.local:
            return self.path(relative)
        return remote.join(self.uri, relative) if relative else self.uri

    def ray_storage(self, relative: str = "") -> tuple[str, pafs.FileSystem | None]:
        """``(storage_path, storage_filesystem)`` for a Ray Tune / Train ``RunConfig`` (or a
        ``Checkpoint``) whose files live under a store-relative folder: on object storage, Ray
        writes results and checkpoints there through this store's own filesystem (endpoint and
        options of its URI), so every node of a cluster reads and resumes them."""
        return self.path(relative), None if self.local else self.fs

    def kind(self, relative: str = "") -> pafs.FileType:
        """File, Directory or NotFound."""
        return self.fs.get_file_info(self.path(relative)).type

    def exists(self, relative: str) -> bool:
        """Whether a file exists at a store-relative path."""
        return self.kind(relative) == pafs.FileType.File

    def listing(
        self, relative: str, recursive: bool = True, temporary: bool = False
    ) -> list[pafs.FileInfo]:
        """Files (not folders) under a store-relative folder, sorted by path; none if absent.
        Temporary files of writes in progress (or failed) are left out unless ``temporary``."""
        selector = pafs.FileSelector(self.path(relative), recursive=recursive, allow_not_found=True)
        infos = [
            i
            for i in self.fs.get_file_info(selector)
            if i.type == pafs.FileType.File
            and (temporary or not i.base_name.startswith(TEMPORARY_PREFIX))
        ]
        return sorted(infos, key=lambda info: info.path)

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write ``data`` at ``relative`` atomically; a failure leaves no temporary file.

        Raises :class:`RaypipeError` naming the file when the filesystem refuses the write
        (full disk, no permission, object store unreachable).
        """
        target = self.path(relative)
        parent = target.rsplit("/", 1)[0]
        temporary = f"{parent}/{TEMPORARY_PREFIX}{uuid.uuid4().hex}" if self.local else target
        try:
            if self.local:  # object stores have no folders (a marker object per folder)
                self.fs.create_dir(parent, recursive=True)
            with self.fs.open_output_stream(temporary) as stream:
                stream.write(data)
            if self.local:
                self.fs.move(temporary, target)
        except OSError as exc:
            if self.local:
                with contextlib.suppress(OSError):
                    self.fs.delete_file(temporary)
            raise RaypipeError(
                f"Cannot write '{target}' ({_reason(exc)}); free space or fix access to the "
                "store, then re-run: finished media are kept."
            ) from None

    def read_bytes(self, relative: str) -> bytes:
        """The bytes of a store-relative file."""
        with self.fs.open_input_stream(self.path(relative)) as stream:
            return stream.read()

    def write_parquet(self, relative: str, table: pa.Table) -> str:
        """Write ``table`` as one Parquet file (zstd), atomically; returns its SHA-256 (hex)."""
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        self.write_bytes(relative, data)
        return hashlib.sha256(data).hexdigest()

    def read_parquet(self, relative: str, columns: list[str] | None = None) -> pa.Table:
        """One Parquet file (raises pyarrow's error if it is damaged)."""
        with self.fs.open_input_file(self.path(relative)) as handle:
            return pq.read_table(handle, columns=columns)

    def sha256(self, relative: str) -> str:
        """SHA-256 (hex) of a store-relative file's bytes."""
        hasher = hashlib.sha256()
        with self.fs.open_input_stream(self.path(relative)) as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                hasher.update(block)
        return hasher.hexdigest()

    def delete(self, relative: str) -> None:
        """Remove a file (no error if it is already gone)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path(relative))

    def move(self, relative: str, to: str) -> None:
        """Move a file within the store (creating the target folder)."""
        target = self.path(to)
        if self.local:
            self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        self.fs.move(self.path(relative), target)

    def write_folder(self, relative: str, local: Path) -> None:
        """Copy every file of a local folder into a store-relative folder (each file whole)."""
        for path in sorted(p for p in Path(local).rglob("*") if p.is_file()):
            name = path.relative_to(local).as_posix()
            self.write_bytes(f"{relative}/{name}" if relative else name, path.read_bytes())

    def read_folder(self, relative: str, local: Path) -> None:
        """Copy every file under a store-relative folder into a local folder (none if absent)."""
        prefix = f"{self.path(relative)}/"
        for info in self.listing(relative):
            target = Path(local) / info.path[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read_bytes(self.relative(info.path)))

    def delete_matching(self, relative: str, patterns: Sequence[str]) -> None:
        """Remove the files under a store-relative folder whose names match a glob pattern."""
        for info in self.listing(relative):
            if any(fnmatch.fnmatch(info.base_name, p) for p in patterns):
                self.delete(self.relative(info.path))

    def walk(self) -> Iterator[pafs.FileInfo]:
        """Every file in the store, temporary ones included."""
        yield from self.listing("", temporary=True)


def ray_storage(location: str | Path) -> tuple[str, pafs.FileSystem | None]:
    """``(storage_path, storage_filesystem)`` of a folder's path or URI, for Ray's
    ``RunConfig`` and ``Checkpoint`` (see :meth:`StoreFiles.ray_storage`)."""
    return StoreFiles(str(location)).ray_storage()


def write_file(location: str, data: bytes) -> None:
    """Write one file at a path or URI (query kept), whole or not at all: a submission CSV,
    an exported model."""
    base, _, query = str(location).partition("?")
    folder, _, name = base.rstrip("/").rpartition("/")
    StoreFiles(f"{folder or '.'}{'?' + query if query else ''}").write_bytes(name, data)
