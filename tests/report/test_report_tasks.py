"""`raypipe report` on runs of every task: media-level classification, frame-level expression
(scored over frames), multilabel action units at their thresholds, valence/arousal regression;
scores checked against values computed here by hand, and fuse's refusal of a multilabel run
without val media."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from raypipe.cli import app
from raypipe.config import FuseConfig
from raypipe.errors import ConfigError
from raypipe.labels import ABAW_AU12, ABAW_EXPR8
from raypipe.pipeline.fuse import run_fuse
from raypipe.report.writer import metrics_table, write_report
from raypipe.store.run_folder import RunFolder


def _frames_run(root: Path) -> RunFolder:
    """Frame-level predictions of one test video (6 frames) and one val video (4 frames)
    for the three ABAW tasks, with answers worked out in the tests below."""
    run = RunFolder(root)
    run.create(
        {
            "store": "none",
            "classes": list(ABAW_EXPR8),
            "targets": ["valence", "arousal"],
            "labels": "abaw_expr",
        }
    )
    ids = np.array(["v1"] * 6 + ["v2"] * 4)
    split = np.array(["test"] * 6 + ["val"] * 4)
    start = np.array([0, 0.04, 0.08, 0.12, 0.16, 0.2, 0, 0.04, 0.08, 0.12])
    # Expression: test truth 0 0 1 1 2 -1, predicted 0 1 1 1 0 2 -> macro-F1 13/30
    # (tests/test_metrics.py); val all right -> 1.
    label = np.array([0, 0, 1, 1, 2, -1, 4, 4, 5, 5])
    predicted = np.array([0, 1, 1, 1, 0, 2, 4, 4, 5, 5])
    run.write_predictions("multitask.expr", ids, split, label, np.eye(8)[predicted], start_s=start)
    # AU: two units shown (the rest of the 12 never labelled); AU1 at 0.35, AU2 at 0.5.
    au_truth = np.full((10, 12), np.nan)
    au_truth[:4, :2] = [[1, 0], [1, 1], [0, 1], [0, np.nan]]
    au_truth[6:, :2] = [[1, 1], [0, 0], [1, 1], [0, 0]]
    au_probs = np.zeros((10, 12))
    au_probs[:4, :2] = [[0.6, 0.2], [0.4, 0.9], [0.3, 0.7], [0.2, 0.8]]
    au_probs[6:, :2] = [[0.9, 0.9], [0.1, 0.1], [0.9, 0.9], [0.1, 0.1]]
    run.write_predictions(
        "multitask.au", ids, split, np.full(10, -1), au_probs, targets=au_truth, start_s=start
    )
    run.save_model(
        "multitask.au",
        {
            "task": "multilabel",
            "targets": list(ABAW_AU12),
            "thresholds": [0.35, 0.5] + [0.5] * 10,
            "modality": "visual",
        },
    )
    # VA: valence exact, arousal shifted by 0.5 on test -> CCC 1 and 1/2, mean 3/4.
    va_truth = np.zeros((10, 2))
    va_truth[:4] = [[-1.0, 0.0], [0.0, 0.5], [1.0, 0.5], [np.nan, 1.0]]
    va_truth[4:6] = np.nan
    va_truth[6:] = [[0.1, 0.2], [0.2, 0.1], [0.3, 0.4], [0.4, 0.3]]
    va_pred = va_truth.copy()
    va_pred[:4] = [[-1.0, 0.5], [0.0, 1.0], [1.0, 1.0], [5.0, 1.5]]
    va_pred[4:6] = 0.0
    run.write_predictions(
        "multitask.va", ids, split, np.full(10, -1), va_pred, targets=va_truth, start_s=start
    )
    run.save_model(
        "multitask.va",
        {"task": "regression", "targets": ["valence", "arousal"], "modality": "visual"},
    )
    return run


def test_frame_level_rows_hold_the_challenge_scores(tmp_path: Path) -> None:
    run = _frames_run(tmp_path / "run")
    table = metrics_table(run).set_index(["model", "split"])
    expr = table.loc[("multitask.expr", "test")]
    assert (expr["task"], expr["level"], expr["n"]) == ("classification", "frame", 5)
    assert expr["macro_f1"] == pytest.approx(13 / 30)
    assert expr["accuracy"] == pytest.approx(3 / 5)
    assert table.loc[("multitask.expr", "val"), "macro_f1"] == pytest.approx(1.0)
    au = table.loc[("multitask.au", "test")]
    assert (au["task"], au["level"], au["n"]) == ("multilabel", "frame", 4)
    assert au["mean_f1"] == pytest.approx(1.0)  # each unit at its own threshold
    assert np.isnan(au["macro_f1"]) and np.isnan(au["ccc"])
    va = table.loc[("multitask.va", "test")]
    assert (va["task"], va["n"]) == ("regression", 4)  # two frames unlabelled in both
    assert va["ccc"] == pytest.approx(0.75)
    assert table.loc[("multitask.va", "val"), "ccc"] == pytest.approx(1.0)
    per_target = metrics_table(run, per_target=True).set_index(["model", "split"])
    assert per_target.loc[("multitask.va", "test"), "ccc_arousal"] == pytest.approx(0.5)
    assert per_target.loc[("multitask.au", "test"), "f1_AU1"] == pytest.approx(1.0)


def test_report_files_and_json_rows_for_every_task(tmp_path: Path) -> None:
    run = _frames_run(tmp_path / "run")
    text = Path(write_report(run)).read_text()
    assert "multitask.au" in text and "per target" in text and "ccc_arousal" in text
    stored = json.loads(run.read_bytes("report/metrics.json"))
    assert {(r["model"], r["split"]) for r in stored} >= {("multitask.va", "test")}
    result = CliRunner().invoke(app, ["report", run.root, "--json"])
    assert result.exit_code == 0, result.output
    rows = {(r["model"], r["split"]): r for r in json.loads(result.stdout)}
    assert rows[("multitask.expr", "test")]["macro_f1"] == pytest.approx(13 / 30)
    assert rows[("multitask.au", "test")]["mean_f1"] == pytest.approx(1.0)
    assert rows[("multitask.va", "test")]["ccc"] == pytest.approx(0.75)
    assert "ccc" not in rows[("multitask.expr", "test")]  # no NaN in the JSON


def test_a_multilabel_search_run_is_reported_and_fuse_needs_its_val_media(tmp_path: Path) -> None:
    # As tune-classifiers writes a multilabel run: run.json task, records with thresholds,
    # media-level predictions with targets.
    run = RunFolder(tmp_path / "run")
    run.create({"store": "none", "classes": ["a"], "task": "multilabel", "targets": ["x", "y"]})
    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float)
    probs = np.array([[0.3, 0.1], [0.1, 0.9], [0.4, 0.8], [0.2, 0.2]])
    for name, thresholds in (("aus.logreg", [0.25, 0.5]), ("aus.mlp", [0.5, 0.5])):
        run.save_model(name, {"task": "multilabel", "thresholds": thresholds, "targets": None})
        run.write_predictions(
            name, np.array(list("abcd")), np.array(["test"] * 4), np.full(4, -1), probs, truth
        )
    table = metrics_table(run).set_index("model")
    assert table.loc["aus.logreg", "mean_f1"] == pytest.approx(1.0)
    # At 0.5 the first label calls nothing -> F1 0; the second is right -> mean 1/2.
    assert table.loc["aus.mlp", "mean_f1"] == pytest.approx(0.5)
    assert (table["level"] == "media").all()
    # Fusion of multilabel members needs labelled val media (tests/fusion/test_fuse_targets*).
    with pytest.raises(ConfigError, match="has 0 labelled val media, fewer than cv_folds=3"):
        run_fuse(FuseConfig(run=run.root))
