"""Plot helpers for the book: each returns a matplotlib Figure and never shows or saves it.

The notebooks decide what to display; tests can draw on a headless backend. Images may be
given as file paths, uint8 HxWxC arrays, PIL images or CHW float tensors normalised with
the ImageNet statistics (the training transforms' output).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .data import transforms

IMAGENET_MEAN = np.array(transforms.IMAGENET_MEAN)   # what the training transforms normalise with
IMAGENET_STD = np.array(transforms.IMAGENET_STD)
MODALITY_COLORS = {"visible": "#e6a23c", "infrared": "#4a6fd1"}
MATCH_COLOR, MISS_COLOR = "#2ca02c", "#d62728"


def to_image(img: Any, denormalize: bool = True) -> np.ndarray:
    """An HxWx3 float array in [0, 1] from a path, PIL image, uint8 array or CHW tensor."""
    if isinstance(img, (str, bytes)) or hasattr(img, "__fspath__"):
        from PIL import Image
        with Image.open(img) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    if hasattr(img, "detach"):  # torch tensor
        img = img.detach().cpu().float().numpy()
    if hasattr(img, "mode") and hasattr(img, "convert"):  # PIL
        return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
        if a.dtype.kind == "f" and denormalize:
            a = a * IMAGENET_STD[: a.shape[-1]] + IMAGENET_MEAN[: a.shape[-1]]
    if a.dtype == np.uint8:
        a = a / 255.0
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.clip(a.astype(np.float64), 0.0, 1.0)


def _figure(nrows: int, ncols: int, cell: tuple[float, float], **kw: Any) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(cell[0] * ncols, cell[1] * nrows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False, **kw))
    return fig, axes


def _off(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def image_grid(images: Sequence[Sequence[Any]], row_labels: Sequence[str] | None = None,
               col_labels: Sequence[str] | None = None, titles: Sequence[Sequence[str]] | None = None,
               cell: tuple[float, float] = (1.1, 2.1), suptitle: str | None = None) -> Figure:
    """A grid of images given row by row (rows may be ragged; empty cells stay blank)."""
    nrows = len(images)
    ncols = max((len(r) for r in images), default=1)
    if nrows == 0:
        raise ValueError("image_grid needs at least one row of images")
    fig, axes = _figure(nrows, ncols, cell)
    for r in range(nrows):
        for c in range(ncols):
            ax = axes[r, c]
            _off(ax)
            if c < len(images[r]):
                ax.imshow(to_image(images[r][c]))
                if titles is not None and c < len(titles[r]):
                    ax.set_title(titles[r][c], fontsize=7)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], fontsize=8)
            if r == 0 and col_labels is not None and c < len(col_labels):
                ax.set_title(col_labels[c], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def camera_grid(image_lists: Sequence[Any], per_camera: int = 6, seed: int = 0,
                suptitle: str | None = None) -> Figure:
    """One row per (modality, camera) of random images from ImageList objects (paths, cams, modality)."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for il in image_lists:
        cams = np.asarray(il.cams)
        for cam in np.unique(cams):
            idx = np.flatnonzero(cams == cam)
            pick = rng.choice(idx, min(per_camera, len(idx)), replace=False)
            rows.append([il.paths[i] for i in sorted(pick)])
            labels.append(f"{il.modality}\ncam{cam}")
    return image_grid(rows, row_labels=labels, suptitle=suptitle)


def view_grid(originals: Sequence[Any], views: Mapping[str, Sequence[Any]],
              suptitle: str | None = None) -> Figure:
    """Rows: source images; columns: the original then each named augmented view of it."""
    names = list(views)
    rows = [[orig] + [views[n][i] for n in names] for i, orig in enumerate(originals)]
    return image_grid(rows, col_labels=["original"] + names, suptitle=suptitle)


def _metric_group(col: str) -> str:
    c = col.lower()
    if c in ("lr", "head_lr") or c.endswith("lr") or "learning_rate" in c:
        return "learning rate"
    if "acc" in c:
        return "training accuracy"
    if any(k in c for k in ("r1", "rank", "map", "minp")):
        return "validation retrieval"
    if "loss" in c or c in ("id", "triplet", "complementary", "total"):
        return "loss"
    return "other"


def training_curves(history: pd.DataFrame, x: str = "epoch",
                    groups: Mapping[str, Sequence[str]] | None = None) -> Figure:
    """Seaborn line plots of a training history, one panel per group of columns.

    By default columns are grouped by name: losses, training accuracy, learning rate and
    validation retrieval numbers; pass `groups` (title -> columns) to choose.
    """
    import seaborn as sns

    if x not in history.columns:
        history = history.reset_index().rename(columns={"index": x})
    if groups is None:
        auto: dict[str, list[str]] = {}
        for col in history.columns:
            if col == x or not pd.api.types.is_numeric_dtype(history[col]) or history[col].isna().all():
                continue
            auto.setdefault(_metric_group(col), []).append(col)
        order = ["loss", "training accuracy", "learning rate", "validation retrieval", "other"]
        groups = {k: auto[k] for k in order if k in auto}
    if not groups:
        raise ValueError(f"history has no numeric columns to plot besides {x!r}: {list(history.columns)}")
    fig, axes = _figure(1, len(groups), (4.0, 3.0))
    for ax, (title, cols) in zip(axes[0], groups.items()):
        missing = [c for c in cols if c not in history.columns]
        if missing:
            raise KeyError(f"history has no column(s) {missing}; columns: {list(history.columns)}")
        long = history[[x, *cols]].melt(id_vars=x, var_name="metric", value_name="value").dropna()
        sns.lineplot(data=long, x=x, y="value", hue="metric", marker="o", ax=ax)
        ax.set_title(title)
        ax.set_ylabel("")
        if title == "learning rate":
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    return fig


def cmc_curves(curves: Mapping[str, Sequence[float]], max_rank: int | None = None,
               title: str = "CMC") -> Figure:
    """Cumulative matching curves (fractions or percentages) named by label."""
    fig, axes = _figure(1, 1, (5.0, 3.6))
    ax = axes[0, 0]
    for label, cmc in curves.items():
        y = np.asarray(cmc, dtype=float)
        if y.max() <= 1.0:
            y = 100.0 * y
        if max_rank is not None:
            y = y[:max_rank]
        ax.plot(np.arange(1, len(y) + 1), y, marker=".", label=label)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def rank_list(distmat: np.ndarray, query_paths: Sequence[str], gallery_paths: Sequence[str],
              q_pids: np.ndarray, g_pids: np.ndarray, queries: Sequence[int], k: int = 10,
              keep: np.ndarray | None = None, suptitle: str | None = None) -> Figure:
    """Each chosen query with its top-k gallery images; true matches framed green, others red.

    `keep` (n_query, n_gallery) bool marks the gallery entries the protocol keeps for each
    query (removal rules); by default all are kept.
    """
    rows, titles, colors = [], [], []
    for q in queries:
        order = np.argsort(distmat[q], kind="stable")
        if keep is not None:
            order = order[keep[q][order]]
        top = order[:k]
        rows.append([query_paths[q]] + [gallery_paths[g] for g in top])
        titles.append([f"query id {q_pids[q]}"] + [f"{i + 1}: {distmat[q, g]:.2f}" for i, g in enumerate(top)])
        colors.append([None] + [MATCH_COLOR if g_pids[g] == q_pids[q] else MISS_COLOR for g in top])
    fig = image_grid(rows, titles=titles, suptitle=suptitle)
    ncols = max(len(r) for r in rows)
    for r, row_colors in enumerate(colors):
        for c, color in enumerate(row_colors):
            if color is None:
                continue
            ax = fig.axes[r * ncols + c]
            for s in ax.spines.values():
                s.set_visible(True)
                s.set_edgecolor(color)
                s.set_linewidth(3)
    return fig


def distance_distributions(pairs: pd.DataFrame, title: str | None = None) -> Figure:
    """Histograms of pair distances: same vs different identity, within vs across modality.

    `pairs` is the frame of `djanet.gap.pair_distances` (distance, identity, modality).
    """
    import seaborn as sns

    fig, axes = _figure(1, 2, (4.2, 3.2), sharex=True)
    for ax, rel in zip(axes[0], ("within", "cross")):
        sub = pairs[pairs["modality"] == rel]
        if len(sub):
            sns.histplot(data=sub, x="distance", hue="identity", hue_order=["same", "different"],
                         stat="density", common_norm=False, element="step", bins=40, ax=ax)
        ax.set_title(f"{rel}-modality pairs")
    if title:
        fig.suptitle(title)
    return fig


def umap_embedding(features: np.ndarray, seed: int = 0, n_neighbors: int = 15,
                   min_dist: float = 0.1) -> np.ndarray:
    """2-D UMAP embedding (cosine metric) of features; deterministic for a seed."""
    import umap

    n_neighbors = max(2, min(n_neighbors, len(features) - 1))
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric="cosine",
                        random_state=seed, n_jobs=1)
    return reducer.fit_transform(np.asarray(features, dtype=np.float32))


def umap_scatter(embeddings: Mapping[str, tuple[np.ndarray, np.ndarray, Sequence[str]]],
                 max_ids_coloured: int = 20) -> Figure:
    """Rows: named embeddings (emb (N, 2), pids, modality); columns: coloured by modality, by identity.

    Identity colours cycle through a qualitative palette for the first `max_ids_coloured`
    identities (others grey; ten or fewer get tab10's distinct colours, more tab20's light/dark
    pairs); marker shape gives the modality in both panels.
    """
    import matplotlib as mpl

    fig, axes = _figure(len(embeddings), 2, (4.2, 3.6))
    cmap = mpl.colormaps["tab10" if max_ids_coloured <= 10 else "tab20"]
    for r, (name, (emb, pids, modality)) in enumerate(embeddings.items()):
        emb, pids, mod = np.asarray(emb), np.asarray(pids), np.asarray(modality).astype(str)
        ax_m, ax_i = axes[r]
        for m, color in MODALITY_COLORS.items():
            sel = mod == m
            ax_m.scatter(emb[sel, 0], emb[sel, 1], s=6, c=color, label=m, alpha=0.7, linewidths=0)
        ax_m.legend(fontsize=7, markerscale=2)
        ax_m.set_title(f"{name}: by modality", fontsize=9)
        ids = np.unique(pids)
        shown = {pid: cmap(i % cmap.N) for i, pid in enumerate(ids[:max_ids_coloured])}
        colors = np.array([shown.get(p, (0.8, 0.8, 0.8, 0.5)) for p in pids])
        size = 8 if len(emb) > 300 else 24      # a close-up of a few people: markers one can tell apart
        for m, marker in (("visible", "o"), ("infrared", "^")):
            sel = mod == m
            ax_i.scatter(emb[sel, 0], emb[sel, 1], s=size, c=colors[sel], marker=marker, linewidths=0,
                         label=m)
        ax_i.legend(fontsize=7, markerscale=2)
        ax_i.set_title(f"{name}: by identity (o visible, ^ infrared)", fontsize=9)
        for ax in (ax_m, ax_i):
            _off(ax)
    return fig


def activation_pairs(query_images: Sequence[Any], gallery_images: Sequence[Any],
                     maps: Mapping[str, tuple[Any, Any, Any]], alpha: float = 0.5,
                     suptitle: str | None = None) -> Figure:
    """Query/gallery pairs with each model's activation maps overlaid (djanet.cam).

    `maps[model] = (query maps, gallery maps, similarities)` as `pair_activation_maps` returns
    them, maps (B, H, W) in [0, 1] at the images' size.  One row per model; each pair takes
    two columns (query, gallery), titled with the pair's cosine similarity for that model.
    """
    n = len(query_images)
    if len(gallery_images) != n:
        raise ValueError(f"{n} query images but {len(gallery_images)} gallery images; pairs need both")
    fig, axes = _figure(len(maps), 2 * n, (1.2, 2.4))
    for r, (name, (q_maps, g_maps, sims)) in enumerate(maps.items()):
        for p in range(n):
            for c, (img, cam, side) in enumerate(((query_images[p], q_maps[p], "query"),
                                                  (gallery_images[p], g_maps[p], "gallery"))):
                ax = axes[r, 2 * p + c]
                ax.imshow(to_image(img))
                ax.imshow(np.asarray(cam), cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
                _off(ax)
                ax.set_title(f"{side} {p + 1}" + (f"\ncos {float(sims[p]):.2f}" if c == 1 else ""), fontsize=7)
        axes[r, 0].set_ylabel(name, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def study_bars(frame: pd.DataFrame, metrics: Sequence[str], label: str = "label",
               ncols: int = 2) -> Figure:
    """One panel per metric: a bar per variant at the mean over seeds, its error bar ± 1 std (ddof=1),
    and each seed's value as a dot, so a reader sees the spread behind every bar.

    `frame` holds one row per run (`djanet.study`'s study.csv): a `label` column and the metrics.
    """
    import seaborn as sns

    missing = [c for c in (label, *metrics) if c not in frame.columns]
    if missing:
        raise KeyError(f"study frame has no column(s) {missing}; columns: {list(frame.columns)}")
    order = list(dict.fromkeys(frame[label]))
    nrows = -(-len(metrics) // ncols)
    fig, axes = _figure(nrows, min(ncols, len(metrics)), (3.2, 0.45 * len(order) + 1.2), sharey=True)
    for ax, metric in zip(axes.flat, metrics):
        sns.barplot(data=frame, y=label, x=metric, order=order, errorbar="sd", capsize=0.3,
                    color="#9ecae1", ax=ax)
        sns.stripplot(data=frame, y=label, x=metric, order=order, color="#08306b", size=4, ax=ax)
        ax.set_title(metric)
        ax.set_xlabel("")
        ax.set_ylabel("")
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    return fig


def paired_differences(summary: pd.DataFrame, metrics: Sequence[str], baseline_label: str = "AGW",
                       ncols: int = 2) -> Figure:
    """One panel per metric: each variant's mean paired difference to the baseline with its
    confidence interval, and the zero line; intervals that exclude zero are drawn dark.

    `summary` is `djanet.study`'s summary.csv (label, metric, diff, diff_low, diff_high,
    excludes_zero, paired_n); rows without a paired difference (the baseline) are left out.
    """
    rows = summary[(summary["paired_n"] > 0) & summary["metric"].isin(metrics)]
    if rows.empty:
        raise ValueError(f"the summary has no paired differences for {list(metrics)} (no baseline runs?)")
    order = list(dict.fromkeys(rows["label"]))
    nrows = -(-len(metrics) // ncols)
    fig, axes = _figure(nrows, min(ncols, len(metrics)), (3.2, 0.45 * len(order) + 1.2), sharey=True)
    for ax, metric in zip(axes.flat, metrics):
        sub = rows[rows["metric"] == metric].set_index("label").reindex(order)
        y = np.arange(len(order))
        for yi, (_, r) in zip(y, sub.iterrows()):
            color = "#08306b" if bool(r["excludes_zero"]) else "#969696"
            if np.isfinite(r["diff_low"]):
                ax.plot([r["diff_low"], r["diff_high"]], [yi, yi], color=color, lw=2)
            ax.plot([r["diff"]], [yi], "o", color=color)
        ax.axvline(0.0, color="#d62728", lw=1, ls="--")
        ax.set_yticks(y, order)
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.set_title(metric)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(f"variant minus {baseline_label}, seed by seed: mean and 95% interval")
    return fig
