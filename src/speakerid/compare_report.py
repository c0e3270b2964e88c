"""What `compare` writes at the end of a study: results.csv, report.md and its two figures."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from speakerid.compare_cells import format_duration
from speakerid.corpus import Corpus, write_csv

RESULTS_FILE = "results.csv"
REPORT_FILE = "report.md"
BY_CHUNK_FIGURE = "accuracy_by_chunk.png"
BY_TIME_FIGURE = "accuracy_by_time.png"

CSV_FIELDS = ("cell", "chunk_seconds", "features", "model", "chunk_accuracy", "recording_accuracy", "macro_f1",
              "worst_speaker", "worst_speaker_accuracy", "test_chunks", "test_recordings", "epochs", "best_epoch",
              "stopped_by", "train_seconds", "train_chunks", "chunks_per_second", "parameters", "wall_seconds",
              "load_average", "torch_threads", "device", "run")


def write_report(out: Path, rows: list[dict], corpora: dict[float, Corpus], skipped: dict[str, str],
                 failed: dict[str, str], *, budget_minutes: float, seed: int, workers: list[str]) -> Path:
    """Write results.csv (grid order), the figures and report.md (best first); returns report.md's path."""
    write_csv(out / RESULTS_FILE, CSV_FIELDS, rows)
    first = next(iter(corpora.values()))
    name = Path(first.summary["data_dir"]).name
    if rows:
        from speakerid.plots import plot_accuracy_by_chunk, plot_accuracy_by_time

        plot_accuracy_by_chunk(rows, out / BY_CHUNK_FIGURE, title=f"{name}: test accuracy by chunk length")
        plot_accuracy_by_time(rows, out / BY_TIME_FIGURE, title=f"{name}: validation accuracy during training")

    ranked = sorted(rows, key=lambda r: (-r["recording_accuracy"], -r["chunk_accuracy"], -r["worst_speaker_accuracy"],
                                         r["train_seconds"]))
    test = first.summary["recordings_per_split"]["test"]
    lines = [
        f"# Which chunk length, features and model for `{first.summary['data_dir']}`",
        "",
        f"{len(first.labels)} speakers. Every cell was trained by `speakerid train` with its defaults for up to "
        f"{format_duration(budget_minutes * 60)} of training (wall-clock; patience may stop a cell sooner), seed "
        f"{seed}, and scored by `speakerid evaluate` on the same {test} held-out test recordings "
        "(split by recording, identical for every chunk length).",
        "",
        f"Machine: {_machine(workers)}." + (f" 1-minute load average when cells ended: {_load(rows)}." if rows else ""),
        "The budget is wall-clock time: on a busy machine every cell gets fewer epochs than on a quiet one.",
        "",
    ]
    if ranked:
        best = ranked[0]
        lines += [f"Best here: **{best['model']} on {best['features']}, {best['chunk_seconds']:g}-s chunks** "
                  f"({_pct(best['recording_accuracy'])} of test recordings, {_pct(best['chunk_accuracy'])} of chunks; "
                  "ranked by recording accuracy, then chunk accuracy, then the worst speaker).", ""]
        lines += ["| chunk | features | model | chunk acc | recording acc | worst speaker's chunk acc | epochs "
                  "| stopped by | training time | train chunks/s | parameters |",
                  "|---:|---|---|---:|---:|---|---:|---|---:|---:|---:|"]
        for r in ranked:
            speed = "-" if r["chunks_per_second"] is None else f"{r['chunks_per_second']:.0f}"
            lines.append(f"| {r['chunk_seconds']:g} s | {r['features']} | {r['model']} | {_pct(r['chunk_accuracy'])} | "
                         f"{_pct(r['recording_accuracy'])} | {_worst(r)} "
                         f"| {r['epochs']} | {r['stopped_by']} | {r['train_seconds']:.0f} s | {speed} | "
                         f"{r['parameters'] / 1e6:.2f} M |")
        lines += ["", "Train chunks/s: training chunks seen per second of training time (validation included).", ""]
    else:
        lines += ["No cell has finished yet.", ""]
    lines += _corpora_section(corpora)
    if skipped:
        lines += ["## Skipped (cannot be built)", ""] + [f"- {name}: {why}" for name, why in skipped.items()] + [""]
    if failed:
        lines += ["## Failed (run the study again to retry)", ""]
        lines += [f"- {name}: {why}" for name, why in failed.items()] + [""]
    if rows:
        lines += ["## Figures", "", f"![test accuracy by chunk length]({BY_CHUNK_FIGURE})", "",
                  f"![validation accuracy during training]({BY_TIME_FIGURE})", "",
                  "Each cell's own report (confusion matrix, per-speaker scores, training curves) is in "
                  "`cells/<cell>/report.md`."]
    (out / REPORT_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / REPORT_FILE


def _corpora_section(corpora: dict[float, Corpus]) -> list[str]:
    lines = ["## Corpora", "", "| chunk | train / validation / test chunks | recordings shorter than one chunk |",
             "|---:|---:|---:|"]
    padded_any = False
    for seconds, corpus in corpora.items():
        counts = corpus.summary["chunks"]
        lengths = [r.samples for r in corpus.recordings.values()]
        short = sum(n < corpus.chunk_samples for n in lengths)
        padded_any |= short > 0
        lines.append(f"| {seconds:g} s | {counts['train']} / {counts['validation']} / {counts['test']} | "
                     f"{short} of {len(lengths)} ({short / len(lengths):.0%}) |")
    lines.append("")
    if padded_any:
        lines += ["A recording shorter than a chunk is kept as one chunk, zero-padded at its end (never dropped, so "
                  "every chunk length is tested on the same recordings). Where most recordings are shorter than the "
                  "chunk, each is a single padded chunk and chunk accuracy is close to recording accuracy.", ""]
    return lines




def _machine(workers: list[str]) -> str:
    import torch

    gpus = sorted({torch.cuda.get_device_name(int(w.split(":")[1])) for w in workers if w.startswith("cuda:")})
    where = ", ".join(workers) if len(workers) > 1 else workers[0]
    return (f"{os.cpu_count()} CPU cores, {' and '.join(gpus) if gpus else 'no GPU used'}, torch {torch.__version__}; "
            f"cells ran on {where}")


def _load(rows: list[dict]) -> str:
    loads = [r["load_average"] for r in rows]
    threads = sorted({r["torch_threads"] for r in rows})
    return (f"{min(loads):.1f}-{max(loads):.1f} (median {statistics.median(loads):.1f}) on {os.cpu_count()} cores; "
            f"{'/'.join(map(str, threads))} torch thread{'s' if threads != [1] else ''} per cell")


def _worst(row: dict) -> str:
    accuracy = _pct(row["worst_speaker_accuracy"])
    return accuracy if row["worst_speaker_accuracy"] == 1 else f"{accuracy} ({row['worst_speaker']})"


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"
