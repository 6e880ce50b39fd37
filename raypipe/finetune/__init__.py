"""Fine-tuning backbones: labelled image sources, augmentation, the epoch loop, checkpoints,
training summaries and export. Plain torch; the Ray Train wiring is in raypipe.pipeline.train."""
