"""Checkpoints of the official DJANet code (github.com/Hmn-92/DJANet, folder `model/`).

Its training script saves ``{'net': state_dict, 'cmc', 'mAP', 'epoch'}`` (``.t`` files) with its own
module names. Our `DJANet` at the paper configuration holds the same inference tensors, so such a
file is converted here and evaluated with our protocol code:

* `KEY_MAP`: official key -> our key (a table of name templates; `FIELDS` fills them);
* `UNUSED`: what the official model holds but never runs at test time (each with the reason),
  ignored -- exactly those; anything else the map does not place is an error;
* `from_official_state_dict`: official state dict -> ours, with one error naming every key
  missing, left over or of the wrong shape;
* `is_official_checkpoint` / `to_djanet_checkpoint`: what `checkpoint.load_checkpoint` uses to
  open an official file like one of ours (model built from the `paper` config).

The key names and shapes were read off the official model (see tests/data/official_keys.json.gz
for the recorded list); no official code is used here.

Numbers from such a checkpoint are the community protocol's (djanet.metrics adds nothing). The
official test script adds constants to each query's CMC and AP (shared/reference/protocols.md),
so it prints higher numbers for the same features; `PROTOCOL_NOTE` says so next to the results, and
the report shows that arithmetic on the same ranking beside them (djanet.official_script).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

SOURCE = "github.com/Hmn-92/DJANet"

# Fields of the key templates below. A dict renames (official value -> ours); a string is a regular
# expression whose match is kept as it is.
_LEVELS = {"0": "stem", "1": "layer1", "2": "layer2", "3": "layer3"}   # layerATT0..3 -> align levels


def _levels(which: str) -> dict[str, str]:
    return {k: _LEVELS[k] for k in which}


FIELDS: dict[str, dict[str, str] | str] = {
    # the official stem modules (each a whole ResNet-50 of which only conv1+bn1 run) -> our stems
    "stem": {"visible_module.visible": "visible", "visible_moduleA.visible": "visible_aug",
             "thermal_module.thermal": "thermal", "thermal_moduleA.thermal": "thermal_aug"},
    "level": _levels("0123"), "level01": _levels("01"), "level2": _levels("2"),
    "level012": _levels("012"), "level3": _levels("3"), "level013": _levels("013"), "level23": _levels("23"),
    "nl": {"2": "layer2", "3": "layer3"},   # NL_2, NL_3; NL_1 and NL_4 are empty in the paper setting
    "layer": r"layer[1-4]", "i": r"\d+", "nlpart": r"theta|phi|W", "wb": r"weight|bias",
    "bn": r"weight|bias|running_mean|running_var|num_batches_tracked", "rest": r".+",
}

# (official key, our key): the tensors the test-time forward uses. Each template matches a whole
# key; {field}s are FIELDS. Read off the official model/model.py (module names) and our model.
KEY_MAP: tuple[tuple[str, str], ...] = (
    ("{stem}.conv1.weight", "stems.{stem}.0.weight"),
    ("{stem}.bn1.{bn}", "stems.{stem}.1.{bn}"),
    ("base_resnet.base.{layer}.{rest}", "body.{layer}.{rest}"),
    ("NL_{nl}.{i}.g.0.{wb}", "body.nl.{nl}.{i}.g.{wb}"),              # their g is a Sequential
    ("NL_{nl}.{i}.{nlpart}.{rest}", "body.nl.{nl}.{i}.{nlpart}.{rest}"),
    ("bottleneck.{bn}", "head.bnneck.{bn}"),
    ("classifier.weight", "head.classifier.weight"),
    ("layerATT{level}.ATT_narrow.{rest}", "align.levels.{level}.deep.{rest}"),
    ("layerATT{level01}.ATT_narrow1.{rest}", "align.levels.{level01}.shallow.{rest}"),
    ("layerATT{level2}.ATT_narrow2.{rest}", "align.levels.{level2}.shallow.{rest}"),
    ("layerATT{level}.ln_1.{rest}", "align.levels.{level}.norm_deep.{rest}"),
    ("layerATT{level}.ln_1o.{rest}", "align.levels.{level}.norm_shallow.{rest}"),
    ("layerATT{level}.attn.{rest}", "align.levels.{level}.attn.{rest}"),
    ("layerATT{level012}.mambablock.{rest}", "align.levels.{level012}.mixer.{rest}"),
    ("layerATT{level3}.mambablock_2.{rest}", "align.levels.{level3}.mixer.{rest}"),
    ("layerATT{level}.mamba_broad.{rest}", "align.levels.{level}.out.{rest}"),
)

# (official key, why the test-time forward never uses it): ignored -- only these.
UNUSED: tuple[tuple[str, str], ...] = (
    ("{stem}.{layer}.{rest}", "the four stem modules each hold a whole ResNet-50; only conv1+bn1 run"),
    ("base_resnet.base.conv1.{rest}", "the shared body's own stem; the modality stems replace it"),
    ("base_resnet.base.bn1.{rest}", "the shared body's own stem; the modality stems replace it"),
    ("local_conv.{rest}", "declared in embed_net, never called"),
    ("feat_bn2d.{rest}", "declared in embed_net, never called"),
    ("layerATT{level}.ATT_broad.{rest}", "declared in layerATT, never called"),
    ("layerATT{level}.mlp.{rest}", "declared in layerATT, never called"),
    ("layerATT{level}.ln_2.{rest}", "declared in layerATT, never called"),
    ("layerATT{level012}.mambablock_2.{rest}", "levels 0-2 run mambablock; mambablock_2 is level 3's"),
    ("layerATT{level3}.mambablock.{rest}", "level 3 runs mambablock_2"),
    ("layerATT{level23}.ATT_narrow1.{rest}", "ATT_narrow1 (k6 s4) projects the stem and layer1 maps only"),
    ("layerATT{level013}.ATT_narrow2.{rest}", "ATT_narrow2 (k4 s2) projects the layer2 map only"),
)


def _pattern(template: str, side: int) -> re.Pattern:
    """A template as a regular expression on one side (0: official names, 1: ours)."""
    parts = re.split(r"\{(\w+)\}", template)
    out = []
    for n, part in enumerate(parts):
        if n % 2 == 0:
            out.append(re.escape(part))
            continue
        field = FIELDS[part]
        values = field if isinstance(field, str) else "|".join(
            re.escape(v) for v in (field.keys() if side == 0 else field.values()))
        out.append(f"(?P<{part}>{values})")
    return re.compile("".join(out))


def _fill(template: str, groups: dict[str, str], side: int) -> str:
    """Format `template` for side `side` with values matched on the other side (renamed)."""
    values = {}
    for name, value in groups.items():
        field = FIELDS[name]
        if isinstance(field, dict):
            value = field[value] if side == 1 else {v: k for k, v in field.items()}[value]
        values[name] = value
    return template.format(**values)


_FORWARD = tuple((_pattern(o, 0), u) for o, u in KEY_MAP)
_BACKWARD = tuple((_pattern(u, 1), o) for o, u in KEY_MAP)
_UNUSED = tuple((_pattern(o, 0), why) for o, why in UNUSED)

# Training identities of each dataset (shared/reference/protocols.md): the classifier's size says
# which dataset an official checkpoint was trained on.
TRAIN_IDS = {395: "sysu", 206: "regdb", 713: "llcm"}

PROTOCOL_NOTE = (
    "these numbers are the community protocol's, with nothing added (djanet.metrics). The official "
    "test script adds constants to each query's CMC and AP (SYSU-MM01 all-search: +11 points Rank-1; "
    "RegDB: +40 points Rank-1 and mAP; LLCM: +16 points Rank-1), so what it prints for the same "
    "features -- the kind of number in the paper's table -- is raised by those constants and is not "
    "comparable with these; the row marked 'script' shows that arithmetic on this ranking "
    "(djanet.official_script)")


class OfficialCheckpointError(ValueError):
    """An official state dict that does not fit the paper model: every offending key named."""


def is_official_checkpoint(obj: Any) -> bool:
    """True for what the official training script saves: a dict whose 'net' is its state dict."""
    if not isinstance(obj, Mapping) or "model" in obj or not isinstance(obj.get("net"), Mapping):
        return False
    keys = [str(k).removeprefix("module.") for k in obj["net"]]
    return any(k.startswith(("base_resnet.base.", "layerATT", "visible_module.")) for k in keys)


def official_state_dict(obj: Mapping[str, Any]) -> dict[str, Tensor]:
    """The state dict of an official checkpoint (or a bare state dict), DataParallel prefix removed."""
    sd = obj["net"] if isinstance(obj.get("net"), Mapping) else obj
    if sd and all(str(k).startswith("module.") for k in sd):
        sd = {str(k).removeprefix("module."): v for k, v in sd.items()}
    return dict(sd)


def our_key(official_key: str) -> str | None:
    """Our name for an official key (None when the map has no rule for it)."""
    return _rename(official_key, _FORWARD, 1)


def official_key(our: str) -> str | None:
    """The official name of one of our keys (None when the map has no rule for it)."""
    return _rename(our, _BACKWARD, 0)


def _rename(key: str, rules, side: int) -> str | None:
    """`key` through the first rule whose pattern matches it whole, its template filled for `side`."""
    for pattern, template in rules:
        m = pattern.fullmatch(key)
        if m:
            return _fill(template, m.groupdict(), side)
    return None


def unused_reason(official_key: str) -> str | None:
    """Why the official test-time forward never uses this tensor (None when it does)."""
    for pattern, why in _UNUSED:
        if pattern.fullmatch(official_key):
            return why
    return None


def paper_config(num_classes: int | None = None):
    """The config an official checkpoint is evaluated under: the `paper` preset (ResNet-50, 384x192,
    the paper's align settings) without ImageNet weights (the checkpoint replaces them), on the
    dataset the classifier's size names (SYSU-MM01 when it names none)."""
    from .config import get_config
    return get_config("paper", **{"model.pretrained": False,
                                  "data.dataset": TRAIN_IDS.get(num_classes, "sysu")})


def num_classes_of(sd: Mapping[str, Tensor]) -> int | None:
    weight = sd.get("classifier.weight")
    return int(weight.shape[0]) if weight is not None else None


def _paper_model_shapes(num_classes: int) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """Our paper model's state-dict keys, shapes and dtypes, from a model built on the meta device."""
    from .model import DJANet
    cfg = paper_config(num_classes)
    with torch.device("meta"):
        model = DJANet.from_config(cfg.model, num_classes, cfg.data.img_size)
    return {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}


def _names(keys, limit: int = 12) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def from_official_state_dict(sd: Mapping[str, Tensor], model: torch.nn.Module | None = None) -> dict[str, Tensor]:
    """The official state dict (or whole checkpoint) renamed to ours, for `load_state_dict(strict=True)`.

    Tensors of `UNUSED` modules are dropped. Checked against `model`'s state dict (default: our
    model at the paper configuration with the classifier's number of classes); any key missing,
    left over (neither mapped nor listed as unused, or mapped to a name we do not have) or of the
    wrong shape raises one `OfficialCheckpointError` naming them all.
    """
    sd = official_state_dict(sd)
    mapped: dict[str, Tensor] = {}
    source: dict[str, str] = {}
    left_over: list[str] = []
    for key, value in sd.items():
        ours = our_key(key)
        if ours is None:
            if unused_reason(key) is None:
                left_over.append(key)
            continue
        if ours in mapped:   # two official keys for one of ours: the table is wrong for this file
            left_over.append(f"{key} (also {source[ours]} -> {ours})")
            continue
        mapped[ours], source[ours] = value, key
    if model is not None:
        expected = {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
    else:
        expected = _paper_model_shapes(num_classes_of(sd) or 1)
    left_over += [f"{source[k]} (-> {k}, which our model does not have)" for k in mapped if k not in expected]
    missing = [k for k in expected if k not in mapped]
    wrong = [f"{source[k]} {tuple(mapped[k].shape)} (-> {k}, expected {tuple(expected[k][0])})"
             for k in mapped if k in expected and tuple(mapped[k].shape) != tuple(expected[k][0])]
    problems = []
    if missing:
        names = [f"{official_key(k) or '(no official name)'} (-> {k})" for k in missing]
        problems.append(f"missing {len(missing)}: {_names(names)}")
    if left_over:
        problems.append(f"left over (neither used by the model nor a known unused module) "
                        f"{len(left_over)}: {_names(left_over)}")
    if wrong:
        problems.append(f"wrong shape {len(wrong)}: {_names(wrong)}")
    if problems:
        raise OfficialCheckpointError(
            f"the official DJANet state dict does not fit our model at the paper configuration "
            f"(ResNet-50, 384x192, align dim 256, d_state 64):\n  " + "\n  ".join(problems))
    return {k: mapped[k] for k in expected}


def to_djanet_checkpoint(obj: Mapping[str, Any], path: Any = "") -> dict[str, Any]:
    """An official checkpoint as one of ours: the mapped weights, the paper config, its number of
    classes, and what the file recorded (``official``: source, epoch, Rank-1 and mAP as stored)."""
    from .config import to_dict
    sd = official_state_dict(obj)
    try:
        model = from_official_state_dict(sd)
    except OfficialCheckpointError as err:
        raise OfficialCheckpointError(f"{path}: {err}") from None
    num_classes = num_classes_of(sd)
    return {"model": model, "config": to_dict(paper_config(num_classes)), "num_classes": num_classes,
            "official": {**recorded(obj, path), "ignored_tensors": sum(1 for k in sd if our_key(k) is None)}}


def recorded(obj: Mapping[str, Any], path: Any) -> dict[str, Any]:
    """Where the file comes from and what its training script recorded in it (plain numbers)."""
    def number(x: Any) -> float | None:
        try:
            return float(x)
        except (TypeError, ValueError):
            return None

    cmc = obj.get("cmc")
    try:
        rank1 = number(cmc[0]) if cmc is not None and len(cmc) else None
    except TypeError:
        rank1 = None
    epoch = number(obj.get("epoch"))
    return {"source": SOURCE, "path": str(path), "epoch": int(epoch) if epoch is not None else None,
            "recorded_rank1": rank1, "recorded_mAP": number(obj.get("mAP"))}


def official_note(info: Mapping[str, Any]) -> str:
    """The line printed (and stored in metrics.json) next to results of an official checkpoint;
    `info` is what the file recorded (`recorded`; `checkpoint.official_info` reads it from a path)."""
    epoch = f", epoch {info['epoch']}" if info.get("epoch") is not None else ""
    return (f"{info['path']} is an official DJANet checkpoint ({SOURCE}{epoch}), evaluated with this "
            f"package's model at the paper configuration: {PROTOCOL_NOTE}.")


__all__ = ["FIELDS", "KEY_MAP", "UNUSED", "PROTOCOL_NOTE", "OfficialCheckpointError", "from_official_state_dict",
           "is_official_checkpoint", "official_key", "official_note", "official_state_dict", "our_key",
           "paper_config", "recorded", "to_djanet_checkpoint", "unused_reason"]
