"""Voice activity with the Silero VAD model that ships inside the ``silero-vad`` wheel (ONNX)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from raypipe.config.extract import VadConfig
from raypipe.extractors.base import ExtractionResult, Extractor
from raypipe.extractors.spans import no_audio_row, span_table
from raypipe.media.audio import SAMPLE_RATE, NoAudioError
from raypipe.media.context import MediaContext
from raypipe.weights import file_sha256, package_file

log = logging.getLogger(__name__)

#: Prefix of the keys under which a media's speech segments are shared with other extractors
#: (the settings complete the key, so extractors with different VAD settings never share).
SHARED_KEY = "vad_segments"
#: Default voice-activity settings: those of the extract config's ``vad`` section.
_DEFAULTS = VadConfig()


class VoiceActivity:
    """Speech segments of a 16 kHz mono signal (Silero VAD, ONNX runtime, one thread).

    Arguments are the fields of :class:`~raypipe.config.extract.VadConfig` (defaults there).
    """

    def __init__(
        self,
        threshold: float = _DEFAULTS.threshold,
        min_speech_s: float = _DEFAULTS.min_speech_s,
        min_silence_s: float = _DEFAULTS.min_silence_s,
        pad_s: float = _DEFAULTS.pad_s,
    ) -> None:
        from silero_vad.utils_vad import OnnxWrapper

        self.model_path = package_file("silero_vad", "data/silero_vad.onnx")
        self.threshold = threshold
        self.min_speech_s = min_speech_s
        self.min_silence_s = min_silence_s
        self.pad_s = pad_s
        self._model = OnnxWrapper(str(self.model_path), force_onnx_cpu=True)
        self._digest = file_sha256(self.model_path)

    def digest(self) -> str:
        """SHA-256 prefix of the ONNX weights."""
        return self._digest

    def settings_key(self) -> str:
        """The settings that change the segments, as text."""
        return f"{self.threshold}/{self.min_speech_s}/{self.min_silence_s}/{self.pad_s}"

    def segments(self, signal: np.ndarray) -> list[tuple[float, float]]:
        """Speech segments of ``signal`` (mono float32, 16 kHz) as (start, end) seconds."""
        import torch
        from silero_vad import get_speech_timestamps

        if len(signal) < 512:
            return []
        self._model.reset_states()
        found = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32)),
            self._model,
            threshold=self.threshold,
            sampling_rate=SAMPLE_RATE,
            min_speech_duration_ms=int(self.min_speech_s * 1000),
            min_silence_duration_ms=int(self.min_silence_s * 1000),
            speech_pad_ms=int(self.pad_s * 1000),
        )
        return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in found]


def speech_segments(media: MediaContext, vad: VoiceActivity) -> list[tuple[float, float]]:
    """A media's speech segments, computed once per VAD setting and shared by every extractor
    that asks with the same settings."""
    return media.shared(f"{SHARED_KEY}:{vad.settings_key()}", lambda: vad.segments(media.audio))


class VadExtractor(Extractor):
    """Speech segments per media (frame rows of kind 'speech' with start/end seconds).

    The media-level vector is ``[speech_s, speech_fraction, segments]``: seconds of speech, its
    share of the track (0-1) and the number of segments.
    """

    name: ClassVar[str] = "vad"
    modality: ClassVar[str] = "audio"
    level: ClassVar[str] = "media"

    config_model = VadConfig

    def __init__(self, config: VadConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        c = self.config
        self.vad = VoiceActivity(c.threshold, c.min_speech_s, c.min_silence_s, c.pad_s)

    @property
    def dim(self) -> int:
        return 3

    @property
    def feature_names(self) -> list[str]:
        """Seconds of speech, its share of the track (0-1), number of speech segments."""
        return ["speech_s", "speech_fraction", "speech_segments"]

    def config_dict(self) -> dict[str, Any]:
        v = self.vad
        return {
            "threshold": v.threshold,
            "min_speech_s": v.min_speech_s,
            "min_silence_s": v.min_silence_s,
            "pad_s": v.pad_s,
        }

    def weights_digest(self) -> str:
        return self.vad.digest()

    def extract(self, media: MediaContext) -> ExtractionResult:
        try:
            signal = media.audio
        except NoAudioError as exc:
            return ExtractionResult(no_audio_row(exc))
        segments = speech_segments(media, self.vad)
        duration = len(signal) / SAMPLE_RATE
        speech = float(sum(end - start for start, end in segments))
        fraction = speech / duration if duration > 0 else 0.0
        rows = span_table(
            media.media_id, [s for s, _ in segments], [e for _, e in segments], "speech"
        )
        media_row = {
            "duration_s": duration,
            "features": [speech, fraction, float(len(segments))],
            "frames": len(segments),
        }
        return ExtractionResult(media_row, rows)
