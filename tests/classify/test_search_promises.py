"""What docs/classifiers.md promises of resuming a search, checked on real Ray Tune runs: a
trial stopped by ``time_budget_s`` or failed is not recorded and a re-run fits it, and only
it; a finished search re-run does no Ray work at all.

Budgets here are shorter than any trial can take (a trial's first report alone starts a Ray
worker and imports the classifier stack, seconds even on a fast machine), so what they stop is
known in advance, whatever the machine's speed or load."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raypipe.config import FeatureSetConfig, TuneClassifiersConfig
from raypipe.errors import SearchError
from raypipe.pipeline.trial_ledger import TrialLedger
from raypipe.pipeline.tune_classifiers import run_tune_classifiers
from raypipe.store.run_folder import RunFolder
from raypipe.store.schema import STATUS_OK
from tests.classify.synthetic import make_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _experiment(run: Path) -> Path:
    """The search's Tune folder (``RUN/tune/classifiers-<search id>``); one search per run."""
    (folder,) = (run / "tune").glob("classifiers-*")
    return folder


def _ledger(run: Path) -> dict[str, dict[str, Any]]:
    folders = list((run / "tune").glob("classifiers-*"))
    return TrialLedger(folders[0] / "finished").done() if folders else {}


def _attempts(run: Path) -> dict[str, list[str]]:
    """Each Tune experiment (attempt) of the search with the names of its trial folders."""
    return {
        attempt.name: sorted(p.name for p in attempt.iterdir() if p.name.startswith("_trial"))
        for attempt in sorted(_experiment(run).glob("attempt-*"))
    }


def _trial_predictions(run: Path) -> set[str]:
    return {p.stem for p in (run / "trial_predictions").glob("*.parquet")}


def test_a_budget_that_ends_before_any_trial_finishes_records_nothing(
    ray_local: None, tmp_path: Path
) -> None:
    store, _ = make_store(tmp_path / "store")
    run = tmp_path / "run"
    config = TuneClassifiersConfig(
        store=store.uri,
        run=run,
        feature_sets=[FeatureSetConfig(extractor="voice_sim")],
        classifiers=["logreg"],
        param_grid={"logreg": {"C": [0.1, 1.0]}},
        time_budget_s=1,
    )
    with pytest.raises(SearchError, match="time_budget_s=1 ran out first or every trial failed"):
        run_tune_classifiers(config)
    assert list(_attempts(run)) == ["attempt-1"]  # the search ran, and was stopped
    assert _ledger(run) == {} and _trial_predictions(run) == set()
    assert not (run / "trials.parquet").exists() and not list(run.glob("trial_models/*"))


def test_rerun_fits_only_failed_or_stopped_trials_then_does_no_ray_work(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray
    from ray import tune

    store, _ = make_store(tmp_path / "store")
    # An infinite value in one train media's features (as a log energy of silence can be):
    # the fit on voice_sim raises (the imputer refuses infinity); words_sim is clean.
    features = [np.inf, 0.0, 0.0, 0.0, 0.0]
    store.write_result("voice_sim", "v1", "clip000", {"status": STATUS_OK, "features": features})
    run = tmp_path / "run"
    config = TuneClassifiersConfig(
        store=store.uri,
        run=run,
        feature_sets=[
            FeatureSetConfig(extractor="voice_sim"),
            FeatureSetConfig(extractor="words_sim"),
        ],
        classifiers=["logreg"],
        param_grid={"logreg": {"C": [1.0]}},
    )
    run_tune_classifiers(config)
    first = _ledger(run)
    (kept,) = first
    assert first[kept]["spec"]["feature_set"] == "words_sim"
    assert set(RunFolder(run).trials()["trial_id"]) == {kept} == _trial_predictions(run)
    (error,) = _experiment(run).glob("attempt-1/_trial*/error.txt")
    assert "voice_sim" in error.parent.name and "infinity" in error.read_text()

    # The cause gone (the media re-extracted), a run under a budget too short for any trial:
    # only the failed configuration goes to Tune, is stopped, and leaves nothing behind.
    store.write_result("voice_sim", "v1", "clip000", {"status": STATUS_OK, "features": [0.0] * 5})
    run_tune_classifiers(config.model_copy(update={"time_budget_s": 1}))
    assert _ledger(run) == first
    assert set(RunFolder(run).trials()["trial_id"]) == {kept} == _trial_predictions(run)
    stopped = _attempts(run)["attempt-2"]
    assert len(stopped) <= 1 and all("voice_sim" in name for name in stopped)

    # Without the budget the same command fits that configuration, and only it.
    run_tune_classifiers(config)
    second = _ledger(run)
    assert sorted(e["spec"]["feature_set"] for e in second.values()) == ["voice_sim", "words_sim"]
    assert all(entry["count"] == 1 for entry in second.values())
    assert second[kept]["metrics"]["started_at"] == first[kept]["metrics"]["started_at"]
    (fitted,) = _attempts(run)["attempt-3"]
    assert "voice_sim" in fitted
    trials = RunFolder(run).trials()
    assert sorted(trials["trial_id"]) == sorted(second) == sorted(_trial_predictions(run))

    # Finished: a re-run neither starts nor joins Ray (ray_session asks is_initialized
    # first), runs no task and builds no Tuner. Only raypipe's own calls are refused: Ray's
    # objects of the runs before may call it while they are collected.
    calls: list[str] = []

    def refuse(module: Any, name: str) -> None:
        real = getattr(module, name)

        def guarded(*args: Any, **kwargs: Any) -> Any:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.split(".")[0] == "raypipe":
                calls.append(f"{caller}: {module.__name__}.{name}")
                raise AssertionError(f"a finished search re-run called {calls[-1]}")
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, guarded)

    for name in ("init", "is_initialized", "remote", "put", "get"):
        refuse(ray, name)
    for name in ("Tuner", "with_parameters", "with_resources"):
        refuse(tune, name)
    best = run_tune_classifiers(config)
    monkeypatch.undo()
    assert calls == []
    assert len(best) == 2  # the best model of each (feature set, classifier) as before
    assert list(_attempts(run)) == ["attempt-1", "attempt-2", "attempt-3"]
    pd.testing.assert_frame_equal(RunFolder(run).trials(), trials)
    assert _ledger(run) == second
