"""Options shared by the commands, and how a command's config is put together: its YAML, then
``--set`` overrides, then its flags (each flag's help is its config field's docstring)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from raypipe.config.base import field_help, load_config

M = TypeVar("M")

ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config", "-c", help="YAML config file (a path or a URI such as s3://b/x.yaml)."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config field, e.g. --set video.fps=2 (repeatable)."),
]
AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster address; omit for an embedded local Ray."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print what the command would do (with --json: as JSON) and stop: reads the "
        "inputs, starts no Ray, writes nothing.",
    ),
]


def flag(model: type[Any], field: str) -> Any:
    """A command-line option whose help is the config field's docstring."""
    return typer.Option(help=field_help(model, field))


def load(
    model: type[M],
    config: str | Path | None,
    overrides: list[str] | None,
    flags: dict[str, Any],
    address: str | None,
) -> M:
    """The command's config: its YAML, then --set overrides, then its flags (and --address)."""
    extra = [f"ray.address={address}"] if address else []
    return load_config(model, config, [*(overrides or []), *extra], flags)
