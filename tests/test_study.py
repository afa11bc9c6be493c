"""The ablation study: its statistics on known numbers, its variants, and one tiny study end to end."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from djanet import report, stats, study
from djanet.config import agw_baseline, get_config

T_975_2 = 4.302652729911275     # scipy.stats.t.ppf(0.975, 2): three seeds
T_975_1 = 12.706204736174707    # one degree of freedom: two seeds


# --------------------------------------------------------------------------- statistics
def test_paired_interval_of_known_differences():
    ci = stats.paired_interval([1.0, 2.0, 3.0])
    assert ci["n"] == 3 and ci["mean"] == 2.0 and ci["sd"] == 1.0
    assert ci["half_width"] == pytest.approx(T_975_2 / math.sqrt(3)) == pytest.approx(2.4841377)
    assert (ci["low"], ci["high"]) == pytest.approx((2 - 2.4841377, 2 + 2.4841377))
    assert not ci["excludes_zero"]
    shifted = stats.paired_interval([2.0, 3.0, 4.0])
    assert shifted["low"] == pytest.approx(0.5158623) and shifted["excludes_zero"]
    below = stats.paired_interval([-2.0, -3.0, -4.0])
    assert below["high"] == pytest.approx(-0.5158623) and below["excludes_zero"]
    two = stats.paired_interval([1.0, 3.0])
    assert two["half_width"] == pytest.approx(T_975_1 * math.sqrt(2) / math.sqrt(2))
    one = stats.paired_interval([5.0])
    assert one["n"] == 1 and one["mean"] == 5.0 and math.isnan(one["half_width"]) and not one["excludes_zero"]
    assert stats.paired_interval([1.0, 2.0, 3.0], level=0.9)["half_width"] == pytest.approx(2.919986 / math.sqrt(3))
    with pytest.raises(ValueError, match="level=95"):
        stats.paired_interval([1.0, 2.0], level=95)


def test_summary_pairs_each_variant_with_the_baseline_on_the_seeds_both_have():
    frame = pd.DataFrame({
        "variant": ["agw"] * 3 + ["x"] * 4,
        "seed": [0, 1, 2, 0, 1, 2, 3],
        "R1": [10.0, 12.0, 14.0, 11.0, 14.0, 17.0, 50.0],   # x - agw on seeds 0..2: 1, 2, 3
    })
    s = stats.summarise(frame, ["R1"]).set_index("variant")
    assert list(s.columns) == list(stats.SUMMARY_COLUMNS[1:])
    assert s.loc["agw", "mean"] == 12.0 and s.loc["agw", "std"] == 2.0 and s.loc["agw", "n"] == 3
    assert s.loc["agw", "paired_n"] == 0 and math.isnan(s.loc["agw", "diff"])
    assert s.loc["x", "n"] == 4 and s.loc["x", "mean"] == pytest.approx(23.0)
    assert s.loc["x", "std"] == pytest.approx(np.std([11, 14, 17, 50], ddof=1))
    assert s.loc["x", "paired_n"] == 3 and s.loc["x", "diff"] == pytest.approx(2.0)   # seed 3 has no pair
    assert s.loc["x", "half_width"] == pytest.approx(2.4841377)
    assert s.loc["x", "diff_low"] == pytest.approx(-0.4841377) and not s.loc["x", "excludes_zero"]
    with pytest.raises(ValueError, match="variant='agw', seed=0 appears twice"):
        stats.summarise(pd.concat([frame, frame.iloc[:1]]), ["R1"])
    with pytest.raises(KeyError, match="mAP"):
        stats.summarise(frame, ["mAP"])


# --------------------------------------------------------------------------- variants
def test_variants_switch_on_one_part_at_a_time():
    cfg = get_config("tiny")
    agw = study.variant_config(cfg, "agw", 0)
    assert agw.model == agw_baseline(cfg).model and agw.loss == agw_baseline(cfg).loss   # config's own AGW
    switches = {name: study.variant_config(cfg, name, 4, translated_root="copy")
                for name in study.VARIANTS}
    on = {name: (c.model.stems, c.model.align, c.loss.complementary, c.data.channel_aug,
                 c.data.translated_root is not None) for name, c in switches.items()}
    assert on == {"agw": (False, False, False, True, False), "stems": (True, False, False, True, False),
                  "stems-align": (True, True, False, True, False), "djanet": (True, True, True, True, False),
                  "djanet-translated": (True, True, True, True, True),
                  "djanet-nochannel": (True, True, True, False, False)}
    for name, c in switches.items():
        assert c.run_name == f"{name}-seed4" and c.seed == 4 and c.model.non_local
        assert re.fullmatch(r"[a-z0-9-]+", name)     # safe as a folder name anywhere
    with pytest.raises(ValueError, match="translated_root"):
        study.variant_config(cfg, "djanet-translated", 0)
    with pytest.raises(KeyError, match="unknown study variant 'bnneck'; valid variants: agw, stems"):
        study.get_variant("bnneck")


def test_budget_cuts_steps_per_epoch_and_keeps_the_schedule():
    cfg = get_config("cpu-demo")
    cut = study.budget(cfg, 40)
    assert cut.optim == cfg.optim and cut.max_steps_per_epoch == math.ceil(40 / cfg.optim.epochs)
    assert study.budget(cfg, None) is cfg
    tiny = get_config("tiny")                        # 2 epochs x 2 steps: already within 40
    assert study.budget(tiny, 40) is tiny


# --------------------------------------------------------------------------- the text of the page
def _summary(diffs: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"variant": "agw", "label": "AGW", "seed": s, "R1": 10.0} for s in range(3)]
    for name, d in diffs.items():
        rows += [{"variant": name, "label": name.upper(), "seed": s, "R1": 10.0 + v} for s, v in enumerate(d)]
    return study.summary_frame(pd.DataFrame(rows))


def test_sentences_call_a_variant_better_only_when_its_interval_excludes_zero():
    summary = _summary({"up": [2.0, 3.0, 4.0], "flat": [1.0, 2.0, 3.0], "down": [-2.0, -3.0, -4.0], "once": [5.0]})
    text = report.conclusions(summary, metrics=["R1"], baseline="agw")
    assert text == [
        "UP vs AGW, R1: +3.0 points (95% interval 0.5 to 5.5, 3 seeds): the interval excludes zero, so it is "
        "better (higher) than AGW.",
        "FLAT vs AGW, R1: +2.0 points (95% interval -0.5 to 4.5, 3 seeds): the interval includes zero, so these "
        "seeds cannot tell the two apart.",
        "DOWN vs AGW, R1: -3.0 points (95% interval -5.5 to -0.5, 3 seeds): the interval excludes zero, so it is "
        "worse (lower) than AGW.",
        "ONCE vs AGW, R1: +5.0 points from 1 seed: no interval, so no conclusion."]
    width = report.resolution(summary, metrics=["R1"])
    assert width == ["R1: with 3 paired seeds the 95% intervals reach ±2.5 points around the measured "
                     "difference; a true difference smaller than that could not be told from zero."]
    table = report.difference_table(summary, metrics=["R1"])
    assert table.loc["UP", "R1"] == "+3.0 [0.5, 5.5] *" and table.loc["FLAT", "R1"] == "+2.0 [-0.5, 4.5]"
    assert table.loc["ONCE", "R1"] == "+5.0" and table.loc["UP", "seeds"] == 3
    means = report.mean_std_table(summary, metrics=["R1"])
    assert means.loc["AGW", "R1"] == "10.0 ± 0.0" and means.loc["ONCE", "R1"] == "15.0"


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """agw and djanet x seeds 0 and 1 on the tiny preset; runs and results in a fresh folder."""
    tmp = tmp_path_factory.mktemp("study")
    cfg = get_config("tiny", device="cpu", out_dir=str(tmp / "runs"), **{"data.cache_dir": str(tmp / "cache")})
    frame, summary = study.run_study(cfg, variants=["agw", "djanet"], seeds=[0, 1], out=tmp / "results")
    return cfg, tmp, frame, summary


def _checkpoints(runs_dir):
    return {str(p.relative_to(runs_dir)): p.stat().st_mtime_ns for p in sorted(runs_dir.rglob("*.pt"))}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_tiny_study_writes_one_row_per_run_and_its_statistics(tiny_study):
    cfg, tmp, frame, summary = tiny_study
    results = tmp / "results"
    assert sorted(p.name for p in results.iterdir()) == ["provenance.json", "study.csv", "summary.csv"]
    written = pd.read_csv(results / "study.csv")
    assert list(written[["variant", "seed"]].itertuples(index=False, name=None)) == \
        [("agw", 0), ("agw", 1), ("djanet", 0), ("djanet", 1)]
    for col in ("R1", "R10", "mAP", "mINP", "pos_ratio", "modality_acc", "cross_share", "train_s", "version",
                "commit", "label", "run"):
        assert col in written, col
    assert written["run"].tolist() == ["agw-seed0", "agw-seed1", "djanet-seed0", "djanet-seed1"]
    for run in written["run"]:   # one run folder per (variant, seed), trained to the end
        assert (tmp / "runs" / run / "checkpoints" / "best.pt").is_file()
        assert (tmp / "runs" / run / "metrics.json").is_file()
    assert written[["R1", "mAP", "mINP"]].apply(lambda c: c.between(0, 100)).all().all()
    assert (written["train_s"] > 0).all() and (written["epochs"] == cfg.optim.epochs).all()
    assert written["version"].eq("0.1.0").all()
    pd.testing.assert_frame_equal(written, frame, check_dtype=False)

    # summary.csv: the statistics of these very rows
    s = pd.read_csv(results / "summary.csv").set_index(["variant", "metric"])
    for variant in ("agw", "djanet"):
        r1 = written.loc[written["variant"] == variant, "R1"]
        assert s.loc[(variant, "R1"), "mean"] == pytest.approx(r1.mean())
        assert s.loc[(variant, "R1"), "std"] == pytest.approx(r1.std(ddof=1))
    by = {v: written[written["variant"] == v].set_index("seed")["mAP"] for v in ("agw", "djanet")}
    d = (by["djanet"] - by["agw"]).to_numpy()
    row = s.loc[("djanet", "mAP")]
    assert row["paired_n"] == 2 and row["diff"] == pytest.approx(d.mean())
    assert row["half_width"] == pytest.approx(T_975_1 * d.std(ddof=1) / math.sqrt(2))
    assert bool(row["excludes_zero"]) == (row["diff_low"] > 0 or row["diff_high"] < 0)
    assert math.isnan(s.loc[("agw", "mAP"), "diff"])

    prov = json.loads((results / "provenance.json").read_text())
    assert prov["preset"] == "tiny" and prov["dataset"] == "sysu" and prov["seeds"] == [0, 1]
    assert prov["variants"] == ["agw", "djanet"] and prov["djanet"] == "0.1.0" and prov["translator"] is None
    for key in ("command", "commit", "date", "machine", "torch", "config", "wall_s"):
        assert key in prov, key
    assert prov["machine"]["cores"] >= 1 and prov["config"]["preset"] == "tiny"
    # a page about another dataset does not take this study for its own
    assert study.has_study(results) and study.has_study(results, dataset="sysu")
    assert not study.has_study(results, dataset="regdb") and not study.has_study(tmp / "runs")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_second_call_loads_every_run_instead_of_training_it(tiny_study):
    cfg, tmp, frame, _ = tiny_study
    before = _checkpoints(tmp / "runs")
    assert len(before) >= 4
    again, _ = study.run_study(cfg, variants=["agw", "djanet"], seeds=[0, 1], out=tmp / "results")
    assert _checkpoints(tmp / "runs") == before                # nothing trained, nothing rewritten
    pd.testing.assert_frame_equal(again, frame)                 # same rows, train seconds included
    # a row saved under an older definition of the numbers is measured again (not retrained)
    saved = tmp / "runs" / "agw-seed0" / study.ROW_JSON
    old = json.loads(saved.read_text())
    saved.write_text(json.dumps({**old, "measures": study.MEASURES - 1, "row": {**old["row"], "R1": -1.0}}))
    again, _ = study.run_study(cfg, variants=["agw", "djanet"], seeds=[0, 1], out=tmp / "results")
    assert _checkpoints(tmp / "runs") == before
    assert again["R1"].tolist() == frame["R1"].tolist() and json.loads(saved.read_text())["measures"] == study.MEASURES
    # a run folder of another configuration is refused, not silently reused
    other = get_config("tiny", device="cpu", out_dir=cfg.out_dir, **{"data.cache_dir": cfg.data.cache_dir,
                                                                     "loss.margin": 0.5})
    with pytest.raises(FileExistsError, match="agw-seed0 holds a run of another configuration.*loss.margin"):
        study.run_study(other, variants=["agw"], seeds=[0], out=tmp / "other")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_command_line_study_reuses_the_runs_and_prints_the_tables(tiny_study, capsys):
    from djanet.cli import main

    cfg, tmp, frame, _ = tiny_study
    before = _checkpoints(tmp / "runs")
    code = main(["study", "--preset", "tiny", "--gpu", "cpu", "--variants", "agw", "djanet", "--seeds", "0", "1",
                 "--out-dir", cfg.out_dir, "--cache-dir", cfg.data.cache_dir, "--results", str(tmp / "cli")])
    assert code == 0 and _checkpoints(tmp / "runs") == before
    printed = capsys.readouterr().out
    assert "difference to AGW [95% interval over seeds]" in printed and "written:" in printed
    pd.testing.assert_frame_equal(pd.read_csv(tmp / "cli" / "study.csv"), pd.read_csv(tmp / "results" / "study.csv"))
    prov = json.loads((tmp / "cli" / "provenance.json").read_text())
    assert prov["command"].startswith("python -m djanet study --preset tiny --gpu cpu --variants agw djanet")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_worker_processes_train_the_same_runs(tiny_study):
    """jobs=2: two runs at once in spawned processes, each as it would train alone (CPU, one thread)."""
    cfg, tmp, frame, _ = tiny_study
    apart = get_config("tiny", device="cpu", out_dir=str(tmp / "parallel"), **{"data.cache_dir": cfg.data.cache_dir})
    rows, _ = study.run_study(apart, variants=["agw"], seeds=[0, 1], out=tmp / "parallel", jobs=2)
    numbers = ["R1", "R10", "mAP", "mINP", "cross_share", "pos_ratio", "modality_acc", "train_acc", "fit_all",
               "best_epoch"]
    pd.testing.assert_frame_equal(rows[numbers], frame[frame["variant"] == "agw"][numbers].reset_index(drop=True))


def test_the_command_line_refuses_an_unknown_variant_before_training(capsys, tmp_path):
    from djanet.cli import build_parser, main, study_config_from_args

    assert main(["study", "--preset", "tiny", "--variants", "agw", "bnneck", "--out-dir", str(tmp_path)]) == 2
    assert "unknown study variant 'bnneck'" in capsys.readouterr().err and not any(tmp_path.iterdir())
    args = build_parser().parse_args(["study", "--dataset", "regdb", "--preset", "tiny", "--epochs", "3"])
    cfg = study_config_from_args(args)
    assert cfg.out_dir == "runs/study/regdb-tiny" and cfg.optim.epochs == 3 and cfg.data.dataset == "regdb"
    assert args.seeds == [0, 1, 2] and args.jobs == 1


def test_the_translated_copy_is_made_once_per_study(tmp_path):
    cfg = get_config("tiny", device="cpu", out_dir=str(tmp_path / "runs"), **{"data.cache_dir": str(tmp_path / "c")})
    copy, info = study.translated_copy(cfg)
    assert (copy / "translation.json").is_file() and info["preset"] == "tiny" and info["seconds"] > 0
    stamp = (copy / "translation.json").stat().st_mtime_ns
    again, info2 = study.translated_copy(cfg)
    assert again == copy and info2 == info and (copy / "translation.json").stat().st_mtime_ns == stamp
    run = study.variant_config(cfg, "djanet-translated", 0, copy)
    assert run.data.translated_root == str(copy) and run.run_name == "djanet-translated-seed0"


def test_gap_findings_state_the_study_files_numbers():
    """Notebook 5's sentences on the study, checked against numbers read from a hand-made study."""
    rows = []
    for seed, (r1_a, r1_d, share_a, share_d) in enumerate([(20, 15, 0.30, 0.20), (22, 17, 0.26, 0.24)]):
        rows += [dict(variant="agw", label="AGW baseline", seed=seed, R1=r1_a, mAP=r1_a + 3, cross_share=share_a,
                      r1_within=0.8, r1_cross=0.2, modality_acc=0.9, fit_all=95.0),
                 dict(variant="djanet", label="DJANet", seed=seed, R1=r1_d, mAP=r1_d + 3, cross_share=share_d,
                      r1_within=0.7, r1_cross=0.1 + 0.1 * seed, modality_acc=0.7, fit_all=85.0),
                 dict(variant="djanet-nochannel", label="no channel aug.", seed=seed, R1=10.0, mAP=13.0,
                      cross_share=0.1, r1_within=0.9, r1_cross=0.1, modality_acc=0.99, fit_all=98.0)]
    frame = pd.DataFrame(rows)
    summary = study.summary_frame(frame)
    text = " ".join(report.gap_findings(frame, summary))
    assert "AGW baseline reaches a rank-1 of 21.0 ± 1.4% and DJANet 16.0 ± 1.4%" in text   # means of 20, 22 / 15, 17
    assert "(`r1_cross`) is 0.20 ± 0.00 and 0.15 ± 0.07" in text
    assert "about 22% survives" in text                                                   # DJANet's mean share 0.22
    assert "tells the two modalities apart only in part" in text                           # modality_acc 0.7 < 0.75
    assert "98 ± 0% of the training images (with them: 85 ± 0%)" in text
    assert "did not carry more of the matching into infrared" in text                      # fits more, shares less
