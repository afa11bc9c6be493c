"""AGW backbone: torchvision ResNet with last stride 1, non-local blocks, GeM pooling and BNNeck.

AGW (Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook", TPAMI 2021)
places non-local blocks after the last 2 blocks of layer2 and the last 3 blocks of layer3 of a
ResNet-50 ([3, 4, 6, 3] blocks): half of each stage, rounded down. We keep that rule for every
depth: resnet34 ([3, 4, 6, 3]) gets the same positions, resnet18 ([2, 2, 2, 2]) one block after
the last block of layer2 and one after the last block of layer3.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torchvision
from torch import Tensor, nn

from .config import ARCHS, check_width

STRIDES = {"stem": 4, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 16}  # with last stride 1


def _imagenet_weights(arch: str):
    enum = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights",
            "resnet50": "ResNet50_Weights"}[arch]
    # IMAGENET1K_V1: the classic torchvision weights the AGW/DJANet code was initialised from.
    return getattr(torchvision.models, enum).IMAGENET1K_V1


def imagenet_checkpoint_path(arch: str) -> str:
    """Where torch's hub cache keeps (or expects) the ImageNet weights of `arch`."""
    url = _imagenet_weights(arch).url
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def load_resnet_state(arch: str, pretrained: bool | str) -> dict[str, Tensor] | None:
    """The state dict asked for by `pretrained`: True (ImageNet), a path, or False (None)."""
    if pretrained is False or pretrained is None:
        return None
    if pretrained is True:
        path = imagenet_checkpoint_path(arch)
        if os.path.isfile(path):
            return torch.load(path, map_location="cpu", weights_only=True)
        url = _imagenet_weights(arch).url
        try:
            return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False)
        except Exception as err:  # offline, proxy, hash mismatch...
            raise RuntimeError(
                f"pretrained=True: could not download the ImageNet weights of {arch} from {url} "
                f"({type(err).__name__}: {err}). Download that file and put it at {path} "
                f"(torch's hub cache), or pass pretrained='/path/to/{os.path.basename(url)}', "
                "or pretrained=False for random initialisation.") from err
    path = os.path.expanduser(str(pretrained))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained={pretrained!r}: no such file; expected a torchvision "
                                f"{arch} state dict (e.g. {os.path.basename(_imagenet_weights(arch).url)})")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def build_resnet(arch: str, pretrained: bool | str = False, width: int = 64) -> torchvision.models.ResNet:
    """torchvision ResNet (optionally with weights) with the last stride set to 1.

    `width` is the first stage's channel count (torchvision's 64); every stage scales with it, so
    32 costs about a quarter of the multiply-adds. Only width 64 has ImageNet weights.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r}; expected one of {ARCHS}")
    check_width(width, pretrained)
    net = getattr(torchvision.models, arch)(weights=None)
    if width != 64:
        _rescale(net, width)
    state = load_resnet_state(arch, pretrained)
    if state is not None:
        missing, _ = net.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")},
                                         strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing:
            raise ValueError(f"pretrained={pretrained!r} is not a {arch} state dict: "
                             f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
    # Last stride 1 (BasicBlock: conv1; Bottleneck: conv2; both: the downsample shortcut).
    for module in net.layer4[0].modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)
    return net


def _rescale(net: torchvision.models.ResNet, width: int) -> None:
    """Rebuild `net`'s stem and stages with `width` channels in the first stage (x2 per stage)."""
    block = type(net.layer1[0])
    blocks = [len(getattr(net, f"layer{i}")) for i in range(1, 5)]
    net.inplanes = width
    net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    for i, n in enumerate(blocks):
        setattr(net, f"layer{i + 1}", net._make_layer(block, width * 2 ** i, n, stride=1 if i == 0 else 2))
    net.fc = nn.Linear(8 * width * block.expansion, net.fc.out_features)
    for m in net.modules():  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def make_stem(net: torchvision.models.ResNet) -> nn.Sequential:
    """conv1 + bn1 + relu + maxpool: all a modality-specific stem holds."""
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)


def feature_channels(arch: str, width: int = 64) -> dict[str, int]:
    """Output channels of the stem and the four stages."""
    wide = 4 if arch == "resnet50" else 1
    return {"stem": width, "layer1": width * wide, "layer2": 2 * width * wide,
            "layer3": 4 * width * wide, "layer4": 8 * width * wide}


def feature_sizes(img_size: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """(H, W) of each map: every stride-2 op of a torchvision ResNet maps n to ceil(n / 2)."""
    def down(n: int, stride: int) -> int:
        while stride > 1:
            n, stride = -(-n // 2), stride // 2
        return n
    return {k: (down(img_size[0], s), down(img_size[1], s)) for k, s in STRIDES.items()}


class NonLocal(nn.Module):
    """Non-local block as in AGW: z = x + BN(W (theta(x)^T phi(x) / N) g(x)), BN starting at zero.

    The zero-initialised BN makes the block an identity at the start, so it can be inserted into
    a pretrained network without disturbing it (its theta/phi/g get zero gradient until the BN
    weight moves).
    """

    def __init__(self, channels: int, reduction: int = 2):
        super().__init__()
        inter = channels // reduction
        self.inter = inter
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        self.W = nn.Sequential(nn.Conv2d(inter, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)       # (b, N, inter)
        phi = self.phi(x).flatten(2)                           # (b, inter, N)
        g = self.g(x).flatten(2).transpose(1, 2)               # (b, N, inter)
        f = theta @ phi / (h * w)                              # affinity, no softmax
        y = (f @ g).transpose(1, 2).reshape(b, self.inter, h, w)
        return x + self.W(y)


class AGWBody(nn.Module):
    """layer1..layer4 of a ResNet (last stride 1) with non-local blocks after the AGW positions."""

    def __init__(self, net: torchvision.models.ResNet, arch: str, non_local: bool = True, width: int = 64):
        super().__init__()
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        ch = feature_channels(arch, width)
        self.nl_after: dict[str, list[int]] = {}
        self.nl = nn.ModuleDict()
        if non_local:
            for name in ("layer2", "layer3"):
                blocks = len(getattr(self, name))
                self.nl_after[name] = list(range(blocks - blocks // 2, blocks))
                self.nl[name] = nn.ModuleList(NonLocal(ch[name]) for _ in self.nl_after[name])

    def stage(self, name: str, x: Tensor) -> Tensor:
        """Run one stage, inserting its non-local blocks after the chosen residual blocks."""
        after = self.nl_after.get(name, [])
        for i, block in enumerate(getattr(self, name)):
            x = block(x)
            if i in after:
                x = self.nl[name][after.index(i)](x)
        return x


class GeM(nn.Module):
    """Generalised-mean pooling with fixed p: (mean_hw x^p + eps)^(1/p), computed in float32."""

    def __init__(self, p: float = 3.0, eps: float = 1e-12):
        super().__init__()
        self.p, self.eps = p, eps

    def forward(self, x: Tensor) -> Tensor:
        x = x.float().clamp(min=0).flatten(2)
        return (x.pow(self.p).mean(-1) + self.eps).pow(1.0 / self.p)


class BNNeckHead(nn.Module):
    """GeM -> BatchNorm1d with the bias frozen at zero (BNNeck) -> bias-free linear classifier."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.pool = GeM()
        self.bnneck = nn.BatchNorm1d(dim)
        nn.init.normal_(self.bnneck.weight, 1.0, 0.01)
        nn.init.zeros_(self.bnneck.bias)
        self.bnneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """layer4 map -> (pooled feature, BN feature)."""
        pool = self.pool(x)
        return pool, self.bnneck(pool)


__all__ = ["ARCHS", "AGWBody", "BNNeckHead", "GeM", "NonLocal", "build_resnet", "feature_channels",
           "feature_sizes", "imagenet_checkpoint_path", "load_resnet_state", "make_stem"]
