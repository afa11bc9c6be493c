"""AGW backbone pieces: last stride, non-local positions, GeM, BNNeck, weight loading."""
from __future__ import annotations

import pytest
import torch

from djanet import backbone
from djanet.align import largest_divisor, projection_geometry
from djanet.backbone import (AGWBody, BNNeckHead, GeM, NonLocal, build_resnet, feature_channels,
                             feature_sizes)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_last_stride_one_and_sizes(arch):
    torch.manual_seed(0)
    net = build_resnet(arch)
    body = AGWBody(net, arch)
    x = torch.randn(1, 64, 16, 8)        # a stem output of a 64x32 image
    ch = feature_channels(arch)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        x = body.stage(name, x)
        assert x.shape[1] == ch[name]
    assert tuple(x.shape[-2:]) == feature_sizes((64, 32))["layer4"] == (4, 2)


def test_feature_sizes_any_input():
    assert feature_sizes((384, 192)) == {"stem": (96, 48), "layer1": (96, 48), "layer2": (48, 24),
                                         "layer3": (24, 12), "layer4": (24, 12)}
    net = build_resnet("resnet18")
    x = torch.randn(1, 3, 100, 50)
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    assert tuple(x.shape[-2:]) == feature_sizes((100, 50))["stem"]


def test_non_local_positions():
    assert AGWBody(build_resnet("resnet50"), "resnet50").nl_after == {"layer2": [2, 3], "layer3": [3, 4, 5]}
    assert AGWBody(build_resnet("resnet34"), "resnet34").nl_after == {"layer2": [2, 3], "layer3": [3, 4, 5]}
    assert AGWBody(build_resnet("resnet18"), "resnet18").nl_after == {"layer2": [1], "layer3": [1]}
    assert len(AGWBody(build_resnet("resnet18"), "resnet18", non_local=False).nl) == 0


def test_non_local_starts_as_identity():
    torch.manual_seed(0)
    block = NonLocal(8).eval()
    x = torch.randn(2, 8, 4, 3)
    torch.testing.assert_close(block(x), x)


def test_gem_by_hand():
    x = torch.tensor([[[[1.0, 2.0], [0.0, 3.0]]]])
    expect = ((1 + 8 + 0 + 27) / 4 + 1e-12) ** (1 / 3)
    torch.testing.assert_close(GeM()(x), torch.tensor([[expect]]))


def test_bnneck_head_init():
    torch.manual_seed(0)
    head = BNNeckHead(16, 5)
    assert not head.bnneck.bias.requires_grad and head.bnneck.bias.abs().sum() == 0
    assert head.classifier.bias is None
    assert abs(head.classifier.weight.std().item() - 0.001) < 0.0005


def test_projection_geometry():
    assert projection_geometry(96, 24) == (6, 4, 2)
    assert projection_geometry(48, 24) == (4, 2, 1)
    assert projection_geometry(24, 24) == (1, 1, 0)
    for src, dst in [(25, 7), (13, 7), (16, 4)]:
        k, s, p = projection_geometry(src, dst)
        assert (src + 2 * p - k) // s + 1 == dst
    assert largest_divisor(288, 32) == 32 and largest_divisor(8, 4) == 4 and largest_divisor(7, 4) == 1


def test_pretrained_path_errors(tmp_path, monkeypatch):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_resnet("resnet18", str(missing))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    expected = str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    assert backbone.imagenet_checkpoint_path("resnet18") == expected
    with pytest.raises(RuntimeError, match="put it at .*resnet18-f37072fd.pth"):
        build_resnet("resnet18", True)


def test_pretrained_from_state_dict(tmp_path):
    torch.manual_seed(1)
    src = build_resnet("resnet18")
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, path)
    net = build_resnet("resnet18", str(path))
    torch.testing.assert_close(net.conv1.weight, src.conv1.weight)
    torch.save({"foo": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a resnet18 state dict"):
        build_resnet("resnet18", str(path))
    with pytest.raises(ValueError, match="arch='vgg'"):
        build_resnet("vgg")


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_width_scales_every_stage_and_a_quarter_of_the_parameters(arch):
    torch.manual_seed(0)
    full, half = build_resnet(arch), build_resnet(arch, width=32)
    body = AGWBody(half, arch, width=32)
    x = half.maxpool(half.relu(half.bn1(half.conv1(torch.randn(2, 3, 64, 32)))))
    ch = feature_channels(arch, 32)
    assert x.shape[1] == ch["stem"] == 32
    for name in ("layer1", "layer2", "layer3", "layer4"):
        x = body.stage(name, x)
        assert x.shape[1] == ch[name] == feature_channels(arch)[name] // 2
    assert tuple(x.shape[-2:]) == (4, 2)                         # last stride still 1
    count = lambda net: sum(p.numel() for n, p in net.named_parameters() if not n.startswith("fc."))
    assert 0.24 < count(half) / count(full) < 0.26                 # convolutions scale as width^2
    assert half.layer4[0].conv1.stride == (1, 1)


def test_width_errors_name_the_value():
    with pytest.raises(ValueError, match="width=30"):
        build_resnet("resnet18", width=30)
    with pytest.raises(ValueError, match="only for width 64"):
        build_resnet("resnet18", pretrained=True, width=32)
