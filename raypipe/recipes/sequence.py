"""The windowed multimodal sequence recipe's plain parts (ABAW7 feature-based system): the
modalities of the frame features, windows of frame rows per media, the masked training step,
frame outputs of overlapping windows averaged back to frames, and clip outputs averaged per
video. ``raypipe/pipeline/sequence.py`` runs them on Ray Train.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from raypipe.models.multitask import MultitaskOutput, multitask_loss
from raypipe.models.sequence import MultimodalSequenceModel, frame_windows
from raypipe.recipes.frames import FrameData
from raypipe.recipes.multitask import batch_targets

#: The recipe's frame-level tasks, in head order.
TASKS = ("expr", "au", "va")


@dataclass(frozen=True)
class Modality:
    """One modality of the frame features: an extractor's columns ``[start, stop)``."""

    name: str
    start: int
    stop: int

    @property
    def dim(self) -> int:
        """Feature size."""
        return self.stop - self.start


def modalities(feature_names: Sequence[str]) -> list[Modality]:
    """The modalities of ``feature_names`` (``<extractor>:<index>``, extractors side by side):
    every extractor is one, in column order."""
    extractors = [name.rsplit(":", 1)[0] for name in feature_names]
    out: list[Modality] = []
    for column, name in enumerate(extractors):
        if out and out[-1].name == name:
            out[-1] = Modality(name, out[-1].start, column + 1)
        else:
            out.append(Modality(name, column, column + 1))
    return out


def modality_masks(data: FrameData, parts: Sequence[Modality], visual: Sequence[str]) -> np.ndarray:
    """(N, M) bool: a frame has modality m: a face for visual extractors, a span (a non-zero
    mean) for audio/text ones."""
    masks = np.zeros((len(data), len(parts)), bool)
    for m, part in enumerate(parts):
        if part.name in visual:
            masks[:, m] = data.has_face
        else:
            masks[:, m] = np.abs(data.features[:, part.start : part.stop]).sum(1) > 0
    return masks


def media_windows(data: FrameData, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``window`` frame rows every ``hop`` rows within each media (time order), cut
    by :func:`raypipe.models.sequence.frame_windows`. Returns (W, window) int64 row
    positions (-1 where a window runs past its media's end) and the (W,) media id of each."""
    rows_out: list[np.ndarray] = []
    media_out: list[str] = []
    for media, rows in data.media_rows():
        _, pad, starts = frame_windows(
            np.zeros((len(rows), 0), np.float32), np.ones(len(rows), bool), window, hop
        )
        for start, inside in zip(starts, pad, strict=True):
            chunk = np.full(window, -1, np.int64)
            chunk[inside] = rows[start : start + window][: int(inside.sum())]
            rows_out.append(chunk)
            media_out.append(media)
    if not rows_out:
        return np.zeros((0, window), np.int64), np.zeros(0, object)
    return np.stack(rows_out), np.asarray(media_out, object)


def windows_to_frames(outputs: np.ndarray, windows: np.ndarray, n_rows: int) -> np.ndarray:
    """Per-frame means of window outputs: ``outputs`` (W, L, C) for the frame rows
    ``windows`` (W, L) (-1: padding, ignored); each of the ``n_rows`` frames gets the mean
    over every window position that holds it (NaN where none does). Returns (n_rows, C)."""
    keep = windows >= 0
    rows = windows[keep]
    sums = np.zeros((n_rows, outputs.shape[-1]), np.float64)
    np.add.at(sums, rows, outputs[keep].astype(np.float64))
    counts = np.bincount(rows, minlength=n_rows)[:, None]
    with np.errstate(invalid="ignore"):
        return (sums / np.where(counts > 0, counts, np.nan)).astype(np.float32)


def window_batch(
    features: np.ndarray, masks: np.ndarray, windows: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of windows (B, L) of frame rows: features (B, L, D) float32 and modality masks
    (B, L, M) bool (False on padding)."""
    safe = np.maximum(windows, 0)
    pad = windows >= 0
    frames = np.where(pad[..., None], features[safe], 0.0).astype(np.float32)
    present = masks[safe] & pad[..., None]
    return torch.from_numpy(frames), torch.from_numpy(present)


def task_weights(tasks: Sequence[str]) -> tuple[float, float, float]:
    """Loss weight per head (expr, au, va): 1 for the configured tasks, 0 for the others."""
    return tuple(1.0 if task in tasks else 0.0 for task in TASKS)  # type: ignore[return-value]


def train_step(
    model: MultimodalSequenceModel,
    optimizer: torch.optim.Optimizer,
    data: FrameData,
    masks: np.ndarray,
    windows: np.ndarray,
    tasks: Sequence[str],
) -> float:
    """One optimiser step on windows (B, L) of frame rows: the masked multitask loss over the
    window positions that hold a labelled frame with a face (padding, frames without a face
    and unlabelled labels contribute nothing). Returns the loss."""
    model.train()
    optimizer.zero_grad()
    frames, present = window_batch(data.features, masks, windows)
    expr, au, va = model(frames, present)
    keep = windows >= 0
    rows = windows[keep]
    learn = torch.from_numpy(data.has_face[rows])
    targets = batch_targets(data, rows)
    targets.expression_mask &= learn
    targets.au_mask &= learn[:, None]
    targets.va_mask &= learn
    flat = torch.from_numpy(keep)
    output = MultitaskOutput(expr[flat], au[flat], va[flat])
    loss, _ = multitask_loss(output, targets, task_weights(tasks))
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def frame_outputs(
    model: MultimodalSequenceModel,
    features: np.ndarray,
    masks: np.ndarray,
    windows: np.ndarray,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every frame's outputs, window outputs averaged over the windows holding it
    (:func:`windows_to_frames`): expression logits (N, C), AU logits (N, K) and
    valence/arousal (N, 2)."""
    model.eval()
    parts: list[list[np.ndarray]] = [[], [], []]
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        for out, value in zip(parts, model(*window_batch(features, masks, chunk)), strict=True):
            out.append(value.numpy())
    n = len(features)
    return tuple(  # type: ignore[return-value]
        windows_to_frames(np.concatenate(out), windows, n) for out in parts
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, float32."""
    shifted = logits - logits.max(1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(1, keepdims=True)).astype(np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function, float32."""
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def clip_outputs(
    data: FrameData, expr_logits: np.ndarray, clip_labels: dict[str, str] | None = None
) -> pd.DataFrame:
    """One row per media (order of first frame): ``media_id``, ``split``, ``probs`` (softmax
    of the mean of its frames' expression logits) and ``label`` (class index): the clip
    label of ``clip_labels`` when it names a class, else the most frequent labelled frame
    class, else -1."""
    clip_labels = clip_labels or {}
    index = {name: k for k, name in enumerate(data.classes)}
    rows = []
    for media, at in data.media_rows():
        given = clip_labels.get(media)
        if isinstance(given, str) and given in index:
            label = index[given]
        else:
            labelled = data.expr[at][data.expr[at] >= 0]
            label = int(np.bincount(labelled).argmax()) if len(labelled) else -1
        mean = expr_logits[at].mean(0, keepdims=True)
        rows.append(
            {
                "media_id": media,
                "split": str(data.split[at[0]]),
                "label": label,
                "probs": softmax(mean)[0],
            }
        )
    return pd.DataFrame(rows)


def sequence_scores(
    data: FrameData,
    rows: np.ndarray,
    outputs: tuple[np.ndarray, np.ndarray, np.ndarray],
    tasks: Sequence[str],
    thresholds: np.ndarray | float = 0.5,
) -> dict[str, float]:
    """Challenge scores of the configured ``tasks`` over frames ``rows`` from frame outputs
    (expression logits, AU logits, valence/arousal), as
    :func:`raypipe.recipes.multitask.task_scores` computes them, and their sum ('score')."""
    from raypipe.recipes.multitask import task_scores

    expr, au, va = outputs
    scores = task_scores(data, rows, softmax(expr), sigmoid(au), va, thresholds)
    keys = {"expr": "expr_macro_f1", "au": "au_mean_f1", "va": "va_ccc"}
    kept = {keys[t]: scores[keys[t]] for t in TASKS if t in tasks}
    kept["score"] = float(sum(v for v in kept.values() if np.isfinite(v)))
    return kept
