"""plots: what a reader of each figure must be able to see."""

from __future__ import annotations

import numpy as np
from PIL import Image

from speakerid.calibration import det_curve
from speakerid.corpus import Corpus
from speakerid.features import FeatureConfig
from speakerid.plots import _curves_figure, _draw_det, _mfcc_figure, _pyplot


def _det_figure(far, frr, marks=None):
    fig, ax = _pyplot().subplots(figsize=(5.5, 5.5), constrained_layout=True)
    _draw_det(ax, far, frr, marks)
    return fig


def inside(ax, points: np.ndarray) -> bool:
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    return bool(((points[:, 0] > x0) & (points[:, 0] <= x1) & (points[:, 1] > y0) & (points[:, 1] <= y1)).all())


def test_a_det_curve_with_an_eer_of_zero_stays_in_sight():
    rng = np.random.default_rng(0)
    _, far, frr = det_curve(rng.normal(0.9, 0.02, 40), rng.normal(0.4, 0.05, 200))  # perfectly separated
    fig = _det_figure(far, frr, {"EER 0.00%": (0.0, 0.0)})
    ax = fig.axes[0]
    curve, mark = ax.lines[0], ax.lines[2]
    # every point lies inside the frame, off its edge (rates of 0 on their own labelled line)
    assert inside(ax, curve.get_xydata()) and inside(ax, mark.get_xydata())
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "0" and ax.get_xticks()[0] == mark.get_xydata()[0, 0]
    _pyplot().close(fig)


def test_det_tick_labels_do_not_overlap():
    rng = np.random.default_rng(1)
    _, far, frr = det_curve(rng.normal(0.8, 0.05, 300), rng.normal(0.5, 0.1, 3000))
    fig = _det_figure(far, frr)
    fig.canvas.draw()
    ax = fig.axes[0]
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        boxes = [label.get_window_extent() for label in labels if label.get_text()]
        for a, b in zip(boxes, boxes[1:]):
            assert not a.overlaps(b), (a, b)
    _pyplot().close(fig)


def test_training_curves_have_whole_epoch_ticks():
    for epochs in (3, 5, 15):
        history = [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.5, "val_loss": 1 / e, "val_acc": 0.5}
                   for e in range(1, epochs + 1)]
        fig = _curves_figure(history)
        fig.canvas.draw()
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
        _pyplot().close(fig)


def test_the_mfcc_figure_leaves_out_coefficient_0_and_has_a_colour_bar(small_corpus):
    corpus = Corpus.open(small_corpus)
    fig = _mfcc_figure(corpus, FeatureConfig(n_mfcc=20))
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == len(corpus.labels)
    assert all(ax.images[0].get_array().shape[0] == 19 for ax in panels)  # coefficients 1-19
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1
    limits = {ax.images[0].get_clim() for ax in panels}
    assert len(limits) == 1  # one scale for every panel: the bar reads them all
    _pyplot().close(fig)
