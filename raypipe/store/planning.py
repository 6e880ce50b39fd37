"""What an extract job has to compute: per media and extractor version, from the index alone.

A (media, extractor version) pair is computed when the store has no live row for it (``new``),
when its file changed since its row was written (``changed``: another size, or another time and
digest; a re-pointed id is a change only if the content differs), or when its row failed and
the caller asks for a retry (``retry``). Everything else is reused. The cost is one stat per
manifest row, one read of each index, and a digest only for files whose time stamp moved.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

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
    """Plan the (name, version) ``extractors`` over ``manifest`` (media_id, path) rows."""
    ids = manifest["media_id"].astype(str).to_numpy()
    paths = manifest["path"].astype(str).to_numpy()
    now = stat_many(paths)
    now_size = np.array([-1 if f is None else f.size for f in now], dtype=np.int64)
    now_time = np.array([-1 if f is None else f.mtime_ns for f in now], dtype=np.int64)
    registry = store.extractors()
    todo_masks: list[np.ndarray] = []
    plans: list[ExtractorPlan] = []
    verdicts: dict[tuple[str, int, int, str], bool] = {}
    for name, version in extractors:
        current = registry[name].version if name in registry else None
        plan = ExtractorPlan(name, version, current)
        rows = store.index(name, version, ["error", "seconds", "size", "mtime_ns", "digest"])
        plan.median_s = _median_seconds(store, name, version, current, rows)
        joined = pd.DataFrame({"media_id": ids}).merge(
            rows.drop_duplicates("media_id"), on="media_id", how="left"
        )
        has_row = joined["status"].notna().to_numpy()
        failed = (joined["status"] == STATUS_FAILED).to_numpy()
        retried = np.zeros(len(ids), dtype=bool)
        for i in np.flatnonzero(failed):
            retried[i] = retry(str(joined["error"].iat[i] or ""))
        size = joined["size"].to_numpy(dtype=float, na_value=np.nan)
        known = has_row & ~np.isnan(size)
        moved = known & (
            (size != now_size) | (joined["mtime_ns"].to_numpy(float, na_value=np.nan) != now_time)
        )
        changed = np.zeros(len(ids), dtype=bool)
        for i in np.flatnonzero(moved & ~failed):
            stored = Fingerprint(
                int(size[i]), int(joined["mtime_ns"].iat[i]), _text(joined["digest"].iat[i])
            )
            key = (paths[i], stored.size, stored.mtime_ns, stored.digest or "")
            if key not in verdicts:
                verdicts[key] = not unchanged(stored, paths[i], now[i])
            changed[i] = verdicts[key]
        new = ~has_row
        retry_mask = failed & retried
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
    names = [name for name, _ in extractors]
    items = []
    skipped = 0
    if todo_masks:
        stacked = np.vstack(todo_masks)
        skipped = int((~stacked).sum())
        for i in np.flatnonzero(stacked.any(axis=0)):
            todo = ",".join(n for n, row in zip(names, stacked[:, i], strict=True) if row)
            items.append({"media_id": ids[i], "path": paths[i], "todo": todo})
    return Plan(items=items, extractors=plans, skipped=skipped)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _median_seconds(
    store: FeatureStore, name: str, version: str, current: str | None, rows: pd.DataFrame
) -> float | None:
    timed = pd.to_numeric(rows.get("seconds"), errors="coerce").dropna()
    if timed.empty and current is not None and current != version:
        timed = pd.to_numeric(store.index(name, current, ["seconds"])["seconds"]).dropna()
    return None if timed.empty else float(timed.median())
