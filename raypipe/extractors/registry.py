"""Building extractors by name from their configs.

Each built-in extractor is one entry of :data:`EXTRACTORS`: its module, class and a one-line
description. The class is imported only when the extractor is built, so a job that does not use
an extractor never imports its (possibly heavy) dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

from raypipe.extractors.base import Extractor


class ExtractorEntry(NamedTuple):
    """Where a built-in extractor lives and what it computes."""

    module: str
    cls: str
    description: str


#: Built-in extractors by name (the name is also the ExtractConfig field holding its settings).
EXTRACTORS: dict[str, ExtractorEntry] = {
    "face_expression": ExtractorEntry(
        "raypipe.extractors.face_expression",
        "FaceExpressionExtractor",
        "MTCNN faces + FER2013 mini-Xception embedding per sampled frame",
    ),
    "opensmile": ExtractorEntry(
        "raypipe.extractors.opensmile_functionals",
        "OpenSmileExtractor",
        "openSMILE functionals (eGeMAPSv02 by default) per media",
    ),
}


def available_extractors() -> dict[str, str]:
    """Name -> one-line description of every built-in extractor."""
    return {name: entry.description for name, entry in EXTRACTORS.items()}


def build_extractor(name: str, options: dict[str, Any] | None = None) -> Extractor:
    """Instantiate the extractor ``name`` with keyword ``options``."""
    entry = EXTRACTORS[name]
    cls = getattr(importlib.import_module(entry.module), entry.cls)
    return cls(**dict(options or {}))
