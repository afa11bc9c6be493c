"""Image-level alignment: a copy of a dataset with every infrared image in the visible style.

DJANet's first alignment step happens before the re-identification network sees an image: an
unpaired translator is trained between infrared and visible images, every infrared image of the
dataset (train and test) is translated, and training and testing read a copy of the dataset in
the same layout.  `write_translated_copy` builds that copy from a translator of
`djanet.cyclegan` or from externally produced translations (for example CycleGAN-Turbo
outputs), atomically; `translate_command` is what `python -m djanet translate` calls.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from .checkpoint import atomic_write_text
from .cyclegan import (IMG_EXTS, CycleGAN, Discriminator, Generator, ImagePool,  # noqa: F401
                       TranslateConfig, _load_rgb, _progress, get_translate_config, load_translator,
                       train_translator, translate_images)
from .data.prepare import data_identity

MANIFEST = "translation.json"


# --------------------------------------------------------------------------- the translated copy
_LAYOUT_MARKERS = {
    "sysu": ("exp/train_id.txt", "exp/test_id.txt", "cam3", "cam6"),
    "regdb": ("idx", "Visible", "Thermal"),
    "llcm": ("idx/train_vis.txt", "idx/train_nir.txt", "nir", "vis"),
}


def check_layout(dataset: str, root: str | Path) -> list[Path]:
    """Check the dataset layout and return every infrared image (absolute paths, sorted).

    Raises FileNotFoundError naming what is missing, so a wrong root or dataset name fails early."""
    from djanet.data.readers import list_infrared_images

    if dataset not in _LAYOUT_MARKERS:
        raise ValueError(f"dataset={dataset!r}; expected one of {tuple(_LAYOUT_MARKERS)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} is not a directory")
    missing = [m for m in _LAYOUT_MARKERS[dataset] if not (root / m).exists()]
    if missing:
        raise FileNotFoundError(f"{root} does not look like a {dataset} dataset: missing {', '.join(missing)}")
    ir = sorted(Path(p).resolve() for p in list_infrared_images(dataset, str(root)))
    if not ir:
        raise FileNotFoundError(f"no infrared images found under {root} for dataset {dataset}")
    rroot = root.resolve()
    outside = [p for p in ir if not p.is_relative_to(rroot)]
    if outside:
        raise ValueError(f"{len(outside)} infrared images lie outside {root}, e.g. {outside[0]}")
    return ir


def find_external(external: str | Path, rel_paths: Sequence[Path]) -> dict[Path, Path]:
    """Map each infrared relative path to its file in `external` (same relative path, or the same
    stem with another image extension, as translators often write PNG).  Raises FileNotFoundError
    naming the first missing ones and their count."""
    external = Path(external)
    if not external.is_dir():
        raise FileNotFoundError(f"external translations folder {external} is not a directory")
    found: dict[Path, Path] = {}
    missing: list[Path] = []
    for rel in rel_paths:
        cand = external / rel
        if not cand.is_file():
            cand = next((c for e in IMG_EXTS for c in (cand.with_suffix(e), cand.with_suffix(e.upper()))
                         if c.is_file()), None)
        if cand is None:
            missing.append(rel)
        else:
            found[rel] = cand
    if missing:
        shown = ", ".join(str(m) for m in missing[:5])
        raise FileNotFoundError(
            f"external translations in {external} miss {len(missing)} of {len(rel_paths)} infrared images "
            f"(expected at the same relative paths), e.g. {shown}")
    return found


def _save_like(img: Image.Image, src: Path, dst: Path, fmt: str | None) -> None:
    """Write `img` at `dst` resized to the source's size, in the source's file format."""
    with Image.open(src) as orig:
        size, fmt = orig.size, fmt or orig.format
    if img.size != size:
        img = img.resize(size, Image.BICUBIC)
    kwargs = {"quality": 95} if fmt == "JPEG" else {}
    img.convert("RGB").save(dst, format=fmt, **kwargs)


def _prepare_out(root: Path, out: Path, overwrite: bool) -> None:
    rroot, rout = root.resolve(), out.resolve()
    if rout == rroot or rout.is_relative_to(rroot) or rroot.is_relative_to(rout):
        raise ValueError(f"out={out} must lie outside the data root {root} (and not contain it)")
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} already exists; pass overwrite=True to replace a previous translated copy")
        if not (out / MANIFEST).is_file() and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not a translated copy (no {MANIFEST}); "
                                  "refusing to replace it, remove it yourself if you mean to")


def write_translated_copy(dataset: str, data_root: str | Path, out: str | Path,
                          checkpoint: str | Path | None = None, external: str | Path | None = None,
                          device: str = "auto", overwrite: bool = False, link: bool = False,
                          quiet: bool = False) -> Path:
    """Copy the dataset to `out` with every infrared image replaced by its translation.

    Exactly one of `checkpoint` (a translator from `train_translator`) and `external` (a folder of
    translations mirroring the infrared relative paths) is given.  Visible images and id files are
    copied unchanged (`link=True`: hard links where possible).  Translations keep each original's
    path, size and file format.  The copy is built in a hidden sibling folder and renamed to `out`
    only when complete, with `translation.json` (source, method, counts) written last.
    """
    if (checkpoint is None) == (external is None):
        raise ValueError("give exactly one of checkpoint= (a trained translator) or external= (a folder)")
    root, out = Path(data_root), Path(out)
    ir_abs = check_layout(dataset, root)
    rroot = root.resolve()
    rel_ir = [p.relative_to(rroot) for p in ir_abs]
    _prepare_out(root, out, overwrite)
    ext_map = find_external(external, rel_ir) if external is not None else None

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        raise FileExistsError(f"temporary folder {tmp} exists; remove it (a previous run of this process)")
    tmp.mkdir()
    try:
        ir_set = set(rel_ir)
        copied, skipped = 0, []
        for dirpath, dirnames, filenames in os.walk(rroot):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(rroot)
            (tmp / rel_dir).mkdir(parents=True, exist_ok=True)
            for name in sorted(filenames):
                rel = rel_dir / name
                if rel in ir_set:
                    continue
                if name.endswith(".npy") and rel_dir == Path("."):
                    skipped.append(str(rel))  # preprocessed arrays would hold untranslated IR images
                    continue
                _copy_file(rroot / rel, tmp / rel, link)
                copied += 1
        if ext_map is not None:
            for rel in _progress(rel_ir, desc="external translations", quiet=quiet):
                _save_like(_load_rgb(ext_map[rel]), rroot / rel, tmp / rel, None)
            method, ckpt_info = "external", None
        else:
            gen, cfg = load_translator(checkpoint, device)
            bs = cfg.translate_batch
            chunks = range(0, len(rel_ir), bs)
            for i in _progress(chunks, desc="translating infrared", quiet=quiet, total=len(chunks)):
                rels = rel_ir[i:i + bs]
                outs = translate_images(gen, [rroot / r for r in rels], cfg.img_size, batch_size=bs)
                for rel, img in zip(rels, outs):
                    _save_like(img, rroot / rel, tmp / rel, None)
            method, ckpt_info = "cyclegan", str(Path(checkpoint).resolve())
        manifest = {
            "complete": True, "dataset": dataset, "source": str(rroot), "method": method,
            "checkpoint": ckpt_info, "external": str(Path(external).resolve()) if external else None,
            "counts": {"infrared_translated": len(rel_ir), "files_copied": copied},
            "skipped": skipped, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2))
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # only the folder this call created
        raise
    return out


def _copy_file(src: Path, dst: Path, link: bool) -> None:
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished copy to `out`; a previous translated copy there is moved aside first and
    deleted only after the new one is in place (`_prepare_out` has checked it is ours)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old)


def reusable_copy(out: str | Path, data_root: str | Path) -> bool:
    """True when `out` is a complete translated copy of `data_root`'s data; raises when it is a copy
    of other data (the generator changed or the data folder moved), which must not be reused."""
    manifest = read_manifest(out)
    if manifest is None:
        return False
    if data_identity(manifest["source"]) != data_identity(data_root):
        raise FileExistsError(f"{out} is a translated copy of {manifest['source']}, not of {data_root} "
                              "(the synthetic generator or the data folder changed); delete it to "
                              "translate the current data")
    return True


def read_manifest(out: str | Path) -> dict[str, Any] | None:
    """The manifest of a complete translated copy, or None when `out` is not one."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if data.get("complete") else None


# --------------------------------------------------------------------------- CLI entry
def translate_command(dataset: str, data_root: str | Path | None, out: str | Path, preset: str = "cpu-demo",
                      checkpoint: str | Path | None = None, external: str | Path | None = None,
                      device: str = "auto", seed: int = 0, *, overwrite: bool = False,
                      checkpoint_dir: str | Path | None = None, cache_dir: str = "~/.cache/djanet") -> Path:
    """`python -m djanet translate`: train a translator if none is given, then write the copy.

    With `external` the folder's translations are used and nothing is trained.  Without
    `checkpoint`, a translator of `preset` is trained (or resumed, or reused when finished) at
    `checkpoint_dir/translator-<preset>.pt`, by default in the sibling folder `<out>-translator`.
    `data_root=None` uses the synthetic dataset of `dataset` (generated once into `cache_dir`).
    """
    out = Path(out)
    if data_root is None:
        from djanet.data.synthetic import ensure_synthetic
        data_root = ensure_synthetic(dataset, Path(cache_dir).expanduser())
        print(f"no data root given: using the synthetic {dataset} dataset at {data_root}")
    root = Path(data_root)
    check_layout(dataset, root)
    _prepare_out(root, out, overwrite)  # fail before training, not after
    if external is None and checkpoint is None:
        ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else out.parent / f"{out.name}-translator"
        checkpoint = ckpt_dir / f"translator-{preset}.pt"
        print(f"training a {preset} CycleGAN translator; checkpoint: {checkpoint}")
        train_translator(dataset, root, checkpoint, get_translate_config(preset), device=device, seed=seed)
    elif checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"translator checkpoint {checkpoint} does not exist")
    result = write_translated_copy(dataset, root, out, checkpoint=checkpoint, external=external,
                                   device=device, overwrite=overwrite)
    counts = read_manifest(result)["counts"]  # type: ignore[index]
    print(f"wrote {result}: {counts['infrared_translated']} infrared images translated, "
          f"{counts['files_copied']} files copied")
    return result
