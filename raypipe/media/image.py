"""Still images as one-frame media: any Pillow-readable file as upright RGB, resized at load.

Greyscale and palette images become RGB; an alpha channel is composited over black (the colour
face crops use beyond a frame's edge); EXIF orientation is applied, so the frame is upright.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raypipe.errors import MediaError


def load_image(path: str | Path, width: int, height: int) -> np.ndarray:
    """Read ``path`` as an ``(height, width, 3)`` uint8 RGB array (sizes in pixels).

    ``width`` x ``height`` is the size to resize to (Lanczos when shrinking); give the probed
    size to keep the original.

    Raises:
        MediaError: the file cannot be read as an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as raw:
            raw.load()
            image = ImageOps.exif_transpose(raw)
            if image.mode in ("RGBA", "LA", "PA") or (
                image.mode == "P" and "transparency" in image.info
            ):
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                image = Image.alpha_composite(background, rgba)
            image = image.convert("RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.LANCZOS)
            return np.asarray(image, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MediaError(
            f"{path}: not a readable image ({type(exc).__name__}: {exc}); re-export it."
        ) from None
