"""Readers: each layout read back (counts, ids, cameras, protocols), translated copies, bad input."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from djanet.data import readers as rd


def _ids(path):
    return [int(t) for t in path.read_text().strip().split(",")]


def _count(root, cams, ids):
    return sum(len(list((root / f"cam{c}" / f"{p:04d}").glob("*.jpg"))) for c in cams for p in ids)


def test_sysu_train(sysu_root):
    train, val = _ids(sysu_root / "exp/train_id.txt"), _ids(sysu_root / "exp/val_id.txt")
    split, none = rd.read_train("sysu", sysu_root)
    assert none is None and split.num_classes == 10
    assert len(split.visible) == _count(sysu_root, (1, 2, 4, 5), train + val)
    assert len(split.infrared) == _count(sysu_root, (3, 6), train + val)
    assert set(split.visible.cams) <= {1, 2, 4, 5} and set(split.infrared.cams) <= {3, 6}
    assert set(split.visible.pids) | set(split.infrared.pids) == set(train + val)
    labels = np.concatenate([split.visible.labels, split.infrared.labels])
    assert set(labels) == set(range(10))
    pid_of = dict(zip(split.visible.labels, split.visible.pids))
    assert all(pid_of.get(l, p) == p for l, p in zip(split.infrared.labels, split.infrared.pids))
    assert split.visible.modality == "visible" and split.visible.paths[0].startswith("/")


def test_sysu_holdout(sysu_root):
    val_ids = set(_ids(sysu_root / "exp/val_id.txt"))
    split, val = rd.read_train("sysu", sysu_root, holdout=True)
    assert split.num_classes == 8 and not set(split.visible.pids) & val_ids
    assert set(val.query.pids) == val_ids and set(val.query.cams) <= {3, 6}
    assert set(val.gallery.cams) <= {1, 2, 4, 5} and val.direction == "i2v"


def test_max_ids_keeps_the_smallest_training_ids_and_all_validation_ids(sysu_root):
    full, val_full = rd.read_train("sysu", sysu_root, holdout=True)
    split, val = rd.read_train("sysu", sysu_root, holdout=True, max_ids=3)
    kept = sorted(set(full.visible.pids) | set(full.infrared.pids))[:3]
    assert split.num_classes == 3
    assert set(split.visible.pids) | set(split.infrared.pids) == set(kept)
    assert sorted(set(split.visible.labels)) == [0, 1, 2]
    assert val.query.paths == val_full.query.paths and val.gallery.paths == val_full.gallery.paths
    with pytest.raises(ValueError, match="max_ids=1"):
        rd.read_train("sysu", sysu_root, max_ids=1)


@pytest.mark.parametrize("mode,cams", [("all", (1, 2, 4, 5)), ("indoor", (1, 2))])
def test_sysu_test(sysu_root, mode, cams):
    ids = _ids(sysu_root / "exp/test_id.txt")
    s = rd.read_test("sysu", sysu_root, mode=mode)
    assert len(s.query) == _count(sysu_root, (3, 6), ids)
    assert len(s.gallery) == _count(sysu_root, cams, ids)
    assert set(s.gallery.cams) <= set(cams) and set(s.query.pids) <= set(ids)
    assert (s.query.labels == s.query.pids).all() and (s.mode, s.direction) == (mode, "i2v")


def test_regdb(regdb_root):
    split, _ = rd.read_train("regdb", regdb_root, trial=2)
    assert len(split.visible) == len(split.infrared) == 4 * 3 and split.num_classes == 4
    v2t = rd.read_test("regdb", regdb_root, trial=2)
    t2v = rd.read_test("regdb", regdb_root, trial=2, direction="t2v")
    assert (len(v2t.query), len(v2t.gallery)) == (12, 12)
    assert v2t.query.modality == "visible" and t2v.query.modality == "infrared"
    assert v2t.query.paths == t2v.gallery.paths
    assert not set(v2t.query.pids) & set(split.visible.pids)
    assert set(v2t.query.cams) == {1} and set(v2t.gallery.cams) == {2}
    train, val = rd.read_train("regdb", regdb_root, holdout=True, val_fraction=0.25)
    assert train.num_classes == 3 and len(set(val.query.pids)) == 1 and val.direction == "t2v"


def test_llcm(llcm_root):
    split, _ = rd.read_train("llcm", llcm_root)
    test_ids = _ids(llcm_root / "idx/test_id.txt")
    assert split.num_classes == 6 and not set(split.visible.pids) & set(test_ids)
    assert 3 not in set(split.infrared.cams)
    i2v = rd.read_test("llcm", llcm_root)
    v2i = rd.read_test("llcm", llcm_root, direction="v2i")
    assert i2v.query.modality == "infrared" and v2i.query.modality == "visible"
    assert len(i2v.query) == len(list((llcm_root / "test_nir").rglob("*.jpg")))
    assert len(i2v.gallery) == len(list((llcm_root / "test_vis").rglob("*.jpg")))
    assert 3 not in set(i2v.query.cams) and set(i2v.query.pids) <= set(test_ids)


def test_list_infrared(sysu_root, regdb_root, llcm_root):
    assert len(rd.list_infrared_images("sysu", sysu_root)) == len(list(sysu_root.glob("cam[36]/*/*")))
    assert len(rd.list_infrared_images("regdb", regdb_root)) == 8 * 3
    assert all(p.name.endswith("_nir.jpg") for p in rd.list_infrared_images("llcm", llcm_root))


def test_translated_copy(tmp_path, sysu_root, regdb_root):
    """A copy with IR images replaced (here: as .png) reads the same, pointing at the new files."""
    for name, root in (("sysu", sysu_root), ("regdb", regdb_root)):
        copy = tmp_path / name
        shutil.copytree(root, copy)
        for p in rd.list_infrared_images(name, copy):
            Image.fromarray(255 - np.asarray(Image.open(p))).save(p.with_suffix(".png"))
            p.unlink()
        a, _ = rd.read_train(name, root)
        b, _ = rd.read_train(name, copy)
        assert len(a.infrared) == len(b.infrared) and (a.infrared.labels == b.infrared.labels).all()
        assert all(p.endswith(".png") and p.startswith(str(copy)) for p in b.infrared.paths)


def test_load_image_and_unreadable(tmp_path, sysu_root):
    img = rd.load_image(next(sysu_root.glob("cam1/*/*.jpg")))
    assert img.shape == (64, 32, 3) and img.dtype == np.uint8
    bad = tmp_path / "0001.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot read image .*0001\.jpg"):
        rd.load_image(bad)


def test_bad_input(tmp_path, sysu_root, regdb_root):
    with pytest.raises(ValueError, match=r"unknown dataset 'market'.*sysu"):
        rd.read_train("market", sysu_root)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rd.read_train("sysu", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"not a sysu layout.*cam1.*looks like a regdb"):
        rd.read_train("sysu", regdb_root)
    with pytest.raises(FileNotFoundError, match=r"Visible, Thermal"):
        rd.read_test("regdb", sysu_root)
    copy = tmp_path / "sysu"
    shutil.copytree(sysu_root, copy)
    (copy / "exp/test_id.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing id file: .*test_id\.txt"):
        rd.read_test("sysu", copy)
    pid = _ids(copy / "exp/train_id.txt")[0]
    folder = next(copy.glob(f"cam*/{pid:04d}"))
    for f in folder.iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=rf"identity folder .*{folder.name} contains no images"):
        rd.read_train("sysu", copy)
    with pytest.raises(ValueError, match="trial=11"):
        rd.read_test("regdb", regdb_root, trial=11)
    with pytest.raises(ValueError, match="direction='v2t' for sysu"):
        rd.read_test("sysu", sysu_root, direction="v2t")
    with pytest.raises(ValueError, match="mode='indoor' for regdb"):
        rd.read_test("regdb", regdb_root, mode="indoor")
    (copy / "exp/train_id.txt").write_text("1,2,x\n")
    with pytest.raises(ValueError, match="comma-separated integer ids"):
        rd.read_train("sysu", copy)
