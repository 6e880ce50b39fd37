"""The search space and the config checks that run before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.classify.search_space import spec_key, trial_specs
from raypipe.config import FeatureSetConfig, TuneClassifiersConfig
from raypipe.config.base import load_config
from raypipe.errors import ConfigError

SETS = ["face.mean", "face.fisher", "face.seq", "voice"]


def _config(**fields: object) -> TuneClassifiersConfig:
    base = {
        "feature_sets": [
            FeatureSetConfig(extractor="face", pooling=["mean", "fisher", "seq"]),
            FeatureSetConfig(extractor="voice"),
        ],
        "classifiers": ["logreg", "rf", "mlp", "gru"],
        "logreg_c": [0.1, 1.0],
    }
    return TuneClassifiersConfig(**{**base, **fields})


def test_grid_pairs_sequence_heads_with_sequences_only() -> None:
    specs = trial_specs(_config(), SETS)
    by_set = {s: sorted({x["classifier"] for x in specs if x["feature_set"] == s}) for s in SETS}
    assert by_set == {
        "face.mean": ["logreg", "mlp", "rf"],
        "face.fisher": ["logreg", "mlp", "rf"],
        "face.seq": ["gru"],
        "voice": ["logreg", "mlp", "rf"],
    }
    # logreg 2 C values, rf 2 depths x 2 leaf sizes, mlp 2 widths x 2 rates, gru 2 widths.
    assert len(specs) == 3 * (2 + 4 + 4) + 2
    gru = next(s for s in specs if s["classifier"] == "gru")
    assert gru["params"]["steps"] == 8 and gru["params"]["epochs"] == 30
    rf = [s["params"] for s in specs if s["classifier"] == "rf" and s["feature_set"] == "voice"]
    assert {(p["max_depth"], p["min_samples_leaf"]) for p in rf} == {
        (None, 1),
        (None, 3),
        (8, 1),
        (8, 3),
    }
    assert len({spec_key(s) for s in specs}) == len(specs)


def test_random_search_draws_the_budget_reproducibly() -> None:
    config = _config(search="random", num_samples=7, seed=3)
    first, again = trial_specs(config, SETS), trial_specs(config, SETS)
    assert len(first) == 7 and first == again
    assert first != trial_specs(_config(search="random", num_samples=7, seed=4), SETS)


def test_param_grid_replaces_builtin_values_and_rejects_unknown_names() -> None:
    specs = trial_specs(_config(param_grid={"rf": {"max_depth": [3]}}), ["voice"])
    assert {s["params"]["max_depth"] for s in specs if s["classifier"] == "rf"} == {3}
    with pytest.raises(ConfigError, match=r"param_grid.rf has unknown parameter\(s\) depth"):
        trial_specs(_config(param_grid={"rf": {"depth": [3]}}), ["voice"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("classifiers=[gru]", "read window sequences; add 'seq'"),
        ("metric=ccc", "metric 'ccc' does not fit task classification"),
        ("task=regression", "task regression needs targets"),
        ("classifiers=[svm]", "classifiers.0"),
        ("cpus_per_trial=0", "cpus_per_trial"),
        ("param_grid={mlp: {hidden: [8]}}", "param_grid names mlp, not in classifiers"),
    ],
)
def test_bad_values_fail_before_work_with_one_sentence(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(TuneClassifiersConfig, None, [override], {})


def test_multilabel_and_regression_take_their_own_default_metric(tmp_path: Path) -> None:
    targets = tmp_path / "t.csv"
    cfg = TuneClassifiersConfig(task="regression", targets=targets, target_columns=["valence"])
    assert cfg.metric == "ccc"
    cfg = TuneClassifiersConfig(task="multilabel", targets=targets, target_columns=["au1"])
    assert cfg.metric == "mean_f1"


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parents[2] / "jobs/configs/examples").glob("tune_*.yaml")),
    ids=lambda p: p.name,
)
def test_example_configs_validate_and_start_with_their_command(path: Path) -> None:
    config = load_config(TuneClassifiersConfig, path)
    assert "python jobs/tune_classifiers.py" in path.read_text().splitlines()[1]
    sets = [
        f"{f.extractor}.{p}" if f.extractor == "face_expression" else f.extractor
        for f in config.feature_sets
        for p in (f.pooling if f.extractor == "face_expression" else [None])
    ]
    specs = trial_specs(config, sets)
    assert specs and len({spec_key(s) for s in specs}) == len(specs)  # no configuration twice
    assert {s["feature_set"] for s in specs} <= set(sets)
    assert {s["classifier"] for s in specs} <= set(config.classifiers)
    if config.search == "random":
        assert len(specs) <= config.num_samples
