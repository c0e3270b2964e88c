"""Non-speech never gets a confident name: identify (trained run, registry, service) refuses silence,
tones and noise and too-short clips; closed-set answers say when they rest on little speech;
prepare reports recordings with little or no speech and drops them, or their silent chunks, when asked."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from conftest import link_subset, live_server

from speakerid.audio import SAMPLE_RATE, load_audio, write_wav
from speakerid.corpus import PrepareConfig, prepare
from speakerid.errors import AudioError
from speakerid.identify import Identifier, require_speech
from speakerid.screening import covered, decode
from speakerid.server import create_app
from speakerid.training import TrainConfig, train

SPEAKERID = str(Path(sys.executable).with_name("speakerid"))


def non_speech(seconds: float = 3.0) -> dict[str, np.ndarray]:
    """Silence, a 440-Hz tone, pink and white noise, and a hum with clicks: nothing anyone said."""
    rng = np.random.default_rng(0)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(n), 1 / n))
    pink = np.fft.irfft(spectrum, n)
    clicks = np.zeros(n)
    clicks[:: SAMPLE_RATE // 4] = 0.8
    sounds = {
        "silence": np.zeros(n),
        "tone": 0.3 * np.sin(2 * np.pi * 440 * t),
        "pink": 0.2 * pink / np.abs(pink).max(),
        "white": 0.1 * rng.standard_normal(n),
        "hum": 0.2 * np.sin(2 * np.pi * 50 * t) + clicks,
    }
    return {name: audio.astype(np.float32) for name, audio in sounds.items()}


@pytest.fixture(scope="module")
def run(small_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nonspeech") / "run"
    from speakerid.features import FeatureConfig

    train(small_corpus, out, TrainConfig(model="cnn", epochs=2, features=FeatureConfig(n_mfcc=20)), progress=False)
    return out


@pytest.fixture(scope="module")
def speech(dsp20) -> np.ndarray:
    """8 s of one dsp20 take: isolated words, a few seconds of speech."""
    return load_audio(sorted(p for p in dsp20.iterdir() if p.is_dir())[0] / "take05.flac")[5 * SAMPLE_RATE : 13 * SAMPLE_RATE]


def test_a_trained_run_names_nobody_for_non_speech(run, speech):
    identifier = Identifier.load(run)
    for name, audio in non_speech().items():
        with pytest.raises(AudioError, match="holds no speech"):
            identifier.identify(audio, name=name)
    with pytest.raises(AudioError, match="is 0.20 s long; at least 0.3 s is needed"):  # a tenth of a 3-s chunk
        identifier.identify(speech[: SAMPLE_RATE // 5], name="blip")
    answer = identifier.identify(speech, name="words").to_dict()
    assert 1.0 < answer["speech_seconds"] < 8.0 and answer["short"] is False
    # one word, shorter than one 3-s training chunk: answered, and flagged
    word = identifier.identify(speech[int(1.3 * SAMPLE_RATE) : int(2.6 * SAMPLE_RATE)], name="word").to_dict()
    assert word["short"] is True and word["speech_seconds"] < 1.3


def test_spoken_digits_are_speech(fsdd):
    # 0.2-0.4 s of speech each, shorter than the detector's shortest region: its frames still hear them
    for path in sorted(fsdd.glob("*/*.wav"))[::300]:
        assert require_speech(load_audio(path, 8000), 8000, path.name, 0.1) >= 0.1


def test_closed_set_answers_say_when_a_voice_is_unlike_the_training_speakers(run, small_corpus, so125):
    identifier = Identifier.load(run)
    profile = json.loads((run / "profile.json").read_text())  # made by the first load, from the run's corpus
    assert len(profile["centroids"]) == 4 and profile["thresholds"]["1"] < profile["thresholds"]["2"]
    data_dir = Path(json.loads((small_corpus / "corpus.json").read_text())["data_dir"])
    known = [identifier.identify(f).to_dict() for f in sorted(data_dir.rglob("take05.flac"))]
    # one sentence of each of 12 so125 speakers: another corpus, voices the run never heard
    strangers = [identifier.identify(sorted(d.glob("*.flac"))[0]).to_dict() for d in sorted(so125.glob("so*"))[:48:4]]
    assert all(a["similarity"] is not None and a["out_of_set"] == (a["similarity"] < a["similarity_threshold"])
               for a in known + strangers)
    # a 2-epoch model on 4 speakers: a weak profile, yet the known voices pass and strangers are caught
    flagged = lambda answers: np.mean([a["out_of_set"] for a in answers])
    assert flagged(known) == 0 and flagged(strangers) >= 0.25, (flagged(known), flagged(strangers))
    assert min(a["similarity"] for a in known) > max(a["similarity"] for a in strangers) - 0.1
    # the profile is kept: a second load reads it; a run whose corpus is gone has none and says so
    assert Identifier.load(run).profile.thresholds == identifier.profile.thresholds
    import shutil

    moved = run.parent / "elsewhere"
    shutil.copytree(run, moved)
    (moved / "profile.json").unlink()
    config = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**config, "corpus": str(run.parent / "gone")}))
    assert Identifier.load(moved).identify(sorted(data_dir.rglob("take05.flac"))[0]).out_of_set is None


def test_the_command_line_rejects_non_speech_on_both_identify_paths(run, speech, dsp20, tmp_path):
    files = []
    for name, audio in non_speech().items():
        write_wav(tmp_path / f"{name}.wav", audio)
        files.append(tmp_path / f"{name}.wav")
    write_wav(tmp_path / "words.wav", speech)
    done = subprocess.run([SPEAKERID, "identify", str(run), *map(str, files)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stdout == "", done.stderr  # every input rejected
    assert done.stderr.count("holds no speech") == len(files)
    done = subprocess.run([SPEAKERID, "identify", str(run), str(files[1]), str(tmp_path / "words.wav"), "--json"],
                          capture_output=True, text=True, timeout=300)
    answers = json.loads(done.stdout)
    assert done.returncode == 3 and "holds no speech" in answers[0]["error"] and answers[1]["speaker"]

    registry = tmp_path / "voices.db"
    subprocess.run([SPEAKERID, "enroll", "--registry", str(registry), "--name", "alice", str(tmp_path / "words.wav")],
                   check=True, capture_output=True, timeout=300)
    done = subprocess.run([SPEAKERID, "identify", "--registry", str(registry), str(files[2]), str(files[3]), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and all("holds no speech" in a["error"] for a in json.loads(done.stdout))


def wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_the_service_refuses_non_speech(speech, tmp_path):
    with live_server(create_app(tmp_path / "voices.db")) as url, httpx.Client(base_url=url, timeout=120) as client:
        assert client.post("/enroll", data={"name": "alice"}, files={"files": ("w.wav", wav_bytes(speech))}).status_code == 200
        for name, audio in non_speech().items():
            answer = client.post("/identify", files={"file": (f"{name}.wav", wav_bytes(audio))})
            assert answer.status_code == 422 and f"{name}.wav: holds no speech" in answer.json()["detail"], answer.text


def test_prepare_reports_and_drops_recordings_and_chunks_without_speech(dsp20, tmp_path):
    data = link_subset(dsp20, tmp_path / "data", speakers=2, per_speaker=3)
    first, second = sorted(p.name for p in data.iterdir())
    sounds = non_speech(5.0)
    write_wav(data / first / "noise.wav", sounds["pink"])
    write_wav(data / second / "hush.wav", sounds["silence"])

    reported = prepare(data, tmp_path / "reported", PrepareConfig(), progress=False)
    little = {r["recording"]: r["speech_seconds"] for r in reported.summary["little_speech"]}
    assert little == {f"{first}/noise.wav": 0.0, f"{second}/hush.wav": 0.0}
    assert reported.summary["recordings"] == 8 and not reported.rejected
    assert any("2 recordings hold less than 1 s of speech" in note for note in reported.summary["notes"])
    assert 0 < reported.summary["speech_minutes"] < reported.summary["minutes"]

    dropped = prepare(data, tmp_path / "dropped", PrepareConfig(drop_nonspeech=True, min_chunk_speech=0.3), progress=False)
    assert sorted(Path(r.path).name for r in dropped.rejected) == ["hush.wav", "noise.wav"]
    assert dropped.summary["recordings"] == 6 and dropped.summary["chunks_without_speech"] > 0
    import csv

    with open(tmp_path / "dropped" / "recordings.csv", newline="") as f:
        regions = {row["recording"]: decode(row["speech"]) for row in csv.DictReader(f)}
    with open(tmp_path / "dropped" / "chunks.csv", newline="") as f:
        chunks = list(csv.DictReader(f))
    assert chunks and all(covered(regions[c["recording"]], int(c["start"]) / SAMPLE_RATE, int(c["end"]) / SAMPLE_RATE)
                          >= 0.3 * 3 for c in chunks)
    assert not any(c["recording"].endswith(("noise.wav", "hush.wav")) for c in chunks)

    skipped = prepare(data, tmp_path / "unchecked", PrepareConfig(speech_check=False), progress=False)
    assert skipped.summary["little_speech"] == [] and skipped.summary["speech_minutes"] is None


def test_a_corpus_prepared_before_the_screening_resumes(dsp20, tmp_path):
    import csv

    data = link_subset(dsp20, tmp_path / "data", speakers=2, per_speaker=2)
    prepare(data, tmp_path / "corpus", PrepareConfig(), progress=False)
    # as an older speakerid wrote it: no screening settings, no speech column
    config = json.loads((tmp_path / "corpus" / "corpus.json").read_text())
    for key in ("speech_check", "min_speech_seconds", "drop_nonspeech", "min_chunk_speech"):
        del config["config"][key]
    (tmp_path / "corpus" / "corpus.json").write_text(json.dumps(config))
    with open(tmp_path / "corpus" / "recordings.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(tmp_path / "corpus" / "recordings.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, [k for k in rows[0] if k != "speech"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    again = prepare(data, tmp_path / "corpus", PrepareConfig(), progress=False)
    assert again.summary["recordings"] == 4 and again.summary["speech_minutes"] > 0
