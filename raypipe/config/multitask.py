"""`raypipe recipe multitask`: expression, action units and valence/arousal in one network
over stored frame features, trained with masked losses, rebalanced, then distilled."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from raypipe.config.frames import FrameDataConfig, FrameTrainingConfig


class MultitaskConfig(FrameTrainingConfig):
    """Multitask recipe (ABAW 2020): a teacher, then a student on its soft outputs."""

    run: str | None = None
    """Run folder for checkpoints, models and frame-level predictions (a path or s3://...)."""
    data: FrameDataConfig = FrameDataConfig()
    """Where frame features and labels come from."""
    label_space: Literal["abaw_expr", "abaw2020_expr"] = "abaw_expr"
    """Expression classes when labels come from a table (an annotation folder names its own)."""
    hidden: int = Field(default=256, ge=8)
    """Width of the shared feature encoder and of each head's hidden layer."""
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    """Dropout after the shared encoder."""
    task_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Loss weights of expression, AU and valence/arousal."""
    oversample: float = Field(default=0.25, ge=0.0, le=2.0)
    """ML-ROS: training frames added as clones of rare-label frames, as a share of the train
    split (0: no rebalancing)."""
    teacher_epochs: int = Field(default=10, ge=1)
    """Epochs of the teacher (ground truth only)."""
    student_epochs: int = Field(default=10, ge=0)
    """Epochs of the student (ground truth plus the teacher's soft outputs; 0: no student)."""
    distill_alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    """Student loss: alpha x ground-truth loss + (1 - alpha) x agreement with the teacher."""
    temperature: float = Field(default=2.0, gt=0)
    """Softening temperature of the teacher's expression outputs."""
    batch_size: int = Field(default=256, ge=1)
    """Frames per batch per worker."""
    seed: int = 0
    """Seed of initialisation, sampling and oversampling."""
