"""A run folder: trial results, fitted models, predictions per model and split, fusion, report.

A run lives on a local disk or on object storage (``s3://bucket/run``, any pyarrow filesystem);
both go through the same code, Ray Tune included (its experiments are written under ``tune/``
through the run's filesystem).

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
  mlflow/, tensorboard/      experiment tracking, when tracking.backends asks for it
                             (raypipe.pipeline.tracking)
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
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypipe.errors import RaypipeError
from raypipe.store import artifacts
from raypipe.store.files import StoreFiles

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


#: Where Ray Tune keeps the run's experiments (run-relative).
TUNE_FOLDER = "tune"
#: Where reports are written (run-relative).
REPORT_FOLDER = "report"

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


@dataclass
class RunFolder:
    """Read and write one run folder, on a local disk or object storage (``s3://...``).

    Every file goes through :class:`~raypipe.store.files.StoreFiles` (written whole or not at
    all), so a run on a bucket behaves as one on disk: ``root`` is the absolute path or the URI
    as given, :meth:`location` names a file in it the same way.
    """

    root: str

    def __post_init__(self) -> None:
        self.files = StoreFiles(str(self.root))
        self.remote = not self.files.local
        self.root = self.files.uri if self.remote else self.files.root

    def location(self, relative: str = "") -> str:
        """Path or URI (query kept) of a run-relative file or folder, for users and tools."""
        return self.files.location(relative)

    def exists(self) -> bool:
        """Whether the folder holds a run.json."""
        return self.files.exists("run.json")

    def create(self, meta: dict[str, Any]) -> None:
        """Create the folder and (re)write run.json, keeping keys already there (a folder of
        another format is refused, see :meth:`meta`)."""
        current = self.meta() if self.exists() else {}
        if not current and any(
            info.base_name.endswith(".pkl")
            for folder in ("models", "fusion", "trial_models")
            for info in self.files.listing(folder, recursive=False)
        ):
            raise self._format_error("pickle files but no run.json")
        current.update(meta)
        current["format"] = RUN_FORMAT
        self.files.write_bytes("run.json", json.dumps(current, indent=2, default=str).encode())

    def meta(self) -> dict[str, Any]:
        """Contents of run.json.

        Raises:
            RaypipeError: no run.json, or the folder is of another format (an older raypipe's,
                with pickled models, or a foreign one).
        """
        if not self.exists():
            raise RaypipeError(
                f"'{self.root}' is not a raypipe run (no run.json); run "
                "`raypipe tune-classifiers --store STORE --run RUN` first."
            )
        try:
            meta = json.loads(self.files.read_bytes("run.json"))
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

    def ray_storage(self, relative: str) -> tuple[str, pafs.FileSystem | None]:
        """``(storage_path, storage_filesystem)`` for a Ray Tune / Train ``RunConfig`` whose
        experiments live under a run-relative folder: on object storage, Ray writes results
        and checkpoints there through the run's own filesystem (endpoint and options of its
        URI), so every node of a cluster reads and resumes them."""
        return self.files.ray_storage(relative)

    def subfolders(self, relative: str) -> list[str]:
        """Names of the folders directly under a run-relative folder that hold files."""
        prefix = f"{self.files.path(relative)}/"
        names = {
            info.path[len(prefix) :].split("/", 1)[0]
            for info in self.files.listing(relative)
            if "/" in info.path[len(prefix) :]
        }
        return sorted(names)

    @contextmanager
    def local_file(self, relative: str) -> Iterator[Path]:
        """A local path for a run file that a library writes itself (Optuna's SQLite study):
        the file itself on a local run; on object storage, a scratch copy (fetched if the run
        holds one) that is written back when the block ends, even on an error."""
        if not self.remote:
            path = Path(self.files.path(relative))
            path.parent.mkdir(parents=True, exist_ok=True)
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="raypipe-run-") as scratch:
            path = Path(scratch) / Path(relative).name
            if self.files.exists(relative):
                path.write_bytes(self.files.read_bytes(relative))
            try:
                yield path
            finally:
                if path.exists():
                    self.files.write_bytes(relative, path.read_bytes())

    def drop_tune_pickles(self) -> None:
        """Remove Ray Tune's own restore state under tune/, which is pickled whatever its file
        name says (``tuner.pkl``, trials' ``params.pkl``, ``searcher-state*``,
        ``basic-variant-state-*.json``, the cloudpickled parts of ``experiment_state-*.json``):
        raypipe resumes searches from its ledger, never from them, and a finished run folder
        holds no file whose reading executes code. Trial checkpoints (model records and
        predictions, as skops and Parquet) stay."""
        self.files.delete_matching(TUNE_FOLDER, TUNE_RESTORE_STATE)

    def write_folder(self, relative: str, local: Path) -> None:
        """Copy every file of a local folder into a run-relative folder (each file whole)."""
        self.files.write_folder(relative, local)

    def read_bytes(self, relative: str) -> bytes:
        """The bytes of a run-relative file."""
        return self.files.read_bytes(relative)

    def has(self, relative: str) -> bool:
        """Whether a run-relative file exists."""
        return self.files.exists(relative)

    def _write_frame(self, name: str, frame: pd.DataFrame) -> None:
        self._write_table(name, pa.Table.from_pandas(frame, preserve_index=False))

    def _write_table(self, name: str, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.files.write_bytes(name, sink.getvalue().to_pybytes())

    def _read_frame(self, name: str) -> pd.DataFrame:
        if not self.files.exists(name):
            return pd.DataFrame()
        return self.files.read_parquet(name).to_pandas()

    def write_trials(self, trials: pd.DataFrame) -> None:
        """Store the table of Tune trials."""
        self._write_frame("trials.parquet", trials)

    def trials(self) -> pd.DataFrame:
        """The table of Tune trials (empty if none)."""
        return self._read_frame("trials.parquet")

    def save_model(self, name: str, model: Any) -> None:
        """Store a fitted model record (a skops file, :mod:`raypipe.store.artifacts`)."""
        self.files.write_bytes(self._model_path(name), artifacts.dumps(model))

    def load_model(self, name: str) -> Any:
        """Load a model record written by :meth:`save_model` (trusted types only; never a
        pickle).

        Raises:
            RaypipeError: the run is of another format, the model is missing, or its file
                holds types raypipe does not load.
        """
        self.meta()
        path = self._model_path(name)
        if not self.files.exists(path):
            raise RaypipeError(
                f"Run '{self.root}' has no model '{name}' ({self.location(path)} is missing); "
                f"re-run `raypipe tune-classifiers --run {self.root}`."
            )
        return artifacts.loads(self.files.read_bytes(path), self.location(path))

    def has_model(self, name: str) -> bool:
        """Whether a model record of that name is stored."""
        return self.files.exists(self._model_path(name))

    def _model_path(self, name: str) -> str:
        return f"models/{_checked_name(name, 'model')}{artifacts.SUFFIX}"

    def _trial_model_path(self, trial_id: str) -> str:
        return f"trial_models/{_checked_name(trial_id, 'trial')}{artifacts.SUFFIX}"

    def _trial_predictions_path(self, trial_id: str) -> str:
        return f"trial_predictions/{_checked_name(trial_id, 'trial')}.parquet"

    def _predictions_path(self, model: str) -> str:
        return f"predictions/{_checked_name(model, 'model')}.parquet"

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
        self._write_table(self._predictions_path(model), table)

    def write_trial_predictions(self, trial_id: str, data: bytes) -> None:
        """Store one search trial's predictions (Parquet bytes of :func:`prediction_table`)."""
        self.files.write_bytes(self._trial_predictions_path(trial_id), data)

    def write_trial_model(self, trial_id: str, data: bytes) -> None:
        """Store one search trial's model record (bytes of :func:`artifacts.dumps`; checked to
        load from trusted types only before it is kept)."""
        refused = artifacts.untrusted_types(data)
        if refused:
            raise RaypipeError(
                f"Trial {trial_id}'s model record holds untrusted type(s) {refused}; add them "
                "to raypipe.store.artifacts.TRUSTED_TYPES."
            )
        self.files.write_bytes(self._trial_model_path(trial_id), data)

    def drop_trial_model(self, trial_id: str) -> None:
        """Remove a trial's model record (a better trial of the same model replaced it)."""
        self.files.delete(self._trial_model_path(trial_id))

    def has_trial_model(self, trial_id: str) -> bool:
        """Whether a trial's model record is stored."""
        return self.files.exists(self._trial_model_path(trial_id))

    def promote_trial(self, trial_id: str, name: str) -> None:
        """Make a trial's stored model record and predictions those of model ``name``."""
        model = self.files.read_bytes(self._trial_model_path(trial_id))
        predictions = self.files.read_bytes(self._trial_predictions_path(trial_id))
        self.files.write_bytes(self._model_path(name), model)
        self.files.write_bytes(self._predictions_path(name), predictions)

    def trial_predictions(self, trial_id: str) -> pd.DataFrame:
        """Predictions of one search trial (``trial_id`` as in trials.parquet)."""
        return self.files.read_parquet(self._trial_predictions_path(trial_id)).to_pandas()

    def _names(self, folder: str, suffix: str) -> list[str]:
        return sorted(
            info.base_name[: -len(suffix)]
            for info in self.files.listing(folder, recursive=False)
            if info.base_name.endswith(suffix)
        )

    def models(self) -> list[str]:
        """Names of every model with stored predictions (fused ones included)."""
        return self._names("predictions", ".parquet")

    def predictions(self, model: str) -> pd.DataFrame:
        """Stored predictions of one model."""
        path = self._predictions_path(model)
        if not self.files.exists(path):
            known = ", ".join(self.models()) or "none"
            raise RaypipeError(
                f"Run '{self.root}' has no predictions for model '{model}' (known: {known})."
            )
        return self.files.read_parquet(path).to_pandas()

    def model_task(self, model: str, table: pd.DataFrame | None = None) -> str:
        """A model's task ('classification', 'multilabel' or 'regression'): classification
        when its predictions (``table``, else the stored ones) have no ``target`` column,
        else the ``task`` of its model record, else the run's (run.json)."""
        table = self.predictions(model) if table is None else table
        if "target" not in table.columns:
            return "classification"
        if self.has_model(model):
            record = self.load_model(model)
            if isinstance(record, dict) and record.get("task") in ("multilabel", "regression"):
                return str(record["task"])
        elif model in self.fusions() and self.fusion(model).get("task"):
            return str(self.fusion(model)["task"])
        task = self.meta().get("task")
        if task not in ("multilabel", "regression"):
            raise RaypipeError(
                f"Run '{self.root}': model '{model}' has targets but neither its model record "
                "nor run.json names its task; write 'task' (multilabel or regression) into "
                "the record."
            )
        return str(task)

    def write_fusion(self, name: str, payload: dict[str, Any]) -> None:
        """Store a fused model's description (members, weights, scores)."""
        self.files.write_bytes(
            f"fusion/{_checked_name(name, 'fusion')}.json",
            json.dumps(payload, indent=2, default=float).encode(),
        )

    def fusion(self, name: str) -> dict[str, Any]:
        """A fused model's description."""
        return json.loads(self.files.read_bytes(f"fusion/{_checked_name(name, 'fusion')}.json"))

    def save_fused_model(self, name: str, fitted: Any) -> None:
        """Store a fitted fusion (what `raypipe predict` applies to new media) as a skops file."""
        path = f"fusion/{_checked_name(name, 'fusion')}{artifacts.SUFFIX}"
        self.files.write_bytes(path, artifacts.dumps(fitted))

    def load_fused_model(self, name: str) -> Any:
        """Load a fitted fusion written by :meth:`save_fused_model` (trusted types only)."""
        self.meta()
        path = f"fusion/{_checked_name(name, 'fusion')}{artifacts.SUFFIX}"
        if not self.files.exists(path):
            raise RaypipeError(
                f"Run '{self.root}' has no fitted fusion '{name}' ({self.location(path)} is "
                f"missing); run `raypipe fuse --run {self.root}` first."
            )
        return artifacts.loads(self.files.read_bytes(path), self.location(path))

    def fusions(self) -> list[str]:
        """Names of every fused model with a description."""
        return self._names("fusion", ".json")

    def write_fusion_trials(self, trials: pd.DataFrame) -> None:
        """Store the table of Ray Tune fusion trials (one row per weight vector, in order)."""
        self._write_frame("fusion_trials.parquet", trials)

    def fusion_trials(self) -> pd.DataFrame:
        """The table of Ray Tune fusion trials (empty if none)."""
        return self._read_frame("fusion_trials.parquet")
