"""The extractor contract: resources follow the device, versions follow config and weights."""

from __future__ import annotations

from typing import Any, ClassVar

from raypipe.extractors.base import ExtractionResult, Extractor
from raypipe.extractors.registry import build_extractor
from raypipe.media.context import MediaContext


class _Probe(Extractor):
    name: ClassVar[str] = "probe"
    modality: ClassVar[str] = "visual"
    level: ClassVar[str] = "media"

    def __init__(self, device: str = "cpu", gpu_fraction: float = 0.5, size: int = 3) -> None:
        self.device = device
        self.gpu_fraction = gpu_fraction
        self.size = size

    @property
    def dim(self) -> int:
        return self.size

    def config_dict(self) -> dict[str, Any]:
        return {"size": self.size}

    def weights_digest(self) -> str:
        return "w1"

    def extract(self, media: MediaContext) -> ExtractionResult:
        raise NotImplementedError


def test_gpu_share_only_on_a_cuda_device() -> None:
    assert _Probe("cpu", 0.5).resources == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert _Probe("cuda", 0.25).resources == {"num_cpus": 1.0, "num_gpus": 0.25}
    assert _Probe("cuda:1", 1.0).resources["num_gpus"] == 1.0


def test_version_changes_with_config_but_not_with_device() -> None:
    assert _Probe(size=3).version == _Probe("cuda", size=3).version
    assert _Probe(size=3).version != _Probe(size=4).version


def test_frame_sampling_versions_visual_extractors_only() -> None:

    video = {"fps": 5.0, "max_side": 320, "max_frames": 300, "window_frames": 64}
    slower = {**video, "fps": 2.0}
    hog = build_extractor("face_hog", {}, video)
    assert hog.version != build_extractor("face_hog", {}, slower).version
    assert hog.version != build_extractor("face_hog", {}, {**video, "max_side": 640}).version
    # Window size changes memory, not output: same version.
    assert hog.version == build_extractor("face_hog", {}, {**video, "window_frames": 8}).version
    smile = build_extractor("opensmile", {}, video)
    assert smile.sampling is None
    assert smile.version == build_extractor("opensmile", {}, slower).version


def test_every_extractor_with_a_device_can_reserve_a_gpu_share() -> None:
    from raypipe.config import ExtractConfig
    from raypipe.extractors.registry import EXTRACTORS

    for name in EXTRACTORS:
        fields = ExtractConfig.model_fields[name].annotation.model_fields
        if "device" in fields:
            assert "gpu_fraction" in fields, f"{name} has a device but no gpu_fraction"
    tracks = build_extractor("face_tracks", {"gpu_fraction": 0.5})
    tracks.device = "cuda"  # (no GPU here: the detector stays on the CPU)
    assert tracks.resources["num_gpus"] == 0.5
