"""How diarization names its voices: four calibration rules on the same adapted and GE2E-only registries.

The registries and meetings of `bench_diarize.py` (12 test meetings of so125, 3 enrolled speakers
and 1 stranger each; run it first: it builds and caches the registries). Each registry is
calibrated on the same strangers' sentences (`gather_trials`, as `calibrate` does) and every
meeting diarized again under each rule:

  fusion weights  "equal"   (what calibrate does when the enrolled side is the enrollment audio)
                  "fitted"  (the pairwise-EER weight fitted on those same cross-validated trials)
  clusters named  "no lead" (the best score alone, at its own thresholds: what diarize does)
                  "lead"    (the identification score and thresholds identify uses)

A GE2E-only registry has one encoder: only the cluster rule applies. Prints DER and named error
(no collar), summed over the meetings. `--clusters` also prints every cluster the rule names:
its true speaker (by overlap with the reference; * enrolled), purity, seconds of speech, best and
second-best enrolled speaker's fused score, the score the rule judges and the threshold it meets.

    OMP_NUM_THREADS=1 python benchmarks/bench_naming_rules.py
    OMP_NUM_THREADS=1 python benchmarks/bench_naming_rules.py --clusters
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench_diarize import CACHE, DATA
from speakerid.calibration import fit_scoring, gather_trials
from speakerid.der import DerResult, diarization_error, named_error
from speakerid import naming
from speakerid.diarize import diarize_audio
from speakerid.meetings import build_meeting, plan_meetings
from speakerid.voices import VoiceRegistry


def spy_on_clusters(found: list[dict]):
    """Wrap diarize's cluster naming so that each named cluster's scores land in `found`."""
    name_clusters = naming.name_clusters

    def spying(scored, clusters, spans, config):
        for c in np.unique(clusters):
            rows = np.flatnonzero(clusters == c)
            if len(rows) < config.min_cluster_windows or not scored.names:
                continue
            group = np.ravel(scored.group_scores(rows))
            order = np.argsort(-group)
            judged = float(scored.scoring.identification(group[None])[1][0])
            seconds = naming.covered([spans[i] for i in rows])
            found.append({"spans": [spans[i] for i in rows], "seconds": seconds, "name": scored.names[order[0]],
                          "best": float(group[order[0]]), "second": float(group[order[1]]) if len(order) > 1 else None,
                          "judged": judged, "threshold": scored.decision(seconds).value})
        return name_clusters(scored, clusters, spans, config)

    naming.name_clusters = spying


def print_clusters(meeting, found: list[dict], enrolled: set[str]) -> None:
    for c in found:
        overlap: dict[str, float] = {}
        for start, end in c["spans"]:
            for turn in meeting.turns:
                seconds = min(end, turn.end) - max(start, turn.start)
                if seconds > 0:
                    overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + seconds
        true = max(overlap, key=overlap.get) if overlap else "-"
        purity = overlap.get(true, 0.0) / max(sum(overlap.values()), 1e-9)
        second = "-" if c["second"] is None else f"{c['second']:.3f}"
        verdict = "named" if c["threshold"] is None or c["judged"] >= c["threshold"] else "unknown"
        print(f"    {meeting.name} true {true}{'*' if true in enrolled else ' '} purity {purity:.2f} {c['seconds']:5.1f} s "
              f"best {c['name']} {c['best']:.3f} second {second} judged {c['judged']:.3f} "
              f"threshold {c['threshold'] if c['threshold'] is None else round(c['threshold'], 3)} {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", action="store_true", help="print every named cluster's scores")
    args = parser.parse_args()
    found: list[dict] = []
    if args.clusters:
        spy_on_clusters(found)
    torch.set_num_threads(1)
    enrollment, plans = plan_meetings(DATA, 12, seed=0)
    meetings = [build_meeting(plan) for plan in plans]
    folder = CACHE / "calibration-test-0-12"
    print("| registry | fusion weights | clusters named by | weights | lead weight | DER | named error |")
    print("|---|---|---|---|---:|---:|---:|")
    for tag in ("-adapted", ""):
        source = CACHE / f"diarize-test-0-12{tag}.db"
        if not source.is_file() or not folder.is_dir():
            raise SystemExit(f"{source} or {folder} is missing: run benchmarks/bench_diarize.py --meetings 12 first")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "voices.db"
            shutil.copy(source, path)
            voices = VoiceRegistry(path, create=False)
            trials, _, _, _ = gather_trials(voices, folder, progress=False)
            rules = [("equal", True), ("fitted", False)] if len(trials.encoders) > 1 else [("-", True)]
            for weights_rule, from_enrollment in rules:
                scoring, _ = fit_scoring(dataclasses.replace(trials, from_enrollment=from_enrollment))
                for cluster_rule in ("no lead", "lead"):
                    stored = scoring if cluster_rule == "no lead" else dataclasses.replace(scoring, cluster=None)
                    voices.registry.set_scoring(stored.to_dict())
                    voices.close()
                    voices = VoiceRegistry(path, create=False)
                    der, named = DerResult(0, 0, 0, 0), DerResult(0, 0, 0, 0)
                    for meeting in meetings:
                        found.clear()
                        turns = diarize_audio(voices, meeting.audio).turns
                        if args.clusters:
                            print_clusters(meeting, found, set(enrollment))
                        der += diarization_error(meeting.turns, turns)
                        named += named_error(meeting.turns, turns, set(enrollment))
                    weights = " + ".join(f"{w:.2f}" for w in scoring.fusion.weights)
                    print(f"| {'adapted' if tag else 'GE2E only'} | {weights_rule} | {cluster_rule} | {weights} "
                          f"| {scoring.gap:g} | {der.error:.1%} | {named.error:.1%} |", flush=True)
            voices.close()


if __name__ == "__main__":
    main()
