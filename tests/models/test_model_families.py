"""Each model family trains a few steps on small real-shaped data and its loss falls; masks
and padding behave as documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from raypipe.errors import ConfigError
from raypipe.finetune.sample_faces import make_face_images
from raypipe.models.cascade_net import ClassGroups, combine_cascade
from raypipe.models.classifier import BackboneClassifier, build_classifier
from raypipe.models.group import GroupEmotionNet, pad_faces
from raypipe.models.multitask import (
    MultitaskNet,
    MultitaskTargets,
    distillation_loss,
    multitask_loss,
)
from raypipe.models.sequence import TemporalModel, frame_windows


class TinyEncoder(nn.Module):
    """A two-layer CNN with a ``dim`` attribute, standing in for a backbone where speed matters."""

    dim = 32

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def faces(per_class: int, classes: int = 3, size: int = 32, seed: int = 0):
    images, labels, _ = make_face_images(per_class, size, classes, range(6), seed)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(labels)


def fit(step, steps: int = 25) -> list[float]:
    """Run ``step()`` (returns a loss tensor after its backward) ``steps`` times."""
    return [float(step()) for _ in range(steps)]


def trainer(model: nn.Module, lr: float = 3e-3):
    optimizer = torch.optim.Adam(model.parameters(), lr)

    def run(loss_fn):
        def step():
            optimizer.zero_grad()
            loss = loss_fn()
            loss.backward()
            optimizer.step()
            return loss.detach()

        return step

    return run


def test_backbone_with_new_head_two_stages(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y = faces(6, classes=2)
    stage_a = build_classifier("resnet18", 2)
    losses_a = fit(trainer(stage_a)(lambda: nn.functional.cross_entropy(stage_a(x), y)), 8)
    assert losses_a[-1] < losses_a[0]
    path = tmp_path / "stage_a.pt"
    torch.save({"model": stage_a.state_dict()}, path)
    x, y = faces(6, classes=3, seed=1)
    stage_b = build_classifier("resnet18", 3, checkpoint=path)
    first = stage_a.backbone.net.conv1.weight
    assert torch.equal(stage_b.backbone.net.conv1.weight, first)  # starts from stage A
    assert stage_b.head.out_features == 3
    losses_b = fit(trainer(stage_b)(lambda: nn.functional.cross_entropy(stage_b(x), y)), 8)
    assert losses_b[-1] < losses_b[0]


def partial_targets(y: torch.Tensor, seed: int = 0) -> MultitaskTargets:
    """Expression from the class, AUs and valence/arousal derived from it; each sample keeps
    only some of its labels."""
    generator = torch.Generator().manual_seed(seed)
    n = len(y)
    au = torch.stack([(y == 1), (y == 2), (y != 0), (y == 2) | (y == 1)], 1).float()
    va = torch.stack([torch.tensor([0.0, 0.8, 0.3])[y], torch.tensor([-0.2, 0.4, 0.9])[y]], 1)
    return MultitaskTargets(
        expression=y,
        expression_mask=torch.rand(n, generator=generator) < 0.6,
        action_units=au,
        au_mask=torch.rand(n, generator=generator) < 0.6,
        valence_arousal=va,
        va_mask=torch.rand(n, generator=generator) < 0.6,
    )


def agreement(student, teacher) -> float:
    """Share of samples whose expression class the student and the teacher agree on."""
    same = student.expression.argmax(1) == teacher.expression.argmax(1)
    return float(same.float().mean())


def test_multitask_masked_losses_then_student_distillation() -> None:
    torch.manual_seed(0)
    x, y = faces(10)
    targets = partial_targets(y)
    teacher = MultitaskNet(TinyEncoder(), n_expressions=3, n_aus=4, hidden=32)
    out = teacher(x)
    assert out.expression.shape == (30, 3) and out.action_units.shape == (30, 4)
    assert out.valence_arousal.shape == (30, 2) and out.valence_arousal.abs().max() <= 1
    # Labels of unlabelled samples are ignored: scrambling them leaves the loss unchanged.
    scrambled = MultitaskTargets(
        torch.where(targets.expression_mask, targets.expression, (targets.expression + 1) % 3),
        targets.expression_mask,
        torch.where(targets.au_mask[:, None], targets.action_units, 1 - targets.action_units),
        targets.au_mask,
        torch.where(targets.va_mask[:, None], targets.valence_arousal, -targets.valence_arousal),
        targets.va_mask,
    )
    assert torch.isclose(multitask_loss(out, targets)[0], multitask_loss(out, scrambled)[0])
    losses = fit(trainer(teacher, 1e-2)(lambda: multitask_loss(teacher(x), targets)[0]), 40)
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])

    teacher.eval()
    with torch.no_grad():
        soft = teacher(x)
    student = MultitaskNet(TinyEncoder(), n_expressions=3, n_aus=4, hidden=32)
    agreement_before = float(
        (student(x).expression.argmax(1) == soft.expression.argmax(1)).float().mean()
    )
    losses = fit(
        trainer(student, 1e-2)(lambda: distillation_loss(student(x), soft, targets, alpha=0.3)[0]),
        40,
    )
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
    agreement_after = float(
        (student(x).expression.argmax(1) == soft.expression.argmax(1)).float().mean()
    )
    assert agreement_after > agreement_before


def test_coarse_to_fine_cascade() -> None:
    classes = ["Neutral", "Happy", "Surprise", "Sad"]
    groups = ClassGroups.from_config(
        classes, {"neutral": ["Neutral"], "expressive": ["Happy", "Surprise", "Sad"]}, "expressive"
    )
    with pytest.raises(ConfigError, match="exactly once"):
        ClassGroups.from_config(classes, {"a": ["Neutral"], "b": ["Happy"]}, "b")
    torch.manual_seed(0)
    x, y = faces(8, classes=4)
    coarse_y = torch.from_numpy(groups.coarse_labels(y.numpy()))
    keep, fine_y = groups.fine_subset(y.numpy())
    assert set(coarse_y.tolist()) == {0, 1} and sorted(set(fine_y.tolist())) == [0, 1, 2]
    coarse = BackboneClassifier(TinyEncoder(), len(groups.names))
    fine = BackboneClassifier(TinyEncoder(), len(groups.fine_members()))
    fine_x, fine_t = x[keep], torch.from_numpy(fine_y)
    coarse_losses = fit(trainer(coarse)(lambda: nn.functional.cross_entropy(coarse(x), coarse_y)))
    fine_losses = fit(trainer(fine)(lambda: nn.functional.cross_entropy(fine(fine_x), fine_t)))
    assert coarse_losses[-1] < coarse_losses[0] and fine_losses[-1] < fine_losses[0]
    with torch.no_grad():
        probs = combine_cascade(coarse(x).softmax(1), fine(x).softmax(1), groups)
    assert probs.shape == (32, 4)
    assert torch.allclose(probs.sum(1), torch.ones(32), atol=1e-5)


@pytest.mark.parametrize("merge", ["mean", "attention", "context_attention"])
def test_group_model_merges_a_variable_number_of_faces(merge: str) -> None:
    torch.manual_seed(0)
    x, y = faces(4, classes=2, size=24)
    scenes = nn.functional.interpolate(x, size=32)
    counts = [1, 3, 2, 4] * 2
    per_image = [x[(i + torch.arange(c)) % len(x)] for i, c in enumerate(counts)]
    crops, mask = pad_faces(per_image)
    labels = y[: len(counts)]
    assert crops.shape == (8, 4, 3, 24, 24) and mask.sum().item() == sum(counts)
    model = GroupEmotionNet(TinyEncoder(), TinyEncoder(), n_classes=2, merge=merge)
    model.eval()
    with torch.no_grad():
        reference = model(scenes[:8], crops, mask)
        noisy = crops.clone()
        noisy[~mask] = torch.rand_like(noisy[~mask])  # padding content must not matter
        assert torch.allclose(model(scenes[:8], noisy, mask), reference, atol=1e-5)
        weights = model.pool.weights(torch.randn(8, 4, 32), mask, torch.randn(8, 32))
        assert torch.allclose(weights.sum(1), torch.ones(8)) and (weights[~mask] == 0).all()
    model.train()
    losses = fit(
        trainer(model)(lambda: nn.functional.cross_entropy(model(scenes[:8], crops, mask), labels))
    )
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("kind", ["conv", "attention"])
def test_sequence_model_over_frame_feature_windows(kind: str) -> None:
    rng = np.random.default_rng(0)
    clips, labels = [], []
    for label in (0, 1) * 6:
        t = int(rng.integers(10, 30))
        base = rng.normal(0, 1, (t, 16)).astype(np.float32)
        base[:, 0] += np.sin(np.arange(t) * (0.3 + 0.9 * label))  # class-dependent rhythm
        valid = rng.random(t) > 0.2
        clips.append((base, valid))
        labels.append(label)
    windows, masks, window_labels = [], [], []
    for (features, valid), label in zip(clips, labels, strict=True):
        w, m, starts = frame_windows(features, valid, window=8, hop=4)
        assert w.shape[1:] == (8, 16) and starts[0] == 0 and (w[~m] == 0).all()
        windows.append(w)
        masks.append(m)
        window_labels += [label] * len(w)
    x = torch.from_numpy(np.concatenate(windows))
    m = torch.from_numpy(np.concatenate(masks))
    y = torch.tensor(window_labels)
    torch.manual_seed(0)
    model = TemporalModel(16, 2, kind=kind, hidden=32, dropout=0.0)
    losses = fit(trainer(model)(lambda: nn.functional.cross_entropy(model(x, m), y)), 30)
    assert losses[-1] < 0.8 * losses[0]
    model.eval()
    with torch.no_grad():
        changed = x.clone()
        changed[~m] = 5.0
        assert torch.allclose(model(changed, m), model(x, m), atol=1e-4)


def test_cascade_combination_on_a_hand_computed_case() -> None:
    """Classes in a non-alphabetical group order, so a swapped fine order, a wrong group or an
    unshared outside-group probability each change the answer."""
    classes = ["Angry", "Happy", "Sad", "Neutral", "Fear"]
    groups = ClassGroups.from_config(
        classes,
        {"positive": ["Happy"], "negative": ["Sad", "Angry", "Fear"], "other": ["Neutral"]},
        fine_group="negative",
    )
    coarse = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])  # positive, negative, other
    fine = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])  # Sad, Angry, Fear
    expected = torch.tensor(
        [
            # Angry        Happy  Sad          Neutral  Fear
            [0.5 * 0.2, 0.2, 0.5 * 0.7, 0.3, 0.5 * 0.1],
            [0.3 * 0.3, 0.6, 0.3 * 0.1, 0.1, 0.3 * 0.6],
        ]
    )
    assert torch.allclose(combine_cascade(coarse, fine, groups), expected)
    assert groups.coarse_labels(np.array([0, 1, 2, 3, 4])).tolist() == [1, 0, 1, 2, 1]
    keep, fine_labels = groups.fine_subset(np.array([3, 4, 0, 1, 2]))
    assert keep.tolist() == [1, 2, 4] and fine_labels.tolist() == [2, 1, 0]


def test_cascade_shares_a_group_probability_among_its_classes() -> None:
    groups = ClassGroups.from_config(
        ["a", "b", "c", "d"], {"pair": ["a", "b"], "rest": ["c", "d"]}, fine_group="rest"
    )
    out = combine_cascade(torch.tensor([[0.8, 0.2]]), torch.tensor([[0.25, 0.75]]), groups)
    assert torch.allclose(out, torch.tensor([[0.4, 0.4, 0.05, 0.15]]))
