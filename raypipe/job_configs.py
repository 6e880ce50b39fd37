"""Typed configs of the CLI commands and jobs; each field's docstring is its help text."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

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
    max_frames: int = Field(default=300, ge=1)
    """At most this many frames per media (evenly thinned beyond)."""


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


class OpenSmileConfig(StrictModel):
    """openSMILE functionals over each media's audio track."""

    enabled: bool = True
    """Run this extractor."""
    feature_set: Literal["eGeMAPSv02", "GeMAPSv01b", "ComParE_2016"] = "eGeMAPSv02"
    """openSMILE feature set."""


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
    opensmile: OpenSmileConfig = OpenSmileConfig()
    """openSMILE extractor settings."""
    workers: int | None = Field(default=None, ge=1)
    """Extraction actors running at once; unset: one per CPU of the Ray cluster."""
    batch_size: int = Field(default=2, ge=1)
    """Media handed to an actor per call."""
    ray: RayConfig = RayConfig()
    """Ray connection."""

    @model_validator(mode="after")
    def _check(self) -> ExtractConfig:
        from raypipe.extractors.registry import EXTRACTORS

        if not any(getattr(getattr(self, n, None), "enabled", False) for n in EXTRACTORS):
            raise ValueError("at least one extractor must be enabled")
        return self


Pooling = Literal["mean", "max", "std", "meanstd"]
ClassifierName = Literal["logreg", "lightgbm"]


class FeatureSetConfig(StrictModel):
    """One stored feature set that classifiers are trained on."""

    extractor: str
    """Extractor name in the store (e.g. face_expression, opensmile)."""
    pooling: list[Pooling] = ["meanstd"]
    """Frame-to-media pooling(s) to try for frame-level extractors (ignored for media-level)."""


class TuneClassifiersConfig(StrictModel):
    """`raypipe tune-classifiers`: Ray Tune over feature set x pooling x classifier x params."""

    store: str | None = None
    """Feature store written by `raypipe extract`."""
    run: Path | None = None
    """Run folder for models, predictions and the report (created if absent)."""
    feature_sets: list[FeatureSetConfig] = [
        FeatureSetConfig(extractor="face_expression", pooling=["meanstd", "max"]),
        FeatureSetConfig(extractor="opensmile"),
    ]
    """Feature sets to train on."""
    classifiers: list[ClassifierName] = ["logreg", "lightgbm"]
    """Classifiers to search."""
    logreg_c: list[float] = [0.01, 0.1, 1.0, 10.0]
    """Inverse regularisation strengths tried for logistic regression."""
    lightgbm_num_leaves: list[int] = [4, 15]
    """Leaf counts tried for LightGBM."""
    lightgbm_n_estimators: int = Field(default=200, ge=10)
    """Boosting rounds for LightGBM."""
    metric: Literal["macro_f1", "accuracy", "uar"] = "macro_f1"
    """Validation metric that picks the best configuration."""
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    """Trials running at once; unset: one per CPU."""
    seed: int = 0
    """Random seed of every model."""
    ray: RayConfig = RayConfig()
    """Ray connection."""


class FuseConfig(StrictModel):
    """`raypipe fuse`: late fusion of stored predictions with weights searched by Ray Tune."""

    run: Path | None = None
    """Run folder written by `raypipe tune-classifiers`."""
    models: list[str] | None = None
    """Models to fuse; unset: the best model of each modality."""
    num_samples: int = Field(default=48, ge=1)
    """Weight vectors Ray Tune tries."""
    metric: Literal["macro_f1", "accuracy", "uar"] = "macro_f1"
    """Validation metric the weights maximise."""
    seed: int = 0
    """Random seed of the search."""
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


#: The config model of each job recipe, by the recipe's name (jobs/<name>.py).
CONFIG_MODELS: dict[str, type[StrictModel]] = {
    "extract": ExtractConfig,
    "tune_classifiers": TuneClassifiersConfig,
    "fuse": FuseConfig,
    "demo": DemoConfig,
}
