"""diarize: who spoke when in a recording, by name for enrolled speakers and `unknown-N` for the others.

The pipeline, with its settings in `DiarizeConfig`:

1. speech regions from the voice-activity detector (`speakerid.vad`);
2. windows of `window` seconds every `hop` seconds inside them (a shorter region is one window);
3. `score_windows`: the registry's encoder embeds the windows in batches, and each is scored
   (cosine) against every enrolled speaker's reference. This is the only step that knows the
   registry;
4. the windows are clustered by voice (agglomerative, average linkage, cosine distance cut at
   `cluster_threshold`), so the number of speakers is found, not given;
5. each cluster is named: its mean embedding (all its windows together, seconds of speech) is
   scored against the references, and the best enrolled speaker names it when that score
   reaches the registry's threshold; clusters taking the same name merge; the others become
   `unknown-1`, `unknown-2`, ... in order of appearance. A short window scores lower than a
   whole recording, so no name is decided on one window: a voice's name is decided on all its
   speech in the recording (typically tens of seconds), and the registry's threshold should be
   calibrated on recordings of that length (`speakerid calibrate` on 10-30-s recordings), not on
   short clips;
6. every `frame` seconds of speech is scored against each speaker's mean (the mean similarity
   of the windows covering it), and a Viterbi pass with `switch_penalty` per change of speaker
   smooths the labels, so a turn does not flicker between speakers window by window;
7. frames become turns; where a second speaker's frame score comes within `overlap_margin` of
   the first one's, both are labelled (overlapped speech).

Memory: the decoded audio (230 MB for an hour) plus one batch of windows; the clustering works
on at most MAX_LINKAGE_WINDOWS windows (see `speakerid.clustering`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from speakerid.audio import SAMPLE_RATE
from speakerid.clustering import cluster, unit, viterbi
from speakerid.der import UNKNOWN_PREFIX, Turn
from speakerid.errors import AudioError

if TYPE_CHECKING:
    from speakerid.scoring import Decision, Scoring

__all__ = ["DiarizeConfig", "Diarization", "DiarizeReport", "WindowScores", "diarize", "embed_windows", "scores_of", "diarize_audio", "windows_in"]


@dataclass(frozen=True)
class DiarizeConfig:
    """The pipeline's settings (chosen on dev meetings: docs/benchmarks.md, "Diarization")."""

    window: float = 2.5  # seconds of audio per embedding
    hop: float = 0.5  # seconds between window starts
    min_window: float = 0.5  # speech regions shorter than this are left unlabelled
    cluster_threshold: float = 0.3  # cosine distance at which clustering stops merging (it over-splits a little)
    stranger_threshold: float = 0.45  # unnamed clusters closer than this (cosine distance of their means) are one stranger
    min_stranger_seconds: float = 4.0  # a stranger with less speech joins the closest voice
    min_cluster_windows: int = 2  # smaller clusters join the nearest larger one
    frame: float = 0.1  # seconds per label decision
    switch_penalty: float = 0.3  # summed frame score a change of speaker must win back
    merge_gap: float = 1.0  # one speaker's turns less than this apart become one (pauses inside a sentence)
    overlap_margin: float = 0.0  # a second speaker within this of the first is labelled too; 0 turns it off
    partial_step: float = 0.4  # seconds between GE2E's 1.6-s partials in a speech region
    batch: int = 128  # partials or windows embedded at once

    def __post_init__(self):
        if not 0 < self.hop <= self.window or self.min_window <= 0 or self.frame <= 0 or self.partial_step <= 0:
            raise ValueError(f"need 0 < hop <= window, min_window > 0 and frame > 0; got {self}")


@dataclass
class WindowScores:
    """The registry's view of a batch of windows: what clustering and naming need, and nothing else."""

    names: list[str]  # enrolled speakers, in the order of the score columns
    embeddings: np.ndarray  # (windows, dim): L2-normalised, every encoder's embedding weighted as the fusion weighs it
    cosines: np.ndarray  # (windows, speakers, encoders): each window's cosine to each enrolled speaker's references
    parts: list[np.ndarray]  # per encoder, (windows, dim) L2-normalised embeddings
    scoring: "Scoring"
    threshold: float | None  # given: overrides the registry's thresholds
    default: float | None  # the base encoder's uncalibrated default

    def group_scores(self, rows: np.ndarray) -> np.ndarray:
        """(speakers,) fused scores of several windows taken together: per encoder, the cosine of their mean
        embedding to each reference (cosine is linear in the embedding: their mean cosine over the mean's length)."""
        lengths = np.array([max(float(np.linalg.norm(part[rows].mean(axis=0))), 1e-12) for part in self.parts])
        return self.scoring.fusion.fuse(self.cosines[rows].mean(axis=0) / lengths)

    def decision(self, seconds: float) -> "Decision":
        """The threshold a group of windows holding `seconds` of speech must reach to take a name."""
        return self.scoring.decision("identify", self.threshold, self.default, seconds)


def scores_of(voices, parts: list[np.ndarray], threshold: float | None = None) -> WindowScores:
    """Windows' embeddings (per encoder of a VoiceRegistry, base first: (windows, dim), L2-normalised) scored
    against its enrolled speakers (`threshold` overrides the registry's thresholds)."""
    encoders = voices.encoders
    names, _ = voices.reference_matrices()
    count = len(parts[0])
    if names and count:
        scores = voices.score_embeddings({e.name: v for e, v in zip(encoders, parts)})
        cosines, scoring = scores.cosines, scores.scoring
    else:
        cosines, scoring = np.zeros((count, len(names), len(encoders)), np.float32), voices.scoring
    weights = np.sqrt(np.asarray(scoring.fusion.weights)) if len(scoring.fusion.weights) == len(encoders) else np.ones(len(encoders))
    embeddings = unit(np.concatenate([w * v for w, v in zip(weights, parts)], axis=1))
    return WindowScores(names, embeddings, cosines, parts, scoring, threshold, voices.encoder.default_threshold)


def embed_windows(voices, audio: np.ndarray, regions: list[tuple[float, float]], config: "DiarizeConfig",
                  advance: Callable[[int], None] = lambda n=1: None) -> tuple[list[tuple[float, float]], list[np.ndarray]]:
    """The windows cut from speech `regions` of float32 16-kHz `audio` (`windows_in`), and per encoder of a
    VoiceRegistry (base first) their (windows, dim) L2-normalised embeddings.

    GE2E embeds each region once, as partials of 1.6 s every `config.partial_step` seconds
    (`Ge2eEncoder.partials`); a window's embedding is the mean of the partials lying inside it (the
    partial nearest its middle when none fits: a window shorter than a partial). Other encoders embed
    the windows' audio. Regions go in order, in batches of `config.batch` partials or windows, so
    memory holds one batch beside the embeddings; `advance` is told each second of the recording done.
    """
    import torch

    rate = voices.encoder.sample_rate
    encoders = voices.encoders
    spans: list[tuple[float, float]] = []
    centres: list[np.ndarray] = []  # of GE2E's partials, in seconds
    pending: list[list] = [[] for _ in encoders]  # per encoder: partials, or windows' audio, waiting for a batch
    waiting = [0] * len(encoders)  # how many partials or windows that is
    done: list[list[np.ndarray]] = [[] for _ in encoders]

    def flush(k: int) -> None:
        if pending[k]:
            if hasattr(encoders[k], "partials"):
                done[k].append(encoders[k].embed_units(torch.cat(pending[k])).cpu().numpy())
            else:
                done[k].append(encoders[k].embed_many(pending[k]))
            pending[k], waiting[k] = [], 0

    reported = 0
    for start, end in regions:
        windows = windows_in([(start, end)], config)
        spans += windows
        for k, encoder in enumerate(encoders if windows else []):
            if hasattr(encoder, "partials"):
                starts, units = encoder.partials(audio[round(start * rate) : round(end * rate)], config.partial_step)
                centres.append(start + (starts + min(encoder.partial_samples, (end - start) * rate) / 2) / rate)
                pending[k].append(units)
                waiting[k] += len(units)
            else:
                pending[k] += [audio[round(s * rate) : round(e * rate)] for s, e in windows]
                waiting[k] += len(windows)
            if waiting[k] >= config.batch:
                flush(k)
        advance(int(end) - reported)
        reported = int(end)
    for k in range(len(encoders)):
        flush(k)
    advance(int(len(audio) / rate) - reported)
    parts = []
    for k, encoder in enumerate(encoders):
        embedded = np.concatenate(done[k]) if done[k] else np.zeros((0, encoder.dim), np.float32)
        parts.append(_window_means(embedded, np.concatenate(centres), spans, encoder.partial_samples / rate)
                     if hasattr(encoder, "partials") and len(spans) else embedded)
    return spans, parts


def _window_means(partials: np.ndarray, centres: np.ndarray, spans, partial_seconds: float) -> np.ndarray:
    """Each window's embedding: the L2-normalised mean of the partials (centred at `centres`) lying inside it,
    or of the one nearest its middle when none fits."""
    half, slack = partial_seconds / 2, 0.011  # partials start on 10-ms frames
    out = np.empty((len(spans), partials.shape[1]), np.float32)
    for i, (s, e) in enumerate(spans):
        low, high = np.searchsorted(centres, [s + half - slack, e - half + slack])
        if high <= low:
            low = int(np.argmin(np.abs(centres - (s + e) / 2)))
            high = low + 1
        out[i] = unit(partials[low:high].mean(axis=0))
    return out


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


def windows_in(regions: list[tuple[float, float]], config: DiarizeConfig) -> list[tuple[float, float]]:
    """(start, end) of the windows cut from speech regions; the last window of a region ends with it."""
    out = []
    for start, end in regions:
        length = end - start
        if length < config.min_window:
            continue
        if length <= config.window:
            out.append((start, end))
            continue
        count = int(np.ceil((length - config.window) / config.hop)) + 1
        out.extend((s, s + config.window) for s in np.linspace(start, end - config.window, count))
    return out


def diarize_audio(voices, audio: np.ndarray, name: str = "<audio>", config: DiarizeConfig | None = None,
                  threshold: float | None = None, channels: int = 1,
                  advance: Callable[[int], None] | None = None) -> Diarization:
    """Diarize float32 mono audio at the encoder's rate with a VoiceRegistry's speakers."""
    from speakerid.vad import speech_regions

    config = config or DiarizeConfig()
    rate = voices.encoder.sample_rate
    seconds = len(audio) / rate
    notes = [f"{channels} channels mixed down to one"] if channels > 1 else []
    regions = speech_regions(audio, rate)
    speech = float(sum(e - s for s, e in regions))
    spans, parts = embed_windows(voices, audio, regions, config, advance or (lambda n=1: None))
    scored = scores_of(voices, parts, threshold)
    decision = scored.decision(speech)
    result = Diarization(name, seconds, speech, [], [], decision.value, decision.source, notes)
    if not scored.names:
        notes.append("nobody is enrolled: every speaker is unknown")
    elif decision.value is None:
        notes.append("no threshold: each voice takes its closest enrolled speaker's name (run `speakerid calibrate`)")
    if not spans:
        notes.append("no speech found" if not regions else "no stretch of speech long enough to tell who speaks")
        return result
    labels, info = _name_clusters(scored, cluster(scored.embeddings, config.cluster_threshold), config)
    result.turns = _turns(spans, scored, labels, info, regions, config)
    for label, about in info.items():
        turns = [t for t in result.turns if t.speaker == label]
        if turns:
            result.speakers.append({"speaker": label, "seconds": round(sum(t.end - t.start for t in turns), 3),
                                    "turns": len(turns), "enrolled": about["enrolled"], "score": about["score"]})
    return result


def _name_clusters(scored: WindowScores, clusters: np.ndarray, config: DiarizeConfig) -> tuple[np.ndarray, dict[str, dict]]:
    """A label per window (enrolled name or unknown-N), and per label: enrolled, score, closest enrolled speaker."""
    sizes = np.bincount(clusters)
    big = [c for c in range(len(sizes)) if sizes[c] >= config.min_cluster_windows] or [int(np.argmax(sizes))]
    centroids = unit(np.stack([scored.embeddings[clusters == c].mean(axis=0) for c in big]))
    # windows of tiny clusters join the closest big one
    clusters = np.where(np.isin(clusters, big), clusters, np.array(big)[np.argmax(unit(scored.embeddings) @ centroids.T, axis=1)])
    names: dict[int, str | None] = {}
    best: dict[int, tuple[str | None, float | None]] = {}
    for c in big:
        rows = np.flatnonzero(clusters == c)
        if not scored.names:
            names[c], best[c] = None, (None, None)
            continue
        group = scored.group_scores(rows)
        top = int(np.argmax(group))
        best[c] = (scored.names[top], float(group[top]))
        # the name is decided on all of the cluster's speech: about one hop of new audio per window
        accepted = scored.decision(len(rows) * config.hop + config.window - config.hop).accepts(float(group[top]))
        names[c] = scored.names[top] if accepted is not False else None
    clusters, big = _join_strangers(scored, clusters, big, names, config)
    labels = np.empty(len(clusters), dtype=object)
    info: dict[str, dict] = {}
    strangers = 0
    for c in sorted(big, key=lambda c: int(np.argmax(clusters == c))):  # in order of first appearance
        label = names[c]
        if label is None:
            strangers += 1
            label = f"{UNKNOWN_PREFIX}{strangers}"
        closest, score = best[c]
        entry = info.setdefault(label, {"enrolled": names[c] is not None, "score": None, "closest": closest})
        if score is not None:
            entry["score"] = round(max(score, entry["score"] if entry["score"] is not None else -1.0), 4)
        labels[clusters == c] = label
    return labels, info


def _join_strangers(scored: WindowScores, clusters: np.ndarray, big: list[int], names: dict, config: DiarizeConfig):
    """Clustering cut fine splits a voice nobody enrolled into pieces: unnamed clusters whose means are closer than
    stranger_threshold merge (closest first), then those with under min_stranger_seconds of windows join the closest voice."""
    clusters = clusters.copy()
    mean = lambda c: unit(scored.embeddings[clusters == c].mean(axis=0))
    while True:
        unnamed = [c for c in big if names[c] is None]
        pairs = [(1 - float(mean(a) @ mean(b)), a, b) for i, a in enumerate(unnamed) for b in unnamed[i + 1 :]]
        if not pairs or min(pairs)[0] >= config.stranger_threshold:
            break
        _, keep, gone = min(pairs)
        clusters[clusters == gone] = keep
        big.remove(gone)
    per_window = config.hop  # windows overlap: each adds about one hop of speech
    for c in [c for c in big if names[c] is None]:
        others = [o for o in big if o != c]
        if others and np.sum(clusters == c) * per_window < config.min_stranger_seconds:
            closest = max(others, key=lambda o: float(mean(c) @ mean(o)))
            clusters[clusters == c] = closest
            big.remove(c)
    return clusters, big


def _turns(spans, scored: WindowScores, labels: np.ndarray, info: dict, regions, config: DiarizeConfig) -> list[Turn]:
    """Frame-level labels inside the speech regions, smoothed, merged into turns with scores."""
    order = list(info)
    centroids = unit(np.stack([scored.embeddings[labels == label].mean(axis=0) for label in order]))
    similarity = unit(scored.embeddings) @ centroids.T  # (windows, labels)
    starts = np.array([s for s, _ in spans])
    ends = np.array([e for _, e in spans])
    turns: list[Turn] = []
    for region_start, region_end in regions:
        times = np.arange(region_start, region_end, config.frame) + config.frame / 2
        covering = (starts[None, :] <= times[:, None]) & (ends[None, :] >= times[:, None])
        if not covering.any():  # a region too short to embed: the nearest window speaks for it
            covering = np.zeros_like(covering)
            covering[:, np.argmin(np.abs((starts + ends) / 2 - (region_start + region_end) / 2))] = True
        has = covering.any(axis=1)
        weights = covering / np.maximum(covering.sum(axis=1, keepdims=True), 1)
        frame_scores = weights @ similarity
        # frames no window covers take their nearest covered frame's scores
        nearest = np.flatnonzero(has)[np.abs(np.flatnonzero(has)[None, :] - np.arange(len(times))[:, None]).argmin(axis=1)]
        frame_scores = frame_scores[nearest]
        path = viterbi(frame_scores, config.switch_penalty)
        edges = np.concatenate([[0], np.flatnonzero(np.diff(path)) + 1, [len(path)]])
        for a, b in zip(edges[:-1], edges[1:]):
            start = region_start if a == 0 else region_start + a * config.frame
            end = region_end if b == len(path) else region_start + b * config.frame
            turns.append(Turn(round(start, 3), round(end, 3), order[path[a]], float(frame_scores[a:b, path[a]].mean())))
        if config.overlap_margin > 0:
            turns.extend(_overlapping(frame_scores, path, order, region_start, region_end, config))
    return _merged(turns, gap=max(config.merge_gap, config.frame))


def _overlapping(frame_scores, path, order, region_start, region_end, config) -> list[Turn]:
    """Turns of a second speaker where their frame score comes within overlap_margin of the chosen one's."""
    chosen = frame_scores[np.arange(len(path)), path]
    others = frame_scores.copy()
    others[np.arange(len(path)), path] = -np.inf
    second = np.argmax(others, axis=1)
    close = chosen - others[np.arange(len(path)), second] <= config.overlap_margin
    out = []
    for a in np.flatnonzero(close):
        start = region_start + a * config.frame
        out.append(Turn(round(start, 3), round(min(start + config.frame, region_end), 3), order[second[a]],
                        float(others[a, second[a]])))
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
                pcm, _, channels = load_pcm16(path, voices.encoder.sample_rate)
            except AudioError as err:
                report.failed.append((str(path), err.reason))
                continue
            audio = pcm.astype(np.float32) / 32768.0
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
