"""Tests of the CycleGAN translator and the translated dataset copy (tiny sizes, CPU)."""
from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from djanet import cyclegan as C
from djanet import threads
from djanet import translate as T


# --------------------------------------------------------------------------- config and networks
def test_presets_resolve_and_unknown_keys_raise():
    tiny = T.get_translate_config("tiny", steps=3)
    assert tiny.img_size == (32, 16) and tiny.ngf == 8 and tiny.n_blocks == 1 and tiny.steps == 3
    assert T.get_translate_config("cpu-demo").img_size == (64, 32)
    paper = T.get_translate_config("paper-like")
    assert (paper.ngf, paper.n_blocks, paper.lr, paper.beta1, paper.beta2, paper.pool_size) == (64, 9, 2e-4, 0.5, 0.999, 50)
    with pytest.raises(KeyError, match="n_blockz"):
        T.get_translate_config("tiny", n_blockz=2)
    with pytest.raises(KeyError, match="valid presets"):
        T.get_translate_config("huge")
    with pytest.raises(ValueError, match="upsample"):
        T.get_translate_config("tiny", upsample="bilinear")
    with pytest.raises(ValueError, match="divisible"):
        T.get_translate_config("tiny", img_size=(30, 16))
    assert C.config_from_dict(C.config_to_dict(tiny)) == tiny


@pytest.mark.parametrize("preset", ["tiny", "cpu-demo", "gpu-demo"])
def test_each_book_preset_has_its_namesake_translator_of_minutes_not_hours(preset):
    """Notebook 2 trains the translator named like the training preset (paper-like otherwise)."""
    cfg = T.get_translate_config(preset)
    assert cfg.steps <= 2000
    gan = C.CycleGAN(cfg)
    x = torch.zeros(1, 3, *cfg.img_size)
    assert gan.g_ir2vis(x).shape == x.shape


@pytest.mark.parametrize("ngf,n_blocks,n_down,size,up", [(8, 1, 2, (32, 16), "transpose"), (4, 2, 1, (24, 12), "nearest"),
                                                          (8, 0, 3, (64, 32), "transpose"), (8, 1, 2, (32, 16), "nearest")])
def test_generator_keeps_shape_and_range(ngf, n_blocks, n_down, size, up):
    torch.manual_seed(0)
    g = T.Generator(ngf, n_blocks, n_down, upsample=up)
    y = g(torch.randn(2, 3, *size))
    assert y.shape == (2, 3, *size)
    assert y.abs().max() <= 1.0


@pytest.mark.parametrize("n_layers,size,expected", [(2, (32, 16), (6, 2)), (3, (64, 32), (6, 2)), (3, (256, 128), (30, 14))])
def test_patchgan_output_shape(n_layers, size, expected):
    d = T.Discriminator(ndf=4, n_layers=n_layers)
    assert d(torch.randn(3, 3, *size)).shape == (3, 1, *expected)
    assert C._patch_out(size[0], n_layers) == expected[0] and C._patch_out(size[1], n_layers) == expected[1]


def test_image_pool_fills_then_mixes_history():
    pool = T.ImagePool(size=3, seed=0)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: returned as given
    assert len(pool.images) == 3
    later = torch.full((20, 1, 1, 1), 9.0)
    out = pool.query(later)
    assert out.shape == later.shape
    old = (out != 9.0).sum().item()
    assert 0 < old <= 3  # some come from history, each old image at most once
    assert torch.equal(T.ImagePool(size=0).query(later), later)
    state = pool.state_dict()
    clone = T.ImagePool(size=3, seed=123)
    clone.load_state_dict(state)
    x = torch.full((8, 1, 1, 1), 5.0)
    assert torch.equal(clone.query(x), pool.query(x))


def test_training_steps_lower_cycle_loss_on_fixed_batch():
    cfg = T.get_translate_config("tiny", lr=1e-3, steps=100)  # steps: no lr decay within the test
    model = T.CycleGAN(cfg, seed=0)
    gen = torch.Generator().manual_seed(0)
    smooth = lambda c: torch.nn.functional.interpolate(torch.rand(2, c, 8, 4, generator=gen), size=(32, 16),
                                                      mode="bilinear") * 2 - 1
    ir, vis = smooth(1).expand(2, 3, 32, 16), smooth(3)
    with torch.no_grad():
        before = model.generator_losses(ir, vis)["cycle"].item()
    losses = [model.train_step(ir, vis) for _ in range(5)]
    with torch.no_grad():
        after = model.generator_losses(ir, vis)["cycle"].item()
    assert set(losses[0]) == {"g_adv", "cycle", "identity", "g_total", "d_vis", "d_ir"}
    assert model.step == 5
    assert after < 0.85 * before, (before, after)


def test_translate_images_keeps_each_size():
    torch.manual_seed(0)
    g = T.Generator(4, 1, 2)
    imgs = [Image.new("RGB", (20, 40), (10, 10, 10)), np.zeros((33, 17), dtype=np.uint8)]
    out = T.translate_images(g, imgs, img_size=(32, 16), device="cpu")
    assert [im.size for im in out] == [(20, 40), (17, 33)]
    assert all(im.mode == "RGB" for im in out)
    with pytest.raises(ValueError, match="img_size"):
        T.translate_images(g, imgs)


# --------------------------------------------------------------------------- dataset fixtures
@pytest.fixture(scope="module")
def sysu_root(tmp_path_factory) -> Path:
    synthetic = pytest.importorskip("djanet.data.synthetic")
    pytest.importorskip("djanet.data.readers")
    return synthetic.generate("sysu", tmp_path_factory.mktemp("data") / "sysu", ids=6, seed=0, size=(40, 20))


@pytest.fixture(scope="module")
def tiny_ckpt(sysu_root, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return T.train_translator("sysu", sysu_root, path, T.get_translate_config("tiny"), device="cpu", seed=0)


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def _image_info(path: Path) -> tuple:
    with Image.open(path) as im:
        return im.size, im.format


# --------------------------------------------------------------------------- training and resume
def test_checkpoint_holds_everything(tiny_ckpt, sysu_root):
    state = torch.load(tiny_ckpt, weights_only=False)
    assert state["kind"] == C.CHECKPOINT_KIND and state["step"] == 4 and state["dataset"] == "sysu"
    assert set(state["model"]) >= {"g_ir2vis", "g_vis2ir", "d_vis", "d_ir", "opt_g", "opt_d", "pool_vis", "pool_ir"}
    assert set(state["rng"]) >= {"torch", "numpy", "python", "sampler"}
    assert C.config_from_dict(state["config"]) == T.get_translate_config("tiny")
    assert [h["step"] for h in state["history"]] == [1, 2, 3, 4]
    assert not list(tiny_ckpt.parent.glob(".*tmp*"))  # atomic write left no temporary file
    # train-or-load: a finished checkpoint is returned untouched
    mtime = tiny_ckpt.stat().st_mtime_ns
    T.train_translator("sysu", sysu_root, tiny_ckpt, "tiny")
    assert tiny_ckpt.stat().st_mtime_ns == mtime


def test_resume_equals_uninterrupted(sysu_root, tiny_ckpt, tmp_path):
    cfg = T.get_translate_config("tiny")
    part = T.train_translator("sysu", sysu_root, tmp_path / "resumed.pt", cfg, device="cpu", seed=0, stop_after=2)
    assert torch.load(part, weights_only=False)["step"] == 2
    T.train_translator("sysu", sysu_root, part, cfg, device="cpu", seed=0)
    resumed = torch.load(part, weights_only=False)
    full = torch.load(tiny_ckpt, weights_only=False)
    assert resumed["step"] == full["step"] == 4
    for net in ("g_ir2vis", "g_vis2ir", "d_vis", "d_ir"):
        for k, v in full["model"][net].items():
            assert torch.equal(v, resumed["model"][net][k]), (net, k)
    assert [h["cycle"] for h in resumed["history"]] == [h["cycle"] for h in full["history"]]


def test_resume_refuses_other_dataset(tiny_ckpt, sysu_root):
    with pytest.raises(ValueError, match="trained on 'sysu'"):
        T.train_translator("regdb", sysu_root, tiny_ckpt, "tiny")


def test_translator_and_copy_of_other_data_are_not_reused(tiny_ckpt, sysu_root, tmp_path):
    """After the generator changes, the data folder's name changes (its version is part of it): the
    finished translator and its translated copy of the old data are refused, naming both."""
    other = sysu_root.parent / "sysu-g0"
    other.symlink_to(sysu_root, target_is_directory=True)
    with pytest.raises(ValueError, match="sysu-g0"):
        T.train_translator("sysu", other, tiny_ckpt, "tiny")
    out = T.write_translated_copy("sysu", sysu_root, tmp_path / "copy", checkpoint=tiny_ckpt,
                                  device="cpu", quiet=True)
    assert T.reusable_copy(out, sysu_root) is True
    assert T.reusable_copy(tmp_path / "none", sysu_root) is False
    with pytest.raises(FileExistsError, match="not of .*sysu-g0"):
        T.reusable_copy(out, other)


# --------------------------------------------------------------------------- the translated copy
def test_translated_copy_has_original_layout(sysu_root, tiny_ckpt, tmp_path):
    from djanet.data.readers import list_infrared_images, read_train

    out = T.write_translated_copy("sysu", sysu_root, tmp_path / "sysu-translated", checkpoint=tiny_ckpt,
                                  device="cpu", quiet=True)
    src, dst = _files(sysu_root), _files(out)
    assert set(dst) == set(src) | {T.MANIFEST}
    ir_rel = {str(Path(p).resolve().relative_to(sysu_root.resolve())) for p in list_infrared_images("sysu", sysu_root)}
    assert ir_rel and ir_rel < set(src)
    for rel, path in src.items():
        if rel in ir_rel:
            assert _image_info(dst[rel]) == _image_info(path)
            assert not filecmp.cmp(dst[rel], path, shallow=False)  # replaced by its translation
        else:
            assert filecmp.cmp(dst[rel], path, shallow=False)  # visible images and id files unchanged
    manifest = T.read_manifest(out)
    assert manifest["method"] == "cyclegan" and manifest["dataset"] == "sysu"
    assert manifest["counts"] == {"infrared_translated": len(ir_rel), "files_copied": len(src) - len(ir_rel)}
    assert manifest["checkpoint"] == str(tiny_ckpt.resolve())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left
    a, _ = read_train("sysu", sysu_root)
    b, _ = read_train("sysu", out)
    assert (len(a.visible), len(a.infrared), a.num_classes) == (len(b.visible), len(b.infrared), b.num_classes)


def test_external_translations(sysu_root, tmp_path):
    ir = T.check_layout("sysu", sysu_root)
    rels = [p.relative_to(sysu_root.resolve()) for p in ir]
    ext = tmp_path / "turbo"
    for i, rel in enumerate(rels):  # PNG outputs at the translator's own size, as CycleGAN-Turbo writes
        (ext / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 32), (200, i % 256, 0)).save((ext / rel).with_suffix(".png"))
    out = T.write_translated_copy("sysu", sysu_root, tmp_path / "copy", external=ext, quiet=True)
    for rel, src in zip(rels, ir):
        assert _image_info(out / rel) == _image_info(src)
        with Image.open(out / rel) as im:
            r, g, b = im.convert("RGB").getpixel((5, 5))
        assert r > 150 and b < 60
    assert T.read_manifest(out)["method"] == "external"
    # remove a few: the error names them and counts them, and nothing is written
    for rel in rels[:3]:
        (ext / rel).with_suffix(".png").unlink()
    with pytest.raises(FileNotFoundError, match=rf"miss 3 of {len(rels)}.*{rels[0].name.rsplit('.', 1)[0]}"):
        T.write_translated_copy("sysu", sysu_root, tmp_path / "copy2", external=ext)
    assert not (tmp_path / "copy2").exists()


def test_wrong_layout_and_bad_arguments(sysu_root, tiny_ckpt, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="does not look like a sysu dataset"):
        T.write_translated_copy("sysu", empty, tmp_path / "o", checkpoint=tiny_ckpt)
    with pytest.raises(FileNotFoundError, match="does not look like a regdb dataset.*Thermal"):
        T.write_translated_copy("regdb", sysu_root, tmp_path / "o", checkpoint=tiny_ckpt)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        T.check_layout("sysu", tmp_path / "missing")
    with pytest.raises(ValueError, match="expected one of"):
        T.check_layout("market", sysu_root)
    with pytest.raises(ValueError, match="exactly one"):
        T.write_translated_copy("sysu", sysu_root, tmp_path / "o")
    with pytest.raises(ValueError, match="outside the data root"):
        T.write_translated_copy("sysu", sysu_root, sysu_root / "inside", checkpoint=tiny_ckpt)
    with pytest.raises(ValueError, match="not a djanet CycleGAN"):
        bad = tmp_path / "bad.pt"
        torch.save({"weights": 1}, bad)
        T.load_translator(bad)
    assert not (tmp_path / "o").exists()


def test_existing_out_is_protected(sysu_root, tiny_ckpt, tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        T.write_translated_copy("sysu", sysu_root, user, checkpoint=tiny_ckpt)
    with pytest.raises(FileExistsError, match="not a translated copy"):
        T.write_translated_copy("sysu", sysu_root, user, checkpoint=tiny_ckpt, overwrite=True)
    assert (user / "notes.txt").read_text() == "keep me"
    out = T.write_translated_copy("sysu", sysu_root, tmp_path / "tr", checkpoint=tiny_ckpt, quiet=True)
    first = json.loads((out / T.MANIFEST).read_text())["created"]
    (out / "stale.txt").write_text("x")
    T.write_translated_copy("sysu", sysu_root, out, checkpoint=tiny_ckpt, overwrite=True, quiet=True)
    assert T.read_manifest(out)["created"] >= first and not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "tr"]


def test_failure_leaves_no_copy(sysu_root, tmp_path, monkeypatch):
    ext = tmp_path / "ext"
    for p in T.check_layout("sysu", sysu_root):
        rel = p.relative_to(sysu_root.resolve())
        (ext / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 32)).save(ext / rel)
    calls = {"n": 0}
    real = T._save_like

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(*args)

    monkeypatch.setattr(T, "_save_like", flaky)
    with pytest.raises(OSError, match="disk full"):
        T.write_translated_copy("sysu", sysu_root, tmp_path / "out", external=ext, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext"]


def test_translate_command_trains_then_copies(sysu_root, tmp_path, capsys):
    out = T.translate_command("sysu", sysu_root, tmp_path / "translated", preset="tiny", device="cpu", seed=0)
    ckpt = tmp_path / "translated-translator" / "translator-tiny.pt"
    assert out == tmp_path / "translated" and ckpt.is_file()
    assert str(ckpt) in capsys.readouterr().out
    assert T.read_manifest(out)["checkpoint"] == str(ckpt.resolve())
    with pytest.raises(FileExistsError):
        T.translate_command("sysu", sysu_root, out, preset="tiny", device="cpu")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        T.translate_command("sysu", sysu_root, tmp_path / "x", checkpoint=tmp_path / "nope.pt")
    first_ir = T.check_layout("sysu", sysu_root)[0]
    translated = T.translate_images(ckpt, [first_ir], device="cpu")
    assert translated[0].size == _image_info(first_ir)[0]


@pytest.mark.parametrize("layout,per_cam", [("regdb", 2), ("llcm", 1)])
def test_copy_of_other_layouts_keeps_formats(layout, per_cam, tiny_ckpt, tmp_path):
    from djanet.data.readers import list_infrared_images
    from djanet.data.synthetic import generate

    root = generate(layout, tmp_path / layout, ids=4, seed=0, size=(40, 20), per_cam=per_cam)
    out = T.write_translated_copy(layout, root, tmp_path / "out", checkpoint=tiny_ckpt, device="cpu", quiet=True)
    src, dst = _files(root), _files(out)
    assert set(dst) == set(src) | {T.MANIFEST}
    ir = list_infrared_images(layout, root)
    assert T.read_manifest(out)["counts"]["infrared_translated"] == len(ir) > 0
    for p in ir:
        rel = str(Path(p).resolve().relative_to(root.resolve()))
        assert _image_info(dst[rel]) == _image_info(src[rel])  # same size, same format (BMP for RegDB)


def test_cli_translate_trains_then_writes_a_copy_the_readers_accept(sysu_root, tmp_path, capsys):
    from djanet.cli import main
    from djanet.data import read_train

    out = tmp_path / "sysu-translated"
    assert main(["translate", "--dataset", "sysu", "--data-root", str(sysu_root), "--out", str(out),
                 "--preset", "tiny", "--gpu", "cpu"]) == 0
    assert f"translated copy written to {out}" in capsys.readouterr().out
    assert T.read_manifest(out)["complete"] is True
    original, _ = read_train("sysu", sysu_root)
    translated, _ = read_train("sysu", out)
    assert len(translated.infrared) == len(original.infrared)


def test_auto_threads_time_every_step_and_bad_threads_are_named(sysu_root, tmp_path, monkeypatch):
    """threads="auto" (the cpu-demo translator's) hands every training step to a ThreadTuner."""
    timed = []

    class Spy(threads.ThreadTuner):
        def after_step(self, seconds: float) -> None:
            timed.append(seconds)
            super().after_step(seconds)

    monkeypatch.setattr(threads, "ThreadTuner", Spy)   # what the training loops' tuner_for builds
    before = torch.get_num_threads()
    try:
        cfg = T.get_translate_config("tiny", threads="auto")
        ckpt = T.train_translator("sysu", sysu_root, tmp_path / "auto.pt", cfg, device="cpu", seed=0)
    finally:
        torch.set_num_threads(before)
    assert torch.load(ckpt, weights_only=False)["step"] == 4 and len(timed) == 4
    assert T.get_translate_config("cpu-demo").threads == "auto"
    with pytest.raises(ValueError, match="threads=0; expected None"):
        T.get_translate_config("tiny", threads=0)
