"""Joint align module: fuse each shallow level into the layer3 map by cross-attention and Mamba.

Applied four times in sequence to the layer3 output x, once per level L in (stem, layer1, layer2,
layer3), each level with its own weights (method notes, section 2):

1. deep = 1x1 conv(x) to `dim` channels; shallow = level L's map projected to `dim` channels on
   the layer3 grid (a strided conv, or for layer3 itself the same 1x1 conv as the deep side);
2. both flattened to (B, dim, N positions) and layer-normalised over the positions;
3. deep = deep + 0.1 * shallow; deep = deep + MHA(query=deep, key=value=shallow), with the
   channels as tokens (embedding = N positions);
4. over positions, out = MLP(LN(y)) with y = t + Mamba(LN(t)); levels stem/layer1/layer2 take
   out, layer3 adds it (t + out);
5. back to the grid and a 1x1 conv to layer3's channels, which replaces x.
"""
from __future__ import annotations

from torch import Tensor, nn

from .mamba import Mamba

LEVELS = ("stem", "layer1", "layer2", "layer3")


def largest_divisor(n: int, at_most: int) -> int:
    """Largest divisor of n that is <= at_most (attention heads must divide the embedding)."""
    return max(k for k in range(1, max(1, min(n, at_most)) + 1) if n % k == 0)


def projection_geometry(src: int, dst: int) -> tuple[int, int, int]:
    """(kernel, stride, padding) of a conv taking a length-`src` axis to length `dst`.

    For an integer ratio r = src / dst this is the paper's choice, k = r + 2, s = r, p = r / 2
    (r = 4: k6 s4 p2; r = 2: k4 s2 p1); otherwise the padding is searched so the output length
    comes out exactly `dst` (inputs whose size is not a multiple of 16).
    """
    stride = max(1, round(src / dst))
    kernel = stride + 2 if stride > 1 else 1

    def out(p: int) -> int:
        return (src + 2 * p - kernel) // stride + 1

    for pad in [stride // 2] + list(range(kernel)):
        if out(pad) == dst:
            return kernel, stride, pad
    raise ValueError(f"cannot project a map of size {src} to {dst} with a strided conv; "
                     "use an img_size that is a multiple of 16")


class MLP(nn.Module):
    """dim -> dim -> dim with GELU (weights trunc-normal std 0.02, biases zero, as the seed code)."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)
        for fc in (self.fc1, self.fc2):
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MambaMixer(nn.Module):
    """out = MLP(LN(y)), y = x + Mamba(LN(x)); x is (B, positions, dim)."""

    def __init__(self, dim: int, d_state: int, d_conv: int, expand: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mamba = Mamba(dim, d_state=d_state, d_conv=d_conv, expand=expand)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim)

    def forward(self, x: Tensor) -> Tensor:
        y = x + self.mamba(self.norm1(x))
        return self.mlp(self.norm2(y))


class AlignLevel(nn.Module):
    """One level of the joint align module (its own weights)."""

    def __init__(self, level: str, level_channels: int, level_size: tuple[int, int],
                 deep_channels: int, grid: tuple[int, int], dim: int = 256, attn_heads: int = 32,
                 d_state: int = 64, d_conv: int = 4, expand: int = 2):
        super().__init__()
        self.level, self.grid, self.dim = level, grid, dim
        self.residual = level == "layer3"
        positions = grid[0] * grid[1]
        self.deep = nn.Conv2d(deep_channels, dim, 1)
        if level_size == grid and level_channels == deep_channels:
            self.shallow = None  # same grid and channels: share the deep side's 1x1 conv
        else:
            (kh, sh, ph), (kw, sw, pw) = (projection_geometry(a, b) for a, b in zip(level_size, grid))
            self.shallow = nn.Conv2d(level_channels, dim, (kh, kw), (sh, sw), (ph, pw))
        self.norm_deep = nn.LayerNorm(positions)
        self.norm_shallow = nn.LayerNorm(positions)
        self.heads = largest_divisor(positions, attn_heads)
        self.attn = nn.MultiheadAttention(positions, self.heads, batch_first=True)
        self.mixer = MambaMixer(dim, d_state, d_conv, expand)
        self.out = nn.Conv2d(dim, deep_channels, 1)

    def forward(self, x: Tensor, level_map: Tensor) -> Tensor:
        b = x.shape[0]
        deep = self.norm_deep(self.deep(x).flatten(2))                      # (B, dim, N)
        shallow = (self.shallow or self.deep)(level_map)
        if shallow.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"align level {self.level}: projected map {tuple(shallow.shape[-2:])} "
                             f"!= layer3 grid {tuple(x.shape[-2:])}; was the model built for "
                             "this img_size?")
        shallow = self.norm_shallow(shallow.flatten(2))
        deep = deep + 0.1 * shallow
        deep = deep + self.attn(deep, shallow, shallow, need_weights=False)[0]
        t = deep.transpose(1, 2)                                           # (B, N, dim)
        t = t + self.mixer(t) if self.residual else self.mixer(t)
        # contiguous: a channels-last view here gives the conv weight channels-last gradients,
        # which DistributedDataParallel's gradient buckets then have to copy (and warn about)
        return self.out(t.transpose(1, 2).reshape(b, self.dim, *x.shape[-2:]).contiguous())


class JointAlign(nn.Module):
    """The four levels in sequence: x = level_L(x, map_L) for L in stem, layer1, layer2, layer3."""

    def __init__(self, channels: dict[str, int], sizes: dict[str, tuple[int, int]], dim: int = 256,
                 attn_heads: int = 32, d_state: int = 64, d_conv: int = 4, expand: int = 2):
        super().__init__()
        self.levels = nn.ModuleDict({
            name: AlignLevel(name, channels[name], sizes[name], channels["layer3"], sizes["layer3"],
                             dim, attn_heads, d_state, d_conv, expand)
            for name in LEVELS})

    def forward(self, x: Tensor, maps: dict[str, Tensor]) -> Tensor:
        for name, level in self.levels.items():
            x = level(x, maps[name])
        return x
