"""Frame-level training data: stored frame features of one or more visual extractors, joined
per sampled frame, with the per-frame labels of an ABAW annotation folder (or a label table)
attached by timestamp, and audio/text span features averaged around each frame's time.

Every sampled frame of a media becomes one row, a frame without a face included: its visual
features are zeros and ``has_face`` is False, so rows stay aligned with time (and with audio,
text and the annotation lines). Labels are attached at the video's native frame rate
(:func:`raypipe.media.datasets.abaw.labels_at_times`); unlabelled entries are masked, never
dropped.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from raypipe.config.frames import FrameDataConfig, SpanFeaturesConfig
from raypipe.errors import ConfigError, ManifestError
from raypipe.labels import ABAW_AU12, LABEL_SPACES
from raypipe.media.datasets.abaw import (
    TASKS,
    VA_NAMES,
    FrameLabels,
    find_annotation_files,
    labels_at_times,
    read_annotation,
)
from raypipe.store.feature_store import FeatureStore

log = logging.getLogger(__name__)

#: Split names a frame row may carry.
SPLITS = ("train", "val", "test")


@dataclass
class FrameData:
    """Aligned arrays, one row per sampled frame (N rows), grouped by media in time order.

    Attributes:
        media_id: (N,) media ids.
        split: (N,) 'train', 'val' or 'test' (per media).
        t_s: (N,) float64 frame timestamps, seconds from the media's start.
        frame_index: (N,) int64 index of the sampled frame within its media (store order).
        features: (N, D) float32; zeros where the frame has no face (visual part) or no span
            (audio/text part).
        has_face: (N,) bool; False where the visual extractors found no face.
        expr: (N,) int64 expression class index, -1 where unlabelled.
        au: (N, K) float32 0/1 per action unit (0 where unlabelled).
        au_mask: (N, K) bool, True where the unit is labelled.
        va: (N, 2) float32 valence, arousal in [-1, 1] (0 where unlabelled).
        va_mask: (N, 2) bool, True where labelled.
        classes: expression class names (index order).
        au_names: action-unit names (column order).
        feature_names: (D,) names of the feature columns (``<extractor>:<index>``).
    """

    media_id: np.ndarray
    split: np.ndarray
    t_s: np.ndarray
    frame_index: np.ndarray
    features: np.ndarray
    has_face: np.ndarray
    expr: np.ndarray
    au: np.ndarray
    au_mask: np.ndarray
    va: np.ndarray
    va_mask: np.ndarray
    classes: tuple[str, ...] = ()
    au_names: tuple[str, ...] = ABAW_AU12
    feature_names: list[str] = field(default_factory=list)

    _ROW_FIELDS = (
        "media_id",
        "split",
        "t_s",
        "frame_index",
        "features",
        "has_face",
        "expr",
        "au",
        "au_mask",
        "va",
        "va_mask",
    )

    def __len__(self) -> int:
        return len(self.media_id)

    @property
    def dim(self) -> int:
        """Feature size D."""
        return int(self.features.shape[1])

    def take(self, index: np.ndarray | Sequence[int]) -> FrameData:
        """The rows at ``index`` (integer positions or a boolean mask), in that order."""
        index = np.asarray(index)
        rows = {name: getattr(self, name)[index] for name in self._ROW_FIELDS}
        return FrameData(
            **rows,
            classes=self.classes,
            au_names=self.au_names,
            feature_names=list(self.feature_names),
        )

    def rows_of(self, split: str) -> np.ndarray:
        """Integer positions of the rows of ``split``."""
        return np.flatnonzero(self.split == split)

    def media_rows(self) -> list[tuple[str, np.ndarray]]:
        """Each media's row positions in time order, media in order of first row: the
        sequences that sliding windows cut (``raypipe.models.sequence.frame_windows`` over
        ``features[rows]`` with ``has_face[rows]`` as the mask, for windowed recipes)."""
        out = []
        for media in pd.unique(self.media_id):
            rows = np.flatnonzero(self.media_id == media)
            out.append((str(media), rows[np.argsort(self.t_s[rows], kind="stable")]))
        return out

    def labelled(self) -> np.ndarray:
        """(N,) bool: the frame carries at least one label (expr, any AU or any VA value)."""
        return (self.expr >= 0) | self.au_mask.any(1) | self.va_mask.any(1)

    def to_arrays(self) -> dict[str, Any]:
        """Plain arrays and names (what travels to training workers)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["classes"], out["au_names"] = list(self.classes), list(self.au_names)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> FrameData:
        """The inverse of :meth:`to_arrays`."""
        data = dict(arrays)
        data["classes"], data["au_names"] = tuple(data["classes"]), tuple(data["au_names"])
        return cls(**data)


# -- visual frame rows ---------------------------------------------------------------------------
def _one_row_per_frame(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (media, sampled frame): the main track's face, else the best-scored face,
    else the frame's no-face row."""
    table = table.copy()
    table["_face"] = table["has_face"].astype(bool) & table["features"].notna()
    main = table["main_track"] if "main_track" in table else pd.Series(False, index=table.index)
    table["_main"] = main.fillna(False).astype(bool)
    table["_score"] = table["face_score"].fillna(-1.0) if "face_score" in table else 0.0
    table = table.sort_values(
        ["media_id", "frame_index", "_face", "_main", "_score"],
        ascending=[True, True, False, False, False],
        kind="stable",
    )
    return table.drop_duplicates(["media_id", "frame_index"], keep="first")


def _vectors(
    column: pd.Series, present: np.ndarray, name: str, width: int | None = None
) -> np.ndarray:
    """(N, D) float32 from a column of lists, zeros where ``present`` is False. D is the
    vectors' size; with no vector present it is ``width`` when given (a trained model's
    recorded size, so rows without the modality keep its columns), else 0."""
    kept = [np.asarray(v, np.float32) for v in column[present]]
    dims = {len(v) for v in kept}
    if len(dims) > 1:
        raise ConfigError(f"extractor '{name}' stores vectors of several sizes {sorted(dims)}.")
    dim = dims.pop() if dims else int(width or 0)
    out = np.zeros((len(column), dim), np.float32)
    if kept:
        out[present] = np.stack(kept)
    return out


def visual_frames(
    store: FeatureStore,
    extractors: Sequence[str],
    versions: Mapping[str, str] | None = None,
    widths: Mapping[str, int] | None = None,
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Frame rows of visual ``extractors`` joined per sampled frame.

    The first extractor's sampled frames are the rows; the others' features are appended
    (zeros where they lack the frame). An extractor with no face in any row has as many
    zero columns as ``widths`` gives it (a trained model's record), else none. Returns the
    rows (``media_id``, ``frame_index``, ``timestamp_s`` seconds, ``has_face``: every
    extractor found a face), their (N, D) float32 features and the feature names.
    """
    if not extractors:
        raise ConfigError("data.extractors is empty; name at least one frame-level extractor.")
    versions = dict(versions or {})
    records = store.extractors()
    rows: pd.DataFrame | None = None
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for name in extractors:
        if name not in records:
            known = ", ".join(sorted(records)) or "none"
            raise ConfigError(
                f"data.extractors: store '{store.uri}' has no extractor '{name}' (known: "
                f"{known}); run `raypipe extract` with it first."
            )
        if records[name].level != "frame":
            raise ConfigError(
                f"data.extractors: '{name}' is a {records[name].level}-level extractor; give "
                "frame-level (visual) ones, and audio/text ones under data.spans."
            )
        version = versions.get(name) or records[name].version
        table = store.read_level("frames", name, version)
        table = _one_row_per_frame(table.to_pandas())
        present = (table["_face"]).to_numpy()
        vectors = _vectors(table["features"], present, name, (widths or {}).get(name))
        keyed = table[["media_id", "frame_index", "timestamp_s"]].reset_index(drop=True)
        keyed = keyed.assign(has_face=present, _row=np.arange(len(table)))
        if rows is None:
            rows = keyed.sort_values(["media_id", "frame_index"], kind="stable")
            rows = rows.reset_index(drop=True)
            blocks.append(vectors[rows["_row"].to_numpy()])
            rows = rows.drop(columns="_row")
        else:
            joined = rows[["media_id", "frame_index"]].merge(
                keyed[["media_id", "frame_index", "_row", "has_face"]],
                on=["media_id", "frame_index"],
                how="left",
            )
            found = joined["_row"].notna().to_numpy()
            block = np.zeros((len(rows), vectors.shape[1]), np.float32)
            block[found] = vectors[joined.loc[found, "_row"].astype(int).to_numpy()]
            blocks.append(block)
            rows["has_face"] &= joined["has_face"].fillna(False).astype(bool).to_numpy()
        names += [f"{name}:{k}" for k in range(vectors.shape[1])]
    assert rows is not None
    features = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(rows), 0), np.float32)
    features[~rows["has_face"].to_numpy()] = 0.0
    return rows, features, names


# -- audio / text spans --------------------------------------------------------------------------
def span_means(
    starts_s: np.ndarray,
    ends_s: np.ndarray,
    values: np.ndarray,
    times_s: np.ndarray,
    width_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the spans overlapping ``[t - width/2, t + width/2)`` for each time ``t``.

    Spans (M of them, ``starts_s``/``ends_s`` seconds, ``values`` (M, D)) must be sorted by
    start and by end (true of openSMILE LLD frames and of sliding windows). Returns (T, D)
    float32 means (zeros where no span overlaps) and the (T,) bool mask of times with one.
    """
    values = np.asarray(values, np.float64)
    times = np.asarray(times_s, np.float64)
    lo, hi = times - width_s / 2, times + width_s / 2
    # Spans i with end > lo and start < hi form one contiguous range [first, stop).
    first = np.searchsorted(np.asarray(ends_s, np.float64), lo, side="right")
    stop = np.searchsorted(np.asarray(starts_s, np.float64), hi, side="left")
    count = np.maximum(stop - first, 0)
    totals = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    sums = totals[np.maximum(stop, first)] - totals[first]
    means = np.where(count[:, None] > 0, sums / np.maximum(count, 1)[:, None], 0.0)
    return means.astype(np.float32), count > 0


def span_features(
    store: FeatureStore,
    spec: SpanFeaturesConfig,
    media_ids: np.ndarray,
    times_s: np.ndarray,
    width: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An audio/text extractor's span rows (openSMILE LLD frames, Whisper windows, ...)
    averaged over ``spec.window_s`` seconds around each (media, time) pair: (N, D) float32
    and an (N,) bool mask of frames with at least one span (a media without audio: none).
    With no valid span row at all D is ``width`` when given (zeros), else 0."""
    records = store.extractors()
    if spec.extractor not in records:
        known = ", ".join(sorted(records)) or "none"
        raise ConfigError(
            f"data.spans: store '{store.uri}' has no extractor '{spec.extractor}' (known: "
            f"{known}); run `raypipe extract` with it first."
        )
    version = spec.version or records[spec.extractor].version
    table = store.read_level("frames", spec.extractor, version)
    if "features" in table.column_names:
        table = table.filter(pc.is_valid(table["features"]))
    if not table.num_rows:  # no valid span row at all (every media silent): none found
        return np.zeros((len(media_ids), int(width or 0)), np.float32), np.zeros(
            len(media_ids), bool
        )
    if "end_s" not in table.column_names:
        raise ConfigError(
            f"data.spans: '{spec.extractor}' stores no time spans (no end_s); name it under "
            "data.extractors if it is a visual extractor."
        )
    if spec.kind is not None:
        table = table.filter(pc.equal(table["kind"], spec.kind))
    spans = table.select(["media_id", "timestamp_s", "end_s"]).to_pandas()
    vectors = _vectors(
        table["features"].to_pandas(), np.ones(len(spans), bool), spec.extractor, width
    )
    dim = vectors.shape[1]
    out = np.zeros((len(media_ids), dim), np.float32)
    found = np.zeros(len(media_ids), bool)
    for media, index in pd.Series(np.arange(len(spans))).groupby(spans["media_id"].to_numpy()):
        rows = np.flatnonzero(np.asarray(media_ids) == media)
        if not len(rows):
            continue
        part = spans.iloc[index.to_numpy()].sort_values(["timestamp_s", "end_s"], kind="stable")
        order = part.index.to_numpy()
        means, mask = span_means(
            part["timestamp_s"].to_numpy(),
            part["end_s"].to_numpy(),
            vectors[order],
            np.asarray(times_s)[rows],
            spec.window_s,
        )
        out[rows], found[rows] = means, mask
    return out, found


# -- labels --------------------------------------------------------------------------------------
@dataclass
class MediaLabels:
    """One media's labels per task (absent tasks missing), and the split its files say."""

    tasks: dict[str, FrameLabels] = field(default_factory=dict)
    split: str | None = None


def annotation_labels(root: str | Path) -> dict[str, MediaLabels]:
    """Labels of every annotation file under an ABAW annotation folder, by media id (the
    file's stem); a malformed file stops here with its file and line."""
    found = find_annotation_files(root)
    if not found:
        raise ConfigError(
            f"data.annotations: '{root}' holds no ABAW annotation files (<task folder>/<split "
            "folder>/<video>.txt, task folders like EXPR_Set, AU_Set, VA_Set)."
        )
    media: dict[str, MediaLabels] = {}
    for annotation in found:
        entry = media.setdefault(annotation.media_id, MediaLabels())
        entry.tasks[annotation.task] = read_annotation(annotation.path, annotation.task)
        entry.split = entry.split or annotation.split
    return media


def _label_column(
    rows: pd.DataFrame, frames: np.ndarray, n: int, name: str, fill: float
) -> np.ndarray:
    """Column ``name`` of one media's label rows spread over ``n`` native frames (``fill``
    where a frame has no row or an empty cell)."""
    full = np.full(n, fill, np.float64)
    if name in rows:
        values = pd.to_numeric(rows[name], errors="coerce").to_numpy(np.float64)
        full[frames] = np.where(np.isnan(values), fill, values)
    return full


def table_labels(
    path: str | Path, classes: Sequence[str], au_names: Sequence[str] = ABAW_AU12
) -> dict[str, MediaLabels]:
    """Labels of a per-frame table (CSV or Parquet): ``media_id``, ``frame`` (native frame
    index, 0-based) and any of ``expr`` (class index), the AU columns (0/1), ``valence`` and
    ``arousal``; -1 (expr, AU), -5 (VA) or an empty cell is unlabelled. Frames a media's rows
    skip are unlabelled."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data.labels_table: '{path}' does not exist; check the path.")
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = [c for c in ("media_id", "frame") if c not in table.columns]
    if missing:
        raise ConfigError(
            f"data.labels_table: '{path}' lacks column(s) {', '.join(missing)}; it needs "
            "media_id and frame, then expr, AU columns, valence, arousal."
        )
    media: dict[str, MediaLabels] = {}
    for media_id, rows in table.groupby(table["media_id"].astype(str), sort=True):
        frames = rows["frame"].to_numpy(np.int64)
        if (frames < 0).any():
            raise ManifestError(f"{path}: media '{media_id}' has a negative frame index.")
        n = int(frames.max()) + 1

        entry = MediaLabels()
        try:
            if "expr" in rows:
                entry.tasks["expr"] = FrameLabels.from_values(
                    "expr", _label_column(rows, frames, n, "expr", -1), None, classes
                )
            if any(name in rows for name in au_names):
                au = np.stack(
                    [_label_column(rows, frames, n, name, -1) for name in au_names], axis=1
                )
                entry.tasks["au"] = FrameLabels.from_values("au", au, None, au_names)
            if "valence" in rows or "arousal" in rows:
                va = np.stack(
                    [_label_column(rows, frames, n, name, -5) for name in VA_NAMES], axis=1
                )
                entry.tasks["va"] = FrameLabels.from_values("va", va)
        except ValueError as exc:
            raise ManifestError(f"{path}: media '{media_id}': {exc}; fix its rows.") from None
        media[media_id] = entry
    return media


def native_fps(
    store: FeatureStore, media_ids: Sequence[str], fps: float | None
) -> dict[str, float]:
    """Each media's native frame rate, Hz: ``fps`` for all when given, else probed from the
    file the store's manifest names (in a decoder child process)."""
    if fps is not None:
        return dict.fromkeys(media_ids, float(fps))
    from raypipe.media.decoder_process import shared_decoder
    from raypipe.media.remote import local_copy

    paths = store.read_manifest().set_index("media_id")["path"].to_dict()
    decoder = shared_decoder()
    rates: dict[str, float] = {}
    for media_id in media_ids:
        path = paths.get(media_id)
        if not isinstance(path, str) or not path:
            raise ConfigError(
                f"data.fps is unset and store '{store.uri}' has no file for '{media_id}' to "
                "probe; set data.fps to the videos' native frame rate."
            )
        with local_copy(path) as local:
            info = decoder.probe(local)
        if not info.fps or info.fps <= 0:
            raise ConfigError(
                f"data.fps is unset and '{path}' declares no frame rate; set data.fps."
            )
        rates[media_id] = float(info.fps)
    return rates


def _hash_split(media_id: str, val_fraction: float) -> str:
    digest = int(hashlib.sha256(media_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if digest < val_fraction else "train"


# -- everything together -------------------------------------------------------------------------
def frame_features(
    store: FeatureStore,
    extractors: Sequence[str],
    spans: Sequence[SpanFeaturesConfig] = (),
    versions: Mapping[str, str] | None = None,
    widths: Mapping[str, int] | None = None,
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The frame rows and (N, D) float32 features the frame-level recipes learn from, without
    labels: the visual ``extractors`` joined per sampled frame (:func:`visual_frames`), then
    each audio/text span extractor of ``spans`` averaged around each frame's time
    (:func:`span_features`), side by side in that order. Returns the rows (``media_id``,
    ``frame_index``, ``timestamp_s`` seconds, ``has_face``), the features and their names.

    ``widths`` (feature columns per extractor, a trained model's record; prediction only)
    gives an extractor without any face or valid span row in the store that many zero
    columns, which the modality masks mark missing, instead of none."""
    rows, features, names = visual_frames(store, extractors, versions, widths)
    media_ids = rows["media_id"].astype(str).to_numpy()
    times = rows["timestamp_s"].to_numpy(np.float64)
    for spec in spans:
        width = (widths or {}).get(spec.extractor)
        block, found = span_features(store, spec, media_ids, times, width)
        features = np.concatenate([features, block], axis=1)
        names += [f"{spec.extractor}:{k}" for k in range(block.shape[1])]
        log.info("%s: spans for %d of %d frames", spec.extractor, int(found.sum()), len(found))
    return rows, features, names


def build_frame_data(config: FrameDataConfig, classes: Sequence[str] | None = None) -> FrameData:
    """The aligned arrays of ``config`` (see :class:`FrameData`).

    Splits: the store manifest's split, else the annotation folder's, else ``val`` for
    ``config.val_fraction`` of media by id hash and ``train`` for the rest. Expression classes:
    the annotation header's, else ``classes`` (default: the 8 ABAW ones).
    """
    if not config.store:
        raise ConfigError("data.store is not set: give the feature store holding frame rows.")
    if not (config.annotations or config.labels_table):
        raise ConfigError(
            "no labels: set data.annotations (an ABAW annotation folder) or data.labels_table."
        )
    store = FeatureStore(config.store)
    store.require()
    rows, features, names = frame_features(store, config.extractors, config.spans, config.versions)
    media_ids = rows["media_id"].astype(str).to_numpy()
    times = rows["timestamp_s"].to_numpy(np.float64)
    space = LABEL_SPACES.get("abaw_expr").classes
    if config.annotations:
        labels = annotation_labels(config.annotations)
    else:
        labels = table_labels(config.labels_table or "", classes or space)
    expr_names = next((m.tasks["expr"].names for m in labels.values() if "expr" in m.tasks), None)
    au_names = next((m.tasks["au"].names for m in labels.values() if "au" in m.tasks), ABAW_AU12)
    class_names = tuple(expr_names or classes or space)
    n, k = len(rows), len(au_names)
    expr = np.full(n, -1, np.int64)
    au, au_mask = np.zeros((n, k), np.float32), np.zeros((n, k), bool)
    va, va_mask = np.zeros((n, 2), np.float32), np.zeros((n, 2), bool)
    labelled_media = sorted(set(media_ids) & set(labels))
    unlabelled = sorted(set(media_ids) - set(labels))
    if unlabelled:
        log.info("%d media of the store have no labels (e.g. %s)", len(unlabelled), unlabelled[0])
    rates = native_fps(store, labelled_media, config.fps)
    manifest_split = store.read_manifest().set_index("media_id")["split"].to_dict()
    split = np.empty(n, dtype=object)
    for media in sorted(set(media_ids)):
        at = np.flatnonzero(media_ids == media)
        entry = labels.get(media, MediaLabels())
        chosen = manifest_split.get(media) or entry.split
        split[at] = chosen if chosen in SPLITS else _hash_split(media, config.val_fraction)
        for task in TASKS:
            if task not in entry.tasks:
                continue
            found = entry.tasks[task]
            if task == "au" and tuple(found.names) != tuple(au_names):
                raise ManifestError(
                    f"AU labels of '{media}' name units {list(found.names)}, others "
                    f"{list(au_names)}; give every video the same AU columns."
                )
            sampled = labels_at_times(found, times[at], rates[media])
            if task == "expr":
                expr[at] = np.where(sampled.mask, sampled.values, -1)
            elif task == "au":
                au[at] = np.where(sampled.mask, sampled.values, 0)
                au_mask[at] = sampled.mask
            else:
                va[at] = np.nan_to_num(np.where(sampled.mask, sampled.values, 0.0))
                va_mask[at] = sampled.mask
    return FrameData(
        media_id=media_ids.astype(object),
        split=split,
        t_s=times,
        frame_index=rows["frame_index"].to_numpy(np.int64),
        features=features.astype(np.float32),
        has_face=rows["has_face"].to_numpy(bool),
        expr=expr,
        au=au,
        au_mask=au_mask,
        va=va,
        va_mask=va_mask,
        classes=class_names,
        au_names=tuple(au_names),
        feature_names=names,
    )
