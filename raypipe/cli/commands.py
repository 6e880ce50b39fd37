"""The commands of the `raypipe` command line. Every command reads an optional YAML config,
then `--set` overrides, then its own flags; bad values fail before any work starts, in one
sentence."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from raypipe.cli.dataset_commands import dataset_app
from raypipe.cli.failures import user_errors
from raypipe.cli.options import AddressOpt, ConfigOpt, DryRunOpt, JsonOpt, SetOpt
from raypipe.cli.options import flag as _flag
from raypipe.cli.options import load as _load
from raypipe.cli.output import print_dry_run, print_json, print_table, records
from raypipe.cli.recipe_commands import recipe
from raypipe.cli.store_commands import store_app
from raypipe.config import (
    DemoConfig,
    ExtractConfig,
    FuseConfig,
    PredictConfig,
    TrainConfig,
    TuneClassifiersConfig,
)
from raypipe.config.base import field_help
from raypipe.errors import RaypipeError

log = logging.getLogger("raypipe")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Distributed multimodal emotion-recognition pipeline on Ray.",
)
app.add_typer(store_app, name="store")
app.add_typer(dataset_app, name="dataset")
config_app = typer.Typer(no_args_is_help=True, help="Show the commands' default configs.")
app.add_typer(config_app, name="config")


def _print_version(value: bool) -> None:
    if value:
        from raypipe.pipeline.provenance import version_line

        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print raypipe's version (and code revision in a git checkout) and exit.",
        ),
    ] = False,
) -> None:
    """Distributed multimodal emotion-recognition pipeline on Ray."""


def _require_run(run: str | Path | None) -> None:
    """A run folder given to fuse, predict or report must exist (and hold run.json)."""
    from pyarrow.fs import FileType

    from raypipe.store.run_folder import RunFolder

    if run is not None and RunFolder(run).files.kind() == FileType.NotFound:
        raise RaypipeError(
            f"Run folder '{run}' does not exist; give the folder a `raypipe tune-classifiers` "
            "run wrote (its --run)."
        )


@app.command()
def extract(
    manifest: Annotated[str | None, _flag(ExtractConfig, "manifest")] = None,
    out: Annotated[str | None, _flag(ExtractConfig, "out")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Extract features of every media in a manifest into a versioned feature store. The
    actor pool grows and shrinks with the work and the cluster (min_workers to max_workers),
    or has a fixed size (workers)."""
    from raypipe.pipeline.extract import run_extract

    with user_errors("extract") as where:
        flags = {"manifest": manifest, "out": out}
        cfg = _load(ExtractConfig, config, set_, flags, address)
        where.path = cfg.out
        if dry_run:
            from raypipe.pipeline.dry_run import dry_run_extract

            plan = dry_run_extract(cfg)
        else:
            summary = run_extract(cfg)
    if dry_run:
        print_dry_run(plan, as_json)
        return
    if as_json:
        print_json(
            {
                "store": summary.store,
                "media": summary.media,
                "computed": dict(summary.computed),
                "skipped": summary.skipped,
                "manifest_issues": summary.manifest_issues,
                "kept_despite_manifest": summary.kept_despite_manifest,
                "nodes": dict(summary.nodes),
            }
        )
        return
    typer.echo(summary.line())
    typer.echo(f"see per-media results: raypipe store status {cfg.out}")


@app.command("tune-classifiers")
def tune_classifiers(
    store: Annotated[str | None, _flag(TuneClassifiersConfig, "store")] = None,
    run: Annotated[str | None, _flag(TuneClassifiersConfig, "run")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Search feature set x pooling x classifier x params with Ray Tune; store predictions."""
    from raypipe.pipeline.tune_classifiers import run_tune_classifiers

    with user_errors("tune-classifiers") as where:
        cfg = _load(TuneClassifiersConfig, config, set_, {"store": store, "run": run}, address)
        where.path = str(cfg.run) if cfg.run else None
        if dry_run:
            from raypipe.pipeline.dry_run import dry_run_tune_classifiers

            plan = dry_run_tune_classifiers(cfg)
        else:
            best = run_tune_classifiers(cfg)
    if dry_run:
        print_dry_run(plan, as_json)
        return
    if as_json:
        print_json({"run": str(cfg.run), "best": records(best)})
        return
    print_table(best, "best configuration per feature set x classifier")
    typer.echo(f"next: raypipe fuse --run {cfg.run}")


@app.command()
def fuse(
    run: Annotated[str | None, _flag(FuseConfig, "run")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Late-fuse stored predictions (weights, stacking, greedy selection, cascade) fitted on
    validation; the method with the best cross-validated val score is selected."""
    import pandas as pd

    from raypipe.pipeline.fuse import run_fuse

    with user_errors("fuse") as where:
        cfg = _load(FuseConfig, config, set_, {"run": run}, address)
        _require_run(cfg.run)
        where.path = str(cfg.run) if cfg.run else None
        record = run_fuse(cfg)
    # The task's metric (multilabel mean_f1, regression ccc; else the configured one).
    metric = record["search"]["metric"].removeprefix("val_")
    rows = [
        {
            "model": r["name"],
            "selected": "yes" if r["selected"] else "",
            **{
                f"{split}_{metric}": r["scores"][split].get(metric, float("nan"))
                for split in ("val", "val_cv", "test")
            },
        }
        for r in record["methods"].values()
    ]
    print_table(pd.DataFrame(rows), "fusion methods (val: fitted, val_cv: out-of-fold)")
    typer.echo(f"selected: {record['name']}")
    typer.echo(f"next: raypipe report {cfg.run}")


@app.command()
def train(
    run: Annotated[str | None, _flag(TrainConfig, "run")] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help=field_help(TrainConfig, "data.root")
            + " With --set data.source=store: the store holding the crops."
        ),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune a backbone with Ray Train (resumable), then export it as a face_backbone."""
    from raypipe.pipeline.train import run_train

    with user_errors("train") as where:
        cfg = _load(TrainConfig, config, set_, {"run": run}, address)
        if data is not None:
            key = "store" if cfg.data.source == "store" else "root"
            cfg.data = cfg.data.model_copy(update={key: data})
        where.path = str(cfg.run) if cfg.run else None
        if dry_run:
            from raypipe.pipeline.dry_run import dry_run_train

            plan = dry_run_train(cfg)
        else:
            summary = run_train(cfg)
    if dry_run:
        print_dry_run(plan, as_json)
        return
    if as_json:
        print_json({key: str(value) for key, value in summary.__dict__.items()})
        return
    typer.echo(summary.line())
    typer.echo(f"next: raypipe extract --config {summary.extract_config}")


@app.command()
def report(
    run: Annotated[str, typer.Argument(help="Run folder (a path or a URI such as s3://b/run).")],
    as_json: JsonOpt = False,
) -> None:
    """Metrics per model and split (fused rows start with 'fused'); writes report/report.md."""
    from raypipe.report.writer import metrics_table, table_records, write_report
    from raypipe.store.run_folder import RunFolder

    with user_errors("report") as where:
        _require_run(run)
        folder = RunFolder(run)
        where.path = folder.location("report")
        folder.meta()
        table = metrics_table(folder)
        path = write_report(folder)
    if as_json:
        typer.echo(json.dumps(table_records(table), indent=1))
        return
    print_table(table, f"metrics: {run}")
    typer.echo(f"report: {path}")


@app.command()
def predict(
    run: Annotated[str | None, _flag(PredictConfig, "run")] = None,
    manifest: Annotated[str | None, _flag(PredictConfig, "manifest")] = None,
    out: Annotated[str | None, _flag(PredictConfig, "out")] = None,
    format_: Annotated[
        str | None, typer.Option("--format", help=field_help(PredictConfig, "format"))
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Apply a run's fitted models and fusion to new media (extracting what is missing) and
    write a submission: a CSV (media_id, label, one probability column per class, how each
    media was scored) or, with --format abaw-expr|abaw-au|abaw-va, one annotation file per
    video with one line per frame."""
    from raypipe.pipeline.predict import run_predict

    with user_errors("predict") as where:
        flags = {"run": run, "manifest": manifest, "out": out, "format": format_}
        cfg = _load(PredictConfig, config, set_, flags, address)
        _require_run(cfg.run)
        where.path = str(cfg.out or cfg.run) if (cfg.out or cfg.run) else None
        summary = run_predict(cfg)
    typer.echo(summary.line())
    typer.echo(f"submission: {summary.submission}")


@app.command()
def demo(
    out: Annotated[Path | None, _flag(DemoConfig, "out")] = None,
    task: Annotated[str | None, _flag(DemoConfig, "task")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Generate a small labelled set, then extract, train or tune, fuse and report: face+voice
    clips (--task clips, the default) or Aff-Wild2-shaped videos labelled per frame (--task
    frames)."""
    from raypipe.pipeline.demo import run_demo

    with user_errors("demo") as where:
        cfg = _load(DemoConfig, config, set_, {"out": out, "task": task}, address)
        where.path = str(cfg.out)
        run_folder, lines = run_demo(cfg)
    typer.echo("\n".join(lines))
    typer.echo(f"see the results: raypipe report {run_folder}")


app.command("recipe")(recipe)


@config_app.command("show")
def config_show(
    command: Annotated[
        str, typer.Argument(help="extract, tune-classifiers, fuse, predict, train or demo.")
    ],
) -> None:
    """Print COMMAND's full default config as YAML, each field's help as a comment above it
    (a valid --config file)."""
    from raypipe.config.show import render_defaults

    with user_errors("config show"):
        text = render_defaults(command)
    typer.echo(text, nl=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `raypipe` script (and of the jobs/ recipes)."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="raypipe")


if __name__ == "__main__":
    main()
