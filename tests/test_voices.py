"""voices: enroll, identify (open set) and verify real dsp20 speakers with GE2E; thresholds and their
precedence; a registry changed by another process is seen at once."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from speakerid.audio import load_audio, write_wav
from speakerid.calibration import calibrate
from speakerid.errors import RegistryError
from speakerid.registry import Registry
from speakerid.voices import UNKNOWN, VoiceRegistry, verify

ENROLLED, CALIBRATION_STRANGERS, TEST_STRANGERS = 8, 4, 4


def link(dest: Path, files: list[Path]) -> Path:
    for f in files:
        (dest / f.parent.name).mkdir(parents=True, exist_ok=True)
        (dest / f.parent.name / f.name).symlink_to(f)
    return dest


@pytest.fixture(scope="module")
def takes(dsp20, tmp_path_factory) -> dict[str, list[Path]]:
    """16 real dsp20 speakers x 5 takes, each cut to 8 s (seconds 2-10), short enough to embed quickly."""
    root = tmp_path_factory.mktemp("takes")
    out = {}
    for folder in sorted(p for p in dsp20.iterdir() if p.is_dir())[: ENROLLED + CALIBRATION_STRANGERS + TEST_STRANGERS]:
        (root / folder.name).mkdir()
        out[folder.name] = []
        for take in sorted(folder.glob("*.flac")):
            write_wav(root / folder.name / f"{take.stem}.wav", load_audio(take)[2 * 16000 : 10 * 16000])
            out[folder.name].append(root / folder.name / f"{take.stem}.wav")
    return out


@pytest.fixture(scope="module")
def open_set(takes, tmp_path_factory):
    """8 speakers enrolled from 3 takes each; `calibrate` on their 4th take and four strangers' takes."""
    root = tmp_path_factory.mktemp("open_set")
    speakers = sorted(takes)
    enrolled = speakers[:ENROLLED]
    strangers = speakers[ENROLLED : ENROLLED + CALIBRATION_STRANGERS]
    voices = VoiceRegistry(root / "voices.db")
    results = voices.enroll_folder(link(root / "enroll", [f for s in enrolled for f in takes[s][:3]]), progress=False)
    calibration = calibrate(root / "voices.db", link(root / "calibration", [takes[s][3] for s in enrolled] +
                                                     [f for s in strangers for f in takes[s]]), progress=False)
    yield SimpleNamespace(voices=voices, path=root / "voices.db", calibration=calibration, results=results,
                          enrolled=enrolled, strangers=speakers[ENROLLED + CALIBRATION_STRANGERS :])
    voices.close()


def test_enroll_folder_enrolls_every_speaker_folder(open_set):
    assert [(r.speaker, r.added, r.recordings, r.failed) for r in open_set.results] == [
        (s, 3, 3, []) for s in open_set.enrolled
    ]
    assert [(s["name"], s["recordings"], s["seconds"]) for s in open_set.voices.speakers()] == [
        (s, 3, 24.0) for s in open_set.enrolled
    ]
    assert open_set.voices.registry.encoder_name.startswith("ge2e/")
    # enrolling the same folder again skips every file without embedding it
    again = open_set.voices.enroll_folder(Path(open_set.path).parent / "enroll", progress=False)
    assert [(r.added, len(r.skipped)) for r in again] == [(0, 3)] * ENROLLED


def test_calibrate_uses_held_out_takes_and_strangers(open_set):
    result = open_set.calibration
    assert result.enrolled_side == "held-out recordings" and result.stored
    report = result.report
    # dsp20's 15307130191 recorded take04 and take05 as copies of take02 and take03: its take04 is
    # enrolled already (as take02), and a file already enrolled is no held-out trial
    # enrolled already (as take02), and a file already enrolled is no held-out trial. Each 8-s take gives 5
    # trials (itself, two 1.5-s and two 3-s clips); clips with too little speech are reported, not scored.
    assert (report["enrolled_trials"], report["speakers"]) == ((ENROLLED - 1) * 5, ENROLLED)
    # the strangers' trials, then every enrolled trial as a stranger to the other speakers
    assert report["stranger_trials"] - report["simulated_stranger_trials"] + len(result.failed) == 4 * 5 * 5
    assert report["simulated_stranger_trials"] == report["enrolled_trials"]
    assert report["named_right"] >= 0.8 and report["strangers_rejected"] >= 0.8  # 1.5-s clips included
    stored = Registry(open_set.path).scoring
    assert stored["identify"] == [list(p) for p in result.scoring.identify] and stored["source"] == "calibrated"
    json.dumps(result.to_dict())


def test_identify_names_enrolled_speakers_from_their_other_takes(open_set, takes):
    answers = [(s, open_set.voices.identify(f, top_k=3)) for s in open_set.enrolled for f in takes[s][4:]]
    top1 = np.mean([a.ranking[0][0] == s for s, a in answers])
    accepted = np.mean([a.speaker == s and a.known for s, a in answers])
    threshold = open_set.calibration.scoring.decision("identify", seconds=8.0).value
    print(f"\nGE2E, 8-s takes: top-1 {top1:.1%}, accepted {accepted:.1%} of {len(answers)} at threshold {threshold:.3f}")
    assert top1 >= 7 / 8
    assert accepted >= 6 / 8
    for _, answer in answers:
        assert answer.threshold == pytest.approx(threshold) and answer.seconds == 8.0
        assert answer.threshold_source == "calibrated" and answer.encoders == [open_set.voices.encoder.name]
        # the identification score: the best fused score and its lead over the second, weighed as calibrated
        (_, first, _), (_, second, _) = answer.ranking[:2]
        gap = open_set.calibration.scoring.gap
        assert len(answer.ranking) == 3 and answer.score == pytest.approx(first + gap * (first - second))
        assert [v for _, v, _ in answer.ranking] == sorted((v for _, v, _ in answer.ranking), reverse=True)
        json.dumps(answer.to_dict())


def test_voices_nobody_enrolled_come_back_unknown(open_set, takes):
    answers = [open_set.voices.identify(f) for s in open_set.strangers for f in takes[s]]
    rejected = np.mean([a.speaker == UNKNOWN and a.known is False for a in answers])
    print(f"\nGE2E, 8-s takes: {rejected:.1%} of {len(answers)} strangers' takes answered unknown")
    # the balanced threshold trades misses for false accepts evenly: most, not all, strangers are rejected
    assert rejected >= 0.7
    # the ranking still names the closest enrolled voices
    assert all(a.ranking[0][0] in open_set.enrolled for a in answers)


def test_threshold_precedence(open_set, takes, tmp_path, monkeypatch):
    stranger = takes[open_set.strangers[0]][0]
    given = open_set.voices.identify(stranger, threshold=-1.0)
    assert (given.known, given.threshold_source, given.speaker) == (True, "given", given.ranking[0][0])
    assert open_set.voices.identify(stranger, threshold=1.01).speaker == UNKNOWN

    # an uncalibrated registry falls back on the encoder's default, and says so
    fresh = VoiceRegistry(tmp_path / "fresh.db")
    audio = load_audio(takes[open_set.enrolled[0]][0])
    result = fresh.enroll_audio("alice", audio, "alice.wav", hashlib.sha256(audio.tobytes()).hexdigest())
    assert (result.added, result.recordings) == (1, 1)
    default = fresh.identify(takes[open_set.enrolled[0]][4])
    assert default.threshold_source == "default (uncalibrated)"
    assert default.threshold == fresh.encoder.default_threshold
    # with no threshold at all it still ranks, but cannot tell an enrolled voice from a stranger
    monkeypatch.setattr(fresh.encoder, "default_threshold", None)
    undecided = fresh.identify(stranger)
    assert (undecided.speaker, undecided.known, undecided.threshold, undecided.threshold_source) == (
        "alice", None, None, "none")
    fresh.close()


def test_verify_pairs(open_set, takes):
    a, b = open_set.enrolled[:2]
    same = open_set.voices.verify(takes[a][3], takes[a][4])
    different = open_set.voices.verify(takes[a][3], takes[b][3])
    assert same.same is True and different.same is False
    assert same.score > different.score and same.threshold_source == "calibrated"
    assert same.threshold == pytest.approx(open_set.calibration.scoring.decision("verify", seconds=8.0).value)
    json.dumps(same.to_dict())
    # the module-level function: with the registry, its calibrated threshold; without, the encoder's default
    with_registry = verify(takes[a][3], takes[a][4], registry=open_set.path)
    assert with_registry.score == pytest.approx(same.score, abs=1e-5) and with_registry.threshold_source == "calibrated"
    alone = verify(load_audio(takes[a][3]), load_audio(takes[b][3]))
    assert alone.score == pytest.approx(different.score, abs=1e-5)
    assert alone.threshold_source == "default (uncalibrated)"


def test_enroll_reports_bad_files_and_skips_enrolled_ones(open_set, takes, tmp_path):
    voices = VoiceRegistry(tmp_path / "r.db")
    good = takes[open_set.enrolled[0]]
    (tmp_path / "notes.wav").write_text("not audio")
    write_wav(tmp_path / "blip.wav", np.zeros(1600, dtype=np.float32))
    spectrum = np.fft.rfft(np.random.default_rng(0).standard_normal(5 * 16000))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    noise = np.fft.irfft(spectrum)  # pink noise: GE2E's own detector (webrtcvad) takes it for speech
    write_wav(tmp_path / "noise.wav", (0.3 * noise / np.abs(noise).max()).astype(np.float32))
    result = voices.enroll("alice", [good[0], tmp_path / "missing.wav", tmp_path / "notes.wav", tmp_path / "blip.wav",
                                     tmp_path / "noise.wav", tmp_path])
    assert (result.added, result.recordings, result.skipped) == (1, 1, [])
    reasons = dict(result.failed)
    assert reasons[str(tmp_path / "noise.wav")] == "holds no speech (the voice detector heard none)"
    assert reasons[str(tmp_path)].startswith("is a folder, not an audio file")
    assert reasons[str(tmp_path / "missing.wav")] == "no such file"
    assert "not a readable audio file" in reasons[str(tmp_path / "notes.wav")]
    assert "0.10 s long" in reasons[str(tmp_path / "blip.wav")]

    again = voices.enroll("alice", [good[0], good[1]])
    assert (again.added, again.skipped, again.recordings) == (1, [str(good[0])], 2)
    replaced = voices.enroll("alice", [good[2]], replace=True)
    assert (replaced.added, replaced.recordings) == (1, 1)
    # a file that fails does not wipe the speaker when replacing
    assert voices.enroll("alice", [tmp_path / "notes.wav"], replace=True).recordings == 1
    voices.close()


def test_registries_refuse_an_encoder_they_do_not_know_and_identify_needs_speakers(takes, tmp_path):
    from speakerid.registry import Enrollment

    registry = Registry(tmp_path / "r.db")
    test_encoder = SimpleNamespace(name="test/a", spec={"kind": "test"}, dim=3)
    registry.add("alice", [Enrollment("0" * 64, "a", np.zeros(3200, np.int16), {"test/a": np.eye(3)[0]})], test_encoder)
    with pytest.raises(RegistryError, match="registry records an encoder speakerid does not know"):
        VoiceRegistry(tmp_path / "r.db").identify(next(iter(takes.values()))[0])
    with pytest.raises(RegistryError, match="no enrolled speakers"):
        VoiceRegistry(tmp_path / "empty.db").identify(next(iter(takes.values()))[0])


def test_enroll_folder_reports_folders_it_cannot_enroll(takes, tmp_path):
    data = tmp_path / "data"
    (data / "empty").mkdir(parents=True)
    (data / "Unknown").mkdir()
    (data / "Unknown" / "take01.wav").symlink_to(next(iter(takes.values()))[0])
    voices = VoiceRegistry(tmp_path / "r.db")
    results = voices.enroll_folder(data, progress=False)
    assert [(r.speaker, r.added, [reason for _, reason in r.failed]) for r in results] == [
        ("Unknown", 0, ["'Unknown' is the answer for voices nobody enrolled and cannot be a speaker's name; choose another"]),
        ("empty", 0, ["speaker folder holds no audio files"]),
    ]
    assert voices.speakers() == []
    voices.close()


ENROLL_ELSEWHERE = """
import sys
from speakerid.voices import VoiceRegistry
voices = VoiceRegistry(sys.argv[1], create=False)
if sys.argv[2] == "remove":
    voices.remove(sys.argv[3])
else:
    print(voices.enroll(sys.argv[2], sys.argv[3:]).added)
"""


def test_a_change_by_another_process_is_seen_by_the_next_answer(takes, tmp_path):
    speakers = sorted(takes)
    voices = VoiceRegistry(tmp_path / "r.db")
    voices.enroll(speakers[0], takes[speakers[0]][:2])
    voices.enroll(speakers[1], takes[speakers[1]][:2])
    probe = takes[speakers[2]][3]
    assert voices.identify(probe, threshold=-1).speaker in speakers[:2]

    def elsewhere(*args: str) -> None:
        done = subprocess.run([sys.executable, "-c", ENROLL_ELSEWHERE, str(tmp_path / "r.db"), *args],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr

    elsewhere(speakers[2], *map(str, takes[speakers[2]][:2]))
    answer = voices.identify(probe, threshold=-1)
    assert answer.speaker == speakers[2] and len(voices.reference_matrices()[0]) == 3
    elsewhere("remove", speakers[2])
    assert voices.identify(probe, threshold=-1).speaker in speakers[:2]
    assert voices.reference_matrices()[0] == speakers[:2]
    voices.close()
