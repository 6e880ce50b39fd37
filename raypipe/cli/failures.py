"""What every command runs inside: raypipe's log handler, and failures turned into one line
on stderr and an exit code (2: the user can fix it; 1: Ray failed or a bug; 130: interrupted).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from raypipe.errors import RaypipeError


def setup_logging() -> None:
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
def user_errors(command: str) -> Iterator[_Where]:
    """Run a command's body; every failure a user can cause (a raypipe error, a full disk, a
    path in the way) ends as one line on stderr and exit code 2, a failure of Ray itself as one
    line and exit code 1. Anything else is a bug: its traceback, then one line, exit code 1.
    ``RAYPIPE_DEBUG=1`` prints the traceback in every case."""
    setup_logging()
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
        explained = explain(command, exc, where.path)
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


def explain(command: str, exc: BaseException, path: str | None) -> tuple[str, int] | None:
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


def _one_line(text: str, limit: int = 600) -> str:
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
