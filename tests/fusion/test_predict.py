"""`raypipe predict` on new media: extraction of what is missing, members, fusion, CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from raypipe.classify.feature_matrix import load_feature_matrix
from raypipe.config import ExtractConfig, FuseConfig, PredictConfig
from raypipe.config.base import load_config
from raypipe.errors import ConfigError
from raypipe.labels import EMOTIW7, label_space
from raypipe.pipeline.extract import run_extract
from raypipe.pipeline.fuse import run_fuse
from raypipe.pipeline.predict import run_predict
from raypipe.store.run_folder import RunFolder

pytestmark = pytest.mark.integration

OPENSMILE_ONLY = [
    f"{name}.enabled=false"
    for name in (
        "face_expression",
        "opensmile_lld",
        "vad",
        "whisper_transcript",
        "whisper_embedding",
        "text_embedding",
    )
]


@pytest.fixture(scope="module")
def fused_run(
    ray_local: None, demo_set: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunFolder:
    """A run of two logistic regressions on openSMILE functionals of the demo set, fused."""
    root = tmp_path_factory.mktemp("predict")
    store = str(root / "store")
    run_extract(
        load_config(ExtractConfig, None, OPENSMILE_ONLY, {"manifest": demo_set, "out": store})
    )
    from raypipe.store.feature_store import FeatureStore

    matrix = load_feature_matrix(FeatureStore(store), "opensmile", None, label_space())
    run = RunFolder(root / "run")
    run.create({"store": store, "classes": list(EMOTIW7)})
    train = (matrix.split == "train") & (matrix.y >= 0)
    for c in (0.01, 1.0):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        model.fit(np.nan_to_num(matrix.x[train]), matrix.y[train])
        name = f"opensmile.logreg_c{c}"
        spec = {"feature_set": "opensmile", "classifier": "logreg", "params": {"C": c}}
        run.save_model(name, {"pipeline": model, "spec": spec, "modality": "audio"})
        probs = model.predict_proba(np.nan_to_num(matrix.x))
        run.write_predictions(name, matrix.media_ids, matrix.split, matrix.y, probs)
    run_fuse(
        FuseConfig(
            run=run.root, num_samples=0, random_candidates=500, methods=["weighted", "greedy"]
        )
    )
    return run


def test_predict_writes_a_submission_matching_the_stored_fusion(
    fused_run: RunFolder, demo_set: Path, tmp_path: Path
) -> None:
    source = pd.read_csv(demo_set)
    test = source[source["split"] == "test"].head(6)
    new = pd.DataFrame(
        {
            "media_id": "new_" + test["media_id"],
            "path": [str((demo_set.parent / p).resolve()) for p in test["path"]],
            "label": test["label"],
        }
    )
    broken = source[source["media_id"].str.startswith("broken")]["path"].iloc[0]
    row = {"media_id": "new_broken", "path": str((demo_set.parent / broken).resolve())}
    new = pd.concat([new, pd.DataFrame([{**row, "label": ""}])], ignore_index=True)
    manifest = tmp_path / "new.csv"
    new.to_csv(manifest, index=False)
    out = tmp_path / "submission.csv"
    summary = run_predict(PredictConfig(run=fused_run.root, manifest=manifest, out=out))
    assert summary.fusion == next(n for n in fused_run.fusions() if fused_run.fusion(n)["selected"])
    with out.open() as handle:
        header = next(csv.reader(handle))
    assert header == [
        "media_id",
        "label",
        *[f"prob_{c}" for c in EMOTIW7],
        "scored_by",
        "missing",
        "note",
    ]
    table = pd.read_csv(out)
    assert table["media_id"].tolist() == new["media_id"].tolist()
    probs = table[[f"prob_{c}" for c in EMOTIW7]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    # Same clips, same features, same models: the stored fused test predictions come back.
    stored = fused_run.predictions(summary.fusion).set_index("media_id")
    for row in table.itertuples(index=False):
        if row.media_id == "new_broken":
            continue
        expected = np.asarray(stored.loc[row.media_id.removeprefix("new_"), "probs"])
        np.testing.assert_allclose(probs[table["media_id"] == row.media_id][0], expected, atol=1e-4)
    # Scored rows name their members and have no note.
    members = fused_run.fusion(summary.fusion)["members"]
    scored = table[table["media_id"] != "new_broken"]
    assert (scored["scored_by"] == ";".join(members)).all()
    assert scored["missing"].isna().all() and scored["note"].isna().all()
    # The broken file gets a row: the training prior (class frequencies of the train split,
    # not a uniform or confident-looking class), no label, and a note saying why.
    train = fused_run.predictions(members[0]).query("split == 'train' and label >= 0")
    prior = np.bincount(train["label"], minlength=7) / len(train)
    broken_row = table[table["media_id"] == "new_broken"].iloc[0]
    np.testing.assert_allclose(probs[-1], prior, atol=1e-5)
    assert pd.isna(broken_row["label"]) and pd.isna(broken_row["scored_by"])
    assert broken_row["missing"] == "audio"
    assert "training prior" in broken_row["note"] and "no model could score" in broken_row["note"]
    assert summary.prior == 1
    assert summary.scored == {m: 6 for m in members}
    # The scores are the CSV's labels against the manifest's (the broken row has none).
    labels = label_space()
    hits = [
        labels.canonical(p) == labels.canonical(t)
        for p, t in zip(scored["label"], test["label"], strict=True)
    ]
    assert summary.scores is not None
    assert summary.scores["accuracy"] == pytest.approx(sum(hits) / len(hits))


def test_predict_with_an_unknown_fusion_is_a_clear_error(
    fused_run: RunFolder, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("media_id,path\na,a.mp4\n")
    with pytest.raises(ConfigError, match=r"fusion 'fused\.nope' is not in run"):
        run_predict(PredictConfig(run=fused_run.root, manifest=manifest, fusion="fused.nope"))


def _new_media(demo_set: Path, folder: Path, count: int, name: str) -> Path:
    """A manifest of ``count`` test clips of the demo set under new ids."""
    source = pd.read_csv(demo_set)
    test = source[source["split"] == "test"].head(count)
    new = pd.DataFrame(
        {
            "media_id": "new_" + test["media_id"],
            "path": [str((demo_set.parent / p).resolve()) for p in test["path"]],
            "label": test["label"],
        }
    )
    path = folder / name
    new.to_csv(path, index=False)
    return path


def test_predict_extracts_only_what_its_store_is_missing(
    fused_run: RunFolder, demo_set: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = str(tmp_path / "predict_store")

    def predict(manifest: Path) -> str:
        caplog.clear()
        with caplog.at_level("INFO", logger="raypipe.pipeline.predict"):
            run_predict(
                PredictConfig(
                    run=fused_run.root, manifest=manifest, store=store, out=tmp_path / "s.csv"
                )
            )
        [line] = [r.getMessage() for r in caplog.records if "extract for predict" in r.message]
        return line

    two, three = (
        _new_media(demo_set, tmp_path, 2, "two.csv"),
        _new_media(demo_set, tmp_path, 3, "three.csv"),
    )
    assert "computed: 2 ok; already up to date: 0" in predict(two)
    # The same media again: nothing is computed; one more media: only it.
    assert "computed: none; already up to date: 2" in predict(two)
    assert "computed: 1 ok; already up to date: 2" in predict(three)
    from raypipe.store.feature_store import FeatureStore

    rows = FeatureStore(store).status(problems_only=False)
    assert sorted(rows["media_id"]) == sorted(pd.read_csv(three)["media_id"])


def test_predict_refuses_settings_that_would_change_the_features_version(
    fused_run: RunFolder, demo_set: Path, tmp_path: Path
) -> None:
    # An extract YAML whose openSMILE settings differ from the training store's: its version
    # differs, so the models would read other features. Predict says so before extracting.
    settings = tmp_path / "extract.yaml"
    settings.write_text("opensmile:\n  feature_set: GeMAPSv01b\n")
    manifest = _new_media(demo_set, tmp_path, 1, "one.csv")
    store = tmp_path / "predict_store"
    stored = fused_run.meta()["store"]
    with pytest.raises(ConfigError) as error:
        run_predict(
            PredictConfig(run=fused_run.root, manifest=manifest, extract=settings, store=str(store))
        )
    message = str(error.value)
    assert message.startswith("extractor 'opensmile' would compute version ")
    assert f"the training store '{stored}' holds version " in message
    assert message.endswith("pass the extract YAML that built that store with --set extract=PATH.")
    assert not store.exists()  # refused before anything was extracted
