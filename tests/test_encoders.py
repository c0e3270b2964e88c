"""Speaker encoders on real speech: GE2E parity with Resemblyzer itself, speaker separation, batching, specs, refusals."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from speakerid import encoders
from speakerid.audio import SAMPLE_RATE, load_audio, to_int16
from speakerid.encoders import (
    GE2E_FEATURES,
    GE2E_SPEECH_DBFS,
    Ge2eEncoder,
    RunEncoder,
    at_speech_level,
    encoder_from_spec,
    ge2e_preprocess,
    load_encoder,
)
from speakerid.errors import AudioError, ModelError, RegistryError
from speakerid.features import build_frontend
from speakerid.training import TrainConfig, train

SECONDS = 8  # each recording's crop for the separation tests: long enough to hold a voice, short enough to be fast


@pytest.fixture(scope="module")
def ge2e() -> Ge2eEncoder:
    return Ge2eEncoder("cpu")


def unseen_speakers(dsp20: Path) -> list[Path]:
    """Four real speakers that the trained run below never heard (it learns the first four)."""
    return sorted(p for p in dsp20.iterdir() if p.is_dir())[4:8]


@pytest.fixture(scope="module")
def takes(dsp20) -> dict[str, list[np.ndarray]]:
    """The first SECONDS of takes 1 and 2 of each unseen speaker."""
    return {s.name: [load_audio(s / f"take0{i}.flac")[: SECONDS * SAMPLE_RATE] for i in (1, 2)] for s in unseen_speakers(dsp20)}


@pytest.fixture(scope="module")
def run_dir(small_corpus, tmp_path_factory) -> Path:
    """A CNN trained for two epochs on four other real speakers."""
    out = tmp_path_factory.mktemp("encoders") / "run"
    train(small_corpus, out, TrainConfig(model="cnn", epochs=2, patience=0, seed=0), progress=False)
    return out


@pytest.fixture(scope="module")
def run_encoder(run_dir) -> RunEncoder:
    return RunEncoder.from_dir(run_dir, "cpu")


@pytest.fixture(params=["ge2e", "run"])
def encoder(request, ge2e, run_encoder):
    return {"ge2e": ge2e, "run": run_encoder}[request.param]


def separation(encoder, takes: dict[str, list[np.ndarray]]) -> tuple[float, np.ndarray, np.ndarray]:
    """The share of (same-speaker pair, different-speaker pair) comparisons the same-speaker pair wins."""
    names = [name for name, audios in takes.items() for _ in audios]
    scores = encoder.embed_many([a for audios in takes.values() for a in audios])
    pairs = list(itertools.combinations(range(len(names)), 2))
    same = np.array([scores[i] @ scores[j] for i, j in pairs if names[i] == names[j]])
    different = np.array([scores[i] @ scores[j] for i, j in pairs if names[i] != names[j]])
    return float(np.mean(same[:, None] > different[None, :])), same, different


def test_ge2e_mel_frontend_matches_librosa(dsp20):
    import librosa

    wav = load_audio(dsp20 / "15307110189" / "take01.flac")[: 5 * SAMPLE_RATE]
    expected = librosa.feature.melspectrogram(y=wav, sr=SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=40)
    ours = build_frontend(GE2E_FEATURES)(torch.from_numpy(wav))[0].numpy()
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_ge2e_matches_resemblyzer_on_a_whole_file(dsp20, ge2e, resemblyzer):
    path = dsp20 / "15307110189" / "take03.flac"
    expected_wav = at_speech_level(resemblyzer.preprocess_wav(path))
    audio = load_audio(path)
    ours_wav = ge2e_preprocess(audio)
    assert len(ours_wav) == len(expected_wav) < len(audio)  # the same silences were cut
    np.testing.assert_allclose(ours_wav, expected_wav, atol=1e-6)

    expected = resemblyzer.VoiceEncoder("cpu", verbose=False).embed_utterance(expected_wav)
    np.testing.assert_allclose(ge2e.embed(audio, name=str(path)), expected, atol=1e-5)  # 3e-7 measured


@pytest.mark.parametrize("seconds", [10.0, 1.2])  # several partials, then one zero-padded partial
def test_ge2e_matches_resemblyzer_on_clips(dsp20, ge2e, resemblyzer, seconds):
    audio = load_audio(dsp20 / "16307130192" / "take02.flac")[: int(seconds * SAMPLE_RATE)]
    expected_wav = at_speech_level(resemblyzer.preprocess_wav(audio, source_sr=SAMPLE_RATE))
    np.testing.assert_allclose(ge2e_preprocess(audio), expected_wav, atol=1e-6)  # shapes must match too

    expected = resemblyzer.VoiceEncoder("cpu", verbose=False).embed_utterance(expected_wav)
    np.testing.assert_allclose(ge2e.embed(audio), expected, atol=1e-5)


def test_ge2e_hears_a_voice_alike_at_any_level(dsp20, ge2e, resemblyzer):
    """The same recording 6 dB quieter: Resemblyzer's preprocessing leaves both (louder than -30 dBFS) as
    they are and its embeddings move apart; speakerid's brings both to one level (what is left: the voice
    detector that cuts long silences hears level, and cuts 4 % more of the quieter one)."""
    audio = load_audio(dsp20 / "16307130192" / "take02.flac")[: 8 * SAMPLE_RATE]
    quieter = audio * np.float32(10 ** (-6 / 20))
    assert min(20 * np.log10(np.sqrt(np.mean(np.square(a, dtype=np.float64)))) for a in (audio, quieter)) > -30
    theirs = resemblyzer.VoiceEncoder("cpu", verbose=False)
    theirs_cosine = float(np.dot(*(theirs.embed_utterance(resemblyzer.preprocess_wav(a, source_sr=SAMPLE_RATE))
                                   for a in (audio, quieter))))
    ours_cosine = float(np.dot(*ge2e.embed_many([audio, quieter])))
    assert ours_cosine > 0.99 and 1 - ours_cosine < (1 - theirs_cosine) / 5  # measured: 0.9944 against 0.9636


def test_ge2e_identity(ge2e):
    assert ge2e.name == "ge2e/resemblyzer-0.1.4/speech-25dBFS"
    assert (ge2e.dim, ge2e.sample_rate) == (256, 16000)
    assert 0 < ge2e.default_threshold < 1


def test_ge2e_separates_speakers_and_its_default_threshold_decides_both_ways(ge2e, takes):
    won, same, different = separation(ge2e, takes)
    assert won >= 0.95
    # 8-s clips against each other: the uncalibrated fallback must accept same-speaker pairs and
    # reject the others about equally well (0.75: 0 % / 25 %; the old 0.87 missed 75 % of same pairs)
    half_total_error = (np.mean(same < ge2e.default_threshold) + np.mean(different >= ge2e.default_threshold)) / 2
    assert half_total_error <= 0.2


def test_run_encoder_separates_speakers_it_was_not_trained_on(run_encoder, dsp20):
    whole_takes = {s.name: [load_audio(s / f"take0{i}.flac") for i in (1, 2, 3)] for s in unseen_speakers(dsp20)}
    won, _, _ = separation(run_encoder, whole_takes)
    assert won >= 0.9  # 0.96-0.97 measured over seeds 0-1 and 1-4 epochs


def test_run_encoder_identity(run_dir, run_encoder):
    digest = hashlib.sha256((run_dir / "model.safetensors").read_bytes()).hexdigest()
    assert run_encoder.name == f"run/{digest[:16]}"
    assert run_encoder.spec == {"kind": "run", "path": str(run_dir.resolve()), "sha256": digest}
    assert run_encoder.dim == run_encoder.run.model.embedding_dim
    assert run_encoder.sample_rate == 16000 and run_encoder.default_threshold is None


def test_embeddings_are_unit_norm_deterministic_and_batch_independent(encoder, takes):
    audios = [audio for pair in takes.values() for audio in pair][:3]
    audios[1] = audios[1][: int(2.5 * SAMPLE_RATE)]  # recordings of different lengths share a batch
    batch = encoder.embed_many(audios)
    assert batch.shape == (3, encoder.dim) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([encoder.embed(audio) for audio in audios])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-5)
    assert np.array_equal(encoder.embed(audios[0]), one_by_one[0])


def test_threads_share_an_encoder(encoder, takes):
    audios = [audio for pair in takes.values() for audio in pair]
    with ThreadPoolExecutor(4) as pool:
        together = np.stack(list(pool.map(encoder.embed, audios)))
    np.testing.assert_allclose(together, encoder.embed_many(audios), atol=1e-5)


def test_spec_round_trip(encoder):
    spec = json.loads(json.dumps(encoder.spec))
    assert encoder_from_spec(spec, "cpu").name == encoder.name


def test_load_encoder(run_dir):
    assert isinstance(load_encoder(None, "cpu"), Ge2eEncoder)
    assert isinstance(load_encoder(run_dir, "cpu"), RunEncoder)


def test_a_changed_or_vanished_run_is_refused(run_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "run")
    spec = RunEncoder.from_dir(copy, "cpu").spec
    weights = load_file(copy / "model.safetensors")
    first = next(iter(weights))
    weights[first] = weights[first] + 1.0
    save_file(weights, str(copy / "model.safetensors"))
    with pytest.raises(RegistryError, match="has changed.*--model"):
        encoder_from_spec(spec, "cpu")
    shutil.rmtree(copy)
    with pytest.raises(RegistryError, match="no longer loads.*--model"):
        encoder_from_spec(spec, "cpu")


def test_an_unknown_spec_is_refused():
    with pytest.raises(RegistryError, match="does not know"):
        encoder_from_spec({"kind": "ivector"})


def test_too_short_audio_is_refused(encoder, takes):
    speech = next(iter(takes.values()))[0]
    with pytest.raises(AudioError, match="0.20 s long") as err:
        encoder.embed(speech[: int(0.2 * SAMPLE_RATE)], name="clip.wav")
    assert err.value.path == "clip.wav"
    with pytest.raises(AudioError, match="<audio 1>"):
        encoder.embed_many([speech, speech[:100]])


def test_ge2e_refuses_audio_without_speech(ge2e):
    with pytest.raises(AudioError, match="speech"):
        ge2e.embed(np.zeros(2 * SAMPLE_RATE, dtype=np.float32), name="silence.wav")


def test_missing_resemblyzer_names_the_fix(monkeypatch):
    monkeypatch.setattr(encoders.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install resemblyzer==0\.1\.4"):
        Ge2eEncoder("cpu")


def test_ge2e_partials_match_resemblyzer_partials_at_either_level(dsp20, ge2e, resemblyzer):
    """Region partials (for diarization) are Resemblyzer's own partials where it would cut the same ones
    (loud speech, no gain, exactly 1.6 s + 4 steps long); quiet ones are raised to -30 dBFS as
    Resemblyzer raises a recording; with the gains, each is at GE2E_SPEECH_DBFS, so level changes nothing."""
    audio = load_audio(dsp20 / "16307130192" / "take02.flac")[4 * SAMPLE_RATE : 4 * SAMPLE_RATE + int(4.8 * SAMPLE_RATE)]
    starts, units, gains = ge2e.partials(audio, 0.8)
    assert starts.tolist() == [i * 12800 for i in range(5)]  # every 0.8 s, the last one ending with the audio
    theirs = resemblyzer.VoiceEncoder("cpu", verbose=False)
    _, expected, wav_slices = theirs.embed_utterance(audio, return_partials=True, rate=1.25)
    assert [s.start for s in wav_slices][: len(starts)] == starts.tolist()
    np.testing.assert_allclose(ge2e.embed_units(units).numpy(), expected[: len(starts)], atol=1e-5)

    mel = resemblyzer.audio.wav_to_mel_spectrogram(audio)  # Resemblyzer's mel frames of the whole stretch
    size = ge2e.partial_samples
    level = [10 ** (GE2E_SPEECH_DBFS / 10) / np.mean(np.square(audio[s : s + size], dtype=np.float64)) for s in starts]
    np.testing.assert_allclose(gains.numpy(), level, rtol=1e-5)  # loud partials: straight to the speech level
    with torch.inference_mode():
        levelled = torch.cat([theirs(torch.from_numpy(mel[s // 160 : s // 160 + 160] * np.float32(g))[None])
                              for s, g in zip(starts, level)]).numpy()
    np.testing.assert_allclose(ge2e.embed_units(units * gains[:, None, None]).numpy(), levelled, atol=1e-5)

    for factor in (2.0, 0.005):  # louder; and quieter than -30 dBFS, so raised, then levelled alike
        _, other, other_gains = ge2e.partials(audio * np.float32(factor), 0.8)
        np.testing.assert_allclose((other * other_gains[:, None, None]).numpy(), (units * gains[:, None, None]).numpy(),
                                   rtol=1e-3, atol=1e-9)
    quiet, quieter = (ge2e.partials(audio * np.float32(factor), 0.8)[1] for factor in (0.02, 0.005))  # both raised to -30
    np.testing.assert_allclose(quiet.numpy(), quieter.numpy(), rtol=1e-3, atol=1e-9)
    short_starts, short, _ = ge2e.partials(audio[: SAMPLE_RATE], 0.8)  # one zero-padded partial
    assert short_starts.tolist() == [0] and short.shape == (1, 160, 40)


def test_a_clip_shorter_than_a_chunk_fills_it_as_training_filled_short_crops(run_dir, run_encoder, takes, tmp_path):
    clip = next(iter(takes.values()))[0][: SAMPLE_RATE]  # 1 s of real speech; chunks are 3 s
    chunk = run_encoder.chunking.chunk_samples
    assert run_encoder.run.short_fill == "repeat"  # trained with train's default crops, short ones repeated
    repeated = np.resize(clip, chunk)
    padded = np.concatenate([clip, np.zeros(chunk - len(clip), np.float32)])
    embed = lambda audio: run_encoder.embed_many([audio])[0]
    assert np.abs(embed(clip) - embed(repeated)).max() < 1e-5
    assert np.abs(embed(clip) - embed(padded)).max() > 1e-3
    # a run trained on whole chunks pads, as its training did
    config = json.loads((run_dir / "config.json").read_text())
    config["train"]["crop"] = None
    whole = tmp_path / "whole"
    shutil.copytree(run_dir, whole)
    (whole / "config.json").write_text(json.dumps(config))
    padding = RunEncoder.from_dir(whole, "cpu")
    assert padding.run.short_fill == "pad"
    assert np.abs(padding.embed_many([clip])[0] - padding.embed_many([padded])[0]).max() < 1e-5
    assert padding.shortest_crop is None


def test_windows_as_long_as_the_shortest_training_crop_embed_at_their_own_length(run_dir, run_encoder, takes):
    """Diarization's 1.6-s windows: one crop of that length each (the model trained on 1.5-3 s crops),
    not a 3-s chunk of repetitions; a shorter window repeats to fill the crop."""
    from speakerid.diarize import DiarizeConfig
    from speakerid.speech_windows import embed_windows

    assert run_encoder.shortest_crop == 1.5  # train's default crops: half a chunk to a whole one
    audio = next(iter(takes.values()))[0][: 4 * SAMPLE_RATE]
    window = round(1.6 * SAMPLE_RATE)
    clips = [audio[:window], audio[SAMPLE_RATE : SAMPLE_RATE + window], audio[: SAMPLE_RATE]]
    crops = run_encoder.embed_crops(clips, 1.6)
    with torch.inference_mode():
        direct = run_encoder.run.model.embed(torch.from_numpy(np.stack([to_int16(c) for c in clips[:2]]
                                                                       + [to_int16(np.resize(clips[2], window))])))
    np.testing.assert_allclose(crops, (direct / direct.norm(dim=1, keepdim=True)).numpy(), atol=1e-5)
    assert np.abs(crops[0] - run_encoder.embed_many(clips[:1])[0]).max() > 1e-3  # not the 3-s chunk's embedding

    class Voices:  # what embed_windows reads of a VoiceRegistry
        encoder = run_encoder
        encoders = [run_encoder]

    embedded = embed_windows(Voices, audio, [(0.0, 4.0)], DiarizeConfig())
    first = embedded.spans[0]
    assert first == (0.0, 1.6)
    np.testing.assert_allclose(embedded.parts[0][0], crops[0], atol=1e-5)


def test_two_encoders_embed_windows_on_threads_of_their_own_as_one_batch_would(ge2e, run_encoder, takes, monkeypatch):
    """With two encoders each embeds on a worker thread, a few batches queued at a time: batches of 4
    (many of them, the queue full most of the time, both threads at work) give every window the
    embeddings one batch gives, in order."""
    from concurrent.futures import ThreadPoolExecutor

    from speakerid.diarize import DiarizeConfig
    from speakerid import speech_windows

    class Voices:  # what embed_windows reads of a VoiceRegistry
        encoder = ge2e
        encoders = [ge2e, run_encoder]

    audio = np.concatenate(next(iter(takes.values())))
    regions = [(float(s), s + 1.9) for s in range(0, int(len(audio) / SAMPLE_RATE) - 2, 2)]  # 2 windows each
    threads = set()
    submit = ThreadPoolExecutor.submit

    def spy(pool, fn, *args, **kwargs):  # which threads the batches go to
        threads.add(pool._thread_name_prefix)
        return submit(pool, fn, *args, **kwargs)

    monkeypatch.setattr(ThreadPoolExecutor, "submit", spy)
    small = speech_windows.embed_windows(Voices, audio, regions, DiarizeConfig(batch=4))
    monkeypatch.undo()
    whole = speech_windows.embed_windows(Voices, audio, regions, DiarizeConfig(batch=10_000))
    assert threads == {"embed-0", "embed-1"}
    assert small.spans == whole.spans and len(small.spans) >= 2 * len(regions) > 10
    for a, b in zip(small.parts + small.named, whole.parts + whole.named):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_run_trained_on_padded_crops_pads_a_short_window(run_dir, takes, tmp_path):
    config = json.loads((run_dir / "config.json").read_text())
    config["train"]["crop_short"] = "pad"
    padded_run = tmp_path / "padded"
    shutil.copytree(run_dir, padded_run)
    (padded_run / "config.json").write_text(json.dumps(config))
    padding = RunEncoder.from_dir(padded_run, "cpu")
    clip = next(iter(takes.values()))[0][: SAMPLE_RATE]
    window = round(1.6 * SAMPLE_RATE)
    with torch.inference_mode():
        direct = padding.run.model.embed(torch.from_numpy(np.pad(to_int16(clip), (0, window - len(clip)))[None]))
    np.testing.assert_allclose(padding.embed_crops([clip], 1.6)[0], (direct / direct.norm()).numpy()[0], atol=1e-5)
