"""A search that fits only scikit-learn models does not import torch: its trial processes
import raypipe.pipeline.tune_classifiers, and torch's import costs about 2 s each (issue 15's
start-up cut). The sequence heads stay listed as classifiers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
import raypipe.pipeline.tune_classifiers
from raypipe.classify.classifiers import CLASSIFIERS, build_classifier
build_classifier("lightgbm", {}, seed=0)
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))[:5]
assert {"mlp", "lstm", "gru", "attention", "netvlad"} <= set(CLASSIFIERS.names())
build_classifier("gru", {}, seed=0)
from raypipe.classify.neural_heads import NeuralHeadEstimator
print("ok")
"""


def test_the_search_module_and_sklearn_classifiers_do_not_import_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
