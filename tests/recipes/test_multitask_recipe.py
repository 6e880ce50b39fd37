"""`raypipe recipe multitask` end to end on a tiny store: trains a teacher and a student on
Ray Train, writes three frame-level models with predictions for every sampled frame, chooses
AU thresholds on val, and a re-run of the same command resumes instead of training again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from raypipe.cli.commands import app
from raypipe.config.frames import FrameDataConfig
from raypipe.recipes.frames import build_frame_data
from raypipe.recipes.multitask import au_thresholds
from raypipe.store.run_folder import RunFolder
from tests.pickle_scan import pickled_files
from tests.recipes.frame_store import write_tiny_frames


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    return write_tiny_frames(tmp_path_factory.mktemp("frames"))


def _args(store: str, annotations: Path, run: Path, *more: str) -> list[str]:
    sets = [
        f"data.annotations={annotations}",
        "data.extractors=[vis]",
        "data.fps=25",
        "teacher_epochs=6",
        "student_epochs=2",
        "batch_size=32",
        "hidden=32",
        "lr=0.01",
        "oversample=0.1",
        *more,
    ]
    flags = [item for value in sets for item in ("--set", value)]
    return ["recipe", "multitask", "--store", store, "--run", str(run), *flags, "--json"]


def test_unknown_recipe_and_dry_run(tiny: tuple[str, Path], tmp_path: Path) -> None:
    store, annotations = tiny
    result = CliRunner().invoke(app, ["recipe", "nope", "--run", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "unknown recipe 'nope' (registry RECIPES); allowed: multitask" in result.output
    args = _args(store, annotations, tmp_path / "run")
    result = CliRunner().invoke(app, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["features"] == 8
    splits = {row["split"]: row for row in plan["splits"]}
    assert splits["train"]["frames"] == 160 and splits["test"]["expr_labelled"] == 0
    assert splits["val"]["face_frames"] == 80 - 2 * 2
    assert not (tmp_path / "run").exists()


@pytest.mark.integration
@pytest.mark.slow
def test_trains_predicts_every_frame_and_resumes(
    ray_local: None, tiny: tuple[str, Path], tmp_path: Path
) -> None:
    store, annotations = tiny
    run_path = tmp_path / "run"
    result = CliRunner().invoke(app, _args(store, annotations, run_path))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs_trained"] == {"teacher": 6, "student": 2}
    run = RunFolder(str(run_path))
    assert sorted(summary["models"]) == ["multitask.au", "multitask.expr", "multitask.va"]
    assert run.meta()["classes"][0] == "Neutral" and len(run.meta()["targets"]) == 12

    data = build_frame_data(
        FrameDataConfig(store=store, extractors=["vis"], annotations=str(annotations), fps=25)
    )
    expr = run.predictions("multitask.expr")
    au = run.predictions("multitask.au")
    va = run.predictions("multitask.va")
    for table, width in ((expr, 8), (au, 12), (va, 2)):
        # One row per sampled frame, faces or not, in every split, with its time.
        assert len(table) == len(data)
        assert table.groupby("split").size().to_dict() == {"test": 40, "train": 160, "val": 80}
        np.testing.assert_allclose(table["start_s"], data.t_s, atol=1e-6)
        assert np.stack(table["probs"]).shape == (len(data), width)
    np.testing.assert_array_equal(expr["label"], data.expr)
    au_target = np.stack(au["target"])
    assert np.isnan(au_target[~data.au_mask]).all()
    np.testing.assert_array_equal(au_target[data.au_mask], data.au[data.au_mask])
    assert np.isnan(np.stack(va["target"])[~data.va_mask]).all()
    # A frame without a face carries its nearest face frame's outputs (t0: frames 3, 4 <- 2, 5).
    probs = np.stack(expr["probs"])
    t0 = np.flatnonzero(data.media_id == "t0")
    np.testing.assert_allclose(probs[t0[3]], probs[t0[2]])
    np.testing.assert_allclose(probs[t0[4]], probs[t0[5]])

    # The AU thresholds are those that maximise each unit's F1 on val's face frames.
    record = run.load_model("multitask.au")
    assert record["task"] == "multilabel" and record["recipe"] == "multitask"
    val = (data.split == "val") & data.has_face & data.labelled()
    grid = [round(0.05 * k, 2) for k in range(1, 20)]
    expected = au_thresholds(np.stack(au["probs"])[val], data.au[val], data.au_mask[val], grid)
    np.testing.assert_allclose(record["thresholds"], expected)
    assert run.load_model("multitask.expr")["task"] == "classification"
    assert run.load_model("multitask.va")["task"] == "regression"
    # Planted signal: the expression is learnt well above chance (4 classes present).
    assert summary["scores"]["val"]["expr_macro_f1"] > 0.6, summary["scores"]
    assert summary["scores"]["val"]["va_ccc"] > 0.3, summary["scores"]

    # The report scores the three frame-level models with their task's metric.
    report = CliRunner().invoke(app, ["report", str(run_path), "--json"])
    assert report.exit_code == 0, report.output
    rows = {
        (r["model"], r["split"]): r for r in json.loads(report.stdout[report.stdout.index("[") :])
    }
    assert 0.6 < rows[("multitask.expr", "val")]["macro_f1"] <= 1.0
    assert "mean_f1" in rows[("multitask.au", "val")] and "ccc" in rows[("multitask.va", "val")]

    # The same command again resumes both stages after their last epoch: nothing is trained,
    # and Ray Train is not started (its run folder is untouched).
    ray_files = {p: p.stat().st_mtime_ns for p in (run_path / "ray").rglob("*")}
    again = CliRunner().invoke(app, _args(store, annotations, run_path))
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["epochs_trained"] == {"teacher": 0, "student": 0}
    assert {p: p.stat().st_mtime_ns for p in (run_path / "ray").rglob("*")} == ray_files
    np.testing.assert_allclose(np.stack(run.predictions("multitask.expr")["probs"]), probs)
    # One more teacher epoch (and no student this time): the teacher continues for that
    # epoch only.
    more = _args(store, annotations, run_path, "teacher_epochs=7", "student_epochs=0")
    result = CliRunner().invoke(app, more)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs_trained"] == {"teacher": 1}
    # Checkpoints, records and predictions: nothing in the run folder is a pickle.
    assert pickled_files(run_path) == []


@pytest.mark.integration
@pytest.mark.slow
def test_a_killed_worker_resumes_from_its_last_checkpoint(
    ray_local: None, tiny: tuple[str, Path], tmp_path: Path
) -> None:
    from raypipe.config.base import load_config
    from raypipe.config.multitask import MultitaskConfig
    from raypipe.pipeline.multitask import run_multitask, stage_name

    store, annotations = tiny
    run = tmp_path / "run"
    sets = [s for s in _args(store, annotations, run)[6:] if s != "--set" and s != "--json"]
    overrides = [*sets, f"data.store={store}", "teacher_epochs=4", "student_epochs=0"]
    config = load_config(MultitaskConfig, None, [*overrides, "max_failures=1"], {"run": str(run)})
    log, marker = tmp_path / "epochs.log", tmp_path / "killed-once"
    snapshot = run / "ray" / stage_name(config, "teacher") / "checkpoint_manager_snapshot.json"

    def die_once_in_epoch_3(stage: str, epoch: int, rank: int) -> None:
        import os
        import time

        with open(log, "a") as handle:
            handle.write(f"{epoch}\n")
        if epoch == 3 and not marker.exists():
            marker.touch()
            # Die only once the controller has registered the epoch-2 checkpoint.
            for _ in range(600):
                if snapshot.exists() and "epoch_0002" in snapshot.read_text():
                    break
                time.sleep(0.1)
            os._exit(1)

    summary = run_multitask(config, epoch_hook=die_once_in_epoch_3)
    assert marker.exists()
    # Epochs 1 and 2 ran once; epoch 3 started, the worker died, a new one resumed at 3.
    assert log.read_text().split() == ["1", "2", "3", "3", "4"]
    assert summary.epochs_trained == {"teacher": 4}
    assert len(RunFolder(str(run)).predictions("multitask.expr")) == 7 * 40
