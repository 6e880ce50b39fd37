"""Backbones load local checkpoints in every format raypipe accepts, and refuse wrong ones."""

from pathlib import Path

import pytest
import torch

from raypipe.errors import ConfigError
from raypipe.models.backbones import ARCHITECTURES, build_backbone


@pytest.mark.parametrize("arch", ["resnet18", "densenet121"])
def test_feature_dimension(arch: str) -> None:
    net = build_backbone(arch).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, ARCHITECTURES[arch][1])


@pytest.mark.parametrize("layout", ["plain", "wrapped", "folder"])
def test_checkpoint_round_trip(tmp_path: Path, layout: str) -> None:
    torch.manual_seed(0)
    source = build_backbone("resnet18").eval()
    state = source.net.state_dict()
    if layout == "plain":
        target = tmp_path / "weights.pth"
        torch.save(state, target)
    elif layout == "wrapped":  # what DDP training scripts often save
        target = tmp_path / "weights.pth"
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, target)
    else:  # a checkpoint folder holding model.pt
        target = tmp_path / "checkpoint_000003"
        target.mkdir()
        torch.save({"model": state}, target / "model.pt")
    loaded = build_backbone("resnet18", target).eval()
    fresh = build_backbone("resnet18").eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(source(x), loaded(x), atol=1e-6)
        assert not torch.allclose(source(x), fresh(x), atol=1e-3)


def test_wrong_architecture_is_one_sentence(tmp_path: Path) -> None:
    torch.save(build_backbone("resnet18").net.state_dict(), tmp_path / "r18.pt")
    with pytest.raises(ConfigError, match="does not fit resnet50"):
        build_backbone("resnet50", tmp_path / "r18.pt")
    with pytest.raises(ConfigError, match="does not exist"):
        build_backbone("resnet18", tmp_path / "absent.pt")
    with pytest.raises(ConfigError, match="unknown backbone"):
        build_backbone("alexnet")
