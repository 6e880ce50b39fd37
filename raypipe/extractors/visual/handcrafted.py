"""Hand-crafted appearance descriptors of aligned faces: HOG and LBP histograms (scikit-image).

Both work on the grey (ITU-R BT.601 luma) aligned face, so they see the same normalised geometry
whatever the face's size and roll in the frame.
- ``face_hog``: histograms of oriented gradients (Dalal and Triggs 2005), block-normalised.
- ``face_lbp``: uniform local binary patterns (Ojala et al. 2002) histogrammed over a grid of
  cells, each histogram normalised to sum 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from raypipe.config.extract import AlignedFaceSection, FaceHogConfig, FaceLbpConfig
from raypipe.extractors.visual.base import VisualExtractor, aligned_crops
from raypipe.faces.analysis import FrameWindow, WindowFaces


def grey(images: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB to ``(N, H, W)`` float64 luma in [0, 1]."""
    weights = np.array([0.299, 0.587, 0.114])
    return (images.astype(np.float64) @ weights) / 255.0


class _AlignedFaceDescriptor(VisualExtractor):
    """Shared plumbing: aligned grey crops of the picked faces, one descriptor each."""

    def __init__(self, config: AlignedFaceSection | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self.setup_faces()
        self.crop_size = self.config.crop_size
        self.margin = self.config.margin

    def describe(self, face: np.ndarray) -> np.ndarray:
        """Descriptor of one grey face ``(S, S)`` in [0, 1]."""
        raise NotImplementedError

    @property
    def dim(self) -> int:
        return int(self.describe(np.zeros((self.crop_size, self.crop_size))).shape[0])

    def config_dict(self) -> dict[str, Any]:
        return {"crop_size": self.crop_size, "margin": self.margin, **self.face_config()}

    def embed(
        self, window: FrameWindow, faces: WindowFaces, picks: Sequence[tuple[int, int]]
    ) -> np.ndarray:
        crops, row_of = aligned_crops(window, faces, self.crop_size, self.margin)
        faces_grey = grey(crops[[row_of[p] for p in picks]])
        return np.stack([self.describe(face) for face in faces_grey]).astype(np.float32)


class FaceHogExtractor(_AlignedFaceDescriptor):
    """HOG of each aligned grey face (block normalisation L2-Hys).

    Options: :class:`~raypipe.config.extract.FaceHogConfig`.
    """

    name: ClassVar[str] = "face_hog"

    config_model = FaceHogConfig

    def __init__(self, config: FaceHogConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self.orientations = self.config.orientations
        self.cell = self.config.cell
        self.block = self.config.block

    def describe(self, face: np.ndarray) -> np.ndarray:
        from skimage.feature import hog

        return hog(
            face,
            orientations=self.orientations,
            pixels_per_cell=(self.cell, self.cell),
            cells_per_block=(self.block, self.block),
            block_norm="L2-Hys",
            feature_vector=True,
        )

    @property
    def feature_names(self) -> list[str]:
        """``hog_block{r}_{c}_cell{R}_{C}_ori{o}`` in scikit-image's output order: for each
        normalisation block (row ``r``, column ``c`` of the block grid), each of its cells
        (row ``R``, column ``C`` of the face's cell grid, counted from the top left), each
        orientation bin ``o`` (0 .. orientations - 1, evenly over 0-180 degrees of unsigned
        gradient direction; bin 0 starts at gradients along x, i.e. vertical edges)."""
        cells = self.crop_size // self.cell
        blocks = cells - self.block + 1
        return [
            f"hog_block{r}_{c}_cell{r + i}_{c + j}_ori{o}"
            for r in range(blocks)
            for c in range(blocks)
            for i in range(self.block)
            for j in range(self.block)
            for o in range(self.orientations)
        ]

    def config_dict(self) -> dict[str, Any]:
        return {
            **super().config_dict(),
            "orientations": self.orientations,
            "cell": self.cell,
            "block": self.block,
        }

    def weights_digest(self) -> str:
        import skimage

        return f"skimage-{skimage.__version__}-{self.detector.weights_digest}"


class FaceLbpExtractor(_AlignedFaceDescriptor):
    """Uniform LBP histograms over a grid of cells of each aligned grey face.

    Options: :class:`~raypipe.config.extract.FaceLbpConfig`.
    """

    name: ClassVar[str] = "face_lbp"

    config_model = FaceLbpConfig

    def __init__(self, config: FaceLbpConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self.points = self.config.points
        self.radius = self.config.radius
        self.grid = self.config.grid

    def describe(self, face: np.ndarray) -> np.ndarray:
        from skimage.feature import local_binary_pattern

        codes = local_binary_pattern(
            (face * 255).astype(np.uint8), self.points, self.radius, method="uniform"
        )
        bins = self.points + 2  # uniform patterns 0..P, plus one bin for the rest
        edges = np.linspace(0, face.shape[0], self.grid + 1).astype(int)
        histograms = []
        for i in range(self.grid):
            for j in range(self.grid):
                cell = codes[edges[i] : edges[i + 1], edges[j] : edges[j + 1]]
                counts = np.bincount(cell.astype(np.int64).ravel(), minlength=bins)[:bins]
                histograms.append(counts / max(cell.size, 1))
        return np.concatenate(histograms)

    @property
    def feature_names(self) -> list[str]:
        """``lbp_cell{i}_{j}_u{k}`` and ``lbp_cell{i}_{j}_nonuniform``: for each grid cell (row
        ``i``, column ``j``, from the top left, row by row), the share of its pixels whose
        pattern is uniform with ``k`` of the ``points`` neighbours at least as bright as the
        centre (k = 0 .. points), then the share of non-uniform patterns."""
        bins = [f"u{k}" for k in range(self.points + 1)] + ["nonuniform"]
        return [
            f"lbp_cell{i}_{j}_{b}" for i in range(self.grid) for j in range(self.grid) for b in bins
        ]

    def config_dict(self) -> dict[str, Any]:
        return {
            **super().config_dict(),
            "points": self.points,
            "radius": self.radius,
            "grid": self.grid,
        }

    def weights_digest(self) -> str:
        import skimage

        return f"skimage-{skimage.__version__}-{self.detector.weights_digest}"
