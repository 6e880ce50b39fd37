"""Names, storage and selection of the fused models `raypipe fuse` writes, shared by the
classification path (:mod:`raypipe.pipeline.fuse`) and the multilabel/regression path
(:mod:`raypipe.pipeline.fuse_targets`).

A classification fusion is ``fused.<method>`` (e.g. ``fused.weighted``); a fusion of
multilabel or regression members is ``fused.<task>.<method>`` (e.g.
``fused.multilabel.weighted``, ``fused.regression.mean``), so fusions of different tasks in
one run never overwrite each other. Each task has its own selected fusion: storing the
fusions of one task unselects earlier fusions of that task only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)


def fusion_name(task: str, method: str) -> str:
    """Name of the fused model of ``method`` over members of ``task``: ``fused.<method>`` for
    classification, ``fused.<task>.<method>`` for multilabel and regression."""
    return f"fused.{method}" if task == "classification" else f"fused.{task}.{method}"


def fusion_task(record: dict[str, Any]) -> str:
    """Task of a fusion record (``task``; records without one are classification)."""
    return str(record.get("task") or "classification")


@dataclass
class FittedFusionModel:
    """One fitted fusion, ready to store.

    Attributes:
        record: the fusion record (``name``, ``method``, ``members``, ``scores`` by split
            with ``val_cv``, ...); ``selected`` and ``candidates`` are set when stored.
        fitted: the fitted fusion (what `raypipe predict` applies), stored as a skops file.
        predictions: keyword arguments of :meth:`RunFolder.write_predictions` (media_ids,
            splits, labels, probs and optionally targets, start_s) of the fused outputs.
    """

    record: dict[str, Any]
    fitted: Any
    predictions: dict[str, Any] = field(default_factory=dict)


def store_fusions(
    run: RunFolder, task: str, fits: list[FittedFusionModel], metric: str
) -> dict[str, Any]:
    """Write each fusion's predictions, fitted model and record into ``run``, mark the one with
    the best val CV ``metric`` selected (the first listed wins ties; an undefined score loses)
    and unselect earlier fusions of ``task`` that were not re-fitted (fusions of other tasks
    are left as they are). Returns the selected record with ``methods``: every record by
    method name."""
    if not fits:
        raise ValueError("store_fusions needs at least one fitted fusion")

    def cv_score(fit: FittedFusionModel) -> float:
        score = float(fit.record["scores"]["val_cv"].get(metric, float("nan")))
        return score if np.isfinite(score) else -np.inf

    selected = max(fits, key=cv_score)
    names = sorted(fit.record["method"] for fit in fits)
    for fit in fits:
        name = fit.record["name"]
        run.write_predictions(name, **fit.predictions)
        run.save_fused_model(name, fit.fitted)
        fit.record["selected"] = fit is selected
        fit.record["candidates"] = names
        run.write_fusion(name, fit.record)
    current = {fit.record["name"] for fit in fits}
    for name in run.fusions():
        old = run.fusion(name)
        if name not in current and old.get("selected") and fusion_task(old) == task:
            run.write_fusion(name, {**old, "selected": False})
            log.info("%s is no longer selected (the %s fusions were re-fitted)", name, task)
    return {**selected.record, "methods": {fit.record["method"]: fit.record for fit in fits}}


__all__ = ["FittedFusionModel", "fusion_name", "fusion_task", "store_fusions"]
