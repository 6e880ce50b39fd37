"""Building extractors by name from their configs.

Each extractor is one entry of the :data:`EXTRACTORS` registry: its module, class and a
one-line description (docs/extending.md). The class is imported only when the extractor is
built, so a job that does not use an extractor never imports its (possibly heavy) dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

from pydantic import BaseModel

from raypipe.extractors.base import Extractor
from raypipe.registry import Registry


class ExtractorEntry(NamedTuple):
    """Where a built-in extractor lives and what it computes."""

    module: str
    cls: str
    description: str


#: Every extractor by name (the name is also the ExtractConfig field holding its settings).
EXTRACTORS: Registry[ExtractorEntry] = Registry("EXTRACTORS", "extractor")

_BUILT_IN: dict[str, ExtractorEntry] = {
    "face_expression": ExtractorEntry(
        "raypipe.extractors.visual.face_expression",
        "FaceExpressionExtractor",
        "MTCNN faces + FER2013 mini-Xception embedding per sampled frame",
    ),
    "face_tracks": ExtractorEntry(
        "raypipe.extractors.visual.face_tracks",
        "FaceTracksExtractor",
        "every face per sampled frame: box, 5 landmarks, score, track; optional aligned crops",
    ),
    "face_backbone": ExtractorEntry(
        "raypipe.extractors.visual.face_backbone",
        "FaceBackboneExtractor",
        "torchvision backbone (local checkpoint) on aligned faces or whole frames",
    ),
    "face_hog": ExtractorEntry(
        "raypipe.extractors.visual.handcrafted",
        "FaceHogExtractor",
        "HOG descriptor of each aligned grey face",
    ),
    "face_lbp": ExtractorEntry(
        "raypipe.extractors.visual.handcrafted",
        "FaceLbpExtractor",
        "uniform LBP histograms over a grid of each aligned grey face",
    ),
    "opensmile": ExtractorEntry(
        "raypipe.extractors.audio.opensmile_functionals",
        "OpenSmileExtractor",
        "openSMILE functionals (eGeMAPSv02 by default) per media",
    ),
    "opensmile_lld": ExtractorEntry(
        "raypipe.extractors.audio.opensmile_lld",
        "OpenSmileLldExtractor",
        "openSMILE low-level descriptors, one row per 10 ms frame with start/end seconds",
    ),
    "vad": ExtractorEntry(
        "raypipe.extractors.audio.vad",
        "VadExtractor",
        "Silero voice activity: speech segments with start/end seconds",
    ),
    "whisper_transcript": ExtractorEntry(
        "raypipe.extractors.audio.whisper_transcript",
        "WhisperTranscriptExtractor",
        "Whisper transcript of the speech (faster-whisper by default): segments, words, language",
    ),
    "whisper_embedding": ExtractorEntry(
        "raypipe.extractors.audio.whisper_embedding",
        "WhisperEmbeddingExtractor",
        "Whisper encoder states pooled per media, per window and per speech segment",
    ),
    "text_embedding": ExtractorEntry(
        "raypipe.extractors.text.text_embedding",
        "TextEmbeddingExtractor",
        "transformer sentence embedding of the transcript and of each segment",
    ),
}

for _name, _entry in _BUILT_IN.items():
    EXTRACTORS.register(_name, _entry)


def available_extractors() -> dict[str, str]:
    """Name -> one-line description of every built-in extractor."""
    return {name: entry.description for name, entry in EXTRACTORS.items()}


#: Video settings that change which frames a visual extractor sees (part of its version).
SAMPLING_FIELDS = ("fps", "max_side", "max_frames")


def build_extractor(
    name: str,
    options: BaseModel | dict[str, Any] | None = None,
    video: BaseModel | dict[str, Any] | None = None,
) -> Extractor:
    """Instantiate the extractor ``name`` from its config section (or keyword ``options``
    overriding the section's defaults).

    ``video`` (fields of the extract config's ``video`` section) gives visual extractors the
    frame sampling they run under, so a change of fps, decode size or frame cap makes a new
    version of them and only of them.
    """
    if isinstance(video, BaseModel):
        video = video.model_dump()
    entry = EXTRACTORS[name]
    cls = getattr(importlib.import_module(entry.module), entry.cls)
    if isinstance(options, BaseModel):
        extractor = cls(options)
    else:
        extractor = cls(**{k: v for k, v in (options or {}).items() if k != "enabled"})
    if video is not None and extractor.modality == "visual":
        extractor.sampling = {key: video[key] for key in SAMPLING_FIELDS}
    return extractor
