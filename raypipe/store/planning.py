"""What an extract job has to compute: per media and extractor version, from the index alone.

A (media, extractor version) pair is computed when the store has no live row for it (``new``),
when its file changed since its row was written (``changed``, failed rows included: another
size, or another time or path and another digest; a re-pointed id is a change only if the
content differs), or when its row failed and the caller asks for a retry (``retry``).
Everything else is reused, also a media whose file cannot be read now (the manifest check
reports it). The cost is a stat per manifest row, one read of each index, and a digest only
for files whose size, time or path moved.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from raypipe.store import index
from raypipe.store.feature_store import FeatureStore
from raypipe.store.fingerprint import Fingerprint, stat_many, unchanged
from raypipe.store.schema import STATUS_FAILED

log = logging.getLogger(__name__)

REASONS = ("new", "changed", "retry")


@dataclass
class ExtractorPlan:
    """The work of one extractor version."""

    name: str
    version: str
    #: The version readers use now (None: the store has never run this extractor).
    current: str | None
    #: Media to compute, by reason (new, changed, retry).
    reasons: Counter = field(default_factory=Counter)
    #: Media already done for this version.
    reused: int = 0
    #: Median seconds per media of this extractor in the store (this version, else the
    #: current one), for an estimate; None when nothing was timed yet.
    median_s: float | None = None

    @property
    def todo(self) -> int:
        """Media to compute."""
        return sum(self.reasons.values())

    @property
    def estimate_s(self) -> float | None:
        """Seconds of one worker to compute them (median x media), when timed before."""
        return None if self.median_s is None else round(self.median_s * self.todo, 1)


@dataclass
class Plan:
    """An extract job's work: one item per media with something to compute."""

    #: ``{"media_id", "path", "todo": "name,name"}`` per media to process.
    items: list[dict[str, str]]
    extractors: list[ExtractorPlan]
    #: Pairs (media x extractor) already up to date.
    skipped: int


def plan_work(
    store: FeatureStore,
    manifest: pd.DataFrame,
    extractors: Sequence[tuple[str, str]],
    retry: Callable[[str], bool],
) -> Plan:
    """Plan the (name, version) ``extractors`` over ``manifest`` (media_id, path) rows;
    ``retry(error)`` says whether a failed row is computed again."""
    ids = manifest["media_id"].astype(str).to_numpy()
    paths = manifest["path"].astype(str).to_numpy()
    now = stat_many(paths)
    now_size = np.array([-1 if f is None else f.size for f in now], dtype=np.int64)
    now_time = np.array([-1 if f is None else f.mtime_ns for f in now], dtype=np.int64)
    readable = now_size >= 0
    registry = store.extractors()
    todo_masks: list[np.ndarray] = []
    plans: list[ExtractorPlan] = []
    verdicts: dict[tuple[str, int, int, str], bool] = {}
    wanted = pa.array(ids, pa.string())
    for name, version in extractors:
        current = registry[name].version if name in registry else None
        plan = ExtractorPlan(name, version, current)
        rows = index.read_index(
            store.files, name, version, ["error", "seconds", "path", "size", "mtime_ns", "digest"]
        ).table
        plan.median_s = _median_seconds(store, name, version, current, rows)
        # Each manifest row's index row (or null), aligned by position, in Arrow throughout
        # (integer columns keep every digit).
        at = pc.index_in(wanted, rows["media_id"])
        has_row = pc.is_valid(at).to_numpy(zero_copy_only=False)
        joined = rows.take(at)
        status = joined["status"]
        failed = pc.fill_null(pc.equal(status, STATUS_FAILED), False).to_numpy(zero_copy_only=False)
        retried = np.zeros(len(ids), dtype=bool)
        errors = joined["error"]
        for i in np.flatnonzero(failed):
            retried[i] = retry(errors[int(i)].as_py() or "")
        size = pc.fill_null(joined["size"], -1).to_numpy(zero_copy_only=False)
        mtime = pc.fill_null(joined["mtime_ns"], -1).to_numpy(zero_copy_only=False)
        stored_paths = joined["path"].to_numpy(zero_copy_only=False)
        # A row records its file (size >= 0) and the file is readable now: has it changed?
        # Another size, time or path sends it to a digest comparison. A file unreadable now
        # keeps its result (the manifest check reports it, never replacing a good row).
        known = has_row & (size >= 0) & readable
        suspect = known & ((size != now_size) | (mtime != now_time) | (stored_paths != paths))
        changed = np.zeros(len(ids), dtype=bool)
        digests = joined["digest"]
        for i in np.flatnonzero(suspect):
            stored = Fingerprint(int(size[i]), int(mtime[i]), digests[int(i)].as_py())
            same_path = stored_paths[i] == paths[i]
            key = (paths[i], stored.size, stored.mtime_ns if same_path else -1, stored.digest or "")
            if key not in verdicts:
                verdicts[key] = not unchanged(stored, paths[i], now[i], same_path)
            changed[i] = verdicts[key]
        new = ~has_row
        retry_mask = failed & retried & ~changed
        plan.reasons.update(
            {
                reason: int(mask.sum())
                for reason, mask in (("new", new), ("changed", changed), ("retry", retry_mask))
                if mask.any()
            }
        )
        todo = new | changed | retry_mask
        plan.reused = int((~todo).sum())
        todo_masks.append(todo)
        plans.append(plan)
    items: list[dict[str, str]] = []
    skipped = 0
    if todo_masks:
        stacked = np.vstack(todo_masks)
        skipped = int((~stacked).sum())
        # Media share few distinct sets of work: name each set once.
        names = np.array([name for name, _ in extractors], dtype=object)
        codes = np.packbits(stacked, axis=0, bitorder="little")
        key = codes.T.copy().view(np.dtype((np.void, codes.shape[0]))).ravel()
        labels = {}
        for i in np.flatnonzero(stacked.any(axis=0)):
            pattern = key[i].tobytes()
            if pattern not in labels:
                labels[pattern] = ",".join(names[stacked[:, i]])
            items.append({"media_id": ids[i], "path": paths[i], "todo": labels[pattern]})
    return Plan(items=items, extractors=plans, skipped=skipped)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _median_seconds(
    store: FeatureStore, name: str, version: str, current: str | None, rows: pa.Table
) -> float | None:
    timed = rows["seconds"].drop_null()
    if len(timed) == 0 and current is not None and current != version:
        timed = index.read_index(store.files, name, current, ["seconds"]).table["seconds"]
        timed = timed.drop_null()
    return None if len(timed) == 0 else float(pc.approximate_median(timed).as_py())
