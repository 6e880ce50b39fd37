"""Late fusion of model predictions: fusion rules, weight search, greedy selection, stacking,
coarse-to-fine cascade, temporal smoothing and cross-validation of fusion methods."""
