"""Training components without Ray: image sources and splits, balanced sharded sampling,
augmentation, the epoch loop, early stopping, checkpoints and export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import DataLoader

from raypipe.config import ExtractConfig
from raypipe.errors import ConfigError
from raypipe.finetune.augment import build_transform
from raypipe.finetune.dataset import ImageDataset, ShardedWeightedSampler, class_weights
from raypipe.finetune.export import export_backbone, extract_snippet, write_extract_config
from raypipe.finetune.images import image_folder
from raypipe.finetune.loop import (
    TrainingState,
    evaluate,
    load_checkpoint,
    save_checkpoint,
    train_epoch,
)
from raypipe.finetune.sample_faces import write_image_folder
from raypipe.finetune.summary import write_training_report
from raypipe.models.backbones import build_backbone
from raypipe.models.classifier import build_classifier


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    return write_image_folder(root, {"train": 12, "val": 4}, size=32, classes=3, identities=6)


def test_split_folders_and_flat_folders_with_a_seeded_split(corpus: Path, tmp_path: Path) -> None:
    images = image_folder(corpus)
    assert images.classes == ["Happy", "Neutral", "Surprise"]
    assert len(images.indices("train")) == 36 and len(images.indices("val")) == 12
    assert images.image(0).shape == (32, 32, 3) and images.image(0).dtype == np.uint8
    # <root>/<Class>/* without split folders: a stratified validation share by seed.
    flat = tmp_path / "flat"
    for number in range(10):
        for name, label in (("Angry", 0), ("Happy", 1)):
            (flat / name).mkdir(parents=True, exist_ok=True)
            colour = np.full((8, 8, 3), 40 * label + number, np.uint8)
            Image.fromarray(colour).save(flat / name / f"{number}.png")
    (flat / "Other").mkdir()
    split = image_folder(flat, classes=["Happy", "Angry"], val_fraction=0.3, seed=1)
    assert split.classes == ["Happy", "Angry"] and len(split) == 20
    assert split.class_counts("val").tolist() == [3, 3]
    again = image_folder(flat, classes=["Happy", "Angry"], val_fraction=0.3, seed=1)
    assert (again.split == split.split).all()
    with pytest.raises(ConfigError, match="no images"):
        image_folder(tmp_path / "flat" / "Other")


def test_balanced_sampling_is_sharded_across_ranks() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    weights = class_weights(labels, 2)
    assert np.isclose(weights[labels == 1].sum(), 0.5)
    shards = [ShardedWeightedSampler(labels, 2, rank, 2, seed=3) for rank in (0, 1)]
    for shard in shards:
        shard.set_epoch(1)
    drawn = [list(shard) for shard in shards]
    assert len(drawn[0]) == len(drawn[1]) == 50
    together = np.array(drawn[0] + drawn[1])
    assert 0.35 < (labels[together] == 1).mean() < 0.65  # balanced, not 10 %
    single = ShardedWeightedSampler(labels, 2, 0, 1, seed=3)
    single.set_epoch(1)
    assert sorted(together.tolist()) == sorted(single)  # the shards split one sequence
    shards[0].set_epoch(2)
    assert list(shards[0]) != drawn[0]


def test_augmentation_changes_training_images_only() -> None:
    image = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    train = build_transform(32, True, degrees=20, brightness=0.5)
    plain = build_transform(32, False)
    torch.manual_seed(0)
    a, b = train(image), train(image)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32 and 0 <= a.min() <= a.max() <= 1
    assert not torch.equal(a, b)
    assert torch.equal(plain(image), plain(image))


def test_epochs_learn_checkpoint_resume_and_export(corpus: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    images = image_folder(corpus)
    train = DataLoader(ImageDataset(images, "train", build_transform(32, False)), 12, shuffle=True)
    val = DataLoader(ImageDataset(images, "val", build_transform(32, False)), 24)
    model = build_classifier("resnet18", 3)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=0)
    state = TrainingState()
    device = torch.device("cpu")
    losses = []
    for epoch in (1, 2):
        trained = train_epoch(model, train, optimizer, device)
        scores = evaluate(model, val, device, 3)
        losses.append(trained["loss"])
        state.record({"epoch": epoch, "train_loss": trained["loss"], **scores}, 0.5, patience=2)
    assert not state.stopped_early
    state.record({"epoch": 3, "train_loss": losses[-1], **scores}, 0.4, patience=2)
    assert losses[-1] < losses[0] and trained["images"] == 36
    assert set(scores) == {"loss", "accuracy", "macro_f1", "uar"}
    assert state.best_epoch == 1 and state.bad_epochs == 2 and state.stopped_early

    save_checkpoint(tmp_path / "ckpt", model, optimizer, scheduler, None, state, {"arch": "x"})
    fresh = build_classifier("resnet18", 3)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), 1e-3)
    restored = load_checkpoint(tmp_path / "ckpt", fresh, fresh_optimizer, scheduler, None)
    assert restored == state
    assert torch.equal(fresh.head.weight, model.head.weight)
    assert fresh_optimizer.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()

    exported = export_backbone(tmp_path / "ckpt", "resnet18", tmp_path / "export")
    plain = torch.load(exported, weights_only=True)
    assert not any(k.startswith(("backbone.", "head.")) for k in plain)
    backbone = build_backbone("resnet18", exported).eval()
    model.eval()
    batch = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(backbone(batch), model.backbone(batch), atol=1e-5)

    snippet = extract_snippet(exported, "resnet18", 32, store="s", manifest="m.parquet")
    path = write_extract_config(tmp_path / "export", snippet, tmp_path)
    text = path.read_text()
    assert text.startswith("#") and "raypipe extract --config" in text.splitlines()[1]
    config = ExtractConfig.model_validate(yaml.safe_load(text))
    enabled = [n for n, f in config if getattr(f, "enabled", False)]
    assert enabled == ["face_backbone"] and config.face_backbone.checkpoint == str(exported)

    report = write_training_report(state.history, tmp_path / "report", "macro_f1", {"a": 1})
    assert (tmp_path / "report" / "curves.png").stat().st_size > 1000
    assert "| epoch |" in report.read_text() and "- a: 1" in report.read_text()
