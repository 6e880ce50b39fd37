"""Reading a run folder never executes code from it.

Malicious payloads are planted wherever a pickle used to live (models/*.pkl, fusion/*.pkl,
trial_models/*.pkl, a trial checkpoint's model.pkl) and as the skops files that replaced them;
`raypipe predict`, `raypipe fuse` and `raypipe report` must end with a one-line error (exit
code 2) or ignore the file, and the payload's marker file must never appear. A real
tune-classifiers + fuse run must leave no pickle in its run folder.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from raypipe.cli import main
from raypipe.config import FuseConfig
from raypipe.errors import RaypipeError
from raypipe.pipeline.fuse import run_fuse
from raypipe.store import artifacts
from raypipe.store.feature_store import FeatureStore
from raypipe.store.run_folder import RUN_FORMAT, RunFolder
from tests.pickle_scan import pickled_files

CLASSES = ["Angry", "Happy", "Sad"]


class Payload:
    """Unpickling it opens (so creates) the marker file: a stand-in for any code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


class EvilState:
    """Rebuilding it (skops, if it were trusted) creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).touch()


def _payload(marker: Path) -> bytes:
    data = pickle.dumps(Payload(marker))
    # The payload works: unpickling it creates the marker (checked, then removed).
    pickle.loads(data).close()
    assert marker.exists()
    marker.unlink()
    return data


def _build_run(root: Path) -> RunFolder:
    """A format-2 run of two fitted logistic regressions and their fusions (no Ray)."""
    rng = np.random.default_rng(0)
    n = 60
    labels = np.arange(n) % 3
    splits = np.array((["train"] * 2 + ["val", "test"]) * (n // 4))
    ids = np.array([f"m{i:02d}" for i in range(n)], dtype=object)
    store = FeatureStore(str(root / "store"))
    store.initialise()
    run = RunFolder(root / "run")
    run.create({"store": store.uri, "classes": CLASSES})
    for name, noise in (("voice.logreg", 1.0), ("face.mean.logreg", 1.5)):
        x = np.eye(3)[labels] * 2 + rng.normal(0, noise, (n, 3))
        model = LogisticRegression().fit(x[splits == "train"], labels[splits == "train"])
        feature_set = name.rsplit(".", 1)[0]
        spec = {"feature_set": feature_set, "classifier": "logreg", "params": {"C": 1.0}}
        run.save_model(name, {"pipeline": model, "spec": spec, "modality": name[:5]})
        run.write_predictions(name, ids, splits, labels, model.predict_proba(x))
    run_fuse(FuseConfig(run=run.root, num_samples=0, random_candidates=50, cv_folds=3))
    return run


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> RunFolder:
    return _build_run(tmp_path_factory.mktemp("template"))


@pytest.fixture
def run(template: RunFolder, tmp_path: Path) -> RunFolder:
    """A fresh copy of the template run (each test tampers with its own)."""
    shutil.copytree(template.root, tmp_path / "run")
    return RunFolder(tmp_path / "run")


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the CLI in this process; exit code and stderr. The CLI's log handler (bound to
    this test's captured stderr) and logger settings are undone afterwards."""
    logger = logging.getLogger("raypipe")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    code = exit_info.value.code
    return int(code or 0), capsys.readouterr().err


def _commands(run: RunFolder) -> dict[str, list[str]]:
    manifest = Path(run.root).parent / "new.csv"
    manifest.write_text("media_id,path\nx1,/nowhere/x1.mp4\n")
    return {
        "predict": ["predict", "--run", str(run.root), "--manifest", str(manifest)],
        "fuse": ["fuse", "--run", str(run.root), "--set", "num_samples=0"],
        "report": ["report", str(run.root)],
    }


def _assert_one_line_error(code: int, err: str, *expected: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in errors[0], errors[0]


def _plant_pickles(run: RunFolder, payload: bytes) -> list[Path]:
    places = [
        Path(run.root) / "models" / "voice.logreg.pkl",
        Path(run.root) / "models" / "planted.pkl",
        Path(run.root) / "fusion" / "fused.weighted.pkl",
        Path(run.root) / "trial_models" / "abc123.pkl",
        Path(run.root) / "tune" / "classifiers-0" / "attempt-1" / "trial" / "model.pkl",
    ]
    for path in places:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    return places


@pytest.mark.parametrize("command", ["predict", "fuse", "report"])
@pytest.mark.parametrize("meta", ["no format", "unknown format"])
def test_old_or_foreign_run_is_refused_in_one_line(
    run: RunFolder, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, meta: str
) -> None:
    marker = tmp_path / "pwned"
    payload = _payload(marker)
    _plant_pickles(run, payload)
    # An older raypipe's run: pickles where the skops files are now, run.json without format.
    for path in [*Path(run.root).glob("models/*.skops"), *Path(run.root).glob("fusion/*.skops")]:
        path.unlink()
        path.with_suffix(".pkl").write_bytes(payload)
    data = json.loads((Path(run.root) / "run.json").read_text())
    if meta == "no format":
        del data["format"]
    else:
        data["format"] = 99
    (Path(run.root) / "run.json").write_text(json.dumps(data))
    code, err = _cli(capsys, *_commands(run)[command])
    _assert_one_line_error(code, err, str(run.root), "tune-classifiers", "--run NEW")
    assert not marker.exists()


@pytest.mark.parametrize("command", ["predict", "fuse", "report"])
def test_planted_pickles_in_a_current_run_are_ignored(
    run: RunFolder, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    marker = tmp_path / "pwned"
    _plant_pickles(run, _payload(marker))
    code, err = _cli(capsys, *_commands(run)[command])
    if command == "predict":
        # Models and fusion load; predict then stops at the (empty) training store.
        _assert_one_line_error(code, err, "has no record of extractor")
    else:
        assert code == 0, err
    assert not marker.exists()


@pytest.mark.parametrize("place", ["models", "fusion"])
@pytest.mark.parametrize("content", ["pickle", "untrusted type", "function", "garbage"])
def test_tampered_skops_files_are_refused_in_one_line(
    run: RunFolder, tmp_path: Path, capsys: pytest.CaptureFixture[str], place: str, content: str
) -> None:
    marker = tmp_path / "pwned"
    if content == "pickle":
        data = _payload(marker)
    elif content == "untrusted type":
        data = artifacts.dumps({"pipeline": EvilState(marker), "spec": {}})
    elif content == "function":
        data = artifacts.dumps({"pipeline": os.system, "spec": {}})
    else:
        data = b"PK\x03\x04 not really a zip"
    paths = sorted((Path(run.root) / place).glob(f"*{artifacts.SUFFIX}"))
    assert paths
    for path in paths:
        path.write_bytes(data)
    code, err = _cli(capsys, *_commands(run)["predict"])
    _assert_one_line_error(code, err, str(Path(run.root) / place), artifacts.SUFFIX)
    assert not marker.exists()
    for path in paths:
        name = path.name.removesuffix(artifacts.SUFFIX)
        load = run.load_model if place == "models" else run.load_fused_model
        with pytest.raises(RaypipeError, match=path.name):
            load(name)
    assert not marker.exists()


def test_a_trial_record_with_untrusted_types_is_not_kept(run: RunFolder, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(RaypipeError, match="untrusted"):
        run.write_trial_model("abc", artifacts.dumps(EvilState(marker)))
    assert not run.has_trial_model("abc") and not marker.exists()


def test_run_json_carries_the_format(run: RunFolder) -> None:
    assert run.meta()["format"] == RUN_FORMAT == 2


def test_tune_classifiers_into_an_old_run_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "old"
    (old / "models").mkdir(parents=True)
    (old / "models" / "m.pkl").write_bytes(b"x")
    with pytest.raises(RaypipeError, match="--run NEW"):
        RunFolder(old).create({"store": "s"})
    (old / "run.json").write_text(json.dumps({"store": "s"}))
    with pytest.raises(RaypipeError, match="--run NEW"):
        RunFolder(old).create({"store": "s"})


@pytest.mark.integration
def test_tune_and_fuse_leave_no_pickle_in_the_run(ray_local: None, tmp_path: Path) -> None:
    from raypipe.config import FeatureSetConfig, TuneClassifiersConfig
    from raypipe.pipeline.tune_classifiers import run_tune_classifiers
    from tests.classify.synthetic import make_store

    store, _ = make_store(tmp_path / "store", all_frames=True)
    root = tmp_path / "run"
    config = TuneClassifiersConfig(
        store=store.uri,
        run=root,
        feature_sets=[
            FeatureSetConfig(extractor="face_sim", pooling=["mean", "fisher"]),
            FeatureSetConfig(extractor="voice_sim", pooling=["mean"]),
        ],
        classifiers=["logreg", "mlp"],
        param_grid={"logreg": {"C": [1.0]}, "mlp": {"hidden": [8], "lr": [0.01]}},
        max_epochs=4,
        grace_epochs=2,
        pooling_components=2,
    )
    run_tune_classifiers(config)
    run_fuse(FuseConfig(run=root, num_samples=4, random_candidates=50, cv_folds=3))
    assert pickled_files(root) == []  # by content: Ray Tune's state files included
    assert not list(root.rglob("*.pt"))
    run = RunFolder(root)
    assert {p.name for p in (root / "models").iterdir()} == {
        f"{m}{artifacts.SUFFIX}" for m in run.trials()["model"].unique()
    }
    assert list((root / "fusion").glob(f"*{artifacts.SUFFIX}"))
    for name in run.trials()["model"].unique():
        assert run.load_model(name)["spec"]["feature_set"] in name


def test_the_scan_finds_pickles_under_any_name(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_bytes(pickle.dumps({"a": 1}))
    (tmp_path / "experiment_state.json").write_text(json.dumps({"_type": "CLOUDPICKLE_FALLBACK"}))
    (tmp_path / "result.json").write_text(json.dumps({"score": 1.0}))
    (tmp_path / "table.parquet").write_bytes(b"PAR1....PAR1")
    names = [p.name for p in pickled_files(tmp_path)]
    assert names == ["experiment_state.json", "state.json"]


@pytest.mark.parametrize("name", ["../../outside/secret", "a/b", ".hidden", "x/../../y"])
def test_names_in_run_records_cannot_leave_the_run_folder(tmp_path: Path, name: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / f"secret{artifacts.SUFFIX}").write_bytes(artifacts.dumps({"a": 1}))
    run = RunFolder(tmp_path / "run")
    run.create({"store": "s"})
    (Path(run.root) / "models").mkdir()
    for read in (run.load_model, run.predictions, run.fusion, run.load_fused_model):
        with pytest.raises(RaypipeError, match="not a plain name"):
            read(name)
