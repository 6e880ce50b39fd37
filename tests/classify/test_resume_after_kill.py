"""A search whose driver is killed (SIGKILL) resumes: finished trials are not run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from raypipe.config import TuneClassifiersConfig
from raypipe.config.base import load_config
from raypipe.pipeline.trial_ledger import TrialLedger
from raypipe.pipeline.tune_classifiers import run_tune_classifiers
from raypipe.store.run_folder import RunFolder
from tests.classify.synthetic import make_store

# Under load (other jobs on the cores) it can pass a minute; CI runs slow tests too.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# 12 torch trials of a few seconds each: long enough to kill the driver in the middle.
SEARCH = {
    "feature_sets": [{"extractor": "face_sim", "pooling": ["mean", "pct"]}],
    "classifiers": ["mlp"],
    "param_grid": {"mlp": {"hidden": [16, 32, 64], "lr": [0.01, 0.003], "batch_size": [4]}},
    "max_epochs": 40,
    "early_stopping": "none",
}


def _ledger(run: Path) -> dict[str, dict]:
    folders = list((run / "tune").glob("classifiers-*"))
    return TrialLedger(folders[0] / "finished").done() if folders else {}


def test_killed_driver_resumes_without_rerunning_finished_trials(
    ray_local: None, tmp_path: Path
) -> None:
    import ray

    store, _ = make_store(tmp_path / "store")
    config_file = tmp_path / "search.yaml"
    config_file.write_text(yaml.safe_dump(SEARCH))
    run = tmp_path / "run"
    flags = ["--store", store.uri, "--run", str(run)]
    # The driver joins this session's Ray, so killing it frees its trials' workers at once.
    address = ray.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "jobs" / "tune_classifiers.py"),
            "--config",
            str(config_file),
            *flags,
            "--address",
            address,
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.time() + 240
    while len(_ledger(run)) < 3 and driver.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert driver.poll() is None, "the search ended before it could be killed; make it longer"
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    killed_at = time.time()
    before = {key: entry["metrics"]["started_at"] for key, entry in _ledger(run).items()}
    assert 3 <= len(before) < 12
    assert not (run / "trials.parquet").exists()  # it died mid-search

    config = load_config(TuneClassifiersConfig, config_file, [], {"store": store.uri, "run": run})
    best = run_tune_classifiers(config)
    trials = RunFolder(run).trials().set_index("trial_id")
    assert len(trials) == 12 and len(best) == 2
    for key, started in before.items():
        assert trials.loc[key, "started_at"] == started  # kept, not trained again
    rerun = trials.drop(index=list(before))
    assert (rerun["started_at"] > killed_at).all()
    # The second attempt's Tune experiment held only the unfinished trials.
    attempt = next((run / "tune").glob("classifiers-*/attempt-2"))
    assert len([p for p in attempt.iterdir() if p.name.startswith("_trial")]) == 12 - len(before)
