"""Each augmentation's effect on a known tensor, with fixed generators/seeds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from djanet.data import transforms as T

X = torch.stack([torch.full((8, 4), 1.0), torch.full((8, 4), 2.0), torch.full((8, 4), 3.0)])


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_channel_exchange():
    for seed in range(6):
        k = int(torch.randint(0, 3, (), generator=gen(seed)))
        out = T.ChannelExchange(generator=gen(seed))(X)
        assert torch.equal(out, torch.full_like(X, k + 1.0))
    g = gen(0)
    seen = {round(float(T.ChannelExchange(gray=True, generator=g)(X)[0, 0, 0]), 4) for _ in range(60)}
    assert seen == {1.0, 2.0, 3.0, round(0.2989 + 2 * 0.587 + 3 * 0.114, 4)}


def test_adaptive_gray():
    g, luma = gen(0), 0.2989 + 2 * 0.587 + 3 * 0.114
    outs = [T.AdaptiveGray(p=0.5, generator=g)(X) for _ in range(400)]
    green = sum(torch.equal(o, torch.full_like(X, 2.0)) for o in outs)
    gray = sum(torch.allclose(o, torch.full_like(X, luma)) for o in outs)
    same = sum(torch.equal(o, X) for o in outs)
    assert green + gray + same == 400
    assert 170 < green < 230 and 70 < gray < 130 and 70 < same < 130


def test_channel_random_erasing():
    x = torch.zeros(3, 40, 20)
    mean = (0.4914, 0.4822, 0.4465)
    out = T.ChannelRandomErasing(p=1.0, generator=gen(1))(x)
    erased = out[0] != 0
    frac = erased.float().mean().item()
    assert 0.02 <= frac <= 0.4
    ys, xs = torch.nonzero(erased, as_tuple=True)
    assert erased[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()     # one rectangle
    for c in range(3):
        assert torch.allclose(out[c][erased], torch.tensor(mean[c]))
    assert torch.equal(T.ChannelRandomErasing(p=0.0)(x), x) and x.eq(0).all()


def test_random_channel_scale():
    out = T.RandomChannelScale(p=1.0, generator=gen(2))(X)
    g = gen(2)
    torch.rand((), generator=g)
    expect = 2 * (0.01 + 0.49 * torch.rand(3, generator=g))
    for c in range(3):
        assert torch.allclose(out[c], X[c] * expect[c])
        assert 0.02 <= (out[c] / X[c]).unique().item() <= 1.0
    assert torch.equal(T.RandomChannelScale(p=0.0)(X), X)


def test_test_transform_values():
    img = np.zeros((16, 8, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 255, 0, 51
    out = T.test_transform((32, 16))(img)
    assert out.shape == (3, 32, 16) and out.dtype == torch.float32
    for c, v in enumerate((1.0, 0.0, 0.2)):
        assert torch.allclose(out[c], torch.tensor((v - T.IMAGENET_MEAN[c]) / T.IMAGENET_STD[c]),
                              atol=1e-5)
    assert torch.allclose(T.denormalise(out)[2], torch.tensor(0.2), atol=1e-5)


def test_train_views():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)
    vis1, vis2, ir1, ir2 = T.train_views((32, 16))
    outs = [v(img) for v in (vis1, vis2, ir1, ir2)]
    assert all(o.shape == (3, 32, 16) and o.dtype == torch.float32 for o in outs)
    for _ in range(5):                  # channel exchange is always applied last in VIS-2
        o = vis2(img)
        assert torch.equal(o[0], o[1]) and torch.equal(o[1], o[2])
    # pad + crop: some draws shift the image, bringing in the zero padding
    shifted = sum(bool((T.denormalise(vis1(img)) < 1e-5).all(0).all(1).any()) for _ in range(20))
    assert shifted > 5
    # IR-1 with the same seed is reproducible
    torch.manual_seed(3)
    a = ir1(img)
    torch.manual_seed(3)
    assert torch.equal(a, ir1(img))


@pytest.mark.parametrize("size,pad", [((384, 192), 10), ((288, 144), 7), ((64, 32), 2), ((32, 16), 1)])
def test_pad_is_a_fraction_of_the_width(size, pad):
    """The paper's 10 px at 192 wide is 5%; at 32 wide the same shift is 2 px, not 10."""
    assert T.pad_pixels(size, 0.05) == pad


def test_no_pad_no_erasing_keeps_the_image_in_place():
    rng = np.random.default_rng(0)
    img = rng.integers(1, 256, (32, 16, 3), dtype=np.uint8)
    _, _, ir1, _ = T.train_views((32, 16), pad_fraction=0.0, erasing_p=0.0)
    torch.manual_seed(0)
    for _ in range(10):   # only flip and the grey conversions remain: no zero-padded border
        assert (T.denormalise(ir1(img)) > 1e-5).any(0).all()


def test_without_channel_augmentations_each_view_is_the_image_or_its_mirror():
    """channel_aug=False keeps only geometry and erasing: no pad, no erasing leaves image or flip."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)
    plain = T.test_transform((32, 16))(img)
    views = T.train_views((32, 16), pad_fraction=0.0, erasing_p=0.0, channel_aug=False)
    torch.manual_seed(0)
    flips = 0
    for view in views:
        for _ in range(8):
            out = view(img)
            assert torch.equal(out, plain) or torch.equal(out, plain.flip(2))
            flips += torch.equal(out, plain.flip(2))
    assert 0 < flips < 32                     # the flip is random, and nothing else changes the image
    # with channel augmentations the same views change colours: VIS-2 always replicates one channel
    _, vis2, _, _ = T.train_views((32, 16), pad_fraction=0.0, erasing_p=0.0)
    assert not any(torch.equal(vis2(img), p) for p in (plain, plain.flip(2)))


def test_without_channel_augmentations_erasing_fills_zeros_not_channel_means():
    img = np.full((32, 16, 3), 200, np.uint8)
    vis1 = T.train_views((32, 16), pad_fraction=0.0, erasing_p=1.0, channel_aug=False)[0]
    torch.manual_seed(0)
    out = vis1(img)
    erased = (out == 0).all(0)
    assert 0 < erased.float().mean() <= 0.4 and (out[:, ~erased] != 0).all()


def test_the_data_config_switch_reaches_the_training_loader(sysu_root):
    from djanet.config import get_config, override
    from djanet.data import four_view_loader, load_image, read_train

    split, _ = read_train("sysu", sysu_root)
    cfg = override(get_config("tiny"), **{"data.channel_aug": False, "data.erasing_p": 0.0,
                                          "data.pad_fraction": 0.0})
    vis1, vis2, ir1, ir2, _, _ = four_view_loader(split, cfg.data, [(0, 0)]).dataset[(0, 0)]
    for views, path in (((vis1, vis2), split.visible.paths[0]), ((ir1, ir2), split.infrared.paths[0])):
        plain = T.test_transform(cfg.data.img_size)(load_image(path))
        for view in views:    # the resized image, maybe mirrored, nothing else
            assert torch.equal(view, plain) or torch.equal(view, plain.flip(2))


def test_grey_remap_redraws_levels_but_keeps_regions():
    """Pixels of one grey level stay one level (geometry survives); the levels themselves move,
    the three channels stay equal (a grey image), and p=0 changes nothing."""
    grey = torch.zeros(8, 4)
    grey[:4], grey[4:, :2] = 0.2, 0.9              # three regions: 0.2, 0.9 and 0.0
    raw = grey.expand(3, 8, 4)
    mean = torch.tensor(T.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(T.IMAGENET_STD).view(3, 1, 1)
    x = (raw - mean) / std
    assert torch.equal(T.RandomGreyRemap(p=0.0, generator=gen(0))(x), x)
    seen = []
    for seed in range(20):
        out = T.RandomGreyRemap(p=1.0, knots=4, generator=gen(seed))(x) * std + mean
        assert torch.allclose(out[0], out[1], atol=1e-6) and torch.allclose(out[0], out[2], atol=1e-6)
        levels = [float(out[0][grey == v].unique().mean()) for v in (0.0, 0.2, 0.9)]
        for v in (0.0, 0.2, 0.9):                  # each region is still one level
            assert float(out[0][grey == v].std()) < 1e-5
        assert all(0.0 <= lv <= 1.0 for lv in levels)
        seen.append(levels)
    seen = torch.tensor(seen)
    assert (seen.std(0) > 0.15).all()              # each region's level is redrawn...
    order = seen.argsort(1)
    assert len({tuple(o.tolist()) for o in order}) >= 4   # ...and not only monotonically


def test_grey_remap_reaches_the_views_and_is_checked():
    from djanet.config import get_config

    img = np.random.default_rng(2).integers(0, 256, (32, 16, 3), dtype=np.uint8)
    torch.manual_seed(0)
    for view in T.train_views((32, 16), grey_remap_p=1.0):
        out = view(img)
        assert torch.allclose(T.denormalise(out)[0], T.denormalise(out)[2], atol=1e-5)
    with pytest.raises(ValueError, match="data.grey_remap_p=1.5"):
        get_config("tiny", **{"data.grey_remap_p": 1.5})
