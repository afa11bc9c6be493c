"""The benchmark scripts' CPU code paths at tiny size, and gpu_check's refusal without CUDA.

The GPU numbers themselves come from `make gpu-check` on a GPU machine (benchmarks/gpu_check.py).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from djanet.config import get_config
from djanet.data import read_train

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_model():
    return _script("bench_model")


@pytest.fixture(scope="module")
def tiny_model_report(bench_model, tmp_path_factory):
    """bench_model at 64x32 on the CPU: eager, a traced compile of the align module, CUDA graphs."""
    path = tmp_path_factory.mktemp("bench") / "model.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bench_model.main(["--tiny", "--batch", "1", "--repeats", "1", "--device", "cpu", "--no-scan",
                          "--treatments", "eager", "compile-align", "cuda-graph",
                          "--compile-backend", "eager", "--scan-backends", "auto", "adjoint", "--json", str(path),
                          "--profile"])
    finally:
        torch.set_num_threads(threads)
        torch._dynamo.reset()                # leave no compiled code behind for other tests
    return json.loads(path.read_text())


@pytest.mark.slow
def test_bench_model_times_each_treatment_for_both_models_and_counts_flops(tiny_model_report):
    r = tiny_model_report
    assert r["device"] == "cpu" and r["img_size"] == [64, 32] and r["images_per_step"] == 4
    flops = r["gflops_per_image"]
    assert flops["DJANet"] > flops["AGW"] > 0          # the align module adds arithmetic
    for t in ("eager", "compile-align"):
        res = r["treatments"][t]
        assert res["AGW"]["ms"] > 0 and res["DJANet (auto scan)"]["ms"] > 0, res
    assert r["treatments"]["compile-align"]["DJANet (auto scan)"]["first_s"] > 0
    graphs = r["treatments"]["cuda-graph"]
    assert all(v == {"skipped": "CUDA graphs need CUDA"} for v in graphs.values()), graphs


def test_treatments_parse_and_name_the_valid_ones(bench_model):
    t = bench_model.parse_treatment("channels_last+bf16+compile")
    assert t.channels_last and t.bf16 and t.compile == "model" and t.compile_mode is None
    assert bench_model.parse_treatment("reduce-overhead").compile_mode == "reduce-overhead"
    with pytest.raises(ValueError, match="unknown treatment 'fp8'.*channels_last"):
        bench_model.parse_treatment("bf16+fp8")
    with pytest.raises(ValueError, match="cuda-graph captures the eager model"):
        bench_model.parse_treatment("compile+cuda-graph")
    cpu = torch.device("cpu")
    assert bench_model.unsupported(t, cpu, positions=288, fused_scan=False).startswith("torch.compile would unroll")
    assert bench_model.unsupported(t, cpu, positions=8, fused_scan=False) is None


def _tiny_training_split(sysu_root, tmp_path):
    """The tiny preset on the synthetic SYSU-MM01 and the training split it reads (validation held out)."""
    cfg = get_config("tiny", data_root=str(sysu_root), cache_dir=str(tmp_path), device="cpu")
    split, _ = read_train("sysu", sysu_root, holdout=True, val_fraction=cfg.data.val_fraction, seed=0)
    return cfg, split


@pytest.mark.filterwarnings("ignore:This DataLoader will create 64 worker processes")
def test_loader_is_timed_as_training_builds_it_and_judged_against_the_model(sysu_root, tmp_path):
    bench_train = _script("bench_train")
    cfg, split = _tiny_training_split(sysu_root, tmp_path)
    rows = bench_train.loader_vs_model(split, cfg, model_s=1e6, images_per_step=32, workers=[0],
                                       caches=[True, False], batches=2)
    assert [(r["workers"], r["cache"]) for r in rows] == [(0, True), (0, False)]
    assert all(r["verdict"] == "loader keeps up" and r["images_per_s"] > 0 for r in rows)
    slow_model = bench_train.loader_vs_model(split, cfg, 1e-9, 32, [0], [False], 1)[0]
    assert slow_model["verdict"] == "loader starves the model"
    with pytest.raises(ValueError, match="too short to time 64 workers"):
        bench_train.time_loader(split, get_config("tiny", data_root=str(sysu_root), workers=64), 2)


def test_a_step_is_split_into_its_phases_and_its_flops_counted(sysu_root, tmp_path):
    from torch.utils.flop_counter import FlopCounterMode

    from djanet.data import IdentitySampler
    bench_train = _script("bench_train")

    cfg, split = _tiny_training_split(sysu_root, tmp_path)
    pairs = list(IdentitySampler(split.visible.labels, split.infrared.labels, 4, 2, seed=0))[:8]
    eager = bench_train.step_phases(split, cfg, pairs, 1, torch.device("cpu"))
    last = bench_train.step_phases(split, cfg, pairs, 1, torch.device("cpu"), "channels_last")
    assert eager["treatment"] == "eager" and last["treatment"] == "channels_last"
    for r in (eager, last):
        phases = [r[k] for k in ("data_s", "forward_s", "backward_s", "optimizer_s")]
        assert all(p > 0 for p in phases) and r["step_s"] == pytest.approx(sum(phases))
    assert eager["flops"] == last["flops"] > 0          # the same arithmetic in another memory layout
    with FlopCounterMode(display=False) as counter:
        torch.randn(64, 32) @ torch.randn(32, 16)
    assert counter.get_total_flops() == 2 * 64 * 32 * 16   # the counter's convention: 2 per multiply-add
    assert bench_train.matmul_peak(n=128, repeats=2) > 0


def test_each_feature_level_part_is_timed_in_turn(sysu_root, tmp_path, capsys):
    from djanet.data import FourViewDataset, IdentitySampler
    bench_train = _script("bench_train")

    cfg, split = _tiny_training_split(sysu_root, tmp_path)
    pairs = list(IdentitySampler(split.visible.labels, split.infrared.labels, 4, 2, seed=0))[:8]
    ds = FourViewDataset(split, cfg.data.img_size)
    batch = torch.utils.data.default_collate([ds[p] for p in pairs])
    rows = bench_train.time_parts(split, cfg, batch, 2, torch.device("cpu"))
    assert [r["variant"] for r in rows] == ["agw", "stems", "stems-align", "djanet"]
    assert rows[0]["added_s"] is None and all(r["s_per_step"] > 0 for r in rows)
    for before, after in zip(rows, rows[1:]):
        assert after["added_s"] == pytest.approx(after["s_per_step"] - before["s_per_step"])
    assert "AGW + stems + align" in capsys.readouterr().out


def test_the_books_step_tables_put_each_step_beside_its_time_at_the_peak(tmp_path):
    """A report by hand: 100 GFLOP/s peak, AGW 10 GFLOP a step in 0.4 s (eager) and 0.2 s."""
    bench_train = _script("bench_train")

    def row(model, treatment, step_s, speedup):
        return {"model": model, "treatment": treatment, "data_s": 0.1, "forward_s": 0.1, "backward_s": step_s - 0.25,
                "optimizer_s": 0.05, "step_s": step_s, "flops": 10e9 if treatment == "eager" else None,
                "speedup": speedup, "achieved_flops_per_s": 10e9 / step_s, "of_peak": 10e9 / step_s / 100e9}
    report = {"images_per_step": 64, "img_size": [64, 32],
              "breakdown": {"peak_flops_per_s": 100e9, "threads": 2, "cores": 2, "cpu": "Some CPU",
                            "bf16_instructions": False,
                            "rows": [row("AGW", "eager", 0.4, 1.0), row("AGW", "channels_last", 0.2, 2.0)]},
              "parts": [{"variant": "agw", "label": "AGW baseline", "s_per_step": 0.2, "added_s": None},
                        {"variant": "stems", "label": "AGW + stems", "s_per_step": 0.3, "added_s": 0.1}]}
    tables = bench_train.book_tables(report)
    machine = dict(zip(tables["machine.csv"]["quantity"], tables["machine.csv"]["value"]))
    assert machine["float32 matrix product, GFLOP/s"] == "100" and machine["AGW GFLOP per step"] == "10.0"
    assert machine["bfloat16 instructions"] == "no" and machine["images per step"] == "64 at 64x32"
    step = tables["step.csv"].set_index("treatment")
    assert step.loc["eager", "step at peak s"] == step.loc["channels_last", "step at peak s"] == "0.100"
    assert step.loc["eager", "GFLOP/s"] == "25" and step.loc["eager", "of peak"] == "25%"
    assert step.loc["channels_last", "of peak"] == "50%" and step.loc["channels_last", "vs eager"] == "2.00x"
    parts = tables["parts.csv"]
    assert parts["part adds s"].tolist() == ["", "+0.100"] and parts["vs AGW"].tolist() == ["1.00x", "1.50x"]
    bench_train.write_book_tables(report, str(tmp_path / "cpu"))
    assert sorted(p.name for p in (tmp_path / "cpu").iterdir()) == ["machine.csv", "parts.csv", "step.csv"]
    with pytest.raises(SystemExit):
        bench_train.main(["--book", str(tmp_path / "other")])      # refused before anything runs
    assert not (tmp_path / "other").exists()


def test_steps_fed_by_the_loader_are_timed_with_and_without_a_worker(sysu_root, tmp_path):
    bench_train = _script("bench_train")
    cfg, split = _tiny_training_split(sysu_root, tmp_path)
    threads = torch.get_num_threads()
    try:
        for workers in (0, 1):
            assert bench_train.fed_steps(split, cfg, workers, 1, 1, torch.device("cpu")) > 0
        with pytest.raises(ValueError, match=r"^an epoch of \d+ batches is too short for 1000 \+ 3 steps$"):
            bench_train.fed_steps(split, cfg, 0, 1, 1000, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_gpu_check_plan_fits_its_budget_and_the_summary_reads_the_benchmarks(tiny_model_report, tmp_path):
    gpu_check = _script("gpu_check")
    steps = gpu_check.plan(tmp_path, tmp_path / "work")
    assert [s[0] for s in steps] == ["tests", "model", "loader", "demo", "compile"]
    assert sum(s[2] for s in steps) <= 8 * 60
    (tmp_path / "model.json").write_text(json.dumps(tiny_model_report))
    env = {"device": "a card", "torch": torch.__version__, "cuda": None, "mamba_ssm": None, "fused_scan": False}
    status = {"model": {"rc": 0, "timed_out": False, "seconds": 1.0, "timeout": 70},
              "compile": {"rc": -9, "timed_out": True, "seconds": 120.0, "timeout": 120}}
    md = gpu_check.summary_markdown(env, status, tmp_path)
    assert "# gpu-check on a card" in md and "| compile | timed out | 120.0 | 120 |" in md
    assert "| eager |" in md and "CUDA graphs need CUDA" in md and "GFLOPs per image" in md
    assert "| eager, adjoint scan |" in md          # every DJANet scan timed gets its row


def test_gpu_check_step_timeout_ends_the_step(tmp_path):
    gpu_check = _script("gpu_check")
    res = gpu_check.run_step("sleep", [sys.executable, "-c", "import time; time.sleep(30)"], 1, tmp_path)
    assert res["timed_out"] and res["rc"] != 0
    assert "stopped after its timeout" in (tmp_path / "sleep.log").read_text()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_cleanly_without_cuda(tmp_path):
    run = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "gpu-check needs CUDA" in run.stderr and "nothing was run" in run.stderr
    assert not (tmp_path / "out").exists()


def test_bench_learning_reads_overrides_and_reports_twin_free_rank1():
    bench = _script("bench_learning")
    assert bench.parse_sets(["data.grey_remap_p=0.5", "model.arch=resnet18"]) == {
        "data.grey_remap_p": 0.5, "model.arch": "resnet18"}
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        bench.parse_sets(["data.grey_remap_p"])
    import pandas as pd
    frame = pd.DataFrame([
        {"model": "random features", "seed": "-", "r1": 1.0, "mAP": 2.0, "mINP": 1.0, "r1_no_twin": 1.0},
        {"model": "grey pixels", "seed": "-", "r1": 6.0, "mAP": 3.0, "mINP": 1.0, "r1_no_twin": 1.5},
        {"model": "agw", "seed": 0, "r1": 5.0, "mAP": 6.0, "mINP": 2.0, "r1_no_twin": 4.0},
        {"model": "agw", "seed": 1, "r1": 7.0, "mAP": 6.0, "mINP": 2.0, "r1_no_twin": 5.0}])
    out = bench.summarise(frame)
    assert out.loc["agw", "R1 no twin (%)"] == "4.5 ± 0.7"
    assert out.loc["agw", "R1 no twin / pixels"] == "3.00x" and out.loc["agw", "R1 / pixels"] == "1.00x"
    out["train ID acc (%)"] = ["nan", "nan", "96.0 ± 1.0"]
    book = bench.book_table(out)   # what book/results/regdb keeps: the protocol, the checks, the ratios
    assert book.index.name == "features" and list(book.index) == ["random features", "grey pixels", "agw"]
    assert list(book.columns) == ["runs", "R1 (%)", "mAP (%)", "R1 no twin (%)", "train ID acc (%)", "R1 / pixels",
                                  "mAP / pixels", "R1 no twin / pixels"]
    assert book["train ID acc (%)"].tolist() == ["", "", "96.0 ± 1.0"]


def test_mutation_score_counts_killed_over_non_equivalent(tmp_path):
    score = _script("mutation_score")
    meta = tmp_path / "mutants" / "djanet" / "gap.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {"djanet.gap.x_f__mutmut_1": 1, "djanet.gap.x_f__mutmut_2": 0, "djanet.gap.x_f__mutmut_3": 0,
             "djanet.gap.x_f__mutmut_4": 3, "djanet.gap.x_f__mutmut_5": None}
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    (tmp_path / "eq.json").write_text(json.dumps({"djanet.gap.x_f__mutmut_3": "same value"}))
    out = tmp_path / "score.json"
    assert score.main(["--mutants", str(tmp_path / "mutants"), "--equivalent", str(tmp_path / "eq.json"),
                       "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    m = result["modules"]["djanet/gap.py"]
    assert (m["killed"], m["survived"], m["equivalent"], m["other"]) == (2, 2, 1, 1)
    assert result["score"] == pytest.approx(2 / 3)          # killed 2 of 3 non-equivalent
    assert result["unexplained_survivors"] == ["djanet.gap.x_f__mutmut_2"]


def test_mutation_config_copies_every_module_it_does_not_mutate():
    """mutmut copies only what it mutates and what `also_copy` names: a module left out of both is
    missing from the mutants' package, and one named in both is copied back unmutated."""
    import tomllib

    cfg = tomllib.loads((BENCH.parent / "pyproject.toml").read_text())["tool"]["mutmut"]
    mutated, copied = set(cfg["paths_to_mutate"]), set(cfg["also_copy"])
    modules = {str(p.relative_to(BENCH.parent)) for p in (BENCH.parent / "djanet").glob("*.py")}
    assert mutated <= modules and not mutated & copied
    assert modules - mutated <= copied and "djanet/data/" in copied
