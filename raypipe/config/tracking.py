"""Experiment tracking: the section tune-classifiers, fuse and train share."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from raypipe.config.base import StrictModel

#: Tracking backends a config may list.
TrackingBackend = Literal["mlflow", "tensorboard", "wandb"]


class TrackingConfig(StrictModel):
    """Where a search's trials and a training run's epochs are logged (none by default)."""

    backends: list[TrackingBackend] = []
    """Trackers to log to: mlflow (parameters and per-step metrics of every Tune trial or
    training run), tensorboard (event files in the run folder), wandb (Weights & Biases; needs
    the wandb package, which raypipe does not install, and a login). Empty: no tracking."""
    tracking_uri: str | None = None
    """MLflow tracking URI: a server ('http://host:5000') or a database
    ('sqlite:////abs/path/mlflow.db'); unset: a SQLite store in the run folder,
    <run>/mlflow/mlflow.db, with artifacts in <run>/mlflow/artifacts (a local run folder
    only)."""
    experiment: str | None = None
    """MLflow experiment and W&B project name; unset: raypipe-<command> (raypipe-train,
    raypipe-tune-classifiers, raypipe-fuse)."""

    @field_validator("backends")
    @classmethod
    def _once_each(cls, backends: list[str]) -> list[str]:
        return list(dict.fromkeys(backends))
