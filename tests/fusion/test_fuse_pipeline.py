"""`run_fuse` and the report on a run folder of synthetic predictions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from raypipe.config import FuseConfig
from raypipe.config.base import validate_config
from raypipe.errors import ConfigError
from raypipe.pipeline.fuse import run_fuse
from raypipe.report.writer import fusion_table, metrics_table, write_report
from raypipe.store.run_folder import RunFolder
from tests.fusion.synthetic import complementary, write_run

MEMBERS = ["face.logreg", "voice.logreg", "noise.logreg"]


@pytest.fixture
def run_folder(tmp_path: Path) -> RunFolder:
    probs, labels = complementary(n=168, seed=5, noise=0.3)
    return write_run(tmp_path / "run", dict(zip(MEMBERS, probs, strict=True)), labels)


def _config(run: RunFolder, **changes: object) -> FuseConfig:
    settings = {
        "run": run.root,
        "models": MEMBERS,
        "num_samples": 0,
        "random_candidates": 2000,
        "methods": ["weighted", "weighted_class", "greedy", "stacking_logreg", "stacking_svm"],
    }
    return validate_config(FuseConfig, {**settings, **changes}, "test flags")


def test_every_method_is_stored_scored_and_one_is_selected(run_folder: RunFolder) -> None:
    record = run_fuse(_config(run_folder))
    names = {f"fused.{m}" for m in _config(run_folder).methods}
    assert names <= set(run_folder.models()) and names == set(run_folder.fusions())
    assert record["selected"] and record["name"] in names
    selected = [n for n in names if run_folder.fusion(n)["selected"]]
    assert selected == [record["name"]]
    cv = {n: run_folder.fusion(n)["scores"]["val_cv"]["macro_f1"] for n in names}
    assert cv[record["name"]] == max(cv.values())
    table = metrics_table(run_folder)
    test = table[table["split"] == "test"].set_index("model")["macro_f1"]
    val = table[table["split"] == "val"].set_index("model")["macro_f1"]
    # The two informative members together are (nearly) perfect, each alone far from it.
    assert test[record["name"]] > max(test[m] for m in MEMBERS) + 0.3
    weighted = run_folder.fusion("fused.weighted")
    assert abs(sum(weighted["weights"].values()) - 1) < 1e-3
    assert val["fused.weighted"] >= max(val[m] for m in MEMBERS) - 1e-9
    assert weighted["search"]["candidates_scored"] > 2000


def test_cascade_method_and_its_config_errors(run_folder: RunFolder) -> None:
    groups = {"Negative": ["Angry", "Disgust", "Fear", "Sad"]}
    record = run_fuse(
        _config(run_folder, methods=["cascade"], cascade={"groups": groups, "fine": MEMBERS[1]})
    )
    cascade = record["methods"]["cascade"]
    assert cascade["fine"] == MEMBERS[1] and cascade["coarse"] in MEMBERS
    with pytest.raises(ConfigError, match=r"cascade\.groups is empty"):
        _config(run_folder, methods=["cascade"])
    with pytest.raises(ConfigError, match="'Anger', which is not a class"):
        run_fuse(_config(run_folder, methods=["cascade"], cascade={"groups": {"N": ["Anger"]}}))
    with pytest.raises(ConfigError, match=r"cascade\.coarse 'x' is not one of the fused models"):
        run_fuse(
            _config(run_folder, methods=["cascade"], cascade={"groups": groups, "coarse": "x"})
        )


def test_frame_level_members_are_smoothed_to_media(tmp_path: Path) -> None:
    probs, labels = complementary(n=84, seed=6)
    run = write_run(tmp_path / "run", {"face.logreg": probs[0]}, labels)
    # The voice model scores four windows per media, one of them flipped to a wrong class.
    ids = np.repeat([f"m{i:04d}" for i in range(84)], 4)
    splits = np.repeat(run.predictions("face.logreg")["split"].to_numpy(), 4)
    windows = np.repeat(probs[1], 4, axis=0)
    windows[1::4] = np.roll(windows[1::4], 1, axis=1)
    run.write_predictions(
        "voice.windows",
        ids,
        splits,
        np.repeat(labels, 4),
        windows,
        start_s=np.tile([0, 1, 2, 3.0], 84),
    )
    config = _config(
        run,
        models=["face.logreg", "voice.windows"],
        methods=["weighted"],
        smoothing={"window_s": 3.0, "method": "median"},
    )
    record = run_fuse(config)
    assert record["scores"]["test"]["accuracy"] == 1.0
    assert len(run.predictions("fused.weighted")) == 84


def test_unknown_member_and_too_few_val_media_are_clear_errors(run_folder: RunFolder) -> None:
    with pytest.raises(ConfigError, match=r"nope.*known"):
        run_fuse(_config(run_folder, models=["nope", MEMBERS[0]]))
    with pytest.raises(ConfigError, match="at least two models"):
        run_fuse(_config(run_folder, models=[MEMBERS[0]]))
    with pytest.raises(ConfigError, match="fewer than cv_folds=50"):
        run_fuse(_config(run_folder, cv_folds=50))


def test_report_shows_gap_per_class_scores_and_figures(run_folder: RunFolder) -> None:
    run_fuse(_config(run_folder, methods=["weighted", "greedy"]))
    path = Path(write_report(run_folder))
    text = path.read_text()
    assert "gap_cv_test" in text and "val_cv" in text and "Per-class F1" in text
    gaps = fusion_table(run_folder).set_index("model")
    assert set(gaps["metric"]) == {"macro_f1"}
    expected = gaps["val"] - gaps["test"]
    np.testing.assert_allclose(gaps["gap_val_test"], expected)
    figures = {p.name for p in path.parent.glob("*.png")}
    assert "per_class_test.png" in figures
    assert len([f for f in figures if f.startswith("confusion_")]) == len(MEMBERS) + 1
    html = (path.parent / "report.html").read_text()
    assert "<table>" in html and "per_class_test.png" in html
    for name in figures:
        assert (path.parent / name).read_bytes()[:4] == b"\x89PNG"


def test_cli_fuse_and_report_json(run_folder: RunFolder) -> None:
    fuse = subprocess.run(
        [
            "raypipe",
            "fuse",
            "--run",
            str(run_folder.root),
            "--set",
            "num_samples=0",
            "--set",
            "random_candidates=500",
            "--set",
            "methods=[weighted,greedy]",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "selected" in fuse.stdout and "raypipe report" in fuse.stdout
    result = subprocess.run(
        ["raypipe", "report", str(run_folder.root), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(result.stdout[result.stdout.index("[") :])
    assert {r["model"] for r in rows} >= {"fused.weighted", "fused.greedy", *MEMBERS}


def test_cli_predict_help_and_a_run_without_fusion(run_folder: RunFolder, tmp_path: Path) -> None:
    help_text = subprocess.run(
        ["raypipe", "predict", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--manifest" in help_text and "submission" in help_text
    manifest = tmp_path / "new.csv"
    manifest.write_text("media_id,path\na,a.mp4\n")
    result = subprocess.run(
        ["raypipe", "predict", "--run", str(run_folder.root), "--manifest", str(manifest)],
        capture_output=True,
        text=True,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "raypipe fuse --run" in errors[0]
    assert "Traceback" not in result.stderr


def test_a_second_fuse_leaves_exactly_one_selected(run_folder: RunFolder) -> None:
    run_fuse(_config(run_folder, methods=["weighted", "stacking_logreg"]))
    record = run_fuse(_config(run_folder, methods=["greedy"]))
    selected = [n for n in run_folder.fusions() if run_folder.fusion(n)["selected"]]
    assert selected == ["fused.greedy"] == [record["name"]]
    assert set(run_folder.fusions()) == {"fused.weighted", "fused.stacking_logreg", "fused.greedy"}
