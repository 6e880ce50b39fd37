"""A small, deterministic, labelled multimodal demo set (face video + speech) for ``raypipe demo``.

Every clip shows the same real face (``skimage.data.astronaut()``) over a tinted background and
says a short English sentence. Each modality carries only part of the 7-class EmotiW label
(class index ``c`` in ``Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral``):

* **face** -- visual group ``c // 2`` ({Angry, Disgust}, {Fear, Happy}, {Sad, Surprise},
  {Neutral}) changes how the face region looks: 0 darker (gamma > 1) and tilted clockwise,
  1 brighter (gamma < 1) and tilted anticlockwise, 2 blurred with low contrast, 3 unchanged.
  Cue strength is drawn per clip (from 45% to 100%), so weak cues resemble Neutral.
* **voice** -- audio group ``c % 2`` for ``c < 6`` and 2 for Neutral sets the speaker's pitch
  (espeak-ng ``-p`` 15 / 50 / 85, median f0 about 72 / 99 / 143 Hz; pitch jittered by +-5
  per clip).

* **words** -- text group :func:`text_group` (negative: Angry, Disgust, Fear, Sad; positive:
  Happy, Surprise; neutral) picks the sentence: negative and positive sentences share most of
  their words ("I feel so sad" / "I feel so happy"), and 30% of the non-neutral clips say a
  neutral sentence instead, so the words alone are an imperfect cue (and the transcript adds
  recognition errors on top).

So the face alone can reach about 4/7 accuracy, the voice about 3/7, the words less, and all
together close to 1. Nuisances per clip: the face drifts and zooms slightly across frames, the
background tint, pixel noise, loudness and speaking rate (175 +- 15 words per minute).

The output is byte-for-byte reproducible for a seed: every clip draws from its own random
generator, seeded by ``(seed, class, clip)``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage import data as skdata
from skimage.transform import resize, rotate

from raypipe.labels import EMOTIW7
from raypipe.media.speech import SAMPLE_RATE, espeak_available, speak_with_fallback
from raypipe.media.writer import video_codec, write_clip

log = logging.getLogger(__name__)

#: Neutral English sentences (short enough for a two-second clip at the demo's speaking rates).
DEMO_SENTENCES: tuple[str, ...] = (
    "The shop opens at eight",
    "He called me this morning",
    "She parked the car outside",
    "The train leaves at noon",
    "I put the keys away",
)

#: Sentences of each text group: 0 negative, 1 positive, 2 neutral. The negative and positive
#: ones share their frames ("this is", "I feel so", "what a") and differ in one or two words.
TEXT_GROUP_SENTENCES: tuple[tuple[str, ...], ...] = (
    ("This is terrible", "I hate this place", "I feel so sad", "What a horrible day"),
    ("This is wonderful", "I love this place", "I feel so happy", "What a lovely day"),
    DEMO_SENTENCES,
)

#: Probability that a clip of a negative or positive class says a neutral sentence instead.
TEXT_NEUTRAL_RATE = 0.3

#: espeak-ng pitch (0-99) of each audio group: low, middle, high voice.
AUDIO_GROUP_PITCH: tuple[int, ...] = (15, 50, 85)

#: Ids of the broken files :func:`make_broken_media` writes.
BROKEN_IDS: tuple[str, ...] = ("broken_truncated", "broken_empty", "broken_text")

_SPLIT_NAMES = ("train", "val", "test")
_BASE_WPM = 175
# Region of the 512x512 astronaut image around the head: a square that leaves room to rotate,
# and the part of it (rows, columns) kept as the face patch (200 x 180 pixels, face centred).
_SQUARE = (slice(0, 240), slice(108, 348))
_PATCH = (slice(20, 220), slice(30, 210))
# Patch scale in a 240-pixel-tall frame: the face (hairline to chin, ~115 px in the source) is
# then about 110-130 px tall, depending on the per-clip zoom.
_BASE_SCALE = 1.05


def visual_group(class_index: int) -> int:
    """Visual cue group of an EmotiW class index: ``c // 2`` (Neutral, c = 6, is group 3)."""
    return class_index // 2


def audio_group(class_index: int) -> int:
    """Audio (pitch) group of an EmotiW class index: ``c % 2`` for c < 6, 2 for Neutral."""
    return 2 if class_index == 6 else class_index % 2


def text_group(class_index: int) -> int:
    """Text (word) group of an EmotiW class index: 1 (positive) for Happy and Surprise,
    2 for Neutral, 0 (negative) for Angry, Disgust, Fear and Sad."""
    return {3: 1, 5: 1, 6: 2}.get(class_index, 0)


def demo_sentence(class_index: int, rng: np.random.Generator) -> str:
    """The sentence a clip of class ``class_index`` says: from its text group, or (with
    probability :data:`TEXT_NEUTRAL_RATE`) a neutral one."""
    group = text_group(class_index)
    if group != 2 and rng.random() < TEXT_NEUTRAL_RATE:
        group = 2
    sentences = TEXT_GROUP_SENTENCES[group]
    return sentences[int(rng.integers(len(sentences)))]


@dataclass(frozen=True)
class _FaceCue:
    gamma: float = 1.0
    contrast: float = 1.0
    blur_px: float = 0.0  # Gaussian sigma in pixels of a 240-pixel-tall frame
    rotation_deg: float = 0.0  # anticlockwise


def _face_cue(group: int, rng: np.random.Generator) -> _FaceCue:
    """The face change of a visual group at a random strength, plus small nuisance jitter."""
    strength = rng.uniform(0.45, 1.0)
    gamma, contrast, blur, rotation = 1.0, 1.0, 0.0, 0.0
    if group == 0:
        gamma, rotation = 1.0 + 0.9 * strength, -15.0 * strength
    elif group == 1:
        gamma, rotation = 1.0 - 0.45 * strength, 15.0 * strength
    elif group == 2:
        blur, contrast = 2.5 * strength, 1.0 - 0.45 * strength
    # Nuisance present in every group, Neutral included.
    gamma *= float(np.exp(rng.normal(0.0, 0.06)))
    contrast *= 1.0 + rng.normal(0.0, 0.04)
    rotation += rng.normal(0.0, 2.0)
    return _FaceCue(gamma, contrast, blur, rotation)


@lru_cache(maxsize=1)
def _astronaut_square() -> np.ndarray:
    image = skdata.astronaut()[_SQUARE].astype(np.float32) / 255.0
    image.setflags(write=False)
    return image


@lru_cache(maxsize=1)
def _patch_alpha() -> np.ndarray:
    """Soft elliptical mask (1 inside) over the face patch, so the background shows around."""
    height = _PATCH[0].stop - _PATCH[0].start
    width = _PATCH[1].stop - _PATCH[1].start
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot((y - height / 2) / (0.5 * height), (x - width / 2) / (0.5 * width))
    alpha = np.clip((1.0 - radius) / 0.1, 0.0, 1.0)
    alpha.setflags(write=False)
    return alpha


def _face_patch(cue: _FaceCue, scale: float) -> np.ndarray:
    """The face patch (H, W, 4: RGB in [0, 1] and alpha) with ``cue`` applied."""
    square = _astronaut_square()
    if abs(cue.rotation_deg) > 1e-3:
        square = rotate(np.array(square), cue.rotation_deg, order=1, mode="edge")
    patch = np.asarray(square[_PATCH], dtype=np.float32)
    if cue.blur_px > 0:
        sigma = cue.blur_px / scale
        patch = gaussian_filter(patch, sigma=(sigma, sigma, 0), mode="nearest")
    patch = np.clip(patch, 0.0, 1.0) ** cue.gamma
    luminance = float((patch @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())
    patch = np.clip(luminance + cue.contrast * (patch - luminance), 0.0, 1.0)
    return np.concatenate([patch, _patch_alpha()[..., None]], axis=2).astype(np.float32)


def _resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an (h, w, C) float image to (height, width, C), pixel-centre aligned."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = (np.arange(n_out, dtype=np.float32) + 0.5) * (n_in / n_out) - 0.5
        position = np.clip(position, 0.0, n_in - 1.0)
        low = np.floor(position).astype(np.intp)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (position - low).astype(np.float32)

    y0, y1, wy = axis(image.shape[0], height)
    x0, x1, wx = axis(image.shape[1], width)
    rows = image[y0] * (1.0 - wy)[:, None, None] + image[y1] * wy[:, None, None]
    return rows[:, x0] * (1.0 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


def _paste(frame: np.ndarray, layer: np.ndarray, top: int, left: int) -> None:
    """Alpha-blend ``layer`` (h, w, 4) onto ``frame`` (H, W, 3) with its corner at (top, left)."""
    height, width = frame.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + layer.shape[0], height), min(left + layer.shape[1], width)
    if y0 >= y1 or x0 >= x1:
        return
    part = layer[y0 - top : y1 - top, x0 - left : x1 - left]
    alpha = part[..., 3:]
    frame[y0:y1, x0:x1] = frame[y0:y1, x0:x1] * (1.0 - alpha) + part[..., :3] * alpha


def _render_video(
    class_index: int, n_frames: int, frame_size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 RGB of one clip of class ``class_index``."""
    height, width = frame_size
    unit = min(height / 240.0, width / 320.0)  # pixels per pixel of the 240x320 reference frame
    cue = _face_cue(visual_group(class_index), rng)
    scale = _BASE_SCALE * unit
    patch = _face_patch(cue, scale)
    tint = rng.uniform(0.2, 0.8, size=3).astype(np.float32)
    shade = np.linspace(0.85, 1.15, height, dtype=np.float32)[:, None, None]
    background = np.clip(np.broadcast_to(tint * shade, (height, width, 3)), 0.0, 1.0)
    start = rng.uniform(-1.0, 1.0, size=2) * np.array([8.0, 12.0]) * unit
    drift = rng.uniform(-1.0, 1.0, size=2) * np.array([6.0, 10.0]) * unit
    zoom_start = rng.uniform(0.92, 1.05)
    zoom_end = zoom_start * rng.uniform(0.95, 1.05)
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    for index in range(n_frames):
        progress = index / max(n_frames - 1, 1)
        zoom = scale * (zoom_start + (zoom_end - zoom_start) * progress)
        size = (max(2, round(patch.shape[0] * zoom)), max(2, round(patch.shape[1] * zoom)))
        if zoom < 0.7:  # strong downscaling: smooth first so the face does not alias
            layer = resize(patch, size, order=1, anti_aliasing=True, preserve_range=True)
        else:
            layer = _resize_bilinear(patch, *size)
        centre = np.array([height / 2.0, width / 2.0]) + start + drift * progress
        frame = background.copy()
        _paste(frame, layer, round(centre[0] - size[0] / 2), round(centre[1] - size[1] / 2))
        frame *= 255.0
        frame += rng.standard_normal(size=frame.shape, dtype=np.float32) * 3.0
        np.rint(frame, out=frame)
        frames[index] = np.clip(frame, 0.0, 255.0).astype(np.uint8)
    return frames


def _fit(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """Trim leading/trailing silence, then centre-crop or centre-pad to ``n_samples``."""
    loud = np.flatnonzero(np.abs(audio) > 0.02 * max(float(np.abs(audio).max()), 1e-9))
    if loud.size:
        audio = audio[loud[0] : loud[-1] + 1]
    if len(audio) >= n_samples:
        offset = (len(audio) - n_samples) // 2
        return audio[offset : offset + n_samples]
    out = np.zeros(n_samples, dtype=np.float32)
    offset = (n_samples - len(audio)) // 2
    out[offset : offset + len(audio)] = audio
    return out


def _render_audio(class_index: int, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Mono float32 speech at 16 kHz, ``duration_s`` seconds long, for class ``class_index``."""
    sentence = demo_sentence(class_index, rng)
    pitch = AUDIO_GROUP_PITCH[audio_group(class_index)] + int(rng.integers(-5, 6))
    words_per_minute = _BASE_WPM + int(rng.integers(-15, 16))
    speech, _ = speak_with_fallback(sentence, pitch, words_per_minute, rng=rng)
    audio = _fit(speech.astype(np.float32), round(duration_s * SAMPLE_RATE))
    peak = float(np.abs(audio).max())
    if peak > 0:
        audio = audio * (rng.uniform(0.45, 0.8) / peak)
    audio = audio + rng.normal(0.0, 3e-4, size=audio.shape)  # faint room noise
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def _split_counts(n: int, splits: tuple[float, float, float]) -> tuple[int, int, int]:
    n_train = math.floor(n * splits[0] + 0.5)
    n_val = min(n - n_train, math.floor(n * splits[1] + 0.5))
    return n_train, n_val, n - n_train - n_val


def _check_args(
    clips_per_class: int,
    duration_s: float,
    fps: float,
    frame_size: tuple[int, int],
    splits: tuple[float, float, float],
) -> None:
    if clips_per_class < 1:
        raise ValueError(f"clips_per_class must be at least 1, got {clips_per_class}")
    if duration_s <= 0 or fps <= 0:
        raise ValueError(f"duration_s and fps must be positive, got {duration_s} and {fps}")
    if len(frame_size) != 2 or any(v < 16 or v % 2 for v in frame_size):
        raise ValueError(f"frame_size must be (height, width), even and >= 16, got {frame_size}")
    if len(splits) != 3 or min(splits) < 0 or abs(sum(splits) - 1.0) > 1e-6:
        raise ValueError(f"splits must be three non-negative fractions summing to 1, got {splits}")


def make_broken_media(out_dir: Path, good_clip: Path) -> dict[str, Path]:
    """Write three unreadable ``.mp4`` files into ``out_dir`` for error-handling tests.

    * ``broken_truncated.mp4``: the first 30% of the bytes of ``good_clip`` (cut before its
      ``moov`` atom if that comes earlier, so the index of the file is always lost);
    * ``broken_empty.mp4``: zero bytes;
    * ``broken_text.mp4``: a line of text.

    Returns ``{media_id: path}`` with the ids in :data:`BROKEN_IDS`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    content = Path(good_clip).read_bytes()
    cut = int(0.3 * len(content))
    moov = _top_level_box_offset(content, b"moov")
    if moov is not None:
        cut = min(cut, moov)
    paths = {name: out_dir / f"{name}.mp4" for name in BROKEN_IDS}
    paths["broken_truncated"].write_bytes(content[:cut])
    paths["broken_empty"].write_bytes(b"")
    paths["broken_text"].write_text("This is not a video; raypipe should report it as failed.\n")
    return paths


def _top_level_box_offset(content: bytes, kind: bytes) -> int | None:
    """Byte offset of the first top-level ISO-BMFF box of type ``kind``, or None."""
    offset = 0
    while offset + 8 <= len(content):
        size = int.from_bytes(content[offset : offset + 4], "big")
        if content[offset + 4 : offset + 8] == kind:
            return offset
        if size == 1 and offset + 16 <= len(content):
            size = int.from_bytes(content[offset + 8 : offset + 16], "big")
        if size < 8:
            return None
        offset += size
    return None


def _write_manifest(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("media_id", "path", "label", "split"))
        writer.writerows(rows)
    os.replace(tmp, path)


def make_demo_dataset(
    out_dir: Path,
    clips_per_class: int = 12,
    seed: int = 0,
    duration_s: float = 2.0,
    fps: float = 10.0,
    frame_size: tuple[int, int] = (240, 320),
    splits: tuple[float, float, float] = (0.5, 0.25, 0.25),
    include_broken: bool = False,
) -> Path:
    """Write the demo set (clips under ``out_dir/media/``) and return ``out_dir/manifest.csv``.

    Args:
        out_dir: Output folder (created if missing); existing demo files are overwritten.
        clips_per_class: Clips for each of the 7 EmotiW classes.
        seed: Random seed; the same seed gives byte-identical manifests and decoded clips.
        duration_s: Clip length in seconds.
        fps: Video frame rate in frames per second (``round(duration_s * fps)`` frames).
        frame_size: ``(height, width)`` of the video in pixels (even numbers).
        splits: Fractions of each class in train, val and test (stratified by class; counts
            per class are rounded, test takes the remainder).
        include_broken: Also write three unreadable files (see :func:`make_broken_media`),
            listed in the manifest with label Neutral and split test.

    Returns:
        Path of the manifest, a CSV with columns ``media_id, path, label, split`` where path is
        relative to the manifest's folder (``media/<media_id>.mp4``).
    """
    _check_args(clips_per_class, duration_s, fps, frame_size, splits)
    out_dir = Path(out_dir)
    media_dir = out_dir / "media"
    media_dir.mkdir(parents=True, exist_ok=True)
    n_frames = max(1, round(duration_s * fps))
    log.info(
        "demo: writing %d clips (%d per class, %.1f s, %d frames of %dx%d at %g fps, %s video, "
        "%s audio) to %s",
        clips_per_class * len(EMOTIW7),
        clips_per_class,
        duration_s,
        n_frames,
        frame_size[1],
        frame_size[0],
        fps,
        video_codec(),
        "espeak-ng" if espeak_available() else "synthetic",
        media_dir,
    )
    started = time.perf_counter()
    counts = _split_counts(clips_per_class, splits)
    rows: list[tuple[str, str, str, str]] = []
    for class_index, label in enumerate(EMOTIW7):
        order = np.random.default_rng([seed, 1, class_index, 0, 0]).permutation(clips_per_class)
        split_of = np.repeat(np.arange(3), counts)[np.argsort(order)]
        for clip_index in range(clips_per_class):
            media_id = f"{label.lower()}_{clip_index:03d}"
            visual_rng = np.random.default_rng([seed, 0, class_index, clip_index, 0])
            audio_rng = np.random.default_rng([seed, 0, class_index, clip_index, 1])
            frames = _render_video(class_index, n_frames, frame_size, visual_rng)
            audio = _render_audio(class_index, duration_s, audio_rng)
            write_clip(media_dir / f"{media_id}.mp4", frames, fps, audio, SAMPLE_RATE)
            rows.append(
                (media_id, f"media/{media_id}.mp4", label, _SPLIT_NAMES[split_of[clip_index]])
            )
        log.info(
            "demo: class %d/%d %s: %d clips (%.1f s elapsed)",
            class_index + 1,
            len(EMOTIW7),
            label,
            clips_per_class,
            time.perf_counter() - started,
        )
    if include_broken:
        good_clip = media_dir / f"{rows[0][0]}.mp4"
        for media_id in make_broken_media(media_dir, good_clip):
            rows.append((media_id, f"media/{media_id}.mp4", "Neutral", "test"))
        log.info("demo: wrote %d broken files for error handling", len(BROKEN_IDS))
    manifest = out_dir / "manifest.csv"
    _write_manifest(manifest, rows)
    log.info("demo: %d rows in %s (%.1f s)", len(rows), manifest, time.perf_counter() - started)
    return manifest
