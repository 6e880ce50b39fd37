"""The face-motion set: eight clips of animated real photographs that decode, with real faces
where the choreography puts them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from raypipe.faces.retinaface import RetinaFaceDetector
from raypipe.media.context import MediaContext
from raypipe.media.face_motion_set import (
    _background,
    _clips,
    _photos,
    make_face_motion_set,
    render_frame,
)


def test_the_set_writes_eight_decodable_clips(tmp_path: Path) -> None:
    manifest = make_face_motion_set(tmp_path, duration_s=1.0, fps=4.0, frame_size=(120, 160))
    table = pd.read_csv(manifest)
    assert len(table) == 8 and table["media_id"].is_unique
    for row in table.itertuples(index=False):
        frames = MediaContext(row.media_id, tmp_path / row.path, fps=4.0).frames
        assert frames.frames.shape[1:] == (120, 160, 3) and len(frames.frames) >= 3


def test_faces_enter_leave_and_cut_where_the_choreography_says() -> None:
    detector = RetinaFaceDetector()
    photos, background = _photos(), _background(320, 240)
    clips = _clips(320, 240)

    def faces(clip: str, t: float) -> int:
        return len(detector.detect(render_frame(clips[clip], photos, background, t)[None])[0])

    assert faces("enter_and_leave", 0.0) == 0 and faces("enter_and_leave", 0.5) == 1
    assert faces("enter_and_leave", 1.0) == 0
    assert faces("two_people_pan", 0.5) == 2
    assert faces("three_people", 0.1) == 2 and faces("three_people", 0.9) == 3
    first, last = (render_frame(clips["shot_cuts"], photos, background, t) for t in (0.1, 0.9))
    assert np.abs(first.astype(int) - last).mean() > 30  # different shots
