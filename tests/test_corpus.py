"""prepare on real recordings: chunk counts, splits by recording, resampling, bad input, resume."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import speakerid.corpus as corpus_module
from speakerid.audio import load_audio, to_int16
from speakerid.corpus import Corpus, PrepareConfig, plan_chunks, prepare, split_recordings
from speakerid.errors import CorpusError

from conftest import held_elsewhere, link_subset


def read_chunks(corpus_dir: Path) -> list[dict]:
    with open(corpus_dir / "chunks.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def expected_chunks(n_samples: int, chunk: int) -> int:
    return (n_samples - chunk) // chunk + 1 if n_samples >= chunk else 1


@pytest.mark.parametrize("seconds", [3, 5, 10])
def test_dsp20_chunk_counts_and_split_by_recording(dsp20, tmp_path, seconds):
    result = prepare(dsp20, tmp_path / "corpus", PrepareConfig(chunk_seconds=seconds), progress=False)
    rows = read_chunks(tmp_path / "corpus")

    files = sorted(dsp20.glob("*/*.flac"))
    assert result.summary["recordings"] == len(files) == 100
    expected = sum(expected_chunks(sf.info(str(f)).frames, seconds * 16000) for f in files)
    assert len(rows) == expected == sum(result.summary["chunks"].values())
    assert all(int(r["end"]) - int(r["start"]) == seconds * 16000 for r in rows)

    split_of_recording = defaultdict(set)
    for r in rows:
        split_of_recording[r["recording"]].add(r["split"])
    assert all(len(s) == 1 for s in split_of_recording.values()), "a recording contributes to two splits"

    per_speaker = defaultdict(lambda: defaultdict(int))
    for recording, (split,) in split_of_recording.items():
        per_speaker[recording.split("/")[0]][split] += 1
    assert len(per_speaker) == 20
    for counts in per_speaker.values():  # 5 recordings, 20 % validation, 20 % test
        assert dict(counts) == {"train": 3, "validation": 1, "test": 1}


def test_split_is_deterministic_and_seeded(dsp20, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        prepare(dsp20, tmp_path / name, PrepareConfig(seed=seed), progress=False)
    a, b, c = ((tmp_path / n / "chunks.csv").read_bytes() for n in "abc")
    assert a == b
    assert a != c


def test_chunks_are_windows_into_the_decoded_audio(dsp20, tmp_path):
    prepare(dsp20, tmp_path / "corpus", PrepareConfig(chunk_seconds=5), progress=False)
    corpus = Corpus.open(tmp_path / "corpus")
    assert corpus.audio.dtype == np.int16
    for index in (0, 7, len(corpus.chunk_label) - 1):
        recording = corpus.recording_ids[corpus.chunk_recording[index]]
        start, end = corpus.chunk_start[index], corpus.chunk_end[index]
        direct, _ = sf.read(str(dsp20 / recording), dtype="int16")
        np.testing.assert_array_equal(corpus.chunk_audio(index), direct[start:end])
        assert corpus.labels[corpus.chunk_label[index]] == recording.split("/")[0]


def test_fsdd_is_resampled_and_short_clips_follow_the_policy(fsdd, tmp_path):
    data = link_subset(fsdd, tmp_path / "data", speakers=2, per_speaker=12)
    result = prepare(data, tmp_path / "padded", PrepareConfig(chunk_seconds=3), progress=False)
    corpus = Corpus.open(tmp_path / "padded")
    assert result.summary["recordings"] == 24 and not result.rejected
    assert len(corpus.chunk_label) == 24  # every clip is shorter than 3 s: one padded chunk each

    clip = sorted((data / corpus.labels[0]).glob("*.wav"))[0]
    frames = sf.info(str(clip)).frames
    recording = corpus.recordings[f"{corpus.labels[0]}/{clip.name}"]
    assert sf.info(str(clip)).samplerate == 8000
    assert abs(recording.samples - 2 * frames) <= 1
    expected = to_int16(load_audio(clip, 16000))
    index = corpus.recording_ids.index(recording.recording)
    window = corpus.chunk_audio(int(np.flatnonzero(corpus.chunk_recording == index)[0]))
    assert len(window) == 48000
    np.testing.assert_array_equal(window[: recording.samples], expected)
    assert not window[recording.samples :].any()
    chunk = int(np.flatnonzero(corpus.chunk_recording == index)[0])
    repeated = corpus.chunk_audio(chunk, fill="repeat")  # as a run trained on repeated crops sees it
    np.testing.assert_array_equal(repeated, np.resize(expected, 48000))

    result = prepare(data, tmp_path / "strict", PrepareConfig(chunk_seconds=3, short="reject"), progress=False)
    assert len(result.rejected) == 24
    assert all("shorter than one chunk" in r.reason for r in result.rejected)
    assert result.summary["recordings"] == 0


def test_chunk_plan_tail_and_hop():
    config = PrepareConfig(chunk_seconds=1, sample_rate=10)
    assert plan_chunks(35, config) == [(0, 10), (10, 20), (20, 30)]
    assert plan_chunks(35, PrepareConfig(chunk_seconds=1, sample_rate=10, tail="pad"))[-1] == (30, 40)
    assert plan_chunks(30, PrepareConfig(chunk_seconds=1, sample_rate=10, tail="pad")) == [(0, 10), (10, 20), (20, 30)]
    assert plan_chunks(25, PrepareConfig(chunk_seconds=1, hop_seconds=0.5, sample_rate=10)) == [
        (0, 10), (5, 15), (10, 20), (15, 25)]
    assert plan_chunks(4, config) == [(0, 10)]
    assert plan_chunks(4, PrepareConfig(chunk_seconds=1, sample_rate=10, short="reject")) == []


def test_split_sizes_for_few_recordings():
    config = PrepareConfig()
    split = split_recordings({"one": ["o1"], "two": ["t1", "t2"], "three": ["h1", "h2", "h3"]}, config)
    assert split["o1"] == "train"
    assert sorted(split[r] for r in ("t1", "t2")) == ["test", "train"]
    assert sorted(split[r] for r in ("h1", "h2", "h3")) == ["test", "train", "validation"]
    no_holdout = split_recordings({"s": ["a", "b", "c"]}, PrepareConfig(val_fraction=0, test_fraction=0))
    assert set(no_holdout.values()) == {"train"}
    # A speaker's split does not move when other speakers are added.
    more = split_recordings({"three": ["h1", "h2", "h3"], "new": ["n1", "n2", "n3"]}, config)
    assert all(more[r] == split[r] for r in ("h1", "h2", "h3"))


def write_odd_folder(root: Path) -> dict[str, str]:
    """Broken and odd files, as users have them. Returns the expected rejections: path -> reason fragment."""
    t = np.arange(int(4.0 * 44100)) / 44100
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)

    def audio(rate, seconds=4.0, freq=440):
        tt = np.arange(int(seconds * rate)) / rate
        return (0.3 * np.sin(2 * np.pi * freq * tt)).astype(np.float32)

    for folder in ("alice", "bob", "Zoë", "nothing_here"):
        (root / folder).mkdir(parents=True)
    sf.write(root / "alice" / "good.wav", audio(16000), 16000, subtype="PCM_16")
    sf.write(root / "alice" / "corrupt.wav", audio(16000), 16000, subtype="PCM_16")
    raw = bytearray((root / "alice" / "corrupt.wav").read_bytes())
    raw[0:16] = b"\x00garbage-header!"
    (root / "alice" / "corrupt.wav").write_bytes(bytes(raw))
    (root / "alice" / "empty.wav").write_bytes(b"")
    (root / "alice" / "notes.mp3").write_text("this is not audio\n" * 20)
    sf.write(root / "alice" / "silent.wav", np.zeros(0, dtype=np.int16), 16000)
    sf.write(root / "bob" / "stereo44k.wav", np.stack([tone, tone], axis=1), 44100, subtype="PCM_16")
    sf.write(root / "bob" / "hi48k.flac", audio(48000), 48000)
    sf.write(root / "bob" / "phone8k.wav", audio(8000), 8000, subtype="PCM_16")
    sf.write(root / "bob" / "clip.mp3", audio(22050), 22050)
    sf.write(root / "Zoë" / "ünïcødé 録音.ogg", audio(16000, 5.0), 16000)
    (root / "nothing_here" / "readme.txt").write_text("no audio in this folder")
    sf.write(root / "stray.wav", audio(16000), 16000)
    return {
        str(root / "alice" / "corrupt.wav"): "not a readable audio file",
        str(root / "alice" / "empty.wav"): "not a readable audio file",
        str(root / "alice" / "notes.mp3"): "not a readable audio file",
        str(root / "alice" / "silent.wav"): "no audio samples",
        str(root / "nothing_here"): "no audio files",
        str(root / "stray.wav"): "outside a speaker folder",
    }


def test_bad_and_odd_files_are_reported_and_the_rest_completes(tmp_path):
    expected = write_odd_folder(tmp_path / "data")
    result = prepare(tmp_path / "data", tmp_path / "corpus", PrepareConfig(chunk_seconds=1), progress=False)

    with open(tmp_path / "corpus" / "rejected.csv", newline="", encoding="utf-8") as f:
        rejected = {row["path"]: row["reason"] for row in csv.DictReader(f)}
    assert set(rejected) == set(expected)
    for path, fragment in expected.items():
        assert fragment in rejected[path], (path, rejected[path])

    corpus = Corpus.open(tmp_path / "corpus")
    assert corpus.labels == ["Zoë", "alice", "bob"]
    durations = {r.recording: r.samples / 16000 for r in corpus.recordings.values()}
    assert set(durations) == {"alice/good.wav", "bob/stereo44k.wav", "bob/hi48k.flac", "bob/phone8k.wav",
                              "bob/clip.mp3", "Zoë/ünïcødé 録音.ogg"}
    for recording, seconds in durations.items():
        expected_seconds = 5.0 if recording.startswith("Zoë") else 4.0
        assert abs(seconds - expected_seconds) < 0.1, (recording, seconds)
    # Every resampled or mixed-down file is still a 440 Hz tone at 16 kHz.
    for recording in durations:
        x = corpus.recording_audio(recording).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(x))
        assert abs(np.argmax(spectrum) * 16000 / len(x) - 440) < 2, recording
    assert json.loads((tmp_path / "corpus" / "summary.json").read_text(encoding="utf-8"))["rejected"] == 6


def test_missing_or_empty_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        prepare(tmp_path / "nope", tmp_path / "corpus", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no speaker folders with audio"):
        prepare(tmp_path / "empty", tmp_path / "corpus", progress=False)


def test_never_overwrites_and_force_only_deletes_its_own_files(dsp20, tmp_path):
    data = link_subset(dsp20, tmp_path / "data", speakers=2, per_speaker=3)
    user_folder = tmp_path / "mine"
    user_folder.mkdir()
    (user_folder / "thesis.txt").write_text("precious")
    with pytest.raises(CorpusError, match="not a speakerid corpus"):
        prepare(data, user_folder, progress=False)
    with pytest.raises(CorpusError, match="not a speakerid corpus"):
        prepare(data, user_folder, progress=False, force=True)
    assert (user_folder / "thesis.txt").read_text() == "precious"

    prepare(data, tmp_path / "corpus", PrepareConfig(chunk_seconds=3), progress=False)
    with pytest.raises(CorpusError, match="other settings"):
        prepare(data, tmp_path / "corpus", PrepareConfig(chunk_seconds=5), progress=False)
    result = prepare(data, tmp_path / "corpus", PrepareConfig(chunk_seconds=5), progress=False, force=True)
    assert result.resumed == 0 and result.summary["config"]["chunk_seconds"] == 5

    (tmp_path / "corpus" / "my-notes.txt").write_text("mine")
    with pytest.raises(CorpusError, match="did not write"):
        prepare(data, tmp_path / "corpus", PrepareConfig(chunk_seconds=3), progress=False, force=True)
    assert (tmp_path / "corpus" / "my-notes.txt").exists()


def test_interrupted_prepare_resumes_to_the_same_corpus(dsp20, tmp_path, monkeypatch):
    data = link_subset(dsp20, tmp_path / "data", speakers=4, per_speaker=5)
    real_decode = corpus_module.load_pcm16
    calls = {"n": 0}

    def decode_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 9:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of decoding
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(corpus_module, "load_pcm16", decode_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare(data, tmp_path / "corpus", workers=2, progress=False)
    assert not (tmp_path / "corpus" / "summary.json").exists()
    with pytest.raises(CorpusError, match="unfinished corpus"):
        Corpus.open(tmp_path / "corpus")
    # A torn write: bytes in the cache that no journal row accounts for.
    with open(tmp_path / "corpus" / "audio.i16", "ab") as f:
        f.write(b"\x01\x02" * 1000)

    monkeypatch.setattr(corpus_module, "load_pcm16", real_decode)
    resumed = prepare(data, tmp_path / "corpus", progress=False)
    assert 0 < resumed.resumed <= 9
    prepare(data, tmp_path / "fresh", progress=False)

    assert read_chunks(tmp_path / "corpus") == read_chunks(tmp_path / "fresh")
    a, b = Corpus.open(tmp_path / "corpus"), Corpus.open(tmp_path / "fresh")
    for i in range(len(a.chunk_label)):
        np.testing.assert_array_equal(a.chunk_audio(i), b.chunk_audio(i))

    again = prepare(data, tmp_path / "corpus", progress=False)  # done already: nothing to decode
    assert again.resumed == 20


def test_a_corpus_has_one_writer(dsp20, tmp_path):
    """Two prepares appending to one corpus at once interleaved their audio under each other's offsets
    (a benchmark's cache then trained on other speakers' audio): the second is refused."""
    data = link_subset(dsp20, tmp_path / "data", speakers=2, per_speaker=3)
    out = tmp_path / "corpus"
    out.mkdir()
    with held_elsewhere(out):
        with pytest.raises(CorpusError, match="another `speakerid prepare` is writing"):
            prepare(data, out, progress=False)
        assert not any(out.iterdir())  # refused before writing anything
    assert prepare(data, out, progress=False).summary["recordings"] == 6  # and goes ahead once the other is done
