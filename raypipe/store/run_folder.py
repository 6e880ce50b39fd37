"""A run folder: trial results, fitted models, predictions per model and split, fusion, report.

```
RUN/
  run.json                   format, store URI, label space, what produced the run
  trials.parquet             every Ray Tune trial with its validation scores and spec (JSON)
  models/<model>.skops       model records: pipeline, spec, modality, task (+ pooler, thresholds)
  predictions/<model>.parquet  media_id, split, label (class index, -1 unlabelled), probs
                             (+ start_s, seconds, for frame/window-level models)
  trial_predictions/<trial>.parquet  the same for every finished search trial (trials.trial_id)
  trial_models/<trial>.skops the model record of the best trial so far of each model name
  fusion/<model>.json        fused models' method, members, weights, val / val CV / test scores
  fusion/<model>.skops       the fitted fusion, applied by `raypipe predict`
  fusion_trials.parquet      Ray Tune fusion trials (weights, val score) in trial order
  tune/                      Ray Tune's experiment folders (results, trial checkpoints, the
                             search ledger; Ray's pickled restore state is removed after each
                             search, as searches resume from the ledger)
  report/                    report.md, metrics.json, confusion-matrix PNGs
```

Multilabel and regression models (``task`` in their record and in trials.parquet) use the same
prediction columns: ``label`` is -1, ``probs`` holds per-label probabilities (multilabel, (L,))
or predicted values (regression, (K,)), and an extra column ``target`` holds the truth
((L,) 0/1 or (K,) values, NaN where missing). Classification files have no ``target`` column.

Fitted objects (model records, fitted fusions) are skops files of trusted types only
(:mod:`raypipe.store.artifacts`): reading a run never executes code from it. run.json carries
the folder layout's ``format`` (:data:`RUN_FORMAT`); a folder of another format (an older
raypipe's, whose models were pickles) is refused with the command that makes a new one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raypipe.errors import RaypipeError
from raypipe.store import artifacts

#: Layout version of run folders written by this raypipe (``format`` in run.json). 2: fitted
#: objects are skops files (format 1, unmarked, stored pickles).
RUN_FORMAT = 2

PREDICTION_SCHEMA = pa.schema(
    [
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("label", pa.int32()),
        pa.field("probs", pa.list_(pa.float32())),
    ]
)


TARGET_FIELD = pa.field("target", pa.list_(pa.float32()))


#: Ray Tune's restore state (pickled, whatever the suffix), removed after each search.
TUNE_RESTORE_STATE = (
    "*.pkl",
    "searcher-state*",
    "basic-variant-state-*.json",
    "experiment_state-*.json",
)
#: Names of models, fusions and trials as they become file names: no separators, no "..".
_SAFE_NAME = re.compile(r"^(?!\.)[A-Za-z0-9_.=+-]+$")


def _checked_name(name: str, what: str) -> str:
    """``name`` if it is a plain file name inside its folder; a run folder whose records name
    paths outside itself is refused."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise RaypipeError(
            f"{what} name {name!r} is not a plain name (letters, digits, '_.=+-'); the run "
            "folder's records were altered: re-run `raypipe tune-classifiers` into a new run."
        )
    return name


def prediction_table(
    media_ids: np.ndarray,
    splits: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    targets: np.ndarray | None = None,
    start_s: np.ndarray | None = None,
) -> pa.Table:
    """The Arrow table of one model's predictions (module docstring: columns and layouts).

    With ``start_s`` (N,) seconds the rows are frames or windows (several per media, each
    starting at ``start_s``); fusion smooths them into one row per media.
    """
    columns: dict[str, Any] = {
        "media_id": [str(m) for m in media_ids],
        "split": [str(s) for s in splits],
        "label": np.asarray(labels, dtype=np.int32),
        "probs": [row.astype(np.float32) for row in np.asarray(probs)],
    }
    schema = PREDICTION_SCHEMA
    if targets is not None:
        columns["target"] = [row.astype(np.float32) for row in np.asarray(targets)]
        schema = schema.append(TARGET_FIELD)
    if start_s is not None:
        columns["start_s"] = np.asarray(start_s, dtype=np.float64)
        schema = schema.append(pa.field("start_s", pa.float64()))
    return pa.Table.from_pydict(columns, schema=schema)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


@dataclass
class RunFolder:
    """Read and write one run folder."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    def create(self, meta: dict[str, Any]) -> None:
        """Create the folder and (re)write run.json, keeping keys already there (a folder of
        another format is refused, see :meth:`meta`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        current = self.meta() if (self.root / "run.json").exists() else {}
        if not current and any(self.root.glob("*/*.pkl")):
            raise self._format_error("pickle files but no run.json")
        current.update(meta)
        current["format"] = RUN_FORMAT
        _atomic_write(self.root / "run.json", json.dumps(current, indent=2, default=str).encode())

    def meta(self) -> dict[str, Any]:
        """Contents of run.json.

        Raises:
            RaypipeError: no run.json, or the folder is of another format (an older raypipe's,
                with pickled models, or a foreign one).
        """
        path = self.root / "run.json"
        if not path.exists():
            raise RaypipeError(
                f"'{self.root}' is not a raypipe run (no run.json); run "
                "`raypipe tune-classifiers --store STORE --run RUN` first."
            )
        try:
            meta = json.loads(path.read_text())
        except ValueError:
            raise self._format_error("run.json is not JSON") from None
        if not isinstance(meta, dict):
            raise self._format_error("run.json is not an object")
        found = meta.get("format")
        if found != RUN_FORMAT:
            what = "no format (an older raypipe's run)" if found is None else f"format {found!r}"
            raise self._format_error(what)
        return meta

    def _format_error(self, what: str) -> RaypipeError:
        return RaypipeError(
            f"Run folder '{self.root}' has {what}, not run format {RUN_FORMAT} (models are no "
            "longer read from pickles); re-run `raypipe tune-classifiers --store STORE --run NEW` "
            "(then `raypipe fuse --run NEW`) into a new folder."
        )

    @property
    def tune_dir(self) -> Path:
        """Where Ray Tune keeps its experiments for this run."""
        return self.root / "tune"

    def drop_tune_pickles(self) -> None:
        """Remove Ray Tune's own restore state under tune/, which is pickled whatever its file
        name says (``tuner.pkl``, trials' ``params.pkl``, ``searcher-state*``,
        ``basic-variant-state-*.json``, the cloudpickled parts of ``experiment_state-*.json``):
        raypipe resumes searches from its ledger, never from them, and a finished run folder
        holds no file whose reading executes code. Trial results (``result.json``,
        ``progress.csv``) and TensorBoard event files stay."""
        if not self.tune_dir.exists():
            return
        for pattern in TUNE_RESTORE_STATE:
            for path in self.tune_dir.rglob(pattern):
                path.unlink(missing_ok=True)

    @property
    def report_dir(self) -> Path:
        """Where reports are written."""
        return self.root / "report"

    def _write_frame(self, name: str, frame: pd.DataFrame) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
        _atomic_write(self.root / name, sink.getvalue().to_pybytes())

    def _read_frame(self, name: str) -> pd.DataFrame:
        path = self.root / name
        return pd.read_parquet(path) if path.exists() else pd.DataFrame()

    def write_trials(self, trials: pd.DataFrame) -> None:
        """Store the table of Tune trials."""
        self._write_frame("trials.parquet", trials)

    def trials(self) -> pd.DataFrame:
        """The table of Tune trials (empty if none)."""
        return self._read_frame("trials.parquet")

    def save_model(self, name: str, model: Any) -> None:
        """Store a fitted model record (a skops file, :mod:`raypipe.store.artifacts`)."""
        _atomic_write(self._model_path(name), artifacts.dumps(model))

    def load_model(self, name: str) -> Any:
        """Load a model record written by :meth:`save_model` (trusted types only; never a
        pickle).

        Raises:
            RaypipeError: the run is of another format, the model is missing, or its file
                holds types raypipe does not load.
        """
        self.meta()
        path = self._model_path(name)
        if not path.exists():
            raise RaypipeError(
                f"Run '{self.root}' has no model '{name}' ({path} is missing); re-run "
                f"`raypipe tune-classifiers --run {self.root}`."
            )
        return artifacts.load(path)

    def _model_path(self, name: str) -> Path:
        return self.root / "models" / f"{_checked_name(name, 'model')}{artifacts.SUFFIX}"

    def _trial_model_path(self, trial_id: str) -> Path:
        return self.root / "trial_models" / f"{_checked_name(trial_id, 'trial')}{artifacts.SUFFIX}"

    def write_predictions(
        self,
        model: str,
        media_ids: np.ndarray,
        splits: np.ndarray,
        labels: np.ndarray,
        probs: np.ndarray,
        targets: np.ndarray | None = None,
        start_s: np.ndarray | None = None,
    ) -> None:
        """Store class probabilities (N, C) of one model for every media it scored (for
        multilabel/regression models: outputs and ``targets``, see the module docstring; for
        frame/window-level models: ``start_s`` seconds per row)."""
        table = prediction_table(media_ids, splits, labels, probs, targets, start_s)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        _atomic_write(self.root / "predictions" / f"{model}.parquet", sink.getvalue().to_pybytes())

    def write_trial_predictions(self, trial_id: str, data: bytes) -> None:
        """Store one search trial's predictions (Parquet bytes of :func:`prediction_table`)."""
        _atomic_write(self.root / "trial_predictions" / f"{trial_id}.parquet", data)

    def write_trial_model(self, trial_id: str, data: bytes) -> None:
        """Store one search trial's model record (bytes of :func:`artifacts.dumps`; checked to
        load from trusted types only before it is kept)."""
        refused = artifacts.untrusted_types(data)
        if refused:
            raise RaypipeError(
                f"Trial {trial_id}'s model record holds untrusted type(s) {refused}; add them "
                "to raypipe.store.artifacts.TRUSTED_TYPES."
            )
        _atomic_write(self._trial_model_path(trial_id), data)

    def drop_trial_model(self, trial_id: str) -> None:
        """Remove a trial's model record (a better trial of the same model replaced it)."""
        self._trial_model_path(trial_id).unlink(missing_ok=True)

    def has_trial_model(self, trial_id: str) -> bool:
        """Whether a trial's model record is stored."""
        return self._trial_model_path(trial_id).exists()

    def promote_trial(self, trial_id: str, name: str) -> None:
        """Make a trial's stored model record and predictions those of model ``name``."""
        model = self._trial_model_path(trial_id).read_bytes()
        predictions = (self.root / "trial_predictions" / f"{trial_id}.parquet").read_bytes()
        _atomic_write(self._model_path(name), model)
        _atomic_write(self.root / "predictions" / f"{name}.parquet", predictions)

    def trial_predictions(self, trial_id: str) -> pd.DataFrame:
        """Predictions of one search trial (``trial_id`` as in trials.parquet)."""
        return pd.read_parquet(self.root / "trial_predictions" / f"{trial_id}.parquet")

    def models(self) -> list[str]:
        """Names of every model with stored predictions (fused ones included)."""
        folder = self.root / "predictions"
        return sorted(p.stem for p in folder.glob("*.parquet")) if folder.exists() else []

    def predictions(self, model: str) -> pd.DataFrame:
        """Stored predictions of one model."""
        path = self.root / "predictions" / f"{_checked_name(model, 'model')}.parquet"
        if not path.exists():
            known = ", ".join(self.models()) or "none"
            raise RaypipeError(
                f"Run '{self.root}' has no predictions for model '{model}' (known: {known})."
            )
        return pd.read_parquet(path)

    def write_fusion(self, name: str, payload: dict[str, Any]) -> None:
        """Store a fused model's description (members, weights, scores)."""
        _atomic_write(
            self.root / "fusion" / f"{name}.json",
            json.dumps(payload, indent=2, default=float).encode(),
        )

    def fusion(self, name: str) -> dict[str, Any]:
        """A fused model's description."""
        return json.loads(
            (self.root / "fusion" / f"{_checked_name(name, 'fusion')}.json").read_text()
        )

    def save_fused_model(self, name: str, fitted: Any) -> None:
        """Store a fitted fusion (what `raypipe predict` applies to new media) as a skops file."""
        _atomic_write(self.root / "fusion" / f"{name}{artifacts.SUFFIX}", artifacts.dumps(fitted))

    def load_fused_model(self, name: str) -> Any:
        """Load a fitted fusion written by :meth:`save_fused_model` (trusted types only)."""
        self.meta()
        path = self.root / "fusion" / f"{_checked_name(name, 'fusion')}{artifacts.SUFFIX}"
        if not path.exists():
            raise RaypipeError(
                f"Run '{self.root}' has no fitted fusion '{name}' ({path} is missing); run "
                f"`raypipe fuse --run {self.root}` first."
            )
        return artifacts.load(path)

    def fusions(self) -> list[str]:
        """Names of every fused model with a description."""
        folder = self.root / "fusion"
        return sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []

    def write_fusion_trials(self, trials: pd.DataFrame) -> None:
        """Store the table of Ray Tune fusion trials (one row per weight vector, in order)."""
        self._write_frame("fusion_trials.parquet", trials)

    def fusion_trials(self) -> pd.DataFrame:
        """The table of Ray Tune fusion trials (empty if none)."""
        return self._read_frame("fusion_trials.parquet")
