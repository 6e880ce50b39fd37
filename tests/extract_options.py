"""Extract config overrides shared by the extraction tests."""

from __future__ import annotations


def only_extractors(*names: str) -> list[str]:
    """Overrides that switch off every registered extractor but ``names``."""
    from raypipe.config import ExtractConfig
    from raypipe.extractors.registry import EXTRACTORS

    return [
        f"{name}.enabled=false"
        for name in EXTRACTORS
        if name not in names and name in ExtractConfig.model_fields
    ]
