"""One epoch of training, evaluation, early stopping and the state a resumed run needs.

Everything here is plain torch: the Ray Train worker (raypipe.pipeline.train) wires it to
distributed data loaders and checkpoints, and unit tests call it directly.
"""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from raypipe.metrics import classification_scores

#: Files of a training checkpoint folder: the model (loadable by build_backbone), the optimiser,
#: scheduler and scaler states (tensors and plain values only: both .pt files load with
#: ``torch.load(weights_only=True)``, which unpickles no code) and the run's progress as JSON.
MODEL_FILE = "model.pt"
STATE_FILE = "trainer_state.pt"
PROGRESS_FILE = "training_state.json"


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def autocast(device: torch.device, enabled: bool) -> Any:
    """float16 autocast on CUDA when ``enabled``; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    scaler: torch.amp.GradScaler | None = None,
    mixed_precision: bool = False,
) -> dict[str, float]:
    """One pass over ``loader`` with cross-entropy; returns mean ``loss``, ``accuracy`` and
    the number of ``images`` seen."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    total, correct, loss_sum = 0, 0, 0.0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, mixed_precision):
            logits = model(images)
            loss = loss_fn(logits, labels)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        total += len(labels)
        loss_sum += float(loss.detach()) * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
    return {
        "loss": loss_sum / max(total, 1),
        "accuracy": correct / max(total, 1),
        "images": float(total),
    }


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device, mixed_precision: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Outputs ``(N, K)`` float32 of ``model`` over ``loader`` and the labels ``(N,)``."""
    model.eval()
    outputs, labels = [], []
    for images, target in loader:
        with autocast(device, mixed_precision):
            outputs.append(model(images.to(device)).float().cpu())
        labels.append(target.cpu())
    if not outputs:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return torch.cat(outputs).numpy(), torch.cat(labels).numpy()


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    n_classes: int,
    mixed_precision: bool = False,
) -> dict[str, float]:
    """Cross-entropy ``loss``, ``accuracy``, ``macro_f1`` and ``uar`` over ``loader``."""
    logits, labels = predict(model, loader, device, mixed_precision)
    if len(labels) == 0:
        return {"loss": math.nan, "accuracy": math.nan, "macro_f1": math.nan, "uar": math.nan}
    loss = float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)))
    return {"loss": loss, **classification_scores(labels, logits.argmax(1), n_classes)}


@dataclass
class TrainingState:
    """Progress of a run that survives a restart.

    Attributes:
        epoch: last finished epoch (0: none).
        best_score: best validation score so far (higher is better).
        best_epoch: epoch of ``best_score``.
        bad_epochs: epochs since the best one (early stopping counts these).
        history: metrics of every finished epoch.
        stopped_early: early stopping ended the run.
    """

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False

    def record(self, metrics: dict[str, float], score: float, patience: int) -> bool:
        """Add a finished epoch's ``metrics`` with its validation ``score``; return True when
        the run should stop early (``patience`` epochs without improvement; 0 never stops)."""
        self.epoch = int(metrics["epoch"])
        self.history.append(dict(metrics))
        if score > self.best_score:
            self.best_score, self.best_epoch, self.bad_epochs = score, self.epoch, 0
        else:
            self.bad_epochs += 1
        self.stopped_early = patience > 0 and self.bad_epochs >= patience
        return self.stopped_early


def save_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    state: TrainingState,
    meta: dict[str, Any],
) -> None:
    """Write ``model.pt`` ({"model": state dict, **meta}; meta of plain values),
    ``trainer_state.pt`` (optimiser, scheduler, scaler states) and ``training_state.json``
    (``state``) into ``folder``. ``model.pt`` alone is what build_backbone and
    build_classifier read."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": unwrap(model).state_dict(), **meta}, folder / MODEL_FILE)
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
        },
        folder / STATE_FILE,
    )
    (folder / PROGRESS_FILE).write_text(json.dumps(asdict(state)))


def read_training_state(folder: Path) -> TrainingState:
    """The :class:`TrainingState` of a checkpoint folder written by :func:`save_checkpoint`."""
    return TrainingState(**json.loads((Path(folder) / PROGRESS_FILE).read_text()))


def load_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
) -> TrainingState:
    """Load a folder written by :func:`save_checkpoint` into the given objects."""
    weights = torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True)
    unwrap(model).load_state_dict(weights["model"])
    rest = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(rest["optimizer"])
    scheduler.load_state_dict(rest["scheduler"])
    if scaler is not None and rest["scaler"] is not None:
        scaler.load_state_dict(rest["scaler"])
    return read_training_state(folder)
