"""Checkpoints of the official DJANet code open as ours (djanet.official), with no official code or
weights: the recorded key/shape list of the official model (tests/data/official_keys.json.gz) stands
in for a released file."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from djanet import evaluate as ev
from djanet import official
from djanet.checkpoint import check_compatible, load_checkpoint, official_info, safe_load
from djanet.cli import build_parser, config_for_test_from_args
from djanet.cli import main as cli_main
from djanet.config import get_config, to_dict
from djanet.model import DJANet
from djanet.runtime import load_model

KEYS = Path(__file__).parent / "data" / "official_keys.json.gz"
PAPER_INFERENCE = (341, 41_959_168)   # trainable inference parameter tensors and numbers (paper model)


@pytest.fixture(scope="module")
def recorded():
    """{official key: (shape, dtype)} of the official model (SYSU: 395 classes)."""
    doc = json.loads(gzip.decompress(KEYS.read_bytes()))
    assert doc["class_num"] == 395
    return {k: (tuple(shape), getattr(torch, dtype)) for k, (shape, dtype) in doc["tensors"].items()}


def random_state(recorded, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=gen) if dtype.is_floating_point
            else torch.randint(0, 9, shape, generator=gen) for k, (shape, dtype) in recorded.items()}


def tiny_state(recorded) -> dict[str, torch.Tensor]:
    """Every recorded tensor with its own constant value, stored as one element expanded (a file of KBs)."""
    return {k: torch.tensor(float(i) if dtype.is_floating_point else i, dtype=dtype).expand(shape)
            for i, (k, (shape, dtype)) in enumerate(recorded.items())}


@pytest.fixture(scope="module")
def paper_model():
    cfg = get_config("paper", **{"model.pretrained": False})
    return DJANet.from_config(cfg.model, 395, cfg.data.img_size)


def test_every_recorded_key_is_mapped_or_a_known_unused_module(recorded):
    mapped = [k for k in recorded if official.our_key(k) is not None]
    unused = [k for k in recorded if official.unused_reason(k) is not None]
    assert not set(mapped) & set(unused)
    assert sorted(mapped + unused) == sorted(recorded)
    assert (len(mapped), len(unused)) == (529, 1370)
    assert all(official.official_key(official.our_key(k)) == k for k in mapped)   # the table inverts


@pytest.mark.slow
def test_random_official_weights_load_into_the_paper_model_strictly(recorded, paper_model):
    sd = random_state(recorded)
    ours = official.from_official_state_dict(sd, paper_model)
    assert paper_model.load_state_dict(ours, strict=True)   # no missing, no unexpected keys
    state = paper_model.state_dict()
    for key in ("stems.thermal_aug.0.weight", "body.nl.layer3.2.g.weight", "align.levels.layer3.mixer.mamba.A_log",
                "align.levels.layer2.shallow.weight", "head.bnneck.running_var"):
        assert torch.equal(state[key], sd[official.official_key(key)]), key
    assert torch.equal(state["align.levels.stem.shallow.weight"], sd["layerATT0.ATT_narrow1.weight"])
    assert torch.equal(state["align.levels.layer3.mixer.norm1.weight"], sd["layerATT3.mambablock_2.norm1.weight"])
    inference = [p for k, p in paper_model.named_parameters() if p.requires_grad and k != "head.classifier.weight"]
    assert (len(inference), sum(p.numel() for p in inference)) == PAPER_INFERENCE
    # without a model: checked against the paper model of the classifier's size, built on the meta device
    assert official.from_official_state_dict({"net": sd}).keys() == ours.keys()


@pytest.mark.slow
def test_a_missing_key_is_named(recorded):
    sd = random_state(recorded)
    del sd["layerATT1.attn.in_proj_weight"]
    with pytest.raises(official.OfficialCheckpointError,
                       match=r"missing 1: layerATT1\.attn\.in_proj_weight \(-> align\.levels\.layer1\.attn"):
        official.from_official_state_dict(sd)


@pytest.mark.slow
def test_a_left_over_key_is_named_and_unused_modules_are_not(recorded):
    sd = random_state(recorded)
    sd["layerATT1.extra.weight"] = torch.zeros(3)
    sd["NL_2.5.theta.weight"] = torch.zeros(3)   # mapped by the table, but our model has no such block
    with pytest.raises(official.OfficialCheckpointError) as err:
        official.from_official_state_dict(sd)
    message = str(err.value)
    assert "left over" in message and "layerATT1.extra.weight" in message and "NL_2.5.theta.weight" in message
    assert "missing" not in message and "visible_module.visible.layer1" not in message
    sd = random_state(recorded)
    sd["layerATT0.ATT_narrow.weight"] = torch.zeros(256, 1024, 3, 3)
    with pytest.raises(official.OfficialCheckpointError, match=r"wrong shape 1: layerATT0\.ATT_narrow\.weight"):
        official.from_official_state_dict(sd)


def save_official(path: Path, recorded, legacy: bool = False) -> dict[str, torch.Tensor]:
    """An official-style .t: {'net', 'cmc' (NumPy array), 'mAP' (NumPy scalar), 'epoch'}."""
    sd = tiny_state(recorded)
    state = {"net": sd, "cmc": np.linspace(0.5, 1.0, 20).astype(np.float32), "mAP": np.float64(0.4), "epoch": 3}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return sd


@pytest.mark.slow
def test_an_official_file_is_recognised_and_loads_through_the_test_command(recorded, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "DJANet" / "save_model"
    folder.mkdir(parents=True)
    path = folder / "sysu_p4_n8_best.t"
    sd = save_official(path, recorded)
    assert path.stat().st_size < 2_000_000
    assert official.is_official_checkpoint(safe_load(path))
    assert not official.is_official_checkpoint({"model": {}, "config": {}})
    ckpt = load_checkpoint(path)
    assert ckpt["num_classes"] == 395 and ckpt["official"]["epoch"] == 3
    assert ckpt["config"]["model"]["arch"] == "resnet50" and tuple(ckpt["config"]["data"]["img_size"]) == (384, 192)
    with pytest.raises(ValueError, match="official DJANet checkpoint.*not resumed"):
        check_compatible(ckpt, to_dict(get_config("paper")), 395, path)

    # djanet.load_model, and the test command's own path: its config, then the model it evaluates
    model, cfg = load_model(path, device="cpu")
    assert cfg.model.align and cfg.model.stems and cfg.data.dataset == "sysu"
    args = build_parser().parse_args(["test", "--resume", str(path), "--gpu", "cpu", "--mode", "indoor"])
    test_cfg = config_for_test_from_args(args)
    assert test_cfg.data.mode == "indoor" and test_cfg.model == cfg.model
    model = ev._model_for_test(test_cfg, path)[0]
    state = model.state_dict()
    for key, value in state.items():
        assert torch.equal(value, sd[official.official_key(key)].to(value.dtype)), key

    # the whole command, with no test data to go through: the note labels the protocol
    monkeypatch.setattr(ev, "_test_splits", lambda cfg, directions=None: iter(()))
    assert cli_main(["test", "--resume", str(path), "--gpu", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "official DJANet checkpoint" in out and "community protocol" in out and "epoch 3" in out
    metrics = json.loads((tmp_path / "DJANet" / "metrics.json").read_text())
    assert metrics["official_checkpoint"]["recorded_mAP"] == pytest.approx(0.4)
    assert "+11 points Rank-1" in metrics["official_checkpoint"]["protocol"]


def test_a_file_written_with_numpy1_names_in_the_legacy_format_opens(recorded, tmp_path):
    path = tmp_path / "old.t"
    save_official(path, recorded, legacy=True)
    data = path.read_bytes()
    assert data.count(b"numpy._core.multiarray") >= 2   # the CMC array and the mAP scalar
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    ckpt = load_checkpoint(path)
    assert ckpt["official"]["recorded_rank1"] == pytest.approx(0.5)
    assert official_info(path)["recorded_mAP"] == pytest.approx(0.4)   # not memory-mappable: read in full


def test_a_djanet_checkpoint_gets_no_official_note(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "config": {}}, path)
    assert official_info(path) is None
    assert official_info(tmp_path / "absent.t") is None


@pytest.mark.slow
def test_the_test_command_evaluates_an_official_file_end_to_end(recorded, sysu_root, tmp_path, capsys):
    """`python -m djanet test --resume FILE.t` on the tiny synthetic SYSU-MM01 (ResNet-50 at 384x192 on
    the CPU: about 20 s): a freshly initialised paper model's weights written under the official names."""
    cfg = get_config("paper", **{"model.pretrained": False})
    ours = DJANet.from_config(cfg.model, 395, cfg.data.img_size).state_dict()
    sd = {k: ours[official.our_key(k)] if official.our_key(k) else torch.zeros((), dtype=dtype).expand(shape)
          for k, (shape, dtype) in recorded.items()}
    path = tmp_path / "save_model" / "sysu_best.t"
    path.parent.mkdir()
    torch.save({"net": sd, "cmc": np.zeros(20, np.float32), "mAP": np.float64(0.0), "epoch": 1}, path)
    assert cli_main(["test", "--resume", str(path), "--data-root", str(sysu_root), "--gpu", "cpu",
                     "--trials", "2", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "== i2v/bn ==" in out and "community protocol" in out
    assert "what the official test script would print" in out
    results = json.loads((tmp_path / "metrics.json").read_text())["results"]
    assert all(np.isfinite(r["mean"]["mAP"]) for r in results.values())
    for r in results.values():   # the script's arithmetic beside the protocol: all-search adds 11 Rank-1 points or more
        script = r["official_script"]["mean"]
        assert script["r1"] >= r["mean"]["r1"] + 0.11 - 1e-9 and script["mAP"] > r["mean"]["mAP"]
