"""DJANet: shapes per preset and modality, gradients, determinism, AGW mode, the public surface."""
from __future__ import annotations


import pytest
import torch

from djanet.config import get_config
from djanet.losses import DJANetLoss
from djanet.model import DJANet


def tiny(**kw) -> DJANet:
    torch.manual_seed(0)
    args = dict(arch="resnet18", img_size=(64, 32), align_dim=32, attn_heads=4, d_state=8)
    args.update(kw)
    return DJANet(6, **args)


def views(b=2, size=(64, 32), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 3, *size, generator=g) for _ in range(4)]


@pytest.mark.parametrize("preset", ["tiny", "cpu-demo"])
def test_preset_shapes(preset):
    cfg = get_config(preset)
    torch.manual_seed(0)
    model = DJANet.from_config(cfg.model, num_classes=5, img_size=cfg.data.img_size)
    out = model(*views(2, cfg.data.img_size))
    c = model.feat_dim
    h, w = -(-cfg.data.img_size[0] // 16), -(-cfg.data.img_size[1] // 16)
    assert out["pool"].shape == (8, c) and out["logits"].shape == (8, 5)
    assert out["feat_map"].shape == (8, c, h, w)
    for modality in ("visible", "infrared"):
        pool, bn = model.extract(views(3, cfg.data.img_size)[0], modality)
        assert pool.shape == bn.shape == (3, c)
        torch.testing.assert_close(pool.norm(dim=1), torch.ones(3))
        torch.testing.assert_close(bn.norm(dim=1), torch.ones(3))
    assert model.training  # extract restores the mode


@pytest.mark.slow
def test_paper_preset_shapes_and_counts():
    cfg = get_config("paper", pretrained=False)  # no weights can be downloaded in tests
    torch.manual_seed(0)
    model = DJANet.from_config(cfg.model, num_classes=395, img_size=cfg.data.img_size)
    assert [lvl.heads for lvl in model.align.levels.values()] == [32] * 4
    assert model.align.levels["stem"].shallow.kernel_size == (6, 6)
    assert model.align.levels["layer2"].shallow.stride == (2, 2)
    counts = model.parameter_counts()
    assert 40e6 < counts["used"] < 43e6          # official: 162.7M held, 41.49M used
    assert counts["held"] - counts["used"] == 2048 * 395
    with torch.no_grad():
        out = model(*views(1, (384, 192)))
    assert out["feat_map"].shape == (4, 2048, 24, 12) and out["logits"].shape == (4, 395)
    pool, bn = model.extract(torch.randn(1, 3, 384, 192), "infrared")
    assert pool.shape == bn.shape == (1, 2048)


def test_every_parameter_gets_gradient():
    model = tiny()
    loss_fn = DJANetLoss(get_config("tiny").loss)
    labels = torch.tensor([0, 1] * 4)
    opt = torch.optim.SGD(model.param_groups(0.1, 0.1), lr=0.1)
    for step in range(2):
        opt.zero_grad()
        loss_fn(model(*views(2, seed=step)), labels)["total"].backward()
        if step == 0:
            opt.step()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = [n for n, p in params.items() if p.grad is None]
    assert not missing, missing
    # after one step the zero-initialised non-local BN has moved: every gradient is nonzero now
    zero = [n for n, p in params.items() if p.grad.abs().sum() == 0]
    assert not zero, zero
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["head.bnneck.bias"]


def test_eval_is_deterministic():
    model = tiny().eval()
    x = views(3)[2]
    a = model.extract(x, "infrared")
    b = model.extract(x, "infrared")
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


def test_visible_uses_the_two_visible_stems_averaged():
    model = tiny()
    with torch.no_grad():
        for p in model.stems["visible_aug"].parameters():
            p.add_(0.5)
    x = views(2)[0]
    pool, _ = model.extract(x, "visible")
    model.eval()
    with torch.no_grad():
        s = (model.stems["visible"](x) + model.stems["visible_aug"](x)) / 2
        expect = torch.nn.functional.normalize(model.head(model._shared(s))[0], dim=1)
    torch.testing.assert_close(pool, expect)
    with pytest.raises(ValueError, match="modality='thermal'"):
        model.extract(x, "thermal")


def test_classify_names_identities_from_the_test_time_features():
    model = tiny()
    model.train()
    x = views(3)[2]
    logits = model.classify(x, "infrared")
    assert model.training  # classify restores the mode
    model.eval()
    with torch.no_grad():
        s = (model.stems["thermal"](x) + model.stems["thermal_aug"](x)) / 2
        expect = model.head.classifier(model.head(model._shared(s))[1])
    torch.testing.assert_close(logits, expect)
    assert logits.shape == (3, model.num_classes)
    with pytest.raises(ValueError, match="modality='rgb'"):
        model.classify(x, "rgb")


def test_agw_mode_has_no_align_or_stem_parameters():
    model = tiny(stems=False, align=False)
    names = [n for n, _ in model.named_parameters()]
    assert not [n for n in names if n.startswith(("align.", "stems."))]
    assert any(n.startswith("stem.") for n in names)
    assert any(".nl." in n or n.startswith("body.nl") for n in names)
    out = model(*views(2))
    assert out["pool"].shape == (8, 512)
    plain = tiny(stems=False, align=False, non_local=False)
    assert not [n for n, _ in plain.named_parameters() if n.startswith("body.nl")]


def test_param_groups():
    model = tiny()
    groups = model.param_groups(0.01, 0.1)
    assert [g["lr"] for g in groups] == [0.01, 0.1]
    assert [p.shape for p in groups[1]["params"]] == [(512,), (6, 512)]
    n_all = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == n_all


def test_stems_hold_only_conv1_bn1():
    model = tiny()
    for stem in model.stems.values():
        assert sum(p.numel() for p in stem.parameters()) == 64 * 3 * 7 * 7 + 2 * 64
    held = model.parameter_counts()["held"]
    assert held == sum(p.numel() for p in model.parameters())


def test_align_residual_adds_the_module_output_to_layer3_instead_of_replacing_it():
    """With the align module's output convs zeroed the module outputs 0: the residual model is
    then the model without the module, and the paper's (replacing) model loses layer3 entirely."""
    residual, plain, without = tiny(align_residual=True), tiny(), tiny(align=False)
    for model in (residual, plain):
        for level in model.align.levels.values():
            torch.nn.init.zeros_(level.out.weight)
            torch.nn.init.zeros_(level.out.bias)
    x = views(3)[0]
    ref = without.eval().embed(x, "visible")[0]
    torch.testing.assert_close(residual.eval().embed(x, "visible")[0], ref)
    cut = plain.eval().embed(x, "visible")[0]
    assert (cut - ref).abs().max() > 1e-3
    assert cut.std(0).max() < 1e-5            # every image gets the same feature: layer3 is gone
