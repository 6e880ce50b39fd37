"""Frame-level models of a run smoothed over time into ``fused.smooth.<model>`` (the window
chosen on val by :func:`raypipe.fusion.frame_smoothing.choose_window`): what ``raypipe
report`` scores and ``raypipe predict --format abaw-*`` applies to the model's outputs."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from raypipe.fusion.frame_smoothing import SMOOTHING_WINDOWS_S, choose_window, smooth_frames
from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)


def smooth_frame_models(
    run: RunFolder,
    models: list[str] | None = None,
    windows: tuple[float, ...] = SMOOTHING_WINDOWS_S,
) -> dict[str, dict[str, Any]]:
    """Write a temporally smoothed copy of each frame-level model of ``run`` as
    ``fused.smooth.<model>``: every row's outputs averaged over the centred window (seconds)
    with the best val score of the model's task (:func:`choose_window`; multilabel thresholds
    chosen again on val). ``models`` default: every model with frame rows (``start_s``) not fused.

    Returns the smoothed models' records by name (member, task, window_s, val_scores...).
    """
    written: dict[str, dict[str, Any]] = {}
    for model in models if models is not None else run.models():
        table = run.predictions(model)
        if model.startswith("fused") or "start_s" not in table.columns:
            continue
        task = run.model_task(model, table)
        member = run.load_model(model) if run.has_model(model) else {}
        member = member if isinstance(member, dict) else {}
        # Unlabelled val frames stay: they are neighbours in time of labelled ones.
        val = table[table["split"] == "val"]
        window, scores, limits = choose_window(task, val, windows)
        thresholds = limits.tolist() if limits is not None else None
        out = smooth_frames(table, window)
        name = f"fused.smooth.{model}"
        record = {
            "method": "smooth",
            "member": model,
            "task": task,
            "window_s": window,
            "val_scores": {f"{w:g}": s for w, s in scores.items()},
            "recipe": member.get("recipe"),
            "modality": member.get("modality", "visual"),
            "targets": member.get("targets"),
            "thresholds": thresholds,
        }
        record = {k: v for k, v in record.items() if v is not None}
        run.save_model(name, record)
        run.write_predictions(
            name,
            out["media_id"].to_numpy(),
            out["split"].to_numpy(),
            out["label"].to_numpy(),
            np.stack(out["probs"].to_numpy()),
            targets=np.stack(out["target"].to_numpy()) if "target" in out.columns else None,
            start_s=out["start_s"].to_numpy(),
        )
        log.info("%s: window %g s chosen on val (val scores %s)", name, window, scores)
        written[name] = record
    return written
