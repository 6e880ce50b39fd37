"""`raypipe config show COMMAND`: a command's full default config as YAML, each field's
docstring as the comment above it. The output is itself a valid config of that command."""

from __future__ import annotations

import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel

from raypipe.config import CONFIG_MODELS, RECIPE_CONFIGS
from raypipe.config.base import StrictModel
from raypipe.errors import ConfigError


def command_model(command: str) -> tuple[str, type[StrictModel]]:
    """The CLI name (``tune-classifiers``) and config model of a command given by its CLI or
    recipe name (``tune_classifiers``)."""
    key = command.strip().replace("-", "_")
    if key not in CONFIG_MODELS:
        known = ", ".join(name.replace("_", "-") for name in CONFIG_MODELS)
        raise ConfigError(f"'{command}' is not a command with a config; choose one of: {known}.")
    return key.replace("_", "-"), CONFIG_MODELS[key]


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The config model a field holds (``X`` or ``X | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if section_model(a) is not None]
        return models[0] if len(models) == 1 else None
    return None


def _scalar(value: Any) -> str:
    """One YAML value on one line (flow style for lists and mappings)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _comment(text: str | None, pad: str) -> list[str]:
    if not text:
        return []
    return [f"{pad}# {line}".rstrip() for line in text.strip().splitlines()]


def _render(model: type[BaseModel], data: dict[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for name, field in model.model_fields.items():
        value = data[name]
        lines += _comment(field.description, pad)
        section = section_model(field.annotation)
        if section is not None and isinstance(value, dict):
            lines.append(f"{pad}{name}:")
            lines += _render(section, value, indent + 2)
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            block = yaml.safe_dump(value, default_flow_style=None, sort_keys=False, width=100)
            lines.append(f"{pad}{name}:")
            lines += [f"{pad}  {line}" for line in block.rstrip().splitlines()]
        else:
            lines.append(f"{pad}{name}: {_scalar(value)}")
    return lines


def render_defaults(command: str) -> str:
    """The default config of ``command`` as commented YAML."""
    import raypipe

    name, model = command_model(command)
    if name in RECIPE_CONFIGS:
        name = f"recipe {name}"
    header = [
        f"# Defaults of `raypipe {name}` (raypipe {raypipe.__version__}); each field's help is",
        "# the comment above it. Edit a copy and pass it with --config FILE.",
        *_comment(model.__doc__, ""),
    ]
    return "\n".join([*header, *_render(model, model().model_dump(mode="json"), 0)]) + "\n"
