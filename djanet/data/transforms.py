"""The four training views of a (visible, infrared) pair and the test transform.

Method notes section 4.  torchvision.transforms.v2 supplies grayscale, pad+crop, flip, brightness
jitter, normalisation and plain random erasing; the channel-level augmentations of the
cross-modal ReID literature (CAJ, AGW, DJANet) are written here.  They act on a normalised
(3, H, W) float tensor and take an optional `torch.Generator` so tests can fix their randomness.
"""
from __future__ import annotations

import math

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.2989, 0.587, 0.114)


def _u(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


class ChannelExchange:
    """Replicate one random channel (R, G or B; with `gray`, also the luminance) to all three."""

    def __init__(self, gray: bool = False, generator: torch.Generator | None = None):
        self.gray, self.generator = gray, generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(0, 4 if self.gray else 3, (), generator=self.generator))
        c = _luma(x) if k == 3 else x[k]
        return c.expand_as(x).clone()


def _luma(x: torch.Tensor) -> torch.Tensor:
    return (x * torch.tensor(LUMA, dtype=x.dtype).view(3, 1, 1)).sum(0)


class AdaptiveGray:
    """Half the time copy G to R and B; otherwise with probability `p` use the luminance."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        self.p, self.generator = p, generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if _u(self.generator) < 0.5:
            return x[1].expand_as(x).clone()
        if _u(self.generator) < self.p:
            return _luma(x).expand_as(x).clone()
        return x


class ChannelRandomErasing:
    """Random erasing (Zhong et al. 2020) that fills each channel with its own mean value."""

    def __init__(self, p: float = 0.5, sl: float = 0.02, sh: float = 0.4, r1: float = 0.3,
                 mean=(0.4914, 0.4822, 0.4465), generator: torch.Generator | None = None):
        self.p, self.sl, self.sh, self.r1, self.mean = p, sl, sh, r1, mean
        self.generator = generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if _u(self.generator) >= self.p:
            return x
        _, h, w = x.shape
        for _ in range(100):
            area = h * w * (self.sl + (self.sh - self.sl) * _u(self.generator))
            ratio = math.exp(math.log(self.r1) + (math.log(1 / self.r1) - math.log(self.r1))
                             * _u(self.generator))
            eh, ew = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < eh < h and 0 < ew < w:
                y0 = int(torch.randint(0, h - eh + 1, (), generator=self.generator))
                x0 = int(torch.randint(0, w - ew + 1, (), generator=self.generator))
                x = x.clone()
                x[:, y0:y0 + eh, x0:x0 + ew] = torch.tensor(self.mean, dtype=x.dtype).view(3, 1, 1)
                return x
        return x


class RandomChannelScale:
    """With probability `p`, multiply each channel by its own 2 * U(low, high)."""

    def __init__(self, p: float = 0.5, low: float = 0.01, high: float = 0.5,
                 generator: torch.Generator | None = None):
        self.p, self.low, self.high, self.generator = p, low, high, generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if _u(self.generator) >= self.p:
            return x
        s = 2 * (self.low + (self.high - self.low) * torch.rand(3, generator=self.generator))
        return x * s.to(x.dtype).view(3, 1, 1)


class RandomGreyRemap:
    """With probability `p`, redraw the image's grey levels: its luminance, stretched to [0, 1],
    goes through a random piecewise-linear curve (`knots` segments, levels drawn uniformly, not
    necessarily monotone), the same for the three channels.

    A thermal camera's grey levels owe nothing to the visible dye, so between visible and
    thermal images only geometry (body shape, garment layout, patterns) carries identity; a view
    whose levels are redrawn keeps exactly that. Not in the paper (`data.grey_remap_p=0` there).
    """

    def __init__(self, p: float = 0.5, knots: int = 4, generator: torch.Generator | None = None):
        if knots < 1:
            raise ValueError(f"knots={knots}; expected >= 1")
        self.p, self.knots, self.generator = p, knots, generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if _u(self.generator) >= self.p:
            return x
        grey = _luma(_unnormalise(x))
        lo, hi = grey.min(), grey.max()
        t = (grey - lo) / (hi - lo).clamp_min(1e-6) * self.knots
        i = t.floor().clamp(max=self.knots - 1).long()
        levels = torch.rand(self.knots + 1, generator=self.generator).to(x.dtype)
        f = t - i
        out = levels[i] * (1 - f) + levels[i + 1] * f
        mean, std = _mean_std(x.dtype)
        return (out.expand_as(x) - mean) / std


def _start(img_size) -> list:
    return [v2.ToImage(), v2.Resize(tuple(img_size), antialias=True)]


def pad_pixels(img_size, pad_fraction: float) -> int:
    """The pad of pad+crop in pixels: a fraction of the width, so a shift means the same at any
    size (the paper's 10 px at 192 wide is 0.05; at 32 wide the same shift is 2 px, not 10)."""
    return int(round(pad_fraction * img_size[1]))


def _geometry(img_size, pad_fraction: float) -> list:
    pad = pad_pixels(img_size, pad_fraction)
    return ([v2.Pad(pad), v2.RandomCrop(tuple(img_size))] if pad else []) + [v2.RandomHorizontalFlip()]


def _normalise() -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def train_views(img_size: tuple[int, int], pad_fraction: float = 0.05, erasing_p: float = 0.5,
                channel_aug: bool = True, grey_remap_p: float = 0.0):
    """(VIS-1, VIS-2, IR-1, IR-2): PIL image / uint8 array or tensor -> normalised float tensor.

    `pad_fraction`: pad+crop shift as a fraction of the width (see `pad_pixels`); `erasing_p`:
    probability of the random erasing in each view (the paper: 0.5).  `channel_aug=False` drops the
    channel-level augmentations (grayscale, channel exchange, adaptive gray, brightness jitter,
    channel scaling; channel-mean erasing becomes plain erasing), so an ablation can measure what
    they add: the four views then differ only by their random shift, flip and erasing.
    `grey_remap_p`: probability that a view's grey levels are redrawn last (`RandomGreyRemap`).
    """
    views = _views(img_size, pad_fraction, erasing_p, channel_aug)
    if grey_remap_p > 0:
        views = tuple(v2.Compose([view, RandomGreyRemap(p=grey_remap_p)]) for view in views)
    return views


def _views(img_size, pad_fraction: float, erasing_p: float, channel_aug: bool) -> tuple:
    geometry = _geometry(img_size, pad_fraction)
    if not channel_aug:
        plain = [v2.RandomErasing(p=erasing_p)]
        return tuple(v2.Compose(_start(img_size) + geometry + _normalise() + plain) for _ in range(4))
    vis1 = v2.Compose(_start(img_size) + [v2.RandomGrayscale(p=0.5)] + geometry
                      + _normalise() + [ChannelRandomErasing(p=erasing_p)])
    vis2 = v2.Compose(_start(img_size) + geometry + _normalise()
                      + [v2.RandomErasing(p=erasing_p), ChannelExchange()])
    ir1 = v2.Compose(_start(img_size) + geometry + _normalise()
                     + [v2.RandomErasing(p=erasing_p), AdaptiveGray(p=0.5)])
    ir2 = v2.Compose(_start(img_size) + [v2.ColorJitter(brightness=0.5)] + geometry
                     + _normalise() + [v2.RandomErasing(p=erasing_p), RandomChannelScale(p=0.5)])
    return vis1, vis2, ir1, ir2


def test_transform(img_size: tuple[int, int]):
    """Resize and normalise."""
    return v2.Compose(_start(img_size) + _normalise())


def _mean_std(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(IMAGENET_MEAN, dtype=dtype).view(3, 1, 1),
            torch.tensor(IMAGENET_STD, dtype=dtype).view(3, 1, 1))


def _unnormalise(x: torch.Tensor) -> torch.Tensor:
    mean, std = _mean_std(x.dtype)
    return x * std + mean


def denormalise(x: torch.Tensor) -> torch.Tensor:
    """Inverse of the normalisation, for showing a view as an image in [0, 1]."""
    return _unnormalise(x).clamp(0, 1)
