"""A Ray Tune callback that reports finished trials through raypipe's progress display."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune import Callback


class TrialProgress(Callback):
    """Calls ``advance(1)`` whenever a trial completes or errors."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        self._advance = advance

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._advance(1)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._advance(1)
