"""`raypipe recipe NAME`: run one registered recipe (RECIPES) from its config, ``--set``
overrides and flags, like every other command."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from raypipe.cli.failures import user_errors
from raypipe.cli.options import AddressOpt, ConfigOpt, DryRunOpt, JsonOpt, SetOpt
from raypipe.cli.options import load as _load
from raypipe.cli.output import print_dry_run, print_json
from raypipe.config.base import field_help
from raypipe.config.frames import FrameDataConfig
from raypipe.errors import ConfigError


def _recipe_help() -> str:
    from raypipe.recipes import RECIPES

    return "Recipe: " + "; ".join(f"{r.name} ({r.summary})" for _, r in RECIPES.items())


def recipe(
    name: Annotated[str, typer.Argument(help=_recipe_help())],
    run: Annotated[
        str | None,
        typer.Option(help="Run folder for checkpoints, models and predictions (path or URI)."),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(help=field_help(FrameDataConfig, "store") + " Sets data.store."),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a published system's recipe (multitask, sequence, cascade, group) on Ray;
    re-running the same command resumes it. `raypipe config show NAME` prints the recipe's
    full config."""
    from raypipe.recipes import RECIPES

    with user_errors(f"recipe {name}") as where:
        if name not in RECIPES:
            raise ConfigError(f"{RECIPES.unknown_message(name)}.")
        entry = RECIPES.get(name)
        overrides = [*(set_ or []), *([f"data.store={store}"] if store else [])]
        cfg: Any = _load(entry.config, config, overrides, {"run": run}, address)
        where.path = str(cfg.run) if getattr(cfg, "run", None) else None
        if dry_run:
            planner = entry.load_planner()
            plan = planner(cfg) if planner is not None else _plan(name, cfg)
        else:
            summary = entry.load_runner()(cfg)
    if dry_run:
        print_dry_run(plan, as_json)
        return
    if as_json:
        print_json(json.loads(json.dumps(summary.__dict__, default=str)))
        return
    typer.echo(summary.line())
    typer.echo(f"see the results: raypipe report {summary.run}")


def _plan(name: str, cfg: Any) -> Any:
    """What the recipe would train on, per split (reads the data; starts no Ray, writes
    nothing)."""
    import pandas as pd

    from raypipe.pipeline.dry_run import DryRun
    from raypipe.recipes.frames import build_frame_data

    data = build_frame_data(cfg.data)
    rows = []
    for split in ("train", "val", "test"):
        at = data.split == split
        rows.append(
            {
                "split": split,
                "media": len(set(data.media_id[at])),
                "frames": int(at.sum()),
                "face_frames": int((at & data.has_face).sum()),
                "expr_labelled": int((at & (data.expr >= 0)).sum()),
                "au_labelled": int((at & data.au_mask.any(1)).sum()),
                "va_labelled": int((at & data.va_mask.any(1)).sum()),
            }
        )
    summary = {
        "recipe": name,
        "run": str(cfg.run),
        "features": data.dim,
        "classes": list(data.classes),
        "action_units": list(data.au_names),
    }
    lines = [f"recipe {name}: {data.dim} features per frame, run folder {cfg.run}"]
    return DryRun(summary, {"splits": ("frames per split", pd.DataFrame(rows))}, lines)
