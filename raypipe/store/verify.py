"""Finding damaged store files, and setting them aside so a re-run recomputes what they held.

Every data file's SHA-256 is recorded in the index rows that name it; :func:`verify` reads each
live data file and compares, and tries every index, manifest and extractor file. A file that is
missing, truncated or altered is reported by name. With ``repair``, damaged files move to
``_quarantine/`` (same relative path) and the media whose live rows named a damaged data file
get a ``retired`` index row: they count as not done, and the next ``raypipe extract`` computes
them again. Nothing that verified is touched.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa

from raypipe.store import index, layout
from raypipe.store.feature_store import FeatureStore
from raypipe.store.schema import INDEX_SCHEMA, MANIFEST_SCHEMA, STATUS_RETIRED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Damage:
    """One damaged file: its store-relative path, its kind and what is wrong."""

    path: str
    kind: str
    problem: str


@dataclass
class VerifyReport:
    """What :func:`verify` checked and found."""

    files_checked: int = 0
    damaged: list[Damage] = field(default_factory=list)
    #: Media retired by a repair, per "extractor@version".
    retired: dict[str, int] = field(default_factory=dict)
    moved: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No damage found."""
        return not self.damaged


def verify(store: FeatureStore, repair: bool = False) -> VerifyReport:
    """Check every file the store reads; with ``repair``, set damaged ones aside."""
    store.require()
    files = store.files
    report = VerifyReport()
    for relative in store.manifest_files():
        report.files_checked += 1
        try:
            files.read_parquet(relative).cast(MANIFEST_SCHEMA)
        except (OSError, pa.ArrowException) as exc:
            report.damaged.append(Damage(relative, "manifest", _short(exc)))
    for info in files.listing(layout.EXTRACTORS_DIR):
        report.files_checked += 1
        relative = files.relative(info.path)
        try:
            json.loads(files.read_bytes(relative))
        except ValueError as exc:
            report.damaged.append(Damage(relative, "extractor record", _short(exc)))
    bad_media: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, version in index.versions(files):
        view = index.read_index(files, name, version)
        report.files_checked += len(view.files) + len(view.unreadable)
        for relative, reason in view.unreadable:
            report.damaged.append(Damage(relative, "index", reason))
        if view.unreadable:
            # The media whose newest row was in a damaged index file cannot be told apart;
            # those that have rows in data files no readable index names are retired, so the
            # next extract computes them again rather than reading an older row.
            bad_media[(name, version)].update(_unindexed_media(store, name, version, view.named))
        rows = view.rows
        expected: dict[str, tuple[str, list[str]]] = {}
        for level in layout.LEVEL_DIRS:
            for media_id, relative, digest in zip(
                rows["media_id"],
                rows[f"{level}_file"],
                rows[f"{level}_sha256"],
                strict=True,
            ):
                if isinstance(relative, str):
                    expected.setdefault(relative, (digest, []))[1].append(media_id)
        for relative, (digest, media) in sorted(expected.items()):
            report.files_checked += 1
            problem = _check(store, relative, digest)
            if problem is not None:
                report.damaged.append(Damage(relative, "data", problem))
                bad_media[(name, version)].update(media)
    for damage in report.damaged:
        log.warning(
            "damaged store file '%s' (%s): %s", store.path(damage.path), damage.kind, damage.problem
        )
    if repair and report.damaged:
        _repair(store, report, bad_media)
    return report


def _unindexed_media(store: FeatureStore, name: str, version: str, named: set[str]) -> set[str]:
    """Media ids in a version's data files that no readable index row names."""
    found: set[str] = set()
    for level in layout.LEVEL_DIRS:
        for info in store.files.listing(layout.partition_dir(level, name, version)):
            relative = store.files.relative(info.path)
            if relative in named:
                continue
            try:
                ids = store.files.read_parquet(relative, ["media_id"])["media_id"]
            except (OSError, pa.ArrowException):
                continue
            found.update(ids.unique().to_pylist())
    return found


def _check(store: FeatureStore, relative: str, digest: str | None) -> str | None:
    try:
        found = store.files.sha256(relative)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({_short(exc)})"
    if digest and found != digest:
        return (
            f"checksum differs (recorded {digest[:12]}..., found {found[:12]}...): "
            "truncated or altered"
        )
    return None


def _repair(
    store: FeatureStore, report: VerifyReport, bad_media: dict[tuple[str, str], set[str]]
) -> None:
    files = store.files
    for damage in report.damaged:
        if damage.problem == "missing":
            continue
        target = f"{layout.QUARANTINE}/{damage.path}"
        files.move(damage.path, target)
        report.moved.append(target)
    now = datetime.now(timezone.utc)
    for (name, version), media in sorted(bad_media.items()):
        rows = [
            {
                "media_id": media_id,
                "status": STATUS_RETIRED,
                "written_at": now,
                "error": "a file holding its rows was damaged; set aside by store verify --repair",
            }
            for media_id in sorted(media)
        ]
        index.commit(files, name, version, pa.Table.from_pylist(rows, INDEX_SCHEMA))
        report.retired[f"{name}@{version}"] = len(media)


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
