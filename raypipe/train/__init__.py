"""Fine-tuning backbones: labelled image sources, augmentation, the epoch loop, checkpoints,
training curves and export. Plain torch; the Ray Train wiring is in raypipe.pipeline.train."""
