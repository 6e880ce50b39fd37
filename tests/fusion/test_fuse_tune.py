"""Ray Tune's fusion trials on the shared local Ray: their candidates join the weighted search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raypipe.config import FuseConfig
from raypipe.pipeline.fuse import run_fuse
from raypipe.report.writer import write_report
from tests.fusion.synthetic import complementary, write_run

pytestmark = pytest.mark.integration


def test_tune_trials_are_stored_and_used(ray_local: None, tmp_path: Path) -> None:
    probs, labels = complementary(n=84, seed=7, noise=0.3)
    run = write_run(tmp_path / "run", {"face": probs[0], "voice": probs[1]}, labels)
    config = FuseConfig(run=run.root, methods=["weighted"], num_samples=6, random_candidates=0)
    record = run_fuse(config)
    trials = run.fusion_trials()
    assert len(trials) == 6 and {"w0", "w1", "rule", "val_macro_f1", "trial"} <= set(trials)
    assert record["search"]["trials"] == 6
    # Ray Tune's best trial is among the candidates, so the fit is at least as good on val.
    assert record["scores"]["val"]["macro_f1"] >= trials["val_macro_f1"].max() - 1e-9
    assert np.isclose(sum(record["weights"].values()), 1.0, atol=1e-3)
    text = Path(write_report(run)).read_text()
    assert "search_fusion.png" in text
    assert (Path(run.root) / "report" / "search_fusion.png").is_file()
