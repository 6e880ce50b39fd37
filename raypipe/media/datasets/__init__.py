"""Corpora as distributed -> raypipe manifests: one registry (:data:`DATASET_FORMATS`) and
one module per layout, each registering a converter: Aff-Wild2 / ABAW annotation folders
(with readers and writers of their per-frame label files), MELD utterances, and class-folder
corpora (GAF group photos, compound-expression clips). A new corpus is one module that
registers its converter, listed in :data:`FORMAT_MODULES`. Plain Python; no Ray.
"""

import importlib

from raypipe.media.datasets.registry import (
    DATASET_FORMATS,
    ConvertedDataset,
    DatasetFormat,
    DatasetIssue,
    convert_dataset,
    register_format,
)

#: Format modules of this package; each registers its formats when imported, in this order
#: (the order of DATASET_FORMATS).
FORMAT_MODULES = ("abaw", "meld", "class_folders")
for _module in FORMAT_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "DATASET_FORMATS",
    "FORMAT_MODULES",
    "ConvertedDataset",
    "DatasetFormat",
    "DatasetIssue",
    "convert_dataset",
    "register_format",
]
