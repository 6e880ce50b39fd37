"""Ray Train runs of the frame-level recipes: a run named by a hash of what changes its
learning (so the same command resumes it), its epoch checkpoints under ``<run>/ray/<name>/``
(weights, optimizer, progress; torch state dicts read with ``weights_only=True``), a lost
worker replaced from the last checkpoint, and the best checkpoint's weights handed back.

Workers call :func:`resume_checkpoint` before their first epoch and :func:`report_epoch`
after each; the driver calls :func:`fit_run`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from raypipe.errors import SearchError
from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)

#: Files of one epoch checkpoint.
MODEL_FILE, OPTIMIZER_FILE, PROGRESS_FILE = "model.pt", "optimizer.pt", "progress.json"
#: Run-relative folder of finished training runs: ``<name>.json`` (the epochs asked for and
#: the history) and ``<name>.pt`` (the best checkpoint's weights), written when a run ends.
FINISHED_FOLDER = "trained"


def run_name(prefix: str, settings: dict[str, Any]) -> str:
    """``<prefix>-<8 hex digits>``: a hash of the JSON ``settings`` that change learning."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{prefix}-{digest}"


def absolute(path: str | None) -> str | None:
    """A local path made absolute (workers run elsewhere); URIs and None unchanged."""
    return path if path is None or "://" in path else str(Path(path).resolve())


def load_state(data: bytes) -> dict[str, Any]:
    """A torch state dict from bytes (``weights_only=True``: no code runs)."""
    return torch.load(io.BytesIO(data), weights_only=True)


def resume_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """On a Ray Train worker: load the run's last checkpoint into ``model`` and ``optimizer``
    if there is one; returns the progress (``epoch``: last finished epoch, ``history``)."""
    import ray.train

    progress: dict[str, Any] = {"epoch": 0, "history": []}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            model.load_state_dict(torch.load(Path(folder) / MODEL_FILE, weights_only=True))
            optimizer.load_state_dict(torch.load(Path(folder) / OPTIMIZER_FILE, weights_only=True))
            progress = json.loads((Path(folder) / PROGRESS_FILE).read_text())
    return progress


def report_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: dict[str, Any],
    metrics: dict[str, Any],
    rank: int,
) -> None:
    """On a Ray Train worker, after epoch ``metrics["epoch"]``: append the metrics to the
    progress and report them, with a checkpoint from rank 0 (must include ``val_score``)."""
    import ray.train

    progress["epoch"] = metrics["epoch"]
    progress["history"].append(metrics)
    with tempfile.TemporaryDirectory() as folder:
        saved = None
        if rank == 0:
            torch.save(model.state_dict(), Path(folder) / MODEL_FILE)
            torch.save(optimizer.state_dict(), Path(folder) / OPTIMIZER_FILE)
            (Path(folder) / PROGRESS_FILE).write_text(json.dumps(progress))
            saved = ray.train.Checkpoint.from_directory(folder)
        epoch = int(metrics["epoch"])
        ray.train.report(metrics, checkpoint=saved, checkpoint_dir_name=f"epoch_{epoch:04d}")


def fit_run(
    run: RunFolder,
    name: str,
    worker: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    *,
    num_workers: int,
    cpus_per_worker: float,
    use_gpu: bool,
    max_failures: int,
    epochs: int | None = None,
) -> tuple[bytes, list[dict[str, Any]]]:
    """Run (or resume) Ray Train run ``name`` of ``worker`` under ``<run>/ray/``; returns the
    best checkpoint's weights (highest ``val_score``) and the last checkpoint's history.

    With ``epochs`` (the number the run is asked to reach), a run that already ended for that
    number is not started again: its weights and history come from ``<run>/trained/``, so a
    re-run of a finished recipe does no Ray Train work; asked for more epochs, it resumes from
    its last checkpoint."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    record, weights_file = f"{FINISHED_FOLDER}/{name}.json", f"{FINISHED_FOLDER}/{name}.pt"
    if epochs is not None and run.has(record) and run.has(weights_file):
        finished = json.loads(run.read_bytes(record))
        if finished.get("epochs") == epochs:
            log.info("training run %s already ended at %d epoch(s); not run again", name, epochs)
            return run.read_bytes(weights_file), finished["history"]

    storage, filesystem = run.ray_storage("ray")
    resources = {"CPU": cpus_per_worker, **({"GPU": 1.0} if use_gpu else {})}
    trainer = TorchTrainer(
        worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="val_score", checkpoint_score_order="max"
            ),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None or not result.best_checkpoints:
        raise SearchError(
            f"Training run {name} reported no checkpoint (it failed before its first epoch "
            "ended; its error is printed above): fix its cause, then re-run the same command."
        )
    best = max(result.best_checkpoints, key=lambda pair: pair[1].get("val_score", -math.inf))[0]
    with best.as_directory() as folder:
        weights = (Path(folder) / MODEL_FILE).read_bytes()
    with result.checkpoint.as_directory() as folder:
        history = json.loads((Path(folder) / PROGRESS_FILE).read_text())["history"]
    if epochs is not None:
        run.files.write_bytes(weights_file, weights)
        run.files.write_bytes(record, json.dumps({"epochs": epochs, "history": history}).encode())
    return weights, history
