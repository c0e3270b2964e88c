"""meetings: synthetic meetings mixed from real speaker folders, with the truth of who spoke when.

A meeting is a few speakers' utterances laid end to end: in shuffled order (never the same
speaker twice running), separated by pauses, some overlapping the utterance before, each
speaker at their own level, over a faint background noise. The reference is exact: an
utterance's speech, its leading and trailing silence trimmed, is one turn, split where the
speaker pauses for `PAUSE_SECONDS` or longer (the convention of NIST's Rich Transcription
evaluations, whose references bridge only pauses shorter than 0.3 s; read sentences pause
between phrases, and counting those pauses as speech made 15 % of the reference silence).
Silence is a 20-ms frame more than `TRIM_DB` under the utterance's loudest frame, or less than
`FLOOR_DB` over its noise floor (its 10th-percentile frame): one so125 recording in ten has its
background noise within 35 dB of its loudest frame, and the level rule alone left that noise
(0.2 s an utterance on average, where Silero hears speech in 11 % of the frames, against 82 %
inside) as speech. Which utterances go where is drawn from a seed, so the same call builds the
same meetings; nothing is written unless asked.

`plan_meetings` splits each speaker's recordings between enrollment and meetings (enrolled
speakers never meet with an utterance they enrolled with), and picks strangers among speakers
nobody enrolls. Tests and `benchmarks/bench_diarize.py` build their meetings with it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speakerid.audio import SAMPLE_RATE, load_audio
from speakerid.corpus import scan
from speakerid.der import Turn
from speakerid.errors import CorpusError

__all__ = ["Turn", "Meeting", "MeetingPlan", "plan_meetings", "build_meeting", "trim_silence", "speech_spans"]

TRIM_DB = 35.0
FLOOR_DB = 10.0
TRIM_FRAME = 320  # 20 ms at 16 kHz
PAUSE_SECONDS = 0.3  # a pause this long or longer ends a reference turn
SPEECH_DBFS = -26.0  # every utterance's level before the speaker's own gain


@dataclass
class MeetingPlan:
    """Which utterances make a meeting, and who of its speakers is enrolled."""

    name: str
    utterances: list[tuple[str, Path]]  # (speaker, recording), in the order spoken
    enrolled: list[str]
    strangers: list[str]
    seed: int


@dataclass
class Meeting:
    """A mixed meeting: 16-kHz mono audio and its reference turns (they may overlap)."""

    name: str
    audio: np.ndarray
    turns: list[Turn]
    enrolled: list[str]
    strangers: list[str]
    sample_rate: int = SAMPLE_RATE
    overlap_seconds: float = 0.0  # time during which two speakers speak at once
    details: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


def plan_meetings(data_dir: str | Path, meetings: int, enrolled: int = 3, strangers: int = 1, enroll_recordings: int = 5,
                  seed: int = 0, exclude: set[str] | frozenset[str] = frozenset()) -> tuple[dict[str, list[Path]], list[MeetingPlan]]:
    """(enrollment, plans): each meeting has its own `enrolled` + `strangers` speakers, none shared.

    An enrolled speaker's recordings are split (seeded): `enroll_recordings` to enroll, the rest
    spoken in the meeting; a stranger speaks all of theirs. Speakers in `exclude` are never picked.
    """
    sources, _ = scan(data_dir)
    by_speaker: dict[str, list[Path]] = {}
    for source in sources:
        by_speaker.setdefault(source.speaker, []).append(source.path)
    pool = sorted(s for s, files in by_speaker.items() if s not in exclude and len(files) > enroll_recordings)
    needed = meetings * (enrolled + strangers)
    if len(pool) < needed:
        raise CorpusError(f"{data_dir}: {meetings} meetings of {enrolled + strangers} speakers need {needed} speakers with more "
                          f"than {enroll_recordings} recordings each; found {len(pool)}")
    rng = np.random.default_rng(seed)
    chosen = [pool[i] for i in rng.permutation(len(pool))[:needed]]
    enrollment, plans = {}, []
    for m in range(meetings):
        group = chosen[m * (enrolled + strangers) : (m + 1) * (enrolled + strangers)]
        known, unknown = sorted(group[:enrolled]), sorted(group[enrolled:])
        spoken: dict[str, list[Path]] = {}
        for speaker in group:
            files = sorted(by_speaker[speaker])
            order = np.random.default_rng([seed, zlib.crc32(speaker.encode())]).permutation(len(files))
            files = [files[i] for i in order]
            if speaker in known:
                enrollment[speaker], spoken[speaker] = files[:enroll_recordings], files[enroll_recordings:]
            else:
                spoken[speaker] = files
        plans.append(MeetingPlan(f"meeting{m + 1:02d}", _interleave(spoken, rng), known, unknown, seed * 1000 + m))
    return enrollment, plans


def _interleave(spoken: dict[str, list[Path]], rng: np.random.Generator) -> list[tuple[str, Path]]:
    """All utterances in a random order where no speaker follows themself (when that can be helped)."""
    left = {s: list(files) for s, files in spoken.items()}
    order, last = [], None
    while any(left.values()):
        weights = np.array([len(left[s]) if s != last else 0 for s in sorted(left)], dtype=float)
        if weights.sum() == 0:
            weights = np.array([len(left[s]) for s in sorted(left)], dtype=float)
        speaker = sorted(left)[rng.choice(len(left), p=weights / weights.sum())]
        order.append((speaker, left[speaker].pop(0)))
        last = speaker
    return order


def speech_spans(audio: np.ndarray, pause: float = PAUSE_SECONDS) -> list[tuple[float, float]]:
    """(start, end) seconds of `audio`'s speech: 20-ms frames no more than TRIM_DB under its loudest frame and
    at least FLOOR_DB over its noise floor (its 10th-percentile frame), joined across pauses shorter than `pause`."""
    n = len(audio) // TRIM_FRAME
    if n == 0:
        return []
    level = 10 * np.log10(np.mean(np.square(audio[: n * TRIM_FRAME].reshape(n, TRIM_FRAME), dtype=np.float64), axis=1) + 1e-20)
    loud = np.flatnonzero(level >= max(level.max() - TRIM_DB, np.percentile(level, 10) + FLOOR_DB))
    if len(loud) == 0:  # every frame within FLOOR_DB of the floor: a steady sound, no speech
        return []
    breaks = np.flatnonzero(np.diff(loud) - 1 >= round(pause * SAMPLE_RATE / TRIM_FRAME))
    firsts, lasts = np.r_[loud[0], loud[breaks + 1]], np.r_[loud[breaks], loud[-1]]
    frame = TRIM_FRAME / SAMPLE_RATE
    return [(float(a * frame), float((b + 1) * frame)) for a, b in zip(firsts, lasts)]


def trim_silence(audio: np.ndarray, spans: list[tuple[float, float]] | None = None) -> np.ndarray:
    """`audio` from the start of its first speech span to the end of its last (`spans`: its `speech_spans`,
    when the caller has them already)."""
    spans = speech_spans(audio) if spans is None else spans
    return audio[round(spans[0][0] * SAMPLE_RATE) : round(spans[-1][1] * SAMPLE_RATE)] if spans else audio


def build_meeting(plan: MeetingPlan, pause: tuple[float, float] = (0.2, 1.2), overlap_share: float = 0.15,
                  overlap: tuple[float, float] = (0.3, 1.0), gain_db: float = 6.0, noise_dbfs: float = -60.0) -> Meeting:
    """Mix a planned meeting: pauses drawn from `pause` seconds; an utterance overlaps the one before with
    probability `overlap_share`, by `overlap` seconds (at most half the shorter one); each speaker's level
    is drawn within +-`gain_db` of SPEECH_DBFS; white noise at `noise_dbfs` underneath everything."""
    rng = np.random.default_rng(plan.seed)
    speakers = sorted({s for s, _ in plan.utterances})
    gains = {s: 10 ** ((SPEECH_DBFS + rng.uniform(-gain_db, gain_db)) / 20) for s in speakers}
    pieces, turns, cursor, previous = [], [], 0.5, None
    for speaker, path in plan.utterances:
        recorded = load_audio(path, SAMPLE_RATE)
        spans = speech_spans(recorded)
        speech = trim_silence(recorded, spans)
        spans = spans or [(0.0, len(recorded) / SAMPLE_RATE)]
        speech = speech * (gains[speaker] / max(float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))), 1e-9))
        seconds = len(speech) / SAMPLE_RATE
        if previous is not None and rng.random() < overlap_share:
            start = cursor - min(rng.uniform(*overlap), seconds / 2, (previous.end - previous.start) / 2)
        else:
            start = cursor + (rng.uniform(*pause) if previous is not None else 0.0)
        start = round(start * SAMPLE_RATE) / SAMPLE_RATE
        pieces.append((round(start * SAMPLE_RATE), speech.astype(np.float32)))
        previous = Turn(round(start, 4), round(start + seconds, 4), speaker)  # the whole utterance
        turns += [Turn(round(start + a - spans[0][0], 4), round(start + b - spans[0][0], 4), speaker) for a, b in spans]
        cursor = max(cursor, previous.end)
    total = max(first + len(s) for first, s in pieces) + SAMPLE_RATE // 2
    audio = (rng.standard_normal(total) * 10 ** (noise_dbfs / 20)).astype(np.float32)
    for first, speech in pieces:
        audio[first : first + len(speech)] += speech
    np.clip(audio, -1.0, 1.0, out=audio)
    return Meeting(plan.name, audio, turns, plan.enrolled, plan.strangers, overlap_seconds=_overlap(turns),
                   details={"speaker_dbfs": {s: round(20 * np.log10(g), 1) for s, g in gains.items()}})


def _overlap(turns: list[Turn]) -> float:
    """Seconds during which two or more turns are under way."""
    edges = sorted([(t.start, 1) for t in turns] + [(t.end, -1) for t in turns])
    total, active, last = 0.0, 0, 0.0
    for time, step in edges:
        if active >= 2:
            total += time - last
        active, last = active + step, time
    return round(total, 4)
