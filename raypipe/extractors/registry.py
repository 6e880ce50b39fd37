"""Building extractors by name from their configs."""

from __future__ import annotations

from typing import Any

from raypipe.extractors.base import Extractor


def available_extractors() -> dict[str, str]:
    """Name -> one-line description of every built-in extractor."""
    return {
        "face_expression": "MTCNN faces + FER2013 mini-Xception embedding per sampled frame",
        "opensmile": "openSMILE functionals (eGeMAPSv02 by default) per media",
    }


def build_extractor(name: str, options: dict[str, Any] | None = None) -> Extractor:
    """Instantiate the extractor ``name`` with keyword ``options``."""
    options = dict(options or {})
    if name == "face_expression":
        from raypipe.extractors.face_expression import FaceExpressionExtractor

        return FaceExpressionExtractor(**options)
    if name == "opensmile":
        from raypipe.extractors.opensmile_functionals import OpenSmileExtractor

        return OpenSmileExtractor(**options)
    raise KeyError(name)
