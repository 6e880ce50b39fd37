"""raypipe: a Ray-native batch pipeline for multimodal emotion recognition research."""

__version__ = "0.1.0"
