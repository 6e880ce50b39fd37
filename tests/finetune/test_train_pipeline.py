"""`raypipe train` on the shared local Ray: a fine-tuned backbone beats its starting point, a
killed worker resumes from the last checkpoint, a re-run resumes by name, Tune searches over
training runs, and an exported backbone re-extracts only its own extractor's rows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from raypipe.config import ExtractConfig, TrainConfig
from raypipe.config.base import load_config
from raypipe.finetune.augment import build_transform
from raypipe.finetune.images import image_folder, store_crops
from raypipe.finetune.sample_faces import write_image_folder
from raypipe.models.backbones import build_backbone, load_state_dict
from raypipe.pipeline.extract import run_extract
from raypipe.pipeline.train import checkpoint_state, run_name, run_train
from raypipe.store.feature_store import FeatureStore
from tests.pickle_scan import pickled_files

pytestmark = pytest.mark.integration

SMALL = [
    "data.image_size=32",
    "batch_size=16",
    "augment.degrees=5",
    "augment.translate=0.03",
    "augment.scale=0.05",
    "early_stop_patience=0",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three expression classes of eight people: train, val and held-out test folders."""
    root = tmp_path_factory.mktemp("faces")
    return write_image_folder(
        root, {"train": 50, "val": 12, "test": 20}, size=32, classes=3, identities=8
    )


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few images per class, for tests of the machinery rather than of learning."""
    root = tmp_path_factory.mktemp("small")
    return write_image_folder(root, {"train": 8, "val": 4}, size=32, classes=3, identities=4)


def probe_accuracy(backbone: torch.nn.Module, corpus: Path) -> float:
    """Held-out accuracy of a logistic regression on the backbone's frozen features."""
    from sklearn.linear_model import LogisticRegression

    images = image_folder(corpus)
    transform = build_transform(32, False)
    backbone.eval()

    def features(split: str) -> tuple[np.ndarray, np.ndarray]:
        index = images.indices(split)
        batch = torch.stack([transform(images.image(i)) for i in index])
        with torch.no_grad():
            return backbone(batch).numpy(), images.labels[index]

    x_train, y_train = features("train")
    x_test, y_test = features("test")
    model = LogisticRegression(max_iter=3000).fit(x_train, y_train)
    return float(model.score(x_test, y_test))


def test_fine_tuned_backbone_beats_its_starting_point(
    ray_local: None, corpus: Path, tmp_path: Path
) -> None:
    # Seeded throughout (corpus, weights, sampling, augmentation; one torch thread), so this is
    # one fixed outcome. 12 epochs of batches of 8 (about 230 steps) take the held-out probe
    # from about 0.5-0.6 on the random start to above 0.9: with seeds 0, 1, 2 it went
    # 0.60 -> 0.92, 0.57 -> 0.93, 0.48 -> 0.95, so the +0.1 asked for holds with room for the
    # small numerical differences between machines. (8 epochs of batches of 16, 80 steps, left
    # training accuracy below 0.6 and the result to chance: 0.60 -> 0.57 on one machine.)
    config = load_config(
        TrainConfig,
        None,
        [*SMALL, "batch_size=8", "epochs=12", "seed=0", f"data.root={corpus}"],
        {"run": tmp_path / "run"},
    )
    summary = run_train(config)
    torch.manual_seed(config.seed)  # the worker seeds the same way before building the model
    start = build_backbone("resnet18")
    tuned = build_backbone("resnet18", summary.export_model)
    before, after = probe_accuracy(start, corpus), probe_accuracy(tuned, corpus)
    assert after > before + 0.1, (before, after)

    run = tmp_path / "run"
    history = pd.read_csv(run / "report" / "metrics.csv")
    assert history["epoch"].tolist() == list(range(1, 13))
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert (run / "report" / "curves.png").stat().st_size > 1000
    assert "| epoch | lr | train_loss |" in (run / "report" / "report.md").read_text()
    best = int(history.loc[history["val_macro_f1"].idxmax(), "epoch"])
    assert summary.best_epoch == best
    extract = load_config(ExtractConfig, summary.extract_config)
    assert extract.face_backbone.enabled and extract.face_backbone.crop_size == 32
    assert not extract.face_expression.enabled and not extract.opensmile.enabled


@pytest.mark.slow
def test_killed_worker_resumes_from_its_last_checkpoint_and_rerun_resumes_by_name(
    ray_local: None, small_corpus: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    log = tmp_path / "epochs.log"
    marker = tmp_path / "killed-once"
    # Tracked in MLflow (a database outside the run folder) and TensorBoard: the MLflow run
    # goes on across the worker's restart and the new driver's resume.
    database = tmp_path / "elsewhere" / "mlflow.db"
    database.parent.mkdir()
    uri = f"sqlite:///{database}"
    overrides = [
        *SMALL,
        "epochs=4",
        "max_failures=1",
        f"data.root={small_corpus}",
        "tracking.backends=[mlflow, tensorboard]",
        f"tracking.tracking_uri={uri}",
    ]
    config = load_config(TrainConfig, None, overrides, {"run": run})
    snapshot = run / "ray" / run_name(config) / "checkpoint_manager_snapshot.json"

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

    summary = run_train(config, epoch_hook=die_once_in_epoch_3)
    assert marker.exists()
    # Epochs 1 and 2 ran once; epoch 3 started, the worker died, a new one resumed at 3.
    assert log.read_text().split() == ["1", "2", "3", "3", "4"]
    history = pd.read_csv(run / "report" / "metrics.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4] and summary.epochs_done == 4
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("raypipe-train")
    assert experiment is not None
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == run_name(config)
    params = found.data.params
    assert (params["arch"], params["lr"], params["data.image_size"]) == ("resnet18", "0.001", "32")
    assert "tracking.backends" not in params

    # A new driver with the same settings (one more epoch) restores the run by its name, and
    # its MLflow run with it.
    log.write_text("")
    more = config.model_copy(update={"epochs": 5})
    assert run_name(more) == run_name(config)
    run_train(more, epoch_hook=die_once_in_epoch_3)
    assert log.read_text().split() == ["5"]
    report = pd.read_csv(run / "report" / "metrics.csv")
    assert report["epoch"].tolist() == [1, 2, 3, 4, 5]
    (resumed,) = client.search_runs([experiment.experiment_id])
    assert resumed.info.run_id == found.info.run_id and resumed.info.status == "FINISHED"
    logged = {m.step: m.value for m in client.get_metric_history(found.info.run_id, "val_macro_f1")}
    assert sorted(logged) == [1, 2, 3, 4, 5]
    assert [logged[e] for e in report["epoch"]] == pytest.approx(report["val_macro_f1"].tolist())
    assert list((run / "tensorboard" / run_name(config)).glob("events.out.tfevents*"))
    assert not (run / "mlflow").exists()  # the store named by tracking_uri was used instead


@pytest.mark.slow
def test_tune_searches_training_runs_and_exports_the_best(
    ray_local: None, small_corpus: Path, tmp_path: Path
) -> None:
    config = load_config(
        TrainConfig,
        None,
        [
            *SMALL,
            "epochs=1",
            "search.lr=[0.001, 0.0001]",
            "search.max_concurrent_trials=2",
            "cpus_per_worker=0.9",
            "tracking.backends=[mlflow]",
            f"data.root={small_corpus}",
        ],
        {"run": tmp_path / "run"},
    )
    summary = run_train(config)
    # Each trial is an MLflow run with its learning rate and validation score.
    client = MlflowClient(f"sqlite:///{tmp_path}/run/mlflow/mlflow.db")
    experiment = client.get_experiment_by_name("raypipe-train")
    assert experiment is not None
    logged = client.search_runs([experiment.experiment_id])
    assert sorted(float(r.data.params["lr"]) for r in logged) == [0.0001, 0.001]
    assert all("val_macro_f1" in r.data.metrics for r in logged)
    runs = sorted((tmp_path / "run" / "tune" / "runs").iterdir())
    assert len(runs) == 2 and all((r / "epoch_0001" / "model.pt").is_file() for r in runs)
    build_backbone("resnet18", summary.export_model)
    # The export is the backbone of the best checkpoint of the trial with the best validation
    # score (each trial's own per-epoch history, kept in its checkpoints), weight for weight.
    # The two learning rates score differently here, so exporting the other trial fails.
    exported = torch.load(summary.export_model, map_location="cpu", weights_only=True)
    scores, weights = {}, {}
    for trial in runs:
        history = checkpoint_state(str(max(trial.glob("epoch_*")))).history
        best = max(history, key=lambda epoch: epoch["val_macro_f1"])
        scores[trial.name] = best["val_macro_f1"]
        checkpoint = trial / f"epoch_{int(best['epoch']):04d}" / "model.pt"
        weights[trial.name] = load_state_dict(checkpoint)
    assert summary.best_score == max(scores.values())
    assert exported.keys() == build_backbone("resnet18").net.state_dict().keys()
    matching = [
        name
        for name, state in weights.items()
        if all(torch.equal(value, state[key]) for key, value in exported.items())
    ]
    assert len(matching) == 1, scores
    assert scores[matching[0]] == max(scores.values()), scores
    assert (tmp_path / "run" / "report" / "report.md").is_file()
    # Without search.resume, Ray Tune's pickled search state does not stay in the run folder.
    assert pickled_files(tmp_path / "run") == []


def _hashes(store: Path) -> dict[str, str]:
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for level in ("media", "frames", "crops")
        for p in sorted((store / level).rglob("*.parquet"))
    }


@pytest.mark.slow
def test_store_crops_train_export_and_reextract_only_the_new_extractor(
    ray_local: None, demo_set: Path, tmp_path: Path
) -> None:
    from raypipe.cli import app

    manifest = pd.read_csv(demo_set)
    subset = manifest[
        manifest["label"].isin(["Happy", "Sad"]) & manifest["split"].isin(["train", "val"])
    ]
    subset = subset.assign(path=[str((demo_set.parent / p).resolve()) for p in subset["path"]])
    path = tmp_path / "subset.csv"
    subset.to_csv(path, index=False)
    store = tmp_path / "store"
    only_tracks = {
        name: {"enabled": name == "face_tracks"}
        for name, field in ExtractConfig.model_fields.items()
        if hasattr(field.default, "enabled")
    }
    only_tracks["face_tracks"].update({"store_crops": True, "crop_size": 32, "faces": "main"})
    extract = ExtractConfig.model_validate(
        {"manifest": path, "out": str(store), "video": {"fps": 2}, **only_tracks}
    )
    run_extract(extract)
    before = _hashes(store)
    assert any(k.startswith("crops/extractor=face_tracks") for k in before)
    manifest_before = FeatureStore(str(store)).read_manifest()
    crops = store_crops(str(store), max_per_media=3)
    per_media = pd.Series(crops.groups).value_counts()
    assert len(per_media) == len(subset) and per_media.max() <= 3
    assert {crops.classes[i] for i in crops.labels} == {"Happy", "Sad"}
    assert set(crops.split) == {"train", "val"} and crops.image(0).shape == (32, 32, 3)

    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(store),
            "--run",
            str(tmp_path / "run"),
            "--set",
            "data.source=store",
            "--set",
            "epochs=1",
            "--set",
            "data.image_size=32",
            "--set",
            "batch_size=8",
            "--set",
            "data.max_per_media=3",
        ],
    )
    assert result.exit_code == 0, result.output
    snippet = tmp_path / "run" / "export" / "extract.yaml"
    assert f"raypipe extract --config {snippet}" in result.output

    result = runner.invoke(app, ["extract", "--config", str(snippet)])
    assert result.exit_code == 0, result.output
    after = _hashes(store)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing old rewritten
    new = set(after) - set(before)
    assert new and all("/extractor=face_backbone/" in k or k.startswith("jobs/") for k in new)
    rows = FeatureStore(str(store)).media_table("face_backbone")
    assert sorted(rows["media_id"]) == sorted(subset["media_id"])
    assert (rows["status"] == "ok").all()
    registry = FeatureStore(str(store)).extractors()
    assert registry["face_backbone"].config["crop_size"] == 32
    pd.testing.assert_frame_equal(FeatureStore(str(store)).read_manifest(), manifest_before)
