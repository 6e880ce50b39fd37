"""Processing one media with a set of extractors and writing the results: plain Python.

The Ray wiring (:mod:`raypipe.pipeline.extract`) calls :func:`process_media` inside actors; unit
tests call it directly.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from raypipe.errors import MediaError
from raypipe.extractors.base import Extractor
from raypipe.media.context import MediaContext
from raypipe.store.feature_store import FeatureStore
from raypipe.store.schema import STATUS_FAILED, STATUS_OK

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What happened to one (media, extractor) pair."""

    media_id: str
    extractor: str
    status: str
    error: str | None
    seconds: float


def _one_line(message: str) -> str:
    return " ".join(str(message).split())[:500]


def process_media(
    media: MediaContext,
    extractors: Sequence[Extractor],
    store: FeatureStore,
) -> list[Outcome]:
    """Run ``extractors`` on one media and write each result (ok or failed) to ``store``.

    A problem with the file (:class:`MediaError`) or an unexpected error inside an extractor
    becomes a ``failed`` row with a one-line reason; errors writing to the store propagate so
    that Ray can retry the task (an infrastructure fault, not a property of the file).
    """
    outcomes = []
    for extractor in extractors:
        start = time.perf_counter()
        frame_rows = None
        try:
            result = extractor.extract(media)
            row, frame_rows = dict(result.media_row), result.frame_rows
            row.setdefault("status", STATUS_OK)
        except MediaError as exc:
            row = {"status": STATUS_FAILED, "error": _one_line(str(exc))}
        except Exception as exc:  # one bad file must not stop the job: record and go on
            log.error(
                "extractor %s failed on %s:\n%s", extractor.name, media.path, traceback.format_exc()
            )
            row = {
                "status": STATUS_FAILED,
                "error": _one_line(
                    f"{media.path}: extractor {extractor.name} raised "
                    f"{type(exc).__name__}: {exc}; see the worker log for the traceback."
                ),
            }
        seconds = time.perf_counter() - start
        row["seconds"] = seconds
        store.write_result(extractor.name, extractor.version, media.media_id, row, frame_rows)
        outcomes.append(
            Outcome(media.media_id, extractor.name, row["status"], row.get("error"), seconds)
        )
    return outcomes
