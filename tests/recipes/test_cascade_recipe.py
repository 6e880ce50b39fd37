"""`raypipe recipe cascade`: the class partition and the combination of coarse and fine
outputs on hand-computed cases, then end to end on a tiny store: stages fitted in Ray tasks,
per-class predictions for every sampled frame, the smoothing window chosen on val, a re-run
that fits nothing, and a killed stage worker that Ray re-runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from raypipe.classify.classifiers import predict_proba_full
from raypipe.classify.targets import model_outputs
from raypipe.cli.commands import app
from raypipe.config.cascade import CascadeRecipeConfig
from raypipe.config.frames import FrameDataConfig
from raypipe.errors import ConfigError
from raypipe.fusion.frame_smoothing import SMOOTHING_WINDOWS_S
from raypipe.pipeline.predict import frame_models
from raypipe.recipes.cascade import (
    check_classifier,
    combine,
    fine_groups,
    fit_stage,
    partition,
    stage_labels,
)
from raypipe.recipes.frames import build_frame_data
from raypipe.store.run_folder import RunFolder
from tests.pickle_scan import pickled_files
from tests.recipes.frame_store import write_tiny_frames

CLASSES = ["Neutral", "Anger", "Disgust", "Fear", "Happiness"]


def test_partition_keeps_configured_order_and_leaves_the_rest_alone() -> None:
    groups = partition(CLASSES, {"Negative": ["Fear", "Anger", "Disgust"]})
    assert groups == {
        "Negative": ["Fear", "Anger", "Disgust"],
        "Neutral": ["Neutral"],
        "Happiness": ["Happiness"],
    }
    assert fine_groups(groups) == ["Negative"]
    with pytest.raises(ConfigError, match="'Sad', which is not a class"):
        partition(CLASSES, {"Negative": ["Sad"]})
    with pytest.raises(ConfigError, match="'Fear' is in two groups"):
        partition(CLASSES, {"a": ["Fear", "Anger"], "b": ["Fear", "Disgust"]})
    # Stage labels follow the same orders: group index, position inside the group.
    labels = np.array([3, -1, 0, 1, 4, 2])
    rows, coarse = stage_labels("coarse", labels, CLASSES, groups)
    assert rows.tolist() == [0, 2, 3, 4, 5] and coarse.tolist() == [0, 1, 0, 2, 0]
    rows, fine = stage_labels("fine.Negative", labels, CLASSES, groups)
    assert rows.tolist() == [0, 3, 5] and fine.tolist() == [0, 1, 2]


def test_combination_on_a_hand_computed_case() -> None:
    """The fine group's members are not in class order, so reading the fine outputs in the
    wrong order, or putting a class in the wrong group, changes the answer."""
    groups = partition(CLASSES, {"Negative": ["Fear", "Anger", "Disgust"]})
    coarse = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])  # Negative, Neutral, Happiness
    fine = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])  # Fear, Anger, Disgust
    expected = np.array(
        [
            # Neutral Anger       Disgust     Fear        Happiness
            [0.3, 0.6 * 0.3, 0.6 * 0.2, 0.6 * 0.5, 0.1],
            [0.5, 0.2 * 0.1, 0.2 * 0.8, 0.2 * 0.1, 0.3],
        ]
    )
    out = combine(coarse, {"Negative": fine}, CLASSES, groups)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-6)
    reversed_fine = combine(coarse, {"Negative": fine[:, ::-1]}, CLASSES, groups)
    assert not np.allclose(reversed_fine, expected, atol=1e-3)
    wrong = partition(CLASSES, {"Negative": ["Anger", "Disgust", "Fear"]})
    assert not np.allclose(combine(coarse, {"Negative": fine}, CLASSES, wrong), expected)
    # Argmax differs too: the second frame is Disgust, not Fear or Anger.
    assert out.argmax(1).tolist() == [0, 0] and out[1, 1:4].argmax() == 1


def test_two_fine_groups_and_a_group_without_a_fine_model() -> None:
    groups = partition(CLASSES, {"Neg": ["Disgust", "Anger"], "Pos": ["Happiness", "Neutral"]})
    assert list(groups) == ["Neg", "Pos", "Fear"]
    coarse = np.array([[0.5, 0.4, 0.1]])
    fine_neg = np.array([[0.9, 0.1]])  # Disgust, Anger
    fine_pos = np.array([[0.25, 0.75]])  # Happiness, Neutral
    out = combine(coarse, {"Neg": fine_neg, "Pos": fine_pos}, CLASSES, groups)
    np.testing.assert_allclose(out, [[0.3, 0.05, 0.45, 0.1, 0.1]], atol=1e-6)
    # Without Pos's fine model its mass is shared equally.
    out = combine(coarse, {"Neg": fine_neg}, CLASSES, groups)
    np.testing.assert_allclose(out, [[0.2, 0.05, 0.45, 0.1, 0.2]], atol=1e-6)


def test_a_stage_with_one_class_is_a_prior_that_a_run_folder_can_store() -> None:
    from raypipe.store import artifacts

    x = np.random.default_rng(0).normal(size=(6, 3))
    model = artifacts.loads(artifacts.dumps(fit_stage(x, np.full(6, 2), "logreg", {})))
    np.testing.assert_allclose(predict_proba_full(model, x, 4), np.tile([0, 0, 1, 0], (6, 1)))
    with pytest.raises(ValueError, match="no training frame"):
        fit_stage(x[:0], np.zeros(0, np.int64), "logreg", {})
    with pytest.raises(ConfigError, match="reads window sequences"):
        check_classifier("lstm", "fine")


def test_config_windows_are_the_smoothing_candidates() -> None:
    assert tuple(CascadeRecipeConfig().smoothing_windows) == SMOOTHING_WINDOWS_S


# -- end to end ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    return write_tiny_frames(tmp_path_factory.mktemp("cascade_frames"), seed=3)


def _sets(annotations: Path, *more: str) -> list[str]:
    return [
        f"data.annotations={annotations}",
        "data.extractors=[vis]",
        "data.fps=25",
        "coarse.params={C: 0.1}",
        "cpus_per_task=0.5",
        *more,
    ]


def _args(store: str, annotations: Path, run: Path, *more: str) -> list[str]:
    flags = [item for value in _sets(annotations, *more) for item in ("--set", value)]
    return ["recipe", "cascade", "--store", store, "--run", str(run), *flags, "--json"]


def _moving_mean(t: np.ndarray, values: np.ndarray, window: float) -> np.ndarray:
    """Centred moving mean, written out frame by frame (independent of smooth_frames)."""
    out = np.empty_like(values)
    for i, centre in enumerate(t):
        near = np.abs(t - centre) <= window / 2 + 1e-9
        out[i] = values[near].mean(0)
    return out


def test_dry_run_reads_the_data_and_writes_nothing(tiny: tuple[str, Path], tmp_path: Path) -> None:
    store, annotations = tiny
    result = CliRunner().invoke(app, [*_args(store, annotations, tmp_path / "run"), "--dry-run"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["recipe"] == "cascade" and plan["features"] == 8
    assert not (tmp_path / "run").exists()
    bad = _args(store, annotations, tmp_path / "run", "groups={Negative: [Sad]}")
    result = CliRunner().invoke(app, bad)
    assert result.exit_code != 0 and "'Sad', which is not a class" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.integration
def test_cascade_end_to_end_and_a_rerun_fits_nothing(
    ray_local: None, tiny: tuple[str, Path], tmp_path: Path
) -> None:
    store, annotations = tiny
    run_path = tmp_path / "run"
    result = CliRunner().invoke(app, _args(store, annotations, run_path))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert sorted(summary["fitted"]) == ["coarse", "fine.Negative"]
    assert summary["models"] == ["cascade.expr", "fused.smooth.cascade.expr"]
    run = RunFolder(str(run_path))
    data = build_frame_data(
        FrameDataConfig(store=store, extractors=["vis"], annotations=str(annotations), fps=25)
    )
    table = run.predictions("cascade.expr")
    # One row per sampled frame, faces or not, with its time and label.
    assert len(table) == len(data)
    np.testing.assert_allclose(table["start_s"], data.t_s, atol=1e-6)
    np.testing.assert_array_equal(table["label"], data.expr)
    probs = np.stack(table["probs"])
    assert probs.shape == (len(data), 8)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # Only the classes seen in training get mass (Neutral and the Negative group's three).
    assert probs[:, 4:].max() < 1e-6
    t0 = np.flatnonzero(data.media_id == "t0")
    np.testing.assert_allclose(probs[t0[3]], probs[t0[2]])  # no face: nearest face frame
    np.testing.assert_allclose(probs[t0[4]], probs[t0[5]])

    # The stored record is the cascade: its stages combine to the stored predictions.
    record = run.load_model("cascade.expr")
    assert record["task"] == "classification" and record["extractor"] == "vis"
    assert record["groups"]["Negative"] == ["Anger", "Disgust", "Fear", "Sadness"]
    model = record["pipeline"]
    face = data.has_face
    np.testing.assert_allclose(model.predict_proba(data.features[face]), probs[face], atol=1e-6)
    # What `raypipe predict --format abaw-expr` reads: the run's one frame-level expression
    # model, applied to stored features through its record.
    assert frame_models(run, "classification") == ["cascade.expr"]
    np.testing.assert_allclose(
        model_outputs(record, data.features[face], 8), probs[face], atol=1e-6
    )
    coarse, fine = model.stage_outputs(data.features[face])
    expected = np.zeros_like(probs[face])
    expected[:, 0] = coarse[:, 1]  # Neutral is group 1 (after Negative)
    expected[:, 1:4] = coarse[:, [0]] * fine["Negative"][:, :3]
    expected[:, 5] = coarse[:, [0]][:, 0] * fine["Negative"][:, 3]
    np.testing.assert_allclose(probs[face], expected, atol=1e-6)
    # Planted signal: well above chance on val (4 classes present).
    val = (data.split == "val") & (data.expr >= 0)
    raw_f1 = f1_score(data.expr[val], probs[val].argmax(1), average="macro")
    assert raw_f1 > 0.6
    assert summary["scores"]["val"]["macro_f1"] == pytest.approx(raw_f1)

    # The smoothing window is the val-best one, recomputed here independently.
    smoothed = run.load_model("fused.smooth.cascade.expr")
    assert smoothed["method"] == "smooth" and smoothed["member"] == "cascade.expr"
    val_media = data.split == "val"
    best, best_score = None, -1.0
    for window in SMOOTHING_WINDOWS_S:
        out = probs.copy()
        for media in np.unique(data.media_id[val_media]):
            rows = np.flatnonzero(data.media_id == media)
            out[rows] = _moving_mean(data.t_s[rows], probs[rows], window)
        score = f1_score(data.expr[val], out[val].argmax(1), average="macro")
        assert smoothed["val_scores"][f"{window:g}"] == pytest.approx(score)
        if score > best_score + 1e-12:
            best, best_score = window, score
    assert smoothed["window_s"] == best == summary["window_s"]
    table = run.predictions("fused.smooth.cascade.expr")
    for media in ("v0", "x0"):
        rows = np.flatnonzero(data.media_id == media)
        np.testing.assert_allclose(
            np.stack(table["probs"])[rows],
            _moving_mean(data.t_s[rows], probs[rows], best),
            atol=1e-5,
        )

    # The report scores both models per split with macro-F1.
    report = CliRunner().invoke(app, ["report", str(run_path), "--json"])
    assert report.exit_code == 0, report.output
    rows = {
        (r["model"], r["split"]): r for r in json.loads(report.stdout[report.stdout.index("[") :])
    }
    assert rows[("cascade.expr", "val")]["macro_f1"] == pytest.approx(raw_f1, abs=1e-3)
    assert "macro_f1" in rows[("fused.smooth.cascade.expr", "val")]

    # The same command again finds every stage done: nothing is fitted, outputs unchanged.
    again = CliRunner().invoke(app, _args(store, annotations, run_path))
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["fitted"] == []
    np.testing.assert_allclose(np.stack(run.predictions("cascade.expr")["probs"]), probs)
    # Other smoothing candidates reuse the fitted stages too.
    more = _args(store, annotations, run_path, "smoothing_windows=[0, 1.2]")
    assert json.loads(CliRunner().invoke(app, more).stdout)["fitted"] == []
    # Another fine classifier: only the fine stage is fitted again.
    other = _args(
        store, annotations, run_path, "fine.classifier=rf", "fine.params={n_estimators: 20}"
    )
    assert json.loads(CliRunner().invoke(app, other).stdout)["fitted"] == ["fine.Negative"]
    assert pickled_files(run_path) == []


@pytest.mark.integration
def test_a_killed_stage_worker_is_rerun(
    ray_local: None, tiny: tuple[str, Path], tmp_path: Path
) -> None:
    import os

    from raypipe.config.base import load_config
    from raypipe.pipeline.cascade import run_cascade

    store, annotations = tiny
    marker = tmp_path / "killed-once"
    config = load_config(
        CascadeRecipeConfig,
        None,
        [*_sets(annotations), f"data.store={store}", "max_retries=1"],
        {"run": str(tmp_path / "run")},
    )

    def kill_fine_once(stage: str) -> None:
        if stage.startswith("fine.") and not marker.exists():
            marker.write_text(stage)
            os._exit(1)  # the worker process dies mid-task

    summary = run_cascade(config, stage_hook=kill_fine_once)
    assert marker.read_text() == "fine.Negative"
    assert sorted(summary.fitted) == ["coarse", "fine.Negative"]
    assert summary.scores["val"]["macro_f1"] > 0.6
