"""Synthetic voices: a source-filter speech model that writes a multi-speaker corpus for the demo and tests.

A speaker is a `VoiceProfile` drawn from (seed, speaker index): mean pitch and intonation range,
vocal-tract length (which scales the formants), individual formant offsets and timbre, spectral tilt,
jitter, shimmer, breathiness and speaking rate. A recording is phrases of syllables (an optional
consonant, then a vowel from a shared inventory) with smooth formant transitions, declining intonation
and pauses, heard through a slightly coloured room with a little background noise.
"""

from __future__ import annotations

import filecmp
import math
import os
import random
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np
import scipy.fft

from speakerid.audio import SAMPLE_RATE, write_wav
from speakerid.errors import CorpusError

__all__ = ["VoiceProfile", "speak", "synthesize"]

# Adult male vowel targets F1-F4 in Hz (Peterson & Barney 1952, F4 filled in) and how often each is drawn.
_VOWELS = np.array([
    [270, 2290, 3010, 3600],  # i   beet
    [390, 1990, 2550, 3500],  # ɪ   bit
    [530, 1840, 2480, 3500],  # ɛ   bet
    [660, 1720, 2410, 3500],  # æ   bat
    [730, 1090, 2440, 3400],  # ɑ   father
    [570, 840, 2410, 3300],  # ɔ   bought
    [440, 1020, 2240, 3300],  # ʊ   book
    [300, 870, 2240, 3300],  # u   boot
    [640, 1190, 2390, 3400],  # ʌ   but
    [490, 1350, 1690, 3300],  # ɝ   bird
    [500, 1500, 2500, 3500],  # ə   about
], dtype=float)
_VOWEL_WEIGHTS = (8, 12, 8, 6, 7, 4, 3, 5, 8, 3, 16)
_BANDWIDTHS = np.array([65.0, 95.0, 150.0, 230.0])  # Hz, scaled per speaker

# Noise spectra for frication and bursts: (centre in Hz for an adult male, width in octaves).
_FRICATIVES = {"s": (5500.0, 0.4), "sh": (3000.0, 0.5), "f": (4000.0, 1.5)}
_FRICATIVE_INDEX = {name: i for i, name in enumerate(_FRICATIVES)}


class _Phase(NamedTuple):
    """One stretch of speech: source levels and (for vowels and sonorants) formant targets."""

    ms: tuple[float, float] = (0.0, 0.0)  # a consonant phase's range of lengths
    voicing: float = 0.0
    aspiration: float = 0.0
    frication: float = 0.0
    fricative: str = "s"
    formants: tuple[float, float, float, float] | None = None


def _stop(burst: str, voiced: bool) -> tuple[_Phase, ...]:
    closure = _Phase((40, 80), voicing=0.08 if voiced else 0.0)
    release = _Phase((8, 16), frication=0.3 if voiced else 0.6, fricative=burst)
    if voiced:
        return closure, release
    return closure, release, _Phase((25, 55), aspiration=0.2)


_CONSONANTS: dict[str, tuple[tuple[_Phase, ...], float]] = {  # phases, how often drawn
    "p": (_stop("f", False), 4), "t": (_stop("s", False), 7), "k": (_stop("sh", False), 5),
    "b": (_stop("f", True), 3), "d": (_stop("s", True), 5), "g": (_stop("sh", True), 2),
    "s": ((_Phase((70, 130), frication=0.55, fricative="s"),), 6),
    "sh": ((_Phase((70, 130), frication=0.5, fricative="sh"),), 2),
    "f": ((_Phase((60, 110), frication=0.15, fricative="f"),), 3),
    "z": ((_Phase((50, 100), voicing=0.3, frication=0.25, fricative="s", formants=(250, 1600, 2500, 3400)),), 2),
    "v": ((_Phase((40, 80), voicing=0.35, frication=0.1, fricative="f", formants=(250, 1100, 2300, 3300)),), 2),
    "h": ((_Phase((50, 90), aspiration=0.3),), 3),
    "m": ((_Phase((50, 90), voicing=0.35, formants=(250, 1100, 2200, 3300)),), 5),
    "n": ((_Phase((45, 80), voicing=0.35, formants=(250, 1500, 2600, 3400)),), 7),
    "l": ((_Phase((40, 70), voicing=0.7, formants=(360, 1000, 2600, 3300)),), 5),
    "r": ((_Phase((40, 70), voicing=0.7, formants=(330, 1100, 1600, 3300)),), 4),
    "w": ((_Phase((40, 70), voicing=0.7, formants=(300, 700, 2200, 3300)),), 3),
    "j": ((_Phase((40, 70), voicing=0.7, formants=(270, 2200, 3000, 3600)),), 2),
}
_ONSETS = list(_CONSONANTS)
_ONSET_WEIGHTS = [weight for _, weight in _CONSONANTS.values()]
_CODAS = ["n", "s", "t", "m", "k", "l", "r", "f"]

_TIMBRE_ORDER = 4  # cosine terms of a speaker's fixed spectral colouring
_BLOCK = 128  # frames shaped at a time
_BYTE_NOISE_VARIANCE = (256**2 - 1) / 12.0  # of a uniform random byte
# Random streams: a voice from [seed, speaker, 1], its recordings from [seed, speaker, 2, recording].
_VOICE_STREAM, _RECORDING_STREAM = 1, 2


@dataclass(frozen=True)
class VoiceProfile:
    """One synthetic speaker: what stays the same across all of their recordings.

    Draw one with `VoiceProfile.random(rng)`; `VoiceProfile.of_speaker(seed, index)` is the voice that
    `synthesize(seed=seed)` gives its speaker number `index + 1`.
    """

    pitch_hz: float  # mean fundamental frequency
    pitch_range: float  # semitones of intonation swing over a phrase
    tract_scale: float  # formant scale from vocal-tract length; 1.0 is an average adult man
    formant_shift: tuple[float, float, float, float]  # individual factors on F1-F4
    bandwidth_scale: float  # formant bandwidths relative to average ones
    tilt_db_per_octave: float  # slope of the glottal source spectrum
    jitter: float  # cycle-to-cycle perturbation of the glottal period, fraction of a period
    shimmer: float  # cycle-to-cycle perturbation of the pulse amplitude, fraction
    breathiness: float  # aspiration noise level relative to voicing
    syllables_per_second: float
    timbre_db: tuple[float, ...]  # fixed spectral colouring: cosine coefficients over log frequency

    @classmethod
    def random(cls, rng: np.random.Generator) -> VoiceProfile:
        """Draw a voice: a man's, a woman's or a child's, with individual variation."""
        kind = rng.choice(3, p=[0.45, 0.45, 0.10])
        pitch_low, pitch_high = ((85, 150), (165, 255), (240, 330))[kind]
        tract_low, tract_high = ((0.92, 1.07), (1.10, 1.25), (1.28, 1.42))[kind]
        return cls(
            pitch_hz=float(rng.uniform(pitch_low, pitch_high)),
            pitch_range=float(rng.uniform(2.5, 7.0)),
            tract_scale=float(rng.uniform(tract_low, tract_high)),
            formant_shift=tuple(float(x) for x in np.exp(rng.normal(0.0, 0.05, 4))),
            bandwidth_scale=float(rng.uniform(0.8, 1.35)),
            tilt_db_per_octave=float(rng.uniform(-9.0, -3.0)),
            jitter=float(rng.uniform(0.003, 0.015)),
            shimmer=float(rng.uniform(0.02, 0.08)),
            breathiness=float(rng.uniform(0.02, 0.25)),
            syllables_per_second=float(rng.uniform(3.5, 6.0)),
            timbre_db=tuple(float(x) for x in rng.normal(0.0, 2.5, _TIMBRE_ORDER)),
        )

    @classmethod
    def of_speaker(cls, seed: int, index: int) -> VoiceProfile:
        """The voice of speaker `index` (from 0) in the corpus that `synthesize(seed=seed)` writes."""
        return cls.random(np.random.default_rng([seed, index, _VOICE_STREAM]))


def speak(voice: VoiceProfile, seconds: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A recording of `voice` talking for `seconds`: float32 mono in [-1, 1] at `sample_rate`."""
    n_samples = round(seconds * sample_rate)
    # The vocal tract changes with time, so it is applied frame by frame to the short-time spectrum
    # of the source: 32 ms frames every 16 ms, windowed so that the frames add back up exactly.
    n_fft = 2 ** round(math.log2(0.032 * sample_rate))
    hop = n_fft // 2
    n_frames = -(-n_samples // hop) + 1
    times = np.arange(n_frames) * (hop / sample_rate)  # frame i is centred on sample i * hop
    freqs = scipy.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    window = np.sin(np.pi * np.arange(n_fft) / n_fft).astype(np.float32)  # square root of a periodic Hann
    r = random.Random(int(rng.integers(2**63)))

    segments, pitch_points = _script(voice, seconds + 0.1, r)
    controls = _Controls(segments)
    semitones = np.interp(times, *zip(*pitch_points)) + r.gauss(0.0, 0.4)  # the day's pitch differs a little
    f0 = voice.pitch_hz * 2.0 ** (semitones / 12.0)
    pulses = _glottal_pulses(voice, f0, times, controls, n_frames, hop, sample_rate, rng)

    vocal_tract = _VocalTract(voice, controls.formants(times), freqs, r)
    # The glottal source: a low-pass whose slope (dB per octave) is the speaker's tilt.
    slope = voice.tilt_db_per_octave / (20.0 * math.log10(2.0))
    tilt = ((1.0 + 1j * freqs / 200.0) ** slope).astype(np.complex64)
    # Noise sources are set relative to the voice around 500 Hz, where most of a vowel's energy lies.
    # Complex noise with uniform parts in [-127.5, 127.5] (from random bytes, the cheapest random numbers
    # numpy makes) times `unit` has the spectrum of unit-variance white noise seen through the window.
    unit = math.sqrt(n_fft / (4.0 * _BYTE_NOISE_VARIANCE)) * (1.0 + (500.0 / 200.0) ** 2) ** (slope / 2.0)
    level = unit * float(np.sqrt(np.mean(np.abs(vocal_tract.response(slice(None, None, max(1, n_frames // 64)))) ** 2)))
    aspiration = unit * (voice.breathiness * controls.level("voicing", times) + controls.level("aspiration", times))
    aspiration = aspiration.astype(np.float32)[:, None]
    frication = controls.level("frication", times)
    fricatives = _fricative_spectra(voice, freqs) * level
    background = _background(freqs, level, r)

    blocks = pulses.reshape(n_frames + 1, hop)
    audio = np.zeros((n_frames + 1, hop), dtype=np.float32)
    frames = np.empty((_BLOCK, n_fft), dtype=np.float32)
    # Block by block, so that the arrays stay in cache.
    for first in range(0, n_frames, _BLOCK):
        block = slice(first, min(first + _BLOCK, n_frames))
        n = block.stop - first
        frames[:n, :hop] = blocks[first:block.stop]
        frames[:n, hop:] = blocks[first + 1:block.stop + 1]
        frames[:n] *= window
        spectrum = scipy.fft.rfft(frames[:n], axis=1)
        noise = np.frombuffer(rng.bytes(2 * n * len(freqs)), np.int8).astype(np.float32)
        noise += np.float32(0.5)
        noise = noise.view(np.complex64).reshape(n, len(freqs))
        spectrum *= tilt
        spectrum += noise * aspiration[block]
        spectrum *= vocal_tract.response(block)
        spectrum += noise * background
        fricated = np.flatnonzero(frication[block] > 0)
        shape = frication[first + fricated, None] * fricatives[controls.fricative(times[first + fricated])]
        spectrum[fricated] += noise[fricated] * shape.astype(np.float32)
        shaped = scipy.fft.irfft(spectrum, n=n_fft, axis=1, overwrite_x=True)
        shaped *= window
        audio[first:block.stop] += shaped[:, :hop]
        audio[first + 1:block.stop + 1] += shaped[:, hop:]
    audio = audio.ravel()[hop:hop + n_samples]

    rms = math.sqrt(float(np.mean(np.square(audio))))
    gain = 10.0 ** (r.uniform(-28.0, -20.0) / 20.0) / max(rms, 1e-12)
    peak = float(np.max(np.abs(audio))) * gain
    if peak > 0.95:
        gain *= 0.95 / peak
    audio *= np.float32(gain)
    return audio


class _Segment(NamedTuple):
    start: float
    end: float
    phase: _Phase


class _Controls:
    """What a script asks for at any time: source levels with short ramps, gliding formants, the fricative."""

    def __init__(self, segments: list[_Segment]):
        self.start = np.array([s.start for s in segments])
        end = np.array([s.end for s in segments])
        ramp = np.minimum(0.012, (end - self.start) / 4)
        self.held = np.stack([self.start + ramp, end - ramp], axis=1).ravel()
        self.levels = {name: np.repeat([getattr(s.phase, name) for s in segments], 2)
                       for name in ("voicing", "aspiration", "frication")}
        self.fricatives = np.array([_FRICATIVE_INDEX[s.phase.fricative] for s in segments])
        voiced = [s for s in segments if s.phase.formants is not None]
        self.target_times = np.array([[s.start + 0.3 * (s.end - s.start), s.end - 0.3 * (s.end - s.start)]
                                      for s in voiced]).ravel()
        self.targets = np.repeat(np.array([s.phase.formants for s in voiced]), 2, axis=0)

    def level(self, name: str, times: np.ndarray) -> np.ndarray:
        return np.interp(times, self.held, self.levels[name])

    def formants(self, times: np.ndarray) -> np.ndarray:
        """(times, 4) formant frequencies of an average adult man saying this script."""
        return np.stack([np.interp(times, self.target_times, self.targets[:, k]) for k in range(4)], axis=1)

    def fricative(self, times: np.ndarray) -> np.ndarray:
        current = np.searchsorted(self.start, times, side="right") - 1
        return self.fricatives[np.clip(current, 0, len(self.fricatives) - 1)]


def _script(voice: VoiceProfile, seconds: float, r: random.Random) -> tuple[list[_Segment], list[tuple[float, float]]]:
    """Phrases of syllables up to `seconds`: contiguous segments, and pitch points (time, semitones)."""
    rate = voice.syllables_per_second * r.uniform(0.93, 1.07)
    pace = math.sqrt(4.5 / rate)  # consonants shorten less than syllables when speaking fast
    segments: list[_Segment] = []
    pitch: list[tuple[float, float]] = [(0.0, 0.0)]
    t = 0.0

    def add(length: float, phase: _Phase) -> None:
        nonlocal t
        segments.append(_Segment(t, t + length, phase))
        t += length

    def add_consonant(name: str) -> None:
        for phase in _CONSONANTS[name][0]:
            add(r.uniform(*phase.ms) / 1000.0 * pace, phase)

    add(r.uniform(0.1, 0.5), _Phase())
    while True:  # at least one phrase, however short the recording
        syllables = r.randint(3, 12)
        start = t
        top = voice.pitch_range * r.uniform(0.0, 0.4)
        fall = voice.pitch_range * r.uniform(0.5, 0.9)
        nuclei: list[tuple[float, bool]] = []
        for i in range(syllables):
            stressed = r.random() < 0.35
            final = i == syllables - 1
            length = r.uniform(0.75, 1.25) / rate * (1.35 if stressed else 1.0) * (1.3 if final else 1.0)
            ends = t + length
            if r.random() < 0.8:
                add_consonant(r.choices(_ONSETS, _ONSET_WEIGHTS)[0])
            coda = r.choice(_CODAS) if r.random() < 0.2 else None
            vowel = _VOWELS[r.choices(range(len(_VOWELS)), _VOWEL_WEIGHTS)[0]]
            vowel_length = max(ends - t - (0.06 * pace if coda else 0.0), 0.4 * length)
            loudness = (1.3 if stressed else 1.0) * r.uniform(0.85, 1.15)
            nuclei.append((t + vowel_length / 2, stressed))
            add(vowel_length, _Phase(voicing=loudness, formants=tuple(vowel * r.uniform(0.97, 1.03))))
            if coda:
                add_consonant(coda)
        span = t - start
        question = r.random() < 0.1
        for i, (centre, stressed) in enumerate(nuclei):
            semitones = top - fall * (centre - start) / span + r.uniform(-0.3, 0.3)
            if stressed:
                semitones += voice.pitch_range * r.uniform(0.2, 0.45)
            if i == len(nuclei) - 1:
                semitones += r.uniform(2.0, 4.0) if question else -r.uniform(1.0, 3.0)
            pitch.append((centre, semitones))
        pause = r.uniform(0.15, 0.6) if r.random() < 0.8 else r.uniform(0.7, 1.4)
        add(pause, _Phase())
        if t >= seconds:
            return segments, pitch


def _glottal_pulses(voice: VoiceProfile, f0: np.ndarray, times: np.ndarray, controls: _Controls,
                    n_frames: int, hop: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The voiced source: one pulse per glottal cycle, on the padded timeline the frames are cut from."""
    phase = np.concatenate([[0.0], np.cumsum((f0[1:] + f0[:-1]) * 0.5 * np.diff(times))])
    at = np.interp(np.arange(1, math.floor(phase[-1]) + 1), phase, times)
    period = 1.0 / np.interp(at, times, f0)
    at += voice.jitter * period * rng.standard_normal(at.size)
    # Unit power whatever the pitch, like the unit-variance noise sources.
    amplitude = controls.level("voicing", at) * np.sqrt(sample_rate * period)
    amplitude *= np.exp(voice.shimmer * rng.standard_normal(at.size))
    position = at * sample_rate + hop
    keep = (amplitude > 1e-4) & (position >= 0) & (position < (n_frames + 1) * hop - 1)
    position, amplitude = position[keep], amplitude[keep]
    index = position.astype(np.int64)
    fraction = position - index
    pulses = np.zeros((n_frames + 1) * hop, dtype=np.float32)
    # Pulses sit between samples; sharing each between two neighbours keeps the period exact on average.
    pulses[index] = amplitude * (1.0 - fraction)
    pulses[index + 1] = amplitude * fraction
    return pulses


def _resonance(freqs: np.ndarray, centre: np.ndarray, bandwidth: float) -> np.ndarray:
    """Frequency response of a two-pole resonance with unit gain at 0 Hz, one row per centre frequency."""
    c = centre[:, None] ** 2 + (bandwidth / 2.0) ** 2
    return c / (c - freqs**2 + 1j * bandwidth * freqs)


class _VocalTract:
    """Frequency response per frame: four moving formants over the speaker's and the room's fixed colouring."""

    def __init__(self, voice: VoiceProfile, formants: np.ndarray, freqs: np.ndarray, r: random.Random):
        fixed = np.abs(_resonance(freqs, np.array([4500.0 * voice.tract_scale]), 400.0)[0])  # a fifth formant
        fixed *= _low_cut(freqs)
        fixed *= 10.0 ** (_cosine_series(freqs, voice.timbre_db) / 20.0)
        room = [0.0] * _TIMBRE_ORDER + [r.gauss(0.0, 0.4) for _ in range(8)]
        fixed *= 10.0 ** (_cosine_series(freqs, room) / 20.0)
        scale = voice.tract_scale * np.array(voice.formant_shift)
        self.tables, self.rows = [], []
        for k in range(4):
            # Formants move in steps of 1/100 octave (0.7 %, below what ears tell apart): each step is computed once.
            steps, rows = np.unique(np.round(np.log2(formants[:, k] * scale[k]) * 100.0), return_inverse=True)
            table = _resonance(freqs, 2.0 ** (steps / 100.0), _BANDWIDTHS[k] * voice.bandwidth_scale)
            self.tables.append((table * fixed if k == 0 else table).astype(np.complex64))
            self.rows.append(rows)

    def response(self, frames: slice) -> np.ndarray:
        response = self.tables[0][self.rows[0][frames]]
        for table, rows in zip(self.tables[1:], self.rows[1:]):
            response *= table[rows[frames]]
        return response


def _low_cut(freqs: np.ndarray) -> np.ndarray:
    """The microphone's: -3 dB at 80 Hz."""
    return freqs**2 / (freqs**2 + 80.0**2)


def _cosine_series(freqs: np.ndarray, coefficients: Iterable[float]) -> np.ndarray:
    """A smooth curve over log frequency (100 Hz to 8 kHz): sum of c_j cos(pi j x)."""
    x = np.clip(np.log(np.maximum(freqs, 100.0) / 100.0) / math.log(80.0), 0.0, 1.0)
    return sum(c * np.cos(np.pi * (j + 1) * x) for j, c in enumerate(coefficients))


def _fricative_spectra(voice: VoiceProfile, freqs: np.ndarray) -> np.ndarray:
    """(fricatives, bins) noise shapes; smaller speakers have higher ones."""
    octaves = [np.log2(np.maximum(freqs, 1.0) / (centre * voice.tract_scale)) / width
               for centre, width in _FRICATIVES.values()]
    return np.stack([np.exp(-0.5 * x**2) for x in octaves]).astype(np.float32)


def _background(freqs: np.ndarray, level: float, r: random.Random) -> np.ndarray:
    """Steady room and microphone noise, 35 to 50 dB below the voice, falling towards high frequencies."""
    snr_db = r.uniform(35.0, 50.0)
    colour = _low_cut(freqs) / np.sqrt(1.0 + freqs / r.uniform(300.0, 1500.0))
    return (level * 10.0 ** (-snr_db / 20.0) * colour).astype(np.float32)


# ---------------------------------------------------------------- the corpus on disk


class _Job(NamedTuple):
    path: Path
    seed: int
    speaker: int
    recording: int
    seconds: float
    sample_rate: int


def synthesize(
    out: str | Path,
    speakers: int = 10,
    minutes: float = 2.0,
    recording_seconds: float = 30.0,
    sample_rate: int = SAMPLE_RATE,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> list[Path]:
    """Write `minutes` of speech per speaker as `OUT/spk01/spk01_01.wav`, ...: 16-bit mono WAV files of
    `recording_seconds` each (the last one of a speaker may be shorter). Returns their paths.

    The same arguments write the same bytes, and a speaker's voice depends on (seed, speaker index)
    only. Files already in OUT must be exactly what this call writes, which resumes an interrupted
    run; anything else raises CorpusError. `workers` processes (default: one per CPU) share the files.
    """
    if speakers < 1:
        raise CorpusError(f"asked for {speakers} speakers; ask for at least 1")
    if not (0 < minutes < math.inf and 0 < recording_seconds < math.inf):
        raise CorpusError(f"asked for {minutes} minutes in recordings of {recording_seconds} s; both must be positive")
    if sample_rate < 8000:
        raise CorpusError(f"sample rate {sample_rate} Hz is too low for speech; use 8000 Hz or more")
    if seed < 0:
        raise CorpusError(f"seed must be 0 or more, got {seed}")
    if workers is not None and workers < 1:
        raise CorpusError(f"workers must be 1 or more, got {workers}")
    total, per_file = round(minutes * 60.0 * sample_rate), round(recording_seconds * sample_rate)
    if total < 1 or per_file < 1:
        raise CorpusError(f"{minutes} minutes in recordings of {recording_seconds} s is less than one sample")

    out = Path(out)
    jobs = _plan(out, speakers, total, per_file, sample_rate, seed)
    present = _claim(out, jobs)
    if present:
        same = _run(present, workers, "checking files already there", progress)
        if not all(same):
            raise CorpusError(
                f"{present[same.index(False)].path} differs from what this call would write there "
                "(other seed, lengths or sample rate); choose another output folder or repeat the settings that made it"
            )
    missing = [job for job in jobs if not job.path.exists()]
    for folder in sorted({job.path.parent for job in missing}):
        folder.mkdir(parents=True, exist_ok=True)
    _run(missing, workers, "synthesizing voices", progress)
    return [job.path for job in jobs]


def _plan(out: Path, speakers: int, total: int, per_file: int, sample_rate: int, seed: int) -> list[_Job]:
    """One job per recording, speaker by speaker; names are zero-padded so that they sort."""
    n_recordings = -(-total // per_file)
    speaker_digits, recording_digits = max(2, len(str(speakers))), max(2, len(str(n_recordings)))
    jobs = []
    for s in range(speakers):
        name = f"spk{s + 1:0{speaker_digits}d}"
        for k in range(n_recordings):
            path = out / name / f"{name}_{k + 1:0{recording_digits}d}.wav"
            jobs.append(_Job(path, seed, s, k, min(per_file, total - k * per_file) / sample_rate, sample_rate))
    return jobs


def _claim(out: Path, jobs: list[_Job]) -> list[_Job]:
    """The jobs whose file already exists; raise CorpusError if `out` holds anything this call would not write."""
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out} exists and is not a folder; choose another output folder")
    if not out.exists():
        return []
    ours = {job.path: job for job in jobs}
    temporary = {_temporary(job.path) for job in jobs}
    foreign = sorted(p for p in out.rglob("*") if not p.is_dir() and p not in ours and p not in temporary)
    if foreign:
        raise CorpusError(
            f"{out} already holds files that this call would not write (such as {foreign[0]}); "
            "choose an empty or new output folder"
        )
    return [job for path, job in ours.items() if path.exists()]


def _temporary(path: Path) -> Path:
    # Hidden, so that scanning the corpus never takes an unfinished file for a recording.
    return path.with_name(f".{path.stem}.partial.wav")


def _make(job: _Job) -> bool:
    """Render one recording; write it, or tell whether the file already there holds exactly these bytes."""
    voice = VoiceProfile.of_speaker(job.seed, job.speaker)
    rng = np.random.default_rng([job.seed, job.speaker, _RECORDING_STREAM, job.recording])
    audio = speak(voice, job.seconds, rng, job.sample_rate)
    temporary = _temporary(job.path)
    write_wav(temporary, audio, job.sample_rate)
    if job.path.exists():
        same = filecmp.cmp(temporary, job.path, shallow=False)
        temporary.unlink()
        return same
    os.replace(temporary, job.path)
    return True


def _run(jobs: list[_Job], workers: int | None, description: str, progress: bool) -> list[bool]:
    """`_make` each job, in worker processes when there are several; results in job order."""
    from speakerid.progress import progress_bar

    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(workers or available, len(jobs))
    if workers <= 1:
        results = []
        with progress_bar(description, total=len(jobs), enabled=progress and bool(jobs)) as advance:
            for job in jobs:
                results.append(_make(job))
                advance()
        return results
    with ProcessPoolExecutor(workers) as pool:
        # Submitted before the progress bar starts its thread: a forked worker then copies no running thread.
        futures = [pool.submit(_make, job) for job in jobs]
        with progress_bar(description, total=len(jobs), enabled=progress) as advance:
            for _ in as_completed(futures):
                advance()
        return [future.result() for future in futures]
