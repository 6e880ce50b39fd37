"""The same demo twice gives the same results: every search, split and tie-break is seeded
or ordered, so two runs into two folders report identical metrics and fusions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from raypipe.config import DemoConfig
from raypipe.pipeline.demo import run_demo
from raypipe.report.writer import metrics_table
from raypipe.store.run_folder import RunFolder

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _fusions(folder: RunFolder) -> dict[str, Any]:
    """Every fusion record without its timing (search seconds)."""
    records = {}
    for name in folder.fusions():
        record = dict(folder.fusion(name))
        record["search"] = {k: v for k, v in record.get("search", {}).items() if k != "seconds"}
        records[name] = record
    return records


def test_two_demo_runs_report_identical_metrics(ray_local: None, tmp_path: Path) -> None:
    runs = []
    for name in ("first", "second"):
        config = DemoConfig(
            out=tmp_path / name, clips_per_class=4, include_broken=False, fusion_samples=8
        )
        run, _ = run_demo(config)
        runs.append(RunFolder(run))
    first, second = (metrics_table(run) for run in runs)
    assert len(first) and first["model"].str.startswith("fused").any()
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    pd.testing.assert_frame_equal(
        runs[0].trials()[["trial_id", "val_macro_f1"]],
        runs[1].trials()[["trial_id", "val_macro_f1"]],
        check_exact=True,
    )
    assert _fusions(runs[0]) == _fusions(runs[1])
