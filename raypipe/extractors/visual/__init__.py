"""Visual extractors: per sampled frame, over detected and aligned faces (FER2013 CNN,
torchvision backbones, HOG, LBP, face tracks)."""
