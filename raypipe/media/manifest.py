"""Manifests: which media to process, with optional labels and splits.

A manifest is CSV, JSONL or Parquet with columns ``media_id, path`` and optional ``label`` (or
several label columns) and ``split``. Relative paths are resolved against the manifest's folder.
A folder-per-class layout (EmotiW/AFEW: ``<root>/<split>/<Class>/<clip>``) is read by
:func:`manifest_from_folders`.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from raypipe.errors import ManifestError, MediaError
from raypipe.labels import LabelSpace, label_space
from raypipe.media.remote import file_infos, is_uri, join, parent, read_bytes

log = logging.getLogger(__name__)

REQUIRED = ("media_id", "path")
SPLITS = ("train", "val", "test")
MEDIA_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class ManifestIssue:
    """One problem with one manifest row (``row`` counts data rows from 1, as a person would)."""

    row: int
    media_id: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row} ({self.media_id}): {self.message}"


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a CSV, TSV, JSONL or Parquet manifest (a local path or a URI such as
    ``s3://bucket/manifest.csv``) into a DataFrame of strings (ids stay text)."""
    name = str(path).partition("?")[0]
    suffix = Path(name).suffix.lower()
    if suffix not in {".csv", ".tsv", ".jsonl", ".json", ".parquet", ".pq"}:
        if not is_uri(path) and not Path(path).is_file():
            raise ManifestError(f"Manifest '{path}' does not exist; check the --manifest path.")
        raise ManifestError(
            f"Manifest '{path}' has suffix '{suffix}'; use .csv, .tsv, .jsonl or .parquet."
        )
    try:
        source: Any = io.BytesIO(read_bytes(str(path))) if is_uri(path) else path
    except (FileNotFoundError, MediaError):
        source = None
    if source is None or (not is_uri(path) and not Path(path).is_file()):
        raise ManifestError(f"Manifest '{path}' does not exist; check the --manifest path.")
    try:
        if suffix in {".csv", ".tsv"}:
            table = pd.read_csv(source, sep="\t" if suffix == ".tsv" else ",", dtype=str)
        elif suffix in {".jsonl", ".json"}:
            table = pd.read_json(source, lines=suffix == ".jsonl", dtype=False)
        else:
            table = pd.read_parquet(source)
    except (ValueError, OSError) as exc:
        raise ManifestError(
            f"Manifest '{path}' cannot be parsed ({exc}); fix its format."
        ) from None
    return table


def validate_manifest(
    table: pd.DataFrame,
    source: str,
    root: Path | str,
    labels: LabelSpace | None = None,
    label_columns: tuple[str, ...] = ("label",),
    check_files: bool = True,
) -> tuple[pd.DataFrame, list[ManifestIssue]]:
    """Check required columns, ids, labels, splits and files; resolve paths against ``root``
    (a folder, or a folder URI: relative paths of a manifest on object storage name media
    beside it there).

    Returns the rows that passed (paths made absolute) and the issues of those that did not.
    A missing column is a :class:`ManifestError` (nothing can run); row problems are issues.
    """
    missing = [column for column in REQUIRED if column not in table.columns]
    if missing:
        raise ManifestError(
            f"Manifest '{source}' lacks column(s) {missing}; it needs 'media_id' and 'path' "
            f"(found: {list(table.columns)})."
        )
    if table.empty:
        raise ManifestError(
            f"Manifest '{source}' has no rows (only a header); add one row per media."
        )
    labels = labels or label_space()
    table = table.copy()
    table["media_id"] = table["media_id"].astype(str).str.strip()
    issues: list[ManifestIssue] = []
    keep: list[bool] = []
    seen: dict[str, int] = {}
    resolved: list[str] = []
    # Labels repeat: each distinct value is looked up once.
    canonical = _cached(labels.canonical)
    checked = [c for c in label_columns if c in table.columns]
    label_values = [table[c].tolist() for c in checked]
    splits = table["split"].tolist() if "split" in table.columns else None
    base = str(root)
    remote = _remote_problems(table["path"].tolist(), base) if check_files else {}
    for position, (media_id, raw_path) in enumerate(
        zip(table["media_id"].tolist(), table["path"].tolist(), strict=True), start=1
    ):
        problem = None
        path = None
        if isinstance(raw_path, str) and raw_path.strip():
            path = _absolute(raw_path, base)
        if not media_id or media_id == "nan":
            problem = "empty media_id; give every row a unique id"
        elif media_id in seen:
            problem = f"duplicate media_id (first seen at row {seen[media_id]}); ids must be unique"
        elif path is None:
            problem = "empty path; give the media file's path"
        elif check_files:
            problem = remote[path] if path in remote else _file_problem(path)
        if problem is None:
            for column, values in zip(checked, label_values, strict=True):
                value = values[position - 1]
                given = isinstance(value, str) and bool(value.strip())
                if given and canonical(value) is None:
                    problem = f"unknown {column} '{value}'; allowed: {', '.join(labels.classes)}"
                    break
        if problem is None and splits is not None:
            split = splits[position - 1]
            if isinstance(split, str) and split.strip().lower() not in SPLITS:
                problem = f"unknown split '{split}'; allowed: {', '.join(SPLITS)}"
        if media_id and media_id not in seen:
            seen[media_id] = position
        if problem is not None:
            issues.append(ManifestIssue(position, media_id, problem))
        keep.append(problem is None)
        resolved.append(path if path is not None else "")
    table["path"] = resolved
    for column in checked:
        table[column] = [
            canonical(v) if isinstance(v, str) and v.strip() else None for v in table[column]
        ]
    if "split" in table.columns:
        table["split"] = [
            s.strip().lower() if isinstance(s, str) and s.strip() else None for s in table["split"]
        ]
    valid = table[pd.Series(keep, index=table.index)].reset_index(drop=True)
    for issue in issues:
        log.warning("Manifest '%s' %s", source, issue)
    return valid, issues


def _remote_problems(raw_paths: list[object], base: str) -> dict[str, str | None]:
    """For the rows naming media on object storage: path -> problem (None when the file
    exists), checked in one batch per filesystem."""
    uris = [
        _absolute(p, base)
        for p in raw_paths
        if isinstance(p, str) and p.strip() and (is_uri(p) or is_uri(base))
    ]
    uris = [u for u in dict.fromkeys(uris) if is_uri(u)]
    if not uris:
        return {}
    found = file_infos(uris)
    return {
        uri: None if info else f"file '{uri}' does not exist; fix the path or remove the row"
        for uri, info in zip(uris, found, strict=True)
    }


def _absolute(path: str, base: str) -> str:
    """``path`` made absolute against ``base``, written as pathlib writes it (no ``//``, ``/.``
    or trailing ``/``); a path already in that form is returned as is (the common case, and
    the cheap one over a million rows). URIs stay as they are; a relative path under a folder
    URI joins it."""
    if is_uri(path):
        return path
    if is_uri(base) and not path.startswith("/"):
        return join(base, path)
    if path.startswith("/") and "//" not in path and "/." not in path and not path.endswith("/"):
        return path
    return str(Path(path) if os.path.isabs(path) else Path(base, path))


def _file_problem(path: str) -> str | None:
    """Why ``path`` cannot be a media file (missing, a folder), or None; one stat call."""
    try:
        info = os.stat(path)
    except OSError:
        return f"file '{path}' does not exist; fix the path or remove the row"
    if stat.S_ISDIR(info.st_mode):
        return f"'{path}' is a folder, not a media file; give the path of one file"
    return None


def _cached(function: Callable[[str], str | None]) -> Callable[[str], str | None]:
    """``function`` remembering its answers (labels repeat over a corpus)."""
    answers: dict[str, str | None] = {}

    def lookup(value: str) -> str | None:
        if value not in answers:
            answers[value] = function(value)
        return answers[value]

    return lookup


def load_manifest(
    path: Path | str,
    labels: LabelSpace | None = None,
    label_columns: tuple[str, ...] = ("label",),
    check_files: bool = True,
) -> tuple[pd.DataFrame, list[ManifestIssue]]:
    """Read and validate a manifest file, local or a URI (see :func:`validate_manifest`)."""
    if is_uri(path):
        table = read_table(str(path))
        return validate_manifest(
            table, str(path), parent(str(path)), labels, label_columns, check_files
        )
    path = Path(path)
    if path.is_dir():
        return manifest_from_folders(path, labels)
    table = read_table(path)
    return validate_manifest(
        table, str(path), path.parent.resolve(), labels, label_columns, check_files
    )


def manifest_from_folders(
    root: Path, labels: LabelSpace | None = None, *, require_splits: bool = True
) -> tuple[pd.DataFrame, list[ManifestIssue]]:
    """Build a manifest from a ``<root>/<split>/<Class>/<clip>`` layout (EmotiW/AFEW).

    Split folders may be named train/val/test (or Train/Val/Test, validation); media ids are
    ``<split>/<Class>/<stem>``. Unknown class folders become issues. With ``require_splits``
    False, a root without split folders is read as ``<root>/<Class>/<clip>`` (ids
    ``<Class>/<stem>``, no split).
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"Dataset folder '{root}' does not exist; check the path.")
    split_names = {
        "train": "train",
        "val": "val",
        "valid": "val",
        "validation": "val",
        "test": "test",
    }
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    groups: list[tuple[Path, str | None]] = [
        (p, split_names[p.name.lower()]) for p in folders if p.name.lower() in split_names
    ]
    if not groups and not require_splits:
        groups = [(root, None)]
    rows: list[dict[str, str | None]] = []
    for split_dir, split in groups:
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            prefix = f"{split}/{class_dir.name}" if split else class_dir.name
            for clip in sorted(class_dir.iterdir()):
                if clip.suffix.lower() in MEDIA_SUFFIXES:
                    rows.append(
                        {
                            "media_id": f"{prefix}/{clip.stem}",
                            "path": str(clip),
                            "label": class_dir.name,
                            "split": split,
                        }
                    )
    if not rows and require_splits:
        raise ManifestError(
            f"Dataset folder '{root}' holds no <split>/<Class>/<clip> media; expected split "
            "folders named train, val or test."
        )
    if not rows:
        raise ManifestError(
            f"Dataset folder '{root}' holds no [<split>/]<Class>/<clip> media; put each media "
            "in a folder named after its class (inside train, val or test folders, or not)."
        )
    return validate_manifest(pd.DataFrame(rows), str(root), root, labels)


def name_words(name: str) -> list[str]:
    """The lower-case words of a file or folder name (split at anything not a letter or
    digit): 'EXPR_Classification_Challenge' -> ['expr', 'classification', 'challenge']."""
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def split_in_name(name: str) -> str | None:
    """The split a corpus' folder or file name says (Train_Set, Training_Set, train_splits ->
    'train'; Validation_Set, dev_splits_complete -> 'val'; Test_Set,
    output_repeated_splits_test -> 'test'), or None."""
    words = set(name_words(name))
    if words & {"train", "training"}:
        return "train"
    if words & {"val", "valid", "validation", "dev"}:
        return "val"
    if words & {"test", "testing"}:
        return "test"
    return None


def check_manifest_suffix(path: Path | str) -> Path:
    """``path`` as a Path when raypipe can write a manifest there (.csv, .tsv, .jsonl or
    .parquet); else a :class:`ManifestError` naming it (checked before long work)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".tsv", ".jsonl", ".parquet", ".pq"}:
        raise ManifestError(
            f"Manifest '{path}' has suffix '{suffix}'; use .csv, .tsv, .jsonl or .parquet."
        )
    return path


def save_manifest(table: pd.DataFrame, path: Path | str) -> Path:
    """Write a manifest table to ``path`` (a local .csv, .tsv, .jsonl or .parquet file), its
    media paths relative to the manifest's folder where the media lie inside it (so the
    manifest and its media move together) and absolute otherwise. Written atomically (a
    temporary file renamed into place); returns the path."""
    path = check_manifest_suffix(path)
    suffix = path.suffix.lower()
    if "path" not in table.columns:
        raise ManifestError(f"Manifest for '{path}' has no 'path' column; give every media's path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.resolve()
    table = table.copy()
    table["path"] = [_relative_to(str(p), folder) for p in table["path"]]
    temporary = path.with_name(f".{path.name}.tmp")
    if suffix in {".csv", ".tsv"}:
        table.to_csv(temporary, sep="\t" if suffix == ".tsv" else ",", index=False)
    elif suffix == ".jsonl":
        table.to_json(temporary, orient="records", lines=True, force_ascii=False)
    else:
        table.to_parquet(temporary, index=False)
    os.replace(temporary, path)
    return path


def _relative_to(path: str, folder: Path) -> str:
    """``path`` relative to ``folder`` when it lies inside it; URIs and others unchanged."""
    if is_uri(path):
        return path
    absolute = Path(path).resolve()
    return absolute.relative_to(folder).as_posix() if absolute.is_relative_to(folder) else path
