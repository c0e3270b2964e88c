"""Every figure speakerid draws (matplotlib, off-screen)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from speakerid.corpus import Corpus
    from speakerid.features import FeatureConfig


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_mfcc_grid(corpus: "Corpus", out: str | Path, features: "FeatureConfig | None" = None, seed: int = 0,
                   split: str = "train") -> Path:
    """One MFCC panel per speaker, each of a randomly chosen chunk of that speaker (the report's classic figure)."""
    import torch

    from speakerid.features import FeatureConfig, build_frontend

    features = features or FeatureConfig()
    frontend = build_frontend(features)
    rng = np.random.default_rng(seed)
    in_split = corpus.split_indices(split)
    plt = _pyplot()
    n = len(corpus.labels)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, constrained_layout=True)
    seconds = corpus.chunk_samples / corpus.sample_rate
    for label, ax in enumerate(axes.flat):
        if label >= n:
            ax.axis("off")
            continue
        own = in_split[corpus.chunk_label[in_split] == label]
        ax.set_title(corpus.labels[label], fontsize=9)
        if len(own) == 0:
            ax.text(0.5, 0.5, f"no {split} chunks", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([]), ax.set_yticks([])
            continue
        chunk = corpus.chunk_audio(int(rng.choice(own)))
        with torch.no_grad():
            mfcc = frontend(torch.from_numpy(chunk))[0].numpy()
        # c0 dwarfs the other coefficients; robust limits keep the speaker's structure visible.
        low, high = np.percentile(mfcc, [2, 98])
        ax.imshow(mfcc, origin="lower", aspect="auto", cmap="viridis", vmin=low, vmax=high,
                  extent=(0, seconds, 0, mfcc.shape[0]))
        ax.set_xlabel("time (s)", fontsize=8)
        ax.set_ylabel("MFCC", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{features.n_features} MFCCs of one random {seconds:g}-s {split} chunk per speaker")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_curves(history: list[dict], out: str | Path) -> Path:
    """Loss and accuracy per epoch, train and validation side by side."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "acc")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [row[f"{split}_{metric}"] for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [float("nan") if v is None else v for v in values], style, ms=3,
                        label="validation" if split == "val" else split)
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy" if metric == "loss" else "accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    acc_ax.set_ylim(0, 1.02)
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_confusion(confusion: np.ndarray, labels: list[str], out: str | Path, title: str = "") -> Path:
    """Confusion matrix, rows normalised to recall; counts written in the cells when there is room."""
    plt = _pyplot()
    n = len(labels)
    totals = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=float), where=totals > 0)
    side = min(16, 3 + 0.45 * n)
    fig, ax = plt.subplots(figsize=(side + 1.5, side), constrained_layout=True)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels, rotation=90, fontsize=7 if n > 20 else 9)
    ax.set_yticks(ticks, labels, fontsize=7 if n > 20 else 9)
    ax.set_xlabel("predicted speaker")
    ax.set_ylabel("true speaker")
    if n <= 30:
        for i, j in zip(*np.nonzero(confusion)):
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true speaker's chunks")
    ax.set_title(title)
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_det(far: np.ndarray, frr: np.ndarray, out: str | Path, marks: dict[str, tuple[float, float]] | None = None,
             title: str = "") -> Path:
    """DET curve: miss rate against false-accept rate on probit (normal-deviate) axes; `marks` labels (far, frr) points."""
    from statistics import NormalDist

    plt = _pyplot()
    ticks = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8])
    low, high = 0.0005, 0.9
    probit = np.vectorize(NormalDist().inv_cdf)

    def axis(rate):
        # Rates of 0 or 1 have no probit: they are drawn on the plot's edge.
        return probit(np.clip(np.asarray(rate, dtype=float), low, high))

    fig, ax = plt.subplots(figsize=(5.5, 5.5), constrained_layout=True)
    ax.plot(axis(far), axis(frr), "-", lw=1.5, label="DET")
    ax.plot(axis([low, high]), axis([low, high]), ":", color="grey", lw=0.8, label="FAR = miss rate")
    for (label, (x, y)), style in zip((marks or {}).items(), ("o", "s", "^", "D", "v")):
        ax.plot(axis(x), axis(y), style, ms=7, label=label)
    labels = [f"{t:.1%}".replace(".0%", "%") for t in ticks]
    ax.set_xticks(axis(ticks), labels, fontsize=8)
    ax.set_yticks(axis(ticks), labels, fontsize=8)
    ax.set_xlim(axis(low), axis(high))
    ax.set_ylim(axis(low), axis(high))
    ax.set_xlabel("false-accept rate")
    ax.set_ylabel("miss rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title, fontsize=9)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _cell_styles(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """One look per (model, features): colour by model, line and marker by features."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    kinds = list(dict.fromkeys(r["features"] for r in rows))
    lines, markers = ("-", "--", ":", "-."), ("o", "s", "^", "D")
    return {(m, f): {"color": f"C{models.index(m) % 10}", "linestyle": lines[kinds.index(f) % 4],
                     "marker": markers[kinds.index(f) % 4], "label": f"{m} / {f}"}
            for m in models for f in kinds}


def plot_accuracy_by_chunk(rows: list[dict], out: str | Path, title: str = "") -> Path:
    """Test accuracy (chunks, recordings) against chunk length: one line per model and features."""
    plt = _pyplot()
    styles = _cell_styles(rows)
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.2), sharey=True, layout="constrained")
    for ax, metric, what in zip(axes, ("chunk_accuracy", "recording_accuracy"), ("chunks", "recordings")):
        for (model, kind), style in styles.items():
            mine = sorted((r["chunk_seconds"], r[metric]) for r in rows if (r["model"], r["features"]) == (model, kind))
            if mine:
                ax.plot([x for x, _ in mine], [y for _, y in mine], ms=5, **style)
        chunks = sorted({r["chunk_seconds"] for r in rows})
        ax.set_xticks(chunks, [f"{c:g}" for c in chunks])
        ax.set_xlabel("chunk length (s)")
        ax.set_title(f"test accuracy over {what}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="outside right upper")
    if title:
        fig.suptitle(title, fontsize=10)
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_accuracy_by_time(rows: list[dict], out: str | Path, title: str = "") -> Path:
    """Validation accuracy after each epoch against training time, one panel per chunk length.

    Each row carries its run's `curve`: [training seconds, validation accuracy] per epoch.
    """
    plt = _pyplot()
    styles = _cell_styles(rows)
    chunks = sorted({r["chunk_seconds"] for r in rows})
    fig, axes = plt.subplots(1, len(chunks), figsize=(4.2 * len(chunks) + 2.5, 4.2), sharey=True, squeeze=False,
                             layout="constrained")
    handles = {}
    for ax, chunk in zip(axes[0], chunks):
        for row in (r for r in rows if r["chunk_seconds"] == chunk):
            points = [(s, a) for s, a in row["curve"] if a is not None]
            if points:
                style = styles[(row["model"], row["features"])]
                (line,) = ax.plot([s for s, _ in points], [a for _, a in points], lw=1.4, ms=3, **style)
                handles.setdefault(style["label"], line)
        ax.set_title(f"{chunk:g}-s chunks")
        ax.set_xlabel("training time (s)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy (chunks)")
    if handles:
        fig.legend(handles.values(), handles.keys(), fontsize=8, loc="outside right upper")
    if title:
        fig.suptitle(title, fontsize=10)
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
