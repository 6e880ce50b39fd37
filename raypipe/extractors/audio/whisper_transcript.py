"""Whisper transcription gated by voice activity: segments and words with their times."""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import pyarrow as pa

from raypipe.config.extract import WhisperTranscriptConfig
from raypipe.extractors.audio.vad import VoiceActivity, speech_segments
from raypipe.extractors.audio.whisper_models import Segment, load_backend, speech_clips
from raypipe.extractors.base import ExtractionResult, Extractor, settings_section
from raypipe.extractors.spans import no_audio_row, span_table
from raypipe.media.audio import SAMPLE_RATE, NoAudioError
from raypipe.media.context import MediaContext
from raypipe.store.schema import TRANSCRIPT_SCHEMA

log = logging.getLogger(__name__)

#: Whisper's usual temperature fallback schedule.


#: Default sampling seed; only another value enters versions (see version_settings).
_DEFAULT_SEED = WhisperTranscriptConfig.model_fields["seed"].default


class WhisperTranscriber:
    """Voice activity, then Whisper on the speech only, then the usual quality gates.

    A decoded segment is dropped when its compression ratio exceeds
    ``compression_ratio_threshold`` (repetitive output) or when its no-speech probability
    exceeds ``no_speech_threshold`` while its mean log-probability is below
    ``log_prob_threshold``; silence therefore yields no text.

    Options: the fields of :class:`~raypipe.config.extract.WhisperTranscriptConfig`.
    """

    def __init__(self, config: WhisperTranscriptConfig | None = None, **options: Any) -> None:
        c = settings_section(WhisperTranscriptConfig, config, options, "whisper_transcript")
        self.model = load_backend(
            c.backend,
            c.model_dir,
            c.checkpoint,
            c.device,
            c.compute_type,
            c.cpu_threads,
            c.batch_size,
        )
        self.vad = VoiceActivity(threshold=c.vad_threshold)
        self.settings: dict[str, Any] = {
            "backend": c.backend,
            "language": c.language,
            "beam_size": c.beam_size,
            "temperatures": [float(t) for t in c.temperatures],
            "seed": c.seed,
            "no_speech_threshold": c.no_speech_threshold,
            "log_prob_threshold": c.log_prob_threshold,
            "compression_ratio_threshold": c.compression_ratio_threshold,
            "vad_threshold": c.vad_threshold,
            "max_new_tokens": c.max_new_tokens,
        }
        self.device = c.device

    def version_settings(self) -> dict[str, Any]:
        """The settings that make the transcriber's part of an extractor version.

        ``seed`` counts only when it differs from its default (0): transcripts stored before
        sampling was seeded are one valid draw of the same settings, so seeding it changed no
        default version and recomputed no one's transcripts.
        """
        settings = dict(self.settings)
        if settings["seed"] == _DEFAULT_SEED:
            del settings["seed"]
        return settings

    def digest(self) -> str:
        """Digest of the Whisper and voice-activity weights."""
        return f"{self.model.digest}+vad-{self.vad.digest()}"

    def keep(self, segment: Segment) -> bool:
        """Whether a decoded segment passes the quality gates."""
        s = self.settings
        if not segment.text:
            return False
        if segment.compression_ratio > s["compression_ratio_threshold"]:
            return False
        quiet = segment.no_speech_prob > s["no_speech_threshold"]
        return not (quiet and segment.avg_logprob < s["log_prob_threshold"])

    def transcribe(self, media: MediaContext) -> tuple[list[Segment], str | None]:
        """Kept segments of a media (cached on the media for other extractors) and language."""

        def compute() -> tuple[list[Segment], str | None]:
            signal = media.audio
            clips = speech_clips(speech_segments(media, self.vad))
            segments, language = self.model.transcribe(signal, clips, self.settings)
            kept = [s for s in segments if self.keep(s)]
            return kept, (language if kept else None)

        return media.shared(f"transcript:{self.digest()}:{sorted(self.settings.items())}", compute)


def transcript_table(media_id: str, segments: list[Segment], language: str | None) -> pa.Table:
    """Segment rows (kind 'segment') then word rows (kind 'word') in TRANSCRIPT_SCHEMA."""
    seg = span_table(
        media_id,
        [s.start for s in segments],
        [s.end for s in segments],
        "segment",
        schema=TRANSCRIPT_SCHEMA,
        segment_index=list(range(len(segments))),
        text=[s.text for s in segments],
        probability=[min(1.0, math.exp(s.avg_logprob)) for s in segments],
        no_speech_prob=[s.no_speech_prob for s in segments],
        language=[language] * len(segments),
    )
    words = [(i, w) for i, s in enumerate(segments) for w in s.words]
    word = span_table(
        media_id,
        [w.start for _, w in words],
        [w.end for _, w in words],
        "word",
        schema=TRANSCRIPT_SCHEMA,
        segment_index=[i for i, _ in words],
        text=[w.text for _, w in words],
        probability=[w.probability for _, w in words],
        no_speech_prob=[None] * len(words),
        language=[language] * len(words),
    )
    table = pa.concat_tables([seg, word])
    index = pa.array(range(table.num_rows), type=pa.int32())
    return table.set_column(table.schema.get_field_index("frame_index"), "frame_index", index)


class WhisperTranscriptExtractor(Extractor):
    """Transcript per media: segment and word rows with start/end seconds, text and language.

    Media without speech are ``ok`` with no rows; media without an audio stream are
    ``no_audio``. Options: :class:`~raypipe.config.extract.WhisperTranscriptConfig`.
    """

    name: ClassVar[str] = "whisper_transcript"
    modality: ClassVar[str] = "text"
    level: ClassVar[str] = "media"

    config_model = WhisperTranscriptConfig

    def __init__(self, config: WhisperTranscriptConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self.transcriber = WhisperTranscriber(self.config)
        self.gpu_fraction = self.config.gpu_fraction

    @property
    def dim(self) -> int:
        return 0

    @property
    def feature_names(self) -> list[str]:
        """None: a transcript has no feature vector."""
        return []

    @property
    def resources(self) -> dict[str, float]:
        gpus = self.gpu_fraction if self.transcriber.device.startswith("cuda") else 0.0
        return {"num_cpus": 1.0, "num_gpus": gpus}

    def config_dict(self) -> dict[str, Any]:
        return self.transcriber.version_settings()

    def weights_digest(self) -> str:
        return self.transcriber.digest()

    def extract(self, media: MediaContext) -> ExtractionResult:
        try:
            signal = media.audio
        except NoAudioError as exc:
            return ExtractionResult(no_audio_row(exc))
        segments, language = self.transcriber.transcribe(media)
        row: dict[str, Any] = {"duration_s": len(signal) / SAMPLE_RATE, "frames": len(segments)}
        if not segments:
            row["error"] = "no speech"
        return ExtractionResult(row, transcript_table(media.media_id, segments, language))
