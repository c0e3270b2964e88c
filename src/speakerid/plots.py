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


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    _pyplot().close(fig)
    return out


def plot_mfcc_grid(corpus: "Corpus", out: str | Path, features: "FeatureConfig | None" = None, seed: int = 0,
                   split: str = "train") -> Path:
    """One MFCC panel per speaker, each of a randomly chosen chunk of that speaker (the report's classic figure)."""
    return _save(_mfcc_figure(corpus, features, seed, split), out)


def _mfcc_figure(corpus: "Corpus", features: "FeatureConfig | None" = None, seed: int = 0, split: str = "train"):
    """The figure of `plot_mfcc_grid`.

    Coefficient 0 (the frame's log energy) is left out: it is an order of magnitude larger than
    the others and would take the whole colour scale. Every panel shares one scale, shown by the
    colour bar, so that panels compare.
    """
    import torch

    from speakerid.features import FeatureConfig, build_frontend

    features = features or FeatureConfig()
    frontend = build_frontend(features)
    rng = np.random.default_rng(seed)
    in_split = corpus.split_indices(split)
    n = len(corpus.labels)
    panels: list[np.ndarray | None] = []
    for label in range(n):
        own = in_split[corpus.chunk_label[in_split] == label]
        if len(own) == 0:
            panels.append(None)
            continue
        chunk = corpus.chunk_audio(int(rng.choice(own)))
        with torch.no_grad():
            panels.append(frontend(torch.from_numpy(chunk))[0].numpy()[1:])
    drawn = [p for p in panels if p is not None]
    # MFCCs are signed: a scale centred on 0, its limit robust (a click in one chunk does not flatten the others)
    limit = float(np.percentile(np.abs(np.concatenate([p.ravel() for p in drawn])), 98)) if drawn else 1.0

    plt = _pyplot()
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols + 1, 2.4 * rows), squeeze=False, constrained_layout=True)
    seconds = corpus.chunk_samples / corpus.sample_rate
    image = None
    for label, ax in enumerate(axes.flat):
        if label >= n:
            ax.axis("off")
            continue
        ax.set_title(corpus.labels[label], fontsize=9)
        if panels[label] is None:
            ax.text(0.5, 0.5, f"no {split} chunks", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([]), ax.set_yticks([])
            continue
        mfcc = panels[label]
        image = ax.imshow(mfcc, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                          extent=(0, seconds, 0.5, mfcc.shape[0] + 0.5))
        ax.set_xlabel("time (s)", fontsize=8)
        ax.set_ylabel("coefficient", fontsize=8)
        ax.tick_params(labelsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="MFCC value (the largest 2 % clipped)")
    fig.suptitle(f"MFCCs 1-{features.n_features - 1} (coefficient 0, the log energy, left out) "
                 f"of one random {seconds:g}-s {split} chunk per speaker")
    return fig


def plot_curves(history: list[dict], out: str | Path) -> Path:
    """Loss and accuracy per epoch, train and validation side by side."""
    return _save(_curves_figure(history), out)


def _curves_figure(history: list[dict]):
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "acc")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [row[f"{split}_{metric}"] for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [float("nan") if v is None else v for v in values], style, ms=3,
                        label="validation" if split == "val" else split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("cross-entropy" if metric == "loss" else "accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    acc_ax.set_ylim(0, 1.02)
    return fig


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
    return _save(fig, out)


def plot_calibration(result, out: str | Path) -> Path:
    """What `calibrate` measured: per length of audio, the thresholds and the share of enrolled voices
    named right and of strangers rejected at them; and the pairwise DET curve."""
    from speakerid.calibration import det_curve

    plt = _pyplot()
    report = result.report
    groups = report["by_length"]
    fig, (open_ax, det_ax) = plt.subplots(1, 2, figsize=(11, 5), constrained_layout=True)
    seconds = [g["seconds"] for g in groups]
    simulated = {0: "", report["stranger_trials"]: " (simulated)"}.get(report["simulated_stranger_trials"], " (and simulated)")
    open_ax.plot(seconds, [g["named_right"] for g in groups], "o-", label="enrolled voices named right")
    open_ax.plot(seconds, [g["strangers_rejected"] for g in groups], "s-", label="strangers rejected" + simulated)
    open_ax.set_xscale("log")
    open_ax.set_xticks(seconds, [f"{s:.1f}" for s in seconds])
    open_ax.xaxis.set_minor_formatter("")
    open_ax.set_xlabel("length of the audio identified (s)")
    open_ax.set_ylabel("share of trials")
    open_ax.set_ylim(0, 1.02)
    open_ax.grid(alpha=0.3)
    threshold_ax = open_ax.twinx()
    threshold_ax.plot(seconds, [g["identify_threshold"] for g in groups], "^:", color="grey", label="threshold")
    threshold_ax.set_ylabel("identification threshold (fused score)", color="grey")
    lines = open_ax.get_legend_handles_labels()
    more = threshold_ax.get_legend_handles_labels()
    open_ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower right")
    open_ax.set_title(f"{report['speakers']} enrolled speakers, {report['enrolled_trials']} enrolled and "
                      f"{report['stranger_trials']} stranger trials ({report['operating_point']})", fontsize=9)
    curve = result.curve
    _, far, frr = det_curve(curve["targets"], curve["nontargets"])
    marks = {f"EER {report['eer']:.2%} (threshold {report['eer_threshold']:.3f})": (report["eer"], report["eer"])}
    _draw_det(det_ax, far, frr, marks, f"pairwise verification, {' + '.join(result.encoders)}")
    return _save(fig, out)


def _draw_det(ax, far: np.ndarray, frr: np.ndarray, marks: dict[str, tuple[float, float]] | None = None,
              title: str = "") -> None:
    """A DET curve on `ax`: miss rate against false-accept rate on probit (normal-deviate) axes; `marks`
    labels (far, frr) points.

    A rate of 0 has no probit: it is drawn on a line of its own, labelled "0", below the smallest
    rate the trials could measure, so that a curve with an EER of 0 runs along it in sight
    rather than vanishing into the frame. Rates above 90 % are drawn at the top edge.
    """
    from statistics import NormalDist

    ticks = np.array([0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8])  # 0.2 % and 0.5 % only as minor ticks
    high = 0.9
    rates = np.concatenate([np.ravel(far), np.ravel(frr), [v for mark in (marks or {}).values() for v in mark]])
    smallest = min([0.001, *rates[rates > 0]])
    zero = min(0.0002, smallest / 3)  # where rates of 0 lie
    probit = np.vectorize(NormalDist().inv_cdf)

    def axis(rate):
        rate = np.asarray(rate, dtype=float)
        return np.where(rate > 0, probit(np.clip(rate, zero, high)), probit(zero))

    ax.plot(axis(far), axis(frr), "-", lw=1.5, label="DET", clip_on=False)
    ax.plot(axis([zero, high]), axis([zero, high]), ":", color="grey", lw=0.8, label="FAR = miss rate")
    for (label, (x, y)), style in zip((marks or {}).items(), ("o", "s", "^", "D", "v")):
        ax.plot(axis(x), axis(y), style, ms=7, label=label, clip_on=False)
    positions = np.concatenate([[probit(zero)], axis(ticks)])
    labels = ["0"] + [f"{t:.1%}".replace(".0%", "%") for t in ticks]
    minor = axis([0.002, 0.005])
    for set_ticks in (ax.set_xticks, ax.set_yticks):
        set_ticks(positions, labels, fontsize=8)
        set_ticks(minor, minor=True)
    edge = probit(zero) - 0.15
    ax.set_xlim(edge, probit(high))
    ax.set_ylim(edge, probit(high))
    ax.set_xlabel("false-accept rate")
    ax.set_ylabel("miss rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title, fontsize=9)


# --- diarization (diarize) -----------------------------------------------------------------------


def plot_timeline(recordings: list, out: str | Path) -> Path:
    """Who spoke when: one row of coloured bars per speaker, a panel per recording (speakerid.diarize.Diarization)."""
    plt = _pyplot()
    labels = sorted({t.speaker for r in recordings for t in r.turns}, key=lambda s: (s.startswith("unknown-"), s))
    colours = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    rows = [max(1, len({t.speaker for t in r.turns})) for r in recordings]
    fig, axes = plt.subplots(len(recordings), 1, figsize=(10, 0.9 + 0.45 * sum(rows) + 0.5 * len(recordings)),
                             constrained_layout=True, squeeze=False)
    for ax, result in zip(axes[:, 0], recordings):
        speakers = sorted({t.speaker for t in result.turns}, key=lambda s: (s.startswith("unknown-"), s))
        for row, speaker in enumerate(speakers):
            bars = [(t.start, t.end - t.start) for t in result.turns if t.speaker == speaker]
            ax.broken_barh(bars, (row - 0.4, 0.8), color=colours[speaker])
        ax.set_yticks(range(len(speakers)), speakers, fontsize=8)
        ax.set_ylim(-0.6, max(len(speakers), 1) - 0.4)
        ax.set_xlim(0, max(result.seconds, 1e-3))
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(f"{Path(result.file).name}: {len(speakers)} speakers" + ("" if result.turns else " (no speech found)"),
                     fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("seconds")
    return _save(fig, out)


# --- compare ---------------------------------------------------------------------------------------


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
    return _save(fig, out)


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
    return _save(fig, out)
