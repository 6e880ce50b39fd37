"""The CLI as a user runs it: help for every command, one-sentence errors, exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["raypipe", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "command",
    [
        ["extract"],
        ["store", "status"],
        ["tune-classifiers"],
        ["fuse"],
        ["predict"],
        ["train"],
        ["report"],
        ["demo"],
        ["recipe"],
    ],
)
def test_help(command: list[str]) -> None:
    result = _run(*command, "--help")
    assert result.returncode == 0 and f"Usage: raypipe {' '.join(command)}" in result.stdout
    if command != ["store", "status"] and command != ["report"]:
        assert "--config" in result.stdout and "--set" in result.stdout


#: Each command's flags and the config field whose docstring is their help.
FLAG_FIELDS = {
    "extract": ("ExtractConfig", {"--manifest": "manifest", "--out": "out"}),
    "tune-classifiers": ("TuneClassifiersConfig", {"--store": "store", "--run": "run"}),
    "fuse": ("FuseConfig", {"--run": "run"}),
    "predict": ("PredictConfig", {"--run": "run", "--manifest": "manifest", "--out": "out"}),
    "train": ("TrainConfig", {"--run": "run", "--data": "data.root"}),
    "demo": ("DemoConfig", {"--out": "out", "--task": "task"}),
}


@pytest.mark.parametrize("command", sorted(FLAG_FIELDS))
def test_flag_help_is_the_config_fields_docstring(command: str) -> None:
    import raypipe.config as configs
    from raypipe.cli import app
    from raypipe.config.base import field_help

    model_name, flags = FLAG_FIELDS[command]
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    # The help is a box of wrapped columns: unwrapped, each flag is followed by its help.
    text = " ".join(result.stdout.replace("│", " ").split())
    for flag, field in flags.items():
        doc = field_help(getattr(configs, model_name), field)
        assert len(doc) > 15 and doc in text[text.index(f" {flag} ") :], f"{command} {flag}"


def test_bad_config_fails_before_work_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("video:\n  fps: 0\n")
    result = _run(
        "extract", "--manifest", "m.csv", "--out", str(tmp_path / "s"), "--config", str(config)
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "video.fps" in lines[0] and str(config) in lines[0]
    assert not (tmp_path / "s").exists()


def test_missing_manifest_is_named(tmp_path: Path) -> None:
    result = _run(
        "extract", "--manifest", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "s")
    )
    assert (
        result.returncode == 2
        and "absent.csv" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_store_status_on_a_non_store(tmp_path: Path) -> None:
    result = _run("store", "status", str(tmp_path))
    assert result.returncode == 2 and "not a raypipe feature store" in result.stderr


def test_store_status_json_on_a_written_store(tmp_path: Path) -> None:
    import pandas as pd

    from raypipe.store.feature_store import ExtractorRecord, FeatureStore

    store = FeatureStore(str(tmp_path / "s"))
    store.initialise()
    store.register_extractors([ExtractorRecord("face_expression", "v", "frame", 128, "visual", {})])
    store.write_manifest(pd.DataFrame({"media_id": ["a", "b"], "path": ["x", "y"]}))
    store.write_result(
        "face_expression", "v", "a", {"status": "failed", "error": "a.mp4: file is empty (0 bytes)"}
    )
    store.write_manifest(pd.DataFrame({"media_id": ["c"], "path": ["z"]}))
    store.write_result("face_expression", "v", "c", {"status": "ok", "frames": 4})
    payload = json.loads(_run("store", "status", str(tmp_path / "s"), "--json").stdout)
    [summary] = payload["extractors"]
    assert (summary["ok"], summary["failed"], summary["missing"]) == (1, 1, 1)
    by_id = {r["media_id"]: r for r in payload["rows"]}  # the rows that need a look
    assert set(by_id) == {"a", "b"}
    assert by_id["a"]["status"] == "failed" and "empty" in by_id["a"]["error"]
    assert by_id["b"]["status"] == "missing"
    assert {"media_id", "extractor", "status", "error", "frames", "coverage"} <= set(by_id["a"])
    every = json.loads(_run("store", "status", str(tmp_path / "s"), "--json", "--all").stdout)
    assert {r["media_id"]: r["status"] for r in every["rows"]} == {
        "a": "failed",
        "b": "missing",
        "c": "ok",
    }
