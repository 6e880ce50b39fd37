import json
from pathlib import Path

import pandas as pd
import pytest

from raypipe.errors import ManifestError
from raypipe.labels import EMOTIW7, label_space
from raypipe.media.manifest import load_manifest


def _media(tmp_path: Path, names: list[str]) -> None:
    for name in names:
        (tmp_path / name).write_bytes(b"x")


def test_csv_with_issues_reports_row_numbers(tmp_path: Path) -> None:
    _media(tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
    (tmp_path / "m.csv").write_text(
        "media_id,path,label,split\n"
        "a,a.mp4,Happy,train\n"
        "b,b.mp4,Joyful,train\n"
        "a,c.mp4,Sad,val\n"
        "d,missing.mp4,Sad,test\n"
        "e,c.mp4,sadness,test\n"
    )
    valid, issues = load_manifest(tmp_path / "m.csv")
    assert list(valid["media_id"]) == ["a", "e"]
    assert valid.loc[1, "label"] == "Sad"  # alias resolved
    assert Path(valid.loc[0, "path"]).is_absolute()
    by_row = {i.row: i for i in issues}
    assert set(by_row) == {2, 3, 4}
    assert "unknown label 'Joyful'" in by_row[2].message and "Angry" in by_row[2].message
    assert "duplicate media_id" in by_row[3].message and "row 1" in by_row[3].message
    assert "does not exist" in by_row[4].message and "missing.mp4" in by_row[4].message


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_jsonl_and_parquet(tmp_path: Path, suffix: str) -> None:
    _media(tmp_path, ["a.mp4"])
    rows = [{"media_id": "a", "path": "a.mp4", "label": "Fear", "split": "val"}]
    path = tmp_path / f"m{suffix}"
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    else:
        pd.DataFrame(rows).to_parquet(path)
    valid, issues = load_manifest(path)
    assert issues == [] and valid.loc[0, "label"] == "Fear" and valid.loc[0, "split"] == "val"


def test_tsv_folders_splits_and_paths_as_pathlib_writes_them(tmp_path: Path) -> None:
    _media(tmp_path, ["a.mp4", "b.mp4"])
    (tmp_path / "sub").mkdir()
    (tmp_path / "m.tsv").write_text(
        "media_id\tpath\tlabel\tsplit\n"
        f"a\t{tmp_path}//a.mp4\tHappy\tTrain\n"  # a doubled slash, a capitalised split
        "b\t./b.mp4\t\t\n"
        "c\tsub\tSad\ttest\n"  # a folder, not a file
        "d\tb.mp4\tSad\tholdout\n"
    )
    valid, issues = load_manifest(tmp_path / "m.tsv")
    assert list(valid["path"]) == [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    assert valid.loc[0, "split"] == "train" and pd.isna(valid.loc[1, "split"])
    assert pd.isna(valid.loc[1, "label"])
    by_row = {i.row: i.message for i in issues}
    assert "is a folder" in by_row[3] and "unknown split 'holdout'" in by_row[4]


def test_missing_columns_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("id,file\n1,a.mp4\n")
    with pytest.raises(ManifestError, match="lacks column"):
        load_manifest(tmp_path / "m.csv")


def test_folder_per_class_layout(tmp_path: Path) -> None:
    for split, label in [
        ("Train", "Angry"),
        ("Train", "Happy"),
        ("Val", "Happy"),
        ("Val", "Bored"),
    ]:
        folder = tmp_path / split / label
        folder.mkdir(parents=True)
        (folder / "001.avi").write_bytes(b"x")
    valid, issues = load_manifest(tmp_path)
    assert sorted(valid["media_id"]) == ["train/Angry/001", "train/Happy/001", "val/Happy/001"]
    assert set(valid["split"]) == {"train", "val"}
    assert len(issues) == 1 and "Bored" in issues[0].message


def test_default_label_space_is_emotiw7() -> None:
    space = label_space()
    assert space.classes == EMOTIW7 and space.index("neutral") == 6 and space.canonical("x") is None
