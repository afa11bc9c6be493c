"""Readers for SYSU-MM01, RegDB and LLCM in their real on-disk layouts.

The same code reads the real datasets, the synthetic copies of `synthetic.py`, and translated
copies (same layout, infrared images replaced by visible-style translations, any of
.jpg/.jpeg/.png/.bmp).  Training labels are relabelled 0..N-1; original person ids and
cameras are kept for evaluation.  Layouts and protocols: shared/reference/protocols.md.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import DATASETS

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
SYSU_VIS_CAMS, SYSU_IR_CAMS = (1, 2, 4, 5), (3, 6)
SYSU_INDOOR_CAMS = (1, 2)
LLCM_CAMS = tuple(range(1, 10))
DIRECTIONS = {"sysu": ("i2v",), "regdb": ("v2t", "t2v"), "llcm": ("i2v", "v2i")}
# Folders that identify each layout (all must exist); id/index files are checked on use.
SIGNATURES = {
    "sysu": [f"cam{k}" for k in range(1, 7)],
    "regdb": ["Visible", "Thermal"],
    "llcm": ["idx", "test_vis", "test_nir"],
}


@dataclass
class ImageList:
    """Images of one modality with their person ids, cameras and labels."""
    paths: list[str]        # absolute paths
    pids: np.ndarray        # int64 original person ids
    cams: np.ndarray        # int64 camera numbers
    labels: np.ndarray      # int64: 0..N-1 for training lists; == pids for test lists
    modality: str           # 'visible' | 'infrared'

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class TrainSplit:
    visible: ImageList
    infrared: ImageList
    num_classes: int


@dataclass
class EvalSplit:
    dataset: str
    query: ImageList
    gallery: ImageList      # the FULL candidate gallery; protocols sample from it per trial
    mode: str               # SYSU: all | indoor; others: all
    direction: str          # i2v | v2i | v2t | t2v
    root: str


# ----------------------------------------------------------------------------- validation
def check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    return dataset


def check_root(dataset: str, root: str | os.PathLike) -> Path:
    """The root as a Path, or an error naming what is missing and what layout was expected."""
    check_dataset(dataset)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset} root {root} does not exist or is not a folder")
    want = SIGNATURES[dataset]
    missing = [name for name in want if not (root / name).is_dir()]
    if missing:
        looks = [d for d in DATASETS if all((root / n).is_dir() for n in SIGNATURES[d])]
        hint = f"; it looks like a {looks[0]} folder" if looks else ""
        raise FileNotFoundError(
            f"{root} is not a {dataset} layout: looked for the folders {', '.join(want)}; "
            f"missing {', '.join(missing)}{hint}")
    return root


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"missing {what}: {path} (expected it in the dataset layout)")
    return path


def read_id_file(path: Path) -> list[int]:
    """One comma-separated line of person ids (SYSU ``exp/*_id.txt``, LLCM ``idx/test_id.txt``)."""
    text = _require(path, "id file").read_text().replace("\n", ",")
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError as e:
        raise ValueError(f"{path}: expected comma-separated integer ids ({e})") from None


def read_index_file(path: Path) -> list[tuple[str, int]]:
    """Lines 'relative/path label' (RegDB idx/*.txt, LLCM idx/train_*.txt)."""
    out = []
    for n, line in enumerate(_require(path, "index file").read_text().splitlines(), 1):
        if line.strip():
            parts = line.split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{path}:{n}: expected 'relative/path label', got {line!r}")
            out.append((parts[0], int(parts[1])))
    return out


def _images_in(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise ValueError(f"identity folder {folder} contains no images "
                         f"(expected files ending in {', '.join(IMAGE_EXTS)})")
    return files


def _image_list(items, modality, relabel=None) -> ImageList:
    """items: (path, pid, cam) triples -> ImageList; relabel maps pid -> training label."""
    paths = [str(Path(p).resolve()) for p, _, _ in items]
    pids = np.array([i[1] for i in items], np.int64)
    cams = np.array([i[2] for i in items], np.int64)
    labels = pids.copy() if relabel is None else np.array([relabel[p] for p in pids], np.int64)
    return ImageList(paths, pids, cams, labels, modality)


def _relabel(*pid_arrays) -> dict[int, int]:
    return {int(p): i for i, p in enumerate(sorted(set(np.concatenate(pid_arrays).tolist())))}


# ----------------------------------------------------------------------------- SYSU-MM01
def _sysu_items(root: Path, pids, cams) -> list[tuple[Path, int, int]]:
    items = []
    for pid in sorted(pids):
        for cam in cams:
            folder = root / f"cam{cam}" / f"{pid:04d}"
            if folder.is_dir():
                items += [(f, pid, cam) for f in _images_in(folder)]
    return items


def _sysu_check_ids(root: Path, pids, items) -> None:
    missing = sorted(set(pids) - {i[1] for i in items})
    if missing:
        raise ValueError(f"identity {missing[0]:04d} has no images under {root}/cam1..cam6/"
                         f"{missing[0]:04d} ({len(missing)} such ids); expected at least one")


# ----------------------------------------------------------------------------- readers
def _pid_from(rel: str, label: int) -> int:
    """RegDB folders are person ids (Visible/<id>/...); fall back to the file's label."""
    folder = Path(rel).parts[-2] if len(Path(rel).parts) >= 2 else ""
    return int(folder) if folder.isdigit() else label


def _llcm_cam(name: str) -> int:
    for tok in Path(name).stem.split("_"):
        if tok.startswith("c") and tok[1:].isdigit():
            return int(tok[1:])
    raise ValueError(f"{name}: expected an LLCM name like PPPP_cCC_sSEQ_fFRAME_vis.jpg")


def _train_items(dataset: str, root: Path, trial: int):
    """(visible items, infrared items, SYSU val ids or None)."""
    if dataset == "sysu":
        exp = root / "exp"
        train, val = read_id_file(exp / "train_id.txt"), read_id_file(exp / "val_id.txt")
        vis = _sysu_items(root, train + val, SYSU_VIS_CAMS)
        ir = _sysu_items(root, train + val, SYSU_IR_CAMS)
        _sysu_check_ids(root, train + val, vis + ir)
        return vis, ir, val
    if dataset == "regdb":
        _check_trial(trial)
        out = []
        for tag, cam in (("visible", 1), ("thermal", 2)):
            rows = read_index_file(root / "idx" / f"train_{tag}_{trial}.txt")
            out.append([(_existing(root, rel), _pid_from(rel, lab), cam) for rel, lab in rows])
        return out[0], out[1], None
    out = []
    for mod in ("vis", "nir"):
        rows = read_index_file(root / "idx" / f"train_{mod}.txt")
        out.append([(_existing(root, rel), int(Path(rel).name[:4]) if Path(rel).name[:4].isdigit()
                     else lab, _llcm_cam(rel)) for rel, lab in rows])
    return out[0], out[1], None


def _existing(root: Path, rel: str) -> Path:
    """An image listed in an index file; a translated copy may have changed its extension."""
    p = root / rel
    if p.is_file():
        return p
    for ext in IMAGE_EXTS:
        if p.with_suffix(ext).is_file():
            return p.with_suffix(ext)
    raise FileNotFoundError(f"image {p} listed in {root / 'idx'} does not exist")


def _check_trial(trial: int) -> None:
    if not 1 <= int(trial) <= 10:
        raise ValueError(f"trial={trial}; RegDB trials are 1..10")


def read_train(dataset: str, root: str | os.PathLike, trial: int = 1, holdout: bool = False,
               val_fraction: float = 0.1, seed: int = 0, max_ids: int | None = None
               ) -> tuple[TrainSplit, EvalSplit | None]:
    """Training images of both modalities; with `holdout`, also a validation split of held-out ids.

    SYSU holds out exp/val_id.txt; RegDB and LLCM hold out `val_fraction` of the training ids
    (seeded).  The validation split queries infrared images against the visible ones.
    `max_ids` keeps only the training identities with the `max_ids` smallest person ids (a CPU
    budget: fewer classes, each seen more often); the validation identities are not affected.
    """
    if max_ids is not None and max_ids < 2:
        raise ValueError(f"max_ids={max_ids}; expected None (all training ids) or at least 2")
    root = check_root(dataset, root)
    vis, ir, sysu_val = _train_items(dataset, root, trial)
    val_ids: set[int] = set()
    if holdout:
        if dataset == "sysu":
            val_ids = set(sysu_val)
        else:
            ids = np.array(sorted({i[1] for i in vis + ir}))
            n = min(max(1, round(len(ids) * val_fraction)), len(ids) - 2)
            val_ids = set(np.random.default_rng([seed, 11]).choice(ids, n, replace=False).tolist())
    keep = lambda items, inside: [i for i in items if (i[1] in val_ids) == inside]  # noqa: E731
    tv, ti = keep(vis, False), keep(ir, False)
    if max_ids is not None:
        kept = set(sorted({i[1] for i in tv + ti})[:max_ids])
        tv, ti = [i for i in tv if i[1] in kept], [i for i in ti if i[1] in kept]
    if not tv or not ti:
        raise ValueError(f"{root}: no training images left in "
                         f"{'visible' if not tv else 'infrared'} after holding out {len(val_ids)} ids")
    labels = _relabel(np.array([i[1] for i in tv + ti]))
    split = TrainSplit(_image_list(tv, "visible", labels), _image_list(ti, "infrared", labels),
                       len(labels))
    if not holdout:
        return split, None
    vq, vg = keep(ir, True), keep(vis, True)
    direction = "t2v" if dataset == "regdb" else "i2v"
    val = EvalSplit(dataset, _image_list(vq, "infrared"), _image_list(vg, "visible"), "all",
                    direction, str(root))
    return split, val


def read_test(dataset: str, root: str | os.PathLike, mode: str = "all", trial: int = 1,
              direction: str | None = None) -> EvalSplit:
    """Query and full gallery candidates of the test protocol (see protocols.md)."""
    root = check_root(dataset, root)
    direction = direction or DIRECTIONS[dataset][0]
    if direction not in DIRECTIONS[dataset]:
        raise ValueError(f"direction={direction!r} for {dataset}; expected one of "
                         f"{DIRECTIONS[dataset]}")
    if mode not in ("all", "indoor") or (mode == "indoor" and dataset != "sysu"):
        raise ValueError(f"mode={mode!r} for {dataset}; expected 'all'"
                         + (" or 'indoor'" if dataset == "sysu" else ""))
    if dataset == "sysu":
        ids = read_id_file(root / "exp" / "test_id.txt")
        items = _sysu_items(root, ids, range(1, 7))          # pid-major, cameras ascending
        _sysu_check_ids(root, ids, items)
        gallery_cams = SYSU_INDOOR_CAMS if mode == "indoor" else SYSU_VIS_CAMS
        q = [i for i in items if i[2] in SYSU_IR_CAMS]
        g = [i for i in items if i[2] in gallery_cams]
        return EvalSplit(dataset, _image_list(q, "infrared"), _image_list(g, "visible"), mode,
                         direction, str(root))
    if dataset == "regdb":
        _check_trial(trial)
        lists = {}
        for tag, cam, mod in (("visible", 1, "visible"), ("thermal", 2, "infrared")):
            rows = read_index_file(root / "idx" / f"test_{tag}_{trial}.txt")
            lists[mod] = _image_list([(_existing(root, rel), _pid_from(rel, lab), cam)
                                      for rel, lab in rows], mod)
    else:
        ids = read_id_file(root / "idx" / "test_id.txt")
        lists = {}
        for mod, name in (("visible", "test_vis"), ("infrared", "test_nir")):
            items = []
            for cam in LLCM_CAMS:
                for pid in ids:
                    folder = root / name / f"cam{cam}" / f"{pid:04d}"
                    if folder.is_dir():
                        items += [(f, pid, cam) for f in _images_in(folder)]
            if not items:
                raise ValueError(f"no test images of ids in {root / 'idx' / 'test_id.txt'} under "
                                 f"{root / name}/cam*/PPPP/")
            lists[mod] = _image_list(items, mod)
    q, g = (("visible", "infrared") if direction in ("v2t", "v2i") else ("infrared", "visible"))
    return EvalSplit(dataset, lists[q], lists[g], mode, direction, str(root))


def list_infrared_images(dataset: str, root: str | os.PathLike) -> list[Path]:
    """Every infrared image file of the dataset (train and test), e.g. for translation."""
    root = check_root(dataset, root)
    folders = {"sysu": ["cam3", "cam6"], "regdb": ["Thermal"], "llcm": ["nir", "test_nir"]}[dataset]
    return sorted(p for f in folders if (root / f).is_dir() for p in (root / f).rglob("*")
                  if p.suffix.lower() in IMAGE_EXTS)


def read_rand_perm(root: str | os.PathLike) -> dict[tuple[int, int], np.ndarray] | None:
    """SYSU exp/rand_perm_cam.mat as {(cam, pid): (trials, n_images) 1-based indices}, or None.

    The file stores image numbers (NNNN of NNNN.jpg); they are mapped to 1-based positions in the
    sorted file list of camK/PPPP (the same thing when files are numbered 1..n, as in SYSU-MM01).
    Entries whose folder is absent are skipped.
    """
    path = Path(root).expanduser() / "exp" / "rand_perm_cam.mat"
    if not path.is_file():
        return None
    from scipy.io import loadmat

    perm = loadmat(path)["rand_perm_cam"]
    out = {}
    for c in range(perm.shape[0]):
        cells = np.asarray(perm[c][0]).reshape(-1)
        for i, m in enumerate(cells):
            m = np.atleast_2d(np.asarray(m))
            folder = Path(root).expanduser() / f"cam{c + 1}" / f"{i + 1:04d}"
            if m.size == 0 or not folder.is_dir():
                continue
            files = sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
            pos = {int(s): k + 1 for k, s in enumerate(files) if s.isdigit()}
            try:
                out[c + 1, i + 1] = np.vectorize(lambda n: pos[int(n)])(m).astype(np.int64)
            except KeyError as e:
                raise ValueError(f"{path}: camera {c + 1} id {i + 1} lists image {e} which is "
                                 f"not in {folder}") from None
    return out


def load_image(path: str | os.PathLike) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array, or an error naming the unreadable file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ValueError(f"cannot read image {path}: {e}; expected a readable "
                         f"{'/'.join(IMAGE_EXTS)} image") from None
