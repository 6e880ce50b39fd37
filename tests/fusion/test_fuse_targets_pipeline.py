"""`raypipe fuse` then `raypipe report` on run folders of multilabel and regression models:
frame-level valence/arousal members sampled at different frame times, media-level action-unit
members; the fused scores the report shows are computed again here from the members' stored
predictions and the fusion record's weights and thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score
from sklearn.multiclass import OneVsRestClassifier
from typer.testing import CliRunner

from raypipe.cli import app
from raypipe.config import FuseConfig, PredictConfig
from raypipe.errors import ConfigError
from raypipe.pipeline.fuse import run_fuse
from raypipe.pipeline.predict import run_predict, selected_fusion
from raypipe.report.writer import fusion_table
from raypipe.store.run_folder import RunFolder

SPLITS = ["train"] * 6 + ["val"] * 6 + ["test"] * 6
VA = ["valence", "arousal"]


def _va_truth(t: np.ndarray, media: int) -> np.ndarray:
    phase = 0.7 * media
    return np.stack([0.8 * np.sin(3 * t + phase), 0.6 * np.cos(2 * t + 2 * phase)], axis=1)


def _va_run(root: Path) -> RunFolder:
    """Two Ridge models fitted on train frames: the face one sees valence clearly and arousal
    through heavy noise (frames every 0.04 s), the voice one the reverse (every 0.1 s)."""
    rng = np.random.default_rng(0)
    run = RunFolder(root)
    run.create({"store": "none", "classes": ["none"], "task": "regression", "targets": VA})
    for name, step, noise in (("face.ridge", 0.04, (0.1, 1.5)), ("voice.ridge", 0.1, (1.5, 0.1))):
        ids, splits, starts, truths = [], [], [], []
        for media, split in enumerate(SPLITS):
            t = np.round(np.arange(0.0, 2.0, step), 4)
            ids += [f"m{media:02d}"] * len(t)
            splits += [split] * len(t)
            starts.append(t)
            truths.append(_va_truth(t, media))
        truth = np.concatenate(truths)
        x = truth + rng.normal(0, 1, truth.shape) * np.array(noise)
        split = np.array(splits)
        model = Ridge(alpha=1.0).fit(x[split == "train"], truth[split == "train"])
        truth[::7, 1] = np.nan  # some frames without an arousal label
        run.save_model(name, {"task": "regression", "targets": VA, "modality": name[:5]})
        run.write_predictions(
            name,
            np.array(ids),
            split,
            np.full(len(split), -1),
            model.predict(x),
            truth,
            np.concatenate(starts),
        )
    return run


def _ccc(y: np.ndarray, p: np.ndarray) -> float:
    covariance = np.mean((y - y.mean()) * (p - p.mean()))
    return 2 * covariance / (y.var() + p.var() + (y.mean() - p.mean()) ** 2)


def _report_rows(run: RunFolder) -> dict[tuple[str, str], dict]:
    result = CliRunner().invoke(app, ["report", run.root, "--json"])
    assert result.exit_code == 0, result.output
    return {(r["model"], r["split"]): r for r in json.loads(result.stdout)}


def test_valence_arousal_frames_fused_per_target_and_reported(tmp_path: Path) -> None:
    run = _va_run(tmp_path / "run")
    record = run_fuse(FuseConfig(run=run.root, num_samples=0, random_candidates=300, cv_folds=3))
    assert set(record["methods"]) == {"weighted", "mean"}  # every method that fuses targets
    assert set(run.fusions()) == {"fused.regression.weighted", "fused.regression.mean"}
    cv = {n: r["scores"]["val_cv"]["ccc"] for n, r in record["methods"].items()}
    assert record["name"] == f"fused.regression.{max(cv, key=cv.get)}" and record["selected"]
    weighted = run.fusion("fused.regression.weighted")
    assert weighted["task"] == "regression" and weighted["targets"] == VA
    weights = {m: np.array(w) for m, w in weighted["weights"].items()}
    # Valence trusted to the face model, arousal to the voice model.
    assert weights["face.ridge"][0] > 0.7 and weights["voice.ridge"][1] > 0.7
    assert weights["face.ridge"] + weights["voice.ridge"] == pytest.approx([1, 1], abs=1e-3)

    # The fused rows, again by hand: every frame of either member, each member's value at
    # the nearest frame of its own in the same media, weighted per target.
    tables = {m: run.predictions(m) for m in ("face.ridge", "voice.ridge")}
    expected = {}
    for split in ("val", "test"):
        truths, fused = [], []
        for media in sorted(set(tables["face.ridge"]["media_id"])):
            rows = {m: t[t["media_id"] == media] for m, t in tables.items()}
            if rows["face.ridge"]["split"].iloc[0] != split:
                continue
            times = sorted(set(rows["face.ridge"]["start_s"]) | set(rows["voice.ridge"]["start_s"]))
            for time in times:
                value = np.zeros(2)
                for member, own in rows.items():
                    nearest = int(np.argmin(np.abs(own["start_s"].to_numpy() - time)))
                    value += weights[member] * np.asarray(own["probs"].iloc[nearest])
                owner = (
                    rows["face.ridge"]
                    if time in set(rows["face.ridge"]["start_s"])
                    else (rows["voice.ridge"])
                )
                truths.append(owner.loc[owner["start_s"] == time, "target"].iloc[0])
                fused.append(value)
        truth, fused = np.array(truths, dtype=float), np.array(fused)
        per_target = [
            _ccc(truth[np.isfinite(truth[:, k]), k], fused[np.isfinite(truth[:, k]), k])
            for k in range(2)
        ]
        expected[split] = (float(np.mean(per_target)), len(truth))

    rows = _report_rows(run)
    test = rows[("fused.regression.weighted", "test")]
    assert (test["task"], test["level"], test["n"]) == ("regression", "frame", expected["test"][1])
    assert test["ccc"] == pytest.approx(expected["test"][0], abs=1e-3)
    val = rows[("fused.regression.weighted", "val")]
    assert val["ccc"] == pytest.approx(expected["val"][0], abs=1e-3)
    assert weighted["scores"]["test"]["ccc"] == pytest.approx(test["ccc"], abs=1e-6)
    # Each member is good on one target only; the fusion beats both.
    members = [rows[(m, "test")]["ccc"] for m in tables]
    assert test["ccc"] > max(members) + 0.1
    report = (Path(run.root) / "report" / "report.md").read_text()
    assert "per target" in report and "fused.regression.weighted" in report


def _au_run(root: Path) -> RunFolder:
    """Two logistic-regression models of two action units on media-level features: the face
    model sees AU1 clearly, the voice model AU2."""
    rng = np.random.default_rng(1)
    n = 90
    split = np.array(["train", "val", "test"] * (n // 3))
    truth = (rng.uniform(size=(n, 2)) < 0.4).astype(float)
    run = RunFolder(root)
    run.create(
        {"store": "none", "classes": ["none"], "task": "multilabel", "targets": ["AU1", "AU2"]}
    )
    for name, noise in (("face.logreg", (0.3, 3.0)), ("voice.logreg", (3.0, 0.3))):
        x = truth + rng.normal(0, 1, truth.shape) * np.array(noise)
        model = OneVsRestClassifier(LogisticRegression()).fit(
            x[split == "train"], truth[split == "train"]
        )
        run.save_model(name, {"task": "multilabel", "thresholds": [0.5, 0.5], "modality": name[:5]})
        ids = np.array([f"c{i:03d}" for i in range(n)])
        run.write_predictions(name, ids, split, np.full(n, -1), model.predict_proba(x), truth)
    return run


def test_action_units_fused_per_label_with_thresholds_chosen_on_val(tmp_path: Path) -> None:
    run = _au_run(tmp_path / "run")
    members = ["face.logreg", "voice.logreg"]
    config = FuseConfig(
        run=run.root, models=members, methods=["weighted"], num_samples=0, random_candidates=300
    )
    record = run_fuse(config)
    assert record["name"] == "fused.multilabel.weighted" and record["task"] == "multilabel"
    weights = np.array([record["weights"][m] for m in members])
    assert weights[0, 0] > 0.5 and weights[1, 1] > 0.5  # AU1 from the face, AU2 from the voice

    tables = {m: run.predictions(m).set_index("media_id") for m in members}
    ids = tables[members[0]].index
    probs = sum(
        w[None] * np.stack(tables[m].loc[ids, "probs"])
        for m, w in zip(members, weights, strict=True)
    )
    truth = np.stack(tables[members[0]]["target"])
    split = tables[members[0]]["split"].to_numpy()
    # Thresholds: per label, the first of 0.05..0.95 with the best val F1 of the fused values.
    grid = np.round(0.05 * np.arange(1, 20), 2)
    val = split == "val"
    chosen = [
        grid[int(np.argmax([f1_score(truth[val, k] > 0.5, probs[val, k] >= t) for t in grid]))]
        for k in range(2)
    ]
    assert record["thresholds"] == pytest.approx(chosen)
    test = split == "test"
    hand = np.mean([f1_score(truth[test, k] > 0.5, probs[test, k] >= chosen[k]) for k in range(2)])
    rows = _report_rows(run)
    assert rows[("fused.multilabel.weighted", "test")]["mean_f1"] == pytest.approx(hand, abs=1e-9)
    assert record["scores"]["test"]["mean_f1"] == pytest.approx(hand, abs=1e-9)
    assert hand > max(rows[(m, "test")]["mean_f1"] for m in members) + 0.1
    # A per-media CSV of class probabilities is not what this fusion makes.
    manifest = tmp_path / "new.csv"
    manifest.write_text("media_id,path\nx,x.mp4\n")
    with pytest.raises(ConfigError, match="fuses multilabel models and --format csv applies"):
        run_predict(PredictConfig(run=run.root, manifest=manifest, fusion=record["name"]))
    with pytest.raises(ConfigError, match="has no fusion of classification models; run"):
        run_predict(PredictConfig(run=run.root, manifest=manifest))


def test_members_of_other_tasks_and_class_only_methods_are_refused(tmp_path: Path) -> None:
    run = _au_run(tmp_path / "run")
    with pytest.raises(
        ConfigError, match="methods 'greedy' combine class probabilities only, not multilabel"
    ):
        run_fuse(FuseConfig(run=run.root, methods=["greedy"], num_samples=0))
    va = np.zeros((3, 2))
    for name in ("face.ridge", "voice.ridge"):
        run.save_model(name, {"task": "regression", "modality": name[:5]})
        ids = np.array(["a", "b", "c"])
        run.write_predictions(name, ids, np.array(["val"] * 3), np.full(3, -1), va, va)
    mixed = ["face.logreg", "face.ridge"]
    with pytest.raises(ConfigError) as error:
        run_fuse(FuseConfig(run=run.root, models=mixed, num_samples=0))
    assert str(error.value) == (
        "models 'face.logreg' (multilabel), 'face.ridge' (regression) are of different tasks; "
        "fusion combines models of one task, so list models of one task in models."
    )
    other = ["face.ridge", "voice.ridge"]
    with pytest.raises(ConfigError, match=r"are regression models but run .* is a multilabel run"):
        run_fuse(FuseConfig(run=run.root, models=other, num_samples=0))


def _multitask_run(root: Path) -> RunFolder:
    """A run of several tasks (run.json names no task, as a multitask recipe's): two
    expression classifiers of three classes and the two action-unit models of :func:`_au_run`,
    all scoring media-level rows."""
    run = _au_run(root)
    meta = {k: v for k, v in run.meta().items() if k not in ("task", "targets")}
    (Path(run.root) / "run.json").write_text(
        json.dumps({**meta, "store": str(root / "no-store"), "classes": ["a", "b", "c"]})
    )
    rng = np.random.default_rng(2)
    n = 90
    split = np.array(["train", "val", "test"] * (n // 3))
    labels = rng.integers(0, 3, n)
    ids = np.array([f"c{i:03d}" for i in range(n)])
    for name, noise in (("face.expr", 0.8), ("voice.expr", 1.2)):
        logits = np.eye(3)[labels] * 2 + rng.normal(0, noise, (n, 3))
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        spec = {"feature_set": "opensmile", "classifier": "logreg", "params": {}}
        run.save_model(name, {"spec": spec, "modality": name[:5]})
        run.write_predictions(name, ids, split, labels, probs)
    return run


def test_class_and_action_unit_fusions_of_one_run_keep_their_own_names_and_selection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = _multitask_run(tmp_path / "run")
    common = {"run": run.root, "num_samples": 0, "random_candidates": 200}
    expr = run_fuse(
        FuseConfig(**common, models=["face.expr", "voice.expr"], methods=["weighted", "mean"])
    )
    assert expr["name"] in {"fused.weighted", "fused.mean"} and expr.get("task") is None
    classification = {n: run.fusion(n) for n in ("fused.weighted", "fused.mean")}

    # The shipped fuse.yaml lists class-only methods too: skipped on AU members, one line.
    with caplog.at_level("INFO", logger="raypipe.pipeline.fuse_targets"):
        au = run_fuse(
            FuseConfig(
                **common,
                models=["face.logreg", "voice.logreg"],
                methods=["weighted", "weighted_class", "greedy", "stacking_logreg", "cascade"],
                cascade={"groups": {"ac": ["a", "c"]}},
            )
        )
    skipped = [r.message for r in caplog.records if "skipping fusion methods" in r.message]
    assert skipped == [
        "multilabel members: skipping fusion methods weighted_class, greedy, stacking_logreg, "
        "cascade (class probabilities only); fitting weighted"
    ]
    assert au["name"] == "fused.multilabel.weighted" and au["selected"]
    assert set(run.fusions()) == {"fused.weighted", "fused.mean", "fused.multilabel.weighted"}
    # The class fusions are untouched: same records, their own selection kept.
    for name, record in classification.items():
        assert run.fusion(name) == record
        assert run.predictions(name)["probs"].iloc[0].shape == (3,)
    selected = {n: run.fusion(n)["selected"] for n in run.fusions()}
    assert selected == {
        "fused.weighted": expr["name"] == "fused.weighted",
        "fused.mean": expr["name"] == "fused.mean",
        "fused.multilabel.weighted": True,
    }
    assert selected_fusion(run) == expr["name"]

    # Fusing the classifiers again leaves the AU fusion selected (and selected_fusion skips it,
    # though its name sorts before fused.weighted).
    run_fuse(FuseConfig(**common, models=["face.expr", "voice.expr"], methods=["weighted"]))
    assert run.fusion("fused.multilabel.weighted")["selected"]
    assert run.fusion("fused.weighted")["selected"] and not run.fusion("fused.mean")["selected"]
    assert selected_fusion(run) == "fused.weighted"
    # `raypipe predict --format csv` takes the class fusion and goes on to its members'
    # features (this run has no feature store, which is where it stops).
    manifest = tmp_path / "new.csv"
    manifest.write_text("media_id,path\nx,x.mp4\n")
    result = CliRunner().invoke(
        app, ["predict", "--run", run.root, "--manifest", str(manifest), "--format", "csv"]
    )
    assert result.exit_code != 0
    assert "no-store" in result.output and "fuses multilabel" not in result.output
    # The report shows every fusion and the class fusion's confusion matrix with its members'.
    rows = _report_rows(run)
    assert {"fused.weighted", "fused.multilabel.weighted"} <= {m for m, _ in rows}
    report = Path(run.root) / "report"
    assert (report / "confusion_fused.weighted_test.png").is_file()
    assert (report / "confusion_face.expr_test.png").is_file()
    # Its fusion table scores each fusion in its own task's metric, none left empty.
    table = fusion_table(run).set_index("model")
    assert table.loc["fused.weighted", "metric"] == "macro_f1"
    assert table.loc["fused.multilabel.weighted", "metric"] == "mean_f1"
    assert table[["val", "val_cv", "test"]].notna().all().all(), table
    record = run.fusion("fused.multilabel.weighted")["scores"]
    assert table.loc["fused.multilabel.weighted", "test"] == record["test"]["mean_f1"]


def test_fuse_of_a_classification_run_without_classes_is_a_clear_error(tmp_path: Path) -> None:
    run = _multitask_run(tmp_path / "run")
    meta = {k: v for k, v in run.meta().items() if k != "classes"}
    (Path(run.root) / "run.json").write_text(json.dumps(meta))
    # Target members need no classes.
    au = run_fuse(
        FuseConfig(run=run.root, models=["face.logreg", "voice.logreg"], methods=["mean"])
    )
    assert au["name"] == "fused.multilabel.mean"
    with pytest.raises(ConfigError, match=r"has no classes in run\.json, which fusing"):
        run_fuse(FuseConfig(run=run.root, models=["face.expr", "voice.expr"], num_samples=0))
