import json

import pytest

from djanet.config import PRESETS, from_dict, get_config, override, to_dict


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_resolve_and_round_trip_through_json(name):
    cfg = get_config(name)
    assert cfg.preset == name
    assert from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg


def test_paper_preset_matches_the_method_notes():
    cfg = get_config("paper")
    assert cfg.model.arch == "resnet50" and cfg.data.img_size == (384, 192) and cfg.model.pretrained is True
    assert (cfg.data.ids_per_batch, cfg.data.num_pos) == (24, 4)
    assert (cfg.optim.lr, cfg.optim.head_lr, cfg.optim.epochs) == (0.01, 0.1, 150)
    assert cfg.optim.milestones == (25, 50, 75, 100, 125) and cfg.loss.margin == 0.7
    assert cfg.loss.triplet_features == "pool"                            # the paper's pooled vector
    # from random weights the small presets rank unit BN features (the pooled ones collapse)
    assert {get_config(p).loss.triplet_features for p in ("cpu-demo", "gpu-demo")} == {"bn"}
    assert (cfg.optim.schedule, cfg.model.width) == ("step", 64)                # the paper's schedule and ResNet
    demo = get_config("cpu-demo")
    assert (demo.optim.schedule, demo.model.width, demo.optim.epochs, demo.max_steps_per_epoch) == ("cosine", 32, 10, 80)
    assert demo.model.attn_heads == 1       # the 4x2 layer3 grid: one head of 8 dimensions (the paper's have 9)


def test_width_is_checked_with_the_option_named():
    with pytest.raises(ValueError, match="model.width=20"):
        get_config("tiny", **{"model.width": 20})
    with pytest.raises(ValueError, match="model.pretrained=True with model.width=32"):
        get_config("cpu-demo", **{"model.pretrained": True})


def test_plain_and_dotted_overrides():
    cfg = get_config("tiny", epochs=5, **{"data.dataset": "regdb", "model.align": False})
    assert cfg.optim.epochs == 5 and cfg.data.dataset == "regdb" and cfg.model.align is False
    assert override(cfg, seed=3).seed == 3


def test_unknown_key_lists_valid_keys():
    with pytest.raises(KeyError, match="unknown config key 'epoch'.*optim.epochs"):
        get_config("tiny", epoch=3)


def test_unknown_preset_and_bad_values_are_named():
    with pytest.raises(KeyError, match="unknown preset 'fast'.*cpu-demo"):
        get_config("fast")
    with pytest.raises(ValueError, match="data.dataset='market'"):
        get_config("tiny", dataset="market")
    with pytest.raises(ValueError, match="model.arch='vit'"):
        get_config("tiny", arch="vit")
    with pytest.raises(ValueError, match="RegDB trials are 1..10"):
        get_config("tiny", dataset="regdb", trial=11)
    with pytest.raises(ValueError, match="loss.triplet_features='feat'.*'pool', 'bn'"):
        get_config("tiny", triplet_features="feat")
    for epochs in (0, -1):
        with pytest.raises(ValueError, match=f"optim.epochs={epochs}; expected at least 1"):
            get_config("tiny", epochs=epochs)
    with pytest.raises(ValueError, match="max_steps_per_epoch=0"):
        get_config("tiny", max_steps_per_epoch=0)
    with pytest.raises(ValueError, match="optim.lr=0"):
        get_config("tiny", lr=0)
    with pytest.raises(ValueError, match=r"data.img_size=\(16, 32\); expected"):
        get_config("tiny", img_size=(16, 32))
    with pytest.raises(ValueError, match="eval_trials=0; expected at least 1"):
        get_config("tiny", eval_trials=0)


def test_gpu_demo_preset_is_the_paper_network_at_256x128_on_the_sysu_scale_synthetic_data():
    cfg = get_config("gpu-demo")
    assert cfg.model.arch == "resnet50" and cfg.model.align and cfg.model.stems and cfg.model.align_dim == 256
    assert cfg.data.img_size == (256, 128) and cfg.model.pretrained is False
    assert cfg.data.dataset == "sysu" and cfg.data.synthetic_ids is None and cfg.data.train_ids is None
    assert cfg.optim.amp and cfg.data.use_cache and cfg.data.workers > 0 and cfg.threads is None
    assert 4 * cfg.data.ids_per_batch * cfg.data.num_pos == 128          # images a step
    assert cfg.optim.epochs * cfg.max_steps_per_epoch == 1000            # the budget the comment estimates
    assert get_config("gpu-demo", pretrained=True).model.pretrained is True


@pytest.mark.parametrize("cuda,device,expect", [(True, "auto", "gpu-demo"), (False, "auto", "cpu-demo"),
                                                (True, "cpu", "cpu-demo"), (False, "cuda:0", "gpu-demo")])
def test_auto_preset_follows_the_device(monkeypatch, tmp_path, cuda, device, expect):
    """'auto' is gpu-demo where training runs on CUDA, cpu-demo elsewhere (CUDA mocked either way);
    the config records the preset it stands for, and the notebooks' setup resolves it too."""
    import torch
    from djanet import book
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    cfg = get_config("auto", device=device)
    assert cfg.preset == expect and cfg == get_config(expect, device=device)
    assert (cfg.model.arch, cfg.data.img_size) == {"gpu-demo": ("resnet50", (256, 128)),
                                                    "cpu-demo": ("resnet18", (64, 32))}[expect]
    assert get_config("auto").preset == ("gpu-demo" if cuda else "cpu-demo")
    if expect == "cpu-demo":   # where the mocked GPU is not asked for anything
        cfg, _ = book.setup(preset="auto", device=device, out_dir=tmp_path)
        assert cfg.preset == "cpu-demo"
