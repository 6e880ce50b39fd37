"""`raypipe recipe group` end to end on a tiny GAF-shaped store (tests/recipes/group_store.py:
the class planted in the faces, weakly in the scene): one network per face merge trained on Ray
Train, the ensemble's weights chosen on val (checked against a search written here), one
prediction row per image for every member and the ensemble, scored by `raypipe report`; a
re-run resumes instead of training again, and a worker killed mid-training is replaced and
resumes from its last checkpoint."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from raypipe.cli.commands import app
from raypipe.config.group import GroupDataConfig
from raypipe.labels import LABEL_SPACES
from raypipe.recipes.group import GroupData, build_group_data, ensemble_weights, weight_grid
from raypipe.store.run_folder import RunFolder
from tests.pickle_scan import pickled_files
from tests.recipes.group_store import SIZES, write_group_store
from tests.recipes.worker_kill import die_once_in_epoch

MEMBERS = ("group.mean", "group.attention")
ENSEMBLE = "fused.ensemble.group"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_group_store(tmp_path_factory.mktemp("group"))


def _sets(*more: str) -> list[str]:
    return [
        "data.scene_extractor=scene",
        "data.face_extractor=faces",
        "members=[mean,attention]",
        "epochs=6",
        "batch_size=16",
        "hidden=16",
        "dropout=0.0",
        "lr=0.01",
        "ray.num_cpus=2",
        *more,
    ]


def _args(store: str, run: Path, *more: str) -> list[str]:
    flags = [item for value in _sets(*more) for item in ("--set", value)]
    return ["recipe", "group", "--store", store, "--run", str(run), *flags, "--json"]


def _data(store: str, max_faces: int = 16) -> GroupData:
    config = GroupDataConfig(
        store=store, scene_extractor="scene", face_extractor="faces", max_faces=max_faces
    )
    return build_group_data(config, LABEL_SPACES.get("gaf"))


def test_images_faces_and_dry_run(store: str, tmp_path: Path) -> None:
    data = _data(store)
    assert len(data) == sum(SIZES.values()) and data.classes == ("Positive", "Neutral", "Negative")
    # Every face of an image kept, padding masked; some images have no face at all.
    counts = data.face_mask.sum(1)
    assert counts.max() == 4 and (counts == 0).any()
    assert np.all(data.faces[~data.face_mask] == 0)
    assert {m.split("/")[1] for m in data.media_id} == set(data.classes)
    for media, label, split in zip(data.media_id, data.label, data.split, strict=True):
        assert media.split("/")[0] == split and data.classes[label] == media.split("/")[1]
    # max_faces keeps the best-scored faces.
    fewer = _data(store, max_faces=2)
    assert fewer.face_mask.sum(1).max() == 2
    np.testing.assert_array_equal(fewer.face_mask.sum(1), np.minimum(counts, 2))

    result = CliRunner().invoke(app, [*_args(store, tmp_path / "run"), "--dry-run"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["scene_features"] == 4 and plan["face_features"] == 6
    splits = {row["split"]: row for row in plan["splits"]}
    assert splits["val"]["images"] == SIZES["val"] == splits["val"]["labelled"]
    assert splits["train"]["faces"] == int(counts[data.split == "train"].sum())
    assert not (tmp_path / "run").exists()
    same = CliRunner().invoke(
        app, [*_args(store, tmp_path / "run", "data.face_extractor=scene"), "--dry-run"]
    )
    assert same.exit_code != 0 and "both 'scene'" in same.output


def test_ensemble_weights_on_a_hand_computed_case() -> None:
    assert weight_grid(2, 0.5).tolist() == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    assert len(weight_grid(3, 0.25)) == 15 and np.allclose(weight_grid(3, 0.25).sum(1), 1)
    # Alone, each member gets 2 of 3 right. Member A's weight a makes all three right for
    # a in (0.125, 0.833); among 0.2 ... 0.8 the log-loss is lowest at a = 0.8.
    a = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.6, 0.0, 0.4]])
    b = np.array([[0.3, 0.4, 0.3], [0.3, 0.4, 0.3], [0.0, 0.0, 1.0]])
    chosen = ensemble_weights(np.stack([a, b]), np.array([0, 1, 2]), 0.1)
    np.testing.assert_allclose(chosen.weights, [0.8, 0.2])
    assert chosen.accuracy == 1.0
    expected_loss = -np.mean(np.log([0.3 + 0.5 * 0.8, 0.4 + 0.4 * 0.8, 1 - 0.6 * 0.8]))
    assert chosen.log_loss == pytest.approx(expected_loss, rel=1e-5)


@pytest.fixture(scope="module")
def trained(ray_local: None, store: str, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    run = tmp_path_factory.mktemp("group_run") / "run"
    result = CliRunner().invoke(app, _args(store, run))
    # The CLI's log handler is bound to this call's captured stderr: drop it (as after a test).
    logging.getLogger("raypipe").handlers.clear()
    logging.getLogger("raypipe").propagate = True
    assert result.exit_code == 0, result.output
    return run, json.loads(result.stdout)


@pytest.mark.integration
@pytest.mark.slow
def test_trains_members_and_ensemble_and_resumes(
    store: str, trained: tuple, tmp_path: Path
) -> None:
    run_path, summary = trained
    run = RunFolder(str(run_path))
    assert summary["models"] == [*MEMBERS, ENSEMBLE]
    assert summary["epochs_trained"] == {"mean": 6, "attention": 6}
    assert run.meta()["classes"] == ["Positive", "Neutral", "Negative"]
    data = _data(store)
    for name in (*MEMBERS, ENSEMBLE):
        table = run.predictions(name).set_index("media_id").loc[list(data.media_id)]
        # One row per image, in every split, with its label.
        assert table.groupby("split").size().to_dict() == SIZES
        np.testing.assert_array_equal(table["label"], data.label)
        assert run.load_model(name)["task"] == "classification"
    assert run.load_model("group.attention")["merge"] == "attention"
    # Planted signal: the ensemble is well above chance (1/3) on val and test.
    assert summary["scores"][ENSEMBLE]["val"]["accuracy"] > 0.7, summary["scores"]
    assert summary["scores"][ENSEMBLE]["test"]["accuracy"] > 0.6, summary["scores"]

    # The report and the re-run write into the run: they get a copy of it, so the module's run
    # stays as trained for the other tests, whatever order they run in.
    run_path = Path(shutil.copytree(run_path, tmp_path / "run"))
    run = RunFolder(str(run_path))
    report = CliRunner().invoke(app, ["report", str(run_path), "--json"])
    assert report.exit_code == 0, report.output
    rows = {
        (r["model"], r["split"]): r for r in json.loads(report.stdout[report.stdout.index("[") :])
    }
    for name in (*MEMBERS, ENSEMBLE):
        assert rows[(name, "test")]["accuracy"] == pytest.approx(
            summary["scores"][name]["test"]["accuracy"]
        )

    # The same command again resumes each member after its last epoch: nothing is trained,
    # and Ray Train is not started (its run folder is untouched).
    ensemble = np.stack(run.predictions(ENSEMBLE)["probs"])
    ray_files = {p: p.stat().st_mtime_ns for p in (run_path / "ray").rglob("*")}
    again = CliRunner().invoke(app, _args(store, run_path))
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["epochs_trained"] == {"mean": 0, "attention": 0}
    assert {p: p.stat().st_mtime_ns for p in (run_path / "ray").rglob("*")} == ray_files
    np.testing.assert_allclose(np.stack(run.predictions(ENSEMBLE)["probs"]), ensemble)
    assert pickled_files(run_path) == []


def _independent_weights(
    val: list[np.ndarray], labels: np.ndarray, steps: int = 10
) -> tuple[float, float]:
    """Weights (w, 1 - w), w in 0, 1/steps, ..., 1, whose weighted mean of the two members'
    probabilities has the best accuracy, then the lowest log-loss, then the smallest w."""
    best: tuple[float, float, float] | None = None
    for step in range(steps + 1):
        w = step / steps
        fused = w * val[0].astype(np.float64) + (1 - w) * val[1].astype(np.float64)
        accuracy = float(np.mean(fused.argmax(1) == labels))
        loss = float(-np.mean(np.log(fused[np.arange(len(labels)), labels])))
        if best is None or accuracy > best[1] or (accuracy == best[1] and loss < best[2] - 1e-9):
            best = (w, accuracy, loss)
    assert best is not None
    return best[0], 1 - best[0]


@pytest.mark.integration
@pytest.mark.slow
def test_ensemble_weights_match_an_independent_search(store: str, trained: tuple) -> None:
    run_path, summary = trained
    run = RunFolder(str(run_path))
    tables = [run.predictions(m).set_index("media_id").sort_index() for m in MEMBERS]
    val = tables[0]["split"] == "val"
    labels = tables[0].loc[val, "label"].to_numpy(np.int64)
    probs = [np.stack(t.loc[val, "probs"]) for t in tables]
    expected = _independent_weights(probs, labels)
    record = run.load_model(ENSEMBLE)
    assert record["members"] == list(MEMBERS)
    np.testing.assert_allclose(record["member_weights"], expected, atol=1e-9)
    assert summary["weights"] == pytest.approx(
        dict(zip(("mean", "attention"), expected, strict=True))
    )
    # The ensemble's probabilities are that weighted mean, for every image.
    fused = run.predictions(ENSEMBLE).set_index("media_id").sort_index()
    everything = [np.stack(t["probs"]) for t in tables]
    np.testing.assert_allclose(
        np.stack(fused["probs"]),
        expected[0] * everything[0] + expected[1] * everything[1],
        atol=1e-6,
    )
    # Another weight grid retrains nothing (Ray Train is not started) and searches that grid.
    ray_files = {p: p.stat().st_mtime_ns for p in (run_path / "ray").rglob("*")}
    try:
        coarse = CliRunner().invoke(app, _args(store, run_path, "weight_step=0.5"))
        assert coarse.exit_code == 0, coarse.output
        assert json.loads(coarse.stdout)["epochs_trained"] == {"mean": 0, "attention": 0}
        halves = _independent_weights(probs, labels, steps=2)
        np.testing.assert_allclose(run.load_model(ENSEMBLE)["member_weights"], halves, atol=1e-9)
        assert {p: p.stat().st_mtime_ns for p in (run_path / "ray").rglob("*")} == ray_files
    finally:  # the module's run back as the fixture made it
        CliRunner().invoke(app, _args(store, run_path))


@pytest.mark.integration
@pytest.mark.slow
def test_a_killed_worker_resumes_from_its_last_checkpoint(
    ray_local: None, store: str, tmp_path: Path
) -> None:
    from raypipe.config.base import load_config
    from raypipe.config.group import GroupConfig
    from raypipe.pipeline.group import member_name, run_group

    run = tmp_path / "run"
    overrides = [*_sets("members=[attention]", "epochs=4", "max_failures=1"), f"data.store={store}"]
    config = load_config(GroupConfig, None, overrides, {"run": str(run)})
    log, marker = tmp_path / "epochs.log", tmp_path / "killed-once"
    snapshot = run / "ray" / member_name(config, "attention") / "checkpoint_manager_snapshot.json"
    die = die_once_in_epoch(3, log, marker, snapshot)

    summary = run_group(config, epoch_hook=lambda member, epoch, rank: die(epoch))
    assert marker.exists()
    # Epochs 1 and 2 ran once; epoch 3 started, the worker died, a new one resumed at 3.
    assert log.read_text().split() == ["1", "2", "3", "3", "4"]
    assert summary.epochs_trained == {"attention": 4}
    assert len(RunFolder(str(run)).predictions("group.attention")) == sum(SIZES.values())
