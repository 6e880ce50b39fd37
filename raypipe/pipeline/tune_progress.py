"""A Ray Tune callback that reports finished trials through raypipe's progress display."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ray.tune import Callback


class TrialProgress(Callback):
    """Calls ``advance(n)`` whenever a trial completes or errors: n is 1, or the number of
    configurations of a packed trial (a list as its ``spec``)."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        self._advance = advance

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._advance(_configurations(trial))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._advance(_configurations(trial))


def _configurations(trial: Any) -> int:
    spec = (getattr(trial, "config", None) or {}).get("spec")
    return len(spec) if isinstance(spec, list) else 1


# raypipe takes every trial's scores from the trial itself (its callbacks and stored tables),
# never from Ray Tune's per-trial result files; Tune's warning that it could not read those
# files back after a search only alarms users, so it is silenced. Real trial errors are still
# reported (trial results carry them and raypipe logs them).
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
