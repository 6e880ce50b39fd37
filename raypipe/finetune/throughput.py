"""Training throughput of a plain single-process torch loop, the baseline that Ray Train runs
are compared with (docs/benchmarks.md, "Training")."""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader

from raypipe.finetune.augment import build_transform
from raypipe.finetune.dataset import ImageDataset
from raypipe.finetune.images import LabelledImages
from raypipe.finetune.loop import train_epoch
from raypipe.models.classifier import build_classifier


def plain_loop_images_per_s(
    images: LabelledImages,
    arch: str,
    image_size: int,
    batch_size: int,
    epochs: int,
    threads: int,
    device: str = "cpu",
    mixed_precision: bool = True,
) -> float:
    """Training images per second of a plain torch loop over the train split, same model,
    augmentation and batch size as `raypipe train`; the first epoch is a warm-up and is not
    counted (``epochs`` must be at least 2)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    target = torch.device(device)
    model = build_classifier(arch, len(images.classes)).to(target)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=mixed_precision and target.type == "cuda")
    dataset = ImageDataset(images, "train", build_transform(image_size, True))
    loader = DataLoader(dataset, batch_size, shuffle=True)
    seen, seconds = 0.0, 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        result = train_epoch(model, loader, optimizer, target, scaler, mixed_precision)
        if target.type == "cuda":
            torch.cuda.synchronize()
        if epoch > 0:
            seen += result["images"]
            seconds += time.perf_counter() - start
    return seen / seconds
