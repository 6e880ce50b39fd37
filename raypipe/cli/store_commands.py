"""`raypipe store ...`: look into a feature store, plan, check, compact, clean and convert it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from raypipe.cli.failures import user_errors
from raypipe.cli.options import ConfigOpt, JsonOpt, SetOpt, flag, load
from raypipe.cli.output import print_dry_run, print_json, print_table, records
from raypipe.config import ExtractConfig

store_app = typer.Typer(
    no_args_is_help=True, help="Inspect, plan, verify, compact, clean or convert a feature store."
)
StoreArg = Annotated[str, typer.Argument(help="Feature store path or URI.")]
#: Rows `store status` prints as a table unless --all.
SHOWN_ROWS = 50


def _open(store: str):
    from raypipe.store.feature_store import FeatureStore

    feature_store = FeatureStore(store)
    feature_store.require()
    return feature_store


@store_app.command("status")
def store_status(
    store: StoreArg,
    as_json: JsonOpt = False,
    every: Annotated[
        bool, typer.Option("--all", help="Every (media, extractor) row, not only problems.")
    ] = False,
) -> None:
    """Per extractor: media ok, failed, no_audio, missing, with a note, median seconds and
    mean decode coverage; then the rows that need a look (failed, missing, ok with a note such
    as partial coverage), or every row with --all. Reads the index only."""
    with user_errors("store status") as where:
        where.path = store
        feature_store = _open(store)
        summary = feature_store.summary()
        rows = feature_store.status(problems_only=not every)
    if as_json:
        print_json({"store": store, "extractors": records(summary), "rows": records(rows)})
        return
    print_table(summary, f"store status: {store}")
    if len(rows):
        title = "every row" if every else "rows that need a look (failed, missing, noted)"
        shown = rows if every else rows.head(SHOWN_ROWS)
        print_table(shown, title)
        if len(shown) < len(rows):
            typer.echo(f"... {len(rows) - len(shown)} more; --json or --all shows them all")


@store_app.command("plan")
def store_plan(
    manifest: Annotated[str | None, flag(ExtractConfig, "manifest")] = None,
    out: Annotated[str | None, flag(ExtractConfig, "out")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What `raypipe extract` with this config would compute, per extractor (new media,
    changed files, retried failures) and an estimate from the seconds stored per media.
    Writes nothing and starts no Ray."""
    from raypipe.pipeline.dry_run import extract_plan
    from raypipe.pipeline.extract import plan_extract

    with user_errors("store plan") as where:
        cfg = load(ExtractConfig, config, set_, {"manifest": manifest, "out": out}, None)
        where.path = cfg.out
        plan = plan_extract(cfg)
    print_dry_run(extract_plan(cfg.out, plan), as_json)


@store_app.command("verify")
def store_verify(
    store: StoreArg,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Move damaged files to _quarantine/ and mark their media for recomputation.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check every data file against the checksum in the index, and every index, manifest and
    extractor file; name what is truncated, altered or missing. Exit code 1 when damage is
    found and not repaired."""
    from raypipe.store.verify import verify

    with user_errors("store verify") as where:
        where.path = store
        report = verify(_open(store), repair=repair)
    if as_json:
        print_json({**asdict(report), "ok": report.ok})
    else:
        for damage in report.damaged:
            typer.echo(f"damaged {damage.kind} file {damage.path}: {damage.problem}")
        typer.echo(f"{report.files_checked} files checked; {len(report.damaged)} damaged")
        if report.moved:
            retired = sum(report.retired.values())
            typer.echo(
                f"moved {len(report.moved)} file(s) to _quarantine/; {retired} media result(s) "
                "will be recomputed by the next `raypipe extract` with the same manifest"
            )
    if report.damaged and not repair:
        raise typer.Exit(code=1)


@store_app.command("compact")
def store_compact(
    store: StoreArg,
    target_mb: Annotated[
        float, typer.Option("--target-mb", help="Size of a compacted data file, MiB.")
    ] = 128.0,
    as_json: JsonOpt = False,
) -> None:
    """Merge small data files (and files holding rows no longer live) into files of about
    --target-mb, and fold each version's index and the manifest into one file. Run it when
    no job reads the store."""
    from raypipe.store.compaction import compact

    with user_errors("store compact") as where:
        where.path = store
        report = compact(_open(store), target_mb=target_mb)
    if as_json:
        print_json(asdict(report))
        return
    typer.echo(
        f"{report.versions} extractor version(s): data files {report.data_files_before} -> "
        f"{report.data_files_after}; folded {report.index_files_folded} index and "
        f"{report.manifest_files_folded} manifest file(s) in {report.seconds:.1f} s"
    )


@store_app.command("gc")
def store_gc(
    store: StoreArg,
    min_age_h: Annotated[
        float,
        typer.Option("--min-age-h", help="Leave unreferenced files younger than this, hours."),
    ] = 1.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be removed.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove extractor versions that are not current, data files no index names (writes that
    crashed), stale temporary files and quarantined files; then compact. Run it when no job
    reads or writes the store."""
    from raypipe.store.compaction import collect_garbage

    with user_errors("store gc") as where:
        where.path = store
        report = collect_garbage(_open(store), min_age_h * 3600, dry_run)
    if as_json:
        print_json(asdict(report))
        return
    verb = "would remove" if dry_run else "removed"
    versions = ", ".join(report.versions_removed) or "none"
    typer.echo(
        f"{verb} {report.files_removed} file(s), {report.bytes_freed / 2**20:.1f} MiB; "
        f"old versions: {versions}"
    )


@store_app.command("migrate")
def store_migrate(store: StoreArg, as_json: JsonOpt = False) -> None:
    """Convert a store written by raypipe before format 2 (one file per media) in place,
    recomputing nothing; run it again if it stops half-way."""
    from raypipe.store.feature_store import FeatureStore
    from raypipe.store.migrate import migrate

    with user_errors("store migrate") as where:
        where.path = store
        report = migrate(FeatureStore(store))
    if as_json:
        print_json(asdict(report))
        return
    typer.echo(
        f"converted {len(report.versions)} extractor version(s) of {report.media} media to "
        f"format 2; removed {report.removed_files} format-1 file(s)"
    )
