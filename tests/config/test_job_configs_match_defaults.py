"""Every job config in jobs/configs/ agrees with `raypipe config show`: each key is a field of
the command's config model, and each value is the model's default unless its line (or the line
of a key above it) carries an ``# override`` comment (the convention stated at the top of each
file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from raypipe.config import CONFIG_MODELS
from raypipe.config.base import load_config
from raypipe.config.show import render_defaults, section_model

JOBS = Path(__file__).resolve().parents[2] / "jobs"
CONFIGS = sorted((JOBS / "configs").glob("*.yaml"))
MARK = "# override"


def _key_lines(node: yaml.MappingNode, prefix: tuple[str, ...]) -> dict[tuple[str, ...], int]:
    """Line (0-based) of every mapping key, by key path, descending through mappings."""
    lines: dict[tuple[str, ...], int] = {}
    for key, value in node.value:
        path = (*prefix, key.value)
        lines[path] = key.start_mark.line
        if isinstance(value, yaml.MappingNode):
            lines.update(_key_lines(value, path))
    return lines


def disagreements(path: Path) -> list[str]:
    """Keys of a job config that are not fields, or differ from the default unmarked."""
    model = CONFIG_MODELS[path.stem]
    text = path.read_text()
    raw = text.splitlines()
    node = yaml.compose(text)
    if node is None:
        return []
    resolved = load_config(model, path).model_dump(mode="json")
    default = model().model_dump(mode="json")
    problems = []
    lines = _key_lines(node, ())
    for keys, line in sorted(lines.items(), key=lambda item: item[1]):
        # Only fields of config models are compared (a dict field's keys are its value).
        current: Any = model
        for key in keys[:-1]:
            current = section_model(current.model_fields[key].annotation) if current else None
        if current is None:
            continue
        if keys[-1] not in current.model_fields:
            problems.append(f"line {line + 1}: '{'.'.join(keys)}' is not a field")
            continue
        if section_model(current.model_fields[keys[-1]].annotation) is not None:
            continue  # a section: its own keys are compared
        value, base = resolved, default
        for key in keys:
            value, base = value[key], base[key]
        marked = any(MARK in raw[lines[keys[: i + 1]]] for i in range(len(keys)))
        if value != base and not marked:
            problems.append(
                f"line {line + 1}: '{'.'.join(keys)}' is {value!r}, the default is {base!r}; "
                f"mark the line '{MARK}' or drop it"
            )
        if value == base and MARK in raw[line]:
            problems.append(f"line {line + 1}: '{'.'.join(keys)}' is marked but is the default")
    return problems


def test_job_configs_are_found() -> None:
    assert {p.stem for p in CONFIGS} == set(CONFIG_MODELS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_job_config_agrees_with_config_show(path: Path) -> None:
    assert disagreements(path) == []
    lines = path.read_text().splitlines()
    head = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    assert any(MARK in line for line in head), "the header does not state the convention"


@pytest.mark.parametrize("command", sorted(CONFIG_MODELS))
def test_config_show_is_a_valid_config_of_the_defaults(command: str, tmp_path: Path) -> None:
    text = render_defaults(command.replace("_", "-"))
    path = tmp_path / "c.yaml"
    path.write_text(text)
    model = CONFIG_MODELS[command]
    assert load_config(model, path).model_dump() == model().model_dump()
    # every field's docstring is there, as a comment
    for name, field in model.model_fields.items():
        if field.description:
            assert f"# {field.description.strip().splitlines()[0]}".rstrip() in text, name


def test_a_changed_value_without_the_mark_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "fuse.yaml"
    path.write_text("num_samples: 7\ncv_folds: 4  # override: fewer folds\nseed: 0\n")
    problems = disagreements(path)
    assert len(problems) == 1 and "num_samples" in problems[0]
