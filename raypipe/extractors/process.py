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
from typing import Protocol

from raypipe.errors import MediaError
from raypipe.extractors.base import ExtractionResult, Extractor
from raypipe.extractors.visual.base import VisualExtractor, run_visual_pass
from raypipe.media.context import MediaContext
from raypipe.media.coverage import add_audio_coverage
from raypipe.media.remote import is_uri, local_copy
from raypipe.store.feature_store import MediaResult
from raypipe.store.fingerprint import Fingerprint, fingerprint
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


class ResultSink(Protocol):
    """Where results go: a :class:`~raypipe.store.feature_store.FeatureStore`, or a buffer
    that a Ray actor writes to the store once per batch of media."""

    def write_results(self, results: Sequence[MediaResult]) -> None:
        """Take the results of one media (all its extractors)."""


def process_media(
    media: MediaContext,
    extractors: Sequence[Extractor],
    store: ResultSink,
    source: Fingerprint | None = None,
) -> list[Outcome]:
    """Run ``extractors`` on one media and hand each result (ok or failed) to ``store``.

    ``source`` is the file's fingerprint, recorded with the results so that a changed file is
    recomputed; taken here (size, time, quick digest) when not given.

    Visual extractors share one windowed decode and face pass (:func:`run_visual_pass`); the
    others run one after another. A problem with the file (:class:`MediaError`, including a
    decoder that hangs or crashes) or an unexpected error inside an extractor becomes a
    ``failed`` row with a one-line reason; errors writing to the store propagate and stop the
    job (an infrastructure fault, not a property of the file; a re-run resumes).

    A media on object storage (``s3://...``) is copied to local scratch for the decoders and
    the copy removed after; results and messages name the original URI.
    """
    source = source or fingerprint(media.path)
    origin = media.path
    if not is_uri(origin):
        return _process(media, extractors, store, source, origin)
    try:
        with local_copy(origin) as local:
            media.path = local
            return _process(media, extractors, store, source, origin)
    except MediaError as exc:  # the copy itself failed: every extractor fails with the reason
        rows = [
            MediaResult(
                e.name,
                e.version,
                media.media_id,
                {"status": STATUS_FAILED, "error": _one_line(str(exc))},
                path=origin,
            )
            for e in extractors
        ]
        store.write_results(rows)
        return [Outcome(media.media_id, e.name, STATUS_FAILED, str(exc), 0.0) for e in extractors]
    finally:
        media.path = origin


def _process(
    media: MediaContext,
    extractors: Sequence[Extractor],
    store: ResultSink,
    source: Fingerprint | None,
    origin: str,
) -> list[Outcome]:
    outcomes = []
    results = []
    visual = [e for e in extractors if isinstance(e, VisualExtractor)]
    shared: dict[str, ExtractionResult | BaseException] = {}
    shared_seconds = 0.0
    if visual:
        # One decode and one face pass feed every visual extractor, window by window.
        start = time.perf_counter()
        shared = run_visual_pass(media, visual)
        shared_seconds = (time.perf_counter() - start) / len(visual)
    for extractor in extractors:
        start = time.perf_counter()
        frame_rows = crop_rows = None
        try:
            if extractor.name in shared:
                result = shared[extractor.name]
                if isinstance(result, BaseException):
                    raise result
            else:
                result = extractor.extract(media)
            row, frame_rows = dict(result.media_row), result.frame_rows
            crop_rows = result.crop_rows
            row.setdefault("status", STATUS_OK)
            if extractor.modality != "visual":  # visual rows get theirs in run_visual_pass
                add_audio_coverage(row, media)
            if extractor.name in shared:
                for stage in ("probe", "decode", "faces"):
                    row.setdefault(f"{stage}_s", media.seconds.get(stage))
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
        seconds = time.perf_counter() - start + (shared_seconds if extractor in visual else 0.0)
        row["seconds"] = seconds
        if origin != media.path and row.get("error"):
            row["error"] = str(row["error"]).replace(media.path, origin)
        results.append(
            MediaResult(
                extractor.name,
                extractor.version,
                media.media_id,
                row,
                frame_rows,
                crop_rows,
                path=origin,
                source=source,
            )
        )
        outcomes.append(
            Outcome(media.media_id, extractor.name, row["status"], row.get("error"), seconds)
        )
    store.write_results(results)
    return outcomes
