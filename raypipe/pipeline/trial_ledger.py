"""The ledger of finished search trials: what makes a classifier search resumable.

The driver writes one small JSON file per finished trial (atomically, named by the trial's
spec key) as Ray Tune reports it complete, after copying the trial's predictions out of its
checkpoint into the run folder. A driver killed mid-search loses only the trials that were
running; a re-run of the same search reads the ledger and starts only the specs not in it
(failed trials are not recorded, so a re-run tries them again). Each entry's spec is a
:class:`~raypipe.classify.trial_spec.TrialSpec`, validated when the ledger is read.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ray.tune import Callback

from raypipe.classify.fit import model_name
from raypipe.classify.trial_spec import TrialSpec
from raypipe.errors import RaypipeError
from raypipe.store import artifacts
from raypipe.store.files import StoreFiles
from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.parquet"
#: A trial checkpoint's model record (a skops file, :mod:`raypipe.store.artifacts`).
MODEL_FILE = f"model{artifacts.SUFFIX}"


class TrialLedger:
    """A folder of ``<key>.json`` files: ``{"spec", "metrics", "count"}`` per finished trial
    spec (``count``: how often it finished; an Optuna search may propose a spec again). The
    folder is a path or a URI (a run on object storage keeps its ledger there)."""

    def __init__(self, folder: str | Path) -> None:
        self.files = StoreFiles(str(folder))

    def record(self, key: str, payload: dict[str, Any]) -> None:
        """Write one trial's entry (whole or not at all)."""
        self.files.write_bytes(f"{key}.json", json.dumps(payload, default=float).encode())

    def done(self) -> dict[str, dict[str, Any]]:
        """Every recorded trial by key (``spec`` validated, as a plain dict).

        Raises:
            RaypipeError: an entry is not JSON or its spec is not a valid trial spec.
        """
        entries = {}
        for info in self.files.listing("", recursive=False):
            if not info.base_name.endswith(".json"):
                continue
            try:
                entry = json.loads(self.files.read_bytes(info.base_name))
            except ValueError:
                entry = None
            if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), dict):
                raise RaypipeError(
                    f"{info.path} is not a trial ledger entry; delete it to run that trial again."
                )
            entry["spec"] = TrialSpec.parse(entry.get("spec"), info.path).to_dict()
            entries[info.base_name.removesuffix(".json")] = entry
        return entries


class LedgerCallback(Callback):
    """Records finished trials in a :class:`TrialLedger`, copies their predictions (the
    checkpoint's predictions.parquet) to ``RUN/trial_predictions/<key>.parquet`` and keeps the
    model record (model.skops) of the best trial so far of each model name (by ``metric``,
    higher is better; among equal scores the smallest trial id, as the search's final ranking
    does) in ``RUN/trial_models``, so the best models need no refit."""

    def __init__(self, ledger: TrialLedger, run: RunFolder, metric: str) -> None:
        self._ledger = ledger
        self._run = run
        self._metric = metric
        self._best: dict[str, tuple[float, str]] = {}
        self._counts = {key: int(e.get("count", 1)) for key, e in ledger.done().items()}
        for key, entry in ledger.done().items():
            if run.has_trial_model(key):
                score = float(entry["metrics"].get(metric, float("-inf")))
                self._best[model_name(entry["spec"])] = (score, key)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        packed = result.get("packed_json")
        key = result.get("trial_key")
        if (key is None and packed is None) or not result.get("checkpointed"):
            # Stopped (time budget) before its first report or between checkpoints: it counts
            # as not finished and a re-run trains it again.
            return
        if trial.checkpoint is None:
            return
        with trial.checkpoint.as_directory() as folder:
            if packed is None:
                self._record(result, Path(folder))
                return
            # A pack of configurations (one Tune trial): each is recorded as if it had been a
            # trial of its own, from its own folder of the checkpoint.
            for entry in json.loads(packed):
                self._record(entry, Path(folder) / entry["trial_key"])

    def _record(self, result: dict[str, Any], folder: Path) -> None:
        """Copy one configuration's predictions (and model record, when it is the best of
        its model name so far) out of ``folder`` and write its ledger entry."""
        key = result["trial_key"]
        spec = TrialSpec.parse(result["spec_json"], f"trial {key}").to_dict()
        name = model_name(spec)
        score = float(result.get(self._metric, float("-inf")))
        self._run.write_trial_predictions(key, (folder / PREDICTIONS_FILE).read_bytes())
        kept = self._best.get(name)
        # Equal scores: the smaller trial id wins, whichever trial finished first. A packed
        # configuration without a model record lost to one of its own pack.
        if (folder / MODEL_FILE).exists() and (kept is None or (score, kept[1]) > (kept[0], key)):
            self._run.write_trial_model(key, (folder / MODEL_FILE).read_bytes())
            if name in self._best and self._best[name][1] != key:
                self._run.drop_trial_model(self._best[name][1])
            self._best[name] = (score, key)
        metrics = {
            k: v
            for k, v in result.items()
            if k.startswith(("val_", "train_")) or k in ("started_at", "seconds", "epochs")
        }
        self._counts[key] = self._counts.get(key, 0) + 1
        self._ledger.record(key, {"spec": spec, "metrics": metrics, "count": self._counts[key]})

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        # A failed trial is not recorded, so a re-run tries it again (the fault may be gone).
        spec = trial.config.get("spec", trial.config)
        log.warning("trial %s failed; a re-run of the search tries it again", spec)
