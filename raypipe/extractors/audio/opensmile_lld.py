"""openSMILE low-level descriptors (eGeMAPSv02, ComParE_2016...): one frame row per 10 ms."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np

from raypipe.config.extract import OpenSmileLldConfig
from raypipe.extractors.audio.opensmile_functionals import MIN_AUDIO_S, audio_note, smile
from raypipe.extractors.base import ExtractionResult, Extractor
from raypipe.extractors.spans import no_audio_row, span_table
from raypipe.media.audio import SAMPLE_RATE, NoAudioError
from raypipe.media.context import MediaContext

#: Seconds of audio per openSMILE call for long tracks (memory is bounded by one block).
BLOCK_S = 60
#: Seconds of context on each side of a block, longer than any LLD's analysis context.
MARGIN_S = 2


class OpenSmileLldExtractor(Extractor):
    """Low-level descriptors of the 16 kHz mono track as frame rows (kind 'lld').

    Each row spans openSMILE's analysis frame (``timestamp_s`` to ``end_s``, seconds; frames
    start every 10 ms). Audio shorter than :data:`MIN_AUDIO_S` gives no rows and a note. Long
    tracks are processed in blocks (:meth:`lld`), so memory does not grow with the track.

    Options: :class:`~raypipe.config.extract.OpenSmileLldConfig`.
    """

    name: ClassVar[str] = "opensmile_lld"
    modality: ClassVar[str] = "audio"
    level: ClassVar[str] = "frame"

    config_model = OpenSmileLldConfig

    def __init__(self, config: OpenSmileLldConfig | None = None, **options: Any) -> None:
        import opensmile

        super().__init__(config, **options)
        self.feature_set = self.config.feature_set
        self._smile = smile(self.feature_set, "lld")
        self._version = opensmile.__version__
        self._feature_names: list[str] = list(self._smile.feature_names)

    @property
    def dim(self) -> int:
        return len(self._feature_names)

    @property
    def feature_names(self) -> list[str]:
        """openSMILE's own names of the feature set's low-level descriptors
        (``Smile.feature_names``), in the order of its output columns, which is the order of
        the stored values."""
        return list(self._feature_names)

    def config_dict(self) -> dict[str, Any]:
        return {"feature_set": self.feature_set, "level": "lld", "sample_rate": SAMPLE_RATE}

    def weights_digest(self) -> str:
        return f"opensmile-{self._version}"

    def _block(self, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            table = self._smile.process_signal(signal, SAMPLE_RATE)
        starts = table.index.get_level_values("start").total_seconds().to_numpy()
        ends = table.index.get_level_values("end").total_seconds().to_numpy()
        return starts, ends, table.to_numpy(np.float32)

    def lld(self, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(starts, ends, values) of a mono 16 kHz signal: seconds, seconds, (frames, dim).

        Long signals are processed in blocks of :data:`BLOCK_S` seconds, each with
        :data:`MARGIN_S` seconds of context on both sides whose frames are discarded, so
        openSMILE's memory stays bounded by a block; the frames are identical to one call on
        the whole signal (every LLD's context is far shorter than the margin).
        """
        if len(signal) < MIN_AUDIO_S * SAMPLE_RATE:
            empty = np.zeros(0, np.float64)
            return empty, empty, np.zeros((0, self.dim), np.float32)
        block, margin = BLOCK_S * SAMPLE_RATE, MARGIN_S * SAMPLE_RATE
        if len(signal) <= block + margin:
            return self._block(signal)
        parts = []
        for start in range(0, len(signal), block):
            lo, hi = max(0, start - margin), min(len(signal), start + block + margin)
            starts, ends, values = self._block(signal[lo:hi])
            starts, ends = starts + lo / SAMPLE_RATE, ends + lo / SAMPLE_RATE
            own = (starts >= start / SAMPLE_RATE - 1e-9) & (
                starts < (start + block) / SAMPLE_RATE - 1e-9
            )
            parts.append((starts[own], ends[own], values[own]))
        starts, ends, values = (np.concatenate(column) for column in zip(*parts, strict=True))
        return starts, ends, values

    def extract(self, media: MediaContext) -> ExtractionResult:
        try:
            signal = media.audio
        except NoAudioError as exc:
            return ExtractionResult(no_audio_row(exc))
        starts, ends, values = self.lld(signal)
        row: dict[str, Any] = {"duration_s": len(signal) / SAMPLE_RATE, "frames": len(starts)}
        note = audio_note(signal)
        if note:
            row["error"] = note.replace("features are NaN", "no LLD frames")
        return ExtractionResult(row, span_table(media.media_id, starts, ends, "lld", values))
