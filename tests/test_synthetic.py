"""Synthetic datasets: layouts on disk, id splits, determinism, modality gap, bad input."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from djanet.data import synthetic as syn
from djanet.data.readers import read_rand_perm


def _ids(path):
    return [int(t) for t in path.read_text().strip().split(",")]


def test_sysu_layout_and_id_files(sysu_root):
    exp = sysu_root / "exp"
    train, val, test = (_ids(exp / f"{n}_id.txt") for n in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (8, 2, 2)
    assert sorted(train + val + test) == list(range(1, 13))
    assert (exp / "train_id.txt").read_text().count("\n") == 1       # one comma-separated line
    for pid in range(1, 13):
        cams = {c for c in range(1, 7) if (sysu_root / f"cam{c}" / f"{pid:04d}").is_dir()}
        assert cams & {1, 2, 4, 5} and cams & {3, 6}                 # both modalities
    files = sorted((sysu_root / "cam1").rglob("*.jpg"))
    assert files and all(re.fullmatch(r"\d{4}", f.parent.name) and re.fullmatch(r"\d{4}\.jpg", f.name)
                         for f in files)
    img = np.asarray(Image.open(files[0]))
    assert img.shape == (64, 32, 3) and img.dtype == np.uint8


def test_sysu_rand_perm(sysu_root):
    perm = read_rand_perm(sysu_root)
    folders = [(c, int(d.name)) for c in range(1, 7) for d in (sysu_root / f"cam{c}").iterdir()]
    assert sorted(perm) == sorted(folders)
    for (cam, pid), m in perm.items():
        n = len(list((sysu_root / f"cam{cam}" / f"{pid:04d}").iterdir()))
        assert m.shape == (10, n) and m.dtype == np.int64
        assert (np.sort(m, axis=1) == np.arange(1, n + 1)).all()    # each row a permutation
    assert read_rand_perm(sysu_root / "nowhere") is None


def test_regdb_layout_and_trials(regdb_root):
    assert len(list((regdb_root / "Visible").rglob("*.bmp"))) == 8 * 3
    assert len(list((regdb_root / "Thermal").rglob("*_t_*.bmp"))) == 8 * 3
    splits = []
    for t in range(1, 11):
        train = (regdb_root / "idx" / f"train_visible_{t}.txt").read_text().split("\n")
        test = (regdb_root / "idx" / f"test_thermal_{t}.txt").read_text().split("\n")
        train_ids = {int(l.split("/")[1]) for l in train if l}
        test_ids = {int(l.split("/")[1]) for l in test if l}
        assert len(train_ids) == len(test_ids) == 4 and not train_ids & test_ids
        assert {int(l.split()[1]) for l in train if l} == set(range(4))   # labels 0..n-1
        splits.append(tuple(sorted(train_ids)))
    assert len(set(splits)) > 1                                       # trials differ


def test_llcm_layout(llcm_root):
    test = _ids(llcm_root / "idx" / "test_id.txt")
    assert len(test) == 3
    names = [p.name for p in llcm_root.rglob("*.jpg")]
    assert all(re.fullmatch(r"\d{4}_c0\d_s\d{6}_f\d{4}_(vis|nir)\.jpg", n) for n in names)
    assert not list((llcm_root / "test_nir").glob("cam3/*/*"))      # no infrared camera 3
    assert not any("_c03_" in n and n.endswith("_nir.jpg") for n in names)
    lines = (llcm_root / "idx" / "train_nir.txt").read_text().split()
    assert lines[0].startswith("nir/") and {int(x) for x in lines[1::2]} <= set(range(6))


def test_deterministic_from_seed(tmp_path):
    a = syn.generate("regdb", tmp_path / "a", ids=4, per_cam=2, size=(32, 16), seed=3)
    b = syn.generate("regdb", tmp_path / "b", ids=4, per_cam=2, size=(32, 16), seed=3)
    c = syn.generate("regdb", tmp_path / "c", ids=4, per_cam=2, size=(32, 16), seed=4)
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert fa == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in fa)
    assert (a / "idx/train_visible_1.txt").read_bytes() != (c / "idx/train_visible_1.txt").read_bytes() \
        or any((a / f).read_bytes() != (c / f).read_bytes() for f in fa if f.suffix == ".bmp")
    x = syn.render_image(0, 5, 3, 1, True, (64, 32))
    assert np.array_equal(x, syn.render_image(0, 5, 3, 1, True, (64, 32)))
    assert not np.array_equal(x, syn.render_image(1, 5, 3, 1, True, (64, 32)))


def _vis_ir_pair(layout: str, pid: int, ir_cam: int, size=(128, 64)):
    """Visible and infrared renders of one person in one pose (no occluder), and the part map."""
    ident = syn.identity(0, pid, layout)
    pose = syn.random_pose(np.random.default_rng(pid), *size)
    pose["occ"] = None
    vis = syn.render(ident, pose, 1, False, np.random.default_rng(0), *size, layout=layout)
    ir = syn.render(ident, pose, ir_cam, True, np.random.default_rng(0), *size, layout=layout)
    part = syn.draw_parts(ident, pose, *size).part
    return vis, ir, (part[:, ::-1] if pose["flip"] else part)


def _grey_ir_correlation(layout: str, ir_cam: int, n: int = 20) -> float:
    corr = []
    for pid in range(1, n + 1):
        vis, ir, part = _vis_ir_pair(layout, pid, ir_cam)
        assert (ir[..., 0] == ir[..., 1]).all() and (ir[..., 1] == ir[..., 2]).all()   # one channel
        grey = vis.astype(float) @ [0.299, 0.587, 0.114]
        corr.append(np.corrcoef(grey[part > 0], ir[..., 0][part > 0].astype(float))[0, 1])
    return float(np.mean(corr))


def test_thermal_infrared_owes_nothing_to_the_dye():
    """RegDB's thermal camera: grey levels of the person barely follow the visible luminance."""
    assert abs(_grey_ir_correlation("regdb", 2)) < 0.3


def test_near_infrared_partly_follows_the_dye():
    """SYSU-MM01 / LLCM near-infrared: reflectance follows the dye's lightness for most garments (a
    positive correlation with the visible luminance), the bare fibre for the rest (far from a grey
    copy)."""
    for layout, cam in (("sysu", 3), ("llcm", 1)):
        corr = _grey_ir_correlation(layout, cam)
        assert 0.3 < corr < 0.85, (layout, corr)
    assert _grey_ir_correlation("sysu", 3) > abs(_grey_ir_correlation("regdb", 2)) + 0.2


def test_near_infrared_skin_is_bright_and_llcm_is_dark():
    skin_minus_clothes, vis_sysu, vis_llcm = [], [], []
    for pid in range(1, 21):
        vis, ir, part = _vis_ir_pair("sysu", pid, 3)
        clothes = (part == syn.TOP) | (part == syn.BOTTOM)
        skin_minus_clothes.append(ir[..., 0][part == syn.SKIN].mean() - ir[..., 0][clothes].mean())
        vis_sysu.append(vis.mean())
        vis_llcm.append(_vis_ir_pair("llcm", pid, 1)[0].mean())
    assert np.mean(skin_minus_clothes) > 30                    # grey levels out of 255
    assert np.mean(vis_llcm) < 0.7 * np.mean(vis_sysu)         # LLCM: low-light scenes


@pytest.mark.slow
def test_pixel_matching_cross_modal_poor(tmp_path):
    root = syn.generate("sysu", tmp_path / "sysu", ids=30, per_cam=3, size=(64, 32))
    for size in (None, (32, 16)):     # stored size, and the smaller input size the book uses
        r = syn.pixel_matching_rank1(root, size=size)
        assert r["ir->vis"] < 0.1 and r["ir->vis"] < 3 * r["chance"] + 0.02
        assert r["vis->vis"] > 3 * r["ir->vis"] and r["ir->ir"] > 1.5 * r["ir->vis"]


@pytest.mark.slow
def test_parallel_generation_writes_the_same_files(tmp_path, monkeypatch):
    """Hundreds of images go through a process pool (one worker per core); every file is the
    one a serial run writes, byte for byte."""
    pooled = syn.generate("sysu", tmp_path / "pooled", ids=30, per_cam=3, size=(32, 16))
    monkeypatch.setattr(syn, "_render_all", lambda jobs: [syn._render_and_save(job) for job in jobs])
    serial = syn.generate("sysu", tmp_path / "serial", ids=30, per_cam=3, size=(32, 16))
    files = sorted(p.relative_to(pooled) for p in pooled.rglob("*.jpg"))
    assert len(files) > 400
    assert files == sorted(p.relative_to(serial) for p in serial.rglob("*.jpg"))
    assert all((pooled / f).read_bytes() == (serial / f).read_bytes() for f in files)


def test_ensure_synthetic_once(tmp_path):
    root = syn.ensure_synthetic("llcm", tmp_path, ids=4, size=(32, 16), per_cam=1)
    assert root == tmp_path / "synthetic" / f"llcm-ids4-s0-32x16-k1-g{syn.GENERATOR_VERSIONS['llcm']}"
    stamp = (root / "idx" / "test_id.txt").stat().st_mtime_ns
    assert syn.ensure_synthetic("llcm", tmp_path, ids=4, size=(32, 16), per_cam=1) == root
    assert (root / "idx" / "test_id.txt").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "synthetic").iterdir()] == [root.name]  # no temp dirs left


def test_generate_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown layout 'market'"):
        syn.generate("market", tmp_path / "x")
    with pytest.raises(ValueError, match="at least 3"):
        syn.generate("sysu", tmp_path / "x", ids=2)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(FileExistsError, match="full"):
        syn.generate("regdb", tmp_path / "full")


def test_cli(tmp_path, capsys):
    syn.main(["--layout", "regdb", "--out", str(tmp_path / "r"), "--ids", "2", "--per-cam", "1",
              "--size", "32", "16"])
    assert "wrote 4 images" in capsys.readouterr().out


def _person_mask(layout: str, pid: int, cam: int, k: int, infrared: bool, size) -> np.ndarray:
    """Where the person is in image k (the part map of the pose render_image draws)."""
    pose, _ = syn.image_pose(0, pid, cam, k, infrared, size, layout)
    part = syn.draw_parts(syn.identity(0, pid, layout), pose, *size).part
    return (part[:, ::-1] if pose["flip"] else part) > 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_regdb_pairs_share_a_pose_other_layouts_do_not():
    """RegDB's visible and thermal image k of a person are one moment through two lenses: their
    silhouettes overlap almost entirely; SYSU-MM01's visible and infrared images do not."""
    size = (64, 32)
    regdb, sysu = [], []
    for pid in range(1, 13):
        for k in range(2):
            regdb.append(_iou(_person_mask("regdb", pid, 1, k, False, size), _person_mask("regdb", pid, 2, k, True, size)))
            sysu.append(_iou(_person_mask("sysu", pid, 1, k, False, size), _person_mask("sysu", pid, 3, k, True, size)))
    same = syn.render_image(0, 3, 2, 1, True, size, "regdb")
    pose, r = syn.image_pose(0, 3, 2, 1, True, size, "regdb")
    assert np.array_equal(same, syn.render(syn.identity(0, 3, "regdb"), pose, 2, True, r, *size, 0, "regdb"))
    assert np.mean(regdb) > 0.7 and min(regdb) > 0.4
    assert np.mean(sysu) < 0.6 and np.mean(regdb) > np.mean(sysu) + 0.2
