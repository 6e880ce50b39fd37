"""Labelled image sources for training: image-folder corpora and aligned crops in a store.

A :class:`LabelledImages` holds, per image, either a file path or raw RGB crop bytes, a class
index and a split (``train``, ``val`` or ``test``). Images are decoded only when a data loader
asks for them, so a corpus of paths costs little memory in every training worker.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from raypipe.errors import ConfigError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass
class LabelledImages:
    """Images with class indices and splits.

    Attributes:
        classes: class names; a label is an index into this list.
        labels: class index per image, int64.
        split: 'train', 'val' or 'test' per image.
        paths: image file per image (folder corpora), or None.
        pixels: raw RGB uint8 bytes of a square ``(size, size, 3)`` crop per image (store
            crops), or None.
        sizes: side of each crop in ``pixels``, pixels.
        groups: what images must not be split across (media id or file), per image.
    """

    classes: list[str]
    labels: np.ndarray
    split: np.ndarray
    paths: list[str] | None = None
    pixels: list[bytes] | None = None
    sizes: np.ndarray | None = None
    groups: np.ndarray = field(default_factory=lambda: np.zeros(0, object))

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> np.ndarray:
        """Image ``index`` as ``(H, W, 3)`` uint8 RGB."""
        if self.pixels is not None:
            side = int(self.sizes[index])
            return np.frombuffer(self.pixels[index], np.uint8).reshape(side, side, 3).copy()
        with Image.open(self.paths[index]) as handle:
            return np.array(handle.convert("RGB"))

    def indices(self, split: str) -> np.ndarray:
        """Positions of the images of one split."""
        return np.flatnonzero(self.split == split)

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Images per class in ``split``."""
        return np.bincount(self.labels[self.indices(split)], minlength=len(self.classes))


def assign_splits(
    groups: np.ndarray, labels: np.ndarray, val_fraction: float, seed: int
) -> np.ndarray:
    """'train'/'val' per item, holding out ``val_fraction`` of the groups of every class.

    Items of one group (a media, or a file) always land in the same split.
    """
    rng = np.random.default_rng(seed)
    split = np.full(len(groups), "train", dtype=object)
    frame = pd.DataFrame({"group": groups, "label": labels})
    first_label = frame.groupby("group", sort=True)["label"].first()
    for _, members in first_label.groupby(first_label):
        names = members.index.to_numpy()
        rng.shuffle(names)
        count = round(len(names) * val_fraction) if len(names) > 1 else 0
        if val_fraction > 0 and len(names) > 1:
            count = max(1, count)
        split[np.isin(groups, names[:count])] = "val"
    return split


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_folder(
    root: str | Path,
    classes: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> LabelledImages:
    """A corpus laid out ``<root>/<split>/<Class>/*`` or ``<root>/<Class>/*`` (FER+, SFEW).

    Without split folders, ``val_fraction`` of each class's images (chosen with ``seed``)
    become the validation split. Class folders not in ``classes`` are skipped with a warning.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"data.root '{root}' is not a folder; give an image-folder corpus.")
    tops = _class_folders(root)
    split_dirs = {p: _SPLIT_NAMES[p.name.lower()] for p in tops if p.name.lower() in _SPLIT_NAMES}
    layout = split_dirs or {root: None}
    found = sorted({c.name for top in layout for c in _class_folders(top)})
    names = list(classes) if classes else found
    unknown = sorted(set(found) - set(names))
    if unknown:
        log.warning("skipping class folders not in data.classes: %s", ", ".join(unknown))
    paths, labels, splits = [], [], []
    for top, split in layout.items():
        for class_dir in _class_folders(top):
            if class_dir.name not in names:
                continue
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    paths.append(str(file))
                    labels.append(names.index(class_dir.name))
                    splits.append(split)
    if not paths:
        raise ConfigError(
            f"data.root '{root}' holds no images in <Class>/ or <split>/<Class>/ folders "
            f"(looked for {', '.join(IMAGE_SUFFIXES)})."
        )
    label_array = np.asarray(labels, np.int64)
    groups = np.asarray(paths, dtype=object)
    split_array = np.asarray(splits, dtype=object)
    if not split_dirs:
        split_array = assign_splits(groups, label_array, val_fraction, seed)
    return LabelledImages(names, label_array, split_array, paths=paths, groups=groups)


def store_crops(
    store_uri: str,
    extractor: str = "face_tracks",
    version: str | None = None,
    classes: Sequence[str] | None = None,
    main_track_only: bool = True,
    max_per_media: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> LabelledImages:
    """Aligned face crops of a feature store's ``crops`` table, labelled from its manifest.

    The manifest's ``split`` is used where given; media without one are split by media id
    (``val_fraction`` of each class's media, so frames of one video never straddle splits).
    Media without a known label are skipped. ``max_per_media`` evenly thins long videos.
    """
    from raypipe.labels import label_space
    from raypipe.store.feature_store import FeatureStore

    store = FeatureStore(store_uri)
    store.require()
    space = label_space(classes)
    try:
        crops = store.crop_table(extractor, version)
    except Exception as exc:
        raise ConfigError(
            f"store '{store_uri}' has no crops from '{extractor}' ({exc}); run `raypipe extract` "
            f"with {extractor}.enabled=true and {extractor}.store_crops=true first."
        ) from None
    if main_track_only and "main_track" in crops:
        crops = crops[crops["main_track"].fillna(False).astype(bool)]
    manifest = store.read_manifest().set_index("media_id")
    crops = crops[crops["media_id"].isin(manifest.index)]
    known = manifest["label"].map(lambda v: space.canonical(v) if isinstance(v, str) else None)
    crops = crops.assign(label_name=crops["media_id"].map(known)).dropna(subset=["label_name"])
    if max_per_media:
        keep: list[int] = []
        for _, group in crops.groupby("media_id", sort=False):
            picks = np.linspace(0, len(group) - 1, min(len(group), max_per_media)).round()
            keep.extend(group.index[np.unique(picks.astype(int))])
        crops = crops.loc[keep]
    if crops.empty:
        raise ConfigError(
            f"store '{store_uri}' has no labelled crops from '{extractor}'; check the manifest's "
            "label column and that face_tracks.store_crops was on."
        )
    labels = np.asarray([space.index(n) for n in crops["label_name"]], np.int64)
    groups = crops["media_id"].to_numpy(dtype=object)
    given = crops["media_id"].map(manifest["split"]).to_numpy(dtype=object)
    split = assign_splits(groups, labels, val_fraction, seed)
    has_split = np.asarray([isinstance(s, str) and s in _SPLIT_NAMES for s in given])
    split[has_split] = [_SPLIT_NAMES[s] for s in given[has_split]]
    return LabelledImages(
        list(space.classes),
        labels,
        split,
        pixels=list(crops["pixels"]),
        sizes=crops["size"].to_numpy(np.int64),
        groups=groups,
    )
