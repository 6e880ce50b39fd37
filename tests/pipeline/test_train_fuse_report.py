"""tune-classifiers -> fuse -> report on a store extracted from the demo set (shared Ray)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from raypipe.config import FuseConfig, TuneClassifiersConfig
from raypipe.errors import ConfigError
from raypipe.pipeline.fuse import run_fuse
from raypipe.pipeline.tune_classifiers import run_tune_classifiers
from raypipe.report.writer import metrics_table, write_report
from raypipe.store.run_folder import RunFolder

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def run_folder(demo_store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("train") / "run"
    config = TuneClassifiersConfig(
        store=demo_store,
        run=run,
        logreg_c=[0.1, 1.0],
        lightgbm_num_leaves=[4],
        lightgbm_n_estimators=50,
    )
    best = run_tune_classifiers(config)
    assert set(best["modality"]) == {"visual", "audio", "text"}
    run_fuse(FuseConfig(run=run, num_samples=8))
    return run


def test_predictions_cover_every_split_with_probabilities(run_folder: Path) -> None:
    folder = RunFolder(run_folder)
    trials = folder.trials()
    assert len(trials) == 5 * (2 + 1)  # 5 feature sets x (2 logreg + 1 lightgbm)
    for model in folder.models():
        predictions = folder.predictions(model)
        assert set(predictions["split"]) == {"train", "val", "test"}
        probs = np.stack(predictions["probs"])
        assert probs.shape[1] == 7 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
        assert not predictions["media_id"].str.startswith("broken").any()


def test_fusion_is_never_worse_than_its_members_on_val(run_folder: Path) -> None:
    folder = RunFolder(run_folder)
    record = folder.fusion("fused.weighted")
    assert abs(sum(record["weights"].values()) - 1) < 1e-3
    table = metrics_table(folder)
    val = table[table["split"] == "val"].set_index("model")["macro_f1"]
    assert val["fused.weighted"] >= max(val[m] for m in record["members"]) - 1e-9


def _own_copy(run_folder: Path, tmp_path: Path) -> Path:
    """A copy of the shared run, for a test that writes to it (the report, a fusion): the
    shared one stays as the fixture made it, whichever tests run and in whatever order."""
    import shutil

    return Path(shutil.copytree(run_folder, tmp_path / "run"))


def test_report_files_and_cli_json(run_folder: Path, tmp_path: Path) -> None:
    run_folder = _own_copy(run_folder, tmp_path)
    path = Path(write_report(RunFolder(run_folder)))
    text = path.read_text()
    assert "fused.weighted" in text and "gap" in text and "val_cv" in text and "macro_f1" in text
    assert (path.parent / "report.html").is_file()
    assert (path.parent / "per_class_test.png").is_file()
    assert (path.parent / "search_classifiers.png").is_file()
    assert (path.parent / "search_fusion.png").is_file()  # num_samples=8 Ray Tune trials
    pngs = list(path.parent.glob("confusion_*.png"))
    # One per fused member (visual, audio, text) and one for the fusion.
    assert len(pngs) == 4 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    result = subprocess.run(
        ["raypipe", "report", str(run_folder), "--json"], capture_output=True, text=True, check=True
    )
    rows = json.loads(result.stdout[result.stdout.index("[") :])
    assert {"model", "split", "accuracy", "macro_f1", "uar"} <= set(rows[0])
    assert any(r["model"].startswith("fused") for r in rows)


def test_fuse_with_unknown_model_is_a_clear_error(run_folder: Path, tmp_path: Path) -> None:
    run_folder = _own_copy(run_folder, tmp_path)
    with pytest.raises(ConfigError, match=r"nope.*known"):
        run_fuse(FuseConfig(run=run_folder, models=["nope", "opensmile.logreg"]))
