"""The dataset-format registry: every corpus layout raypipe turns into a manifest is one
:class:`DatasetFormat` of :data:`DATASET_FORMATS`, registered by its module in this package.

A format's ``convert(source, media)`` reads the corpus as distributed (annotation folders, a
CSV of utterances, class folders) and returns a :class:`ConvertedDataset`: the manifest rows,
the name of the label space its ``label`` column is in, and what it could not use (a missing
clip, an unknown class), each as a :class:`DatasetIssue`. Problems that stop the whole
conversion (no such folder, a malformed annotation line) raise
:class:`~raypipe.errors.ManifestError` naming the file (and line) and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from raypipe.errors import ConfigError, ManifestError
from raypipe.labels import LABEL_SPACES, LabelSpace
from raypipe.media.manifest import ManifestIssue, save_manifest
from raypipe.registry import Registry


@dataclass(frozen=True)
class DatasetIssue:
    """One thing of a corpus that did not become a manifest row.

    Attributes:
        where: the file, row or media the problem is in, as a person would look for it.
        message: what is wrong and what to do, one sentence.
    """

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class ConvertedDataset:
    """A corpus as a raypipe manifest.

    Attributes:
        format: the registered format's name.
        table: manifest rows: ``media_id``, ``path`` (absolute), then the format's columns
            (``label``, ``split``, ``transcript``, annotation files...).
        labels: name of the :data:`~raypipe.labels.LABEL_SPACES` entry the ``label`` column is
            in; None when the manifest has no ``label`` column (frame-level annotations).
        issues: what could not be used, in the corpus' order.
    """

    format: str
    table: pd.DataFrame
    labels: str | None
    issues: list[DatasetIssue] = field(default_factory=list)

    def label_space(self) -> LabelSpace | None:
        """The label space of the ``label`` column, or None."""
        return LABEL_SPACES.get(self.labels) if self.labels else None

    def save(self, path: Path | str) -> Path:
        """Write the manifest (csv, tsv, jsonl or parquet by suffix); see
        :func:`~raypipe.media.manifest.save_manifest`."""
        return save_manifest(self.table, path)


#: ``(source, media) -> ConvertedDataset``: ``source`` is the corpus' folder (annotations,
#: CSVs or class folders); ``media`` where its videos lie when elsewhere (None: inside source).
Converter = Callable[[Path, Path | None], ConvertedDataset]


@dataclass(frozen=True)
class DatasetFormat:
    """A registered corpus layout.

    Attributes:
        name: the name given to ``raypipe dataset convert --format``.
        convert: the converter.
        labels: the label space of its ``label`` column (a LABEL_SPACES name), or None.
        description: one line for docs and ``--help``.
    """

    name: str
    convert: Converter
    labels: str | None
    description: str


#: Every dataset format by name, in registration order.
DATASET_FORMATS: Registry[DatasetFormat] = Registry("DATASET_FORMATS", "dataset format")


def register_format(
    name: str, *, labels: str | None, description: str
) -> Callable[[Converter], Converter]:
    """Decorator registering a converter as dataset format ``name``."""
    if labels is not None:
        LABEL_SPACES.get(labels)  # a typo fails at import, naming the label spaces

    def decorator(convert: Converter) -> Converter:
        DATASET_FORMATS.register(name, DatasetFormat(name, convert, labels, description))
        return convert

    return decorator


def convert_dataset(
    name: str, source: Path | str, media: Path | str | None = None
) -> ConvertedDataset:
    """Read the corpus at ``source`` (its videos under ``media``, default ``source``) in the
    registered format ``name`` into manifest rows and the issues of what was left out."""
    if name not in DATASET_FORMATS:
        raise ConfigError(f"{DATASET_FORMATS.unknown_message(name)}; pick one with --format.")
    entry = DATASET_FORMATS.get(name)
    if not Path(source).exists():
        raise ManifestError(f"Dataset folder '{source}' does not exist; check the path.")
    # Absolute from here on: the formats build paths under both, and a manifest's relative
    # paths are read from the manifest's own folder, not the working directory.
    source = Path(source).resolve()
    media_root = Path(media).resolve() if media is not None else None
    if media_root is not None and not media_root.is_dir():
        raise ManifestError(f"Media folder '{media_root}' does not exist; check --media.")
    return entry.convert(source, media_root)


def folder_issues(issues: list[ManifestIssue]) -> list[DatasetIssue]:
    """Issues of :func:`~raypipe.media.manifest.manifest_from_folders` (rows of a table the
    folders made) named by their media id, which is where they are in the folders."""
    return [DatasetIssue(issue.media_id, issue.message) for issue in issues]
