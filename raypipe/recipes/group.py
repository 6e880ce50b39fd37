"""The group-level recipe's plain parts (EmotiW 2018 group): per image, the stored global
scene feature and the stored features of every detected face (padded, with a mask), the
network (:class:`raypipe.models.group.GroupEmotionNet` over feature encoders), its training
step and probabilities, and the ensemble weights chosen on val.
``raypipe/pipeline/group.py`` runs them on Ray Train.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from raypipe.config.group import GroupConfig, GroupDataConfig
from raypipe.errors import ConfigError
from raypipe.fusion.rules import weighted_fusion
from raypipe.labels import LabelSpace
from raypipe.models.group import GroupEmotionNet, Merge
from raypipe.models.multitask import FeatureEncoder
from raypipe.recipes.frames import SPLITS, _hash_split
from raypipe.store.feature_store import FeatureStore

log = logging.getLogger(__name__)


@dataclass
class GroupData:
    """One row per image (media): its global scene feature, its faces and its label.

    Attributes:
        media_id: (N,) media ids, sorted.
        split: (N,) 'train' | 'val' | 'test'.
        label: (N,) class index in ``classes``, -1 when unlabelled.
        scene: (N, Ds) float32 scene features (the mean of the media's scene rows).
        faces: (N, F, Df) float32 face features, zero-padded to F faces.
        face_mask: (N, F) bool, True for real faces.
        classes: class names.
    """

    media_id: np.ndarray
    split: np.ndarray
    label: np.ndarray
    scene: np.ndarray
    faces: np.ndarray
    face_mask: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.media_id)

    def rows_of(self, split: str, labelled: bool = True) -> np.ndarray:
        """Row positions of ``split`` (only labelled rows when ``labelled``)."""
        keep = self.split == split
        if labelled:
            keep &= self.label >= 0
        return np.flatnonzero(keep)

    def to_arrays(self) -> dict[str, Any]:
        """Plain arrays (for Ray's object store)."""
        return asdict(self)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> GroupData:
        """Inverse of :meth:`to_arrays`."""
        return cls(**{**arrays, "classes": tuple(arrays["classes"])})


def _extractor_rows(
    store: FeatureStore, name: str, versions: Mapping[str, str], field: str
) -> pd.DataFrame:
    """Live frame rows of extractor ``name`` (``field`` names the config field in errors)."""
    records = store.extractors()
    if name not in records:
        known = ", ".join(sorted(records)) or "none"
        raise ConfigError(
            f"{field}: store '{store.uri}' has no extractor '{name}' (known: {known}); run "
            "`raypipe extract` with it first."
        )
    if records[name].level != "frame":
        raise ConfigError(
            f"{field}: '{name}' is a {records[name].level}-level extractor; give a "
            "frame-level visual one."
        )
    version = versions.get(name) or records[name].version
    return store.read_level("frames", name, version).to_pandas()


def scene_vectors(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per media, the mean of its rows' feature vectors (rows without features skipped)."""
    table = table[table["features"].notna()]
    out: dict[str, np.ndarray] = {}
    for media, rows in table.groupby("media_id", sort=True):
        out[str(media)] = np.stack([np.asarray(v, np.float32) for v in rows["features"]]).mean(0)
    return out


def face_vectors(table: pd.DataFrame, max_faces: int) -> dict[str, np.ndarray]:
    """Per media, the (F, D) features of its detected faces over all its frames: the
    ``max_faces`` with the highest detector score, in (frame, face index) order."""
    table = table[table["has_face"].astype(bool) & table["features"].notna()].copy()
    table["_score"] = table["face_score"].fillna(0.0) if "face_score" in table else 0.0
    if "face_index" not in table:
        table["face_index"] = 0
    out: dict[str, np.ndarray] = {}
    for media, rows in table.groupby("media_id", sort=True):
        kept = rows.sort_values("_score", ascending=False, kind="stable").head(max_faces)
        kept = kept.sort_values(["frame_index", "face_index"], kind="stable")
        out[str(media)] = np.stack([np.asarray(v, np.float32) for v in kept["features"]])
    return out


def build_group_data(config: GroupDataConfig, space: LabelSpace) -> GroupData:
    """The images of ``config.store`` that have a scene feature, with their faces (none is
    allowed: an all-False mask row), labels (the manifest's, in ``space``; -1 when missing)
    and splits (the manifest's, else ``val`` for ``val_fraction`` of media by id hash)."""
    if not config.store:
        raise ConfigError("data.store is not set: give the feature store holding group images.")
    store = FeatureStore(config.store)
    store.require()
    scene = scene_vectors(
        _extractor_rows(store, config.scene_extractor, config.versions, "data.scene_extractor")
    )
    faces = face_vectors(
        _extractor_rows(store, config.face_extractor, config.versions, "data.face_extractor"),
        config.max_faces,
    )
    if not scene:
        raise ConfigError(
            f"data.scene_extractor: '{config.scene_extractor}' has no feature row in store "
            f"'{store.uri}'; run `raypipe extract` with it on the images first."
        )
    manifest = store.read_manifest().set_index("media_id")
    media = sorted(scene)
    missing = sorted(set(manifest.index) - set(scene))
    if missing:
        log.warning(
            "group: %d media of the manifest have no %s row (failed or not extracted; e.g. "
            "%s) and are left out; `raypipe store status` says why.",
            len(missing),
            config.scene_extractor,
            missing[0],
        )
    face_dim = next((len(v[0]) for v in faces.values()), 0)
    if face_dim == 0:
        raise ConfigError(
            f"data.face_extractor: '{config.face_extractor}' found no face in any image of "
            f"store '{store.uri}'; extract it with faces: all (every detected face)."
        )
    most = max((len(faces.get(m, ())) for m in media), default=0)
    padded = np.zeros((len(media), max(most, 1), face_dim), np.float32)
    mask = np.zeros((len(media), max(most, 1)), bool)
    labels = np.full(len(media), -1, np.int64)
    splits = np.empty(len(media), dtype=object)
    unknown: set[str] = set()
    for row, name in enumerate(media):
        found = faces.get(name)
        if found is not None:
            padded[row, : len(found)] = found
            mask[row, : len(found)] = True
        given = manifest["label"].get(name) if "label" in manifest else None
        if isinstance(given, str) and given:
            canonical = space.canonical(given)
            if canonical is None:
                unknown.add(given)
            else:
                labels[row] = space.classes.index(canonical)
        chosen = manifest["split"].get(name) if "split" in manifest else None
        splits[row] = chosen if chosen in SPLITS else _hash_split(name, config.val_fraction)
    if unknown:
        raise ConfigError(
            f"label_space: labels {sorted(unknown)} of the manifest of store '{store.uri}' are "
            f"not in it (classes: {list(space.classes)}); set label_space to theirs."
        )
    log.info(
        "group: %d images, %d with faces (at most %d), %d scene / %d face features",
        len(media),
        int(mask.any(1).sum()),
        most,
        len(next(iter(scene.values()))),
        face_dim,
    )
    return GroupData(
        media_id=np.asarray(media, object),
        split=splits,
        label=labels,
        scene=np.stack([scene[m] for m in media]).astype(np.float32),
        faces=padded,
        face_mask=mask,
        classes=tuple(space.classes),
    )


@dataclass(frozen=True)
class FeatureScaling:
    """Per-feature mean and standard deviation of the training images' scene features and
    real faces (identity where a feature is constant)."""

    scene_mean: np.ndarray
    scene_std: np.ndarray
    face_mean: np.ndarray
    face_std: np.ndarray

    @classmethod
    def fit(cls, data: GroupData, rows: np.ndarray) -> FeatureScaling:
        """Fitted on the images ``rows`` (their real faces only)."""

        def stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if len(values) == 0:
                return np.zeros(values.shape[1], np.float32), np.ones(values.shape[1], np.float32)
            std = values.std(0)
            return values.mean(0).astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(
                np.float32
            )

        scene = stats(data.scene[rows])
        face = stats(data.faces[rows][data.face_mask[rows]])
        return cls(*scene, *face)

    def apply(self, data: GroupData) -> GroupData:
        """A copy of ``data`` with standardised features (padding stays zero)."""
        scene = ((data.scene - self.scene_mean) / self.scene_std).astype(np.float32)
        faces = ((data.faces - self.face_mean) / self.face_std).astype(np.float32)
        faces[~data.face_mask] = 0.0
        return GroupData(
            data.media_id, data.split, data.label, scene, faces, data.face_mask, data.classes
        )


def build_network(
    config: GroupConfig, merge: Merge, scene_dim: int, face_dim: int, n_classes: int
) -> GroupEmotionNet:
    """One ensemble member: feature encoders for the scene and each face, faces merged by
    ``merge``, a linear classifier over the scene and group vectors."""
    return GroupEmotionNet(
        FeatureEncoder(scene_dim, config.hidden, config.dropout),
        FeatureEncoder(face_dim, config.hidden, config.dropout),
        n_classes,
        merge=merge,
    )


def batch(data: GroupData, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs of images ``rows``: scene (B, Ds), faces (B, F, Df) and face mask (B, F)."""
    return (
        torch.from_numpy(data.scene[rows]),
        torch.from_numpy(data.faces[rows]),
        torch.from_numpy(data.face_mask[rows]),
    )


def train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: GroupData, rows: np.ndarray
) -> float:
    """One optimiser step of cross-entropy on the labelled images ``rows``; returns the loss."""
    model.train()
    optimizer.zero_grad()
    logits = model(*batch(data, rows))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(data.label[rows]))
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def predict_probs(
    model: torch.nn.Module, data: GroupData, rows: np.ndarray | None = None, batch_size: int = 256
) -> np.ndarray:
    """Class probabilities (len(rows), C) float32 of images ``rows`` (default: all)."""
    model.eval()
    rows = np.arange(len(data)) if rows is None else rows
    out = [
        torch.softmax(model(*batch(data, rows[start : start + batch_size])), dim=1).numpy()
        for start in range(0, len(rows), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, len(data.classes)), np.float32)


def weight_grid(n_members: int, step: float) -> np.ndarray:
    """Every (M,) weight vector of multiples of ``step`` summing to 1, in lexicographic order
    of the step counts (the first member's weight rising slowest)."""
    total = round(1.0 / step)
    counts = [c for c in itertools.product(range(total + 1), repeat=n_members) if sum(c) == total]
    return np.asarray(counts, np.float64) / total


@dataclass(frozen=True)
class EnsembleWeights:
    """Member weights chosen on val, with the val accuracy and log-loss of the fused
    probabilities they give."""

    weights: np.ndarray
    accuracy: float
    log_loss: float


def ensemble_weights(probs: np.ndarray, labels: np.ndarray, step: float) -> EnsembleWeights:
    """Weights of M members' (M, N, C) val probabilities for labels (N,): the grid point
    (:func:`weight_grid`) whose weighted mean of probabilities has the highest accuracy,
    ties broken by the lower mean log-loss, then by grid order."""
    if probs.shape[1] == 0:
        raise ConfigError("no labelled val image: the ensemble weights are chosen on val.")
    best: EnsembleWeights | None = None
    for weights in weight_grid(len(probs), step):
        fused = weighted_fusion(probs, weights)
        accuracy = float(np.mean(fused.argmax(1) == labels))
        picked = np.clip(fused[np.arange(len(labels)), labels], 1e-12, 1.0)
        loss = float(-np.log(picked).mean())
        if best is None or (accuracy, -loss) > (best.accuracy, -best.log_loss):
            best = EnsembleWeights(weights, accuracy, loss)
    assert best is not None
    return best


def fuse_members(probs: np.ndarray, weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """The ensemble's (N, C) probabilities: the weighted mean of the members' (M, N, C)."""
    return weighted_fusion(probs, np.asarray(weights, np.float64)).astype(np.float32)
