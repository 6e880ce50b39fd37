"""`raypipe train`: fine-tuning a backbone with Ray Train."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from raypipe.config.base import StrictModel
from raypipe.config.runtime import RayConfig
from raypipe.config.tracking import TrackingConfig


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
    resume: bool = False
    """Resume an interrupted search from Ray Tune's saved state in the run folder. Ray keeps
    that state as pickles, which execute code when read: set it only for run folders you
    created yourself, never for one received from someone else. Off: an interrupted search
    runs its grid again (and Ray Tune's state files are removed after each search)."""

    def active(self) -> bool:
        """True when at least one hyperparameter has values to search."""
        return bool(self.lr or self.weight_decay or self.batch_size or self.dropout)


class TrainConfig(StrictModel):
    """`raypipe train`: fine-tune a backbone with Ray Train, then export it as an extractor."""

    run: str | Path | None = None
    """Training run folder, a path or a URI (s3://bucket/run; on a multi-node cluster, storage
    every node reaches): Ray Train's checkpoints and results, report, export."""
    data: TrainDataConfig = TrainDataConfig()
    """Training images."""
    augment: AugmentConfig = AugmentConfig()
    """Augmentation of training images."""
    arch: Literal["resnet18", "resnet50", "densenet121", "vgg16_bn"] = "resnet18"
    """Backbone architecture."""
    init_checkpoint: str | None = None
    """Starting weights: a backbone state dict, an export/model.pt or a checkpoint folder of an
    earlier run (two-stage fine-tuning), a path or a URI; unset: random initialisation."""
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
    tracking: TrackingConfig = TrackingConfig()
    """Experiment tracking (MLflow, TensorBoard, W&B); off by default."""
    ray: RayConfig = RayConfig()
    """Ray connection."""
