"""Progress display for long work: a rich bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def progress_bar(task: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows a bar on a TTY, else logs every ~10% (CI, job logs)."""
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress(
            "[bold]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=False,
        ) as bar:
            handle = bar.add_task(task, total=total)
            yield lambda n: bar.advance(handle, n)
        return
    state = {"done": 0, "next": max(1, total // 10), "start": time.perf_counter()}

    def advance(n: int) -> None:
        state["done"] += n
        if state["done"] >= state["next"] or state["done"] == total:
            elapsed = time.perf_counter() - state["start"]
            log.info("%s: %d/%d done (%.0f s)", task, state["done"], total, elapsed)
            state["next"] += max(1, total // 10)

    yield advance
