"""The command line as a user meets it: the seed's test commands on any checkpoint, one-line
errors with exit status 2, and re-runs that never destroy a run."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from djanet import train as engine
from djanet.checkpoint import atomic_torch_save, load_checkpoint
from djanet.cli import build_parser, config_from_args
from djanet.cli import main as cli_main
from djanet.config import get_config, to_dict
from djanet.runs import RunExistsError

ROOT = Path(__file__).resolve().parents[1]

# README section 4 of the official repository, verbatim ('model_path' is replaced by a checkpoint).
SEED_TEST_COMMANDS = {
    "sysu": ["python test.py --dataset 'sysu' --mode 'all' --resume 'model_path'  --gpu 0",
             "python test.py --dataset 'sysu' --mode 'indoor' --resume 'model_path'  --gpu 0"],
    "regdb": ["python test.py --dataset 'regdb' --resume 'model_path'  --tvsearch True --gpu 0"],
    "llcm": ["python test.py --dataset 'llcm' --resume 'model_path'  --gpu 0"],
}


def seed_argv(command: str, checkpoint: Path) -> list[str]:
    """`python test.py ARGS` -> our `test ARGS`, the checkpoint path in place of 'model_path'."""
    words = shlex.split(command)
    assert words[:2] == ["python", "test.py"]
    return ["test", *[str(checkpoint) if w == "model_path" else w for w in words[2:]]]


def fake_checkpoint(path: Path, cfg, epoch: int = 1, step: int = 0, history=None) -> Path:
    """A checkpoint carrying `cfg`, without weights: enough for every check made before loading them."""
    history = history if history is not None else [{"epoch": e + 1, "loss_total": 1.0} for e in range(epoch)]
    atomic_torch_save({"model": {}, "config": to_dict(cfg), "num_classes": 4, "epoch": epoch, "step": step,
                       "history": history, "best": {"epoch": None, "r1": -1.0}}, path)
    return path


def tiny_args(tmp_path, *extra):
    return ["--preset", "tiny", "--gpu", "cpu", "--out-dir", str(tmp_path / "runs"),
            "--cache-dir", str(tmp_path / "cache"), *extra]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("djanet: error: "), err
    assert not any("Traceback" in line for line in err), err
    return err[-1]


# ----------------------------------------------------------------------------- test from the checkpoint
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """One tiny checkpoint per dataset, trained by the command line with the default run names."""
    tmp = tmp_path_factory.mktemp("seed")
    out = {}
    for dataset in SEED_TEST_COMMANDS:
        assert cli_main(["train", "--dataset", dataset, *tiny_args(tmp, "--epochs", "1", "--no-eval")]) == 0
        out[dataset] = next((tmp / "runs").glob(f"{dataset}-tiny-*/checkpoints/best.pt"))
    return out


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:--gpu 0 asked for CUDA")
@pytest.mark.parametrize("dataset", list(SEED_TEST_COMMANDS))
def test_the_seeds_exact_test_commands_run_on_tiny_checkpoints(dataset, tiny_runs, capsys):
    """No --preset, no --cache-dir: everything but the test choices comes from the checkpoint."""
    expected = {"sysu": ["i2v/pool", "i2v/bn"], "regdb": ["t2v/pool", "t2v/bn"],
                "llcm": ["i2v/pool", "i2v/bn", "v2i/pool", "v2i/bn"]}[dataset]
    for command in SEED_TEST_COMMANDS[dataset]:
        assert cli_main(seed_argv(command, tiny_runs[dataset])) == 0
        printed = capsys.readouterr().out
        assert [line.strip("= ") for line in printed.splitlines() if line.startswith("== ")] == expected
        metrics = json.loads((tiny_runs[dataset].parents[1] / "metrics.json").read_text())
        assert metrics["mode"] == ("indoor" if "indoor" in command else "all")
        bn = metrics["results"][expected[-1]]
        assert len(bn["rows"]) == (1 if dataset == "regdb" else 2)   # the tiny preset's 2 gallery trials
        assert 0.0 <= bn["mean"]["mAP"] <= 1.0


def test_test_refuses_a_preset_that_disagrees_with_the_checkpoint(tmp_path, capsys):
    ckpt = fake_checkpoint(tmp_path / "best.pt", get_config("tiny"))
    assert cli_main(["test", "--dataset", "sysu", "--resume", str(ckpt), "--preset", "paper"]) == 2
    line = error_line(capsys)
    assert "model.arch: checkpoint 'resnet18' vs --preset paper 'resnet50'" in line
    assert "data.img_size: checkpoint (64, 32) vs --preset paper (384, 192)" in line


@pytest.mark.parametrize("flag, value, named", [("--arch", "resnet50", "--arch 'resnet50' vs the checkpoint's "
                                                 "model.arch='resnet18'"),
                                                ("--img_h", "288", "--img_h 288 vs the checkpoint's "
                                                 "data.img_size[0]=64")])
def test_test_refuses_model_options_that_disagree(tmp_path, capsys, flag, value, named):
    ckpt = fake_checkpoint(tmp_path / "best.pt", get_config("tiny"))
    assert cli_main(["test", "--resume", str(ckpt), flag, value]) == 2
    assert named in error_line(capsys)


def test_test_choices_apply_on_top_of_the_checkpoint_config(tmp_path):
    from djanet.cli import config_for_test_from_args
    saved = get_config("tiny", **{"data.cache_dir": str(tmp_path / "c"), "data.workers": 0})
    ckpt = fake_checkpoint(tmp_path / "best.pt", saved)
    args = build_parser().parse_args(["test", "--resume", str(ckpt), "--dataset", "regdb", "--trial", "3",
                                      "--trials", "5", "--gpu", "cpu", "--preset", "tiny"])
    cfg = config_for_test_from_args(args)
    assert (cfg.data.dataset, cfg.data.trial, cfg.eval_trials, cfg.device) == ("regdb", 3, 5, "cpu")
    assert cfg.model == saved.model and cfg.data.img_size == saved.data.img_size
    assert cfg.data.cache_dir == saved.data.cache_dir and cfg.preset == "tiny"


def test_evaluate_refuses_a_config_whose_model_differs(tmp_path):
    from djanet.evaluate import evaluate
    from djanet.model import DJANet
    cfg = get_config("tiny", device="cpu", cache_dir=str(tmp_path / "cache"))
    model = DJANet.from_config(cfg.model, 4, cfg.data.img_size)
    atomic_torch_save({"model": model.state_dict(), "config": to_dict(cfg), "num_classes": 4}, tmp_path / "m.pt")
    other = get_config("tiny", device="cpu", img_size=(96, 48))
    with pytest.raises(ValueError, match=r"data.img_size: checkpoint \(64, 32\) vs requested \(96, 48\)"):
        evaluate(other, tmp_path / "m.pt")


# ----------------------------------------------------------------------------- one-line errors
@pytest.mark.parametrize("case", ["missing checkpoint", "unreadable checkpoint", "not a djanet checkpoint",
                                  "missing data root", "wrong layout", "regdb trial", "missing translated root",
                                  "resume another architecture"])
def test_expected_errors_are_one_line_with_status_2(case, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    other_arch = fake_checkpoint(tmp_path / "r34.pt", get_config("tiny", arch="resnet34"))
    empty = tmp_path / "empty"
    empty.mkdir()
    argv, named = {
        "missing checkpoint": (["test", "--resume", str(tmp_path / "none.pt")], "checkpoint not found"),
        "unreadable checkpoint": (["test", "--resume", str(bad)], f"cannot read checkpoint {bad}"),
        "not a djanet checkpoint": (["test", "--resume", str(foreign)], "is not a djanet checkpoint"),
        "resume another architecture": (["train", *tiny_args(tmp_path, "--resume", str(other_arch))],
                                        "model.arch: checkpoint 'resnet34' vs requested 'resnet18'"),
        "missing data root": (["train", *tiny_args(tmp_path, "--data-root", str(tmp_path / "nowhere"))],
                              "nowhere does not exist"),
        "wrong layout": (["train", *tiny_args(tmp_path, "--data-root", str(empty))], str(empty)),
        "regdb trial": (["train", "--dataset", "regdb", *tiny_args(tmp_path, "--trial", "11")],
                        "RegDB trials are 1..10"),
        "missing translated root": (["train", *tiny_args(tmp_path, "--translated-root", str(tmp_path / "tr"))],
                                    "translated_root"),
    }[case]
    assert cli_main(argv) == 2
    assert named in error_line(capsys)


def test_rerank_options_without_rerank_are_refused(tmp_path, capsys):
    ckpt = fake_checkpoint(tmp_path / "best.pt", get_config("tiny"))
    assert cli_main(["test", "--resume", str(ckpt), "--k1", "10"]) == 2
    assert "add --rerank" in error_line(capsys)
    assert cli_main(["test", "--resume", str(ckpt), "--rerank", "--lambda", "2"]) == 2
    assert "lambda=2.0; expected a value in [0, 1]" in error_line(capsys)
    assert cli_main(["test", "--resume", str(ckpt), "--rerank-convention", "paper"]) == 2
    assert "add --rerank" in error_line(capsys)


def test_rerank_convention_reaches_the_config():
    from djanet.cli import _rerank_from_args, build_parser
    args = build_parser().parse_args(["test", "--resume", "x.pt", "--rerank", "--rerank-convention", "paper"])
    assert _rerank_from_args(args).convention == "paper"
    args = build_parser().parse_args(["test", "--resume", "x.pt", "--rerank"])
    assert _rerank_from_args(args).convention == "released"


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        cli_main(["test", "--resume", str(tmp_path / "none.pt"), "--debug"])


def test_unexpected_errors_keep_their_traceback(tmp_path, monkeypatch):
    """A ValueError raised outside djanet's own checks is a bug to see, not a message to print."""
    ckpt = fake_checkpoint(tmp_path / "best.pt", get_config("tiny"))
    import djanet.evaluate

    def broken(*args, **kwargs):
        return int("not a number")          # ValueError raised by Python, not by a djanet check

    monkeypatch.setattr(djanet.evaluate, "evaluate", broken)
    with pytest.raises(ValueError, match="invalid literal"):
        cli_main(["test", "--resume", str(ckpt), "--gpu", "cpu"])


@pytest.mark.slow
def test_the_command_line_prints_one_line_and_exits_2(tmp_path):
    run = subprocess.run([sys.executable, "-m", "djanet", "test", "--resume", str(tmp_path / "none.pt")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [f"djanet: error: checkpoint not found: {tmp_path / 'none.pt'} "
                                               "(expected a .pt file written by djanet)"]


# ----------------------------------------------------------------------------- re-runs
def _train_cfg(tmp_path, *extra):
    return config_from_args(build_parser().parse_args(["train", *tiny_args(tmp_path, *extra)]))


def test_a_rerun_with_other_options_is_refused_naming_folder_and_flags(tmp_path, capsys):
    cfg = _train_cfg(tmp_path)
    ckpt_dir = engine.run_dir(cfg) / "checkpoints"
    fake_checkpoint(ckpt_dir / "last.pt", cfg, epoch=1)
    before = (ckpt_dir / "last.pt").read_bytes()
    assert cli_main(["train", *tiny_args(tmp_path, "--lr", "0.5", "--no-eval")]) == 2
    line = error_line(capsys)
    assert str(engine.run_dir(cfg)) in line and "optim.lr: run 0.01 vs now 0.5" in line
    assert "--resume" in line and "--overwrite" in line
    assert (ckpt_dir / "last.pt").read_bytes() == before


def test_a_finished_run_is_not_retrained(tmp_path, capsys):
    cfg = _train_cfg(tmp_path)
    ckpt_dir = engine.run_dir(cfg) / "checkpoints"
    fake_checkpoint(ckpt_dir / "last.pt", cfg, epoch=cfg.optim.epochs)
    before = (ckpt_dir / "last.pt").stat().st_mtime_ns
    assert cli_main(["train", *tiny_args(tmp_path, "--no-eval")]) == 0
    assert "is finished" in capsys.readouterr().out
    assert (ckpt_dir / "last.pt").stat().st_mtime_ns == before
    assert len(json.loads((engine.run_dir(cfg) / "history.json").read_text())) == cfg.optim.epochs


def test_fit_refuses_a_folder_with_checkpoints_unless_told(tmp_path):
    cfg = _train_cfg(tmp_path)
    fake_checkpoint(engine.run_dir(cfg) / "checkpoints" / "last.pt", cfg, epoch=1)
    with pytest.raises(RunExistsError, match="already holds checkpoints"):
        engine.fit(cfg)


@pytest.mark.slow
def test_overwrite_starts_over_and_removes_the_old_run(tmp_path):
    cfg = _train_cfg(tmp_path, "--epochs", "1")
    ckpt_dir = engine.run_dir(cfg) / "checkpoints"
    fake_checkpoint(ckpt_dir / "interrupted.pt", cfg, epoch=0, step=1)
    (ckpt_dir / ".last.pt.stale.tmp").write_bytes(b"half a checkpoint")
    assert cli_main(["train", *tiny_args(tmp_path, "--epochs", "1", "--overwrite", "--no-eval")]) == 0
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["best.pt", "last.pt"]
    assert load_checkpoint(ckpt_dir / "last.pt")["epoch"] == 1


KILLER = """\
import os, signal, sys
from pathlib import Path

import djanet.checkpoint as ckpt
import djanet.train as engine
from djanet.cli import main

where, name, number = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = {"steps": 0, "epoch": None}
real_save, real_replace, real_step = ckpt.torch.save, ckpt.os.replace, engine.train_step


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def save(obj, f, *args, **kwargs):
    seen["epoch"] = obj.get("epoch") if isinstance(obj, dict) else None
    real_save(obj, f, *args, **kwargs)
    if where == "writing" and Path(f).name.startswith(f".{name}.") and seen["epoch"] == number:
        die()                       # the temporary file is complete, the rename has not happened


def replace(src, dst):
    real_replace(src, dst)
    if where == "written" and Path(dst).name == name and seen["epoch"] == number:
        die()                       # the checkpoint is in place, nothing after it has run


def step(*args, **kwargs):
    seen["steps"] += 1
    if where == "step" and seen["steps"] == number:
        die()                       # number - 1 optimisation steps done in this process
    return real_step(*args, **kwargs)


ckpt.torch.save, ckpt.os.replace, engine.train_step = save, replace, step
sys.exit(main(sys.argv[4:]))
"""


@pytest.mark.slow
def test_sigkill_at_any_moment_then_rerun_never_loses_work(tmp_path):
    """Kill the same training command (SIGKILL) mid-epoch, inside and after checkpoint writes and
    between best.pt and last.pt, re-run it each time: no checkpoint is ever corrupt or older than
    before, and the finished run equals an uninterrupted one bit for bit (CPU)."""
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    common = tiny_args(tmp_path, "--epochs", "3", "--no-eval", "--seed", "3")

    def train(run_name, where="none", name="-", number=0):
        return subprocess.run([sys.executable, str(killer), where, name, str(number), "train", *common,
                               "--run-name", run_name], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)

    assert train("whole").returncode == 0
    ckpt_dir = tmp_path / "runs" / "killed" / "checkpoints"
    # The tiny preset runs 2 steps per epoch; every epoch writes last.pt, and best.pt before it
    # when validation improves (always in epoch 1).
    kills = [("writing", "best.pt", 1),    # inside the first checkpoint write, nothing saved yet
             ("written", "best.pt", 1),    # between best.pt and last.pt
             ("step", "-", 2),             # mid-epoch 2
             ("written", "last.pt", 2),    # at the epoch boundary, before the logs
             ("writing", "last.pt", 3)]    # inside the final write
    seen: dict[str, tuple[int, int]] = {}
    for where, name, number in kills:
        before = max(seen.values(), default=None)
        run = train("killed", where, name, number)
        assert run.returncode == -9, (where, name, number, run.stdout, run.stderr)
        if before is not None:
            assert "continuing from" in run.stdout, run.stdout
        for path in ckpt_dir.glob("*.pt"):
            ckpt = load_checkpoint(path)                      # never corrupt
            now = (ckpt["epoch"], ckpt["step"])
            assert now >= seen.get(path.name, (0, 0)), (where, name, number, path.name, now, seen)
            seen[path.name] = now
    assert seen, "no kill left a checkpoint"
    final = train("killed")
    assert final.returncode == 0, final.stderr
    assert "continuing from" in final.stdout or "is finished" in final.stdout
    for name in ("last.pt", "best.pt"):
        a = load_checkpoint(tmp_path / "runs" / "whole" / "checkpoints" / name)
        b = load_checkpoint(ckpt_dir / name)
        assert a["epoch"] == b["epoch"] and a["best"] == b["best"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), name
    drop_time = lambda h: [{k: v for k, v in row.items() if k != "time_s"} for row in h]   # noqa: E731
    whole = json.loads((tmp_path / "runs" / "whole" / "history.json").read_text())
    assert drop_time(json.loads((ckpt_dir.parent / "history.json").read_text())) == drop_time(whole)
    assert not list(ckpt_dir.glob(".*.tmp"))
    again = train("killed")
    assert again.returncode == 0 and "is finished" in again.stdout


def test_fit_or_load_finishes_a_run_killed_between_the_final_best_and_last(tmp_path):
    """best.pt is written before last.pt: a kill between them leaves the finished state in best.pt only."""
    cfg = _train_cfg(tmp_path)
    ckpt_dir = engine.run_dir(cfg) / "checkpoints"
    fake_checkpoint(ckpt_dir / "last.pt", cfg, epoch=cfg.optim.epochs - 1)
    fake_checkpoint(ckpt_dir / "best.pt", cfg, epoch=cfg.optim.epochs)
    run = engine.fit_or_load(cfg)                              # no training: the run is finished
    assert load_checkpoint(run.checkpoint)["epoch"] == cfg.optim.epochs
    assert len(run.history) == cfg.optim.epochs
