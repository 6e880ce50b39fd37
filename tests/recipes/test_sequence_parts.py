"""The sequence recipe's plain parts against hand-computed cases: windows of frame rows per
media in time order, frame outputs of overlapping windows averaged back to frames, a masked
frame (no face, padding, no label) that changes nothing, and clip outputs per video."""

from __future__ import annotations

import numpy as np
import torch

from raypipe.models.sequence import MultimodalSequenceModel
from raypipe.recipes.frames import FrameData
from raypipe.recipes.sequence import (
    clip_outputs,
    frame_outputs,
    media_windows,
    modalities,
    modality_masks,
    softmax,
    train_step,
    windows_to_frames,
)


def _frames(media: list[str], t_s: list[float], dim: int = 3, seed: int = 0) -> FrameData:
    n = len(media)
    rng = np.random.default_rng(seed)
    return FrameData(
        media_id=np.asarray(media, object),
        split=np.asarray(["train"] * n, object),
        t_s=np.asarray(t_s, np.float64),
        frame_index=np.arange(n),
        features=rng.normal(size=(n, dim)).astype(np.float32),
        has_face=np.ones(n, bool),
        expr=np.zeros(n, np.int64),
        au=np.zeros((n, 2), np.float32),
        au_mask=np.zeros((n, 2), bool),
        va=np.zeros((n, 2), np.float32),
        va_mask=np.zeros((n, 2), bool),
        classes=("a", "b", "c"),
        au_names=("AU1", "AU2"),
        feature_names=["vis:0", "vis:1", "lld:0"][:dim],
    )


def test_windows_averaged_back_to_frames_by_hand() -> None:
    # Media 'm' has 6 frames stored out of time order (rows 1, 3, 5, 2, 4, 0 in time order);
    # media 'n' has 2 (rows 7, 6 in time order). Window 3, hop 2: 'm' gets windows at its
    # frames 0, 2 and 4 (the last padded), 'n' one padded window.
    t_s = [5.0, 0.0, 3.0, 1.0, 4.0, 2.0, 0.5, 0.0]
    data = _frames(["m"] * 6 + ["n"] * 2, t_s)
    windows, media = media_windows(data, window=3, hop=2)
    in_time = [1, 3, 5, 2, 4, 0]  # rows of 'm' by time
    np.testing.assert_array_equal(
        windows,
        [in_time[0:3], in_time[2:5], [in_time[4], in_time[5], -1], [7, 6, -1]],
    )
    assert list(media) == ["m", "m", "m", "n"]
    outputs = np.array(
        [[1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [100.0, 200.0, 999.0], [7.0, 8.0, 999.0]]
    )[..., None]
    frames = windows_to_frames(outputs, windows, 8)[:, 0]
    # By time: f0 = 1, f1 = 2, f2 = (3 + 10) / 2, f3 = 20, f4 = (30 + 100) / 2, f5 = 200;
    # padding (999) counts nowhere.
    by_row = np.empty(8)
    by_row[in_time] = [1.0, 2.0, 6.5, 20.0, 65.0, 200.0]
    by_row[[7, 6]] = [7.0, 8.0]
    np.testing.assert_allclose(frames, by_row)
    # A row no window holds (m's last frame, row 0) has no output.
    assert np.isnan(windows_to_frames(outputs[:1], windows[:1], 8)[0, 0])


def test_modalities_and_their_masks() -> None:
    data = _frames(["m"] * 4, [0, 1, 2, 3])
    data.has_face[1] = False
    data.features[2, 2] = 0.0  # no audio span around frame 2
    parts = modalities(data.feature_names)
    assert [(p.name, p.start, p.stop) for p in parts] == [("vis", 0, 2), ("lld", 2, 3)]
    masks = modality_masks(data, parts, ["vis"])
    np.testing.assert_array_equal(masks, [[1, 1], [0, 1], [1, 0], [1, 1]])


def test_a_masked_frame_changes_nothing() -> None:
    torch.manual_seed(0)
    data = _frames(["m"] * 10, list(range(10)))
    data.expr[:] = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    data.has_face[4] = False
    parts = modalities(data.feature_names)
    masks = modality_masks(data, parts, ["vis"])
    windows, _ = media_windows(data, window=6, hop=3)
    model = MultimodalSequenceModel([p.dim for p in parts], 3, 2, hidden=8, dropout=0.0)
    before = frame_outputs(model, data.features, masks, windows)
    # Frame 4 has no face: whatever its visual features, every frame's outputs are the same.
    changed = data.features.copy()
    changed[4, :2] = [50.0, -50.0]
    after = frame_outputs(model, changed, masks, windows)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # ...while the same change on a frame with a face changes them.
    changed[5, :2] = [50.0, -50.0]
    assert not np.allclose(frame_outputs(model, changed, masks, windows)[0], before[0])

    # Its label (no face) does not enter the loss either: one step from the same state with
    # the label changed gives the same loss and the same weights.
    def step(expr: np.ndarray) -> tuple[float, list[torch.Tensor]]:
        torch.manual_seed(1)
        net = MultimodalSequenceModel([p.dim for p in parts], 3, 2, hidden=8, dropout=0.0)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        data.expr = expr
        loss = train_step(net, optimizer, data, masks, windows, ["expr"])
        return loss, [p.detach().clone() for p in net.parameters()]

    original = data.expr.copy()
    loss, weights = step(original.copy())
    other = original.copy()
    other[4] = 2 if original[4] != 2 else 0
    loss2, weights2 = step(other)
    assert loss == loss2
    for a, b in zip(weights, weights2, strict=True):
        torch.testing.assert_close(a, b)
    other[5] = 2 if original[5] != 2 else 0  # a frame with a face: the loss changes
    assert step(other)[0] != loss


def test_clip_outputs_average_frame_logits_per_video() -> None:
    data = _frames(["m", "m", "n", "n", "n"], [0, 1, 0, 1, 2])
    data.split[2:] = "val"
    data.expr[:] = [-1, -1, 2, 2, 1]
    logits = np.array([[1, 0, 0], [3, 0, 0], [0, 0, 3], [0, 3, 0], [0, 0, 0]], np.float32)
    clips = clip_outputs(data, logits, {"m": "b", "n": "not a class"})
    assert list(clips["media_id"]) == ["m", "n"] and list(clips["split"]) == ["train", "val"]
    # 'm': its clip label; 'n': the most frequent labelled frame class.
    assert list(clips["label"]) == [1, 2]
    np.testing.assert_allclose(clips["probs"][0], softmax(np.array([[2.0, 0, 0]]))[0])
    np.testing.assert_allclose(clips["probs"][1], softmax(np.array([[0, 1.0, 1.0]]))[0])
