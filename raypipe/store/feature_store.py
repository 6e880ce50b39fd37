"""The feature store: versioned Parquet tables on a local folder or any pyarrow filesystem.

Writes are atomic per file (temporary name, then rename on local disks; a single PUT on object
stores) and idempotent (file names derive from the media id, so a re-run overwrites rather than
duplicates). A media counts as done for an extractor version once its ``media`` row exists;
frame rows are written first, so a crash in between leaves nothing that a re-run will not replace.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypipe.errors import RaypipeError
from raypipe.store import layout
from raypipe.store.schema import (
    CROP_SCHEMA,
    FRAME_SCHEMA,
    MANIFEST_SCHEMA,
    MEDIA_SCHEMA,
    STATUS_FAILED,
    STATUS_MISSING,
    STATUS_OK,
)

log = logging.getLogger(__name__)


#: Columns of :meth:`FeatureStore.status`, in order.
STATUS_COLUMNS = (
    "media_id",
    "extractor",
    "version",
    "status",
    "error",
    "frames",
    "face_frames",
    "tracks",
    "face_score",
    "probe_s",
    "decode_s",
    "faces_s",
    "embed_s",
)


@dataclass(frozen=True)
class ExtractorRecord:
    """What the store knows about one extractor: its current version, level and config."""

    name: str
    version: str
    level: str
    dim: int
    modality: str
    config: dict[str, Any]


class FeatureStore:
    """Read and write one feature store rooted at ``uri`` (a path, ``file://``, ``s3://``...)."""

    def __init__(self, uri: str) -> None:
        self.uri = str(uri)
        try:
            self.fs, root = pafs.FileSystem.from_uri(self.uri)
        except (pa.ArrowInvalid, ValueError):
            self.fs, root = pafs.LocalFileSystem(), self.uri
        if isinstance(self.fs, pafs.LocalFileSystem):
            import os

            root = os.path.abspath(root)
        self.root = root.rstrip("/")
        self._local = isinstance(self.fs, pafs.LocalFileSystem)

    # -- paths -------------------------------------------------------------------------------
    def path(self, relative: str) -> str:
        """Absolute path (within the store's filesystem) of a store-relative path."""
        return f"{self.root}/{relative}"

    def exists(self, relative: str) -> bool:
        """Whether a file exists at a store-relative path."""
        return self.fs.get_file_info(self.path(relative)).type == pafs.FileType.File

    def initialise(self) -> None:
        """Create the store (idempotent) and check that an existing one has a known format.

        Refuses a path that is a file, or a non-empty folder that is not a store (raypipe
        would otherwise write its tables among someone else's files).
        """
        kind = self.fs.get_file_info(self.root).type
        if kind == pafs.FileType.File:
            raise RaypipeError(
                f"Store path '{self.uri}' is an existing file; give a folder (a new one, or a "
                "store written by `raypipe extract`)."
            )
        if kind == pafs.FileType.Directory and not self.is_store():
            selector = pafs.FileSelector(self.root, recursive=False)
            if self.fs.get_file_info(selector):
                raise RaypipeError(
                    f"Store path '{self.uri}' is a folder with other files and no "
                    f"{layout.MARKER}, so not a raypipe feature store; give a new or empty "
                    "folder, or an existing store."
                )
        self.fs.create_dir(self.root, recursive=True)
        if self.exists(layout.MARKER):
            meta = json.loads(self._read_bytes(layout.MARKER))
            if meta.get("format") != layout.FORMAT_VERSION:
                raise RaypipeError(
                    f"Store '{self.uri}' has format {meta.get('format')}, this raypipe writes "
                    f"format {layout.FORMAT_VERSION}; use a new store folder."
                )
            return
        self._write_bytes(layout.MARKER, json.dumps({"format": layout.FORMAT_VERSION}).encode())

    def is_store(self) -> bool:
        """Whether ``uri`` holds a raypipe store."""
        return self.exists(layout.MARKER)

    def require(self) -> None:
        """Raise a clear error unless ``uri`` holds a raypipe store."""
        if not self.is_store():
            raise RaypipeError(
                f"'{self.uri}' is not a raypipe feature store (no {layout.MARKER}); run "
                "`raypipe extract --manifest M --out STORE` first."
            )

    # -- atomic primitives -------------------------------------------------------------------
    def _write_bytes(self, relative: str, data: bytes) -> None:
        target = self.path(relative)
        parent = target.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        if self._local:
            temporary = f"{parent}/.tmp-{uuid.uuid4().hex}"
            with self.fs.open_output_stream(temporary) as stream:
                stream.write(data)
            self.fs.move(temporary, target)
        else:
            with self.fs.open_output_stream(target) as stream:
                stream.write(data)

    def _read_bytes(self, relative: str) -> bytes:
        with self.fs.open_input_stream(self.path(relative)) as stream:
            return stream.read()

    def write_table(self, relative: str, table: pa.Table) -> None:
        """Write ``table`` as one Parquet file at ``relative``, atomically."""
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        self._write_bytes(relative, sink.getvalue().to_pybytes())

    def read_table(self, relative: str, schema: pa.Schema | None = None) -> pa.Table:
        """Read all Parquet files under a store-relative folder (hive partitions become columns).

        Returns an empty table (of ``schema``, if given) when the folder does not exist.
        """
        where = self.path(relative)
        info = self.fs.get_file_info(where)
        if info.type == pafs.FileType.NotFound:
            return (schema or pa.schema([])).empty_table()
        dataset = pads.dataset(
            where,
            filesystem=self.fs,
            format="parquet",
            partitioning="hive",
            exclude_invalid_files=False,
            ignore_prefixes=[".", "_"],
        )
        return dataset.to_table()

    # -- manifest and extractor registry -----------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's lock while reading and rewriting a shared file (the manifest, the
        extractor registry), so two jobs writing one local store at once both keep their
        changes. Object stores have no lock: run one job at a time per store there."""
        if not self._local:
            yield
            return
        import fcntl

        self.fs.create_dir(self.root, recursive=True)
        with open(self.path(layout.LOCK), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write_manifest(self, manifest: pd.DataFrame) -> None:
        """Merge manifest rows (upsert by media_id) into the store's manifest."""
        columns = [field.name for field in MANIFEST_SCHEMA]
        incoming = manifest.reindex(columns=columns).astype(object)
        incoming = incoming.where(pd.notna(incoming), None)
        with self._locked():
            if self.exists(layout.MANIFEST):
                current = self.read_manifest()
                current = current[~current["media_id"].isin(incoming["media_id"])]
                incoming = pd.concat([current, incoming], ignore_index=True)
            table = pa.Table.from_pandas(incoming, schema=MANIFEST_SCHEMA, preserve_index=False)
            self.write_table(layout.MANIFEST, table)

    def read_manifest(self) -> pd.DataFrame:
        """The store's manifest (media_id, path, label, split)."""
        if not self.exists(layout.MANIFEST):
            return MANIFEST_SCHEMA.empty_table().to_pandas()
        with self.fs.open_input_file(self.path(layout.MANIFEST)) as handle:
            return pq.read_table(handle).to_pandas()

    def register_extractors(self, records: Iterable[ExtractorRecord]) -> None:
        """Record the current version of each extractor (the versions readers default to)."""
        with self._locked():
            registry = self.extractors()
            for record in records:
                registry[record.name] = record
            payload = {name: record.__dict__ for name, record in sorted(registry.items())}
            self._write_bytes(layout.EXTRACTORS, json.dumps(payload, indent=2).encode())

    def write_job_record(self, record: Mapping[str, Any], name: str | None = None) -> str:
        """Write one extract job's record (its resolved config, raypipe version, code
        revision...) as ``jobs/<name>.json``; a new name (UTC time + random suffix) unless
        ``name`` is given (to rewrite a job's record when it ends). Returns the name."""
        if name is None:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            name = f"{stamp}-{uuid.uuid4().hex[:8]}"
        payload = json.dumps(dict(record), indent=2, default=str).encode()
        self._write_bytes(f"{layout.JOBS}/{name}.json", payload)
        return name

    def job_records(self) -> list[dict[str, Any]]:
        """Every extract job's record, oldest first."""
        selector = pafs.FileSelector(self.path(layout.JOBS), allow_not_found=True)
        files = sorted(
            info.path for info in self.fs.get_file_info(selector) if info.path.endswith(".json")
        )
        records = []
        for path in files:
            with self.fs.open_input_stream(path) as stream:
                records.append(json.loads(stream.read()))
        return records

    def extractors(self) -> dict[str, ExtractorRecord]:
        """The current version of each extractor, by name."""
        if not self.exists(layout.EXTRACTORS):
            return {}
        payload = json.loads(self._read_bytes(layout.EXTRACTORS))
        return {name: ExtractorRecord(**record) for name, record in payload.items()}

    # -- per-media results -------------------------------------------------------------------
    def done_media(
        self, extractor: str, version: str, retry: Callable[[str], bool] | None = None
    ) -> set[str]:
        """Media ids with a result for this extractor version: ok, no_audio, or failed unless
        ``retry(error)`` says the failure is worth another attempt."""
        table = self.read_table(layout.partition_dir("media", extractor, version), MEDIA_SCHEMA)
        if table.num_rows == 0:
            return set()
        ids = table.column("media_id").to_pylist()
        if retry is None:
            return set(ids)
        statuses = table.column("status").to_pylist()
        errors = table.column("error").to_pylist()
        return {
            media_id
            for media_id, status, error in zip(ids, statuses, errors, strict=True)
            if status != STATUS_FAILED or not retry(error or "")
        }

    def write_result(
        self,
        extractor: str,
        version: str,
        media_id: str,
        media_row: Mapping[str, Any],
        frame_rows: pa.Table | None = None,
        crop_rows: pa.Table | None = None,
    ) -> None:
        """Write one media's result: crops and frame rows first, then the media row (done)."""
        if crop_rows is not None:
            self.write_table(layout.media_file("crops", extractor, version, media_id), crop_rows)
        if frame_rows is not None:
            self.write_table(layout.media_file("frames", extractor, version, media_id), frame_rows)
        row = {field.name: media_row.get(field.name) for field in MEDIA_SCHEMA}
        row["media_id"] = media_id
        row["written_at"] = datetime.now(timezone.utc)
        table = pa.Table.from_pylist([row], schema=MEDIA_SCHEMA)
        self.write_table(layout.media_file("media", extractor, version, media_id), table)

    def media_table(self, extractor: str, version: str | None = None) -> pd.DataFrame:
        """Media-level rows of one extractor (its current version unless ``version`` is given)."""
        version = version or self._current_version(extractor)
        table = self.read_table(layout.partition_dir("media", extractor, version), MEDIA_SCHEMA)
        return table.to_pandas()

    def frame_table(self, extractor: str, version: str | None = None) -> pd.DataFrame:
        """Frame-level rows of one extractor (its current version unless ``version`` is given)."""
        version = version or self._current_version(extractor)
        table = self.read_table(layout.partition_dir("frames", extractor, version), FRAME_SCHEMA)
        return table.to_pandas()

    def crop_table(self, extractor: str, version: str | None = None) -> pd.DataFrame:
        """Aligned face crops of one extractor (docs/store.md: ``crops`` table)."""
        version = version or self._current_version(extractor)
        table = self.read_table(layout.partition_dir("crops", extractor, version), CROP_SCHEMA)
        return table.to_pandas()

    def _current_version(self, extractor: str) -> str:
        registry = self.extractors()
        if extractor not in registry:
            known = ", ".join(sorted(registry)) or "none yet"
            raise RaypipeError(
                f"Store '{self.uri}' has no extractor '{extractor}' (known: {known}); "
                "run `raypipe extract` with it first."
            )
        return registry[extractor].version

    def status(self) -> pd.DataFrame:
        """One row per (media id, extractor) for the current version of every extractor.

        Columns: media_id, extractor, version, status (ok | failed | missing), error, frames,
        face_frames, and the quality summary of visual extractors: tracks, face_score (mean
        detector confidence), probe_s, decode_s, faces_s, embed_s (seconds per stage). Media
        listed in the store's manifest without a row are ``missing``.
        """
        manifest = self.read_manifest()
        frames = []
        for name, record in sorted(self.extractors().items()):
            rows = self.media_table(name, record.version)
            rows = rows.reindex(columns=["media_id", *STATUS_COLUMNS[3:]]).copy()
            known = set(rows["media_id"])
            absent = [m for m in manifest["media_id"] if m not in known]
            if absent:
                rows = pd.concat(
                    [rows, pd.DataFrame({"media_id": absent, "status": STATUS_MISSING})],
                    ignore_index=True,
                )
            rows.insert(1, "extractor", name)
            rows.insert(2, "version", record.version)
            if record.level != "frame":
                for column in STATUS_COLUMNS[5:]:
                    rows[column] = None
            frames.append(rows)
        columns = list(STATUS_COLUMNS)
        if not frames:
            return pd.DataFrame(columns=columns)
        result = pd.concat(frames, ignore_index=True)[columns]
        order = {STATUS_FAILED: 0, STATUS_MISSING: 1, STATUS_OK: 2, "no_audio": 3}
        result["_order"] = result["status"].map(order)
        result = result.sort_values(["_order", "media_id", "extractor"]).drop(columns="_order")
        for column in ("frames", "face_frames", "tracks"):
            result[column] = pd.to_numeric(result[column]).astype("Int64")
        # Plain Python values, None where absent: what tables and JSON show.
        result = result.astype(object).where(result.notna(), None)
        return result.reset_index(drop=True)
