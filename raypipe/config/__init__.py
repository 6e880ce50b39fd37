"""Configuration: typed pydantic sections, one module per command, loaded from YAML with
``key=value`` overrides. Each field is declared once, with its docstring as help text."""

from raypipe.config.base import StrictModel, load_config
from raypipe.config.cascade import CascadeRecipeConfig, CascadeStageConfig
from raypipe.config.classify import (
    TASK_METRIC_NAMES,
    ClassifierName,
    FeatureSetConfig,
    Pooling,
    TuneClassifiersConfig,
)
from raypipe.config.demo import DemoConfig
from raypipe.config.extract import (
    ExtractConfig,
    FaceBackboneConfig,
    FaceExpressionConfig,
    FaceHogConfig,
    FaceLbpConfig,
    FaceTracksConfig,
    OpenSmileConfig,
    OpenSmileLldConfig,
    TextEmbeddingConfig,
    VadConfig,
    VideoConfig,
    WhisperEmbeddingConfig,
    WhisperModelConfig,
    WhisperTranscriptConfig,
)
from raypipe.config.frames import FrameDataConfig, SpanFeaturesConfig
from raypipe.config.fuse import CascadeConfig, FuseConfig, FusionMethodName, SmoothingConfig
from raypipe.config.group import GroupConfig, GroupDataConfig
from raypipe.config.multitask import MultitaskConfig
from raypipe.config.predict import PredictConfig
from raypipe.config.runtime import RayConfig
from raypipe.config.sequence import SequenceConfig
from raypipe.config.tracking import TrackingBackend, TrackingConfig
from raypipe.config.train import (
    AugmentConfig,
    TrainConfig,
    TrainDataConfig,
    TrainSearchConfig,
)

#: The config model of each job recipe, by the recipe's name (jobs/<name>.py).
CONFIG_MODELS: dict[str, type[StrictModel]] = {
    "extract": ExtractConfig,
    "tune_classifiers": TuneClassifiersConfig,
    "fuse": FuseConfig,
    "demo": DemoConfig,
    "predict": PredictConfig,
    "train": TrainConfig,
    "multitask": MultitaskConfig,
    "cascade": CascadeRecipeConfig,
    "sequence": SequenceConfig,
    "group": GroupConfig,
}
#: The names in CONFIG_MODELS that are recipes, run as `raypipe recipe NAME`.
RECIPE_CONFIGS = ("multitask", "sequence", "cascade", "group")

__all__ = [
    "CONFIG_MODELS",
    "RECIPE_CONFIGS",
    "TASK_METRIC_NAMES",
    "AugmentConfig",
    "CascadeConfig",
    "CascadeRecipeConfig",
    "CascadeStageConfig",
    "ClassifierName",
    "DemoConfig",
    "ExtractConfig",
    "FaceBackboneConfig",
    "FaceExpressionConfig",
    "FaceHogConfig",
    "FaceLbpConfig",
    "FaceTracksConfig",
    "FeatureSetConfig",
    "FrameDataConfig",
    "FuseConfig",
    "FusionMethodName",
    "GroupConfig",
    "GroupDataConfig",
    "MultitaskConfig",
    "OpenSmileConfig",
    "OpenSmileLldConfig",
    "Pooling",
    "PredictConfig",
    "RayConfig",
    "SequenceConfig",
    "SmoothingConfig",
    "SpanFeaturesConfig",
    "StrictModel",
    "TextEmbeddingConfig",
    "TrackingBackend",
    "TrackingConfig",
    "TrainConfig",
    "TrainDataConfig",
    "TrainSearchConfig",
    "TuneClassifiersConfig",
    "VadConfig",
    "VideoConfig",
    "WhisperEmbeddingConfig",
    "WhisperModelConfig",
    "WhisperTranscriptConfig",
    "load_config",
]
