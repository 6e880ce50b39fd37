"""`raypipe dataset convert` as a user runs it: a manifest written, what was left out listed,
one-line errors with exit code 2, every registered format named in --help."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raypipe.cli import app
from raypipe.labels import LABEL_SPACES
from raypipe.media.datasets import DATASET_FORMATS
from raypipe.media.manifest import load_manifest


def _gaf(root: Path) -> Path:
    for name in ("train/Positive/a.jpg", "train/Negative/b.jpg", "val/Sad/c.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def test_convert_writes_the_manifest_and_lists_what_was_left_out(tmp_path: Path) -> None:
    root = _gaf(tmp_path / "gaf")
    out = tmp_path / "manifests" / "gaf.csv"
    result = CliRunner().invoke(
        app, ["dataset", "convert", str(root), "--format", "gaf", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert (
        lines[0] == "left out: val/Sad/c: unknown label 'Sad'; allowed: Positive, Neutral, Negative"
    )
    assert lines[-1] == (
        f"wrote 2 media to {out}; labels: gaf (Positive, Neutral, Negative); 1 left out"
    )
    valid, issues = load_manifest(out, DATASET_FORMATS.get("gaf").convert(root, None).label_space())
    assert issues == [] and sorted(valid["label"]) == ["Negative", "Positive"]


def test_a_relative_source_folder_finds_every_media(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _gaf(tmp_path / "gaf")
    monkeypatch.chdir(tmp_path)  # as a user runs it: `raypipe dataset convert gaf ...`
    result = CliRunner().invoke(
        app, ["dataset", "convert", "gaf", "--format", "gaf", "--out", "m.csv"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("wrote 2 media to m.csv")
    valid, issues = load_manifest(tmp_path / "m.csv", LABEL_SPACES.get("gaf"))
    assert issues == [] and sorted(valid["path"].map(Path).map(Path.is_file)) == [True, True]


def test_convert_json(tmp_path: Path) -> None:
    root = _gaf(tmp_path / "gaf")
    out = tmp_path / "gaf.parquet"
    result = CliRunner().invoke(
        app, ["dataset", "convert", str(root), "--format", "gaf", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["media"] == 2 and payload["labels"] == "gaf" and out.is_file()
    assert payload["issues"] == [
        {
            "where": "val/Sad/c",
            "message": "unknown label 'Sad'; allowed: Positive, Neutral, Negative",
        }
    ]


def test_user_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(
        app, ["dataset", "convert", str(tmp_path), "--format", "afew", "--out", "m.csv"]
    )
    assert unknown.exit_code == 2
    assert unknown.stderr.strip() == (
        "error: unknown dataset format 'afew' (registry DATASET_FORMATS); allowed: abaw, meld, "
        "gaf, cexpr; pick one with --format."
    )
    missing = runner.invoke(
        app, ["dataset", "convert", str(tmp_path / "nope"), "--format", "meld", "--out", "m.csv"]
    )
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    suffix = runner.invoke(
        app, ["dataset", "convert", str(_gaf(tmp_path / "g")), "--format", "gaf", "--out", "m.txt"]
    )
    assert suffix.exit_code == 2 and "use .csv, .tsv, .jsonl or .parquet" in suffix.stderr
    assert len(suffix.stderr.strip().splitlines()) == 1


def test_help_names_every_registered_format() -> None:
    result = CliRunner().invoke(app, ["dataset", "convert", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.replace("│", " ").split())
    for name in DATASET_FORMATS:
        assert f"{name} (" in text
