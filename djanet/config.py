"""Configuration: one frozen dataclass per concern, and named presets.

`get_config("cpu-demo", epochs=3)` resolves a preset and applies overrides.
An override names a field either plainly (``epochs``) when only one section has
it, or with its section (``optim.epochs``).  Unknown keys raise, listing the
valid ones, so a typo never silently trains the wrong thing.  The resolved
config is stored in every checkpoint and output folder (`to_dict`/`from_dict`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

DATASETS = ("sysu", "regdb", "llcm")
ARCHS = ("resnet18", "resnet34", "resnet50")
TRIPLET_FEATURES = ("pool", "bn")
SCHEDULES = ("step", "cosine")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "sysu"                 # sysu | regdb | llcm
    data_root: str | None = None          # None: generate the synthetic dataset into cache_dir
    translated_root: str | None = None    # a translated copy (IR in visible style) to read instead
    cache_dir: str = "~/.cache/djanet"    # where synthetic datasets and array caches live
    synthetic_ids: int | None = None      # identities of the generated dataset (None: layout default)
    synthetic_size: tuple[int, int] = (128, 64)  # (H, W) of generated images
    synthetic_seed: int = 0               # draw of the synthetic dataset (another seed: another dataset)
    img_size: tuple[int, int] = (384, 192)  # (H, W) the network sees
    ids_per_batch: int = 24               # P: identities per batch (seed's --batch-size)
    num_pos: int = 4                      # K: images per identity and modality (seed's --num_pos)
    trial: int = 1                        # RegDB split 1..10; gallery trial count elsewhere
    mode: str = "all"                     # SYSU-MM01 search mode: all | indoor
    workers: int = 4                      # DataLoader worker processes (0: main process)
    use_cache: bool = False               # read training images from the memory-mapped array cache
    pad_fraction: float = 0.05            # pad+crop shift as a fraction of the width (paper: 10 px at 192)
    erasing_p: float = 0.5                # random-erasing probability of each training view
    channel_aug: bool = True              # channel-level augmentations (False: geometry and erasing only)
    grey_remap_p: float = 0.0             # chance a view's grey levels are redrawn (not in the paper; transforms)
    train_ids: int | None = None          # train on the first N training identities only (CPU budgets)
    val_fraction: float = 0.1             # training ids held out for model selection (not SYSU: it ships val ids)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "resnet50"                # resnet18 | resnet34 | resnet50
    width: int = 64                       # first-stage channels, x2 per stage (torchvision: 64; 32: ~1/4 the compute)
    stems: bool = True                    # four modality-specific stems (False: one shared stem)
    align: bool = True                    # joint align module between layer3 and layer4
    align_residual: bool = False          # add the align module's output to layer3's map (paper: it replaces it)
    non_local: bool = True                # AGW non-local blocks in layer2/layer3
    pretrained: bool | str = False        # True: torchvision ImageNet weights; str: state-dict path
    align_dim: int = 256                  # channels of the align module (paper: 256)
    attn_heads: int = 32                  # heads of the cross-attention (reduced to divide the embedding)
    d_state: int = 64                     # Mamba state size
    d_conv: int = 4                       # Mamba causal conv width
    expand: int = 2                       # Mamba inner expansion


@dataclass(frozen=True)
class LossConfig:
    margin: float = 0.7                   # batch-hard triplet margin (seed script 0.7; AGW 0.3)
    triplet_features: str = "pool"        # pool (the paper) | bn: the BNNeck feature, L2-normalised
    triplet_warmup: int = 0               # epochs on the other losses alone before the triplet joins
    complementary: bool = True            # complementary learning loss on layer4 maps
    id_weight: float = 1.0
    triplet_weight: float = 1.0
    complementary_weight: float = 1.0


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "sgd"                # sgd | adam
    lr: float = 0.01                      # base lr (backbone, stems, align)
    head_lr: float = 0.1                  # lr of BNNeck and classifier
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"                # step (the paper): x gamma at milestones, per epoch | cosine: per step
    warmup_epochs: float = 10             # linear warm-up from 0.1x (cosine: per step, may be fractional)
    milestones: tuple[int, ...] = (25, 50, 75, 100, 125)  # step decay x gamma
    gamma: float = 0.1
    final_lr: float = 0.01                # cosine: the last step's rate as a fraction of the base rate
    epochs: int = 150
    amp: bool = True                      # mixed precision when on CUDA (ignored on CPU)


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    preset: str = "paper"                 # the preset this config was resolved from
    seed: int = 0
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    out_dir: str = "runs"                 # runs are written to out_dir/run_name
    run_name: str | None = None           # None: derived from dataset, preset and model switches
    eval_every: int = 1                   # epochs between validation evaluations (0: only at the end)
    select_on: str = "val"                # model selection split: val | test (test is labelled peeking)
    eval_trials: int = 10                 # gallery trials in the final evaluation
    max_steps_per_epoch: int | None = None  # cap on iterations per epoch (CPU budgets, smoke runs)
    threads: int | str | None = None      # torch CPU threads: N, "auto" (timed: djanet.threads), None (torch's default)
    quiet: bool = False                   # no progress bars
    tensorboard: bool = True              # write TensorBoard scalars when tensorboard is installed


SECTIONS = ("data", "model", "loss", "optim")

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's setting: ImageNet-initialised ResNet-50 at 384x192, P=24 identities x K=4,
    # 150 epochs, AMP. The weights come from torchvision (download or the local torch cache).
    "paper": {"model.pretrained": True},
    # From random weights on the synthetic SYSU-MM01 layout (96 test ids), in a few minutes a model
    # on a 2-core CPU. Each choice was measured beside its alternative on validation ids of another
    # data draw (book/recipe.md has the table): a half-width ResNet-18 (32-64-128-256 channels), so
    # twice the steps fit in the time of the full width, with a cosine learning rate per step;
    # 16 identities x 1 pair (each step sees twice as many classes as 8 x 2); the first 100
    # training ids (each seen ~3x as often as over 296); shifts of 5% of the width and no erasing
    # (the paper's pad 10 would be +-30% at 32 px wide); the identity loss alone for two epochs
    # before the triplet (margin 0.3) on the unit-normalised BN features instead of the pooled ones
    # (on those, DJANet's triplet shrank every distance instead of ranking); Adam with a 10x head
    # learning rate; torch threads chosen from measured step times (all cores when idle, one beside
    # a busy process: djanet.threads). One attention head: the align module attends over the 8
    # positions of the 4x2 layer3 grid, so 8 heads would have one dimension each (the paper's 32
    # heads over 288 positions have 9); the saving is spent on epochs of up to 80 steps (one pass
    # over the 100 ids' images: 79 steps on the default data, 790 in all).
    "cpu-demo": {
        "data.img_size": (64, 32), "data.ids_per_batch": 16, "data.num_pos": 1, "data.workers": 0,
        "data.train_ids": 100, "data.erasing_p": 0.0,
        "model.arch": "resnet18", "model.width": 32, "model.align_dim": 64, "model.attn_heads": 1,
        "model.d_state": 16,
        "loss.margin": 0.3, "loss.triplet_warmup": 2, "loss.triplet_features": "bn",
        "optim.optimizer": "adam", "optim.lr": 1e-3, "optim.head_lr": 1e-2,
        "optim.schedule": "cosine", "optim.warmup_epochs": 0.5, "optim.final_lr": 0.01,
        "optim.epochs": 10, "max_steps_per_epoch": 80,
        "eval_every": 2, "eval_trials": 10, "threads": "auto",
    },
    # The book on one GPU: ResNet-50 and the paper's align module at 256x128, random weights
    # (pretrained=True for ImageNet's), all 296 training ids of the synthetic SYSU-MM01 layout, AMP;
    # otherwise the cpu-demo recipe (Adam, 10x head rate, a cosine rate per step, ID loss alone for
    # two epochs, the triplet on unit BN features, no erasing). 16 ids x 2 pairs: many ids a step
    # (better at CPU scale) in 128 images for the full-width network; 10 epochs of at most 100
    # steps. Eight workers read the memory-mapped array cache, so the loader keeps up with the
    # GPU (`benchmarks/bench_train.py` reports whether it does); `make gpu-check` measures it.
    "gpu-demo": {
        "data.img_size": (256, 128), "data.ids_per_batch": 16, "data.num_pos": 2, "data.workers": 8,
        "data.use_cache": True, "data.erasing_p": 0.0,
        "loss.margin": 0.3, "loss.triplet_warmup": 2, "loss.triplet_features": "bn",
        "optim.optimizer": "adam", "optim.lr": 1e-3, "optim.head_lr": 1e-2,
        "optim.schedule": "cosine", "optim.warmup_epochs": 0.5, "optim.final_lr": 0.01,
        "optim.epochs": 10, "max_steps_per_epoch": 100,
        "eval_every": 2, "eval_trials": 10,
    },
    # Seconds; for tests and smoke runs.
    "tiny": {
        "data.img_size": (64, 32), "data.ids_per_batch": 4, "data.num_pos": 2, "data.workers": 0,
        "data.synthetic_size": (64, 32), "data.synthetic_ids": 16, "threads": 1,
        "model.arch": "resnet18", "model.align_dim": 32, "model.attn_heads": 4, "model.d_state": 8,
        "optim.epochs": 2, "optim.warmup_epochs": 1, "optim.milestones": (1,),
        "eval_trials": 2, "max_steps_per_epoch": 2, "quiet": True, "tensorboard": False,
    },
}


def _section_of(cfg: TrainConfig) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in SECTIONS}


def _field_index() -> dict[str, list[str]]:
    """Plain field name -> the dotted names that carry it."""
    index: dict[str, list[str]] = {}
    for f in fields(TrainConfig):
        if f.name in SECTIONS:
            for sub in fields(f.default_factory()):  # type: ignore[misc]
                index.setdefault(sub.name, []).append(f"{f.name}.{sub.name}")
        else:
            index.setdefault(f.name, []).append(f.name)
    return index


def override(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """Return `cfg` with fields replaced; keys are plain or dotted (`optim.epochs`)."""
    index = _field_index()
    valid = sorted({d for ds in index.values() for d in ds})
    top: dict[str, Any] = {}
    sections = _section_of(cfg)
    for key, value in changes.items():
        key = key.replace("-", "_") if "." not in key else key
        if "." in key:
            dotted = key
            if dotted not in valid:
                raise KeyError(f"unknown config key {key!r}; valid keys: {', '.join(valid)}")
        else:
            if key not in index:
                raise KeyError(f"unknown config key {key!r}; valid keys: {', '.join(valid)}")
            if len(index[key]) > 1:
                raise KeyError(f"config key {key!r} is ambiguous; use one of {index[key]}")
            dotted = index[key][0]
        if "." in dotted:
            sec, name = dotted.split(".", 1)
            sections[sec] = replace(sections[sec], **{name: _coerce(sections[sec], name, value)})
        else:
            top[dotted] = _coerce(cfg, dotted, value)
    out = replace(cfg, **sections, **top)
    validate(out)
    return out


def _coerce(obj: Any, name: str, value: Any) -> Any:
    """Lists from JSON/YAML become tuples where the default is a tuple."""
    current = getattr(obj, name)
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def validate(cfg: TrainConfig) -> None:
    """Raise ValueError naming the option and the accepted values."""
    if cfg.data.dataset not in DATASETS:
        raise ValueError(f"data.dataset={cfg.data.dataset!r}; expected one of {DATASETS}")
    if cfg.model.arch not in ARCHS:
        raise ValueError(f"model.arch={cfg.model.arch!r}; expected one of {ARCHS}")
    check_width(cfg.model.width, cfg.model.pretrained, prefix="model.")
    if cfg.data.mode not in ("all", "indoor"):
        raise ValueError(f"data.mode={cfg.data.mode!r}; expected 'all' or 'indoor'")
    if cfg.select_on not in ("val", "test"):
        raise ValueError(f"select_on={cfg.select_on!r}; expected 'val' or 'test'")
    if cfg.loss.triplet_features not in TRIPLET_FEATURES:
        raise ValueError(f"loss.triplet_features={cfg.loss.triplet_features!r}; "
                         f"expected one of {TRIPLET_FEATURES}")
    if cfg.optim.schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule={cfg.optim.schedule!r}; expected one of {SCHEDULES}")
    if not 0 <= cfg.optim.final_lr <= 1 or cfg.optim.warmup_epochs < 0:
        raise ValueError(f"optim.final_lr={cfg.optim.final_lr} must be in [0, 1] and "
                         f"optim.warmup_epochs={cfg.optim.warmup_epochs} >= 0")
    if cfg.optim.optimizer not in ("sgd", "adam"):
        raise ValueError(f"optim.optimizer={cfg.optim.optimizer!r}; expected 'sgd' or 'adam'")
    if cfg.data.dataset == "regdb" and not 1 <= cfg.data.trial <= 10:
        raise ValueError(f"data.trial={cfg.data.trial}; RegDB trials are 1..10")
    if not 0 <= cfg.data.grey_remap_p <= 1:
        raise ValueError(f"data.grey_remap_p={cfg.data.grey_remap_p} must be in [0, 1]")
    if not 0 <= cfg.data.pad_fraction < 0.5 or not 0 <= cfg.data.erasing_p <= 1:
        raise ValueError(f"data.pad_fraction={cfg.data.pad_fraction} must be in [0, 0.5) and "
                         f"data.erasing_p={cfg.data.erasing_p} in [0, 1]")
    check_threads(cfg.threads)
    if cfg.data.ids_per_batch < 2 or cfg.data.num_pos < 1:
        raise ValueError("data.ids_per_batch must be >= 2 and data.num_pos >= 1 "
                         f"(got {cfg.data.ids_per_batch}, {cfg.data.num_pos})")
    h, w = cfg.data.img_size
    if h < 32 or w < 16:
        raise ValueError(f"data.img_size={tuple(cfg.data.img_size)}; expected (H, W) with H >= 32 and W >= 16 "
                         "(the network downsamples by 16)")
    if cfg.eval_trials < 1:
        raise ValueError(f"eval_trials={cfg.eval_trials}; expected at least 1")
    if cfg.optim.epochs < 1:
        raise ValueError(f"optim.epochs={cfg.optim.epochs}; expected at least 1")
    if cfg.max_steps_per_epoch is not None and cfg.max_steps_per_epoch < 1:
        raise ValueError(f"max_steps_per_epoch={cfg.max_steps_per_epoch}; expected None or at least 1")
    if cfg.optim.lr <= 0 or cfg.optim.head_lr <= 0:
        raise ValueError(f"optim.lr={cfg.optim.lr} and optim.head_lr={cfg.optim.head_lr}; expected both > 0")


AGW_SWITCHES = {"model.stems": False, "model.align": False, "model.non_local": True,
                "loss.complementary": False}


def agw_baseline(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with DJANet's feature-level parts switched off: the AGW baseline at the same budget."""
    return override(cfg, **AGW_SWITCHES)


def check_width(width: Any, pretrained: Any, prefix: str = "") -> None:
    """A ResNet width is a multiple of 8; ImageNet weights exist only for torchvision's 64."""
    if not (isinstance(width, int) and not isinstance(width, bool) and width >= 8 and width % 8 == 0):
        raise ValueError(f"{prefix}width={width!r}; expected a multiple of 8 (torchvision's ResNet: 64)")
    if width != 64 and pretrained not in (False, None):
        raise ValueError(f"{prefix}pretrained={pretrained!r} with {prefix}width={width}: ImageNet weights "
                         f"exist only for width 64; use {prefix}pretrained=False or {prefix}width=64")


def check_threads(threads: Any) -> None:
    """None (torch's default), "auto" (chosen from measured step times) or an int >= 1."""
    if not (threads is None or threads == "auto"
            or (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1)):
        raise ValueError(f"threads={threads!r}; expected None (torch's default), 'auto' "
                         "(chosen from measured step times) or an int >= 1")


AUTO_PRESET = {"cuda": "gpu-demo", "cpu": "cpu-demo"}   # device type -> what preset "auto" means there


def auto_preset(device: str = "auto") -> str:
    """The preset "auto" stands for: gpu-demo where `device` runs on CUDA ('auto' with a GPU
    present, 'cuda', 'cuda:N'), cpu-demo elsewhere, so a notebook opened on a GPU trains at the
    GPU's scale without the reader naming a preset."""
    on_cuda = torch.cuda.is_available() if device == "auto" else str(device).startswith("cuda")
    return AUTO_PRESET["cuda" if on_cuda else "cpu"]


def get_config(preset: str = "paper", **overrides: Any) -> TrainConfig:
    """Resolve a named preset (paper, cpu-demo, gpu-demo, tiny, or auto: `auto_preset` of the
    `device` override) and apply overrides; the config records the preset it was resolved from."""
    if preset == "auto":
        preset = auto_preset(overrides.get("device", "auto"))
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; valid presets: auto, {', '.join(PRESETS)}")
    cfg = override(TrainConfig(preset=preset), **PRESETS[preset])
    return override(cfg, **overrides) if overrides else cfg


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain dict (JSON-safe) of the resolved config."""
    return dataclasses.asdict(cfg)


def from_dict(d: dict[str, Any]) -> TrainConfig:
    """Inverse of `to_dict`; unknown keys raise."""
    changes: dict[str, Any] = {}
    for key, value in d.items():
        if key in SECTIONS:
            for sub, v in value.items():
                changes[f"{key}.{sub}"] = v
        else:
            changes[key] = value
    return override(TrainConfig(), **changes)
