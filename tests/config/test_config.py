from pathlib import Path

import pytest

from raypipe.config import CONFIG_MODELS, ExtractConfig
from raypipe.config.base import apply_overrides, load_config
from raypipe.errors import ConfigError
from raypipe.extractors.registry import EXTRACTORS

JOBS = Path(__file__).resolve().parents[2] / "jobs"
CONFIGS = sorted((JOBS / "configs").glob("*.yaml"))


def test_job_configs_are_found() -> None:
    assert len(CONFIGS) >= 6, f"no job configs under {JOBS}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_job_config_validates_and_starts_with_its_command(path: Path) -> None:
    model = CONFIG_MODELS[path.stem]
    load_config(model, path)
    first = path.read_text().splitlines()[:4]
    assert first[0].startswith("#")
    assert any(f"python jobs/{path.stem}.py" in line for line in first)
    assert (JOBS / f"{path.stem}.py").is_file()


def test_unknown_field_names_file_field_and_allowed(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("video:\n  fsp: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(ExtractConfig, path)
    message = str(info.value)
    assert str(path) in message and "video.fsp" in message and "fps" in message
    assert "\n" not in message


def test_out_of_range_value_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("video:\n  fps: -1\n")
    with pytest.raises(ConfigError, match=r"video\.fps.*greater than 0"):
        load_config(ExtractConfig, path)


def test_wrong_literal_lists_allowed_values() -> None:
    with pytest.raises(ConfigError, match="eGeMAPSv02"):
        load_config(ExtractConfig, None, ["opensmile.feature_set=nope"])


def test_overrides_then_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("video:\n  fps: 3\nbatch_size: 4\n")
    cfg = load_config(
        ExtractConfig, path, ["video.fps=7", "batch_size=1"], {"out": "s", "manifest": None}
    )
    assert cfg.video.fps == 7.0 and cfg.batch_size == 1 and cfg.out == "s" and cfg.manifest is None


def test_broken_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("video: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(ExtractConfig, path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(ExtractConfig, tmp_path / "absent.yaml")


def test_apply_overrides_does_not_mutate() -> None:
    data = {"a": {"b": 1}}
    out = apply_overrides(data, ["a.b=2", "c.d=[1, 2]"])
    assert data == {"a": {"b": 1}} and out == {"a": {"b": 2}, "c": {"d": [1, 2]}}


def test_all_extractors_disabled_is_rejected() -> None:
    with pytest.raises(ConfigError, match="at least one extractor"):
        load_config(ExtractConfig, None, [f"{name}.enabled=false" for name in EXTRACTORS])
