"""Stores: the versioned feature store (features of media, keyed by media id x extractor x
version) and run folders (models, trial results, predictions, fusion of one run)."""
