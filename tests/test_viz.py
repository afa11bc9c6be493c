"""Plot helpers draw on a headless canvas and return figures with the expected panels."""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from djanet import viz
from djanet.gap import pair_distances


@dataclass
class _List:
    paths: list
    cams: np.ndarray
    modality: str


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def _render(fig: Figure) -> None:
    fig.canvas.draw()


def test_to_image_undoes_imagenet_normalisation():
    rgb = torch.full((3, 4, 2), 0.5)
    norm = (rgb - torch.tensor(viz.IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(viz.IMAGENET_STD).view(3, 1, 1)
    out = viz.to_image(norm.float())
    assert out.shape == (4, 2, 3)
    np.testing.assert_allclose(out, 0.5, atol=1e-6)
    assert viz.to_image(np.full((4, 2), 255, np.uint8)).shape == (4, 2, 3)


def test_camera_and_view_grids(images):
    lists = [_List(images[:4], np.array([1, 1, 2, 2]), "visible"), _List(images[4:], np.array([3, 3]), "infrared")]
    fig = viz.camera_grid(lists, per_camera=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * 2
    assert fig.axes[4].get_ylabel() == "infrared\ncam3"
    t = torch.zeros(3, 32, 16)
    fig = viz.view_grid(images[:2], {"VIS-1": [t, t], "VIS-2": [t, t], "IR-1": [t, t], "IR-2": [t, t]})
    assert len(fig.axes) == 2 * 5 and fig.axes[1].get_title() == "VIS-1"
    _render(fig)


def test_training_curves_groups_columns():
    h = pd.DataFrame({"epoch": [1, 2, 3], "loss_id": [3.0, 2.0, 1.0], "loss_total": [4.0, 3.0, 2.0],
                      "acc": [0.1, 0.3, 0.5], "lr": [0.001, 0.01, 0.01], "val_r1": [5.0, 9.0, 12.0]})
    fig = viz.training_curves(h)
    assert [a.get_title() for a in fig.axes] == ["loss", "training accuracy", "learning rate",
                                                "validation retrieval"]
    _render(fig)
    with pytest.raises(KeyError, match="no column"):
        viz.training_curves(h, groups={"x": ["nope"]})


def test_cmc_and_rank_list(images):
    fig = viz.cmc_curves({"a": [0.2, 0.5, 1.0], "b": [10.0, 40.0, 90.0]})
    ys = [line.get_ydata() for line in fig.axes[0].get_lines()]
    np.testing.assert_allclose(ys[0], [20, 50, 100])
    d = np.array([[0.1, 0.5, 0.3, 0.9], [0.4, 0.2, 0.8, 0.1]])
    fig = viz.rank_list(d, images[:2], images[2:], np.array([1, 2]), np.array([1, 2, 1, 3]), [0, 1], k=3)
    assert len(fig.axes) == 2 * 4
    # query 0 ranks gallery 0 (id 1, match), 2 (id 1, match), 1 (id 2, miss)
    assert [fig.axes[c].spines["top"].get_edgecolor()[:3] for c in (1, 3)] == [
        matplotlib.colors.to_rgb(viz.MATCH_COLOR), matplotlib.colors.to_rgb(viz.MISS_COLOR)]
    keep = np.ones_like(d, dtype=bool)
    keep[1, 3] = False
    fig = viz.rank_list(d, images[:2], images[2:], np.array([1, 2]), np.array([1, 2, 1, 3]), [1], k=2, keep=keep)
    assert fig.axes[1].get_title().startswith("1: 0.20")
    _render(fig)


def test_distance_distributions_and_umap_scatter():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8))
    pids = np.repeat(np.arange(10), 4)
    mod = np.tile(["visible", "visible", "infrared", "infrared"], 10)
    fig = viz.distance_distributions(pair_distances(x, pids, mod, max_pairs=100))
    assert [a.get_title() for a in fig.axes[:2]] == ["within-modality pairs", "cross-modality pairs"]
    emb = rng.normal(size=(40, 2))
    fig = viz.umap_scatter({"untrained": (emb, pids, mod), "DJANet": (emb, pids, mod)})
    assert len(fig.axes) == 4
    _render(fig)


@pytest.mark.slow
def test_umap_embedding_shape_and_determinism():
    x = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    a = viz.umap_embedding(x, seed=0, n_neighbors=10)
    assert a.shape == (60, 2)
    np.testing.assert_allclose(a, viz.umap_embedding(x, seed=0, n_neighbors=10), atol=1e-5)


def test_study_bars_show_the_mean_the_sample_std_and_every_seed():
    frame = pd.DataFrame({"label": ["A"] * 3 + ["B"] * 3, "R1": [1.0, 2.0, 3.0, 4.0, 6.0, 8.0],
                          "mAP": [5.0] * 6, "mINP": [1.0] * 6})
    fig = viz.study_bars(frame, ["R1", "mAP", "mINP"])
    _render(fig)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["R1", "mAP", "mINP"] and len(fig.axes) == 4
    r1 = axes[0]
    assert sorted(round(p.get_width(), 6) for p in r1.patches) == [2.0, 6.0]           # bars at the means
    spans = {(round(np.nanmin(line.get_xdata()), 6), round(np.nanmax(line.get_xdata()), 6)) for line in r1.lines}
    assert spans == {(1.0, 3.0), (4.0, 8.0)}                                            # ± std with ddof=1
    dots = np.concatenate([c.get_offsets()[:, 0] for c in r1.collections])
    assert sorted(dots.tolist()) == [1.0, 2.0, 3.0, 4.0, 6.0, 8.0]
    with pytest.raises(KeyError, match="cross_share"):
        viz.study_bars(frame, ["cross_share"])


def test_paired_differences_draw_each_interval_and_the_zero_line():
    from djanet.study import summary_frame

    rows = [{"variant": v, "label": v.upper(), "seed": s, "R1": base + d}
            for v, base, ds in (("agw", 10.0, [0, 0, 0]), ("up", 10.0, [2, 3, 4]), ("flat", 10.0, [1, 2, 3]))
            for s, d in enumerate(ds)]
    summary = summary_frame(pd.DataFrame(rows))
    fig = viz.paired_differences(summary, ["R1"], baseline_label="AGW")
    _render(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["UP", "FLAT"]              # the baseline is left out
    segments = {tuple(np.round(line.get_xdata(), 3)): line.get_color() for line in ax.lines
                if len(line.get_xdata()) == 2 and line.get_xdata()[0] != line.get_xdata()[1]}
    assert segments[(0.516, 5.484)] == "#08306b" and segments[(-0.484, 4.484)] == "#969696"
    assert any(tuple(line.get_xdata()) == (0.0, 0.0) for line in ax.lines)            # the zero line
    with pytest.raises(ValueError, match="no paired differences"):
        viz.paired_differences(summary[summary["variant"] == "agw"], ["R1"])
