"""Turn a training checkpoint into a registered extractor version.

``export/model.pt`` is the backbone's plain state dict (what
:func:`raypipe.models.backbones.build_backbone` loads); ``export/extract.yaml`` is an extract
config enabling ``face_backbone`` with that checkpoint and every other extractor off. The
``face_backbone`` version hashes the weights file, so `raypipe extract --config
export/extract.yaml` computes only that extractor's rows for the new weights and leaves every
other stored row alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import yaml

from raypipe.models.backbones import build_backbone, load_state_dict

log = logging.getLogger(__name__)

EXPORT_MODEL = "model.pt"
EXPORT_CONFIG = "extract.yaml"


def export_backbone(checkpoint: str | Path, arch: str, folder: Path) -> Path:
    """Write the backbone weights of a training ``checkpoint`` (folder or file) to
    ``folder/model.pt`` as a plain state dict, checked by loading it back; return the file."""
    state = load_state_dict(checkpoint)  # strips the module./backbone./net. prefixes
    backbone = build_backbone(arch)
    wanted = backbone.net.state_dict()
    weights = {key: value for key, value in state.items() if key in wanted}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / EXPORT_MODEL
    temporary = folder / f".{EXPORT_MODEL}.tmp"
    torch.save(weights, temporary)
    temporary.replace(path)
    build_backbone(arch, path)  # raises if a weight is missing
    return path


def extract_snippet(
    model: str | Path,
    arch: str,
    crop_size: int,
    store: str | None = None,
    manifest: str | None = None,
) -> dict[str, Any]:
    """An extract config with only ``face_backbone`` enabled, on ``model``'s weights (a local
    path, made absolute, or a URI such as ``s3://bucket/run/export/model.pt``)."""
    from raypipe.config import ExtractConfig

    config: dict[str, Any] = {}
    if manifest:
        config["manifest"] = manifest
    if store:
        config["out"] = store
    for name, field in ExtractConfig.model_fields.items():
        if hasattr(field.default, "enabled") and name != "face_backbone":
            config[name] = {"enabled": False}
    config["face_backbone"] = {
        "enabled": True,
        "arch": arch,
        "checkpoint": str(model) if "://" in str(model) else str(Path(model).resolve()),
        "input": "face",
        "crop_size": crop_size,
    }
    ExtractConfig.model_validate(config)
    return config


def write_extract_config(
    folder: Path, config: dict[str, Any], run: str | Path, shown: str | None = None
) -> Path:
    """Write ``folder/extract.yaml`` opening with the commands that run it; ``shown`` is the
    place the file is kept and the commands name (a URI when ``folder`` is a scratch copy
    of a run on object storage), by default the written file."""
    path = folder / EXPORT_CONFIG
    where = shown or str(path)
    flags = "" if "manifest" in config else " --manifest MANIFEST --out STORE"
    header = [
        f"# Re-extract with the backbone fine-tuned in {run}: only face_backbone is computed.",
        f"#   local:   raypipe extract --config {where}{flags}",
        f"#   cluster: ray job submit --working-dir . -- python jobs/extract.py --config {where}"
        f"{flags}",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False))
    log.info("extract config for the fine-tuned backbone: %s", where)
    return path
