"""MELD's utterance CSVs beside its clips as a manifest: labels in MELD's label space,
transcripts, splits from the CSVs' names, missing clips reported and left out."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from raypipe.errors import ManifestError
from raypipe.labels import LABEL_SPACES, MELD7, label_space
from raypipe.media.datasets import DATASET_FORMATS, convert_dataset
from raypipe.media.manifest import load_manifest

HEADER = [
    "Sr No.",
    "Utterance",
    "Speaker",
    "Emotion",
    "Sentiment",
    "Dialogue_ID",
    "Utterance_ID",
    "Season",
    "Episode",
    "StartTime",
    "EndTime",
]


def _csv(path: Path, rows: list[tuple[str, str, str, str, str, str]]) -> None:
    """Rows of (utterance, speaker, emotion, sentiment, dialogue, utterance id)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for number, (text, speaker, emotion, sentiment, dia, utt) in enumerate(rows, start=1):
            writer.writerow(
                [number, text, speaker, emotion, sentiment, dia, utt, 3, 7,
                 "00:16:16,059", "00:16:21,731"]
            )  # fmt: skip


def _clip(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


@pytest.fixture
def meld(tmp_path: Path) -> Path:
    root = tmp_path / "MELD.Raw"
    _csv(
        root / "train_sent_emo.csv",
        [
            ("Oh my God, he's lost it.", "Phoebe", "joy", "positive", "0", "0"),
            ("You, you're fine.", "Monica", "neutral", "neutral", "0", "1"),
            ("No way!", "Joey", "amused", "positive", "0", "2"),  # not a MELD emotion
            ("Where is it?", "Ross", "anger", "negative", "1", "0"),  # no clip
            ("Hm.", "Rachel", "sadness", "negative", "x", "0"),  # bad dialogue id
        ],
    )
    _csv(root / "dev_sent_emo.csv", [("Hi.", "Chandler", "Surprise", "positive", "0", "0")])
    _clip(root / "train" / "train_splits" / "dia0_utt0.mp4")
    _clip(root / "train" / "train_splits" / "dia0_utt1.mp4")
    _clip(root / "train" / "train_splits" / "._dia1_utt0.mp4")  # a macOS shadow, not a clip
    _clip(root / "dev" / "dev_splits_complete" / "dia0_utt0.mp4")
    return root


def test_meld_label_space_is_meld_s_own_order() -> None:
    space = LABEL_SPACES.get("meld")
    assert space.classes == MELD7 == (
        "Neutral", "Surprise", "Fear", "Sadness", "Joy", "Disgust", "Anger"
    )  # fmt: skip
    assert [space.index(e) for e in ("neutral", "joy", "anger", "happy")] == [0, 4, 6, 4]
    assert label_space(list(MELD7)) is space  # a run's classes find the registered space


def test_utterances_become_labelled_media_with_transcripts(meld: Path) -> None:
    assert DATASET_FORMATS.get("meld").labels == "meld"
    converted = convert_dataset("meld", meld)
    table = converted.table.set_index("media_id")
    assert list(table.index) == ["val/dia0_utt0", "train/dia0_utt0", "train/dia0_utt1"]
    first = table.loc["train/dia0_utt0"]
    assert first["path"] == str(meld / "train" / "train_splits" / "dia0_utt0.mp4")
    assert (first["label"], first["split"], first["speaker"]) == ("Joy", "train", "Phoebe")
    assert first["transcript"] == "Oh my God, he's lost it."
    assert (first["sentiment"], first["dialogue_id"], first["utterance_id"]) == ("positive", 0, 0)
    # the same ids in dev are another clip, from dev's folder
    dev = table.loc["val/dia0_utt0"]
    assert dev["path"].endswith("dev_splits_complete/dia0_utt0.mp4") and dev["label"] == "Surprise"
    issues = [str(i) for i in converted.issues]
    train_csv = meld / "train_sent_emo.csv"
    assert issues == [
        f"{train_csv} row 3: unknown emotion 'amused' (dia0_utt2); allowed: Neutral, Surprise, "
        "Fear, Sadness, Joy, Disgust, Anger; the row is left out",
        f"{train_csv} row 4: clip dia1_utt0.mp4 not found under '{meld}' (in a train folder); "
        "the utterance is left out",
        f"{train_csv} row 5: Dialogue_ID 'x' and Utterance_ID '0' must be whole numbers; the "
        "row is left out",
    ]


def test_the_saved_manifest_loads_in_meld_s_label_space(meld: Path, tmp_path: Path) -> None:
    converted = convert_dataset("meld", meld)
    path = converted.save(meld / "manifest.csv")
    assert "train/train_splits/dia0_utt0.mp4" in path.read_text()  # relative to the manifest
    valid, issues = load_manifest(path, converted.label_space())
    assert issues == [] and len(valid) == 3
    assert valid.set_index("media_id").loc["train/dia0_utt1", "transcript"] == "You, you're fine."
    # the same manifest read as EmotiW 7 refuses Joy: the label space matters
    _, emotiw_issues = load_manifest(path)
    assert [i.media_id for i in emotiw_issues] == ["train/dia0_utt0"]


def test_clips_in_another_folder_and_a_single_csv(meld: Path, tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    _clip(clips / "dia0_utt0.mp4")  # a folder that names no split serves every CSV
    converted = convert_dataset("meld", meld / "dev_sent_emo.csv", clips)
    assert converted.table["path"].tolist() == [str(clips / "dia0_utt0.mp4")]
    assert converted.issues == []


def test_a_csv_without_meld_s_columns_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "train_sent_emo.csv").write_text("Utterance,Emotion\nhi,joy\n")
    with pytest.raises(ManifestError, match="holds no MELD CSV"):
        convert_dataset("meld", tmp_path)
    with pytest.raises(ManifestError, match=r"lacks column\(s\) \['Dialogue_ID', 'Utterance_ID'\]"):
        convert_dataset("meld", tmp_path / "train_sent_emo.csv")
