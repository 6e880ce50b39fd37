"""Failures a user can cause, reproduced for real through the CLI: each ends in one line on
stderr naming the file or field and the fix, exit code 2, no traceback. A failure of Ray itself
is one line too (exit code 1), saying that re-running the same command resumes. Also --version,
`config show` and what runs and extract jobs record about themselves."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from raypipe.cli import app


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _one_error_line(result: Result, code: int = 2) -> str:
    """The single 'error:' line of a failed command (asserting there is exactly one)."""
    assert result.exit_code == code, (result.exit_code, result.stderr, result.stdout)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _manifest(path: Path, rows: str) -> Path:
    path.write_text("media_id,path,label,split\n" + rows)
    return path


# -- manifests, media paths, store paths -----------------------------------------------------
def test_manifest_with_a_header_and_no_rows(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "empty.csv", "")
    line = _one_error_line(_invoke("extract", "--manifest", str(manifest), "--out", "s"))
    assert "empty.csv" in line and "no rows" in line
    assert not (tmp_path / "s").exists()


def test_a_folder_given_as_media_is_called_a_folder(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    manifest = _manifest(tmp_path / "m.csv", "a,clips,Happy,train\n")
    store = tmp_path / "store"
    result = _invoke("extract", "--manifest", str(manifest), "--out", str(store))
    assert result.exit_code == 0, result.stderr
    from raypipe.store.feature_store import FeatureStore

    status = FeatureStore(str(store)).status()
    errors = set(status.loc[status["media_id"] == "a", "error"])
    assert errors and all("is a folder, not a media file" in e for e in errors), errors
    # the extract job left its record next to the results
    (job,) = FeatureStore(str(store)).job_records()
    assert job["command"] == "extract" and job["config"]["manifest"] == str(manifest)
    assert job["raypipe_version"] and "code_revision" in job
    assert job["summary"]["manifest_issues"] == 1


def test_probe_calls_a_folder_a_folder(tmp_path: Path) -> None:
    from raypipe.errors import MediaError
    from raypipe.media.probe import open_container

    with pytest.raises(MediaError, match="is a folder"):
        open_container(tmp_path)


def test_out_naming_an_existing_file(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "m.csv", "a,x.mp4,Happy,train\n")
    (tmp_path / "x.mp4").write_bytes(b"")
    taken = tmp_path / "taken"
    taken.write_text("not a store")
    line = _one_error_line(_invoke("extract", "--manifest", str(manifest), "--out", str(taken)))
    assert str(taken) in line and "existing file" in line


def test_out_naming_a_folder_of_other_files(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "m.csv", "a,x.mp4,Happy,train\n")
    (tmp_path / "x.mp4").write_bytes(b"")
    line = _one_error_line(_invoke("extract", "--manifest", str(manifest), "--out", str(tmp_path)))
    assert str(tmp_path) in line and "not a raypipe feature store" in line


def test_store_path_that_is_not_a_store(tmp_path: Path) -> None:
    line = _one_error_line(
        _invoke("tune-classifiers", "--store", str(tmp_path), "--run", str(tmp_path / "r"))
    )
    assert str(tmp_path) in line and "not a raypipe feature store" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args",
    [["fuse", "--run"], ["report"], ["predict", "--manifest", "m.csv", "--run"]],
    ids=["fuse", "report", "predict"],
)
def test_missing_run_folder(args: list[str], tmp_path: Path) -> None:
    line = _one_error_line(_invoke(*args, str(tmp_path / "absent")))
    assert str(tmp_path / "absent") in line and "does not exist" in line


def test_one_class_train_split_fails_before_the_search(tmp_path: Path) -> None:
    from tests.classify.synthetic import make_store

    store, _ = make_store(tmp_path / "store", n_per_class=4)
    manifest = store.read_manifest()
    manifest.loc[manifest["split"] == "train", "label"] = "Angry"
    store.write_manifest(manifest)
    result = _invoke(
        "tune-classifiers",
        "--store",
        str(tmp_path / "store"),
        "--run",
        str(tmp_path / "run"),
        "--set",
        "feature_sets=[{extractor: voice_sim}]",
        "--set",
        "classifiers=[logreg]",
    )
    line = _one_error_line(result)
    assert "voice_sim" in line and "one class only (Angry)" in line and "manifest" in line


# -- a full disk -------------------------------------------------------------------------------
@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on a real, full 1 MiB tmpfs (needs root); where mounting is refused, writes of
    the feature store raise ENOSPC instead (the same OSError a full disk raises)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
            capture_output=True,
        ).returncode
        == 0
    )
    if mounted:
        with contextlib.suppress(OSError):  # raised once the disk is full: as wanted
            (folder / "fill").write_bytes(b"\0" * 1024 * 1024)
    else:
        import errno

        from raypipe.store.feature_store import FeatureStore

        def no_space(self: FeatureStore, relative: str, data: bytes) -> None:
            raise OSError(errno.ENOSPC, "Error writing bytes to file. No space left on device")

        monkeypatch.setattr(FeatureStore, "_write_bytes", no_space)
    yield folder
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)


def test_full_disk_is_one_line_naming_the_path(full_disk: Path, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "m.csv", "a,x.mp4,Happy,train\n")
    (tmp_path / "x.mp4").write_bytes(b"")
    store = full_disk / "store"
    line = _one_error_line(_invoke("extract", "--manifest", str(manifest), "--out", str(store)))
    assert str(store) in line and "no space left on device" in line and "re-run" in line


def test_full_disk_filled_by_the_tmpfs_fixture_is_really_full(full_disk: Path) -> None:
    if not (full_disk / "fill").exists():
        pytest.skip("tmpfs could not be mounted here (not root); the write is patched instead")
    with pytest.raises(OSError) as info:
        (full_disk / "more").write_bytes(b"\0" * 64 * 1024)
    assert info.value.errno == 28


# -- Ray failing under a command -----------------------------------------------------------------
def _fail_with(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    import raypipe.pipeline.extract

    def run_extract(config: object) -> None:
        raise error

    monkeypatch.setattr(raypipe.pipeline.extract, "run_extract", run_extract)


def test_lost_ray_node_is_one_line_saying_a_rerun_resumes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import ray.exceptions

    _fail_with(monkeypatch, ray.exceptions.NodeDiedError("node 10.0.0.7 died (heartbeats lost)"))
    result = _invoke("extract", "--manifest", "m.csv", "--out", str(tmp_path / "s"))
    line = _one_error_line(result, code=1)
    assert "NodeDiedError" in line and "node 10.0.0.7 died" in line
    assert "re-running the same command resumes" in line


def test_raypipe_error_raised_inside_a_ray_task_is_its_own_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import ray.exceptions

    from raypipe.errors import ConfigError

    cause = ConfigError("Feature set 'x' is wrong; fix it.")
    wrapped = ray.exceptions.RayTaskError("f", "Traceback ...", cause).as_instanceof_cause()
    _fail_with(monkeypatch, wrapped)
    line = _one_error_line(_invoke("extract", "--manifest", "m.csv", "--out", "s"))
    assert line == "error: Feature set 'x' is wrong; fix it."


def test_error_known_only_as_text_of_a_ray_data_task_is_recognised() -> None:
    from raypipe.cli.failures import explain as _explain

    class UserCodeException(Exception):  # noqa: N818 (named as Ray names it)
        pass

    UserCodeException.__module__ = "ray.exceptions"
    text = (
        "ray::MapWorker(MapBatches(ExtractionActor)).submit()\n"
        '  File "pyarrow/error.pxi", line 92, in pyarrow.lib.check_status\n'
        "OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left\n"
        "\nThe above exception was the direct cause of the following exception:\n\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block.\n"
    )
    explained = _explain("extract", UserCodeException(text), "/data/store")
    assert explained is not None
    message, code = explained
    assert code == 2 and "'/data/store'" in message and "no space left" in message


def test_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_with(monkeypatch, ZeroDivisionError("division by zero"))
    result = _invoke("extract", "--manifest", "m.csv", "--out", "s")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: unexpected ZeroDivisionError")


# -- --version and config show ------------------------------------------------------------------
def test_version_names_package_and_revision() -> None:
    import raypipe

    result = subprocess.run(["raypipe", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith(f"raypipe {raypipe.__version__}")
    if (Path(raypipe.__file__).resolve().parents[1] / ".git").exists():
        assert "(revision " in result.stdout


def test_config_show_prints_commented_defaults() -> None:
    import yaml

    from raypipe.config import FuseConfig

    result = _invoke("config", "show", "fuse")
    assert result.exit_code == 0
    assert yaml.safe_load(result.stdout)["cv_folds"] == FuseConfig().cv_folds
    assert "# Folds of the val media for cross-validating each fusion method." in result.stdout
    line = _one_error_line(_invoke("config", "show", "fusion"))
    assert "'fusion'" in line and "tune-classifiers" in line


# -- runs record what produced them ------------------------------------------------------------
def test_tune_classifiers_run_records_config_version_and_revision(
    ray_local: None, tmp_path: Path
) -> None:
    from tests.classify.synthetic import make_store

    make_store(tmp_path / "store", n_per_class=4)
    result = _invoke(
        "tune-classifiers",
        "--store",
        str(tmp_path / "store"),
        "--run",
        str(tmp_path / "run"),
        "--set",
        "feature_sets=[{extractor: voice_sim}]",
        "--set",
        "classifiers=[logreg]",
        "--set",
        "param_grid={logreg: {C: [1.0]}}",
    )
    assert result.exit_code == 0, result.stderr
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    record = meta["provenance"]["tune-classifiers"]
    assert record["config"]["classifiers"] == ["logreg"]
    assert record["config"]["store"] == str(tmp_path / "store")
    assert record["raypipe_version"] and "code_revision" in record and record["at"]
    assert meta["store"]  # the run's own keys are kept
    assert isinstance(pd.read_parquet(tmp_path / "run" / "trials.parquet"), pd.DataFrame)
