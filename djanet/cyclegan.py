"""CycleGAN: the small unpaired infrared -> visible translator behind image-level alignment.

The paper uses CycleGAN-Turbo (a one-step diffusion model that needs Stable-Diffusion-Turbo
weights and a large GPU).  Here a CycleGAN (Zhu et al., ICCV 2017) sized by a preset fits a
laptop CPU: `TranslateConfig` and presets; the networks (`Generator`: ResNet blocks,
`Discriminator`: PatchGAN) and the `ImagePool` history buffer; `CycleGAN` (two generators, two
discriminators, their optimizers and one `train_step`); `train_translator` (resumable, atomic
checkpoints); `load_translator` and `translate_images` (notebook helpers).  `djanet.translate`
turns a trained translator into a translated copy of a dataset.

Naming: domain A = infrared, domain B = visible; `g_ir2vis` is the generator we keep.
"""
from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from .checkpoint import atomic_torch_save, rng_state, safe_load, set_rng_state
from .config import check_threads
from .console import progress
from .data.prepare import data_identity
from .runtime import resolve_device
from .threads import set_threads, timed_step, tuner_for

IMG_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
CHECKPOINT_KIND = "djanet-cyclegan"


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class TranslateConfig:
    img_size: tuple[int, int] = (256, 128)  # (H, W) the translator trains and translates at
    ngf: int = 64                         # generator width (channels of its first conv)
    ndf: int = 64                         # discriminator width
    n_blocks: int = 9                     # ResNet blocks in the generator bottleneck
    n_down: int = 2                       # stride-2 downsamplings in the generator (and upsamplings)
    upsample: str = "transpose"           # transpose (CycleGAN) | nearest (resize+conv: no checkerboard)
    d_layers: int = 3                     # stride-2 conv layers of the PatchGAN discriminator
    lr: float = 2e-4                      # Adam learning rate (CycleGAN default)
    beta1: float = 0.5                    # Adam betas (0.5, 0.999) as in CycleGAN
    beta2: float = 0.999
    lambda_cycle: float = 10.0            # weight of the cycle-consistency L1 loss
    lambda_identity: float = 0.5          # identity loss weight, relative to lambda_cycle
    pool_size: int = 50                   # history buffer of generated images shown to D (0: off)
    batch_size: int = 1                   # unpaired IR and VIS images per step
    steps: int = 100_000                  # training iterations
    decay_start: float = 0.5              # fraction of steps after which lr decays linearly to 0
    max_train_images: int | None = None   # cap on training images per modality (seeded subset)
    preload_mb: int = 2048                # keep training images in memory when they fit this budget
    save_every: int = 2000                # steps between checkpoints (and at the end)
    log_every: int = 50                   # steps between history rows
    translate_batch: int = 16             # images per forward pass when translating a dataset
    threads: int | str | None = None      # torch CPU threads in training: N, "auto" (djanet.threads), None (torch's)
    quiet: bool = False                   # no progress bars


TRANSLATE_PRESETS: dict[str, dict[str, Any]] = {
    # Our stand-in for the paper's GPU translator: CycleGAN's own settings at 256x128.
    "paper-like": {"batch_size": 4, "steps": 100_000, "save_every": 2000},
    # Minutes on a 2-core CPU on the synthetic data at 64x32.
    "cpu-demo": {
        "img_size": (64, 32), "ngf": 16, "ndf": 16, "n_blocks": 3, "d_layers": 3,
        "batch_size": 4, "steps": 1000, "save_every": 250, "log_every": 25,
        "max_train_images": 2000, "translate_batch": 64, "threads": "auto",
    },
    # For the book's gpu-demo preset: the synthetic images' own 128x64, a narrower CycleGAN (6 blocks,
    # width 32), 2000 steps of 8 pairs. Aimed at about a minute on one GPU; not yet measured.
    "gpu-demo": {
        "img_size": (128, 64), "ngf": 32, "ndf": 32, "n_blocks": 6, "d_layers": 3,
        "batch_size": 8, "steps": 2000, "save_every": 500, "log_every": 50, "translate_batch": 128,
    },
    # Seconds; for tests.
    "tiny": {
        "img_size": (32, 16), "ngf": 8, "ndf": 8, "n_blocks": 1, "d_layers": 2,
        "batch_size": 2, "steps": 4, "save_every": 2, "log_every": 1, "max_train_images": 64,
        "translate_batch": 8, "quiet": True,
    },
}


def get_translate_config(name: str = "cpu-demo", **overrides: Any) -> TranslateConfig:
    """Resolve a preset (tiny, cpu-demo, gpu-demo, paper-like) and apply overrides; unknown keys raise."""
    if name not in TRANSLATE_PRESETS:
        raise KeyError(f"unknown translate preset {name!r}; valid presets: {', '.join(TRANSLATE_PRESETS)}")
    cfg = _replace_checked(TranslateConfig(), TRANSLATE_PRESETS[name])
    return _replace_checked(cfg, overrides)


def _replace_checked(cfg: TranslateConfig, changes: dict[str, Any]) -> TranslateConfig:
    valid = [f.name for f in fields(TranslateConfig)]
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        key = key.replace("-", "_")
        if key not in valid:
            raise KeyError(f"unknown translate config key {key!r}; valid keys: {', '.join(valid)}")
        clean[key] = tuple(value) if isinstance(value, list) else value
    out = replace(cfg, **clean)
    _validate(out)
    return out


def _validate(cfg: TranslateConfig) -> None:
    """Sizes must survive the generator's downsamplings and the discriminator's convolutions."""
    h, w = cfg.img_size
    step = 2 ** cfg.n_down
    if h % step or w % step:
        raise ValueError(f"img_size={cfg.img_size} must be divisible by 2**n_down={step}")
    if min(h, w) // step < 2:
        raise ValueError(f"img_size={cfg.img_size} is too small for n_down={cfg.n_down}")
    if min(_patch_out(h, cfg.d_layers), _patch_out(w, cfg.d_layers)) < 1:
        raise ValueError(f"img_size={cfg.img_size} is too small for a PatchGAN with d_layers={cfg.d_layers}")
    if cfg.upsample not in ("transpose", "nearest"):
        raise ValueError(f"upsample={cfg.upsample!r}; expected 'transpose' or 'nearest'")
    if cfg.batch_size < 1 or cfg.steps < 1:
        raise ValueError(f"batch_size and steps must be >= 1 (got {cfg.batch_size}, {cfg.steps})")
    if not 0.0 <= cfg.decay_start <= 1.0:
        raise ValueError(f"decay_start={cfg.decay_start}; expected a fraction in [0, 1]")
    check_threads(cfg.threads)


def _patch_out(n: int, d_layers: int) -> int:
    """Side length of the PatchGAN output for an input side `n` (k4 convs, padding 1)."""
    for _ in range(d_layers):
        n = (n + 2 - 4) // 2 + 1
    return n - 2  # two stride-1 k4 convs


def config_to_dict(cfg: TranslateConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_from_dict(d: dict[str, Any]) -> TranslateConfig:
    return _replace_checked(TranslateConfig(), dict(d))


# --------------------------------------------------------------------------- networks
class ResnetBlock(nn.Module):
    """conv-IN-ReLU-conv-IN with reflection padding and a residual add."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """CycleGAN's ResNet generator: c7s1-ngf, `n_down` stride-2 convs, `n_blocks` ResNet blocks,
    `n_down` transposed convs, c7s1-3 + tanh.  Images in [-1, 1], any size divisible by 2**n_down.
    `upsample="nearest"` replaces each transposed conv by nearest resize + conv, which avoids the
    checkerboard artefacts of transposed convs (Odena et al., Distill 2016)."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9, n_down: int = 2, in_ch: int = 3, out_ch: int = 3,
                 upsample: str = "transpose"):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7),
                                   nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        ch = ngf
        for _ in range(n_down):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch) for _ in range(n_blocks)]
        for _ in range(n_down):
            if upsample == "nearest":
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch // 2, 3, padding=1)]
            else:
                layers += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1)]
            layers += [nn.InstanceNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_ch, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Discriminator(nn.Module):
    """PatchGAN: each output value judges one overlapping patch of the input as real or fake."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, in_ch: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for i in range(1, n_layers):
            nxt = ndf * min(2 ** i, 8)
            layers += [nn.Conv2d(ch, nxt, 4, stride=2, padding=1), nn.InstanceNorm2d(nxt), nn.LeakyReLU(0.2, True)]
            ch = nxt
        nxt = ndf * min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ch, nxt, 4, stride=1, padding=1), nn.InstanceNorm2d(nxt), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(nxt, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _init_weights(module: nn.Module) -> None:
    """CycleGAN's init: conv weights N(0, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ImagePool:
    """History buffer (Shrivastava et al. 2017): the discriminator sees a mix of current and past
    fakes, which damps oscillation.  Seeded and saved in checkpoints so a resumed run is exact."""

    def __init__(self, size: int = 50, seed: int = 0):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = random.Random(seed)

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for img in batch.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif self.rng.random() > 0.5:
                i = self.rng.randrange(self.size)
                out.append(self.images[i].clone())
                self.images[i] = img.clone()
            else:
                out.append(img)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        imgs = torch.cat(self.images, 0).cpu() if self.images else None
        return {"size": self.size, "images": imgs, "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.size = state["size"]
        imgs = state["images"]
        self.images = [] if imgs is None else [im.unsqueeze(0).to(device) for im in imgs]
        self.rng.setstate(_as_random_state(state["rng"]))


def _as_random_state(state: Any) -> tuple:
    """`random.getstate()` comes back from torch.load with lists where tuples were."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


# --------------------------------------------------------------------------- the model and one step
class CycleGAN(nn.Module):
    """Two generators (IR->VIS, VIS->IR), two discriminators, their Adam optimizers and image pools.

    `train_step(ir, vis)` runs one generator update and one discriminator update and returns the
    named losses as floats.  LSGAN (least-squares) adversarial loss, L1 cycle and identity losses."""

    def __init__(self, cfg: TranslateConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        torch.manual_seed(seed)
        self.g_ir2vis = Generator(cfg.ngf, cfg.n_blocks, cfg.n_down, upsample=cfg.upsample)
        self.g_vis2ir = Generator(cfg.ngf, cfg.n_blocks, cfg.n_down, upsample=cfg.upsample)
        self.d_vis = Discriminator(cfg.ndf, cfg.d_layers)
        self.d_ir = Discriminator(cfg.ndf, cfg.d_layers)
        self.apply(_init_weights)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(
            list(self.g_ir2vis.parameters()) + list(self.g_vis2ir.parameters()), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(
            list(self.d_vis.parameters()) + list(self.d_ir.parameters()), lr=cfg.lr, betas=betas)
        self.pool_vis = ImagePool(cfg.pool_size, seed=seed + 1)  # fake visible images for d_vis
        self.pool_ir = ImagePool(cfg.pool_size, seed=seed + 2)   # fake infrared images for d_ir
        self.step = 0

    @staticmethod
    def _gan_loss(pred: torch.Tensor, real: bool) -> torch.Tensor:
        return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))

    def set_lr(self, lr: float) -> None:
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr

    def lr_at(self, step: int) -> float:
        """Constant, then linear decay to 0 over the last (1 - decay_start) of the steps."""
        start = int(self.cfg.decay_start * self.cfg.steps)
        if step < start:
            return self.cfg.lr
        return self.cfg.lr * max(0.0, 1.0 - (step - start) / max(1, self.cfg.steps - start))

    def generator_losses(self, ir: torch.Tensor, vis: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        fake_vis, fake_ir = self.g_ir2vis(ir), self.g_vis2ir(vis)
        out = {
            "g_adv": self._gan_loss(self.d_vis(fake_vis), True) + self._gan_loss(self.d_ir(fake_ir), True),
            "cycle": F.l1_loss(self.g_vis2ir(fake_vis), ir) + F.l1_loss(self.g_ir2vis(fake_ir), vis),
            "fake_vis": fake_vis, "fake_ir": fake_ir,
        }
        if cfg.lambda_identity > 0:
            out["identity"] = F.l1_loss(self.g_ir2vis(vis), vis) + F.l1_loss(self.g_vis2ir(ir), ir)
        else:
            out["identity"] = torch.zeros((), device=ir.device)
        out["g_total"] = (out["g_adv"] + cfg.lambda_cycle * out["cycle"]
                          + cfg.lambda_cycle * cfg.lambda_identity * out["identity"])
        return out

    def train_step(self, ir: torch.Tensor, vis: torch.Tensor) -> dict[str, float]:
        """One CycleGAN iteration on a batch of IR and a batch of (unpaired) VIS images in [-1, 1]."""
        self.set_lr(self.lr_at(self.step))
        # generators (discriminators frozen so their grads stay clean)
        for d in (self.d_vis, self.d_ir):
            d.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        g = self.generator_losses(ir, vis)
        g["g_total"].backward()
        self.opt_g.step()
        for d in (self.d_vis, self.d_ir):
            d.requires_grad_(True)
        # discriminators on real images and pooled fakes
        self.opt_d.zero_grad(set_to_none=True)
        fake_vis = self.pool_vis.query(g["fake_vis"])
        fake_ir = self.pool_ir.query(g["fake_ir"])
        d_vis = 0.5 * (self._gan_loss(self.d_vis(vis), True) + self._gan_loss(self.d_vis(fake_vis), False))
        d_ir = 0.5 * (self._gan_loss(self.d_ir(ir), True) + self._gan_loss(self.d_ir(fake_ir), False))
        (d_vis + d_ir).backward()
        self.opt_d.step()
        self.step += 1
        return {"g_adv": g["g_adv"].item(), "cycle": g["cycle"].item(), "identity": g["identity"].item(),
                "g_total": g["g_total"].item(), "d_vis": d_vis.item(), "d_ir": d_ir.item()}

    def training_state(self) -> dict[str, Any]:
        """Everything a resumed run needs, besides the data sampler's RNG."""
        return {
            "g_ir2vis": self.g_ir2vis.state_dict(), "g_vis2ir": self.g_vis2ir.state_dict(),
            "d_vis": self.d_vis.state_dict(), "d_ir": self.d_ir.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "pool_vis": self.pool_vis.state_dict(), "pool_ir": self.pool_ir.state_dict(),
            "step": self.step,
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        dev = next(self.parameters()).device
        for name in ("g_ir2vis", "g_vis2ir", "d_vis", "d_ir"):
            getattr(self, name).load_state_dict(state[name])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.pool_vis.load_state_dict(state["pool_vis"], dev)
        self.pool_ir.load_state_dict(state["pool_ir"], dev)
        self.step = int(state["step"])


# --------------------------------------------------------------------------- image helpers
def _load_rgb(path: str | Path, size: tuple[int, int] | None = None) -> Image.Image:
    with Image.open(path) as im:
        im = im.convert("RGB")
    if size is not None:
        im = im.resize((size[1], size[0]), Image.BICUBIC)
    return im


def _to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL RGB images of one size -> float tensor (N, 3, H, W) in [-1, 1]."""
    arr = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _to_pil(batch: torch.Tensor) -> list[Image.Image]:
    arr = batch.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


class _ImageBank:
    """Training images of one modality at the translator's size: in memory when they fit the budget,
    else read from disk per batch."""

    def __init__(self, paths: Sequence[str], size: tuple[int, int], preload_mb: int, desc: str, quiet: bool):
        self.paths = list(paths)
        self.size = size
        if not self.paths:
            raise ValueError(f"no {desc} training images to train the translator on")
        need_mb = len(self.paths) * size[0] * size[1] * 3 / 2**20
        self.data: torch.Tensor | None = None
        if need_mb <= preload_mb:
            it = _progress(self.paths, desc=f"loading {desc}", quiet=quiet)
            arr = np.stack([np.asarray(_load_rgb(p, size), dtype=np.uint8) for p in it])
            self.data = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, idx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        if self.data is not None:
            x = self.data[idx].float().div(127.5).sub(1.0)
        else:
            x = _to_tensor([_load_rgb(self.paths[i], self.size) for i in idx.tolist()])
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def _progress(it: Iterable, desc: str, quiet: bool, total: int | None = None):
    if quiet:
        return it
    return progress(it, desc=desc, total=total)


# --------------------------------------------------------------------------- checkpoints and training
def _rng_state(sampler: torch.Generator) -> dict[str, Any]:
    return {**rng_state(), "sampler": sampler.get_state()}


def _set_rng_state(state: dict[str, Any], sampler: torch.Generator) -> None:
    set_rng_state({**state, "python": _as_random_state(state["python"])})
    sampler.set_state(state["sampler"])


def _subset(paths: list[str], cap: int | None, seed: int) -> list[str]:
    if cap is None or len(paths) <= cap:
        return list(paths)
    keep = np.sort(np.random.default_rng(seed).choice(len(paths), cap, replace=False))
    return [paths[i] for i in keep]


def train_translator(dataset: str, data_root: str | Path, checkpoint: str | Path,
                     cfg: TranslateConfig | str = "cpu-demo", device: str = "auto", seed: int = 0,
                     stop_after: int | None = None) -> Path:
    """Train (or resume) a CycleGAN on the dataset's training images; return the checkpoint path.

    Visible and infrared training images are sampled independently (unpaired).  If `checkpoint`
    exists it is resumed (its stored config wins) and a finished one is returned as it is, so the call
    is train-or-load.  `stop_after` ends the run early at that step (saving), as an interruption would.
    """
    from djanet.data.readers import read_train

    checkpoint = Path(checkpoint)
    cfg = get_translate_config(cfg) if isinstance(cfg, str) else cfg
    dev = resolve_device(device)
    state = safe_load(checkpoint) if checkpoint.exists() else None
    if state is not None:
        _check_checkpoint(state, checkpoint)
        if state["dataset"] != dataset:
            raise ValueError(f"{checkpoint} was trained on {state['dataset']!r}, not {dataset!r}; "
                             "give another checkpoint path")
        if data_identity(state.get("data_root", data_root)) != data_identity(data_root):
            raise ValueError(f"{checkpoint} was trained on {state['data_root']}, not {data_root} (the "
                             "synthetic generator or the data folder changed); delete it or give another "
                             "checkpoint path")
        cfg = config_from_dict(state["config"])
        seed = state["seed"]
        if state["step"] >= cfg.steps:
            return checkpoint
    model = CycleGAN(cfg, seed=seed).to(dev)
    sampler = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    if state is not None:
        model.load_training_state(state["model"])
        _set_rng_state(state["rng"], sampler)
        history = list(state["history"])
    split, _ = read_train(dataset, str(data_root))
    ir = _ImageBank(_subset(split.infrared.paths, cfg.max_train_images, seed), cfg.img_size,
                    cfg.preload_mb, "infrared", cfg.quiet)
    vis = _ImageBank(_subset(split.visible.paths, cfg.max_train_images, seed + 1), cfg.img_size,
                     cfg.preload_mb, "visible", cfg.quiet)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        atomic_torch_save({
            "kind": CHECKPOINT_KIND, "config": config_to_dict(cfg), "seed": seed, "dataset": dataset,
            "data_root": str(data_root), "step": model.step,
            "epoch": model.step * cfg.batch_size / len(ir), "model": model.training_state(),
            "rng": _rng_state(sampler), "history": history,
        }, checkpoint)

    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    model.train()
    bar = _progress(range(model.step, end), desc="cyclegan", quiet=cfg.quiet, total=end - model.step)
    # threads="auto" on CPU: the count is chosen from measured step times, as in DJANet's training
    set_threads(cfg.threads)
    tuner = tuner_for(cfg.threads, dev)
    t0 = time.perf_counter()
    for _ in bar:
        b = cfg.batch_size
        ir_idx = torch.randint(len(ir), (b,), generator=sampler)
        vis_idx = torch.randint(len(vis), (b,), generator=sampler)
        flips = torch.rand(2 * b, generator=sampler) < 0.5
        with timed_step(tuner):
            losses = model.train_step(ir.batch(ir_idx, flips[:b]).to(dev), vis.batch(vis_idx, flips[b:]).to(dev))
        if model.step % cfg.log_every == 0 or model.step == end:
            history.append({"step": model.step, "seconds": time.perf_counter() - t0, **losses})
            if not cfg.quiet and hasattr(bar, "set_postfix"):
                bar.set_postfix(cycle=f"{losses['cycle']:.3f}", d=f"{losses['d_vis']:.3f}")
        if model.step % cfg.save_every == 0 and model.step != end:
            save()
    save()
    return checkpoint


def _check_checkpoint(state: Any, path: Path) -> None:
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"{path} is not a djanet CycleGAN translator checkpoint")


def load_translator(checkpoint: str | Path, device: str = "auto") -> tuple[Generator, TranslateConfig]:
    """The IR->VIS generator of a checkpoint, in eval mode, and its config."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"translator checkpoint {checkpoint} does not exist")
    state = safe_load(checkpoint)
    _check_checkpoint(state, checkpoint)
    cfg = config_from_dict(state["config"])
    gen = Generator(cfg.ngf, cfg.n_blocks, cfg.n_down, upsample=cfg.upsample)
    gen.load_state_dict(state["model"]["g_ir2vis"])
    return gen.to(resolve_device(device)).eval(), cfg


def translate_images(generator_or_checkpoint: Generator | str | Path,
                     images: Sequence[str | Path | Image.Image | np.ndarray],
                     img_size: tuple[int, int] | None = None, device: str = "auto",
                     batch_size: int = 16) -> list[Image.Image]:
    """Translate infrared images into the visible style; each result has its input's size.

    `images`: paths, PIL images or HxWx3 / HxW uint8 arrays.  `img_size` (H, W) is the size the
    generator runs at; taken from the checkpoint when one is given, else required.
    """
    if isinstance(generator_or_checkpoint, (str, Path)):
        gen, cfg = load_translator(generator_or_checkpoint, device)
        img_size = img_size or cfg.img_size
    else:
        gen = generator_or_checkpoint.eval()
        if img_size is None:
            raise ValueError("img_size=(H, W) is required when passing a generator rather than a checkpoint")
    dev = next(gen.parameters()).device
    pils: list[Image.Image] = []
    for im in images:
        if isinstance(im, (str, Path)):
            pils.append(_load_rgb(im))
        elif isinstance(im, np.ndarray):
            pils.append(Image.fromarray(im).convert("RGB"))
        else:
            pils.append(im.convert("RGB"))
    out: list[Image.Image] = []
    with torch.no_grad():
        for i in range(0, len(pils), batch_size):
            chunk = pils[i:i + batch_size]
            x = _to_tensor([im.resize((img_size[1], img_size[0]), Image.BICUBIC) for im in chunk]).to(dev)
            for src, res in zip(chunk, _to_pil(gen(x))):
                out.append(res.resize(src.size, Image.BICUBIC))
    return out
