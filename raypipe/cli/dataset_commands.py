"""`raypipe dataset ...`: corpora as distributed turned into raypipe manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from raypipe.cli.failures import user_errors
from raypipe.cli.options import JsonOpt
from raypipe.cli.output import print_json

dataset_app = typer.Typer(
    no_args_is_help=True, help="Turn a corpus as distributed into a raypipe manifest."
)
#: Issues `dataset convert` prints before saying how many more there are.
SHOWN_ISSUES = 20


#: The registered formats, named here so that --help does not import pandas (a test checks
#: that the list is DATASET_FORMATS).
FORMATS_HELP = (
    "Layout of SOURCE: abaw (Aff-Wild2 / ABAW annotation folders), meld (MELD utterance "
    "CSVs and clips), gaf (GAF group photos in class folders) or cexpr (compound-expression "
    "clips in class folders); see docs/datasets.md."
)


@dataset_app.command("convert")
def dataset_convert(
    source: Annotated[
        Path, typer.Argument(help="The corpus' folder (or MELD CSV) as distributed.")
    ],
    format_: Annotated[str, typer.Option("--format", help=FORMATS_HELP)],
    out: Annotated[
        Path, typer.Option("--out", help="Manifest to write (.csv, .tsv, .jsonl or .parquet).")
    ],
    media: Annotated[
        Path | None,
        typer.Option(
            "--media", help="Folder holding the videos when not inside SOURCE (abaw, meld)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a manifest of SOURCE (media_id, path, label, split and the format's own columns);
    what could not be used (a missing clip, an unknown class) is listed, not fatal."""
    from raypipe.media.datasets import convert_dataset
    from raypipe.media.manifest import check_manifest_suffix

    with user_errors("dataset convert") as where:
        where.path = str(out)
        check_manifest_suffix(out)
        converted = convert_dataset(format_, source, media)
        converted.save(out)
    space = converted.label_space()
    if as_json:
        print_json(
            {
                "format": converted.format,
                "manifest": str(out),
                "media": len(converted.table),
                "labels": converted.labels,
                "classes": list(space.classes) if space else None,
                "issues": [{"where": i.where, "message": i.message} for i in converted.issues],
            }
        )
        return
    for issue in converted.issues[:SHOWN_ISSUES]:
        typer.echo(f"left out: {issue}")
    if len(converted.issues) > SHOWN_ISSUES:
        typer.echo(f"... {len(converted.issues) - SHOWN_ISSUES} more; --json lists them all")
    labels = f"; labels: {converted.labels} ({', '.join(space.classes)})" if space else ""
    typer.echo(
        f"wrote {len(converted.table)} media to {out}{labels}; {len(converted.issues)} left out"
    )
