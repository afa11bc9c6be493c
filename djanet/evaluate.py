"""From a trained model to protocol results: feature extraction and evaluation.

Features are extracted once for the query set and once for the *whole* candidate
gallery; the protocol runner then samples the gallery per trial.  Both feature
rows of the paper are reported: `pool` (GeM output) and `bn` (after BNNeck).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader

from .checkpoint import atomic_path, atomic_write_text, load_checkpoint
from .config import TrainConfig
from .console import progress
from .data import EvalSplit, ImageDataset, ImageList, TrainSplit, prepare_data, read_test
from .data.readers import DIRECTIONS
from .protocols import ProtocolResult, evaluate_split
from .runtime import model_from_checkpoint, resolve_device, set_threads
from .saved_config import check_same_model

if TYPE_CHECKING:
    from .model import DJANet
    from .rerank import RerankConfig

@torch.no_grad()
def extract_features(model: "DJANet", images: ImageList, modality: str, img_size, device="cpu",
                     batch_size: int = 64, workers: int = 0, quiet: bool = True,
                     flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised (pool, bn) features of every image in `images`, in order.

    `flip=True` averages each image's features with its horizontal mirror's (as CAJ and DEEN
    test), then normalises again.
    """
    model.eval()
    device = torch.device(device)
    loader = DataLoader(ImageDataset(images, img_size), batch_size=batch_size, shuffle=False,
                        num_workers=workers)
    pools, bns = [], []
    for batch, _ in progress(loader, desc=f"features ({modality})", unit="batches", disable=quiet):
        with torch.autocast(device_type=device.type, enabled=device.type == "cuda"):
            pool, bn = model.extract(batch.to(device), modality)
            if flip:
                pool_f, bn_f = model.extract(batch.to(device).flip(3), modality)
                pool, bn = (torch.nn.functional.normalize(a.float() + b.float(), dim=1)
                            for a, b in ((pool, pool_f), (bn, bn_f)))
        pools.append(pool.float().cpu().numpy())
        bns.append(bn.float().cpu().numpy())
    return np.concatenate(pools), np.concatenate(bns)


@torch.no_grad()
def fit_accuracy(model: "DJANet", split: TrainSplit, img_size, device="cpu",
                 batch_size: int = 128) -> dict[str, float]:
    """Share of the training images whose identity the classifier names: per modality, and over
    ``all`` images (each counted once).

    Seen as at test time (eval mode, resized and normalised, no augmentation). Training's running
    accuracy is measured on the augmented views (channel exchange, grey, jitter, shifts), which are
    harder to name than the images themselves; this says how well the identities were fitted.
    """
    device = torch.device(device)
    hits = {}
    for images in (split.visible, split.infrared):
        hits[images.modality] = 0
        loader = DataLoader(ImageDataset(images, img_size), batch_size=batch_size, shuffle=False)
        for batch, index in loader:
            named = model.classify(batch.to(device), images.modality).argmax(1).cpu().numpy()
            hits[images.modality] += int((named == images.labels[index.numpy()]).sum())
    sizes = {"visible": len(split.visible), "infrared": len(split.infrared)}
    shares = {m: hits[m] / max(n, 1) for m, n in sizes.items()}
    return {**shares, "all": sum(hits.values()) / max(sum(sizes.values()), 1)}


def split_features(model: "DJANet", split: EvalSplit, cfg: TrainConfig, device,
                   flip: bool = False) -> dict[str, np.ndarray]:
    q_pool, q_bn = extract_features(model, split.query, split.query.modality, cfg.data.img_size, device,
                                    workers=cfg.data.workers, quiet=cfg.quiet, flip=flip)
    g_pool, g_bn = extract_features(model, split.gallery, split.gallery.modality, cfg.data.img_size, device,
                                    workers=cfg.data.workers, quiet=cfg.quiet, flip=flip)
    return {"query_pool": q_pool, "query_bn": q_bn, "gallery_pool": g_pool, "gallery_bn": g_bn}


def evaluate_split_features(model: "DJANet", split: EvalSplit, cfg: TrainConfig, device,
                            trials: int, features: dict[str, np.ndarray] | None = None,
                            rerank: "RerankConfig | None" = None,
                            official_script: bool = False) -> dict[str, ProtocolResult]:
    feats = features if features is not None else split_features(model, split, cfg, device)
    return {name: evaluate_split(split, feats[f"query_{name}"], feats[f"gallery_{name}"],
                                 trials=trials, feature_name=name, rerank=rerank,
                                 official_script=official_script)
            for name in ("pool", "bn")}


def variant_suffix(flip: bool = False, rerank: "RerankConfig | bool | None" = None) -> str:
    """'', '+flip', '+rerank' or '+flip+rerank' ('+rerank-paper' for the paper-literal re-ranking):
    labels results and names the files they go to, so no variant replaces another's."""
    paper = getattr(rerank, "convention", "released") == "paper"
    return ("+flip" if flip else "") + (("+rerank-paper" if paper else "+rerank") if rerank else "")


def metrics_path(out: str | os.PathLike, flip: bool = False, rerank: "RerankConfig | bool | None" = None) -> Path:
    """metrics.json, or metrics+flip+rerank.json etc.: a test-time variant never replaces the plain one."""
    return Path(out) / f"metrics{variant_suffix(flip, rerank)}.json"


def evaluate(cfg: TrainConfig, checkpoint: str | os.PathLike, directions: tuple[str, ...] | None = None,
             out_dir: str | os.PathLike | None = None, flip: bool = False,
             rerank: "RerankConfig | bool | None" = None) -> dict[str, ProtocolResult]:
    """Evaluate a checkpoint on the test protocol(s) of `cfg.data.dataset`.

    The model is rebuilt from the checkpoint's own configuration; `cfg` chooses the test data
    and device, and a model option of `cfg` that disagrees with the checkpoint raises ValueError
    (`djanet.saved_config.config_for_test` turns a checkpoint's config into a test config).
    Returns results keyed `"<direction>/<feature>"` (e.g. `"i2v/bn"`), and writes
    `metrics.json` and `features_<direction>.npz` into `out_dir` (default: the
    checkpoint's run folder).  Test-time options: `flip` averages features with the mirrored
    image's; `rerank` (True for the paper's k1=20, k2=6, lambda=0.3, or a RerankConfig)
    re-ranks each trial's distances (djanet.rerank).  They label the results (`"i2v/bn+flip"`)
    and the files (`metrics+flip.json`, `features_<direction>+flip.npz`).
    For an official DJANet checkpoint each result also holds what the official test script would
    print for the same ranking (`ProtocolResult.script_rows`, djanet.official_script), shown beside
    the protocol's numbers and never in their place.
    """
    model, device, official = _model_for_test(cfg, checkpoint)
    if rerank is True:
        from .rerank import RerankConfig
        rerank = RerankConfig()
    rerank = rerank or None
    suffix = variant_suffix(flip, rerank)
    out = Path(out_dir) if out_dir else Path(checkpoint).resolve().parent.parent
    results: dict[str, ProtocolResult] = {}
    for direction, split, trials in _test_splits(cfg, directions):
        feats = split_features(model, split, cfg, device, flip=flip)
        for name, res in evaluate_split_features(model, split, cfg, device, trials, feats, rerank,
                                                 official_script=official is not None).items():
            res.feature = f"{name}{suffix}"
            results[f"{direction}/{res.feature}"] = res
        _save_features(out / f"features_{direction}{'+flip' if flip else ''}.npz", feats, split)
    _write_metrics(out, checkpoint, cfg, flip, rerank, results, official)
    return results


# The test-time options other VI-ReID code uses: name -> (flip, re-rank).
TEST_TIME_OPTIONS = {"plain": (False, False), "flip": (True, False), "re-rank": (False, True),
                     "flip + re-rank": (True, True)}


def evaluate_test_time(cfg: TrainConfig, checkpoint: str | os.PathLike, out_dir: str | os.PathLike,
                       features: tuple[str, ...] = ("bn",)) -> dict[str, dict[str, ProtocolResult]]:
    """Every test-time option (`TEST_TIME_OPTIONS`) of one checkpoint on the same gallery trials.

    What four `evaluate` calls give for the `features` rows, with each direction's features
    extracted twice (plain and mirrored) instead of four times, and only those rows re-ranked.
    Returns ``{option: {"<direction>/<feature><suffix>": result}}`` and writes each option's
    metrics file and the two feature files into `out_dir`, named as `evaluate` names them.
    """
    from .rerank import RerankConfig

    model, device, official = _model_for_test(cfg, checkpoint)
    out = Path(out_dir)
    reranks = {name: RerankConfig() if rerank else None for name, (_, rerank) in TEST_TIME_OPTIONS.items()}
    results: dict[str, dict[str, ProtocolResult]] = {name: {} for name in TEST_TIME_OPTIONS}
    for direction, split, trials in _test_splits(cfg):
        for flip in (False, True):
            feats = split_features(model, split, cfg, device, flip=flip)
            _save_features(out / f"features_{direction}{'+flip' if flip else ''}.npz", feats, split)
            for name in (n for n, (option_flip, _) in TEST_TIME_OPTIONS.items() if option_flip == flip):
                for feature in features:
                    res = evaluate_split(split, feats[f"query_{feature}"], feats[f"gallery_{feature}"],
                                         trials=trials, feature_name=feature, rerank=reranks[name],
                                         official_script=official is not None)
                    res.feature = f"{feature}{variant_suffix(flip, reranks[name])}"
                    results[name][f"{direction}/{res.feature}"] = res
    for name, (flip, _) in TEST_TIME_OPTIONS.items():
        _write_metrics(out, checkpoint, cfg, flip, reranks[name], results[name], official)
    return results


def _model_for_test(cfg: TrainConfig, checkpoint) -> tuple["DJANet", torch.device, dict | None]:
    """The checkpoint's model on the config's device, and what an official DJANet file recorded
    (None for one of ours), from one read of the file."""
    device = resolve_device(cfg.device)
    set_threads(cfg.threads)
    ckpt = load_checkpoint(checkpoint)
    model, saved = model_from_checkpoint(ckpt, device=str(device))
    check_same_model(saved, cfg, checkpoint)   # the features need the image size it was trained at
    return model, device, ckpt.get("official")


def _write_metrics(out: Path, checkpoint, cfg: TrainConfig, flip: bool, rerank: "RerankConfig | None",
                   results: dict[str, ProtocolResult], official: dict | None = None) -> None:
    payload = {"checkpoint": str(checkpoint), "dataset": cfg.data.dataset, "mode": cfg.data.mode,
               "trial": cfg.data.trial, "flip": flip, "rerank": dataclasses.asdict(rerank) if rerank else None,
               "results": {k: r.to_dict() for k, r in results.items()}}
    if official is not None:   # a checkpoint of the official code: say whose protocol the numbers are
        from .official import PROTOCOL_NOTE
        payload["official_checkpoint"] = {**official, "protocol": PROTOCOL_NOTE}
    atomic_write_text(metrics_path(out, flip, rerank), json.dumps(payload, indent=1))


def _test_splits(cfg: TrainConfig, directions: tuple[str, ...] | None = None):
    """(direction, test split, gallery trials) for each test direction of `cfg.data.dataset`."""
    root = prepare_data(cfg)
    trials = 1 if cfg.data.dataset == "regdb" else cfg.eval_trials   # RegDB: one split, one trial
    for direction in directions or DIRECTIONS[cfg.data.dataset]:
        yield direction, read_test(cfg.data.dataset, root, mode=cfg.data.mode, trial=cfg.data.trial,
                                   direction=direction), trials


def _save_features(path: Path, feats: dict[str, np.ndarray], split: EvalSplit) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **feats, query_pids=split.query.pids, query_cams=split.query.cams,
                 gallery_pids=split.gallery.pids, gallery_cams=split.gallery.cams,
                 query_paths=np.array(split.query.paths), gallery_paths=np.array(split.gallery.paths))


def split_baselines(split: EvalSplit, img_size, trials: int, seed: int = 0,
                    dim: int = 512) -> dict[str, ProtocolResult]:
    """The floor and the chance level of one split, through the same protocol as a model.

    ``pixels``: each image resized to `img_size`, in grey, flattened, zero-mean and unit-norm
    (no learning at all).  ``random``: random unit vectors; chance is not 1/#identities, since the
    metrics depend on how many true matches each query has in the sampled gallery, so it is
    measured rather than computed.
    """
    from .data.synthetic import grey_pixel_features
    rng = np.random.default_rng(seed)

    def unit(n: int) -> np.ndarray:
        x = rng.standard_normal((n, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return {
        "random": evaluate_split(split, unit(len(split.query)), unit(len(split.gallery)),
                                 trials=trials, feature_name="random"),
        "pixels": evaluate_split(split, grey_pixel_features(split.query.paths, img_size),
                                 grey_pixel_features(split.gallery.paths, img_size),
                                 trials=trials, feature_name="pixels"),
    }


def baselines(cfg: TrainConfig) -> dict[str, ProtocolResult]:
    """Grey pixels and random features on every test protocol: keys `<direction>/pixels|random`."""
    return {f"{direction}/{name}": res
            for direction, split, trials in _test_splits(cfg)
            for name, res in split_baselines(split, cfg.data.img_size, trials, cfg.seed).items()}
