"""`raypipe recipe sequence` end to end on a tiny store: visual frames and audio spans as two
modalities, windows cut per media, trained on Ray Train; every sampled frame gets the mean of
its windows' outputs (checked against a plain loop over the windows with the stored weights),
every media a clip row, AU thresholds chosen on val, a re-run resumes instead of training
again, and a worker killed mid-training is replaced and resumes from its last checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from raypipe.cli.commands import app
from raypipe.config.frames import FrameDataConfig, SpanFeaturesConfig
from raypipe.models.sequence import MultimodalSequenceModel
from raypipe.recipes.frames import build_frame_data
from raypipe.recipes.multitask import au_thresholds
from raypipe.store.run_folder import RunFolder
from tests.pickle_scan import pickled_files
from tests.recipes.frame_store import write_tiny_frames

WINDOW, HOP = 12, 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    return write_tiny_frames(tmp_path_factory.mktemp("frames"))


def _args(store: str, annotations: Path, run: Path, *more: str) -> list[str]:
    sets = [
        f"data.annotations={annotations}",
        "data.extractors=[vis]",
        "data.spans=[{extractor: lld, window_s: 0.2}]",
        "data.fps=25",
        "tasks=[expr,au,va]",
        f"window={WINDOW}",
        f"hop={HOP}",
        "epochs=15",
        "batch_size=4",
        "hidden=16",
        "lr=0.01",
        *more,
    ]
    flags = [item for value in sets for item in ("--set", value)]
    return ["recipe", "sequence", "--store", store, "--run", str(run), *flags, "--json"]


def test_dry_run_and_window_settings(tiny: tuple[str, Path], tmp_path: Path) -> None:
    store, annotations = tiny
    result = CliRunner().invoke(app, [*_args(store, annotations, tmp_path / "run"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["features"] == 8 + 2
    assert not (tmp_path / "run").exists()
    result = CliRunner().invoke(
        app, [*_args(store, annotations, tmp_path / "run", "hop=20"), "--dry-run"]
    )
    assert result.exit_code != 0 and "hop (20) is longer than window (12)" in result.output


def _plain_loop_probs(
    record: dict, weights: bytes, features: np.ndarray, has_face: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One media's frame expression logits (T, C) computed window by window with a plain loop
    (windows at 0, HOP, 2 HOP, ... until the media's end is covered; frame t takes the mean
    of the logits of every window holding it), and the softmax of their mean (the clip)."""
    import io

    mean, std = np.asarray(record["feature_mean"]), np.asarray(record["feature_std"])
    x = ((features - mean) / std).astype(np.float32)
    dims = [stop - start for _, start, stop in record["modalities"]]
    model = MultimodalSequenceModel(dims, len(record["classes"]), len(record["au_names"]), 16)
    model.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    model.eval()
    t = len(x)
    visual = has_face
    audio = np.abs(features[:, 8:]).sum(1) > 0
    total, count = np.zeros((t, len(record["classes"]))), np.zeros(t)
    start = 0
    while True:
        stop = min(start + WINDOW, t)
        frames = np.zeros((1, WINDOW, x.shape[1]), np.float32)
        masks = np.zeros((1, WINDOW, 2), bool)
        frames[0, : stop - start] = x[start:stop]
        masks[0, : stop - start, 0] = visual[start:stop]
        masks[0, : stop - start, 1] = audio[start:stop]
        with torch.no_grad():
            logits = model(torch.from_numpy(frames), torch.from_numpy(masks))[0][0].numpy()
        total[start:stop] += logits[: stop - start]
        count[start:stop] += 1
        if start + WINDOW >= t:
            break
        start += HOP
    logits = total / count[:, None]
    clip = np.exp(logits.mean(0) - logits.mean(0).max())
    return logits, clip / clip.sum()


@pytest.mark.integration
@pytest.mark.slow
def test_trains_predicts_every_frame_and_clip_and_resumes(
    ray_local: None, tiny: tuple[str, Path], tmp_path: Path
) -> None:
    store, annotations = tiny
    run_path = tmp_path / "run"
    result = CliRunner().invoke(app, _args(store, annotations, run_path))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs_trained"] == 15
    # 7 media of 40 frames; windows at 0, 8, 16, 24, 32 each.
    assert summary["windows"] == 7 * 5
    names = ["sequence.expr", "sequence.au", "sequence.va", "sequence.clip"]
    assert summary["models"] == names
    run = RunFolder(str(run_path))

    data = build_frame_data(
        FrameDataConfig(
            store=store,
            extractors=["vis"],
            spans=[SpanFeaturesConfig(extractor="lld", window_s=0.2)],
            annotations=str(annotations),
            fps=25,
        )
    )
    expr = run.predictions("sequence.expr")
    for name, width in (("sequence.expr", 8), ("sequence.au", 12), ("sequence.va", 2)):
        table = run.predictions(name)
        assert len(table) == len(data)
        assert table.groupby("split").size().to_dict() == {"test": 40, "train": 160, "val": 80}
        np.testing.assert_allclose(table["start_s"], data.t_s, atol=1e-6)
        assert np.stack(table["probs"]).shape == (len(data), width)
    np.testing.assert_array_equal(expr["label"], data.expr)

    # Frame outputs = the mean over the windows that hold the frame, clip = softmax of the
    # mean frame logits: recomputed for one media with a plain loop over its windows.
    record = run.load_model("sequence.expr")
    assert record["task"] == "classification" and record["recipe"] == "sequence"
    weights = run.files.read_bytes(record["weights"])
    probs = np.stack(expr["probs"])
    clips = run.predictions("sequence.clip").set_index("media_id")
    assert len(clips) == 7 and "start_s" not in clips.columns
    for media in ("t0", "x0"):
        rows = np.flatnonzero(data.media_id == media)
        logits, clip = _plain_loop_probs(record, weights, data.features[rows], data.has_face[rows])
        expected = np.exp(logits - logits.max(1, keepdims=True))
        expected /= expected.sum(1, keepdims=True)
        np.testing.assert_allclose(probs[rows], expected, atol=1e-4)
        np.testing.assert_allclose(clips.loc[media, "probs"], clip, atol=1e-4)
    assert clips.loc["x0", "label"] == -1 and clips.loc["t0", "split"] == "train"

    # AU thresholds: the best F1 per unit on val's labelled face frames.
    au = run.predictions("sequence.au")
    au_record = run.load_model("sequence.au")
    val = (data.split == "val") & data.has_face & data.labelled()
    grid = [round(0.05 * k, 2) for k in range(1, 20)]
    expected_t = au_thresholds(np.stack(au["probs"])[val], data.au[val], data.au_mask[val], grid)
    np.testing.assert_allclose(au_record["thresholds"], expected_t)
    # Planted signal (segments of 10 frames over 4 classes): learnt well above chance.
    assert summary["scores"]["val"]["expr_macro_f1"] > 0.6, summary["scores"]

    report = CliRunner().invoke(app, ["report", str(run_path), "--json"])
    assert report.exit_code == 0, report.output
    rows = {
        (r["model"], r["split"]): r for r in json.loads(report.stdout[report.stdout.index("[") :])
    }
    assert rows[("sequence.expr", "val")]["level"] == "frame"
    assert rows[("sequence.clip", "val")]["level"] == "media"
    assert "mean_f1" in rows[("sequence.au", "val")] and "ccc" in rows[("sequence.va", "val")]

    # The same command again resumes after the last epoch: nothing is trained, same outputs,
    # and Ray Train is not started (its run folder is untouched).
    ray_files = {p: p.stat().st_mtime_ns for p in (run_path / "ray").rglob("*")}
    again = CliRunner().invoke(app, _args(store, annotations, run_path))
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["epochs_trained"] == 0
    assert {p: p.stat().st_mtime_ns for p in (run_path / "ray").rglob("*")} == ray_files
    np.testing.assert_allclose(np.stack(run.predictions("sequence.expr")["probs"]), probs)
    # Two more epochs continue the same training for those epochs only.
    more = CliRunner().invoke(app, _args(store, annotations, run_path, "epochs=17"))
    assert more.exit_code == 0, more.output
    assert json.loads(more.stdout)["epochs_trained"] == 2
    assert pickled_files(run_path) == []


@pytest.mark.integration
@pytest.mark.slow
def test_a_killed_worker_resumes_from_its_last_checkpoint(
    ray_local: None, tiny: tuple[str, Path], tmp_path: Path
) -> None:
    from raypipe.config.base import load_config
    from raypipe.config.sequence import SequenceConfig
    from raypipe.pipeline.sequence import run_sequence, training_name

    store, annotations = tiny
    run = tmp_path / "run"
    sets = [s for s in _args(store, annotations, run)[6:] if s not in ("--set", "--json")]
    overrides = [*sets, f"data.store={store}", "epochs=4", "max_failures=1"]
    config = load_config(SequenceConfig, None, overrides, {"run": str(run)})
    log, marker = tmp_path / "epochs.log", tmp_path / "killed-once"
    snapshot = run / "ray" / training_name(config) / "checkpoint_manager_snapshot.json"

    def die_once_in_epoch_3(epoch: int, rank: int) -> None:
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

    summary = run_sequence(config, epoch_hook=die_once_in_epoch_3)
    assert marker.exists()
    # Epochs 1 and 2 ran once; epoch 3 started, the worker died, a new one resumed at 3.
    assert log.read_text().split() == ["1", "2", "3", "3", "4"]
    assert summary.epochs_trained == 4
    assert len(RunFolder(str(run)).predictions("sequence.expr")) == 7 * 40
