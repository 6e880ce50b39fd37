"""Every worked example of docs/extending.md, run as written: each code block marked
``<!-- example: NAME -->`` is executed as a module (which registers its entry), then used on
synthetic data and its output checked. The entries are unregistered afterwards."""

from __future__ import annotations

import re
import sys
import types
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from raypipe.classify.classifiers import CLASSIFIERS
from raypipe.classify.feature_matrix import load_feature_matrix
from raypipe.classify.fit import fit_and_score, outputs
from raypipe.classify.pooling import POOLINGS, make_pooler
from raypipe.classify.search_space import trial_specs
from raypipe.config import FeatureSetConfig, FuseConfig, TuneClassifiersConfig
from raypipe.config.base import load_config
from raypipe.errors import ConfigError
from raypipe.extractors.registry import EXTRACTORS, ExtractorEntry, build_extractor
from raypipe.fusion.methods import FUSION_METHODS
from raypipe.labels import label_space
from raypipe.media.context import MediaContext
from raypipe.pipeline.fuse import run_fuse
from tests.classify.synthetic import make_store, synthetic_matrix
from tests.fusion.synthetic import write_run

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
EXAMPLE = re.compile(r"<!-- example: (\w+) -->\n```python\n(.*?)```", re.S)


def _examples() -> dict[str, str]:
    return dict(EXAMPLE.findall(DOC.read_text()))


def test_the_page_has_the_four_examples() -> None:
    assert set(_examples()) == {"extractor", "pooling", "classifier", "fusion"}


@pytest.fixture
def example() -> Iterator:
    """Run an example block as module ``extending_<name>``; undo its registration after."""
    loaded: list[tuple[str, object, str]] = []

    def load(name: str, registry: object, entry: str) -> types.ModuleType:
        module = types.ModuleType(f"extending_{name}")
        sys.modules[module.__name__] = module
        exec(compile(_examples()[name], f"{DOC}:{name}", "exec"), module.__dict__)
        loaded.append((module.__name__, registry, entry))
        return module

    yield load
    for module_name, registry, entry in loaded:
        sys.modules.pop(module_name, None)
        if entry in registry:
            registry.unregister(entry)


def _tone(path: Path, seconds: float = 1.0, hz: float = 440.0, amplitude: float = 0.5) -> Path:
    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    samples = (amplitude * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def test_extractor_example(example, tmp_path: Path) -> None:
    module = example("extractor", EXTRACTORS, "audio_rms")
    EXTRACTORS.register(
        "audio_rms",
        ExtractorEntry(module.__name__, "AudioRmsExtractor", "RMS statistics per media"),
    )
    extractor = build_extractor("audio_rms", {"frame_s": 0.02})
    assert extractor.config.frame_s == 0.02 and extractor.dim == 4
    assert extractor.version != build_extractor("audio_rms").version  # config is versioned
    result = extractor.extract(MediaContext("tone", _tone(tmp_path / "tone.wav")))
    mean, std, peak, crossings = result.media_row["features"]
    # A sine of amplitude 0.5: RMS 0.5 / sqrt(2) in every 20 ms frame (whole periods of 440 Hz
    # are not, so a little spread); 2 x 440 zero crossings per second of 16000 samples.
    assert mean == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    assert std < 0.01 and peak >= mean
    assert crossings == pytest.approx(2 * 440 / 16000, rel=0.02)
    assert result.media_row["duration_s"] == pytest.approx(1.0, abs=0.01)


def test_pooling_example(example, tmp_path: Path) -> None:
    example("pooling", POOLINGS, "median")
    frames = np.array([[0.0, 10.0], [1.0, -5.0], [100.0, 3.0]], np.float32)
    pooler = make_pooler("median")
    assert pooler.encode(frames).tolist() == [1.0, 3.0]
    assert np.isnan(pooler.encode(np.zeros((0, 2), np.float32))).all()
    # A config may now name it, and feature matrices pool with it.
    FeatureSetConfig(extractor="face_sim", pooling=["median"])
    store, _ = make_store(tmp_path / "store")
    matrix = load_feature_matrix(store, "face_sim", "median", label_space())
    assert matrix.name == "face_sim.median" and matrix.x.shape[1] == 4
    assert np.isfinite(matrix.x).all()


def test_classifier_example(example) -> None:
    example("classifier", CLASSIFIERS, "prototype")
    sets = [FeatureSetConfig(extractor="voice_sim")]
    config = TuneClassifiersConfig(feature_sets=sets, classifiers=["prototype"])
    specs = trial_specs(config, ["voice_sim"])
    assert [s["params"] for s in specs] == [{"temperature": 1.0}, {"temperature": 10.0}]
    narrowed = TuneClassifiersConfig(
        feature_sets=sets,
        classifiers=["prototype"],
        param_grid={"prototype": {"temperature": [2.0]}},
    )
    assert [s["params"] for s in trial_specs(narrowed, ["voice_sim"])] == [{"temperature": 2.0}]
    with pytest.raises(ConfigError, match=r"unknown parameter.*allowed: temperature"):
        trial_specs(
            TuneClassifiersConfig(
                feature_sets=sets, classifiers=["prototype"], param_grid={"prototype": {"C": [1]}}
            ),
            ["voice_sim"],
        )
    matrix = synthetic_matrix(dim=4, separation=6.0)
    model, scores = fit_and_score(matrix, specs[0], 3)
    assert scores["val_macro_f1"] >= 0.9, scores
    _, x_test, y_test = matrix.subset("test")
    probs = outputs(model, "classification", x_test, 3)
    assert np.allclose(probs.sum(axis=1), 1.0) and (probs.argmax(axis=1) == y_test).mean() >= 0.9


def test_fusion_example(example, tmp_path: Path) -> None:
    example("fusion", FUSION_METHODS, "best_member")
    rng = np.random.default_rng(0)
    labels = np.arange(120) % 4
    good = np.eye(4)[labels] * 0.7 + rng.uniform(0, 0.1, (120, 4))
    noise = rng.dirichlet(np.ones(4), 120)
    run = write_run(tmp_path / "run", {"face.logreg": noise, "voice.logreg": good}, labels)
    config = FuseConfig(
        run=run.root, methods=["weighted", "best_member"], num_samples=0, random_candidates=64
    )
    result = run_fuse(config)
    record = result["methods"]["best_member"]
    assert record["name"] == "fused.best_member" and record["member"] == "voice.logreg"
    assert record["scores"]["test"]["accuracy"] == 1.0
    fused = run.predictions("fused.best_member")
    assert len(fused) == len(labels)
    # Unregistered again (after this test), the name is a config error naming the registry.
    FUSION_METHODS.unregister("best_member")
    with pytest.raises(ConfigError, match=r"unknown fusion method 'best_member'.*FUSION_METHODS"):
        load_config(FuseConfig, None, ["methods=[best_member]"])
