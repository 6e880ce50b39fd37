"""Whisper encoder states pooled per media, per sliding window and per speech segment."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from raypipe.config.extract import WhisperEmbeddingConfig
from raypipe.extractors.audio.vad import VoiceActivity, speech_segments
from raypipe.extractors.audio.whisper_models import CHUNK_SAMPLES, ENCODER_HZ, load_backend
from raypipe.extractors.base import ExtractionResult, Extractor, numbered_names
from raypipe.extractors.spans import no_audio_row, span_table
from raypipe.extractors.windows import sliding_windows
from raypipe.media.audio import SAMPLE_RATE, NoAudioError
from raypipe.media.context import MediaContext


def _mean(states: np.ndarray, start_s: float, end_s: float) -> np.ndarray | None:
    lo = int(np.floor(start_s * ENCODER_HZ))
    hi = max(lo + 1, int(np.ceil(end_s * ENCODER_HZ)))
    part = states[lo:hi]
    return part.mean(axis=0) if len(part) else None


class WhisperEmbeddingExtractor(Extractor):
    """Mean Whisper encoder state (50 Hz) over the whole track: one vector per media.

    Frame rows hold the mean over sliding windows (kind 'window') and, with ``segments``, over
    voice-activity speech segments (kind 'segment'), with start and end seconds. The track is
    encoded in 30 s chunks, ``batch_size`` chunks per forward pass.

    Options: :class:`~raypipe.config.extract.WhisperEmbeddingConfig`.
    """

    name: ClassVar[str] = "whisper_embedding"
    modality: ClassVar[str] = "audio"
    level: ClassVar[str] = "media"

    config_model = WhisperEmbeddingConfig

    def __init__(self, config: WhisperEmbeddingConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        c = self.config
        self.model = load_backend(
            c.backend, c.model_dir, c.checkpoint, c.device, c.compute_type, c.cpu_threads, 1
        )
        self.backend = c.backend
        self.device = c.device
        self.batch_size = c.batch_size
        self.window_s = float(c.window_s)
        self.hop_s = float(c.hop_s) if c.hop_s else self.window_s
        self.vad = VoiceActivity() if c.segments else None
        self.gpu_fraction = c.gpu_fraction

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def feature_names(self) -> list[str]:
        """``emb_000``...: dimensions of the mean Whisper encoder state (no individual
        meaning)."""
        return numbered_names("emb", self.dim)

    def config_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
            "segments": self.vad is not None,
            "pooling": "mean",
        }

    def weights_digest(self) -> str:
        return self.model.digest + (f"+vad-{self.vad.digest()}" if self.vad else "")

    def states(self, signal: np.ndarray) -> np.ndarray:
        """Encoder states of a whole 16 kHz track, (frames, dim) at 50 Hz."""
        chunks = [signal[i : i + CHUNK_SAMPLES] for i in range(0, len(signal), CHUNK_SAMPLES)]
        parts: list[np.ndarray] = []
        for i in range(0, len(chunks), self.batch_size):
            parts.extend(self.model.encode(chunks[i : i + self.batch_size]))
        if not parts:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(parts)

    def extract(self, media: MediaContext) -> ExtractionResult:
        try:
            signal = media.audio
        except NoAudioError as exc:
            return ExtractionResult(no_audio_row(exc))
        duration = len(signal) / SAMPLE_RATE
        states = self.states(signal)
        row: dict[str, Any] = {"duration_s": duration}
        if len(states):
            row["features"] = states.mean(axis=0).tolist()
        else:
            row["features"] = [float("nan")] * self.dim
            row["error"] = "audio track is empty: features are NaN"
        tables = []
        spans: list[tuple[str, list[tuple[float, float]]]] = []
        if self.window_s > 0:
            spans.append(("window", sliding_windows(duration, self.window_s, self.hop_s)))
        if self.vad is not None:
            spans.append(("segment", speech_segments(media, self.vad)))
        for kind, found in spans:
            vectors = [_mean(states, s, e) for s, e in found]
            keep = [i for i, v in enumerate(vectors) if v is not None]
            tables.append(
                span_table(
                    media.media_id,
                    [found[i][0] for i in keep],
                    [found[i][1] for i in keep],
                    kind,
                    [vectors[i] for i in keep],
                )
            )
        frames = None
        if tables:
            frames = pa.concat_tables(tables)
            index = pa.array(range(frames.num_rows), type=pa.int32())
            frames = frames.set_column(
                frames.schema.get_field_index("frame_index"), "frame_index", index
            )
        return ExtractionResult(row, frames)
