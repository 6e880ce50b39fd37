"""Typed configuration: pydantic models loaded from YAML, with ``key=value`` overrides.

Every problem a user can cause (unknown field, wrong type, value out of range, unreadable YAML)
becomes one :class:`~raypipe.errors.ConfigError` sentence naming the file, the field and what is
allowed, raised before any work starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from raypipe.errors import ConfigError

M = TypeVar("M", bound="StrictModel")


class StrictModel(BaseModel):
    """Base of every raypipe config: unknown fields are errors and docstrings describe fields."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=False)


def _registered_label_space(name: str) -> str:
    from raypipe.labels import LABEL_SPACES

    if name not in LABEL_SPACES:
        raise ValueError(LABEL_SPACES.unknown_message(name))
    return name


#: A label space name registered in raypipe.labels.LABEL_SPACES.
LabelSpaceName = Annotated[str, AfterValidator(_registered_label_space)]
#: The label space of commands whose config does not name one (existing stores and runs).
DEFAULT_LABELS = "emotiw7"


class LabelsSetting(StrictModel):
    """The label space a command reads its manifest's labels in (shared by the commands
    that read labels: extract, tune-classifiers)."""

    labels: LabelSpaceName = DEFAULT_LABELS
    """Label space of the manifest's label column, a LABEL_SPACES name: emotiw7 (default),
    abaw_expr, abaw2020_expr, cexpr, meld, gaf, ...; tune-classifiers records it in run.json,
    and predict, fuse and report read the classes from there."""


def _describe(error: Mapping[str, Any]) -> str:
    field = ".".join(str(part) for part in error.get("loc", ())) or "(top level)"
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return f"field '{field}' is not a known option"
    message = str(error.get("msg", "invalid value"))
    return f"field '{field}': {message[0].lower() + message[1:]} (got {error.get('input')!r})"


def _allowed(model: type[StrictModel], loc: tuple[Any, ...]) -> str:
    """List the field names allowed at the level where an unknown field appeared."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return ""
        current = fields[part].annotation
    fields = getattr(current, "model_fields", None)
    return f"; allowed fields: {', '.join(sorted(fields))}" if fields else ""


def validate_config(model: type[M], data: Mapping[str, Any], source: str) -> M:
    """Validate ``data`` against ``model``; ``source`` names the file (or flags) in the error."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        extra = _allowed(model, tuple(first["loc"])) if first["type"] == "extra_forbidden" else ""
        more = (
            f" ({exc.error_count() - 1} more problem(s) after this one)"
            if exc.error_count() > 1
            else ""
        )
        raise ConfigError(f"{source}: {_describe(first)}{extra}{more}.") from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b=value`` into (["a", "b"], value), the value read as YAML (so 3 is an int)."""
    if "=" not in item:
        raise ConfigError(f"Override '{item}' must look like 'field=value' (e.g. fps=5).")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted ``key=value`` overrides applied."""
    result: dict[str, Any] = _deep_copy(data)
    for item in overrides:
        keys, value = parse_override(item)
        node = result
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[keys[-1]] = value
    return result


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _deep_copy(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_deep_copy(value) for value in data]
    return data


def _yaml_text(path: str | Path) -> str:
    """The text of a config file: a local path or a URI (``s3://bucket/run/export/...``)."""
    missing = ConfigError(f"Config file '{path}' does not exist; check the --config path.")
    if "://" in str(path) and not str(path).startswith("file://"):
        from raypipe.media.remote import read_bytes

        try:
            return read_bytes(str(path)).decode()
        except FileNotFoundError:
            raise missing from None
    if not Path(path).is_file():
        raise missing
    return Path(path).read_text()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` (a local path or a URI) with a one-sentence error on
    any problem."""
    text = _yaml_text(path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"Config file '{path}' is not valid YAML{where}; fix its syntax."
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file '{path}' must hold a mapping of field: value at top level.")
    return data


def load_config(
    model: type[M],
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> M:
    """Build a config from an optional YAML file, then ``key=value`` overrides, then CLI flags.

    Flags whose value is ``None`` (not given on the command line) are ignored.
    """
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    overrides = list(overrides)
    set_flags = {key: value for key, value in (flags or {}).items() if value is not None}
    data = apply_overrides(data, overrides)
    data.update(set_flags)
    source = f"Config '{path}'" if path is not None else "Configuration"
    if overrides or set_flags:
        source += " with command-line options"
    return validate_config(model, data, source)


def field_help(model: type[BaseModel], field: str) -> str:
    """The docstring of ``model``'s field (dotted for nested sections), as one line: the help
    text of the command-line flag that sets it, so flags and config never describe a field
    differently."""
    for part in field.split(".")[:-1]:
        model = model.model_fields[part].annotation  # type: ignore[assignment]
    description = model.model_fields[field.split(".")[-1]].description
    if not description:
        raise ValueError(f"{model.__name__}.{field} has no docstring")
    return " ".join(description.split())
