"""A scikit-learn style estimator that trains a torch head (:mod:`raypipe.models.heads`) on a
media-level matrix, so MLP and sequence heads sit in the same pipelines, searches and model
records as the scikit-learn classifiers.

Features are standardised inside the estimator with statistics of the training rows (for
sequences: of the real windows), so padding never shifts them. ``fit`` takes an optional
``on_epoch(epoch)`` callback, called after every epoch (1-based); the classifier search
reports validation scores from it, which lets ASHA stop poor trials early.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from raypipe.classify.pooling import split_sequence
from raypipe.models.heads import SEQUENCE_HEADS, MLPHead, SequenceHead


@contextmanager
def _one_thread() -> Iterator[None]:
    # These heads are tiny: several torch threads only contend with parallel trials.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class NeuralHeadEstimator(BaseEstimator):
    """Train a torch head with Adam.

    Args:
        kind: 'mlp' (one vector per media) or a sequence head ('lstm', 'gru', 'attention',
            'netvlad') over the window layout of
            :class:`raypipe.classify.pooling.WindowSequencePooler`.
        task: 'classification' (y (N,) int, softmax cross-entropy), 'multilabel' (y (N, L) 0/1,
            per-label sigmoid BCE) or 'regression' (y (N, K) float, mean squared error).
        hidden: hidden width.
        dropout: dropout probability.
        lr: Adam learning rate.
        weight_decay: Adam L2 penalty.
        epochs: passes over the training rows.
        batch_size: rows per step.
        steps: windows per media (sequence heads only).
        class_weight: weight classification classes inversely to their training frequency.
        seed: torch seed of initialisation and shuffling.
    """

    def __init__(
        self,
        kind: str = "mlp",
        task: str = "classification",
        hidden: int = 128,
        dropout: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        epochs: int = 30,
        batch_size: int = 32,
        steps: int = 8,
        class_weight: bool = True,
        seed: int = 0,
    ) -> None:
        self.kind = kind
        self.task = task
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.steps = steps
        self.class_weight = class_weight
        self.seed = seed

    # -- inputs ------------------------------------------------------------------------------
    def _tensors(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = np.nan_to_num(np.asarray(x, np.float32))
        if self.kind == "mlp":
            return torch.from_numpy((x - self.mean_) / self.scale_), None
        windows, mask = split_sequence(x, self.steps)
        windows = (windows - self.mean_) / self.scale_ * mask[..., None]
        return torch.from_numpy(windows.astype(np.float32)), torch.from_numpy(mask)

    def _fit_scaler(self, x: np.ndarray) -> None:
        x = np.nan_to_num(np.asarray(x, np.float32))
        if self.kind == "mlp":
            rows = x
        else:
            windows, mask = split_sequence(x, self.steps)
            rows = windows[mask] if mask.any() else windows.reshape(-1, windows.shape[-1])
        self.mean_ = rows.mean(axis=0).astype(np.float32)
        self.scale_ = np.maximum(rows.std(axis=0), 1e-6).astype(np.float32)

    def _build_module(self) -> nn.Module:
        dim, out = self.module_shape_
        if self.kind == "mlp":
            return MLPHead(dim, out, self.hidden, self.dropout)
        return SequenceHead(dim, out, self.kind, self.hidden, self.dropout)

    # -- saving ------------------------------------------------------------------------------
    # The fitted torch module is saved as plain NumPy arrays (its state dict) and rebuilt on
    # load, so a saved estimator holds no torch objects: run folders store it with skops
    # (raypipe.store.artifacts), which loads arrays and never unpickles code.
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        module = state.pop("module_", None)
        if module is not None:
            state["module_state_"] = {
                name: value.detach().cpu().numpy().copy()
                for name, value in module.state_dict().items()
            }
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        weights = state.pop("module_state_", None)
        super().__setstate__(state)
        if weights is not None:
            # Sizes come from the file: check them on the meta device (nothing allocated)
            # against the stored arrays before building, so a crafted file cannot make a
            # load allocate more than the arrays it carries.
            with torch.device("meta"):
                shapes = {k: tuple(v.shape) for k, v in self._build_module().state_dict().items()}
            stored = {k: tuple(np.shape(v)) for k, v in weights.items()}
            if shapes != stored:
                raise ValueError(
                    f"saved {self.kind} head weights do not match its shape {self.module_shape_}"
                )
            self.module_ = self._build_module()
            self.module_.load_state_dict(
                {name: torch.from_numpy(np.array(value)) for name, value in weights.items()}
            )
            self.module_.eval()

    def _forward(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.module_(features) if mask is None else self.module_(features, mask)

    # -- training ----------------------------------------------------------------------------
    def fit(
        self, x: np.ndarray, y: np.ndarray, on_epoch: Callable[[int], None] | None = None
    ) -> NeuralHeadEstimator:
        """Train on (N, D) ``x`` and targets ``y`` for ``epochs`` epochs."""
        if self.kind != "mlp" and self.kind not in SEQUENCE_HEADS:
            allowed = ", ".join(["mlp", *SEQUENCE_HEADS])
            raise ValueError(f"unknown neural head '{self.kind}'; allowed: {allowed}")
        with _one_thread():
            return self._fit(x, y, on_epoch)

    def _fit(
        self, x: np.ndarray, y: np.ndarray, on_epoch: Callable[[int], None] | None
    ) -> NeuralHeadEstimator:
        torch.manual_seed(self.seed)
        self._fit_scaler(x)
        features, mask = self._tensors(x)
        if self.task == "classification":
            self.classes_ = np.unique(np.asarray(y, int))
            target = torch.from_numpy(np.searchsorted(self.classes_, np.asarray(y, int)))
            out = len(self.classes_)
            weight = None
            if self.class_weight:
                counts = np.bincount(target.numpy(), minlength=out).astype(np.float32)
                weight = torch.from_numpy(len(target) / (out * np.maximum(counts, 1)))
            loss_fn: nn.Module = nn.CrossEntropyLoss(weight=weight)
        else:
            target = torch.from_numpy(np.asarray(y, np.float32).reshape(len(x), -1))
            out = target.shape[1]
            loss_fn = nn.BCEWithLogitsLoss() if self.task == "multilabel" else nn.MSELoss()
        dim = features.shape[-1]
        self.module_shape_ = (int(dim), int(out))
        self.module_: nn.Module = self._build_module()
        optimiser = torch.optim.Adam(
            self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        generator = torch.Generator().manual_seed(self.seed)
        for epoch in range(1, int(self.epochs) + 1):
            self.module_.train()
            order = torch.randperm(len(features), generator=generator)
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                logits = self._forward(features[batch], None if mask is None else mask[batch])
                loss = loss_fn(logits, target[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            self.epochs_trained_ = epoch
            if on_epoch is not None:
                on_epoch(epoch)
        return self

    # -- prediction --------------------------------------------------------------------------
    def _outputs(self, x: np.ndarray) -> np.ndarray:
        self.module_.eval()
        features, mask = self._tensors(x)
        with torch.no_grad(), _one_thread():
            return self._forward(features, mask).numpy()

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Classification (N, len(classes_)) softmax; multilabel (N, L) sigmoid."""
        if self.task == "regression":
            raise AttributeError("a regression head has no probabilities; use predict")
        outputs = torch.from_numpy(self._outputs(x))
        if self.task == "multilabel":
            return torch.sigmoid(outputs).numpy()
        return torch.softmax(outputs, dim=1).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Classification (N,) class; multilabel (N, L) 0/1 at 0.5; regression (N, K) values."""
        if self.task == "regression":
            return self._outputs(x)
        probs = self.predict_proba(x)
        if self.task == "multilabel":
            return (probs >= 0.5).astype(np.int32)
        return self.classes_[probs.argmax(axis=1)]
