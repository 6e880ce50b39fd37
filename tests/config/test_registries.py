"""Config choices and registries agree: every registered classifier, pooling and fusion method
is a valid config value, anything else is an error naming the field, the value and the
registered names; the docs' tables list every registered name."""

from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.classify.classifiers import CLASSIFIERS, sequence_classifiers
from raypipe.classify.pooling import POOLINGS
from raypipe.config import FeatureSetConfig, FuseConfig, TuneClassifiersConfig
from raypipe.config.base import load_config
from raypipe.errors import ConfigError
from raypipe.fusion.methods import FUSION_METHODS
from raypipe.models.heads import SEQUENCE_HEADS
from raypipe.registry import Registry, UnknownNameError

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _sets(sequence: bool) -> list[FeatureSetConfig]:
    return [FeatureSetConfig(extractor="face", pooling=["seq" if sequence else "mean"])]


@pytest.mark.parametrize("name", CLASSIFIERS.names())
def test_every_registered_classifier_is_a_valid_choice(name: str) -> None:
    entry = CLASSIFIERS.get(name)
    config = TuneClassifiersConfig(feature_sets=_sets(entry.sequence), classifiers=[name])
    assert config.classifiers == [name]
    assert set(entry.grid) <= entry.params and all(entry.grid.values())


@pytest.mark.parametrize("name", POOLINGS.names())
def test_every_registered_pooling_is_a_valid_choice(name: str) -> None:
    assert FeatureSetConfig(extractor="face", pooling=[name]).pooling == [name]


@pytest.mark.parametrize("name", FUSION_METHODS.names())
def test_every_registered_fusion_method_is_a_valid_choice(name: str) -> None:
    groups = {"Negative": ["Angry", "Sad"]}
    assert FuseConfig(methods=[name], cascade={"groups": groups}).methods == [name]


@pytest.mark.parametrize(
    ("override", "field", "registry"),
    [
        ("classifiers=[logreg, svm]", "classifiers.1", CLASSIFIERS),
        (
            "feature_sets=[{extractor: face, pooling: [mean, median]}]",
            "feature_sets.0.pooling.1",
            POOLINGS,
        ),
        ("methods=[weighted, vote]", "methods.1", FUSION_METHODS),
    ],
)
def test_an_unregistered_name_names_field_value_and_allowed(
    override: str, field: str, registry: Registry
) -> None:
    model = FuseConfig if override.startswith("methods") else TuneClassifiersConfig
    with pytest.raises(ConfigError) as info:
        load_config(model, None, [override])
    message = str(info.value)
    bad = override.rstrip("]}").split(", ")[-1]
    assert f"field '{field}'" in message and f"'{bad}'" in message
    assert f"registry {registry.name}" in message
    assert "allowed: " + ", ".join(registry.names()) in message


def test_defaults_are_registered_and_sequence_lists_agree() -> None:
    tune, fuse = TuneClassifiersConfig(), FuseConfig()
    assert all(name in CLASSIFIERS for name in tune.classifiers)
    assert all(p in POOLINGS for f in tune.feature_sets for p in f.pooling)
    assert all(name in FUSION_METHODS for name in fuse.methods)
    # The sequence heads are listed once (SEQUENCE_HEADS); each is a sequence classifier.
    assert sequence_classifiers() == SEQUENCE_HEADS.names()
    assert [n for n, e in POOLINGS.items() if e.sequence] == ["seq"]


def test_deprecated_grid_fields_map_into_param_grid(caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(
        TuneClassifiersConfig, None, ["logreg_c=[0.5]", "lightgbm_n_estimators=50"]
    )
    assert config.param_grid == {"logreg": {"C": [0.5]}, "lightgbm": {"n_estimators": [50]}}
    assert "logreg_c is deprecated; set param_grid.logreg.C" in caplog.text
    # param_grid wins over an old field; an old field of a classifier not searched is dropped.
    config = TuneClassifiersConfig(
        classifiers=["logreg"],
        logreg_c=[0.5],
        lightgbm_num_leaves=[3],
        param_grid={"logreg": {"C": [2.0]}},
    )
    assert config.param_grid == {"logreg": {"C": [2.0]}}


def test_docs_tables_list_every_registered_name() -> None:
    classifiers = (DOCS / "classifiers.md").read_text()
    fusion = (DOCS / "fusion.md").read_text()
    for name in CLASSIFIERS:
        assert f"`{name}`" in classifiers, name
    for name in POOLINGS:
        assert f"`{name}`" in classifiers, name
    for name in FUSION_METHODS:
        assert f"`{name}`" in fusion, name


def test_registry_misses_and_duplicates() -> None:
    registry: Registry[int] = Registry("NUMBERS", "number")
    registry.register("one", 1)

    @registry.register("two")
    def two() -> int:
        return 2

    assert registry["one"] == 1 and registry.get("two") is two and list(registry) == ["one", "two"]
    with pytest.raises(
        UnknownNameError,
        match=r"unknown number 'three' \(registry NUMBERS\); "
        r"allowed: one, two",
    ):
        registry.get("three")
    with pytest.raises(KeyError):
        registry["three"]
    with pytest.raises(ValueError, match="already registered in NUMBERS"):
        registry.register("one", 11)
    registry.register("one", 11, replace=True)
    assert registry.unregister("one") == 11 and "one" not in registry
