"""The engine on the tiny preset: learning, exact resume, atomic checkpoints, failures, CLI, DDP."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from djanet import train as engine
from djanet.checkpoint import atomic_torch_save, load_checkpoint
from djanet.cli import main as cli_main
from djanet.config import get_config
from djanet.data import FourViewDataset, prepare_data, read_train
from djanet.losses import DJANetLoss
from djanet.model import DJANet
from djanet.runs import RunExistsError


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("djanet-cache"))


def tiny(cache_dir, out_dir, **kw):
    return get_config("tiny", cache_dir=cache_dir, out_dir=str(out_dir), device="cpu", **kw)


def _weights(path):
    return load_checkpoint(path)["model"]


def fixed_batch(cfg):
    """(training split, one four-view batch: 4 identities x 2 pairs), seeded."""
    split, _ = read_train("sysu", prepare_data(cfg))
    ds = FourViewDataset(split, cfg.data.img_size)
    labels = sorted(set(split.visible.labels.tolist()) & set(split.infrared.labels.tolist()))[:4]
    pairs = [(int((split.visible.labels == c).nonzero()[0][0]), int((split.infrared.labels == c).nonzero()[0][0]))
             for c in labels for _ in range(2)]
    torch.manual_seed(0)
    return split, torch.utils.data.default_collate([ds[p] for p in pairs])


@pytest.mark.slow
def test_loss_decreases_on_a_fixed_batch(cache_dir, tmp_path):
    cfg = tiny(cache_dir, tmp_path, lr=0.001, head_lr=0.01)  # the warm-up learning rates
    split, batch = fixed_batch(cfg)
    engine.seed_everything(0)
    model = DJANet.from_config(cfg.model, split.num_classes, cfg.data.img_size)
    opt = engine.make_optimizer(model, cfg.optim)
    loss_fn = DJANetLoss(cfg.loss)
    model.train()
    totals = [engine.train_step(model, loss_fn, batch, opt, None, torch.device("cpu"))["loss_total"]
              for _ in range(12)]
    assert totals[-1] < 0.2 * totals[0], totals


def test_train_step_reports_the_accuracy_of_each_view():
    """Views are stacked VIS-1, VIS-2, IR-1, IR-2: a classifier right on IR-1 only scores there."""
    b, classes = 3, 5
    lv, li = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2])

    class RightOnFirstInfraredView(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, v1, v2, i1, i2):
            wrong = torch.nn.functional.one_hot((lv + 1) % classes, classes).float()
            right = torch.nn.functional.one_hot(li, classes).float()
            return {"logits": torch.cat([wrong, wrong, right, wrong]) + 0 * self.w}

    model = RightOnFirstInfraredView()
    loss_fn = lambda out, labels, epoch: {"total": out["logits"].sum() * model.w.sum()}   # noqa: E731
    batch = (torch.zeros(b, 3, 4, 2),) * 4 + (lv, li)
    stats = engine.train_step(model, loss_fn, batch, torch.optim.SGD(model.parameters(), lr=0.1), None,
                              torch.device("cpu"))
    assert stats["acc"] == pytest.approx(0.25)
    assert {k: stats[k] for k in stats if k.startswith("acc_")} == {
        "acc_visible": 0.0, "acc_visible_aug": 0.0, "acc_thermal": 1.0, "acc_thermal_aug": 0.0}


def test_lr_schedule_warmup_and_steps():
    optim = get_config("paper").optim
    assert engine.lr_factor(0, optim) == pytest.approx(0.1)
    assert engine.lr_factor(5, optim) == pytest.approx(0.55)
    assert engine.lr_factor(10, optim) == 1.0
    assert engine.lr_factor(25, optim) == pytest.approx(0.1)
    assert engine.lr_factor(149, optim) == pytest.approx(1e-5)


def test_cosine_schedule_by_hand():
    optim = get_config("tiny", **{"optim.schedule": "cosine", "optim.epochs": 5, "optim.warmup_epochs": 0.5,
                                  "optim.final_lr": 0.01}).optim
    assert engine.lr_factor(0, optim) == pytest.approx(0.1)
    assert engine.lr_factor(0.25, optim) == pytest.approx(0.55)          # half-way up the warm-up
    assert engine.lr_factor(0.5, optim) == pytest.approx(1.0)
    assert engine.lr_factor(2.75, optim) == pytest.approx(0.505)         # half-way down: (1 + 0.01) / 2
    assert engine.lr_factor(5, optim) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="optim.schedule='linear'"):
        get_config("tiny", **{"optim.schedule": "linear"})


@pytest.mark.slow
def test_cosine_schedule_moves_every_step_and_resumes_exactly(cache_dir, tmp_path, monkeypatch):
    sched = {"optim.schedule": "cosine", "optim.warmup_epochs": 0.5, "max_steps_per_epoch": 2}
    real_step, seen = engine.train_step, []

    def spy(model, loss_fn, batch, optimizer, *a, **k):
        seen.append(optimizer.param_groups[0]["lr"])
        if k.pop("cut", False) and len(seen) == 4:
            raise KeyboardInterrupt
        return real_step(model, loss_fn, batch, optimizer, *a, **k)

    monkeypatch.setattr(engine, "train_step", spy)
    full = tiny(cache_dir, tmp_path, epochs=3, run_name="cos", **sched)
    history = engine.fit(full)
    base = full.optim.lr
    assert seen == pytest.approx([base * engine.lr_factor(s / 2, full.optim) for s in range(6)])
    assert seen[0] == pytest.approx(0.1 * base) and seen[1] == pytest.approx(base)   # one warm-up step
    assert seen[2] > seen[3] > seen[4] > seen[5] == pytest.approx(base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.8))))
    assert list(history["lr"]) == pytest.approx(seen[1::2])                        # each epoch's last step

    # Ctrl-C in epoch 2 after one of its steps, then resume: the same rates, the same weights.
    full_lrs, seen[:] = list(seen), []
    monkeypatch.setattr(engine, "train_step", lambda *a, **k: spy(*a, cut=True, **k))
    cut = tiny(cache_dir, tmp_path, epochs=3, run_name="cos-cut", **sched)
    with pytest.raises(KeyboardInterrupt):
        engine.fit(cut)
    monkeypatch.setattr(engine, "train_step", spy)
    run = engine.fit_or_load(cut)
    assert seen[:3] + seen[4:] == pytest.approx(full_lrs)
    a, b = _weights(engine.run_dir(full) / "checkpoints" / "last.pt"), _weights(run.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_fit_writes_run_folder_and_selects_on_validation(cache_dir, tmp_path):
    cfg = tiny(cache_dir, tmp_path)
    history = engine.fit(cfg)
    out = engine.run_dir(cfg)
    assert list(history["epoch"]) == [1, 2]
    assert {"loss_id", "loss_triplet", "loss_complementary", "loss_total", "acc", "lr", "val_r1"} <= set(history)
    views = history[["acc_visible", "acc_visible_aug", "acc_thermal", "acc_thermal_aug"]]
    assert views.mean(axis=1).to_numpy() == pytest.approx(history["acc"].to_numpy())   # four views of one size
    assert (out / "history.csv").is_file() and (out / "config.json").is_file()
    assert json.loads((out / "config.json").read_text())["preset"] == "tiny"
    best = load_checkpoint(out / "checkpoints" / "best.pt")["best"]
    assert best["selected_on"] == "val" and 0.0 <= best["r1"] <= 1.0
    assert best["r1"] == history["val_r1"].max()
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 2
    # the fit on clean training images: the split fit trained on, every image counted once
    fit = engine.training_fit(out / "checkpoints" / "last.pt", device="cpu")
    split, _ = engine.training_split(cfg, prepare_data(cfg))
    nv, ni = len(split.visible), len(split.infrared)
    assert fit["fit_all"] == pytest.approx((fit["fit_visible"] * nv + fit["fit_infrared"] * ni) / (nv + ni))
    assert all(0 <= v <= 100 for v in fit.values())


def test_fit_accuracy_counts_the_identities_the_classifier_names(cache_dir, tmp_path):
    """Per modality, over several batches, each image's named identity against its own label."""
    from djanet.data import ImageDataset
    from djanet.evaluate import fit_accuracy

    cfg = tiny(cache_dir, tmp_path)
    split, _ = read_train("sysu", prepare_data(cfg))

    def named(images):   # an identity read off each image's pixels: batching must not change it
        return (images.float().mean(dim=(1, 2, 3)) * 1e4).long() % split.num_classes

    class NamesFromPixels:
        def classify(self, images, modality):
            return torch.nn.functional.one_hot(named(images), split.num_classes).float()

    class NamesLabelZero:
        def classify(self, images, modality):
            return torch.nn.functional.one_hot(torch.zeros(len(images), dtype=torch.long), split.num_classes).float()

    shares = fit_accuracy(NamesFromPixels(), split, cfg.data.img_size, batch_size=5)
    zero = fit_accuracy(NamesLabelZero(), split, cfg.data.img_size, batch_size=5)
    for images in (split.visible, split.infrared):
        data = ImageDataset(images, cfg.data.img_size)
        one_by_one = [int(named(data[i][0][None])[0]) for i in range(len(images))]
        assert shares[images.modality] == pytest.approx(float((one_by_one == images.labels).mean()))
        assert 0 < (images.labels == 0).mean() < 1 and zero[images.modality] == pytest.approx((images.labels == 0).mean())


@pytest.mark.slow
def test_selecting_on_the_test_set_is_labelled_as_peeking(cache_dir, tmp_path, capsys):
    cfg = tiny(cache_dir, tmp_path, epochs=1, select_on="test")
    history = engine.fit(cfg)
    assert "test_peek_r1" in history and "val_r1" not in history
    assert load_checkpoint(engine.run_dir(cfg) / "checkpoints" / "best.pt")["best"]["selected_on"] == "test (peeking)"
    assert "peeking" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_after_an_epoch_gives_identical_weights(cache_dir, tmp_path):
    full = tiny(cache_dir, tmp_path, epochs=3, run_name="full")
    engine.fit(full)
    part = tiny(cache_dir, tmp_path, epochs=1, run_name="part")
    engine.fit(part)
    resumed = tiny(cache_dir, tmp_path, epochs=3, run_name="part")
    engine.fit(resumed, resume=engine.run_dir(part) / "checkpoints" / "last.pt")
    a = _weights(engine.run_dir(full) / "checkpoints" / "last.pt")
    b = _weights(engine.run_dir(resumed) / "checkpoints" / "last.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_ctrl_c_mid_epoch_saves_a_checkpoint_that_resumes_exactly(cache_dir, tmp_path, monkeypatch):
    full = tiny(cache_dir, tmp_path, epochs=2, run_name="full")
    engine.fit(full)
    real_step, calls = engine.train_step, {"n": 0}

    def interrupt_on_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # epoch 2, second step: one step of the epoch is done
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    cut = tiny(cache_dir, tmp_path, epochs=2, run_name="cut")
    monkeypatch.setattr(engine, "train_step", interrupt_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        engine.fit(cut)
    monkeypatch.setattr(engine, "train_step", real_step)
    saved = load_checkpoint(engine.run_dir(cut) / "checkpoints" / "interrupted.pt")
    assert (saved["epoch"], saved["step"]) == (1, 1)
    run = engine.fit_or_load(cut)
    a, b = _weights(engine.run_dir(full) / "checkpoints" / "last.pt"), _weights(run.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_atomic_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_torch_save({"model": {"w": torch.ones(3)}, "config": {}}, path)

    def broken_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"model": {"w": torch.zeros(3)}, "config": {}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.slow
def test_nan_loss_stops_naming_step_and_term(cache_dir, tmp_path, monkeypatch):
    cfg = tiny(cache_dir, tmp_path, epochs=2)
    real_call, calls = DJANetLoss.forward, {"n": 0}

    def nan_on_third(self, out, labels, epoch=None):
        losses = real_call(self, out, labels, epoch)
        calls["n"] += 1
        if calls["n"] == 3:
            losses["triplet"] = losses["triplet"] * float("nan")
        return losses

    monkeypatch.setattr(DJANetLoss, "forward", nan_on_third)
    with pytest.raises(engine.NonFiniteLossError, match=r"epoch 2, step 1: triplet=nan"):
        engine.fit(cfg)
    assert load_checkpoint(engine.run_dir(cfg) / "checkpoints" / "last.pt")["epoch"] == 1


@pytest.mark.slow
def test_a_finished_run_of_another_configuration_is_not_loaded_as_this_ones(cache_dir, tmp_path, capsys):
    """A preset that changed since a run finished (same run name) must not get the old model back."""
    cfg = tiny(cache_dir, tmp_path, epochs=1)
    engine.fit(cfg)
    assert engine.fit_or_load(cfg).history.shape[0] == 1              # the same configuration: loaded
    changed = tiny(cache_dir, tmp_path, epochs=1, **{"model.attn_heads": 2})
    assert engine.run_dir(changed) == engine.run_dir(cfg)
    with pytest.raises(RunExistsError, match=r"another configuration \(model\.attn_heads: run 4 vs now 2\)"):
        engine.fit_or_load(changed)
    assert load_checkpoint(engine.run_dir(cfg) / "checkpoints" / "last.pt")["config"]["model"]["attn_heads"] == 4
    capsys.readouterr()


@pytest.mark.slow
def test_a_run_of_other_data_is_neither_reused_nor_continued(cache_dir, tmp_path, capsys):
    """After the generator changes (or data_root points elsewhere) a finished run is not loaded as if
    it had been trained on the new data, and a half-done one is not continued on it."""
    cfg = tiny(cache_dir, tmp_path, epochs=1)
    engine.fit(cfg)
    last = engine.run_dir(cfg) / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(last)
    assert ckpt["data"] == prepare_data(cfg).name and ckpt["data"].startswith("sysu-")
    assert engine.fit_or_load(cfg).history.shape[0] == 1          # same data: reused as it is
    for name in ("last.pt", "best.pt"):
        stale = load_checkpoint(last.parent / name)
        stale["data"] = "sysu-ids40-s0-64x32-g1"
        torch.save(stale, last.parent / name)
    with pytest.raises(RunExistsError, match="trained on data 'sysu-ids40-s0-64x32-g1'.*generator"):
        engine.fit_or_load(cfg)
    longer = tiny(cache_dir, tmp_path, epochs=2)
    with pytest.raises(RunExistsError, match="sysu-ids40-s0-64x32-g1"):
        engine.fit(longer, resume=last)
    capsys.readouterr()
    assert cli_main(["train", "--preset", "tiny", "--cache-dir", cache_dir, "--out-dir", str(tmp_path),
                     "--gpu", "cpu", "--epochs", "1", "--no-eval"]) != 0                 # the CLI too
    printed = capsys.readouterr()
    assert "trained on data 'sysu-ids40-s0-64x32-g1'" in printed.err and "is finished" not in printed.out


@pytest.mark.slow
def test_resume_from_another_architecture_says_what_differs(cache_dir, tmp_path):
    cfg = tiny(cache_dir, tmp_path, epochs=1)
    engine.fit(cfg)
    other = tiny(cache_dir, tmp_path, epochs=1, arch="resnet34", run_name="other")
    with pytest.raises(ValueError, match="model.arch: checkpoint 'resnet18' vs requested 'resnet34'"):
        engine.fit(other, resume=engine.run_dir(cfg) / "checkpoints" / "last.pt")


def test_missing_data_root_is_named(tmp_path):
    cfg = tiny(str(tmp_path), tmp_path, data_root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        prepare_data(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["sysu", "regdb", "llcm"])
def test_cli_train_then_test_end_to_end(dataset, cache_dir, tmp_path, capsys):
    args = ["--dataset", dataset, "--preset", "tiny", "--out-dir", str(tmp_path), "--cache-dir", cache_dir,
            "--gpu", "cpu", "--run-name", "cli"]
    assert cli_main(["train", *args]) == 0
    ckpt = tmp_path / "cli" / "checkpoints" / "last.pt"
    metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    expected = {"sysu": {"i2v/pool", "i2v/bn"}, "regdb": {"v2t/pool", "v2t/bn", "t2v/pool", "t2v/bn"},
                "llcm": {"i2v/pool", "i2v/bn", "v2i/pool", "v2i/bn"}}[dataset]
    assert set(metrics["results"]) == expected
    assert cli_main(["test", *args, "--resume", str(ckpt)]) == 0
    printed = capsys.readouterr().out
    assert "checkpoints:" in printed and "mAP" in printed


@pytest.mark.slow
def test_ddp_two_cpu_processes_follow_the_single_process_curve(cache_dir, tmp_path):
    """torchrun, gloo, 2 ranks x 4 identities vs 1 process x 8 identities: the same global batch."""
    common = ["--preset", "tiny", "--cache-dir", cache_dir, "--gpu", "cpu", "--out-dir", str(tmp_path),
              "--epochs", "4", "--max-steps", "6", "--no-eval", "--seed", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                    "29533", "-m", "djanet", "train", *common, "--run-name", "ddp", "--batch-size", "4"],
                   check=True, env=env, timeout=600)
    assert cli_main(["train", *common, "--run-name", "single", "--batch-size", "8"]) == 0
    ddp = json.loads((tmp_path / "ddp" / "history.json").read_text())
    single = json.loads((tmp_path / "single" / "history.json").read_text())
    assert len(ddp) == len(single) == 4
    for a, b in zip(ddp, single):
        assert a["loss_total"] == pytest.approx(b["loss_total"], rel=0.15)
        assert a["loss_id"] == pytest.approx(b["loss_id"], rel=0.05)
    # Both learn: the triplet loss falls by more than 5% over the four epochs in each run.
    for h in (ddp, single):
        assert h[-1]["loss_triplet"] < 0.95 * h[0]["loss_triplet"], [r["loss_triplet"] for r in h]


def torchrun_probe(tmp_path, port: int) -> str:
    """What `djanet.distributed.setup()` joins under `torchrun --nproc_per_node 1`, as printed."""
    probe = tmp_path / "probe.py"
    probe.write_text("import torch.distributed as d, djanet.distributed as w\ng = w.setup()\n"
                     "print('backend', d.get_backend(), g.device, g.size)\ng.cleanup()\n")
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", str(port)]
    return subprocess.run([*run, str(probe)], check=True, capture_output=True, text=True,
                          timeout=300, env=os.environ).stdout


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CUDA test checks NCCL instead")
def test_torchrun_with_one_process_still_joins_a_group(tmp_path):
    assert "backend gloo cpu 1" in torchrun_probe(tmp_path, 29546)


@pytest.mark.slow
def test_training_from_the_memory_mapped_cache(cache_dir, tmp_path):
    cfg = tiny(cache_dir, tmp_path, epochs=1, use_cache=True, run_name="cached")
    history = engine.fit(cfg)
    assert len(history) == 1 and history["loss_total"].notna().all()
    assert list(Path(cache_dir).glob("arrays/*/visible.npy")), "the array cache was not built"


@pytest.mark.slow
def test_regdb_trials_train_one_model_per_trial_and_combine(cache_dir, tmp_path):
    cfg = tiny(cache_dir, tmp_path, dataset="regdb", epochs=1)
    results = engine.regdb_all_trials(cfg, trials=(1, 2))
    assert set(results) == {"v2t/pool", "v2t/bn", "t2v/pool", "t2v/bn"}
    assert len(results["v2t/bn"].rows) == 2            # one row per trial, mean and std over them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regdb-tiny-djanet-trial1", "regdb-tiny-djanet-trial2"]
