"""Still images as Pillow gives them to users: EXIF orientation and palette images, read by
:func:`raypipe.media.image.load_image` as upright RGB (docs/extractors.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from raypipe.media.image import load_image

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _marked(width: int, height: int) -> Image.Image:
    """An RGB image, blue, with a red block in its top-left corner (a quarter of each side)."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 4, height // 4))
    return image


def test_exif_orientation_makes_the_frame_upright(tmp_path: Path) -> None:
    upright = _marked(80, 40)
    # A camera held sideways stores the pixels turned and says so in EXIF: orientation 6
    # means "rotate 90 degrees clockwise to display", so the stored pixels are the upright
    # picture turned 90 degrees counter-clockwise.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.png"
    stored.save(path, exif=exif.tobytes())
    frame = load_image(path, 80, 40)
    assert frame.shape == (40, 80, 3)
    assert tuple(frame[2, 2]) == RED  # the mark is back in the top-left corner
    assert tuple(frame[-3, -3]) == BLUE and tuple(frame[2, -3]) == BLUE
    # Without the tag the same pixels are read as stored (tall, mark at the bottom-left).
    plain = tmp_path / "plain.png"
    stored.save(plain)
    as_stored = load_image(plain, 40, 80)
    assert tuple(as_stored[-3, 2]) == RED and tuple(as_stored[2, 2]) == BLUE


def test_palette_images_become_rgb_with_their_colours(tmp_path: Path) -> None:
    image = _marked(32, 32).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    path = tmp_path / "palette.png"
    image.save(path)
    assert Image.open(path).mode == "P"
    frame = load_image(path, 32, 32)
    assert frame.dtype == np.uint8 and frame.shape == (32, 32, 3)
    assert tuple(frame[1, 1]) == RED and tuple(frame[-1, -1]) == BLUE
    # A palette with a transparent entry is composited over black, like alpha.
    clear = _marked(32, 32).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    index = clear.getpixel((31, 31))
    clear.info["transparency"] = index
    path = tmp_path / "palette_alpha.png"
    clear.save(path, transparency=index)
    frame = load_image(path, 32, 32)
    assert tuple(frame[-1, -1]) == (0, 0, 0) and tuple(frame[1, 1]) == RED
