"""evaluate: how well a trained run identifies speakers in held-out recordings of its corpus.

Accuracy per chunk and per recording (a recording's score is the mean of its chunks'
log-probabilities, exactly as `identify` scores a file), per-speaker precision, recall and F1,
a confusion matrix and the training curves.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from speakerid import rundir
from speakerid.corpus import Corpus
from speakerid.errors import RunError
from speakerid.identify import log_probs, recording_scores
from speakerid.progress import progress_bar


def evaluate(run: str | Path, corpus: str | Path | None = None, split: str = "test", out: str | Path | None = None,
             batch_size: int = 64, device: str = "auto", progress: bool = True) -> dict:
    """Score `split` of the run's corpus (or another corpus with the same speakers and chunk length).

    Writes report.md, metrics.json, confusion.png and curves.png into `out` (default: the run
    directory) and returns the metrics.
    """
    loaded = rundir.load_run(run, device)
    corpus = Corpus.open(corpus or loaded.config["corpus"])
    if corpus.labels != loaded.labels:
        raise RunError(f"{corpus.path} holds other speakers than the run {loaded.path} was trained on")
    if abs(corpus.config.chunk_seconds - loaded.chunk_seconds) > 1e-9:
        raise RunError(f"{loaded.path} was trained on {loaded.chunk_seconds:g}-s chunks, "
                       f"{corpus.path} has {corpus.config.chunk_seconds:g}-s chunks")
    indices = corpus.split_indices(split)
    if len(indices) == 0:
        raise RunError(f"{corpus.path} has no {split} chunks to evaluate")

    scores = []
    step = batch_size * 4
    with progress_bar(f"scoring {split}", total=len(indices), enabled=progress) as advance:
        for first in range(0, len(indices), step):
            block = indices[first : first + step]
            scores.append(log_probs(loaded.model, np.stack([corpus.chunk_audio(int(i), fill=loaded.short_fill) for i in block]), batch_size))
            advance(len(block))
    chunk_lp = np.concatenate(scores)
    truth = corpus.chunk_label[indices]
    predicted = chunk_lp.argmax(axis=1)

    recordings = corpus.chunk_recording[indices]
    rec_truth, rec_pred, per_recording = [], [], []
    for r in np.unique(recordings):
        mine = recordings == r
        probabilities = recording_scores(chunk_lp[mine])
        rec_truth.append(int(truth[mine][0]))
        rec_pred.append(int(probabilities.argmax()))
        per_recording.append({"recording": corpus.recording_ids[r], "speaker": corpus.labels[rec_truth[-1]],
                              "predicted": corpus.labels[rec_pred[-1]], "probability": float(probabilities.max()),
                              "chunks": int(mine.sum())})
    rec_truth, rec_pred = np.array(rec_truth), np.array(rec_pred)

    n = len(corpus.labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    per_speaker = _per_speaker(confusion, corpus.labels, rec_truth, rec_pred)
    metrics = {
        "run": str(loaded.path),
        "corpus": str(corpus.path),
        "split": split,
        "model": loaded.config["model"]["name"],
        "chunk_seconds": loaded.chunk_seconds,
        "chunks": int(len(indices)),
        "chunk_accuracy": float((predicted == truth).mean()),
        "recordings": len(per_recording),
        "recording_accuracy": float((rec_pred == rec_truth).mean()),
        "macro_f1": float(np.mean([s["f1"] for s in per_speaker.values() if s["chunks"]])),
        "per_speaker": per_speaker,
        "labels": corpus.labels,
        "confusion": confusion.tolist(),
        "per_recording": per_recording,
    }

    out = Path(out) if out else loaded.path
    out.mkdir(parents=True, exist_ok=True)
    from speakerid.plots import plot_confusion, plot_curves

    plot_confusion(confusion, corpus.labels, out / rundir.CONFUSION_FILE,
                   title=f"{split}: chunk accuracy {metrics['chunk_accuracy']:.1%}")
    history = read_history(loaded.path / rundir.METRICS_FILE)
    if history:
        plot_curves(history, out / rundir.CURVES_FILE)
    rundir.write_json(out / rundir.EVALUATION_FILE, metrics)
    (out / rundir.REPORT_FILE).write_text(_report(metrics, loaded.config, bool(history)), encoding="utf-8")
    return metrics


def _per_speaker(confusion: np.ndarray, labels: list[str], rec_truth: np.ndarray, rec_pred: np.ndarray) -> dict:
    table = {}
    for i, name in enumerate(labels):
        tp = confusion[i, i]
        predicted, actual = confusion[:, i].sum(), confusion[i, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        mine = rec_truth == i
        table[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "chunks": int(actual),
                       "recordings": int(mine.sum()), "recordings_correct": int((rec_pred[mine] == i).sum())}
    return table


def read_history(path: Path) -> list[dict]:
    """A run's metrics.csv as one dict per epoch (numbers as floats, an empty value as None); [] when missing."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (float(v) if v not in ("", "None") else None) for k, v in row.items()} for row in csv.DictReader(f)]


def _report(m: dict, config: dict, curves: bool) -> str:
    model, result = config["model"], config.get("result") or {}
    features = model["features"]
    feature_text = features["kind"] + (f" ({features['n_mfcc']} coefficients)" if features["kind"] == "mfcc" else "")
    lines = [
        f"# Evaluation: {Path(m['run']).name} on the {m['split']} split",
        "",
        f"Model `{model['name']}` on {feature_text}, {m['chunk_seconds']:g}-s chunks, {model['n_classes']} speakers; "
        f"best epoch {result.get('best_epoch', '?')} of {result.get('epochs_run', '?')} "
        f"(validation accuracy {_pct(result.get('best_val_acc'))}).",
        f"Corpus: `{m['corpus']}`.",
        "",
        "| level | items | accuracy |",
        "|---|---:|---:|",
        f"| chunk | {m['chunks']} | {_pct(m['chunk_accuracy'])} |",
        f"| recording (mean of chunk log-probabilities) | {m['recordings']} | {_pct(m['recording_accuracy'])} |",
        "",
        f"Macro F1 over speakers: {m['macro_f1']:.3f}.",
        "",
        "| speaker | precision | recall | F1 | chunks | recordings right |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in m["per_speaker"].items():
        lines.append(f"| {name} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['chunks']} | "
                     f"{s['recordings_correct']}/{s['recordings']} |")
    confusion = np.array(m["confusion"])
    np.fill_diagonal(confusion, 0)
    pairs = [(int(confusion[i, j]), m["labels"][i], m["labels"][j]) for i, j in zip(*np.nonzero(confusion))]
    lines += ["", "## Most confused (true → predicted, chunks)", ""]
    lines += [f"- {t} → {p}: {c}" for c, t, p in sorted(pairs, reverse=True)[:10]] or ["- none"]
    wrong = [r for r in m["per_recording"] if r["predicted"] != r["speaker"]]
    if wrong:
        lines += ["", "## Misidentified recordings", ""]
        lines += [f"- `{r['recording']}`: {r['speaker']} → {r['predicted']} ({r['probability']:.2f})" for r in wrong]
    lines += ["", "![confusion matrix](confusion.png)"] + (["", "![training curves](curves.png)"] if curves else [])
    return "\n".join(lines) + "\n"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"
