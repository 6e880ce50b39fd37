"""The multitask recipe's plain parts against hand-computed cases: per-AU thresholds chosen on
val, ML-ROS clones of rare labels, the masked loss (an unlabelled frame changes nothing) and
frames without a face filled from their neighbours."""

from __future__ import annotations

import numpy as np
import torch

from raypipe.classify.targets import model_outputs
from raypipe.models.multitask import MultitaskTargets
from raypipe.recipes.multitask import (
    MultitaskFrameModel,
    Standardiser,
    au_thresholds,
    build_network,
    fill_from_neighbours,
    ml_ros,
    predict,
    train_step,
)
from raypipe.store import artifacts


def test_au_thresholds_by_hand() -> None:
    # AU 0 on six labelled val frames; grid 0.2, 0.4, 0.5, 0.7. F1 = 2TP / (2TP + FP + FN):
    # 0.2 -> 6/8 = 0.75, 0.4 -> 6/7 = 0.857, 0.5 -> 4/6 = 0.667, 0.7 -> 4/5 = 0.8: 0.4 wins.
    # A seventh frame (0.45, negative) is unlabelled for AU 0; counted, it would make 0.4 score
    # 6/8 and 0.7 win. AU 1 has no labelled positive and keeps 0.5.
    probs = np.array([[0.1, 0.3, 0.45, 0.6, 0.8, 0.9, 0.45], [0.9] * 7]).T
    truth = np.array([[0, 0, 1, 0, 1, 1, 0], [0] * 7], np.float32).T
    mask = np.ones_like(truth, bool)
    mask[6, 0] = False
    thresholds = au_thresholds(probs, truth, mask, [0.2, 0.4, 0.5, 0.7])
    np.testing.assert_allclose(thresholds, [0.4, 0.5])
    mask[6, 0] = True
    np.testing.assert_allclose(au_thresholds(probs, truth, mask, [0.2, 0.4, 0.5, 0.7]), [0.7, 0.5])


def test_ml_ros_clones_the_rare_label_until_it_reaches_the_mean_imbalance() -> None:
    # 90 frames of label 0, 10 of label 1, 20 of label 2 (disjoint): IRLbl 1, 9, 4.5, mean
    # 4.83, so label 1 alone is a minority label; 9 clones take it to 19 (90/19 = 4.74 below
    # the mean) and it leaves the minority, although the budget (0.2 x 120 = 24) is not spent.
    labels = np.zeros((120, 3), bool)
    labels[:90, 0], labels[90:100, 1], labels[100:, 2] = True, True, True
    clones = ml_ros(labels, 0.2, seed=0)
    assert len(clones) == 9 and set(clones) <= set(range(90, 100))
    assert len(ml_ros(labels, 0.0, seed=0)) == 0
    # A budget smaller than the need is spent exactly.
    assert len(ml_ros(labels, 0.05, seed=0)) == 6


def _targets(n: int, labelled: int) -> MultitaskTargets:
    generator = torch.Generator().manual_seed(1)
    mask = torch.arange(n) < labelled
    return MultitaskTargets(
        expression=torch.where(mask, torch.arange(n) % 3, torch.full((n,), 5)),
        expression_mask=mask,
        action_units=(torch.rand(n, 12, generator=generator) > 0.5).float(),
        au_mask=mask[:, None].expand(n, 12).clone(),
        valence_arousal=torch.rand(n, 2, generator=generator) * 2 - 1,
        va_mask=mask,
    )


def _one_step(features: torch.Tensor, targets: MultitaskTargets) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = build_network(4, 8, 12, 16, 0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_step(model, optimizer, features, targets)
    return [p.detach().clone() for p in model.parameters()]


def test_an_unlabelled_frame_changes_nothing() -> None:
    features = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    full = _targets(6, 5)
    first_five = MultitaskTargets(*(getattr(full, f)[:5] for f in full.__dataclass_fields__))
    base = _one_step(features[:5], first_five)
    # The same five frames plus a sixth that carries no label for any task.
    with_unlabelled = _one_step(features, full)
    for a, b in zip(base, with_unlabelled, strict=True):
        torch.testing.assert_close(a, b)
    # The sixth frame labelled does change the step (the check can fail).
    with_labelled = _one_step(features, _targets(6, 6))
    assert any(not torch.allclose(a, b) for a, b in zip(base, with_labelled, strict=True))


def test_frames_without_a_face_take_the_nearest_face_frame() -> None:
    values = np.array([[1.0], [0.0], [0.0], [4.0], [0.0], [9.0], [0.0]])
    has_face = np.array([True, False, False, True, False, True, False])
    media = np.array(["a", "a", "a", "a", "a", "b", "c"])
    t_s = np.array([0.0, 0.1, 0.25, 0.3, 0.5, 0.0, 0.0])
    filled, mask = fill_from_neighbours(values, has_face, media, t_s, np.array([7.0]))
    # 0.1 s is nearer 0.0 s (1), 0.25 s nearer 0.3 s (4), 0.5 s after the last face (4);
    # media c has no face at all: the prior.
    assert filled[:, 0].tolist() == [1.0, 1.0, 4.0, 4.0, 4.0, 9.0, 7.0]
    assert mask.tolist() == (~has_face).tolist()


def test_a_frame_model_record_round_trips_and_predicts_like_the_network() -> None:
    torch.manual_seed(0)
    network = build_network(4, 8, 12, 16, 0.0)
    state = {k: v.numpy() for k, v in network.state_dict().items()}
    mean, std = np.array([1.0, 0, 0, 2], np.float32), np.array([2.0, 1, 1, 4], np.float32)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    expr, au, va = predict(network, Standardiser(mean, std)(x))
    thresholds = np.linspace(0.2, 0.8, 12)
    for head, width, expected in (("expr", 8, expr), ("au", 12, au), ("va", 2, va)):
        model = MultitaskFrameModel(head, state, mean, std, 8, 12, 16, thresholds)
        kind = {"expr": "classification", "au": "multilabel", "va": "regression"}[head]
        record = artifacts.loads(artifacts.dumps({"task": kind, "pipeline": model}))
        np.testing.assert_allclose(model_outputs(record, x, width), expected, atol=1e-6)
    au_model = MultitaskFrameModel("au", state, mean, std, 8, 12, 16, thresholds)
    np.testing.assert_array_equal(au_model.predict(x), au >= thresholds[None])
