"""A run folder: trial results, fitted models, predictions per model and split, fusion, report.

```
RUN/
  run.json                   store URI, label space, what produced the run
  trials.parquet             every Ray Tune trial with its validation scores
  models/<model>.pkl         fitted scikit-learn pipelines
  predictions/<model>.parquet  media_id, split, label (class index, -1 unlabelled), probs
  fusion/<model>.json        fused models' members and weights
  tune/                      Ray Tune's own experiment folders (restorable)
  report/                    report.md, metrics.json, confusion-matrix PNGs
```
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raypipe.errors import RaypipeError

PREDICTION_SCHEMA = pa.schema(
    [
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("label", pa.int32()),
        pa.field("probs", pa.list_(pa.float32())),
    ]
)


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
        """Create the folder and (re)write run.json, keeping keys already there."""
        self.root.mkdir(parents=True, exist_ok=True)
        current = self.meta() if (self.root / "run.json").exists() else {}
        current.update(meta)
        _atomic_write(self.root / "run.json", json.dumps(current, indent=2, default=str).encode())

    def meta(self) -> dict[str, Any]:
        """Contents of run.json."""
        path = self.root / "run.json"
        if not path.exists():
            raise RaypipeError(
                f"'{self.root}' is not a raypipe run (no run.json); run "
                "`raypipe tune-classifiers --store STORE --run RUN` first."
            )
        return json.loads(path.read_text())

    @property
    def tune_dir(self) -> Path:
        """Where Ray Tune keeps its experiments for this run."""
        return self.root / "tune"

    @property
    def report_dir(self) -> Path:
        """Where reports are written."""
        return self.root / "report"

    def write_trials(self, trials: pd.DataFrame) -> None:
        """Store the table of Tune trials."""
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(trials, preserve_index=False), sink)
        _atomic_write(self.root / "trials.parquet", sink.getvalue().to_pybytes())

    def trials(self) -> pd.DataFrame:
        """The table of Tune trials (empty if none)."""
        path = self.root / "trials.parquet"
        return pd.read_parquet(path) if path.exists() else pd.DataFrame()

    def save_model(self, name: str, model: Any) -> None:
        """Pickle a fitted model."""
        _atomic_write(self.root / "models" / f"{name}.pkl", pickle.dumps(model))

    def load_model(self, name: str) -> Any:
        """Load a pickled model written by :meth:`save_model`."""
        return pickle.loads((self.root / "models" / f"{name}.pkl").read_bytes())

    def write_predictions(
        self,
        model: str,
        media_ids: np.ndarray,
        splits: np.ndarray,
        labels: np.ndarray,
        probs: np.ndarray,
    ) -> None:
        """Store class probabilities (N, C) of one model for every media it scored."""
        table = pa.Table.from_pydict(
            {
                "media_id": [str(m) for m in media_ids],
                "split": [str(s) for s in splits],
                "label": np.asarray(labels, dtype=np.int32),
                "probs": [row.astype(np.float32) for row in np.asarray(probs)],
            },
            schema=PREDICTION_SCHEMA,
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        _atomic_write(self.root / "predictions" / f"{model}.parquet", sink.getvalue().to_pybytes())

    def models(self) -> list[str]:
        """Names of every model with stored predictions (fused ones included)."""
        folder = self.root / "predictions"
        return sorted(p.stem for p in folder.glob("*.parquet")) if folder.exists() else []

    def predictions(self, model: str) -> pd.DataFrame:
        """Stored predictions of one model."""
        path = self.root / "predictions" / f"{model}.parquet"
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
        return json.loads((self.root / "fusion" / f"{name}.json").read_text())
