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
(no collar), summed over the meetings.

    OMP_NUM_THREADS=1 python benchmarks/bench_naming_rules.py
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import torch

from bench_diarize import CACHE, DATA
from speakerid.calibration import fit_scoring, gather_trials
from speakerid.der import DerResult, diarization_error, named_error
from speakerid.diarize import diarize_audio
from speakerid.meetings import build_meeting, plan_meetings
from speakerid.voices import VoiceRegistry


def main() -> None:
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
                        turns = diarize_audio(voices, meeting.audio).turns
                        der += diarization_error(meeting.turns, turns)
                        named += named_error(meeting.turns, turns, set(enrollment))
                    weights = " + ".join(f"{w:.2f}" for w in scoring.fusion.weights)
                    print(f"| {'adapted' if tag else 'GE2E only'} | {weights_rule} | {cluster_rule} | {weights} "
                          f"| {scoring.gap:g} | {der.error:.1%} | {named.error:.1%} |", flush=True)
            voices.close()


if __name__ == "__main__":
    main()
