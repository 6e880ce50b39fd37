"""HOG and LBP values against scikit-image run directly on the same aligned faces.

The faces come from the store's crops table (written by ``face_tracks`` from the same shared
face pass), and the descriptors are computed here with scikit-image and NumPy, not through the
extractors' code, so a descriptor that is zero, shuffled or normalised differently fails.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.feature import hog, local_binary_pattern

from raypipe.extractors.process import process_media
from raypipe.extractors.registry import build_extractor
from raypipe.media.context import MediaContext
from raypipe.store.feature_store import FeatureStore
from raypipe.weights import weight_file

CARPHONE = weight_file("media/carphone_pristine.mp4")
SIZE = 64


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma in [0, 1] of an RGB uint8 image (the weights summed in this order, so
    LBP's truncation to 8 bits sees the same bytes)."""
    return (rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])) / 255.0


def _lbp_reference(face: np.ndarray, points: int, radius: float, grid: int) -> np.ndarray:
    codes = local_binary_pattern((face * 255).astype(np.uint8), points, radius, "uniform")
    bins = points + 2
    out = []
    for rows in np.array_split(np.arange(SIZE), grid):
        for cols in np.array_split(np.arange(SIZE), grid):
            cell = codes[np.ix_(rows, cols)]
            counts, _ = np.histogram(cell, bins=bins, range=(0, bins))
            out.append(counts / cell.size)
    return np.concatenate(out)


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    store = FeatureStore(str(tmp_path_factory.mktemp("handcrafted") / "store"))
    store.initialise()
    extractors = [
        build_extractor(
            "face_tracks", {"store_crops": True, "crop_size": SIZE, "margin": 0.0, "faces": "main"}
        ),
        build_extractor("face_hog", {"crop_size": SIZE, "margin": 0.0}),
        build_extractor("face_lbp", {"crop_size": SIZE, "margin": 0.0, "points": 8, "grid": 4}),
    ]
    outcomes = process_media(MediaContext("carphone", CARPHONE, fps=2), extractors, store)
    assert [o.status for o in outcomes] == ["ok"] * 3
    crops = store.crop_table("face_tracks", extractors[0].version)
    key = ["frame_index", "face_index"]
    out = {"crops": crops.set_index(key)}
    for extractor in extractors[1:]:
        frames = store.frame_table(extractor.name, extractor.version)
        out[extractor.name] = frames[frames["has_face"]].set_index(key)
    return out


def _faces(rows: dict[str, pd.DataFrame], name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    table = rows[name]
    assert len(table) >= 5, "the clip has a face in most sampled frames"
    pairs = []
    for key, row in table.iterrows():
        pixels = rows["crops"].loc[key, "pixels"]
        face = _luma(np.frombuffer(pixels, np.uint8).reshape(SIZE, SIZE, 3))
        pairs.append((face, np.asarray(row["features"], np.float64)))
    return pairs


def test_hog_equals_scikit_image_on_the_aligned_face(rows: dict[str, pd.DataFrame]) -> None:
    for face, stored in _faces(rows, "face_hog"):
        expected = hog(
            face,
            orientations=9,
            pixels_per_cell=(8, 8),
            cells_per_block=(2, 2),
            block_norm="L2-Hys",
            feature_vector=True,
        )
        assert stored.shape == expected.shape and np.abs(expected).sum() > 1.0
        np.testing.assert_allclose(stored, expected, atol=1e-5)


def test_lbp_equals_uniform_patterns_histogrammed_per_cell(rows: dict[str, pd.DataFrame]) -> None:
    for face, stored in _faces(rows, "face_lbp"):
        expected = _lbp_reference(face, points=8, radius=1.0, grid=4)
        np.testing.assert_allclose(stored, expected, atol=1e-6)
        per_cell = stored.reshape(16, 10).sum(axis=1)
        np.testing.assert_allclose(per_cell, 1.0, atol=1e-5)  # each cell's histogram sums to 1
        assert (stored.reshape(16, 10).max(axis=1) < 1.0).all()  # textured, not one flat code
