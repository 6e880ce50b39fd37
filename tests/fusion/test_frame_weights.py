"""Weights of frame-level models of one task, searched on val by the challenge score, with
each model's frames matched to the first model's by nearest time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raypipe.pipeline.predict import frame_weights
from raypipe.store.run_folder import RunFolder


def _write(run: RunFolder, name: str, times: np.ndarray, outputs: np.ndarray, **kw: object) -> None:
    n = len(times)
    run.write_predictions(
        name,
        np.array(["v"] * n),
        np.array(["val"] * n),
        kw.get("labels", np.full(n, -1)),
        outputs,
        kw.get("targets"),
        times,
    )


def test_the_right_model_gets_the_weight(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    run.create({"store": "none", "classes": ["a", "b", "c"]})
    truth = np.array([0, 1, 2, 1, 0, 2])
    times = np.arange(6) * 0.2
    _write(run, "face.expr", times, np.eye(3)[(truth + 1) % 3], labels=truth)  # always wrong
    # The audio model's rows sit 0.05 s later: matched to the face rows by nearest time.
    _write(run, "audio.expr", times + 0.05, np.eye(3)[truth], labels=truth)
    weights = frame_weights(run, ["face.expr", "audio.expr"], "classification", np.zeros(0))
    assert weights["audio.expr"] > weights["face.expr"]
    assert sum(weights.values()) == pytest.approx(1.0)


def test_two_biased_regressors_are_averaged(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    run.create({"store": "none", "classes": ["a"]})
    times = np.arange(8) * 0.1
    truth = np.stack([np.linspace(-0.8, 0.8, 8), np.linspace(0.5, -0.5, 8)], axis=1)
    # One model reads 0.3 too high, the other 0.3 too low: only their mean has CCC 1.
    _write(run, "a.va", times, truth + 0.3, targets=truth)
    _write(run, "b.va", times, truth - 0.3, targets=truth)
    weights = frame_weights(run, ["a.va", "b.va"], "regression", np.zeros(0))
    assert weights == pytest.approx({"a.va": 0.5, "b.va": 0.5})
    # A single model keeps weight 1.
    assert frame_weights(run, ["a.va"], "regression", np.zeros(0)) == {"a.va": 1.0}


def test_a_biased_model_loses_to_a_right_one_in_regression(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    run.create({"store": "none", "classes": ["a"]})
    times = np.arange(8) * 0.1
    truth = np.stack([np.linspace(-0.8, 0.8, 8), np.linspace(0.5, -0.5, 8)], axis=1)
    _write(run, "a.va", times, truth, targets=truth)
    _write(run, "b.va", times, -truth, targets=truth)
    assert frame_weights(run, ["a.va", "b.va"], "regression", np.zeros(0)) == pytest.approx(
        {"a.va": 1.0, "b.va": 0.0}
    )
