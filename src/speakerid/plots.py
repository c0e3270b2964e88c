"""Every figure speakerid draws (matplotlib, off-screen)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from speakerid.corpus import Corpus
from speakerid.features import FeatureConfig


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_mfcc_grid(corpus: Corpus, out: str | Path, features: FeatureConfig | None = None, seed: int = 0,
                   split: str = "train") -> Path:
    """One MFCC panel per speaker, each of a randomly chosen chunk of that speaker (the report's classic figure)."""
    import torch

    from speakerid.features import build_frontend

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
