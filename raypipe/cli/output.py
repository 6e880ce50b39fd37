"""How commands print: rich tables for people, JSON for programs."""

from __future__ import annotations

import json
from typing import Any

import typer


def jsonable(value: Any) -> Any:
    """A JSON-ready form of a NumPy or pandas scalar (or its text)."""
    return value.item() if hasattr(value, "item") else str(value)


def print_json(payload: Any) -> None:
    """Print ``payload`` as indented JSON on stdout."""
    typer.echo(json.dumps(payload, indent=1, default=jsonable))


def records(frame: Any) -> list[dict[str, Any]]:
    """Rows of a DataFrame as dicts, None where a value is missing."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def print_table(frame: Any, title: str) -> None:
    """Print a DataFrame as a table (floats to 3 decimals, blanks for missing values)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(
            *[
                ("" if v != v else f"{v:.3f}")  # NaN: a score that does not apply
                if isinstance(v, float)
                else ("" if v is None else str(v))
                for v in row
            ]
        )
    Console(width=160).print(table)


def print_dry_run(plan: Any, as_json: bool) -> None:
    """Print a :class:`~raypipe.pipeline.dry_run.DryRun`: its summary and tables as one JSON
    object, or its tables then its lines."""
    if as_json:
        print_json({**plan.summary, **{k: records(t) for k, (_, t) in plan.tables.items()}})
        return
    for title, table in plan.tables.values():
        print_table(table, title)
    for line in plan.lines:
        typer.echo(line)
