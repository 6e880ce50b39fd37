"""What produced a result: the resolved config, raypipe's version and the code revision.

Run folders keep one record per command in ``run.json`` under ``provenance`` (the latest
invocation of each: ``tune-classifiers``, ``fuse``, ``demo``); a fine-tuning run keeps its record
in ``RUN/provenance.json``; a feature store keeps one file per extract job under ``jobs/``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

import raypipe

if TYPE_CHECKING:
    from raypipe.store.run_folder import RunFolder

#: The file of a fine-tuning run (``raypipe train --run RUN``) that holds its record.
TRAIN_PROVENANCE = "provenance.json"


@functools.lru_cache(maxsize=1)
def code_revision() -> str | None:
    """The git commit raypipe runs from (``-dirty`` appended when tracked files differ from
    it), or None when raypipe is not running from a git checkout."""
    root = Path(raypipe.__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None
        changed = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = "-dirty" if changed.returncode == 0 and changed.stdout.strip() else ""
    return head.stdout.strip() + dirty


def version_line() -> str:
    """``raypipe X.Y.Z`` plus the code revision when running from a git checkout."""
    revision = code_revision()
    return f"raypipe {raypipe.__version__}" + (f" (revision {revision})" if revision else "")


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance(command: str, config: BaseModel | None) -> dict[str, Any]:
    """The record of one invocation: command, resolved config (every field, defaults
    included), raypipe version, code revision, Ray and Python versions, host and time (UTC)."""
    return {
        "command": command,
        "config": config.model_dump(mode="json") if config is not None else None,
        "raypipe_version": raypipe.__version__,
        "code_revision": code_revision(),
        "ray_version": _package_version("ray"),
        "python_version": platform.python_version(),
        "host": socket.gethostname(),
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def record_run(run: RunFolder, command: str, config: BaseModel | None) -> None:
    """Record ``command``'s provenance in the run's ``run.json`` (key ``provenance``, by
    command), keeping the records of the run's other commands."""
    current = run.meta() if run.exists() else {}
    records = dict(current.get("provenance") or {})
    records[command] = provenance(command, config)
    run.create({"provenance": records})


def record_train_run(run: str | Path, config: BaseModel) -> None:
    """Record a fine-tuning run's provenance in ``RUN/provenance.json`` (``run`` a path or a
    URI such as ``s3://bucket/run``)."""
    import json

    from raypipe.store.files import StoreFiles

    record = json.dumps({"train": provenance("train", config)}, indent=2) + "\n"
    StoreFiles(str(run)).write_bytes(TRAIN_PROVENANCE, record.encode())
