"""The multitask recipe's plain parts (ABAW 2020 multitask with incomplete labels, over stored
frame features): the network, standardisation, multi-label random oversampling of rare
labels, the masked training step of a teacher or a distilled student, outputs, per-AU
thresholds chosen on validation, frames without a face filled from their neighbours, and the
challenge scores. ``raypipe/pipeline/multitask.py`` runs them on Ray Train.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from raypipe.classify.targets import choose_thresholds
from raypipe.metrics import au_mean_f1, expression_macro_f1, va_ccc
from raypipe.models.multitask import (
    FeatureEncoder,
    MultitaskNet,
    MultitaskOutput,
    MultitaskTargets,
    distillation_loss,
    multitask_loss,
)
from raypipe.recipes.frames import FrameData

#: The recipe's tasks and each one's kind, as run folders record them.
TASK_KINDS = {"expr": "classification", "au": "multilabel", "va": "regression"}


def build_network(
    in_dim: int, n_expressions: int, n_aus: int, hidden: int, dropout: float
) -> MultitaskNet:
    """A :class:`MultitaskNet` over ``in_dim`` stored features (a :class:`FeatureEncoder`)."""
    return MultitaskNet(FeatureEncoder(in_dim, hidden, dropout), n_expressions, n_aus, hidden)


@dataclass
class Standardiser:
    """Per-feature mean and standard deviation of the training frames with a face."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> Standardiser:
        """Fitted on (N, D) features (N may be 0: identity)."""
        if len(features) == 0:
            d = features.shape[1]
            return cls(np.zeros(d, np.float32), np.ones(d, np.float32))
        std = features.std(0)
        return cls(
            features.mean(0).astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)
        )

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)


def training_rows(data: FrameData) -> np.ndarray:
    """Rows the network learns from: train split, a face, at least one label."""
    return np.flatnonzero((data.split == "train") & data.has_face & data.labelled())


def label_sets(data: FrameData) -> np.ndarray:
    """(N, C + K) bool: each frame's positive labels for rebalancing, the expression classes
    (one-hot where labelled) and the action units present."""
    n_classes = len(data.classes)
    expr = np.zeros((len(data), n_classes), bool)
    labelled = data.expr >= 0
    expr[np.flatnonzero(labelled), data.expr[labelled]] = True
    return np.concatenate([expr, (data.au > 0.5) & data.au_mask], axis=1)


def ml_ros(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Multi-label random oversampling (ML-ROS, Charte et al. 2015): indices of samples to
    clone, ``round(share x N)`` of them, drawn from the bags of minority labels.

    A label's imbalance ratio is ``IRLbl = (count of the most frequent label) / (its
    count)``; labels with IRLbl above the mean (over labels that occur) are minority labels.
    Minority labels take turns: a random sample carrying the label is cloned (raising every
    count of its labels), until the clone budget is spent; a label leaves the minority once its
    IRLbl falls to the initial mean. Args: ``labels`` (N, L) bool. Returns the (M,) indices
    of the clones (to append to the original rows).
    """
    labels = np.asarray(labels, bool)
    budget = round(share * len(labels))
    counts = labels.sum(0).astype(np.float64)
    present = counts > 0
    if budget <= 0 or present.sum() < 2:
        return np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    irl = np.where(present, counts.max() / np.maximum(counts, 1), 0.0)
    mean_ir = irl[present].mean()
    minority = [j for j in np.flatnonzero(present) if irl[j] > mean_ir]
    bags = {j: np.flatnonzero(labels[:, j]) for j in minority}
    clones: list[int] = []
    while budget > 0 and minority:
        for j in list(minority):
            if budget <= 0:
                break
            pick = int(rng.choice(bags[j]))
            clones.append(pick)
            counts += labels[pick]
            budget -= 1
            if counts.max() / counts[j] <= mean_ir:
                minority.remove(j)
    return np.asarray(clones, np.int64)


def batch_targets(data: FrameData, index: np.ndarray) -> MultitaskTargets:
    """The partial labels of rows ``index`` as tensors (VA counts as labelled where both
    values are)."""
    return MultitaskTargets(
        expression=torch.as_tensor(data.expr[index]),
        expression_mask=torch.as_tensor(data.expr[index] >= 0),
        action_units=torch.as_tensor(data.au[index]),
        au_mask=torch.as_tensor(data.au_mask[index]),
        valence_arousal=torch.as_tensor(data.va[index]),
        va_mask=torch.as_tensor(data.va_mask[index].all(1)),
    )


def batches(rows: np.ndarray, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """``rows`` shuffled with ``seed`` and cut into batches."""
    order = np.random.default_rng(seed).permutation(rows)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def train_step(
    model: MultitaskNet,
    optimizer: torch.optim.Optimizer,
    features: torch.Tensor,
    targets: MultitaskTargets,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    teacher: MultitaskNet | None = None,
    alpha: float = 0.5,
    temperature: float = 2.0,
) -> dict[str, float]:
    """One optimiser step on a batch of standardised ``features`` (N, D): the masked
    multitask loss (a teacher), or with ``teacher`` the distillation loss (a student).
    Returns the loss and its parts."""
    model.train()
    optimizer.zero_grad()
    output = model(features)
    if teacher is None:
        loss, parts = multitask_loss(output, targets, weights)
    else:
        teacher.eval()
        with torch.no_grad():
            soft = teacher(features)
        loss, parts = distillation_loss(output, soft, targets, alpha, temperature)
    loss.backward()
    optimizer.step()
    return {"loss": float(loss.detach()), **parts}


@torch.no_grad()
def predict(
    model: torch.nn.Module, features: np.ndarray, batch_size: int = 4096
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outputs for (N, D) standardised features: expression probabilities (N, C), AU
    probabilities (N, K) and valence/arousal (N, 2), float32."""
    model.eval()
    parts: list[MultitaskOutput] = []
    for start in range(0, len(features), batch_size):
        parts.append(model(torch.as_tensor(features[start : start + batch_size])))
    if not parts:
        n_c = model.expression[-1].out_features  # type: ignore[index]
        n_k = model.action_units[-1].out_features  # type: ignore[index]
        return (
            np.zeros((0, n_c), np.float32),
            np.zeros((0, n_k), np.float32),
            np.zeros((0, 2), np.float32),
        )
    expr = torch.cat([torch.softmax(p.expression, 1) for p in parts]).numpy()
    au = torch.cat([torch.sigmoid(p.action_units) for p in parts]).numpy()
    va = torch.cat([p.valence_arousal for p in parts]).numpy()
    return expr.astype(np.float32), au.astype(np.float32), va.astype(np.float32)


def au_thresholds(
    probs: np.ndarray, au: np.ndarray, au_mask: np.ndarray, grid: list[float] | np.ndarray
) -> np.ndarray:
    """Per-AU decision thresholds (K,): each unit takes the value of ``grid`` with the best F1
    over the frames labelled for it (ties: the value nearest 0.5; a unit without a labelled
    positive keeps 0.5), as :func:`raypipe.classify.targets.choose_thresholds` chooses."""
    thresholds = np.full(probs.shape[1], 0.5)
    grid = np.asarray(grid, np.float64)
    for k in range(probs.shape[1]):
        rows = au_mask[:, k]
        if rows.any():
            thresholds[k] = choose_thresholds(au[rows, k : k + 1], probs[rows, k : k + 1], grid)[0]
    return thresholds


def fill_from_neighbours(
    values: np.ndarray,
    has_face: np.ndarray,
    media_id: np.ndarray,
    t_s: np.ndarray,
    prior: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (N, ...) with each frame without a face given the values of the nearest
    frame in time with one, of the same media; ``prior`` where a media has no face at all.
    Returns the filled values and the (N,) bool mask of filled frames."""
    out = np.array(values, copy=True)
    filled = ~np.asarray(has_face, bool)
    for media in np.unique(media_id[filled]):
        rows = np.flatnonzero(media_id == media)
        face = rows[has_face[rows]]
        empty = rows[~has_face[rows]]
        if not len(face):
            out[empty] = prior
            continue
        order = np.argsort(t_s[face], kind="stable")
        face, times = face[order], t_s[face][order]
        right = np.clip(np.searchsorted(times, t_s[empty]), 0, len(face) - 1)
        left = np.clip(right - 1, 0, len(face) - 1)
        nearer_left = np.abs(t_s[empty] - times[left]) <= np.abs(times[right] - t_s[empty])
        out[empty] = values[np.where(nearer_left, face[left], face[right])]
    return out, filled


def task_scores(
    data: FrameData,
    rows: np.ndarray,
    expr: np.ndarray,
    au: np.ndarray,
    va: np.ndarray,
    thresholds: np.ndarray | float = 0.5,
) -> dict[str, float]:
    """Challenge scores over the frames ``rows``: expression macro-F1 ('expr_macro_f1'), AU
    mean F1 at ``thresholds`` ('au_mean_f1'), valence/arousal mean CCC ('va_ccc'), and their
    sum over the tasks that have labels ('score', the selection score)."""
    truth_au = np.where(data.au_mask[rows], data.au[rows], np.nan)
    truth_va = np.where(data.va_mask[rows], data.va[rows], np.nan)
    scores = {
        "expr_macro_f1": expression_macro_f1(data.expr[rows], expr[rows].argmax(1))
        if len(rows)
        else float("nan"),
        "au_mean_f1": au_mean_f1(truth_au, au[rows], thresholds) if len(rows) else float("nan"),
        "va_ccc": va_ccc(truth_va, va[rows])["ccc"] if len(rows) else float("nan"),
    }
    scores["score"] = float(sum(v for v in scores.values() if math.isfinite(v)))
    return scores


class MultitaskFrameModel:
    """One head of a trained multitask network as a frame-level estimator over raw stored
    features (N, D), in the shape run-folder model records hold (``record["pipeline"]``):
    ``predict_proba`` gives expression probabilities (head 'expr', over ``classes_``) or AU
    probabilities (head 'au'), ``predict`` the class index, 0/1 per AU at ``thresholds``, or
    valence/arousal (head 'va'). Weights are NumPy arrays (a run folder stores no pickle);
    features are standardised with the training statistics first.
    """

    def __init__(
        self,
        head: str,
        state: dict[str, np.ndarray],
        mean: np.ndarray,
        std: np.ndarray,
        n_classes: int,
        n_aus: int,
        hidden: int,
        thresholds: np.ndarray | None = None,
    ) -> None:
        self.head = head
        self.state = {k: np.asarray(v, np.float32) for k, v in state.items()}
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.n_classes, self.n_aus, self.hidden = int(n_classes), int(n_aus), int(hidden)
        self.thresholds = np.full(n_aus, 0.5) if thresholds is None else np.asarray(thresholds)
        self.classes_ = np.arange(self.n_classes)

    def _outputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        network = build_network(len(self.mean), self.n_classes, self.n_aus, self.hidden, 0.0)
        network.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self.state.items()})
        features = np.asarray(x, np.float32).reshape(len(x), -1)
        return predict(network, Standardiser(self.mean, self.std)(features))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, C) expression or (N, K) AU probabilities."""
        expr, au, _ = self._outputs(x)
        return au if self.head == "au" else expr

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) classes (expr), (N, K) 0/1 (au) or (N, 2) valence/arousal (va)."""
        expr, au, va = self._outputs(x)
        if self.head == "expr":
            return expr.argmax(1)
        if self.head == "au":
            return (au >= self.thresholds[None]).astype(np.int32)
        return va
