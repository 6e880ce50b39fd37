"""Corpora laid out as one folder per class: GAF group photos (``Positive``, ``Neutral``,
``Negative``) and compound-expression clips (C-EXPR-DB's seven classes), with or without
``train`` / ``val`` / ``test`` folders above the class folders (registered as dataset formats
``gaf`` and ``cexpr``)."""

from __future__ import annotations

from pathlib import Path

from raypipe.errors import ManifestError
from raypipe.labels import LABEL_SPACES
from raypipe.media.datasets.registry import ConvertedDataset, folder_issues, register_format
from raypipe.media.manifest import manifest_from_folders


def class_folder_manifest(
    name: str, labels: str, source: Path, media: Path | None
) -> ConvertedDataset:
    """Manifest rows of ``[<split>/]<Class>/<media>`` under ``source``, labelled in the
    registered label space ``labels``: media ids ``[<split>/]<Class>/<stem>``; a class folder
    outside the label space is an issue per media (its name and the allowed classes)."""
    if media is not None and Path(media).resolve() != Path(source).resolve():
        raise ManifestError(
            f"--media does not apply to format {name}: its media are the files in the class "
            f"folders under '{source}'; leave --media out."
        )
    table, issues = manifest_from_folders(source, LABEL_SPACES.get(labels), require_splits=False)
    return ConvertedDataset(name, table, labels, folder_issues(issues))


@register_format(
    "gaf",
    labels="gaf",
    description="GAF group photos: [<split>/]Positive|Neutral|Negative/<image>",
)
def gaf_manifest(source: Path, media: Path | None = None) -> ConvertedDataset:
    """A manifest of GAF-style group photos, labelled Positive, Neutral or Negative."""
    return class_folder_manifest("gaf", "gaf", source, media)


@register_format(
    "cexpr",
    labels="cexpr",
    description="compound-expression clips (C-EXPR-DB's 7 classes): [<split>/]<Class>/<clip>",
)
def cexpr_manifest(source: Path, media: Path | None = None) -> ConvertedDataset:
    """A manifest of compound-expression clips; class folders may write a class with spaces,
    underscores, hyphens or as one word (``Fearfully_Surprised``)."""
    return class_folder_manifest("cexpr", "cexpr", source, media)
