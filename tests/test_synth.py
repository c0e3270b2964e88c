"""The synthetic corpus: its files, its determinism, its voices, and how it treats an existing folder."""

from __future__ import annotations

import filecmp
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import find_peaks

from speakerid.errors import CorpusError
from speakerid.synth import VoiceProfile, speak, synthesize

SPEAKERS = 4
LENGTHS = {"minutes": 0.5, "recording_seconds": 12.0}  # recordings of 12, 12 and 6 s
QUIET = {"workers": 1, "progress": False}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    return out, synthesize(out, speakers=SPEAKERS, seed=0, **LENGTHS, **QUIET)


def _read(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    return audio


def _speaker(path: Path) -> int:
    return int(path.parent.name.removeprefix("spk")) - 1


def _median_f0(audio: np.ndarray, sample_rate: int = 16000) -> float:
    """Median pitch of the loud frames that autocorrelation finds periodic (60-500 Hz)."""
    n = int(0.04 * sample_rate)
    frames = sliding_window_view(audio, n)[:: n // 2].astype(np.float64)
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames**2).sum(axis=1)
    frames = frames[energy > 0.05 * energy.max()]
    autocorrelation = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * n)) ** 2)[:, :n]
    autocorrelation /= autocorrelation[:, :1]
    low, high = sample_rate // 500, sample_rate // 60
    lag = low + np.argmax(autocorrelation[:, low:high], axis=1)
    rows = np.arange(len(lag))
    before, peak, after = autocorrelation[rows, lag - 1], autocorrelation[rows, lag], autocorrelation[rows, lag + 1]
    exact_lag = lag + 0.5 * (before - after) / (before - 2 * peak + after)
    voiced = peak > 0.5
    assert voiced.mean() > 0.5, "most loud frames of a voice should be periodic"
    return float(np.median(sample_rate / exact_lag[voiced]))


def _long_term_spectrum(audio: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """Mean power in 20 log-spaced bands from 150 Hz to 7.6 kHz over the non-silent frames, in dB around its mean."""
    n = 512
    power = np.abs(np.fft.rfft(sliding_window_view(audio, n)[:: n // 2] * np.hanning(n))) ** 2
    power = power[power.sum(axis=1) > 1e-3 * power.sum(axis=1).max()]
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    edges = np.geomspace(150, 7600, 21)
    bands = 10 * np.log10([power[:, (freqs >= lo) & (freqs < hi)].mean() for lo, hi in zip(edges, edges[1:])])
    return bands - bands.mean()


# ---------------------------------------------------------------- files


def test_writes_named_recordings_of_the_asked_lengths(corpus):
    out, paths = corpus
    assert paths == sorted(out.rglob("*.wav"))
    names = [p.relative_to(out).as_posix() for p in paths[:3]]
    assert names == ["spk01/spk01_01.wav", "spk01/spk01_02.wav", "spk01/spk01_03.wav"]
    assert sorted({p.parent.name for p in paths}) == ["spk01", "spk02", "spk03", "spk04"]
    for path in paths:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
    assert [sf.info(p).frames for p in paths[:3]] == [192000, 192000, 96000]
    audio = _read(paths[0])
    assert 0.01 < np.sqrt(np.mean(audio**2)) and np.abs(audio).max() < 1.0


def test_other_sample_rate_and_names_that_sort(tmp_path):
    paths = synthesize(tmp_path / "c", speakers=12, minutes=0.02, recording_seconds=1.0, sample_rate=8000, **QUIET)
    assert paths[0].relative_to(tmp_path / "c").as_posix() == "spk01/spk01_01.wav"
    assert paths[-1].name == "spk12_02.wav" and len(paths) == 24
    assert [sf.info(p).frames for p in paths[:2]] == [8000, 1600]
    assert {sf.info(p).samplerate for p in paths} == {8000}


def test_a_recording_shorter_than_asked_when_minutes_are_few(tmp_path):
    (path,) = synthesize(tmp_path / "c", speakers=1, minutes=0.01, recording_seconds=30.0, **QUIET)
    assert sf.info(path).frames == 9600


@pytest.mark.parametrize("arguments", [
    {"speakers": 0}, {"minutes": 0}, {"recording_seconds": -1.0}, {"sample_rate": 4000}, {"seed": -1}, {"workers": 0},
])
def test_rejects_impossible_requests(tmp_path, arguments):
    with pytest.raises(CorpusError):
        synthesize(tmp_path / "c", **{"speakers": 1, "minutes": 0.01, "progress": False, **arguments})
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------- determinism


def test_same_seed_same_bytes_in_parallel_other_seed_other_bytes(corpus, tmp_path):
    out, paths = corpus
    again = synthesize(tmp_path / "again", speakers=SPEAKERS, seed=0, **LENGTHS, workers=2, progress=False)
    assert all(filecmp.cmp(a, b, shallow=False) for a, b in zip(paths, again))
    other = synthesize(tmp_path / "other", speakers=2, seed=1, **LENGTHS, **QUIET)
    assert not any(filecmp.cmp(a, b, shallow=False) for a, b in zip(paths, other))


def test_more_speakers_keep_the_first_voices(corpus, tmp_path):
    out, paths = corpus
    more = synthesize(tmp_path / "more", speakers=SPEAKERS + 1, seed=0, **LENGTHS, **QUIET)
    assert all(filecmp.cmp(a, b, shallow=False) for a, b in zip(paths, more))
    assert VoiceProfile.of_speaker(0, 2) == VoiceProfile.of_speaker(0, 2) != VoiceProfile.of_speaker(1, 2)


def test_speak_renders_a_voice_in_memory():
    voice = VoiceProfile.random(np.random.default_rng(5))
    audio = speak(voice, 2.5, np.random.default_rng(0))
    assert audio.dtype == np.float32 and audio.shape == (40000,)
    assert np.array_equal(audio, speak(voice, 2.5, np.random.default_rng(0)))
    assert abs(np.log(_median_f0(audio) / voice.pitch_hz)) < np.log(1.2)


# ---------------------------------------------------------------- voices


def test_each_speaker_keeps_its_pitch_and_speakers_differ(corpus):
    _, paths = corpus
    f0 = np.array([_median_f0(_read(p)) for p in paths])
    speaker = np.array([_speaker(p) for p in paths])
    profile = np.array([VoiceProfile.of_speaker(0, s).pitch_hz for s in range(SPEAKERS)])
    # Seed 0's voices lie at least 3.8 semitones apart. Every recording's pitch lies within 2 semitones
    # of its speaker's, and nearer to it than to any other speaker's.
    distance = np.abs(np.log2(f0[:, None] / profile[None, :])) * 12
    assert (distance[np.arange(len(paths)), speaker] < 2.0).all(), (f0, profile)
    assert (distance.argmin(axis=1) == speaker).all()
    # Spread within a speaker is small next to the spread between speakers.
    within = np.mean([np.std(np.log(f0[speaker == s])) for s in range(SPEAKERS)])
    between = np.std(np.log([np.median(f0[speaker == s]) for s in range(SPEAKERS)]))
    assert between > 4 * within


def test_recordings_of_one_speaker_share_a_spectrum(corpus):
    _, paths = corpus
    spectra = np.array([_long_term_spectrum(_read(p)) for p in paths])
    speaker = np.array([_speaker(p) for p in paths])
    distance = np.sqrt(((spectra[:, None] - spectra[None]) ** 2).mean(axis=-1))
    # For each pair of one speaker's recordings, compare with every recording of another speaker.
    closer = [distance[a, b] < distance[a, c]
              for a, b in combinations(range(len(paths)), 2) if speaker[a] == speaker[b]
              for c in np.flatnonzero(speaker != speaker[a])]
    assert np.mean(closer) > 0.9
    np.fill_diagonal(distance, np.inf)
    assert np.mean(speaker[distance.argmin(axis=1)] == speaker) >= 0.75


def test_sounds_like_phrases_of_syllables(corpus):
    _, paths = corpus
    for path in paths[:: 3]:
        audio = _read(path)
        frames = audio[: len(audio) // 160 * 160].reshape(-1, 160).astype(np.float64)
        level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        level -= np.percentile(level, 95)
        # Pauses between phrases: stretches of 150 ms or more, 30 dB below the voice (stop closures are shorter).
        edges = np.diff(np.concatenate([[0], (level < -30).astype(int), [0]]))
        silences = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        pauses = np.sum(silences >= 15) / (len(audio) / 16000)
        assert 0.2 < pauses < 1.5, f"{path.name}: {pauses:.2f} pauses per second"
        smooth = np.convolve(level, np.ones(5) / 5, mode="same")
        syllables = len(find_peaks(smooth, prominence=6, height=-25)[0]) / (len(audio) / 16000)
        assert 1.5 < syllables < 8, f"{path.name}: {syllables:.1f} loudness peaks per second"


# ---------------------------------------------------------------- an existing folder


def test_refuses_a_folder_holding_other_files(tmp_path):
    out = tmp_path / "c"
    (out / "spk01").mkdir(parents=True)
    notes = out / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(CorpusError, match="notes.txt"):
        synthesize(out, speakers=1, minutes=0.02, recording_seconds=1.0, **QUIET)
    assert notes.read_text() == "mine" and not any((out / "spk01").iterdir())
    with pytest.raises(CorpusError, match="not a folder"):
        synthesize(notes, speakers=1, minutes=0.02, progress=False)


def test_refuses_recordings_made_with_other_settings(tmp_path):
    out = tmp_path / "c"
    paths = synthesize(out, speakers=2, minutes=0.02, recording_seconds=1.0, seed=0, **QUIET)
    before = [p.read_bytes() for p in paths]
    with pytest.raises(CorpusError, match="differs"):
        synthesize(out, speakers=2, minutes=0.02, recording_seconds=1.0, seed=7, **QUIET)
    with pytest.raises(CorpusError, match="would not write"):
        synthesize(out, speakers=1, minutes=0.02, recording_seconds=1.0, seed=0, **QUIET)
    assert [p.read_bytes() for p in paths] == before
    assert sorted(out.rglob("*")) == sorted([*paths, out / "spk01", out / "spk02"])


def test_resumes_an_interrupted_run(tmp_path, capsys):
    settings = dict(speakers=2, minutes=0.05, recording_seconds=1.0, seed=3, workers=1)
    reference = synthesize(tmp_path / "reference", progress=False, **settings)
    out = tmp_path / "c"
    paths = synthesize(out, progress=False, **settings)
    # An interruption: one file never written, another caught half-way through its temporary file.
    paths[1].unlink()
    paths[4].rename(paths[4].with_name(f".{paths[4].stem}.partial.wav"))
    with open(paths[4].with_name(f".{paths[4].stem}.partial.wav"), "r+b") as f:
        f.truncate(1000)
    kept = {p: p.stat().st_mtime_ns for p in paths if p.exists()}

    assert synthesize(out, progress=True, **settings) == paths
    assert all(filecmp.cmp(a, b, shallow=False) for a, b in zip(paths, reference))
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items()), "finished files must not be rewritten"
    assert sorted(p.name for p in out.rglob(".*")) == []
    assert "synthesizing voices" in capsys.readouterr().err
