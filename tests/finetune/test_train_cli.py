"""`raypipe train` as a user runs it: help, and one-sentence errors before any work starts."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["raypipe", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_flags() -> None:
    result = _run("train", "--help")
    assert result.returncode == 0
    for flag in ("--data", "--run", "--config", "--set", "--address"):
        assert flag in result.stdout


def test_missing_data_and_bad_values_fail_in_one_line(tmp_path: Path) -> None:
    result = _run("train", "--run", str(tmp_path / "run"))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "data.root" in errors[0]
    result = _run("train", "--data", str(tmp_path), "--run", "r", "--set", "lr_factor=2")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "lr_factor" in errors[0]
    result = _run("train", "--data", str(tmp_path / "absent"), "--run", str(tmp_path / "r"))
    assert result.returncode == 2 and "is not a folder" in result.stderr
    assert not (tmp_path / "r").exists()


def test_an_edited_search_grid_is_a_new_experiment(tmp_path: Path) -> None:
    from raypipe.config import TrainConfig
    from raypipe.config.base import load_config
    from raypipe.pipeline.train import search_experiment

    def experiment(*overrides: str) -> Path:
        flags = {"run": tmp_path / "run", "data": {"root": str(tmp_path)}}
        return search_experiment(load_config(TrainConfig, None, list(overrides), flags))

    first = experiment("search.lr=[0.001,0.0001]")
    assert first == experiment("search.lr=[0.001,0.0001]")  # the same search resumes
    assert first != experiment("search.lr=[0.01,0.003]")
    assert first != experiment("search.lr=[0.001,0.0001]", "search.dropout=[0.2]")
    # Settings that do not change what is learnt keep the experiment.
    assert first == experiment("search.lr=[0.001,0.0001]", "epochs=9")
