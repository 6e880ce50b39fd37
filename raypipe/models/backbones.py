"""Torchvision backbones as feature extractors, with weights from a local checkpoint.

The published systems embedded faces and frames with ResNet, DenseNet and VGG networks
fine-tuned on face-expression corpora. Here a backbone is built without downloading anything:
its weights come from a file (a ``state_dict`` saved with ``torch.save``, a dict holding one
under ``"model"``/``"state_dict"``, or a Ray Train checkpoint folder holding ``model.pt``), local
or on object storage (``s3://...``, copied into local scratch while it is read), or it starts
randomly initialised when no checkpoint is given (for training from scratch and tests).

A :class:`Backbone` maps a float batch ``(N, 3, H, W)`` in [0, 1] RGB to features ``(N, dim)``:
the classifier head of the torchvision model is replaced by the identity and ImageNet
normalisation is applied inside, so callers hand it plain crops.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models

from raypipe.errors import ConfigError

#: Supported architectures -> (torchvision constructor, feature dimension).
ARCHITECTURES: dict[str, tuple[Any, int]] = {
    "resnet18": (models.resnet18, 512),
    "resnet50": (models.resnet50, 2048),
    "densenet121": (models.densenet121, 1024),
    "vgg16_bn": (models.vgg16_bn, 4096),
}

#: File name of the weights inside a checkpoint folder (what raypipe's trainer writes).
CHECKPOINT_FILE = "model.pt"

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _strip_head(arch: str, net: nn.Module) -> nn.Module:
    """Replace the final classification layer by the identity, keeping the features before it."""
    if arch.startswith("resnet"):
        net.fc = nn.Identity()
    elif arch.startswith("densenet"):
        net.classifier = nn.Identity()
    elif arch.startswith("vgg"):
        net.classifier[6] = nn.Identity()  # keeps fc6/fc7 (4096-d), drops the 1000-way layer
    return net


class Backbone(nn.Module):
    """A headless torchvision network with ImageNet normalisation built in.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        net: the headless network.
    """

    def __init__(self, arch: str, net: nn.Module) -> None:
        super().__init__()
        self.arch = arch
        self.net = net
        self.dim = ARCHITECTURES[arch][1]
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``(N, dim)`` of RGB images ``(N, 3, H, W)`` with values in [0, 1]."""
        return self.net((images - self.mean) / self.std)


def resolve_checkpoint(path: str | Path) -> Path:
    """The weights file of ``path``: the file itself, or ``model.pt`` inside a checkpoint folder."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise ConfigError(
            f"checkpoint '{path}' does not exist: give a state-dict file or a checkpoint folder "
            f"holding {CHECKPOINT_FILE}."
        )
    return path


@contextmanager
def staged_checkpoint(path: str | Path) -> Iterator[Path]:
    """A local weights file for ``path`` (see :func:`resolve_checkpoint`): the file itself, or
    for a URI (``s3://b/run/export/model.pt``, or a checkpoint folder's URI) a copy in local
    scratch (``RAYPIPE_SCRATCH``, else the system's temporary folder), removed on exit."""
    from raypipe.media.remote import is_uri

    if not is_uri(path):
        yield resolve_checkpoint(path)
        return
    import pyarrow.fs as pafs

    from raypipe.store.files import StoreFiles

    base, _, query = str(path).partition("?")
    options = f"?{query}" if query else ""
    folder, _, name = base.rstrip("/").rpartition("/")
    files = StoreFiles(f"{folder}{options}")
    if files.kind(name) == pafs.FileType.Directory:
        files, name = StoreFiles(f"{base.rstrip('/')}{options}"), CHECKPOINT_FILE
    if not files.exists(name):
        raise ConfigError(
            f"checkpoint '{path}' does not exist: give a state-dict file or a checkpoint folder "
            f"holding {CHECKPOINT_FILE}."
        )
    with tempfile.TemporaryDirectory(
        prefix="raypipe-weights-", dir=os.environ.get("RAYPIPE_SCRATCH")
    ) as scratch:
        local = Path(scratch) / name
        local.write_bytes(files.read_bytes(name))
        yield local


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a file or checkpoint folder, local or a URI (see module
    docstring for formats)."""
    with staged_checkpoint(path) as file:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConfigError(
                f"checkpoint '{path}' could not be read as a torch state dict ({exc})."
            ) from exc
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ConfigError(f"checkpoint '{path}' holds a {type(state).__name__}, not a state dict.")
    # Checkpoints saved from DistributedDataParallel or from a Backbone carry prefixes.
    cleaned = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone.", "net."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        cleaned[key] = value
    return cleaned


def build_backbone(arch: str, checkpoint: str | Path | None = None) -> Backbone:
    """A headless ``arch`` with weights from ``checkpoint`` (random initialisation if None).

    Head weights in the checkpoint (``fc.*``, ``classifier.*`` of the last layer, or a new
    head of another size) are ignored; every other backbone weight must be present.
    """
    if arch not in ARCHITECTURES:
        raise ConfigError(
            f"unknown backbone '{arch}': choose one of {', '.join(sorted(ARCHITECTURES))}."
        )
    constructor, _ = ARCHITECTURES[arch]
    net = _strip_head(arch, constructor(weights=None))
    if checkpoint is not None:
        state = load_state_dict(checkpoint)
        wanted = net.state_dict()
        usable = {k: v for k, v in state.items() if k in wanted and v.shape == wanted[k].shape}
        missing = sorted(set(wanted) - set(usable))
        if missing:
            raise ConfigError(
                f"checkpoint '{checkpoint}' does not fit {arch}: {len(missing)} weight(s) missing "
                f"or of another shape, e.g. '{missing[0]}'; was it saved from another architecture?"
            )
        net.load_state_dict(usable)
    return Backbone(arch, net)
