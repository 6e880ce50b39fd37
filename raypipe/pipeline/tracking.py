"""Experiment tracking of searches and training runs: MLflow, TensorBoard and, where the wandb
package is installed, Weights & Biases (``tracking.backends`` of the command's config).

- Ray Tune searches (tune-classifiers, fuse's weight search, train's hyperparameter search) log
  through Tune callbacks on the driver (:func:`tune_callbacks`): one MLflow run per trial with
  the trial's config as parameters and every reported result as metrics (step: the trial's
  report count, an epoch for torch heads and training runs); TensorBoard event files beside
  each trial's results in the run folder's ``tune/`` tree.
- A plain `raypipe train` (no search) logs each epoch as Ray Train reports it
  (:class:`TrainTracking`): the driver opens one MLflow run per training run (a re-run that
  resumes the training resumes the MLflow run), a callback on Ray Train's controller, which
  runs on the driver's node, logs the epochs, and the driver closes the run with its status.

By default MLflow writes a SQLite store in the run folder (``<run>/mlflow/mlflow.db``, read
with ``mlflow.MlflowClient("sqlite:///<run>/mlflow/mlflow.db")`` or ``mlflow ui
--backend-store-uri ...``); ``tracking.tracking_uri`` names a server or another store instead.
A training run on object storage (``--run s3://...``) keeps these files in a local scratch copy
while it runs (:func:`local_tracking`), written to the run when the command ends.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from hashlib import sha256
from pathlib import Path
from types import TracebackType
from typing import Any

from ray.train import UserCallback

from raypipe.config import TrackingConfig
from raypipe.errors import ConfigError
from raypipe.store.files import StoreFiles

log = logging.getLogger(__name__)

#: The folder of the default MLflow store and its artifacts, in the run folder.
MLFLOW_FOLDER = "mlflow"
#: The folder of a plain training run's TensorBoard event files, in the run folder.
TENSORBOARD_FOLDER = "tensorboard"
#: MLflow's longest parameter value, characters.
_PARAM_CHARS = 6000


def experiment_name(tracking: TrackingConfig, command: str) -> str:
    """The MLflow experiment (and W&B project): ``tracking.experiment``, else raypipe-<command>."""
    return tracking.experiment or f"raypipe-{command}"


def _local_run(run: str | Path, backend: str, fix: str) -> Path:
    """The run folder as a local path; a URI fails in one sentence ending with ``fix``."""
    text = str(run)
    if "://" in text:
        raise ConfigError(
            f"tracking.backends lists {backend}, which writes into the run folder, but the run "
            f"folder '{text}' is not a local path; {fix}."
        )
    return Path(text).resolve()


def mlflow_location(tracking: TrackingConfig, run: str | Path) -> tuple[str, str | None]:
    """``(tracking_uri, artifact_location)``: ``tracking.tracking_uri`` (the server chooses
    where artifacts go), else a SQLite store and an artifact folder in the run folder."""
    if tracking.tracking_uri:
        return tracking.tracking_uri, None
    fix = "set tracking.tracking_uri (an MLflow server, or sqlite:////abs/path/mlflow.db)"
    folder = _local_run(run, "mlflow", fix) / MLFLOW_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


@contextmanager
def local_tracking(run: str | Path) -> Iterator[Path]:
    """A local folder for the tracking files of a training run (MLflow's SQLite store,
    TensorBoard event files): the run folder itself, or for a run on object storage a scratch
    copy holding the run's ``mlflow/`` and ``tensorboard/`` files (so a re-run resumes its
    MLflow run), written back to the run when the block ends, even on an error."""
    files = StoreFiles(str(run))
    if files.local:
        yield Path(files.root)
        return
    folders = (MLFLOW_FOLDER, TENSORBOARD_FOLDER)
    with tempfile.TemporaryDirectory(prefix="raypipe-tracking-") as scratch:
        for folder in folders:
            files.read_folder(folder, Path(scratch) / folder)
        try:
            yield Path(scratch)
        finally:
            for folder in folders:
                if (Path(scratch) / folder).is_dir():
                    files.write_folder(folder, Path(scratch) / folder)


def mlflow_experiment(client: Any, name: str, artifact_location: str | None) -> str:
    """The id of MLflow experiment ``name`` in ``client``'s store, created if absent."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location))
    except MlflowException:  # created meanwhile by another process
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def require_wandb() -> None:
    """Fail in one sentence when wandb is listed but not installed (raypipe does not need it)."""
    if importlib.util.find_spec("wandb") is None:
        raise ConfigError(
            "tracking.backends lists wandb, but the wandb package is not installed; install it "
            "(pip install wandb, then wandb login) or remove wandb from tracking.backends."
        )


def tune_callbacks(
    tracking: TrackingConfig, run: str | Path, command: str, folder: str | Path | None = None
) -> list[Any]:
    """Ray Tune callbacks that log every trial of a search to ``tracking.backends`` (for
    ``tune.RunConfig(callbacks=...)``); empty when tracking is off. Tune runs them on the
    driver. ``run`` is the run folder (a path or URI), ``command`` the raypipe command,
    ``folder`` where MLflow's default store goes (:func:`local_tracking`; default: ``run``)."""
    callbacks: list[Any] = []
    backends = tracking.backends
    if "wandb" in backends:
        require_wandb()
    if "mlflow" in backends:
        from mlflow import MlflowClient
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri, artifacts = mlflow_location(tracking, folder or run)
        name = experiment_name(tracking, command)
        # Created here so that its artifacts go to the run folder, not to ./mlruns.
        mlflow_experiment(MlflowClient(uri), name, artifacts)
        tags = {"raypipe_command": command, "raypipe_run": str(run)}
        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=name, tags=tags))
        log.info("tracking: MLflow experiment '%s' at %s", name, uri)
    if "tensorboard" in backends:
        from ray.tune.logger import TBXLoggerCallback

        callbacks.append(TBXLoggerCallback())
        log.info("tracking: TensorBoard event files beside each trial under %s", run)
    if "wandb" in backends:
        from ray.air.integrations.wandb import WandbLoggerCallback

        callbacks.append(
            WandbLoggerCallback(project=experiment_name(tracking, command), group=command)
        )
    return callbacks


def flat_params(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow parameters: dotted keys, values as text."""
    params: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            params.update(flat_params(value, f"{name}."))
        else:
            params[name] = str(value)[:_PARAM_CHARS]
    return params


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers among reported metrics (flags and text left out)."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


class TrainRunLogger(UserCallback):
    """Logs a Ray Train run's reports (rank 0's metrics, step: their ``epoch``) to an open
    MLflow run, TensorBoard event files and W&B. Ray Train calls it on its controller, which
    runs on the driver's node, so a store in the run folder is written where the driver
    reads it."""

    def __init__(
        self,
        mlflow_uri: str | None = None,
        mlflow_run_id: str | None = None,
        tensorboard_dir: str | None = None,
        wandb_init: dict[str, Any] | None = None,
        last_epoch: int = 0,
    ) -> None:
        self.mlflow_uri = mlflow_uri
        self.mlflow_run_id = mlflow_run_id
        self.tensorboard_dir = tensorboard_dir
        self.wandb_init = wandb_init
        self.last_epoch = last_epoch
        self._client: Any = None
        self._writer: Any = None
        self._wandb: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # Clients and writers are opened where the callback runs, never pickled.
        return {**self.__dict__, "_client": None, "_writer": None, "_wandb": None}

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
    ) -> None:
        """Log rank 0's metrics of one report."""
        if not metrics:
            return
        values = numeric_metrics(metrics[0])
        step = int(values.get("epoch", 0))
        if self.mlflow_run_id:
            from mlflow import MlflowClient
            from mlflow.entities import Metric

            if self._client is None:
                self._client = MlflowClient(self.mlflow_uri)
            now = int(time.time() * 1000)
            self._client.log_batch(
                self.mlflow_run_id,
                metrics=[Metric(key, value, now, step) for key, value in values.items()],
            )
        if self.tensorboard_dir:
            from tensorboardX import SummaryWriter

            if self._writer is None:
                self._writer = SummaryWriter(self.tensorboard_dir)
            for key, value in values.items():
                self._writer.add_scalar(key, value, step)
            self._writer.flush()
        if self.wandb_init is not None:
            import wandb

            if self._wandb is None:
                self._wandb = wandb.init(**self.wandb_init)
            self._wandb.log(values, step=step)
            if step >= self.last_epoch:
                self._wandb.finish()
                self._wandb = None

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        """Flush what was logged (Ray Train may restart the workers from a checkpoint)."""
        if self._writer is not None:
            self._writer.flush()


class TrainTracking:
    """Tracking of one plain Ray Train run, as a context manager around ``trainer.fit()``:
    entering opens (or, for a resumed training, reopens) the MLflow run and returns the Ray
    Train callbacks to pass to ``RunConfig(callbacks=...)``; leaving closes the MLflow run as
    FINISHED, or FAILED when the block raised.

    ``run`` is the training run folder (a path or URI), ``name`` the Ray Train run's name (one
    MLflow run per name and run folder), ``params`` the config logged as parameters,
    ``last_epoch`` the configured number of epochs, ``folder`` the local folder the tracking
    files go to (:func:`local_tracking`; default: ``run``)."""

    def __init__(
        self,
        tracking: TrackingConfig,
        run: str | Path,
        name: str,
        params: dict[str, Any],
        last_epoch: int,
        folder: str | Path | None = None,
    ) -> None:
        self.tracking = tracking
        self.run = run
        self.folder = folder or run
        self.name = name
        self.params = params
        self.last_epoch = last_epoch
        self.mlflow_uri: str | None = None
        self.mlflow_run_id: str | None = None

    def __enter__(self) -> list[Any]:
        backends = self.tracking.backends
        if not backends:
            return []
        if "wandb" in backends:
            require_wandb()
        tensorboard = None
        if "tensorboard" in backends:
            fix = "use a local run folder or remove tensorboard from tracking.backends"
            folder = _local_run(self.folder, "tensorboard", fix) / TENSORBOARD_FOLDER / self.name
            tensorboard = str(folder)
            log.info("tracking: TensorBoard event files in %s", folder)
        if "mlflow" in backends:
            self._open_mlflow_run()
        wandb_init = None
        if "wandb" in backends:
            wandb_init = {
                "project": experiment_name(self.tracking, "train"),
                "name": self.name,
                # One W&B run per training run and run folder, resumed by a re-run.
                "id": f"{self.name}-{sha256(str(self.run).encode()).hexdigest()[:8]}",
                "resume": "allow",
                "config": self.params,
            }
        return [
            TrainRunLogger(
                self.mlflow_uri, self.mlflow_run_id, tensorboard, wandb_init, self.last_epoch
            )
        ]

    def _open_mlflow_run(self) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        uri, artifacts = mlflow_location(self.tracking, self.folder)
        client = MlflowClient(uri)
        name = experiment_name(self.tracking, "train")
        experiment = mlflow_experiment(client, name, artifacts)
        where = str(self.run)
        earlier = [
            found
            for found in client.search_runs(
                [experiment], filter_string=f"tags.raypipe_train_run = '{self.name}'"
            )
            if found.data.tags.get("raypipe_run") == where
        ]
        if earlier:
            run_id = earlier[0].info.run_id
            client.update_run(run_id, status="RUNNING")
            log.info("tracking: resuming MLflow run %s of experiment '%s'", run_id, name)
        else:
            tags = {
                "raypipe_command": "train",
                "raypipe_run": where,
                "raypipe_train_run": self.name,
            }
            run_id = client.create_run(experiment, run_name=self.name, tags=tags).info.run_id
            params = [Param(k, v) for k, v in flat_params(self.params).items()]
            for start in range(0, len(params), 100):  # MLflow takes 100 parameters per batch
                client.log_batch(run_id, params=params[start : start + 100])
            log.info("tracking: MLflow run %s of experiment '%s' at %s", run_id, name, uri)
        self.mlflow_uri, self.mlflow_run_id = uri, run_id

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.mlflow_run_id is None:
            return
        from mlflow import MlflowClient

        status = "FINISHED" if error is None else "FAILED"
        MlflowClient(self.mlflow_uri).set_terminated(self.mlflow_run_id, status=status)


__all__ = [
    "TrainRunLogger",
    "TrainTracking",
    "experiment_name",
    "local_tracking",
    "mlflow_location",
    "tune_callbacks",
]
