"""`--dry-run` of `raypipe extract`, `tune-classifiers` and `train`: each prints its plan (a
table and lines, or JSON with --json), starts no Ray and writes nothing; the numbers are
checked on small cases."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from raypipe.cli import app
from raypipe.config import ExtractConfig

#: Modules that start or join Ray for their command (each imported ray_session by name).
SESSION_MODULES = (
    "raypipe.pipeline.runtime",
    "raypipe.pipeline.extract",
    "raypipe.pipeline.tune_classifiers",
    "raypipe.pipeline.train",
)


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if anything starts or joins Ray."""
    import importlib

    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dry run started Ray")

    was_running = ray.is_initialized()
    # Imported before any is patched: a module imported while runtime.ray_session is patched
    # would keep the refusal as its own ray_session after the test.
    modules = [importlib.import_module(name) for name in SESSION_MODULES]
    monkeypatch.setattr(ray, "init", refuse)
    for module in modules:
        monkeypatch.setattr(module, "ray_session", refuse)
    yield
    assert ray.is_initialized() == was_running


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _only_opensmile() -> list[str]:
    from raypipe.extractors.registry import EXTRACTORS

    return [
        arg
        for name in EXTRACTORS
        if name != "opensmile" and name in ExtractConfig.model_fields
        for arg in ("--set", f"{name}.enabled=false")
    ]


def _extract_plan(manifest: Path, store: Path, *overrides: str) -> dict:
    """`extract --dry-run --json` of openSMILE alone with ``overrides`` (--set)."""
    sets = [arg for value in overrides for arg in ("--set", value)]
    flags = ["--manifest", str(manifest), "--out", str(store), "--dry-run", "--json"]
    return json.loads(_invoke("extract", *flags, *_only_opensmile(), *sets))


@pytest.mark.parametrize("command", ["extract", "tune-classifiers", "train"])
def test_help_offers_dry_run_and_json(command: str) -> None:
    text = " ".join(CliRunner().invoke(app, [command, "--help"]).stdout.split())
    assert "--dry-run" in text and "starts no Ray, writes nothing" in text and "--json" in text


# -- extract ---------------------------------------------------------------------------------


def test_extract_dry_run_on_a_new_store(demo_set: Path, tmp_path: Path, no_ray: None) -> None:
    out = tmp_path / "store"
    before = _tree(demo_set.parent)
    text = _invoke("extract", "--manifest", str(demo_set), "--out", str(out), "--dry-run")
    manifest = pd.read_csv(demo_set)
    media = len(manifest)
    assert f"plan: {out}" in text and f"{media} media to process" in text
    assert f"1 to {media} actor(s), at most one per media to compute" in text
    assert "no Ray was started" in text
    plan = _extract_plan(demo_set, out, "max_workers=8", "cpus_per_worker=2")
    assert plan["dry_run"] and plan["media"] == media and plan["up_to_date"] == 0
    assert plan["pool"] == {"min": 1, "max": 8, "bound": "max_workers", "why": "max_workers"}
    assert plan["resources_per_actor"] == {"CPU": 2.0}
    [row] = plan["extractors"]
    assert row["extractor"] == "opensmile" and row["current"] is None and row["new_version"]
    assert (row["todo"], row["new"], row["reused"], row["median_s"]) == (media, media, 0, None)
    assert plan["estimate_s"] == {"one_worker": None}
    fixed = _extract_plan(demo_set, out, "workers=3")
    assert fixed["pool"]["min"] == fixed["pool"]["max"] == 3 and fixed["pool"]["bound"] == "workers"
    assert not out.exists() and _tree(demo_set.parent) == before


@pytest.mark.integration
def test_extract_dry_run_counts_new_changed_retried_and_estimates(
    ray_local: None, demo_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raypipe.config.base import load_config
    from raypipe.pipeline.extract import run_extract

    media = tmp_path / "media"
    media.mkdir()
    names = ["angry_000", "disgust_000", "fear_000", "happy_000", "broken_empty"]
    for name in names:
        shutil.copy(demo_set.parent / "media" / f"{name}.mp4", media / f"{name}.mp4")
    manifest = tmp_path / "manifest.csv"
    rows = [{"media_id": n, "path": str(media / f"{n}.mp4")} for n in names]
    pd.DataFrame(rows).to_csv(manifest, index=False)
    store = tmp_path / "store"
    flags = {"manifest": manifest, "out": str(store)}
    overrides = [a for a in _only_opensmile() if a != "--set"]
    summary = run_extract(load_config(ExtractConfig, None, overrides, flags))
    assert summary.computed == {"ok": 4, "failed": 1}

    # A new media, a file changed in place (another clip's bytes), the failed one retried.
    shutil.copy(demo_set.parent / "media" / "sad_000.mp4", media / "sad_000.mp4")
    rows.append({"media_id": "sad_000", "path": str(media / "sad_000.mp4")})
    pd.DataFrame(rows).to_csv(manifest, index=False)
    shutil.copy(media / "sad_000.mp4", media / "fear_000.mp4")
    before = _tree(store)

    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("a dry run started Ray"))
    plan = _extract_plan(manifest, store, "retry_failed=true")
    [row] = plan["extractors"]
    assert row["current"] == row["version"] and not row["new_version"]
    assert (row["new"], row["changed"], row["retry"], row["reused"]) == (1, 1, 1, 3)
    assert row["todo"] == plan["media"] == 3 and plan["up_to_date"] == 3
    assert row["median_s"] > 0 and row["estimate_s"] == round(row["median_s"] * 3, 1)
    assert plan["estimate_s"]["one_worker"] == row["estimate_s"]
    assert plan["pool"] == {
        "min": 1,
        "max": 3,
        "bound": "media",
        "why": "one per media to compute",
    }
    assert _tree(store) == before


# -- tune-classifiers ------------------------------------------------------------------------

SEARCH = [
    "--set",
    "feature_sets=[{extractor: face_sim, pooling: [mean, max]}, {extractor: voice_sim}]",
    "--set",
    "param_grid={logreg: {C: [0.1, 1]}, lightgbm: {num_leaves: [4, 15, 31]}}",
]


def test_tune_dry_run_counts_trials_and_what_the_run_holds(tmp_path: Path, no_ray: None) -> None:
    from raypipe.classify.search_space import spec_key
    from raypipe.pipeline.trial_ledger import TrialLedger
    from raypipe.store.run_folder import RunFolder
    from tests.classify.synthetic import make_store

    store, _ = make_store(tmp_path / "store", n_per_class=4)
    run = tmp_path / "run"
    base = ["tune-classifiers", "--store", store.uri, "--run", str(run), *SEARCH]
    before = _tree(tmp_path)
    text = _invoke(*base, "--dry-run")
    assert "tune-classifiers plan: grid search" in text and "15 configuration(s)" in text
    assert "15 trial(s); 0 done before in this run folder, 15 to run" in text
    assert "as many as the cluster's CPUs allow" in text and "is new" in text
    plan = json.loads(_invoke(*base, "--dry-run", "--json", "--set", "cpus_per_trial=0.5"))
    # face_sim (frame level) x 2 poolings + voice_sim (media level) = 3 matrices, each with
    # logreg x 2 values of C and lightgbm x 3 num_leaves x 1 n_estimators.
    assert plan["feature_sets"] == ["face_sim.mean", "face_sim.max", "voice_sim"]
    assert (plan["configurations"], plan["trials"], plan["done"], plan["to_run"]) == (15, 15, 0, 15)
    space = {(r["feature_set"], r["classifier"]): r["configurations"] for r in plan["space"]}
    assert space[("face_sim.max", "logreg")] == 2 and space[("voice_sim", "lightgbm")] == 3
    assert plan["resources_per_trial"] == {"CPU": 0.5} and not plan["run_exists"]
    assert _tree(tmp_path) == before and not run.exists()

    # A run folder holding two finished trials of this search: a re-run runs the other 13.
    RunFolder(run).create({"store": store.uri})
    experiment = Path(plan["experiment"])
    ledger = TrialLedger(experiment / "finished")
    specs = [
        {"feature_set": "voice_sim", "classifier": "logreg", "params": {"C": c}} for c in (0.1, 1)
    ]
    for spec in specs:
        ledger.record(spec_key(spec), {"spec": spec, "metrics": {"val_macro_f1": 0.5}})
    before = _tree(tmp_path)
    resumed = json.loads(_invoke(*base, "--dry-run", "--json", "--set", "max_concurrent_trials=2"))
    assert (resumed["done"], resumed["to_run"], resumed["max_concurrent_trials"]) == (2, 13, 2)
    assert resumed["run_exists"] and resumed["experiment"] == str(experiment)
    rows = {(r["feature_set"], r["classifier"]): r for r in resumed["space"]}
    logreg = rows[("voice_sim", "logreg")]
    assert (logreg["configurations"], logreg["done"], logreg["to_run"]) == (2, 2, 0)
    # Random and optuna searches: their trial budgets.
    random = json.loads(
        _invoke(*base, "--dry-run", "--json", "--set", "search=random", "--set", "num_samples=4")
    )
    assert (random["configurations"], random["trials"], random["to_run"]) == (4, 4, 4)
    optuna = json.loads(
        _invoke(*base, "--dry-run", "--json", "--set", "search=optuna", "--set", "num_samples=4")
    )
    # Optuna picks from the same configurations, so the grid's two finished trials count.
    assert (optuna["configurations"], optuna["trials"], optuna["to_run"]) == (15, 4, 2)
    assert _tree(tmp_path) == before


# -- train -----------------------------------------------------------------------------------


def _faces(root: Path, per_class: int = 5) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("Happy", "Neutral", "Sad"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_train_dry_run_images_workers_and_resume(tmp_path: Path, no_ray: None) -> None:
    from raypipe.config import TrainConfig
    from raypipe.config.base import load_config
    from raypipe.pipeline.train import absolute_paths, run_name

    faces = _faces(tmp_path / "faces")
    run = tmp_path / "run"
    base = ["train", "--data", str(faces), "--run", str(run)]
    before = _tree(tmp_path)
    text = _invoke(*base, "--dry-run")
    assert "images per class" in text and "12 train / 3 val images of 3 classes" in text
    assert "starts afresh" in text
    flags = ["--set", "num_workers=2", "--set", "cpus_per_worker=2", "--set", "epochs=4"]
    plan = json.loads(_invoke(*base, *flags, "--dry-run", "--json"))
    assert plan["data"]["images"] == {"train": 12, "val": 3}
    assert plan["data"]["classes"] == ["Happy", "Neutral", "Sad"]
    assert (plan["epochs"], plan["num_workers"]) == (4, 2)
    assert plan["resources_per_worker"] == {"CPU": 2.0}
    assert plan["resume"]["checkpoint"] is None
    assert {r["class"]: (r["train"], r["val"]) for r in plan["images"]} == {
        "Happy": (4, 1),
        "Neutral": (4, 1),
        "Sad": (4, 1),
    }
    assert _tree(tmp_path) == before and not run.exists()

    # A checkpoint of the same run (as Ray Train leaves it) is where a re-run resumes.
    config = absolute_paths(
        load_config(TrainConfig, None, ["epochs=4"], {"run": run, "data": {"root": str(faces)}})
    )
    checkpoint = run / "ray" / run_name(config) / "epoch_0002"
    checkpoint.mkdir(parents=True)
    state = {"epoch": 2, "best_score": 0.4, "best_epoch": 1, "bad_epochs": 1, "history": []}
    (checkpoint / "training_state.json").write_text(json.dumps(state))
    resumed = json.loads(_invoke(*base, *flags, "--dry-run", "--json"))["resume"]
    assert (resumed["epoch"], resumed["best_epoch"], resumed["finished"]) == (2, 1, False)
    assert resumed["checkpoint"] == str(checkpoint)
    done = json.loads(_invoke(*base, "--set", "epochs=2", "--dry-run", "--json"))["resume"]
    assert done["finished"]

    grid = ["--set", "search.lr=[0.01,0.001]", "--set", "search.dropout=[0.0,0.2,0.5]"]
    searched = json.loads(_invoke(*base, *grid, "--dry-run", "--json"))
    assert searched["search"]["trials"] == 6 and not searched["search"]["resumes"]
    assert searched["search"]["grid"] == {"lr": [0.01, 0.001], "dropout": [0.0, 0.2, 0.5]}
