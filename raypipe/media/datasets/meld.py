"""MELD (Friends utterances): its CSVs of utterances (``train_sent_emo.csv``,
``dev_sent_emo.csv``, ``test_sent_emo.csv``) beside the clips ``dia{D}_utt{U}.mp4`` as a
manifest with MELD's seven emotions as labels and the utterances as transcripts (registered
as dataset format ``meld``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from raypipe.errors import ManifestError
from raypipe.labels import LABEL_SPACES
from raypipe.media.datasets.registry import ConvertedDataset, DatasetIssue, register_format
from raypipe.media.manifest import split_in_name

#: Columns of a MELD CSV that the manifest needs.
REQUIRED_COLUMNS = ("Utterance", "Emotion", "Dialogue_ID", "Utterance_ID")
#: A MELD clip's file name.
CLIP = re.compile(r"^dia(\d+)_utt(\d+)\.mp4$", re.IGNORECASE)
#: Manifest columns, in order.
COLUMNS = (
    "media_id",
    "path",
    "label",
    "split",
    "transcript",
    "speaker",
    "sentiment",
    "dialogue_id",
    "utterance_id",
)


def find_meld_csvs(source: Path) -> list[Path]:
    """The utterance CSVs at ``source``: the file itself, or the ``*.csv`` files in the folder
    (and its subfolders one level down) that have MELD's columns, in path order."""
    if source.is_file():
        return [source]
    candidates = sorted([*source.glob("*.csv"), *source.glob("*/*.csv")])
    return [c for c in candidates if set(REQUIRED_COLUMNS) <= set(_header(c))]


def _header(path: Path) -> list[str]:
    try:
        return list(pd.read_csv(path, nrows=0, encoding_errors="replace").columns)
    except (ValueError, OSError):
        return []


def clip_index(media: Path) -> dict[tuple[str | None, int, int], Path]:
    """Every ``dia{D}_utt{U}.mp4`` under ``media`` by (split, D, U); the split is that of the
    nearest folder whose name says one (``train_splits``, ``dev_splits_complete``,
    ``output_repeated_splits_test``), None where none does. Dialogue ids restart in each
    split, so the split is part of a clip's identity."""
    clips: dict[tuple[str | None, int, int], Path] = {}
    for folder, _, files in os.walk(media):
        parts = Path(folder).relative_to(media).parts
        splits = [s for s in map(split_in_name, parts) if s]
        split = splits[-1] if splits else None
        for name in files:
            match = CLIP.match(name)
            if match:
                key = (split, int(match.group(1)), int(match.group(2)))
                clips.setdefault(key, Path(folder, name))
    return clips


def _split_of_csv(path: Path) -> str | None:
    # train_sent_emo.csv -> train, dev_sent_emo.csv -> val, test_sent_emo.csv -> test
    return split_in_name(path.stem)


def _whole(value: str) -> int | None:
    text = value.strip()
    return int(text) if re.fullmatch(r"\d+", text) else None


@register_format(
    "meld",
    labels="meld",
    description="MELD: utterance CSVs (*_sent_emo.csv) beside dia{D}_utt{U}.mp4 clips",
)
def meld_manifest(source: Path, media: Path | None = None) -> ConvertedDataset:
    """A manifest of MELD's utterances: ``media_id`` ``<split>/dia{D}_utt{U}``, ``path`` (the
    clip), ``label`` (MELD emotion), ``split`` (train, val for dev, test), ``transcript`` (the
    utterance), ``speaker``, ``sentiment``, ``dialogue_id``, ``utterance_id``.

    ``source`` is a MELD CSV or the folder holding them; clips are looked for under ``media``
    (default: the CSVs' folder). A row whose clip is missing, whose emotion is unknown or
    whose ids are not whole numbers is an issue (named by CSV and row) and left out.
    """
    csvs = find_meld_csvs(source)
    if not csvs:
        raise ManifestError(
            f"'{source}' holds no MELD CSV (a .csv with columns {', '.join(REQUIRED_COLUMNS)}); "
            "give the folder of train_sent_emo.csv, dev_sent_emo.csv and test_sent_emo.csv."
        )
    root = media or (source if source.is_dir() else source.parent)
    clips = clip_index(root)
    space = LABEL_SPACES.get("meld")
    rows: list[dict[str, object]] = []
    issues: list[DatasetIssue] = []
    seen: dict[str, str] = {}
    for csv in csvs:
        try:
            table = pd.read_csv(csv, dtype=str, keep_default_na=False, encoding_errors="replace")
        except (ValueError, OSError) as exc:
            raise ManifestError(
                f"MELD CSV '{csv}' cannot be parsed ({exc}); fix its format."
            ) from None
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise ManifestError(
                f"MELD CSV '{csv}' lacks column(s) {missing} (found: {list(table.columns)}); "
                "give MELD's own CSV."
            )
        split = _split_of_csv(csv)
        for number, record in enumerate(table.to_dict(orient="records"), start=1):
            where = f"{csv} row {number}"
            dialogue, utterance = _whole(record["Dialogue_ID"]), _whole(record["Utterance_ID"])
            if dialogue is None or utterance is None:
                issues.append(
                    DatasetIssue(
                        where,
                        f"Dialogue_ID '{record['Dialogue_ID']}' and Utterance_ID "
                        f"'{record['Utterance_ID']}' must be whole numbers; the row is left out",
                    )
                )
                continue
            name = f"dia{dialogue}_utt{utterance}"
            label = space.canonical(record["Emotion"])
            if label is None:
                issues.append(
                    DatasetIssue(
                        where,
                        f"unknown emotion '{record['Emotion']}' ({name}); allowed: "
                        f"{', '.join(space.classes)}; the row is left out",
                    )
                )
                continue
            clip = clips.get((split, dialogue, utterance)) or clips.get((None, dialogue, utterance))
            if clip is None:
                issues.append(
                    DatasetIssue(
                        where,
                        f"clip {name}.mp4 not found under '{root}'"
                        + (f" (in a {split} folder)" if split else "")
                        + "; the utterance is left out",
                    )
                )
                continue
            media_id = f"{split}/{name}" if split else name
            if media_id in seen:
                issues.append(
                    DatasetIssue(where, f"{name} repeats {seen[media_id]}; the repeat is left out")
                )
                continue
            seen[media_id] = where
            rows.append(
                {
                    "media_id": media_id,
                    "path": str(clip),
                    "label": label,
                    "split": split,
                    "transcript": record["Utterance"].strip(),
                    "speaker": record.get("Speaker", "").strip() or None,
                    "sentiment": record.get("Sentiment", "").strip().lower() or None,
                    "dialogue_id": dialogue,
                    "utterance_id": utterance,
                }
            )
    return ConvertedDataset("meld", pd.DataFrame(rows, columns=list(COLUMNS)), "meld", issues)
