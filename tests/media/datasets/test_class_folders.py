"""Class-folder corpora as manifests: GAF group photos and compound-expression clips, with or
without split folders; class folders outside the label space reported."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from raypipe.errors import ManifestError
from raypipe.labels import CEXPR7, GAF3, LABEL_SPACES
from raypipe.media.datasets import convert_dataset
from raypipe.media.manifest import load_manifest


def _files(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def test_gaf_photos_under_split_folders(tmp_path: Path) -> None:
    root = _files(
        tmp_path / "GAF_3.0",
        "train/Positive/p1.jpg",
        "train/Negative/n1.JPG",
        "train/Happy/h1.jpg",  # not a GAF class
        "val/Neutral/u1.png",
        "notes/readme.md",
    )
    converted = convert_dataset("gaf", root)
    assert converted.labels == "gaf" and converted.label_space().classes == GAF3
    rows = converted.table.set_index("media_id")[["label", "split"]].to_dict(orient="index")
    assert rows == {
        "train/Negative/n1": {"label": "Negative", "split": "train"},
        "train/Positive/p1": {"label": "Positive", "split": "train"},
        "val/Neutral/u1": {"label": "Neutral", "split": "val"},
    }
    assert [(i.where, i.message) for i in converted.issues] == [
        ("train/Happy/h1", "unknown label 'Happy'; allowed: Positive, Neutral, Negative")
    ]


def test_gaf_photos_without_split_folders(tmp_path: Path) -> None:
    root = _files(tmp_path / "gaf", "Positive/a.jpg", "Negative/b.jpg")
    converted = convert_dataset("gaf", root)
    assert converted.table["media_id"].tolist() == ["Negative/b", "Positive/a"]
    assert converted.table["split"].isna().all()
    path = converted.save(tmp_path / "gaf.jsonl")
    valid, issues = load_manifest(path, LABEL_SPACES.get("gaf"))
    assert issues == [] and valid["label"].tolist() == ["Negative", "Positive"]


def test_compound_expressions_with_folder_spellings(tmp_path: Path) -> None:
    root = _files(
        tmp_path / "cexpr",
        "Fearfully_Surprised/c1.mp4",
        "sadly angry/c2.mp4",
        "HappilySurprised/c3.mp4",
        "Sadly-Fearful/c4.mp4",
    )
    converted = convert_dataset("cexpr", root)
    assert converted.issues == []
    labels = dict(zip(converted.table["media_id"], converted.table["label"], strict=True))
    assert labels == {
        "Fearfully_Surprised/c1": "Fearfully Surprised",
        "HappilySurprised/c3": "Happily Surprised",
        "Sadly-Fearful/c4": "Sadly Fearful",
        "sadly angry/c2": "Sadly Angry",
    }
    assert LABEL_SPACES.get("cexpr").classes == CEXPR7 and len(CEXPR7) == 7
    assert LABEL_SPACES.get("cexpr").index("Sadly Angry") == 6


def test_folder_problems_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        convert_dataset("gaf", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match=r"holds no \[<split>/\]<Class>/<clip> media"):
        convert_dataset("cexpr", tmp_path / "empty")
    root = _files(tmp_path / "gaf", "Positive/a.jpg")
    with pytest.raises(ManifestError, match="--media does not apply to format gaf"):
        convert_dataset("gaf", root, tmp_path)


def test_the_emotiw_layout_still_requires_split_folders(tmp_path: Path) -> None:
    from raypipe.media.manifest import manifest_from_folders

    root = _files(tmp_path / "afew", "Happy/a.mp4")
    with pytest.raises(ManifestError, match="expected split folders"):
        manifest_from_folders(root)
    table, _ = manifest_from_folders(root, require_splits=False)
    assert table["media_id"].tolist() == ["Happy/a"] and pd.isna(table.loc[0, "split"])
