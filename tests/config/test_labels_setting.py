"""The ``labels`` setting of extract and tune-classifiers: a registered label space, emotiw7
by default, and no part of any extractor's version."""

from __future__ import annotations

import pytest

from raypipe.config import ExtractConfig, TuneClassifiersConfig
from raypipe.config.base import load_config
from raypipe.errors import ConfigError
from raypipe.pipeline.extract import extractor_specs


@pytest.mark.parametrize("model", [ExtractConfig, TuneClassifiersConfig])
def test_labels_default_and_checked_against_the_registry(model: type) -> None:
    assert model().labels == "emotiw7"
    assert load_config(model, None, ["labels=abaw_expr"]).labels == "abaw_expr"
    with pytest.raises(ConfigError, match="unknown label space 'affectnet'"):
        load_config(model, None, ["labels=affectnet"])


def test_labels_leave_the_extractors_settings_unchanged() -> None:
    assert extractor_specs(ExtractConfig(labels="abaw_expr")) == extractor_specs(ExtractConfig())
