"""A Ray Train epoch hook that kills its worker once, for the recipes' resume tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def die_once_in_epoch(
    epoch_to_die: int, log: Path, marker: Path, snapshot: Path
) -> Callable[[int], None]:
    """A hook ``hook(epoch)`` for every epoch start: it appends the epoch to ``log`` and, the
    first time ``epoch_to_die`` starts (``marker`` absent), waits until the controller's
    checkpoint ``snapshot`` registers the previous epoch's checkpoint, then ends the worker
    process (exit code 1) as a lost worker ends. A closure, so Ray ships it by value."""

    def hook(epoch: int) -> None:
        import os
        import time

        with open(log, "a") as handle:
            handle.write(f"{epoch}\n")
        if epoch == epoch_to_die and not marker.exists():
            marker.touch()
            previous = f"epoch_{epoch_to_die - 1:04d}"
            for _ in range(600):
                if snapshot.exists() and previous in snapshot.read_text():
                    break
                time.sleep(0.1)
            os._exit(1)

    return hook
