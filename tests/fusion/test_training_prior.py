"""What predict gives a media (or video) no model could score: the training prior, worked out
by hand, and the reason a probe gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raypipe.errors import ConfigError
from raypipe.pipeline.predict import training_prior, unscored_reason
from raypipe.store.run_folder import RunFolder


def _run(tmp_path: Path) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    run.create({"store": "none", "classes": ["a", "b", "c"]})
    split = np.array(["train", "train", "train", "train", "val"])
    ids = np.array(list("vwxyz"))
    # Train labels a, c, c and one unlabelled; the val row (class b) is not counted.
    run.write_predictions("m.cls", ids, split, np.array([0, 2, 2, -1, 1]), np.eye(3)[[0] * 5])
    au = np.array([[1, -1], [0, np.nan], [1, -1], [np.nan, np.nan], [0, 1]])
    run.write_predictions("m.au", ids, split, np.full(5, -1), np.zeros((5, 2)), au)
    va = np.array([[0.5, -5], [-0.1, 0.2], [np.nan, 0.4], [0.2, np.nan], [1.0, 1.0]])
    run.write_predictions("m.va", ids, split, np.full(5, -1), np.zeros((5, 2)), va)
    return run


def test_the_prior_is_the_train_split_of_each_task(tmp_path: Path) -> None:
    run = _run(tmp_path)
    np.testing.assert_allclose(training_prior(run, ["m.cls"], "classification"), [1 / 3, 0, 2 / 3])
    # AU1 on in 2 of its 3 labelled train rows; AU2 never labelled in train -> 0.
    np.testing.assert_allclose(training_prior(run, ["m.au"], "multilabel"), [2 / 3, 0.0])
    # Valence mean of 0.5, -0.1, 0.2; arousal of 0.2, 0.4 (-5 and NaN unlabelled).
    np.testing.assert_allclose(training_prior(run, ["m.va"], "regression"), [0.2, 0.3])


def test_no_labelled_train_rows_is_a_clear_error(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    run.create({"store": "none", "classes": ["a", "b"]})
    run.write_predictions("m", np.array(["v"]), np.array(["val"]), np.array([0]), np.eye(2)[:1])
    with pytest.raises(ConfigError, match="no labelled train predictions"):
        training_prior(run, ["m"], "classification")


def test_the_reason_names_an_unreadable_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("not a video\n")
    assert unscored_reason(str(empty)).startswith("unreadable (")
    assert "empty" in unscored_reason(str(empty))
    assert unscored_reason(str(text)).startswith("unreadable (")
