"""DJANet: modality-specific stems, a shared AGW ResNet body, the joint align module, BNNeck head.

With stems=False, align=False (and non_local=True) the same class is the AGW baseline. Every
shape is derived from `arch` and `img_size`; nothing is hard-coded for 384x192.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .align import JointAlign
from .backbone import AGWBody, BNNeckHead, build_resnet, feature_channels, feature_sizes, make_stem

STEMS = ("visible", "visible_aug", "thermal", "thermal_aug")
MODALITY_STEMS = {"visible": ("visible", "visible_aug"), "infrared": ("thermal", "thermal_aug")}


class DJANet(nn.Module):
    """Train: `model(vis1, vis2, ir1, ir2)` -> dict(pool, bn, logits, feat_map), views stacked in that
    order on the batch axis. Test: `model.extract(images, modality)` -> (pool_l2, bn_l2);
    `model.classify(images, modality)` -> identity logits."""

    def __init__(self, num_classes: int, arch: str = "resnet50",
                 img_size: tuple[int, int] = (384, 192), stems: bool = True, align: bool = True,
                 non_local: bool = True, pretrained: bool | str = False, align_dim: int = 256,
                 attn_heads: int = 32, d_state: int = 64, d_conv: int = 4, expand: int = 2,
                 width: int = 64, align_residual: bool = False):
        super().__init__()
        self.arch, self.img_size = arch, tuple(img_size)
        self.num_classes = num_classes
        net = build_resnet(arch, pretrained, width)
        stem = make_stem(net)
        # Four stems copy the same (pretrained) conv1+bn1 and then train apart; one if stems=False.
        if stems:
            self.stems = nn.ModuleDict({name: copy.deepcopy(stem) for name in STEMS})
        else:
            self.stem = stem
        self.body = AGWBody(net, arch, non_local, width)
        channels = feature_channels(arch, width)
        self.align = JointAlign(channels, feature_sizes(self.img_size), align_dim, attn_heads,
                                d_state, d_conv, expand) if align else None
        self.align_residual = align_residual
        self.feat_dim = channels["layer4"]
        self.head = BNNeckHead(self.feat_dim, num_classes)

    @classmethod
    def from_config(cls, model_cfg: Any, num_classes: int, img_size: tuple[int, int]) -> "DJANet":
        """Build from a `config.ModelConfig`."""
        c = model_cfg
        return cls(num_classes, arch=c.arch, img_size=tuple(img_size), stems=c.stems, align=c.align,
                   non_local=c.non_local, pretrained=c.pretrained, align_dim=c.align_dim,
                   attn_heads=c.attn_heads, d_state=c.d_state, d_conv=c.d_conv, expand=c.expand,
                   width=c.width, align_residual=c.align_residual)

    def _stem(self, name: str, x: Tensor) -> Tensor:
        return self.stems[name](x) if hasattr(self, "stems") else self.stem(x)

    def _shared(self, x: Tensor) -> Tensor:
        """Stem output -> layer4 map (float32), the align module between layer3 and layer4 (its
        output replaces layer3's map, as in the paper, or is added to it with align_residual)."""
        maps = {"stem": x}
        for name in ("layer1", "layer2", "layer3"):
            x = self.body.stage(name, x)
            maps[name] = x
        if self.align is not None:
            x = x + self.align(x, maps) if self.align_residual else self.align(x, maps)
        return self.body.stage("layer4", x).float()

    def forward(self, vis1: Tensor, vis2: Tensor, ir1: Tensor, ir2: Tensor) -> dict[str, Tensor]:
        x = torch.cat([self._stem(n, v) for n, v in zip(STEMS, (vis1, vis2, ir1, ir2))], dim=0)
        feat_map = self._shared(x)
        pool, feat = self.head(feat_map)
        return {"pool": pool, "bn": feat, "logits": self.head.classifier(feat), "feat_map": feat_map}

    def embed(self, images: Tensor, modality: str) -> tuple[Tensor, Tensor]:
        """The test-time path, unnormalised (pool, bn): a modality's two stems averaged.

        Runs in the model's current mode and keeps gradients (Grad-CAM needs them); `extract`
        and `classify` call it in eval mode without gradients.
        """
        if modality not in MODALITY_STEMS:
            raise ValueError(f"modality={modality!r}; expected 'visible' or 'infrared'")
        if hasattr(self, "stems"):
            a, b = MODALITY_STEMS[modality]
            x = (self._stem(a, images) + self._stem(b, images)) / 2
        else:
            x = self.stem(images)
        return self.head(self._shared(x))

    def _embed_eval(self, images: Tensor, modality: str) -> tuple[Tensor, Tensor]:
        was_training = self.training
        self.eval()
        try:
            return self.embed(images, modality)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def extract(self, images: Tensor, modality: str) -> tuple[Tensor, Tensor]:
        """L2-normalised (pooled, BN) features in eval mode; a modality's two stems are averaged."""
        pool, feat = self._embed_eval(images, modality)
        return F.normalize(pool, dim=1), F.normalize(feat, dim=1)

    @torch.no_grad()
    def classify(self, images: Tensor, modality: str) -> Tensor:
        """Identity logits of the test-time features (eval mode): which training identity the
        classifier names for each image, seen without augmentation."""
        return self.head.classifier(self._embed_eval(images, modality)[1])

    def head_parameters(self) -> list[nn.Parameter]:
        """BNNeck and classifier: trained at the head learning rate."""
        return [p for p in (self.head.bnneck.weight, self.head.classifier.weight) if p.requires_grad]

    def param_groups(self, lr: float, head_lr: float) -> list[dict[str, Any]]:
        """Optimizer groups: everything at `lr`, BNNeck + classifier at `head_lr`."""
        head = {id(p) for p in self.head_parameters()}
        base = [p for p in self.parameters() if p.requires_grad and id(p) not in head]
        return [{"params": base, "lr": lr, "name": "base"},
                {"params": self.head_parameters(), "lr": head_lr, "name": "head"}]

    def parameter_counts(self) -> dict[str, int]:
        """held: every parameter; used: what inference uses (all but the classifier)."""
        held = sum(p.numel() for p in self.parameters())
        return {"held": held, "used": held - self.head.classifier.weight.numel(),
                "classifier": self.head.classifier.weight.numel()}
