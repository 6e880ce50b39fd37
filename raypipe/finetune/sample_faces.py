"""Labelled face images generated from real faces, for tests, benchmarks and demos of training.

Each identity is a real face (the Labeled Faces in the Wild subset that scikit-image ships,
upscaled and tinted). Each class applies its own smooth geometric change to the mouth and eye
regions, as an expression would (wider mouth, open mouth, lowered mouth, raised eyes), and
paints a faint mouth shape (a light smile band, a dark open oval, a down-turned arc), while
brightness, position and noise vary at random across samples. A network has to learn the local
shape change, not the identity or the lighting, to tell the classes apart.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

#: Class names of the generated sets, in the order their warps are defined.
SAMPLE_CLASSES: tuple[str, ...] = ("Neutral", "Happy", "Surprise", "Sad")


def _face_bank() -> np.ndarray:
    """The 100 grey faces (25x25, values in [0, 1]) of scikit-image's LFW subset."""
    from skimage import data

    return data.lfw_subset()[:100]


def _warp_field(label: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse sampling grid (rows, cols) in pixels for one class's expression change."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    y, x = rows.copy(), cols.copy()
    mouth = np.exp(-(((rows - 0.78) / 0.18) ** 2 + ((cols - 0.5) / 0.3) ** 2))
    eyes = np.exp(-(((rows - 0.38) / 0.14) ** 2 + ((np.abs(cols - 0.5) - 0.2) / 0.16) ** 2))
    if label == 1:  # much wider mouth with raised corners
        x = cols - mouth * (cols - 0.5) * 0.7
        y = rows + mouth * np.abs(cols - 0.5) * 0.6
    elif label == 2:  # open mouth, wide eyes
        y = rows - mouth * (rows - 0.78) * 0.9 - eyes * (rows - 0.38) * 0.6
    elif label == 3:  # lowered, narrower mouth, lowered brows
        y = rows - mouth * 0.12 - eyes * 0.08
        x = cols + mouth * (cols - 0.5) * 0.6
    return y * (size - 1), x * (size - 1)


#: Grey level painted into each class's mouth mark (teeth light, open mouth dark).
_MARK_LEVEL = (0.0, 0.9, 0.05, 0.15)


def _mouth_mark(label: int, size: int) -> np.ndarray:
    """Opacity in [0, 1] of a class's mouth shape: none, a wide smile band, an open oval, a
    down-turned arc."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    if label == 1:
        curve = 0.8 - 0.5 * (cols - 0.5) ** 2
        shape = np.exp(-(((rows - curve) / 0.025) ** 2)) * (np.abs(cols - 0.5) < 0.22)
    elif label == 2:
        shape = np.exp(-((((rows - 0.8) / 0.07) ** 2 + ((cols - 0.5) / 0.07) ** 2) ** 2))
    elif label == 3:
        curve = 0.8 + 0.6 * (cols - 0.5) ** 2
        shape = np.exp(-(((rows - curve) / 0.02) ** 2)) * (np.abs(cols - 0.5) < 0.18)
    else:
        return np.zeros((size, size))
    return np.clip(shape, 0, 1) * 0.55


def make_face_images(
    per_class: int,
    size: int = 48,
    classes: int = 4,
    identities: range | list[int] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate ``per_class`` images of each of the first ``classes`` sample classes.

    Args:
        per_class: images per class.
        size: side of the square RGB images, pixels.
        classes: how many of :data:`SAMPLE_CLASSES` to use (2 to 4).
        identities: indices (0-99) of the faces to draw identities from; default all.
        seed: random seed.

    Returns:
        images ``(N, size, size, 3)`` uint8 RGB, labels ``(N,)`` int64 and the identity of each
        image ``(N,)`` int64.
    """
    from scipy.ndimage import map_coordinates
    from skimage.transform import resize

    if not 2 <= classes <= len(SAMPLE_CLASSES):
        raise ValueError(f"classes must be between 2 and {len(SAMPLE_CLASSES)}, got {classes}")
    rng = np.random.default_rng(seed)
    bank = _face_bank()
    pool = list(identities) if identities is not None else list(range(len(bank)))
    margin = max(1, size // 24)
    big = size + 2 * margin
    fields = [_warp_field(label, big) for label in range(classes)]
    marks = [_mouth_mark(label, big) for label in range(classes)]
    images, labels, ids = [], [], []
    for label in range(classes):
        for _ in range(per_class):
            identity = int(rng.choice(pool))
            face = resize(bank[identity], (big, big), order=1, anti_aliasing=False)
            warped = map_coordinates(face, fields[label], order=1, mode="nearest")
            warped = warped * (1 - marks[label]) + marks[label] * _MARK_LEVEL[label]
            tint = np.array([1.0, 0.85, 0.7]) * rng.uniform(0.9, 1.1, 3)
            rgb = warped[..., None] * tint * rng.uniform(0.75, 1.25)
            dy, dx = rng.integers(0, 2 * margin + 1, size=2)
            crop = rgb[dy : dy + size, dx : dx + size]
            crop = crop + rng.normal(0, 0.03, crop.shape)
            images.append((np.clip(crop, 0, 1) * 255).round().astype(np.uint8))
            labels.append(label)
            ids.append(identity)
    return np.stack(images), np.asarray(labels, np.int64), np.asarray(ids, np.int64)


def write_image_folder(
    root: Path,
    per_class: dict[str, int],
    size: int = 48,
    classes: int = 4,
    seed: int = 0,
    identities: int | None = None,
) -> Path:
    """Write a ``<root>/<split>/<Class>/<n>.png`` corpus.

    Args:
        root: folder to create.
        per_class: images per class for each split, e.g. ``{"train": 40, "val": 10}``.
        size: image side, pixels.
        classes: number of sample classes (2 to 4).
        seed: random seed.
        identities: draw every split from the first this many faces (held-out images of
            known people); unset: splits get disjoint identities (unseen people).

    Returns:
        ``root``.
    """
    splits = list(per_class)
    # Without ``identities``, faces are dealt to splits round-robin (unseen people held out).
    for number, split in enumerate(splits):
        people = list(range(identities)) if identities else list(range(number, 100, len(splits)))
        images, labels, _ = make_face_images(per_class[split], size, classes, people, seed + number)
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / split / SAMPLE_CLASSES[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index:05d}.png")
    log.info("wrote %s with splits %s", root, per_class)
    return root
