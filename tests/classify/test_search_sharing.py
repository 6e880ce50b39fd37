"""A classifier search reads the store once and packs short configurations into shared trials
without changing any configuration's results."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest

from raypipe.classify.feature_matrix import frame_sequences
from raypipe.classify.search_space import spec_key, trial_specs
from raypipe.config import FeatureSetConfig, TuneClassifiersConfig
from raypipe.config.tracking import TrackingConfig
from raypipe.pipeline.tune_classifiers import pack_specs, run_tune_classifiers
from raypipe.store.feature_store import FeatureStore
from raypipe.store.run_folder import RunFolder
from tests.classify.synthetic import make_store
from tests.conftest import s3_bucket

pytestmark = pytest.mark.integration

FACE_FRAMES = "/frames/extractor=face_sim/"


def _config(store: str, run: Path, **update: object) -> TuneClassifiersConfig:
    return TuneClassifiersConfig(
        store=store,
        run=run,
        feature_sets=[FeatureSetConfig(extractor="face_sim", pooling=["mean", "pct", "fisher"])],
        classifiers=["logreg", "rf"],
        param_grid={
            "logreg": {"C": [0.1, 1.0]},
            "rf": {"n_estimators": [20], "max_depth": [None, 3], "min_samples_leaf": [1]},
        },
        pooling_components=2,
        **update,
    )


def _recorded_gets(endpoint: str, action: str) -> list[str]:
    """Start (``start``) or stop and return (``stop``) the S3 server's request recording:
    the paths of its GET requests."""
    base = f"http://{endpoint}/moto-api/recorder"
    if action == "start":
        urllib.request.urlopen(urllib.request.Request(f"{base}/reset-recording", method="POST"))
        urllib.request.urlopen(urllib.request.Request(f"{base}/start-recording", method="POST"))
        return []
    urllib.request.urlopen(urllib.request.Request(f"{base}/stop-recording", method="POST"))
    text = urllib.request.urlopen(f"{base}/download-recording").read().decode()
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [unquote(e["url"]) for e in entries if e["method"] == "GET"]


def test_search_reads_each_extractor_from_the_store_once(
    ray_local: None, s3_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.moto_api import recorder

    # The recording goes to a file of this test, not to the working directory.
    monkeypatch.setattr(recorder, "_location", str(tmp_path / "recording.jsonl"))
    uri = f"s3://sharing/store{s3_bucket(s3_server, 'sharing')}"
    make_store(uri)  # type: ignore[arg-type]
    store = FeatureStore(uri)

    _recorded_gets(s3_server, "start")
    frame_sequences(store, "face_sim")
    one_reading = [u for u in _recorded_gets(s3_server, "stop") if FACE_FRAMES in u]
    assert one_reading  # the frames are read from the bucket

    # Three poolings x 4 configurations, packed and unpacked trials, all from one reading.
    _recorded_gets(s3_server, "start")
    run_tune_classifiers(_config(uri, tmp_path / "run", configs_per_trial=2))
    search = [u for u in _recorded_gets(s3_server, "stop") if FACE_FRAMES in u]
    assert len(RunFolder(tmp_path / "run").trials()) == 12
    assert sorted(search) == sorted(one_reading)


def _ledger(run: Path) -> dict[str, dict]:
    folder = next((run / "tune").glob("classifiers-*")) / "finished"
    entries = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    for entry in entries.values():  # when it ran and for how long differ, nothing else
        del entry["metrics"]["started_at"], entry["metrics"]["seconds"]
    return entries


def _tune_trials(run: Path) -> int:
    attempt = next((run / "tune").glob("classifiers-*/attempt-1"))
    return len([p for p in attempt.iterdir() if p.name.startswith("_trial")])


def test_packed_and_unpacked_searches_give_the_same_configurations(
    ray_local: None, tmp_path: Path
) -> None:
    store, _ = make_store(tmp_path / "store", all_frames=True)
    alone, packed = tmp_path / "alone", tmp_path / "packed"
    best_alone = run_tune_classifiers(_config(store.uri, alone, configs_per_trial=1))
    best_packed = run_tune_classifiers(_config(store.uri, packed, configs_per_trial=5))
    assert (_tune_trials(alone), _tune_trials(packed)) == (12, 3)  # 4 configurations each

    pd.testing.assert_frame_equal(best_alone, best_packed)
    columns = ["trial_id", "spec", "val_macro_f1", "train_macro_f1", "val_accuracy", "epochs"]
    trials_alone = RunFolder(alone).trials().sort_values("trial_id")[columns]
    trials_packed = RunFolder(packed).trials().sort_values("trial_id")[columns]
    pd.testing.assert_frame_equal(
        trials_alone.reset_index(drop=True), trials_packed.reset_index(drop=True)
    )
    assert _ledger(alone) == _ledger(packed)
    for trial_id in trials_alone["trial_id"]:
        pd.testing.assert_frame_equal(
            RunFolder(alone).trial_predictions(trial_id),
            RunFolder(packed).trial_predictions(trial_id),
        )
    # The same best trials kept (no refit), promoted to the same models and predictions.
    kept = {p.name for p in (alone / "trial_models").iterdir()}
    assert kept == {p.name for p in (packed / "trial_models").iterdir()} and len(kept) == 6
    for name in best_alone["model"]:
        a, b = RunFolder(alone).load_model(name), RunFolder(packed).load_model(name)
        assert a["trial_id"] == b["trial_id"]
        pd.testing.assert_frame_equal(
            RunFolder(alone).predictions(name), RunFolder(packed).predictions(name)
        )

    # Packing does not change the search: the packed config resumes the unpacked run, with
    # nothing left to run.
    run_tune_classifiers(_config(store.uri, alone, configs_per_trial=5))
    assert not list((alone / "tune").glob("classifiers-*/attempt-2"))


def test_pack_specs_deals_one_shot_configurations_and_leaves_torch_heads_alone() -> None:
    config = TuneClassifiersConfig(
        feature_sets=[FeatureSetConfig(extractor="face", pooling=["mean", "pct", "fisher"])],
        classifiers=["logreg", "rf", "lightgbm", "mlp"],
        param_grid={"logreg": {"C": [0.1, 1.0, 10.0]}, "mlp": {"hidden": [16, 32]}},
    )
    specs = trial_specs(config, ["face.mean", "face.pct", "face.fisher"])
    one_shot = [s for s in specs if s["classifier"] != "mlp"]
    units = pack_specs(config, specs, slots=2)
    packs = [u for u in units if isinstance(u, list)]
    alone = [u for u in units if not isinstance(u, list)]
    # Every configuration exactly once; the torch heads one per trial, after the packs.
    flat = [spec_key(s) for p in packs for s in p] + [spec_key(s) for s in alone]
    assert sorted(flat) == sorted(spec_key(s) for s in specs)
    assert {s["classifier"] for s in alone} == {"mlp"} and isinstance(units[0], list)
    # Unset: about 4 trials per concurrent trial, of sizes that differ by one at most.
    assert len(packs) == 8 and len(one_shot) > 8
    assert max(map(len, packs)) - min(map(len, packs)) <= 1
    # Dealt by classifier: no pack holds only the slowest kind.
    assert all(len({s["classifier"] for s in p}) >= 2 for p in packs)
    # One configuration per trial when asked for, or when each is a tracked run of its own.
    assert pack_specs(config.model_copy(update={"configs_per_trial": 1}), specs, 2) == specs
    tracked = config.model_copy(update={"tracking": TrackingConfig(backends=["tensorboard"])})
    assert pack_specs(tracked, specs, 2) == specs
    assert len(pack_specs(config, specs, slots=64)) == len(specs)  # more slots than configs
