"""The feature store: versioned Parquet tables and their index, on a local folder or any pyarrow
filesystem (docs/store.md).

A write holds many media: for each extractor version it writes the crops, frames and media
files, then one index file naming them with their SHA-256 (:mod:`raypipe.store.index`). A media
counts as done once its index row exists, so a crash loses at most the media of the write in
flight, and a re-run never duplicates (the newest index row wins; compaction drops the rest).
Files are never modified after they are written, so several jobs may write one store at once on
object stores too.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from raypipe.errors import RaypipeError
from raypipe.store import index, layout
from raypipe.store.files import StoreFiles
from raypipe.store.fingerprint import Fingerprint
from raypipe.store.schema import (
    CROP_SCHEMA,
    FRAME_SCHEMA,
    INDEX_SCHEMA,
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
    "coverage",
    "tracks",
    "face_score",
    "probe_s",
    "decode_s",
    "faces_s",
    "embed_s",
)
#: Status columns that only visual extractors fill.
_VISUAL_COLUMNS = ("frames", "face_frames", "tracks", "face_score", "probe_s", "decode_s")
_LEVEL_SCHEMAS = {"media": MEDIA_SCHEMA, "frames": FRAME_SCHEMA, "crops": CROP_SCHEMA}


@dataclass(frozen=True)
class ExtractorRecord:
    """What the store knows about one extractor version: level, size, config, feature names."""

    name: str
    version: str
    level: str
    dim: int
    modality: str
    config: dict[str, Any]
    #: Name of each entry of the feature vector (``dim`` of them; empty when unknown).
    feature_names: list[str] = field(default_factory=list)
    #: When a job last registered this version (ISO 8601, UTC); the newest is current.
    registered_at: str | None = None


@dataclass
class MediaResult:
    """One media's result for one extractor version, as a write takes it."""

    extractor: str
    version: str
    media_id: str
    #: Status, error, counts and media-level ``features`` (:data:`MEDIA_SCHEMA` columns).
    media_row: Mapping[str, Any]
    frame_rows: pa.Table | None = None
    crop_rows: pa.Table | None = None
    #: The file the result was computed from, and its fingerprint (None: no readable file).
    path: str | None = None
    source: Fingerprint | None = None


class FeatureStore:
    """Read and write one feature store rooted at ``uri`` (a path, ``file://``, ``s3://``...)."""

    def __init__(self, uri: str) -> None:
        self.files = StoreFiles(uri)
        self.uri = self.files.uri
        self.fs = self.files.fs
        self.root = self.files.root

    # -- the store itself --------------------------------------------------------------------
    def path(self, relative: str) -> str:
        """Absolute path (within the store's filesystem) of a store-relative path."""
        return self.files.path(relative)

    def format(self) -> int | None:
        """The store's format number, or None when ``uri`` holds no store."""
        if not self.files.exists(layout.MARKER):
            return None
        try:
            return int(json.loads(self.files.read_bytes(layout.MARKER))["format"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RaypipeError(
                f"'{self.path(layout.MARKER)}' is damaged ({exc}); restore it or write "
                f'{{"format": {layout.FORMAT_VERSION}}} into it.'
            ) from None

    def initialise(self) -> None:
        """Create the store (idempotent) and check that an existing one has this format.

        Refuses a path that is a file, or a non-empty folder that is not a store (raypipe
        would otherwise write its tables among someone else's files).
        """
        kind = self.files.kind()
        if kind == pafs.FileType.File:
            raise RaypipeError(
                f"Store path '{self.uri}' is an existing file; give a folder (a new one, or a "
                "store written by `raypipe extract`)."
            )
        other = kind == pafs.FileType.Directory and not self.is_store()
        if other and self.fs.get_file_info(pafs.FileSelector(self.root)):
            raise RaypipeError(
                f"Store path '{self.uri}' is a folder with other files and no "
                f"{layout.MARKER}, so not a raypipe feature store; give a new or empty "
                "folder, or an existing store."
            )
        if self.is_store():
            self.require()
            return
        self.files.write_bytes(
            layout.MARKER, json.dumps({"format": layout.FORMAT_VERSION}).encode()
        )

    def is_store(self) -> bool:
        """Whether ``uri`` holds a raypipe store (of any format)."""
        return self.files.exists(layout.MARKER)

    def require(self) -> None:
        """Raise a clear error unless ``uri`` holds a store of the format this raypipe reads."""
        found = self.format()
        if found is None:
            raise RaypipeError(
                f"'{self.uri}' is not a raypipe feature store (no {layout.MARKER}); run "
                "`raypipe extract --manifest M --out STORE` first."
            )
        if found == 1:
            raise RaypipeError(
                f"Store '{self.uri}' has format 1 (one file per media); convert it once with "
                f"`raypipe store migrate {self.uri}` (nothing is recomputed)."
            )
        if found != layout.FORMAT_VERSION:
            raise RaypipeError(
                f"Store '{self.uri}' has format {found}, this raypipe reads format "
                f"{layout.FORMAT_VERSION}; use the raypipe that wrote it, or a new store."
            )

    # -- manifest ----------------------------------------------------------------------------
    def write_manifest(self, manifest: pd.DataFrame) -> int:
        """Record manifest rows (media_id, path, label, split) that are new or changed.

        The newest row of an id is its current row. Returns how many rows were recorded.
        """
        columns = [f.name for f in MANIFEST_SCHEMA if f.name != "recorded_at"]
        incoming = manifest.reindex(columns=columns).astype(object)
        incoming = incoming.where(pd.notna(incoming), None).drop_duplicates("media_id", keep="last")
        current = self.read_manifest()
        if len(current):
            merged = incoming.merge(
                current, on="media_id", how="left", suffixes=("", "_old"), indicator=True
            )
            same = merged["_merge"] == "both"
            for column in columns[1:]:
                a, b = merged[column], merged[f"{column}_old"]
                same &= (a == b) | (a.isna() & b.isna())
            incoming = incoming[~same.to_numpy()]
        if incoming.empty:
            return 0
        incoming = incoming.assign(recorded_at=datetime.now(timezone.utc))
        table = pa.Table.from_pandas(incoming, schema=MANIFEST_SCHEMA, preserve_index=False)
        self.files.write_parquet(f"{layout.MANIFEST_DIR}/{layout.unique_name('part-')}", table)
        return len(incoming)

    def manifest_files(self) -> list[str]:
        """Store-relative files of the manifest, in writing order."""
        return [self.files.relative(i.path) for i in self.files.listing(layout.MANIFEST_DIR)]

    def read_manifest(self) -> pd.DataFrame:
        """The store's manifest: the current row of each media id (media_id, path, label, split).

        A damaged manifest file is named in a warning and skipped (the next ``raypipe
        extract`` records its rows again from the manifest it is given).
        """
        tables = []
        for relative in self.manifest_files():
            try:
                tables.append(self.files.read_parquet(relative).cast(MANIFEST_SCHEMA))
            except (OSError, pa.ArrowException) as exc:
                log.warning(
                    "manifest file '%s' cannot be read (%s); skipped. Run `raypipe store "
                    "verify --repair`, then `raypipe extract` records its rows again.",
                    self.path(relative),
                    " ".join(str(exc).split())[:200],
                )
        columns = [f.name for f in MANIFEST_SCHEMA if f.name != "recorded_at"]
        if not tables:
            return MANIFEST_SCHEMA.empty_table().to_pandas()[columns]
        frame = pa.concat_tables(tables).to_pandas()
        if len(tables) > 1:
            frame = frame.sort_values("recorded_at", kind="stable")
            frame = frame.drop_duplicates("media_id", keep="last")
        return frame[columns].reset_index(drop=True)

    # -- extractor versions ------------------------------------------------------------------
    def register_extractors(self, records: Iterable[ExtractorRecord]) -> None:
        """Record each extractor version and make it current (the one readers default to)."""
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        for record in records:
            payload = {**asdict(record), "registered_at": now}
            self.files.write_bytes(
                layout.extractor_file(record.name, record.version),
                json.dumps(payload, indent=2).encode(),
            )

    def extractor_versions(self) -> list[ExtractorRecord]:
        """Every recorded extractor version (a damaged record is named and skipped)."""
        records = []
        for info in self.files.listing(layout.EXTRACTORS_DIR):
            if not info.path.endswith(".json"):
                continue
            relative = self.files.relative(info.path)
            try:
                records.append(ExtractorRecord(**json.loads(self.files.read_bytes(relative))))
            except (ValueError, TypeError) as exc:
                log.warning(
                    "extractor record '%s' cannot be read (%s); skipped. The next `raypipe "
                    "extract` with that extractor writes it again.",
                    info.path,
                    exc,
                )
        return records

    def extractors(self) -> dict[str, ExtractorRecord]:
        """The current version of each extractor (the one registered last), by name."""
        current: dict[str, ExtractorRecord] = {}
        for record in self.extractor_versions():
            held = current.get(record.name)
            if held is None or (record.registered_at or "") > (held.registered_at or ""):
                current[record.name] = record
        return dict(sorted(current.items()))

    # -- job records -------------------------------------------------------------------------
    def write_job_record(self, record: Mapping[str, Any], name: str | None = None) -> str:
        """Write one extract job's record (its resolved config, raypipe version, code
        revision...) as ``jobs/<name>.json``; a new name (UTC time + random suffix) unless
        ``name`` is given (to rewrite a job's record when it ends). Returns the name."""
        name = name or layout.unique_name(suffix="")
        payload = json.dumps(dict(record), indent=2, default=str).encode()
        self.files.write_bytes(f"{layout.JOBS}/{name}.json", payload)
        return name

    def job_records(self) -> list[dict[str, Any]]:
        """Every extract job's record, oldest first."""
        return [
            json.loads(self.files.read_bytes(self.files.relative(info.path)))
            for info in self.files.listing(layout.JOBS)
            if info.path.endswith(".json")
        ]

    # -- writing results ---------------------------------------------------------------------
    def write_results(self, results: Sequence[MediaResult]) -> None:
        """Write many media's results: per extractor version, the crops, frames and media
        files (many media each), then one index file naming them (the commit)."""
        groups: dict[tuple[str, str], list[MediaResult]] = defaultdict(list)
        for result in results:
            groups[(result.extractor, result.version)].append(result)
        for (extractor, version), group in groups.items():
            self._write_group(extractor, version, group)

    def write_result(
        self,
        extractor: str,
        version: str,
        media_id: str,
        media_row: Mapping[str, Any],
        frame_rows: pa.Table | None = None,
        crop_rows: pa.Table | None = None,
    ) -> None:
        """Write one media's result (one small write; :meth:`write_results` batches)."""
        self.write_results(
            [MediaResult(extractor, version, media_id, media_row, frame_rows, crop_rows)]
        )

    def _write_group(self, extractor: str, version: str, group: list[MediaResult]) -> None:
        refs: dict[str, dict[str, str]] = defaultdict(dict)
        now = datetime.now(timezone.utc)
        for level, attribute in (("crops", "crop_rows"), ("frames", "frame_rows")):
            parts = [
                (r.media_id, getattr(r, attribute))
                for r in group
                if getattr(r, attribute) is not None and getattr(r, attribute).num_rows
            ]
            if not parts:
                continue
            table = pa.concat_tables([t for _, t in parts], promote_options="default")
            relative = self._data_file(level, extractor, version)
            digest = self.files.write_parquet(relative, table)
            for media_id, _ in parts:
                refs[media_id].update({f"{level}_file": relative, f"{level}_sha256": digest})
        media_rows = []
        for result in group:
            row = {f.name: result.media_row.get(f.name) for f in MEDIA_SCHEMA}
            # A converted row keeps the time it was first written; a new one is written now.
            row.update(media_id=result.media_id, written_at=row["written_at"] or now)
            media_rows.append(row)
        relative = self._data_file("media", extractor, version)
        digest = self.files.write_parquet(relative, pa.Table.from_pylist(media_rows, MEDIA_SCHEMA))
        index_rows = []
        for result, row in zip(group, media_rows, strict=True):
            entry = {k: v for k, v in row.items() if k != "features"}
            source = result.source
            entry.update(
                path=result.path,
                size=source.size if source else None,
                mtime_ns=source.mtime_ns if source else None,
                digest=source.digest if source else None,
                media_file=relative,
                media_sha256=digest,
                **refs.get(result.media_id, {}),
            )
            index_rows.append(entry)
        index.commit(self.files, extractor, version, pa.Table.from_pylist(index_rows, INDEX_SCHEMA))

    @staticmethod
    def _data_file(level: str, extractor: str, version: str) -> str:
        return f"{layout.partition_dir(level, extractor, version)}/{layout.unique_name('part-')}"

    # -- reading -----------------------------------------------------------------------------
    def index(self, extractor: str, version: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Live index rows of one extractor version (one per media; see :mod:`.index`)."""
        return index.read_index(self.files, extractor, version, columns).rows

    def done_media(
        self, extractor: str, version: str, retry: Callable[[str], bool] | None = None
    ) -> set[str]:
        """Media ids with a result for this extractor version: ok, no_audio, or failed unless
        ``retry(error)`` says the failure is worth another attempt."""
        rows = self.index(extractor, version, ["error"])
        if retry is None or rows.empty:
            return set(rows["media_id"])
        keep = [
            status != STATUS_FAILED or not retry(error or "")
            for status, error in zip(rows["status"], rows["error"], strict=True)
        ]
        return set(rows.loc[keep, "media_id"])

    def read_level(self, level: str, extractor: str, version: str) -> pa.Table:
        """The live rows of one extractor version's table at ``level`` (media, frames, crops).

        Raises :class:`RaypipeError` naming a data file that cannot be read (readers must not
        train on silently missing rows).
        """
        column = f"{level}_file"
        rows = self.index(extractor, version, [column])
        wanted: dict[str, list[str]] = defaultdict(list)
        for media_id, relative in zip(rows["media_id"], rows[column], strict=True):
            if isinstance(relative, str):
                wanted[relative].append(media_id)
        tables = []
        for relative, ids in sorted(wanted.items()):
            try:
                table = self.files.read_parquet(relative)
            except (OSError, pa.ArrowException) as exc:
                raise RaypipeError(
                    f"Store file '{self.path(relative)}' cannot be read ({exc}); run `raypipe "
                    f"store verify --repair {self.uri}`, then `raypipe extract` to recompute "
                    "its media."
                ) from None
            tables.append(table.filter(pc.is_in(table["media_id"], pa.array(ids))))
        if not tables:
            return _LEVEL_SCHEMAS[level].empty_table()
        return pa.concat_tables(tables, promote_options="default")

    def media_table(self, extractor: str, version: str | None = None) -> pd.DataFrame:
        """Media-level rows of one extractor (its current version unless ``version`` is given)."""
        version = version or self._current_version(extractor)
        return self.read_level("media", extractor, version).to_pandas()

    def frame_table(self, extractor: str, version: str | None = None) -> pd.DataFrame:
        """Frame-level rows of one extractor (its current version unless ``version`` is given)."""
        version = version or self._current_version(extractor)
        return self.read_level("frames", extractor, version).to_pandas()

    def crop_table(self, extractor: str, version: str | None = None) -> pd.DataFrame:
        """Aligned face crops of one extractor (docs/store.md: ``crops`` table)."""
        version = version or self._current_version(extractor)
        return self.read_level("crops", extractor, version).to_pandas()

    def named_features(self, extractor: str, version: str | None = None) -> pd.DataFrame:
        """An extractor's feature vectors with one column per feature name (its record's
        ``feature_names``), beside ``media_id`` (and ``frame_index``, ``timestamp_s`` for
        frame-level extractors). Rows without a vector (failed media, frames without a face)
        are left out."""
        versions = {(r.name, r.version): r for r in self.extractor_versions()}
        version = version or self._current_version(extractor)
        record = versions.get((extractor, version))
        level = "frames" if record is not None and record.level == "frame" else "media"
        table = self.read_level(level, extractor, version)
        table = table.filter(pc.is_valid(table["features"]))
        keys = ["media_id"] if level == "media" else ["media_id", "frame_index", "timestamp_s"]
        values = np.asarray(table["features"].to_pylist(), dtype=np.float32)
        names = list(record.feature_names) if record is not None else []
        if values.size and len(names) != values.shape[1]:
            raise RaypipeError(
                f"Store '{self.uri}': {extractor}@{version} records {len(names)} feature names "
                f"for vectors of {values.shape[1]}; re-run `raypipe extract` to record them."
            )
        named = pd.DataFrame(values.reshape(len(table), len(names)), columns=names)
        return pd.concat([table.select(keys).to_pandas(), named], axis=1)

    def _current_version(self, extractor: str) -> str:
        registry = self.extractors()
        if extractor not in registry:
            known = ", ".join(sorted(registry)) or "none yet"
            raise RaypipeError(
                f"Store '{self.uri}' has no extractor '{extractor}' (known: {known}); "
                "run `raypipe extract` with it first."
            )
        return registry[extractor].version

    # -- status ------------------------------------------------------------------------------
    def status(self, problems_only: bool = False) -> pd.DataFrame:
        """One row per (media id, extractor) for the current version of every extractor.

        Columns: :data:`STATUS_COLUMNS`: status (ok | failed | no_audio | missing), error
        (the reason, or a note on ok rows), frames and face frames, coverage (fraction of the
        declared duration that decoded), and the quality summary of visual extractors: tracks,
        face_score (mean detector confidence), seconds per stage. Media listed in the store's
        manifest without a row are ``missing``. Reads the index only. ``problems_only`` keeps
        failed and missing rows and rows with a note.
        """
        manifest_ids = self.manifest_ids()
        frames = []
        for name, record in self.extractors().items():
            table = index.read_index(self.files, name, record.version, list(STATUS_COLUMNS[4:]))
            table = table.table
            absent = manifest_ids.filter(pc.invert(pc.is_in(manifest_ids, table["media_id"])))
            if problems_only:
                table = table.filter(_problems(table))
            rows = table.to_pandas().reindex(columns=["media_id", *STATUS_COLUMNS[3:]])
            if len(absent):
                missing = pd.DataFrame({"media_id": absent.to_pylist(), "status": STATUS_MISSING})
                rows = pd.concat([rows, missing], ignore_index=True)
            rows.insert(1, "extractor", name)
            rows.insert(2, "version", record.version)
            if record.level != "frame":
                rows[list(_VISUAL_COLUMNS)] = None
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

    def manifest_ids(self) -> pa.Array:
        """The media ids of the store's manifest."""
        return pa.array(self.read_manifest()["media_id"].tolist(), pa.string())

    def summary(self) -> pd.DataFrame:
        """One row per extractor (current version): media by status, missing from the
        manifest, ok rows with a note, median seconds per media, mean decode coverage. Reads
        the index only."""
        manifest_ids = self.manifest_ids()
        records = []
        for name, record in self.extractors().items():
            table = index.read_index(
                self.files, name, record.version, ["error", "seconds", "coverage"]
            ).table
            counts = pc.value_counts(table["status"])
            by_status = dict(
                zip(
                    counts.field("values").to_pylist(),
                    counts.field("counts").to_pylist(),
                    strict=True,
                )
            )
            noted = pc.and_(_problems(table), pc.not_equal(table["status"], STATUS_FAILED))
            present = pc.sum(pc.is_in(manifest_ids, table["media_id"])).as_py() or 0
            seconds = pc.approximate_median(table["seconds"]).as_py()
            coverage = pc.mean(table["coverage"]).as_py()
            records.append(
                {
                    "extractor": name,
                    "version": record.version,
                    "ok": int(by_status.get(STATUS_OK, 0)),
                    "failed": int(by_status.get(STATUS_FAILED, 0)),
                    "no_audio": int(by_status.get("no_audio", 0)),
                    "missing": len(manifest_ids) - int(present),
                    "noted": int(pc.sum(noted).as_py() or 0),
                    "median_s": None if seconds is None else round(seconds, 4),
                    "mean_coverage": None if coverage is None else round(coverage, 4),
                }
            )
        return pd.DataFrame(records)


def _problems(table: pa.Table) -> pa.Array:
    """Rows that need a look: failed, or carrying a note in ``error``."""
    noted = pc.and_(pc.is_valid(table["error"]), pc.not_equal(table["error"], ""))
    return pc.or_(pc.equal(table["status"], STATUS_FAILED), pc.fill_null(noted, False))


def is_in(values: pd.Series, members: Iterable[str]) -> np.ndarray:
    """Which ``values`` are among ``members`` (a boolean array); Arrow's hash join, fast on
    millions of strings where pandas' Arrow-backed ``isin`` loops in Python."""
    found = pc.is_in(pa.array(list(values), pa.string()), pa.array(list(members), pa.string()))
    return found.to_numpy(zero_copy_only=False).astype(bool)
