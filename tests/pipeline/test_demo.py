"""The demo end to end on the shared Ray: generated data -> extract -> tune -> fuse -> report."""

from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.config import DemoConfig
from raypipe.pipeline.demo import run_demo
from raypipe.report.writer import metrics_table
from raypipe.store.run_folder import RunFolder

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_fusion_beats_each_modality_on_held_out_test(ray_local: None, tmp_path: Path) -> None:
    run, lines = run_demo(DemoConfig(out=tmp_path, clips_per_class=10, fusion_samples=16))
    folder = RunFolder(run)
    record = folder.fusion("fused.weighted")
    test = metrics_table(folder).query("split == 'test'").set_index("model")["macro_f1"]
    best_single = max(test[m] for m in record["members"])
    assert test["fused.weighted"] > best_single
    assert (run / "report" / "report.md").is_file()
    assert any(line.strip().startswith("fused") for line in lines)
