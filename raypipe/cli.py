"""The `raypipe` command line. Every command reads an optional YAML config, then `--set`
overrides, then its own flags; bad values fail before any work starts, in one sentence."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from raypipe.config.base import load_config
from raypipe.errors import RaypipeError

M = TypeVar("M")

log = logging.getLogger("raypipe")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Distributed multimodal emotion-recognition pipeline on Ray.",
)
store_app = typer.Typer(no_args_is_help=True, help="Inspect a feature store.")
app.add_typer(store_app, name="store")
config_app = typer.Typer(no_args_is_help=True, help="Show the commands' default configs.")
app.add_typer(config_app, name="config")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config field, e.g. --set video.fps=2 (repeatable)."),
]
AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster address; omit for an embedded local Ray."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


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


def _setup_logging() -> None:
    """raypipe's own handler, not the root's: libraries that add root handlers (Ray Tune does)
    would otherwise print every line twice."""
    logger = logging.getLogger("raypipe")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for noisy in ("ray", "ray.data", "ray.tune", "ray.train", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _Where:
    """What a command writes (its --out/--run), named when a disk error does not say."""

    path: str | None = None


@contextmanager
def _user_errors(command: str) -> Iterator[_Where]:
    """Run a command's body; every failure a user can cause (a raypipe error, a full disk, a
    path in the way) ends as one line on stderr and exit code 2, a failure of Ray itself as one
    line and exit code 1. Anything else is a bug: its traceback, then one line, exit code 1.
    ``RAYPIPE_DEBUG=1`` prints the traceback in every case."""
    _setup_logging()
    where = _Where()
    try:
        yield where
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        typer.echo(
            f"error: `raypipe {command}` was interrupted; re-running the same command resumes "
            "from what it stored.",
            err=True,
        )
        raise typer.Exit(code=130) from None
    except Exception as exc:
        explained = _explain(command, exc, where.path)
        if explained is None or os.environ.get("RAYPIPE_DEBUG"):
            traceback.print_exc()
        if explained is None:
            explained = (
                f"unexpected {type(exc).__name__} in `raypipe {command}` (a raypipe bug; the "
                "traceback above belongs in a bug report).",
                1,
            )
        message, code = explained
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code=code) from None


def _explain(command: str, exc: BaseException, path: str | None) -> tuple[str, int] | None:
    """The one-line message and exit code of a failure, or None for an unexpected one."""
    cause = _task_cause(exc)
    if _is_ray_failure(cause):
        # Ray Data keeps the error of the code it ran only as text: read it back from there.
        remote = _remote_error(str(exc))
        if remote is not None:
            cause = remote
        elif _remote_error_name(str(exc)) is not None:
            return None  # an error of raypipe's own code inside a task: a bug
    if isinstance(cause, RaypipeError):
        return _one_line(str(cause)), 2
    if _is_ray_failure(cause):
        first = _one_line(str(cause)) or "no details"
        return (
            f"Ray failed during `raypipe {command}` ({type(cause).__name__}: {first}); what "
            "finished is stored, so re-running the same command resumes (check the cluster, "
            "e.g. `ray status`, if it fails again).",
            1,
        )
    if isinstance(cause, ConnectionError):
        return (
            f"`raypipe {command}` lost a connection ({_one_line(str(cause))}); check --address "
            "(or RAY_ADDRESS) and the store URI, then re-run the same command.",
            1,
        )
    if isinstance(cause, OSError):
        return _disk_message(command, cause, path), 2
    return None


def _task_cause(exc: BaseException) -> BaseException:
    """The exception raised inside a Ray task or actor, which Ray wraps (RayTaskError, Ray
    Data's UserCodeException), else ``exc`` itself."""
    seen: set[int] = set()
    while _is_ray_failure(exc) and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if not isinstance(cause, BaseException):
            cause = exc.__cause__
        if not isinstance(cause, BaseException):
            break
        exc = cause
    return exc


_REMOTE_ERROR = re.compile(r"^((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception)): (.*)$")


def _remote_error_name(text: str) -> tuple[str, str] | None:
    """The last ``Type: message`` line of a remote traceback that is not one of Ray's own."""
    found = None
    for line in text.splitlines():
        match = _REMOTE_ERROR.match(line.strip())
        if match and not match.group(1).startswith("ray."):
            found = (match.group(1), match.group(2))
    return found


def _remote_error(text: str) -> BaseException | None:
    """A raypipe error or an OSError rebuilt from a remote traceback's text, else None."""
    import builtins

    import raypipe.errors

    found = _remote_error_name(text)
    if found is None:
        return None
    name, message = found
    short = name.rsplit(".", 1)[-1]
    kind = getattr(raypipe.errors, short, None)
    if isinstance(kind, type) and issubclass(kind, RaypipeError):
        return kind(message)
    kind = getattr(builtins, short, None)
    if isinstance(kind, type) and issubclass(kind, OSError):
        match = _ERRNO.search(message)
        return kind(int(match.group(1)), message) if match else kind(message)
    return None


def _is_ray_failure(exc: BaseException) -> bool:
    """A failure of Ray itself: a lost node, actor or object, a dead worker, Tune or Train
    giving up (not an error of raypipe's code run inside a task)."""
    module = type(exc).__module__ or ""
    return module == "ray" or module.startswith("ray.")


def _one_line(text: str, limit: int = 300) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


_ERRNO = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)

_DISK_FIXES = {
    errno.ENOSPC: "no space left on device: free space there or give another location, then "
    "re-run the same command (finished work is kept)",
    errno.EDQUOT: "disk quota exceeded: free space there or give another location, then re-run "
    "the same command (finished work is kept)",
    errno.EACCES: "permission denied: make it accessible or give another location",
    errno.EPERM: "operation not permitted: make it accessible or give another location",
    errno.EROFS: "read-only file system: give another location",
    errno.EEXIST: "a file is in the way where a folder is needed: move it or give another path",
    errno.ENOTDIR: "a file is in the way where a folder is needed: move it or give another path",
    errno.EISDIR: "it is a folder where a file is needed: give a file path",
    errno.ENOENT: "no such file or folder: check the path",
}


def _disk_message(command: str, exc: OSError, path: str | None) -> str:
    """One line for an OSError: the path (the error's, else what the command writes) and fix."""
    code = exc.errno
    if code is None and (match := _ERRNO.search(str(exc))):
        code = int(match.group(1))
    where = exc.filename or path
    fix = _DISK_FIXES.get(code) if code is not None else None
    if fix is None:
        fix = f"{exc.strerror or _one_line(str(exc))}: check that path"
    if where is None:
        return f"`raypipe {command}` failed on a file: {fix} ({_one_line(str(exc))})."
    return f"`raypipe {command}` failed on '{where}': {fix}."


def _load(
    model: type[M],
    config: Path | None,
    overrides: list[str] | None,
    flags: dict[str, Any],
    address: str | None,
) -> M:
    """The command's config: its YAML, then --set overrides, then its flags (and --address)."""
    merged_overrides, merged_flags = _merge({**flags, **_ray_flags(address)}, overrides)
    return load_config(model, config, merged_overrides, merged_flags)


def _require_run(run: Path | None) -> None:
    """A run folder given to fuse, predict or report must exist (and hold run.json)."""
    if run is not None and not Path(run).exists():
        raise RaypipeError(
            f"Run folder '{run}' does not exist; give the folder a `raypipe tune-classifiers` "
            "run wrote (its --run)."
        )


def _ray_flags(address: str | None) -> dict[str, Any]:
    return {"ray": {"address": address}} if address else {}


def _merge(flags: dict[str, Any], overrides: list[str] | None) -> tuple[list[str], dict[str, Any]]:
    extra = [f"ray.address={flags.pop('ray')['address']}"] if "ray" in flags else []
    return [*(overrides or []), *extra], flags


@app.command()
def extract(
    manifest: Annotated[Path | None, typer.Option(help="Manifest file or dataset folder.")] = None,
    out: Annotated[str | None, typer.Option(help="Feature store path or URI.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Extract features of every media in a manifest into a versioned feature store."""
    from raypipe.config import ExtractConfig
    from raypipe.pipeline.extract import run_extract

    with _user_errors("extract") as where:
        flags = {"manifest": manifest, "out": out}
        cfg = _load(ExtractConfig, config, set_, flags, address)
        where.path = cfg.out
        summary = run_extract(cfg)
    typer.echo(summary.line())
    typer.echo(f"see per-media results: raypipe store status {cfg.out}")


@store_app.command("status")
def store_status(
    store: Annotated[str, typer.Argument(help="Feature store path or URI.")],
    as_json: JsonOpt = False,
) -> None:
    """One row per (media, extractor): status ok | failed | missing, error, frames, face_frames,
    and for visual extractors tracks, mean face score and seconds per stage."""
    from raypipe.store.feature_store import FeatureStore

    with _user_errors("store status") as where:
        where.path = store
        feature_store = FeatureStore(store)
        feature_store.require()
        table = feature_store.status()
    if as_json:
        records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        typer.echo(json.dumps(records, indent=1, default=_jsonable))
        return
    _print_table(table, "store status")
    counts = table.groupby(["extractor", "status"]).size()
    typer.echo("; ".join(f"{e} {s}: {n}" for (e, s), n in counts.items()))


def _jsonable(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def _print_table(frame: Any, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(
            *[f"{v:.3f}" if isinstance(v, float) else ("" if v is None else str(v)) for v in row]
        )
    Console(width=160).print(table)


@app.command("tune-classifiers")
def tune_classifiers(
    store: Annotated[str | None, typer.Option(help="Feature store path or URI.")] = None,
    run: Annotated[Path | None, typer.Option(help="Run folder for models and predictions.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Search feature set x pooling x classifier x params with Ray Tune; store predictions."""
    from raypipe.config import TuneClassifiersConfig
    from raypipe.pipeline.tune_classifiers import run_tune_classifiers

    with _user_errors("tune-classifiers") as where:
        cfg = _load(TuneClassifiersConfig, config, set_, {"store": store, "run": run}, address)
        where.path = str(cfg.run) if cfg.run else None
        best = run_tune_classifiers(cfg)
    _print_table(best, "best configuration per feature set x classifier")
    typer.echo(f"next: raypipe fuse --run {cfg.run}")


@app.command()
def fuse(
    run: Annotated[Path | None, typer.Option(help="Run folder from tune-classifiers.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Late-fuse stored predictions (weights, stacking, greedy selection, cascade) fitted on
    validation; the method with the best cross-validated val score is selected."""
    import pandas as pd

    from raypipe.config import FuseConfig
    from raypipe.pipeline.fuse import run_fuse

    with _user_errors("fuse") as where:
        cfg = _load(FuseConfig, config, set_, {"run": run}, address)
        _require_run(cfg.run)
        where.path = str(cfg.run) if cfg.run else None
        record = run_fuse(cfg)
    rows = [
        {
            "model": r["name"],
            "selected": "yes" if r["selected"] else "",
            **{
                f"{split}_{cfg.metric}": r["scores"][split][cfg.metric]
                for split in ("val", "val_cv", "test")
            },
        }
        for r in record["methods"].values()
    ]
    _print_table(pd.DataFrame(rows), "fusion methods (val: fitted, val_cv: out-of-fold)")
    typer.echo(f"selected: {record['name']}")
    typer.echo(f"next: raypipe report {cfg.run}")


@app.command()
def train(
    run: Annotated[Path | None, typer.Option(help="Run folder for checkpoints and export.")] = None,
    data: Annotated[
        str | None, typer.Option(help="Image folder (or, with --set data.source=store, a store).")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Fine-tune a backbone with Ray Train (resumable), then export it as a face_backbone."""
    from raypipe.config import TrainConfig
    from raypipe.pipeline.train import run_train

    with _user_errors("train") as where:
        cfg = _load(TrainConfig, config, set_, {"run": run}, address)
        if data is not None:
            key = "store" if cfg.data.source == "store" else "root"
            cfg.data = cfg.data.model_copy(update={key: data})
        where.path = str(cfg.run) if cfg.run else None
        summary = run_train(cfg)
    typer.echo(summary.line())
    typer.echo(f"next: raypipe extract --config {summary.extract_config}")


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    as_json: JsonOpt = False,
) -> None:
    """Metrics per model and split (fused rows start with 'fused'); writes report/report.md."""
    from raypipe.report.writer import metrics_table, write_report
    from raypipe.store.run_folder import RunFolder

    with _user_errors("report") as where:
        _require_run(run)
        where.path = str(Path(run) / "report")
        folder = RunFolder(run)
        folder.meta()
        table = metrics_table(folder)
        path = write_report(folder)
    if as_json:
        typer.echo(json.dumps(table.to_dict(orient="records"), indent=1))
        return
    _print_table(table, f"metrics: {run}")
    typer.echo(f"report: {path}")


@app.command()
def predict(
    run: Annotated[Path | None, typer.Option(help="Run folder with models and fusion.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="Manifest of the new media.")] = None,
    out: Annotated[Path | None, typer.Option(help="Submission CSV to write.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Apply a run's fitted models and fusion to new media (extracting what is missing) and
    write a submission CSV: media_id, label, one probability column per class."""
    from raypipe.config import PredictConfig
    from raypipe.pipeline.predict import run_predict

    with _user_errors("predict") as where:
        flags = {"run": run, "manifest": manifest, "out": out}
        cfg = _load(PredictConfig, config, set_, flags, address)
        _require_run(cfg.run)
        where.path = str(cfg.out or cfg.run) if (cfg.out or cfg.run) else None
        summary = run_predict(cfg)
    typer.echo(summary.line())
    typer.echo(f"submission: {summary.submission}")


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option(help="Folder for media, store and run.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Generate a small labelled face+voice set, then extract, tune, fuse and report."""
    from raypipe.config import DemoConfig
    from raypipe.pipeline.demo import run_demo

    with _user_errors("demo") as where:
        cfg = _load(DemoConfig, config, set_, {"out": out}, address)
        where.path = str(cfg.out)
        run_folder, lines = run_demo(cfg)
    typer.echo("\n".join(lines))
    typer.echo(f"see the results: raypipe report {run_folder}")


@config_app.command("show")
def config_show(
    command: Annotated[
        str, typer.Argument(help="extract, tune-classifiers, fuse, predict, train or demo.")
    ],
) -> None:
    """Print COMMAND's full default config as YAML, each field's help as a comment above it
    (a valid --config file)."""
    from raypipe.config.show import render_defaults

    with _user_errors("config show"):
        text = render_defaults(command)
    typer.echo(text, nl=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `raypipe` script (and of the jobs/ recipes)."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="raypipe")


if __name__ == "__main__":
    main()
