"""Torch networks: backbones, classifier heads, and the model families of the published
systems (multitask, group-level attention, coarse-to-fine cascade, windowed sequences)."""
