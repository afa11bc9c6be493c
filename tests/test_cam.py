"""Activation maps of query/gallery pairs (djanet.cam) and their figure (djanet.viz)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from djanet import viz
from djanet.cam import pair_activation_maps
from djanet.config import get_config
from djanet.model import DJANet


@pytest.fixture(scope="module", params=["djanet", "agw"])
def model_and_images(request):
    cfg = get_config("tiny")
    torch.manual_seed(0)
    switches = {} if request.param == "djanet" else {"stems": False, "align": False}
    model = DJANet(5, arch=cfg.model.arch, img_size=cfg.data.img_size, align_dim=cfg.model.align_dim,
                   attn_heads=cfg.model.attn_heads, d_state=cfg.model.d_state, **switches)
    model.train()                                             # the function must switch to eval and back
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(3, 3, *cfg.data.img_size, generator=gen)
    g = torch.randn(3, 3, *cfg.data.img_size, generator=gen)
    return model, q, g


def test_maps_are_grad_cam_of_the_pair_similarity(model_and_images):
    """Recomputed here another way: retained gradients after backward() on the same layer4 output."""
    model, q, g = model_and_images
    q_map, g_map, sims = pair_activation_maps(model, q, g, "infrared", "visible")
    assert model.training and all(p.grad is None for p in model.parameters())
    assert not model.body.layer4[-1]._forward_hooks
    assert q_map.shape == g_map.shape == (3, *q.shape[-2:])
    assert float(q_map.min()) >= 0.0 and torch.allclose(q_map.flatten(1).max(1).values, torch.ones(3))

    model.eval()
    acts = []

    def keep(module, inputs, output):
        output.retain_grad()
        acts.append(output)

    handle = model.body.layer4[-1].register_forward_hook(keep)
    fq, fg = model.extract.__wrapped__(model, q, "infrared")[1], model.extract.__wrapped__(model, g, "visible")[1]
    handle.remove()
    (fq * fg).sum().backward()
    model.zero_grad(set_to_none=True)
    model.train()
    expected = []
    for a in acts:
        cam = F.relu((a.grad.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=q.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        expected.append(cam / cam.flatten(1).max(1).values[:, None, None])
    torch.testing.assert_close(q_map, expected[0].detach(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(g_map, expected[1].detach(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(sims, (fq * fg).sum(1).detach(), atol=1e-5, rtol=1e-5)


def test_each_pair_is_explained_on_its_own(model_and_images):
    model, q, g = model_and_images
    together = pair_activation_maps(model, q, g, "infrared", "visible")
    alone = pair_activation_maps(model, q[1:2], g[1:2], "infrared", "visible")
    for a, b in zip(together, alone):
        torch.testing.assert_close(a[1:2], b, atol=1e-3, rtol=1e-3)   # float noise of batch size only


def test_bad_arguments_are_named(model_and_images):
    model, q, g = model_and_images
    with pytest.raises(ValueError, match="modality='thermal'"):
        pair_activation_maps(model, q, g, "thermal", "visible")
    with pytest.raises(ValueError, match="equal-shaped"):
        pair_activation_maps(model, q, g[:2], "infrared", "visible")


def test_activation_pairs_figure_has_a_row_per_model(model_and_images):
    model, q, g = model_and_images
    maps = pair_activation_maps(model, q, g, "infrared", "visible")
    fig = viz.activation_pairs(q, g, {"AGW": maps, "DJANet": maps}, suptitle="pairs")
    assert len(fig.axes) == 2 * 2 * len(q)
    assert fig.axes[1].get_title().startswith("gallery 1\ncos ")
    assert fig.axes[0].get_ylabel() == "AGW" and fig.axes[2 * len(q)].get_ylabel() == "DJANet"
    with pytest.raises(ValueError, match="3 query images but 2 gallery images"):
        viz.activation_pairs(q, g[:2], {"AGW": maps})
