"""Diarization on a real mixed meeting (so125 voices, two enrolled and a stranger), and its bad inputs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import fixed_threshold
import soundfile as sf

from speakerid.audio import SAMPLE_RATE, load_audio, load_pcm16, write_wav
from speakerid.der import diarization_error, named_error, read_rttm, write_rttm
from speakerid.diarize import DiarizeConfig, diarize, diarize_audio, scores_of
from speakerid.speech_windows import embed_windows, windows_in
from speakerid.errors import SpeakerIdError
from speakerid.meetings import PAUSE_SECONDS, build_meeting, plan_meetings, speech_spans, trim_silence
from speakerid.naming import split_enrolled
from speakerid.voices import VoiceRegistry


@pytest.fixture(scope="module")
def meeting(so125, tmp_path_factory):
    """A ~90-s meeting of 2 enrolled so125 speakers (other sentences enrolled) and 1 stranger, with its files."""
    root = tmp_path_factory.mktemp("meeting")
    enrollment, [plan] = plan_meetings(so125, 1, enrolled=2, strangers=1, seed=3)
    mixed = build_meeting(plan)
    voices = VoiceRegistry(root / "voices.db")
    for speaker, files in enrollment.items():
        voices.enroll(speaker, files)
    voices.registry.set_scoring(fixed_threshold(voices, 0.8))  # about what calibrating on 14-s so125 recordings gives
    write_wav(root / "meeting.wav", mixed.audio)
    write_rttm(root / "truth.rttm", {"meeting": mixed.turns})
    yield root, voices, mixed
    voices.close()


def test_reference_turns_break_at_pauses_of_0_3_s(so125):
    """The truth the meetings are scored against: a sentence is split where its speaker pauses 0.3 s or more."""
    sentence = trim_silence(load_audio(sorted(so125.glob("so0005/*.flac"))[0]))
    quiet = np.random.default_rng(0).standard_normal
    joined = [np.concatenate([sentence, quiet(round(p * SAMPLE_RATE)).astype(np.float32) * 1e-4, sentence])
              for p in (0.2, 0.5)]
    short, long = (speech_spans(a) for a in joined)
    whole = speech_spans(sentence)
    assert short[0][0] == pytest.approx(whole[0][0]) and short[-1][1] == pytest.approx(len(joined[0]) / SAMPLE_RATE, abs=0.02)
    assert len(short) == 2 * len(whole) - 1  # a 0.2-s pause is no break
    assert len(long) == 2 * len(whole)  # a 0.5-s pause is
    gaps = [b[0] - a[1] for a, b in zip(long, long[1:])]
    assert min(gaps) >= PAUSE_SECONDS and max(gaps) == pytest.approx(0.5, abs=0.05)
    assert speech_spans(np.full(SAMPLE_RATE, 0.1, dtype=np.float32)) == []  # a steady sound: no frame over its floor


def test_meeting_gets_names_and_a_stranger(meeting):
    root, voices, mixed = meeting
    result = diarize_audio(voices, mixed.audio, "meeting.wav")
    labels = {t.speaker for t in result.turns}
    assert set(mixed.enrolled) <= labels, labels
    assert any(label.startswith("unknown-") for label in labels), labels
    assert diarization_error(mixed.turns, result.turns, collar=0.25).error < 0.25
    assert named_error(mixed.turns, result.turns, mixed.enrolled, collar=0.25).error < 0.3
    turns = sorted(result.turns, key=lambda t: t.start)
    assert all(t.end > t.start for t in turns)
    # smoothing: no flicker of sub-second turns between speakers
    assert np.median([t.end - t.start for t in turns]) > 1.0
    assert {s["speaker"] for s in result.speakers} == labels


def test_a_short_call_keeps_its_stranger(meeting, so125):
    """The same voices, two sentences each (17 s): the stranger speaks 5.6 s, under the 8 s below which a
    voice nobody enrolled joins the closest one in a long meeting, but a fifth of this call's speech."""
    _, voices, _ = meeting
    _, [plan] = plan_meetings(so125, 1, enrolled=2, strangers=1, seed=3)
    spoken, kept = {}, []
    for speaker, path in plan.utterances:
        spoken[speaker] = spoken.get(speaker, 0) + 1
        kept += [(speaker, path)] if spoken[speaker] <= 2 else []
    call = build_meeting(dataclasses.replace(plan, utterances=kept))
    stranger = sum(t.end - t.start for t in call.turns if t.speaker in call.strangers)
    assert 4 < stranger < DiarizeConfig().min_stranger_seconds
    labels = {t.speaker for t in diarize_audio(voices, call.audio).turns}
    assert labels == set(call.enrolled) | {"unknown-1"}
    joined = diarize_audio(voices, call.audio, config=DiarizeConfig(min_stranger_share=1.0))  # the long meetings' rule alone
    assert {t.speaker for t in joined.turns} == set(call.enrolled)


def test_an_enrolled_voice_merged_into_another_is_taken_back_out(meeting):
    """Clustering's mistake made by hand: both enrolled voices' windows in one cluster named after the first.
    The second voice's windows (closest to it, together past its threshold) become its own again."""
    _, voices, mixed = meeting
    first, second = mixed.enrolled
    turns = [t for t in mixed.turns if t.speaker in mixed.enrolled]
    embedded = embed_windows(voices, mixed.audio, [(t.start, t.end) for t in turns], DiarizeConfig())
    scored = scores_of(voices, embedded.parts, None, embedded.named)
    owner = [next(t.speaker for t in turns if t.start <= (s + e) / 2 <= t.end) for s, e in embedded.spans]
    clusters = np.zeros(len(owner), dtype=int)
    names, best = {0: first}, {0: (first, 1.0)}
    split_enrolled(scored, clusters, [0], names, best, embedded.spans, DiarizeConfig().split_seconds)
    label = np.array([names[c] for c in clusters])
    owner = np.array(owner)
    assert np.mean(label[owner == second] == second) > 0.8 and np.mean(label[owner == first] == first) > 0.8
    assert set(names.values()) == {first, second}


def test_nobody_enrolled_everyone_unknown(meeting, tmp_path):
    _, _, mixed = meeting
    empty = VoiceRegistry(tmp_path / "empty.db")
    result = diarize_audio(empty, mixed.audio[: 40 * SAMPLE_RATE])
    assert result.turns and all(t.speaker.startswith("unknown-") for t in result.turns)
    assert "nobody is enrolled" in " ".join(result.notes)
    empty.close()


def test_no_speech_and_one_speaker(meeting):
    _, voices, mixed = meeting
    silence = (np.random.default_rng(0).standard_normal(10 * SAMPLE_RATE) * 1e-3).astype(np.float32)
    result = diarize_audio(voices, silence)
    assert result.turns == [] and result.notes[-1] == "no speech found"
    speaker = mixed.turns[0].speaker
    until = next(t.start for t in mixed.turns if t.speaker != speaker)  # the first utterance's turns end before it
    alone = mixed.audio[: int(until * SAMPLE_RATE)]
    single = diarize_audio(voices, alone)
    expected = speaker if speaker in mixed.enrolled else "unknown-1"
    assert {t.speaker for t in single.turns} == {expected}


def test_a_pause_breaks_a_turn(meeting):
    _, voices, mixed = meeting
    speaker = next(s for s in mixed.enrolled)
    turn = max((t for t in mixed.turns if t.speaker == speaker), key=lambda t: t.end - t.start)
    speech = mixed.audio[int(turn.start * SAMPLE_RATE) : int(turn.end * SAMPLE_RATE)]
    pause = (np.random.default_rng(0).standard_normal(int(0.4 * SAMPLE_RATE)) * 1e-4).astype(np.float32)
    turns = diarize_audio(voices, np.concatenate([speech, pause, speech, pause, speech])).turns
    gaps = [b.start - a.end for a, b in zip(turns, turns[1:])]
    assert {t.speaker for t in turns} == {speaker} and sum(g > 0.3 for g in gaps) == 2, turns


def test_int16_samples_diarize_as_their_float_values(meeting):
    root, voices, _ = meeting
    pcm, _, _ = load_pcm16(root / "meeting.wav")  # what `diarize` keeps of a file: half the memory of float32
    head = pcm[: 45 * SAMPLE_RATE]
    assert diarize_audio(voices, head).turns == diarize_audio(voices, head.astype(np.float32) / 32768).turns


def test_windows_cover_regions():
    config = DiarizeConfig(window=2.0, hop=0.5, min_window=0.5)
    spans = windows_in([(0.0, 0.3), (1.0, 2.0), (3.0, 6.2)], config)
    assert spans[0] == (1.0, 2.0)
    assert spans[1][0] == 3.0 and spans[-1][1] == pytest.approx(6.2)
    assert all(b - a == pytest.approx(2.0) for a, b in spans[1:])


def test_files_outputs_reference_and_bad_input(meeting, tmp_path):
    root, voices, mixed = meeting
    stereo = tmp_path / "call.wav"
    sf.write(stereo, np.stack([mixed.audio[: 30 * SAMPLE_RATE]] * 2, axis=1), SAMPLE_RATE)
    broken = tmp_path / "broken.wav"
    broken.write_bytes((root / "meeting.wav").read_bytes()[:30])
    report = diarize(voices.registry.path, [root / "meeting.wav", stereo, broken], reference=root / "truth.rttm",
                     rttm=tmp_path / "out.rttm", json_out=tmp_path / "out.json", plot=tmp_path / "timeline.png",
                     progress=False)
    assert [r.file for r in report.recordings] == [str(root / "meeting.wav"), str(stereo)]
    assert report.failed and report.failed[0][0] == str(broken)
    assert "2 channels mixed down" in report.recordings[1].notes[0]
    assert report.scores["files"] == [str(root / "meeting.wav")]
    assert report.scores["der_collar"]["error"] <= report.scores["der"]["error"]
    written = read_rttm(tmp_path / "out.rttm")
    assert set(written) == {"meeting", "call"} and len(written["meeting"]) == len(report.recordings[0].turns)
    assert json.loads((tmp_path / "out.json").read_text())["recordings"][0]["turns"][0]["speaker"]
    assert (tmp_path / "timeline.png").stat().st_size > 5000
    with pytest.raises(SpeakerIdError, match="no turns for"):
        diarize(voices.registry.path, [stereo], reference=root / "truth.rttm", progress=False)
