"""diarize: who spoke when in a recording, by name for enrolled speakers and `unknown-N` for the others.

The pipeline, with its settings in `DiarizeConfig` (chosen on dev meetings: docs/benchmarks.md, "Diarization"):

1. speech regions from the voice-activity detector (`speakerid.vad`);
2. `embed_windows` (`speakerid.speech_windows`): windows of `window` seconds every `hop` seconds
   inside them (a shorter region is one window), embedded by every encoder of the registry.
   GE2E embeds each region once, as its 1.6-s partials every `hop` seconds: with the default
   1.6-s window a window is a partial, and a longer window is the mean of the partials inside it.
   It hears them twice: every partial at the level the recording has (the voices' levels help tell
   them apart) for clustering, and every other one at the speech level enrollment is heard at for
   naming;
3. `scores_of`: each window is scored against every enrolled speaker's references. With two
   encoders (after `speakerid adapt`), a window's embedding for clustering is both encoders'
   embeddings weighed as the registry's fusion weighs their scores;
4. the windows are clustered by voice (spectral clustering, `speakerid.clustering`), so the
   number of speakers is found, not given (at most `max_speakers`);
5. each cluster is named (`speakerid.naming`): its mean embedding is scored against the references (fused), and the
   best enrolled speaker names it when that score reaches the registry's identification
   threshold for the seconds of speech the cluster covers (`Scoring.decision`: calibrate
   measures how scores grow with the length of the audio); a cluster's windows whose closest
   enrolled speaker is another one become that speaker's when, together, they cover `split_seconds`
   and reach its threshold for the whole cluster's speech (clustering merges voices with few
   windows; enrollment still tells them apart); clusters taking the same name merge;
   an unnamed cluster with less than `min_stranger_seconds` of speech, or less than
   `min_stranger_share` of the recording's speech when that is less (a short call), joins the
   closest voice;
   the others become `unknown-1`, `unknown-2`, ... in order of appearance;
6. every `frame` seconds of speech is scored against each voice's centroid (per encoder, the
   mean cosine of the units covering it: GE2E's partials, another encoder's windows), and a
   Viterbi pass with `switch_penalty` per change of speaker smooths the labels, so a turn does
   not flicker between speakers;
7. frames become turns; one speaker's turns less than `merge_gap` apart are joined (a shorter
   pause is no break in a turn, as in NIST's reference transcripts), and turns are cut where
   the detector hears no speech for `turn_pause` seconds: the regions embedded in step 2 run
   on across pauses of up to 0.3 s, the turns do not (regions cut at 0.2-s pauses told the
   dev meetings' voices apart worse: confusion 0.5 -> 5.0 %). Overlapped speech gets one label.

Memory: the decoded audio (115 MB of 16-bit samples an hour) and, per encoder, the windows'
embeddings (256 floats each, 4.6 MB an hour of speech at the default hop); the audio is
embedded region by region in batches of `batch`, and clustering works on at most
`speakerid.clustering.MAX_WINDOWS` windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from speakerid import naming
from speakerid.clustering import cluster, unit, viterbi
from speakerid.der import Turn
from speakerid.errors import AudioError
from speakerid.speech_windows import Embedded, embed_windows

if TYPE_CHECKING:
    from speakerid.scoring import Decision, Scoring

__all__ = ["DiarizeConfig", "Diarization", "DiarizeReport", "WindowScores", "diarize", "scores_of", "diarize_audio"]


@dataclass(frozen=True)
class DiarizeConfig:
    """The pipeline's settings (chosen on dev meetings: docs/benchmarks.md, "Diarization")."""

    window: float = 1.6  # seconds of audio per embedding (GE2E's partial: a longer window is the mean of its partials)
    hop: float = 0.8  # seconds between window starts (and between GE2E's partials)
    min_window: float = 0.5  # speech regions shorter than this are left unlabelled
    max_speakers: int = 10  # the most voices clustering may find in one recording
    min_stranger_seconds: float = 8.0  # a stranger with less speech joins the closest voice...
    min_stranger_share: float = 0.2  # ... or with less than this share of the recording's speech, when that is less
    min_cluster_windows: int = 2  # smaller clusters join the nearest larger one
    split_seconds: float = 4.0  # a voice's windows closest to another enrolled speaker, this long together, may split off
    frame: float = 0.1  # seconds per label decision
    switch_penalty: float = 0.3  # summed frame score a change of speaker must win back
    turn_pause: float = 0.2  # seconds the detector hears no speech for that cut a turn (regions are embedded whole)
    merge_gap: float = 0.3  # one speaker's turns less than this apart become one (a shorter pause is no turn break)
    batch: int = 128  # partials or windows embedded at once

    def __post_init__(self):
        if not 0 < self.hop <= self.window or self.min_window <= 0 or self.frame <= 0 or self.max_speakers < 1:
            raise ValueError(f"need 0 < hop <= window, min_window > 0 and frame > 0; got {self}")


@dataclass
class WindowScores:
    """The registry's view of a batch of windows: what clustering and naming need, and nothing else."""

    names: list[str]  # enrolled speakers, in the order of the score columns
    embeddings: np.ndarray  # (windows, dim): L2-normalised, every encoder's embedding weighted as the fusion weighs it
    cosines: np.ndarray  # (windows, speakers, encoders): each window's cosine to each enrolled speaker's references
    parts: list[np.ndarray]  # per encoder, (windows, dim) L2-normalised embeddings those cosines were taken of
    scoring: "Scoring"
    threshold: float | None  # given: overrides the registry's thresholds
    default: float | None  # the base encoder's uncalibrated default
    weights: np.ndarray  # per encoder, the fusion's weight (summing to 1)

    def group_scores(self, rows: np.ndarray) -> np.ndarray:
        """(speakers,) fused scores of several windows taken together: per encoder, the cosine of their mean
        embedding to each reference (cosine is linear in the embedding: their mean cosine over the mean's length)."""
        lengths = np.array([max(float(np.linalg.norm(part[rows].mean(axis=0))), 1e-12) for part in self.parts])
        return self.scoring.fusion.fuse(self.cosines[rows].mean(axis=0) / lengths)

    def decision(self, seconds: float) -> "Decision":
        """The threshold a group of windows holding `seconds` of speech must reach to take a name."""
        return self.scoring.decision("identify", self.threshold, self.default, seconds)


def scores_of(voices, parts: list[np.ndarray], threshold: float | None = None,
              named: list[np.ndarray] | None = None) -> WindowScores:
    """Windows' embeddings (per encoder of a VoiceRegistry, base first: (windows, dim), L2-normalised) scored
    against its enrolled speakers (`threshold` overrides the registry's thresholds). `named`, when given,
    are the embeddings to score (`Embedded.named`), and `parts` those to cluster."""
    encoders = voices.encoders
    names, _ = voices.reference_matrices()
    count = len(parts[0])
    named = parts if named is None else named
    if names and count:
        scores = voices.score_embeddings({e.name: v for e, v in zip(encoders, named)})
        cosines, scoring = scores.cosines, scores.scoring
    else:
        cosines, scoring = np.zeros((count, len(names), len(encoders)), np.float32), voices.scoring
    scoring = scoring.for_clusters()
    weights = np.asarray(scoring.fusion.weights) if len(scoring.fusion.weights) == len(encoders) else np.ones(len(encoders))
    weights = weights / weights.sum()
    # the cosine of two such rows is the weighted sum of the encoders' cosines
    embeddings = unit(np.concatenate([np.sqrt(w) * v for w, v in zip(weights, parts)], axis=1))
    return WindowScores(names, embeddings, cosines, named, scoring, threshold, voices.encoder.default_threshold, weights)


@dataclass
class Diarization:
    """Who spoke when in one recording."""

    file: str
    seconds: float
    speech_seconds: float
    turns: list[Turn]
    speakers: list[dict]  # per label: speaker, seconds, turns, enrolled, score (its cluster's best enrolled score)
    threshold: float | None
    threshold_source: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "file": self.file, "seconds": round(self.seconds, 3), "speech_seconds": round(self.speech_seconds, 3),
            "threshold": self.threshold, "threshold_source": self.threshold_source, "notes": self.notes,
            "speakers": self.speakers,
            "turns": [{"start": round(t.start, 3), "end": round(t.end, 3), "speaker": t.speaker,
                       "score": None if t.score is None else round(t.score, 4)} for t in self.turns],
        }


def diarize_audio(voices, audio: np.ndarray, name: str = "<audio>", config: DiarizeConfig | None = None,
                  threshold: float | None = None, channels: int = 1,
                  advance: Callable[[int], None] | None = None) -> Diarization:
    """Diarize mono audio (float32, or int16 samples) at the encoder's rate with a VoiceRegistry's speakers."""
    from speakerid.vad import VadConfig, regions_from_probabilities, speech_probabilities

    config = config or DiarizeConfig()
    rate = voices.encoder.sample_rate
    seconds = len(audio) / rate
    notes = [f"{channels} channels mixed down to one"] if channels > 1 else []
    probabilities = speech_probabilities(audio, rate)
    regions = regions_from_probabilities(probabilities, seconds)
    speech = float(sum(e - s for s, e in regions))
    embedded = embed_windows(voices, audio, regions, config, advance or (lambda n=1: None))
    scored = scores_of(voices, embedded.parts, threshold, embedded.named)
    decision = scored.decision(speech)
    result = Diarization(name, seconds, speech, [], [], decision.value, decision.source, notes)
    if not scored.names:
        notes.append("nobody is enrolled: every speaker is unknown")
    elif decision.value is None:
        notes.append("no threshold: each voice takes its closest enrolled speaker's name (run `speakerid calibrate`)")
    if not embedded.spans:
        notes.append("no speech found" if not regions else "no stretch of speech long enough to tell who speaks")
        return result
    labels, info = naming.name_clusters(scored, cluster(scored.embeddings, config.max_speakers), embedded.spans, config)
    pauses_out = regions_from_probabilities(probabilities, seconds, VadConfig(min_silence=config.turn_pause))
    result.turns = _within(_turns(embedded, scored, labels, info, regions, config), pauses_out)
    for label, about in info.items():
        turns = [t for t in result.turns if t.speaker == label]
        if turns:
            result.speakers.append({"speaker": label, "seconds": round(sum(t.end - t.start for t in turns), 3),
                                    "turns": len(turns), "enrolled": about["enrolled"], "score": about["score"]})
    return result


def _turns(embedded: Embedded, scored: WindowScores, labels: np.ndarray, info: dict, regions,
           config: DiarizeConfig) -> list[Turn]:
    """Frame-level labels inside the speech regions, smoothed, merged into turns with scores.

    A frame's score for a label is, per encoder, the mean cosine of the units covering it (GE2E's
    1.6-s partials, another encoder's windows) to the label's centroid (the mean of its windows),
    the encoders weighed as the fusion weighs them.
    """
    order = list(info)
    similarities = []
    for part, (pieces, vectors) in zip(embedded.parts, embedded.units):
        centroids = unit(np.stack([part[labels == label].mean(axis=0) for label in order]))
        similarities.append((pieces, unit(vectors) @ centroids.T))  # (units, labels)
    turns: list[Turn] = []
    for region_start, region_end in regions:
        times = np.arange(region_start, region_end, config.frame) + config.frame / 2
        frame_scores = sum(w * _covering_mean(pieces, similarity, times)
                           for w, (pieces, similarity) in zip(scored.weights, similarities))
        path = viterbi(frame_scores, config.switch_penalty)
        edges = np.concatenate([[0], np.flatnonzero(np.diff(path)) + 1, [len(path)]])
        for a, b in zip(edges[:-1], edges[1:]):
            start = region_start if a == 0 else region_start + a * config.frame
            end = region_end if b == len(path) else region_start + b * config.frame
            turns.append(Turn(round(start, 3), round(end, 3), order[path[a]], float(frame_scores[a:b, path[a]].mean())))
    return _merged(turns, gap=max(config.merge_gap, config.frame))


def _covering_mean(pieces: np.ndarray, values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(frames, k): at each time, the mean of `values` (units, k) over the units (`pieces`, in order of start)
    covering it; a frame no unit covers takes the nearest covered frame's, and a stretch no unit
    reaches (speech too short to embed) the unit nearest to it."""
    low, high = np.searchsorted(pieces[:, 0], [times[0] - 60.0, times[-1]], side="right")  # no unit is a minute long
    near = np.arange(low, high)
    covering = (pieces[near, 0][None, :] <= times[:, None]) & (pieces[near, 1][None, :] >= times[:, None])
    if not covering.any():
        nearest = int(np.argmin(np.abs(pieces.mean(axis=1) - times.mean())))
        return np.repeat(values[nearest : nearest + 1], len(times), axis=0)
    scores = (covering / np.maximum(covering.sum(axis=1, keepdims=True), 1)) @ values[near]
    has = np.flatnonzero(covering.any(axis=1))
    return scores[has[np.abs(has[None, :] - np.arange(len(times))[:, None]).argmin(axis=1)]]


def _within(turns: list[Turn], regions: list[tuple[float, float]]) -> list[Turn]:
    """The parts of `turns` inside `regions` (both in order of start)."""
    out, first = [], 0
    for turn in turns:
        while first < len(regions) and regions[first][1] <= turn.start:
            first += 1
        for start, end in regions[first:]:
            if start >= turn.end:
                break
            if min(end, turn.end) > max(start, turn.start):
                out.append(Turn(max(start, turn.start), min(end, turn.end), turn.speaker, turn.score))
    return out


def _merged(turns: list[Turn], gap: float) -> list[Turn]:
    """One speaker's turns that touch or leave less than `gap` between them become one (score: length-weighted mean)."""
    out: list[Turn] = []
    for turn in sorted(turns, key=lambda t: (t.speaker, t.start)):
        last = out[-1] if out else None
        if last is not None and last.speaker == turn.speaker and turn.start - last.end < gap + 1e-9:
            a, b = last.end - last.start, turn.end - turn.start
            score = (last.score * a + turn.score * b) / max(a + b, 1e-9)
            out[-1] = Turn(last.start, max(last.end, turn.end), turn.speaker, score)
        else:
            out.append(turn)
    return sorted(out, key=lambda t: (t.start, t.speaker))

# ---------------------------------------------------------------- files in, report out


@dataclass
class DiarizeReport:
    """What `diarize` did: a diarization per readable recording, the files it could not use, and scores."""

    recordings: list[Diarization]
    failed: list[tuple[str, str]] = field(default_factory=list)
    scores: dict | None = None  # with a reference: DER and named error, no collar and 0.25-s collar, over all scored files
    written: dict[str, str] = field(default_factory=dict)  # what was written where: rttm, json, plot

    def to_dict(self) -> dict:
        return {"recordings": [r.to_dict() for r in self.recordings],
                "failed": [{"file": f, "reason": r} for f, r in self.failed], "scores": self.scores, "written": self.written}


def diarize(registry, files, model=None, threshold: float | None = None, config: DiarizeConfig | None = None,
            reference=None, rttm=None, json_out=None, plot=None, device: str = "auto", progress: bool = True) -> DiarizeReport:
    """Who spoke when in each recording, among the speakers enrolled in `registry`.

    A file that cannot be read is reported in `failed` and the others still run. `reference` (an
    RTTM file) scores every recording whose file stem it holds; `rttm`, `json_out` and `plot` name
    files to write (RTTM turns, the report as JSON, the timeline figure).
    """
    import json
    from pathlib import Path

    from speakerid.audio import load_pcm16
    from speakerid.der import read_rttm, write_rttm
    from speakerid.errors import SpeakerIdError
    from speakerid.progress import progress_bar
    from speakerid.voices import VoiceRegistry

    truth = read_rttm(reference) if reference is not None else None
    voices = VoiceRegistry(registry, model, device, create=False)
    report = DiarizeReport([])
    try:
        for path in map(Path, files):
            try:
                audio, _, channels = load_pcm16(path, voices.encoder.sample_rate)  # int16: half the memory of float32
            except AudioError as err:
                report.failed.append((str(path), err.reason))
                continue
            config = config or DiarizeConfig()
            with progress_bar(f"diarizing {path.name} (seconds)", total=int(len(audio) / voices.encoder.sample_rate),
                              enabled=progress) as advance:
                result = diarize_audio(voices, audio, str(path), config, threshold, channels, advance)
            report.recordings.append(result)
        if truth is not None:
            report.scores = _scores(report.recordings, truth, set(voices.reference_matrices()[0]))
            if not report.scores["files"]:
                raise SpeakerIdError(f"{reference} holds no turns for {', '.join(Path(r.file).stem for r in report.recordings)}; "
                                     "its file ids must be the recordings' file names without extension")
    finally:
        voices.close()
    if rttm is not None:
        report.written["rttm"] = str(write_rttm(rttm, {Path(r.file).stem: r.turns for r in report.recordings}))
    if plot is not None and report.recordings:
        from speakerid.plots import plot_timeline

        report.written["plot"] = str(plot_timeline(report.recordings, plot))
    if json_out is not None:
        Path(json_out).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        report.written["json"] = str(json_out)
    return report


def _scores(recordings: list[Diarization], truth: dict[str, list[Turn]], enrolled: set[str]) -> dict:
    """DER and named error over the recordings the reference covers (summed over files, then divided)."""
    from pathlib import Path

    from speakerid.der import DerResult, diarization_error, named_error

    sums = {key: DerResult(0, 0, 0, 0) for key in ("der", "der_collar", "named", "named_collar")}
    files = []
    for result in recordings:
        reference = truth.get(Path(result.file).stem)
        if reference is None:
            continue
        files.append(result.file)
        sums["der"] += diarization_error(reference, result.turns)
        sums["der_collar"] += diarization_error(reference, result.turns, collar=0.25)
        sums["named"] += named_error(reference, result.turns, enrolled)
        sums["named_collar"] += named_error(reference, result.turns, enrolled, collar=0.25)
    out = {key: {k: v for k, v in value.to_dict().items() if k != "mapping"} for key, value in sums.items()}
    for key in ("der_collar", "named_collar"):
        out[key]["collar"] = 0.25
    return {"files": files, **out}
