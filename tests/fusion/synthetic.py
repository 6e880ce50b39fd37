"""Synthetic member predictions with known best fusions, shared by the fusion tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raypipe.store.run_folder import RunFolder

CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]


def complementary(n: int = 140, seed: int = 0, noise: float = 0.05) -> tuple[np.ndarray, ...]:
    """Two models that each resolve half of a 6-class label, plus a noise model.

    Model 0 ("face") puts its mass on the pair {2k, 2k+1} holding the true class; model 1
    ("voice") on the three classes of the true class's parity; model 2 is random. Only the
    two together identify the class (the pair and the parity intersect in one class).
    Returns probs (3, n, 6) and labels (n,).
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 6
    rng.shuffle(labels)
    probs = np.zeros((3, n, 6))
    for i, y in enumerate(labels):
        pair = [2 * (y // 2), 2 * (y // 2) + 1]
        parity = [c for c in range(6) if c % 2 == y % 2]
        probs[0, i, pair] = 1.0
        probs[1, i, parity] = 1.0
    probs[:2] += rng.uniform(0, noise, probs[:2].shape)
    probs[2] = rng.dirichlet(np.full(6, 0.3), n)  # confident and random: harmful
    return probs / probs.sum(axis=2, keepdims=True), labels


def column_experts(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two models whose scores are informative on different classes' columns.

    Model 0's column c (c < 3) is 0.6 when the class is c, else 0; its other columns are noise
    in [0, 1]. Model 1 is the same with the halves swapped. Per-class weights (model 0 for
    columns 0-2, model 1 for columns 3-5) classify every media; one weight per model cannot,
    as each model's noise columns outscore the truth at times. Returns (2, n, 6), (n,).
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 6
    probs = rng.uniform(0, 1, (2, n, 6))
    for m, columns in enumerate((range(3), range(3, 6))):
        for c in columns:
            probs[m, :, c] = np.where(labels == c, 0.6, 0.0)
    return probs, labels


def write_run(root: Path, tables: dict[str, np.ndarray], labels: np.ndarray) -> RunFolder:
    """A run folder whose models' predictions are ``tables`` (name -> (N, C) probs), with the
    media split 50/25/25 into train/val/test in order and the EmotiW class names."""
    n = len(labels)
    splits = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    run = RunFolder(root)
    n_classes = next(iter(tables.values())).shape[1]
    run.create({"store": "synthetic", "classes": CLASSES[:n_classes]})
    ids = np.array([f"m{i:04d}" for i in range(n)], dtype=object)
    for name, probs in tables.items():
        run.write_predictions(name, ids, splits, labels, probs)
    return run
