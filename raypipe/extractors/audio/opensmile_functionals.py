"""openSMILE functionals (eGeMAPSv02, ComParE_2016...) per media, per window and per segment."""

from __future__ import annotations

import logging
import warnings
from typing import Any, ClassVar

import numpy as np

from raypipe.config.extract import OpenSmileConfig
from raypipe.extractors.base import ExtractionResult, Extractor
from raypipe.extractors.spans import no_audio_row, span_table
from raypipe.extractors.windows import sliding_windows
from raypipe.media.audio import SAMPLE_RATE, NoAudioError
from raypipe.media.context import MediaContext

log = logging.getLogger(__name__)

#: Shortest audio (seconds) that openSMILE functionals are computed for; shorter gives NaN.
MIN_AUDIO_S = 0.1
#: RMS amplitude (full scale 1.0) below which a track counts as silent (about -80 dBFS).
SILENCE_RMS = 1e-4


def smile(feature_set: str, level: str) -> Any:
    """An ``opensmile.Smile`` for a feature set name and level ('functionals' or 'lld').

    Raises:
        ValueError: the feature set name is not an ``opensmile.FeatureSet`` member.
    """
    import opensmile

    if not hasattr(opensmile.FeatureSet, feature_set):
        allowed = ", ".join(m.name for m in opensmile.FeatureSet)
        raise ValueError(f"unknown openSMILE feature set '{feature_set}'; allowed: {allowed}")
    feature_level = (
        opensmile.FeatureLevel.Functionals
        if level == "functionals"
        else opensmile.FeatureLevel.LowLevelDescriptors
    )
    return opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, feature_set), feature_level=feature_level
    )


def audio_note(signal: np.ndarray) -> str | None:
    """A remark for tracks whose features are not meaningful: too short, or silent."""
    duration = len(signal) / SAMPLE_RATE
    if duration < MIN_AUDIO_S:
        return f"audio is {duration:.3f} s long (< {MIN_AUDIO_S} s): features are NaN"
    if float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) < SILENCE_RMS:
        return "audio is silent (RMS < 1e-4): features describe silence"
    return None


class OpenSmileExtractor(Extractor):
    """openSMILE functionals of the 16 kHz mono audio track: one vector per media.

    Frame rows (optional) hold the same functionals over sliding windows (kind 'window') and
    over voice-activity speech segments (kind 'segment'), with start and end seconds.

    Options: :class:`~raypipe.config.extract.OpenSmileConfig`.
    """

    name: ClassVar[str] = "opensmile"
    modality: ClassVar[str] = "audio"
    level: ClassVar[str] = "media"

    config_model = OpenSmileConfig

    def __init__(self, config: OpenSmileConfig | None = None, **options: Any) -> None:
        import opensmile

        super().__init__(config, **options)
        c = self.config
        self.feature_set = c.feature_set
        self._smile = smile(c.feature_set, "functionals")
        self._version = opensmile.__version__
        self._feature_names: list[str] = list(self._smile.feature_names)
        self.window_s = float(c.window_s)
        self.hop_s = float(c.hop_s) if c.hop_s else self.window_s
        self.segments = c.segments
        self._vad = None
        if c.segments:
            from raypipe.extractors.audio.vad import VoiceActivity

            self._vad = VoiceActivity()

    @property
    def dim(self) -> int:
        return len(self._feature_names)

    @property
    def feature_names(self) -> list[str]:
        """openSMILE's own names of the feature set's functionals (``Smile.feature_names``), in
        the order of its output columns, which is the order of the stored values."""
        return list(self._feature_names)

    def config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "feature_set": self.feature_set,
            "level": "functionals",
            "sample_rate": SAMPLE_RATE,
        }
        if self.window_s > 0:
            config.update(window_s=self.window_s, hop_s=self.hop_s)
        if self.segments:
            config["segments"] = True
        return config

    def weights_digest(self) -> str:
        digest = f"opensmile-{self._version}"
        return digest + (f"+vad-{self._vad.digest()}" if self._vad else "")

    def functionals(self, signal: np.ndarray) -> np.ndarray:
        """Functionals of a mono float32 signal at 16 kHz, shape (dim,); NaN when the signal is
        shorter than :data:`MIN_AUDIO_S` or openSMILE cannot compute them."""
        if len(signal) < MIN_AUDIO_S * SAMPLE_RATE:
            return np.full(self.dim, np.nan, np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            values = self._smile.process_signal(signal, SAMPLE_RATE).to_numpy()
        return values.reshape(-1).astype(np.float32)

    def _span_rows(self, media: MediaContext, signal: np.ndarray, duration: float) -> Any:
        spans: list[tuple[float, float, str]] = []
        if self.window_s > 0:
            windows = sliding_windows(duration, self.window_s, self.hop_s)
            spans += [(start, end, "window") for start, end in windows]
        if self._vad is not None:
            from raypipe.extractors.audio.vad import speech_segments

            spans += [(s, e, "segment") for s, e in speech_segments(media, self._vad)]
        if not spans:
            return None
        values = [
            self.functionals(signal[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)])
            for s, e, _ in spans
        ]
        tables = []
        for kind in ("window", "segment"):
            picked = [i for i, span in enumerate(spans) if span[2] == kind]
            if picked:
                tables.append(
                    span_table(
                        media.media_id,
                        [spans[i][0] for i in picked],
                        [spans[i][1] for i in picked],
                        kind,
                        np.stack([values[i] for i in picked]),
                    )
                )
        import pyarrow as pa

        table = pa.concat_tables(tables)
        index = pa.array(np.arange(table.num_rows, dtype=np.int32))
        return table.set_column(table.schema.get_field_index("frame_index"), "frame_index", index)

    def extract(self, media: MediaContext) -> ExtractionResult:
        try:
            signal = media.audio
        except NoAudioError as exc:
            return ExtractionResult(no_audio_row(exc))
        duration = len(signal) / SAMPLE_RATE
        values = self.functionals(signal)
        note = audio_note(signal)
        if note is None and not np.isfinite(values).all():
            note = "openSMILE returned non-finite values: check the audio"
        row: dict[str, Any] = {"duration_s": duration, "features": values.tolist()}
        if note:
            row["error"] = note
        return ExtractionResult(row, self._span_rows(media, signal, duration))
