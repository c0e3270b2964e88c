"""Feature frontends against librosa, on real speech."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import matplotlib
import numpy as np
import pytest
import scipy.fft
import torch

from speakerid.audio import load_audio, to_int16
from speakerid.errors import ModelError
from speakerid.features import FeatureConfig, MfccImage, build_frontend

SR = 16000
CHUNK = 3 * SR
GE2E = FeatureConfig(kind="mel", n_fft=400, win_length=400, hop_length=160, n_mels=40, fmin=0.0, fmax=None)


# (speaker, take, start in s); the last two are places where a float32 FFT misses librosa's MFCC by > 1e-3.
CHUNKS = [
    ("15307110189", 1, 4),
    ("15307110264", 2, 11),
    ("16307110134", 3, 18),
    ("15307130213", 5, 24),
    ("16307130192", 5, 30),
]


@pytest.fixture(scope="module")
def chunks(dsp20: Path) -> np.ndarray:
    """Five 3-s chunks of real speech from different speakers, (5, 48000) float32."""
    picked = []
    for speaker, take, start in CHUNKS:
        audio = load_audio(dsp20 / speaker / f"take{take:02d}.flac")
        picked.append(audio[start * SR : start * SR + CHUNK])
    return np.stack(picked)


def features(config: FeatureConfig, waves: np.ndarray) -> np.ndarray:
    return build_frontend(config)(torch.from_numpy(waves)).numpy()


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a - b).max())


@pytest.mark.parametrize("n_mfcc", [20, 40])
def test_librosa_mfcc_parity(chunks, n_mfcc):
    ours = features(FeatureConfig.librosa(n_mfcc=n_mfcc), chunks)
    theirs = np.stack([librosa.feature.mfcc(y=chunk, sr=SR, n_mfcc=n_mfcc) for chunk in chunks])
    assert max_abs_diff(ours, theirs) < 1e-3


@pytest.mark.parametrize("kind", ["logmel", "spectrogram"])
def test_librosa_db_parity(chunks, kind):
    ours = features(FeatureConfig.librosa(kind=kind), chunks)
    if kind == "logmel":
        power = [librosa.feature.melspectrogram(y=chunk, sr=SR) for chunk in chunks]
    else:
        power = [np.abs(librosa.stft(chunk)) ** 2 for chunk in chunks]
    theirs = np.stack([librosa.power_to_db(p) for p in power])
    assert max_abs_diff(ours, theirs) < 1e-3


def test_ge2e_mel_parity(chunks):
    ours = features(GE2E, chunks)
    resemblyzer = {"n_fft": 400, "hop_length": 160, "n_mels": 40}  # what the GE2E encoder was trained on
    theirs = np.stack([librosa.feature.melspectrogram(y=chunk, sr=SR, **resemblyzer) for chunk in chunks])
    assert max_abs_diff(ours, theirs) < 1e-5 * theirs.max()


def test_default_config_matches_its_definition(chunks):
    """Default: 25-ms Hann window in a 400-point FFT, 64 mels in 20-7600 Hz, ln(x + 1e-6), 40 orthonormal DCT rows."""
    settings = {"n_fft": 400, "win_length": 400, "hop_length": 160, "n_mels": 64, "fmin": 20.0, "fmax": 7600.0}
    mel = np.stack([librosa.feature.melspectrogram(y=chunk, sr=SR, **settings) for chunk in chunks])
    logmel = np.log(mel + 1e-6)
    mfcc = scipy.fft.dct(logmel, axis=1, type=2, norm="ortho")[:, :40]
    assert max_abs_diff(features(FeatureConfig(kind="logmel"), chunks), logmel) < 1e-3
    assert max_abs_diff(features(FeatureConfig(), chunks), mfcc) < 1e-3


@pytest.mark.parametrize(
    "config",
    [
        FeatureConfig.librosa(kind="logmel"),
        FeatureConfig(normalize=True),
        FeatureConfig(kind="spectrogram", log="db", top_db=60.0, normalize=True),
    ],
    ids=["db-top_db", "mfcc-cmvn", "spectrogram-db-cmvn"],
)
def test_batch_equals_one_by_one(chunks, config):
    # Different levels: a batch-wide top_db or normalisation would treat the quiet chunks differently.
    # Twenty chunks: on CPU the frontend works through long batches in blocks.
    levels = np.array([1.0, 0.01, 0.3, 1.0, 0.05], dtype=np.float32)[:, None]
    waves = np.concatenate([chunks * levels, chunks[::-1] * levels] * 2)
    frontend = build_frontend(config)
    batch = frontend(torch.from_numpy(waves))
    for i, wave in enumerate(waves):
        alone = frontend(torch.from_numpy(wave))
        assert alone.shape == (1, *batch.shape[1:])
        assert max_abs_diff(batch[i].numpy(), alone[0].numpy()) < 1e-4


def test_int16_input_equals_float_input(chunks):
    samples = to_int16(chunks)
    frontend = build_frontend(FeatureConfig())
    from_int16 = frontend(torch.from_numpy(samples))
    from_float = frontend(torch.from_numpy(samples.astype(np.float32) / 32768.0))
    assert from_int16.dtype == torch.float32
    assert torch.equal(from_int16, from_float)


@pytest.mark.parametrize("kind", ["mfcc", "logmel", "spectrogram", "mel"])
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("n_samples", [CHUNK, 12345])
def test_shapes_follow_the_config(chunks, kind, center, n_samples):
    config = FeatureConfig(kind=kind, center=center)
    out = features(config, chunks[:2, :n_samples])
    assert out.shape == (2, config.n_features, config.n_frames(n_samples))
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


@pytest.mark.parametrize("config, n_samples", [(FeatureConfig(), 0), (FeatureConfig(center=False), 399)])
def test_too_short_input_is_refused(config, n_samples):
    with pytest.raises(ValueError, match=f"{n_samples} samples make no frame"):
        build_frontend(config)(torch.zeros(2, n_samples))


def test_n_features():
    assert FeatureConfig().n_features == 40
    assert FeatureConfig(kind="logmel").n_features == 64
    assert FeatureConfig(kind="mel", n_mels=40).n_features == 40
    assert FeatureConfig(kind="spectrogram").n_features == 201
    assert FeatureConfig.librosa(n_mfcc=13).n_features == 13


def test_frontend_moves_with_the_model_and_saves_no_weights():
    frontend = build_frontend(FeatureConfig())
    assert frontend.state_dict() == {}
    moved = frontend.to("meta")
    assert {name for name, _ in moved.named_buffers()} == {"window", "mel_weights", "dct_weights"}
    assert all(buffer.device.type == "meta" for buffer in moved.buffers())
    out = moved(torch.zeros(3, CHUNK, device="meta"))
    assert out.device.type == "meta"
    assert out.shape == (3, 40, 301)


def test_frontend_keeps_its_precision_when_the_model_is_cast_or_autocast(chunks):
    frontend = build_frontend(FeatureConfig())
    waves = torch.from_numpy(chunks[:2])
    expected = frontend(waves)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(frontend(waves), expected)
    assert torch.equal(frontend.double()(waves), expected)


def test_config_json_round_trip():
    for config in (FeatureConfig(), FeatureConfig.librosa(kind="logmel", n_fft=400), GE2E):
        assert FeatureConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_librosa_defaults():
    c = FeatureConfig.librosa()
    assert (c.n_fft, c.win_length, c.hop_length, c.n_mels, c.n_mfcc) == (2048, 2048, 512, 128, 20)
    assert (c.fmin, c.fmax, c.log, c.top_db, c.pad_mode, c.center) == (0.0, None, "db", 80.0, "constant", True)
    assert FeatureConfig.librosa(n_fft=400).win_length == 400


@pytest.mark.parametrize(
    "values, field",
    [
        ({"kind": "mfc"}, "kind"),
        ({"log": "log10"}, "log"),
        ({"win_length": 600}, "win_length"),
        ({"n_mfcc": 80}, "n_mfcc"),
        ({"fmin": 8000.0}, "fmin"),
    ],
)
def test_bad_settings_name_the_field(values, field):
    with pytest.raises(ModelError, match=field):
        FeatureConfig(**values)


def test_unknown_stored_setting_is_named():
    with pytest.raises(ModelError, match="n_mfc"):
        FeatureConfig.from_dict({"n_mfc": 13})


def test_mfcc_image_shape_range_and_batch(chunks):
    image = MfccImage(FeatureConfig.librosa(n_mfcc=20))
    pictures = image(torch.from_numpy(to_int16(chunks[:3])))
    assert pictures.shape == (3, 3, 300, 300)
    assert pictures.dtype == torch.float32
    assert pictures.min() >= 0.0 and pictures.max() <= 1.0
    for i in range(3):
        alone = image(torch.from_numpy(to_int16(chunks[i])))
        assert max_abs_diff(alone[0].numpy(), pictures[i].numpy()) < 1e-5
    assert MfccImage(FeatureConfig(), size=(128, 256))(torch.from_numpy(chunks[:1])).shape == (1, 3, 128, 256)


def test_mfcc_image_is_autoscaled_viridis_with_coefficient_0_at_the_bottom(chunks):
    config = FeatureConfig.librosa(n_mfcc=20)
    waves = torch.from_numpy(chunks[:2] * np.array([[1.0], [0.1]], dtype=np.float32))
    # At the MFCC's own size the bilinear resize is the identity, so pixels can be checked one by one.
    pictures = MfccImage(config, size=(20, config.n_frames(CHUNK)))(waves).numpy()
    mfcc = build_frontend(config)(waves).numpy()
    low = mfcc.min(axis=(1, 2), keepdims=True)
    scaled = (mfcc - low) / (mfcc.max(axis=(1, 2), keepdims=True) - low)
    expected = matplotlib.colormaps["viridis"](scaled[:, ::-1])[..., :3].transpose(0, 3, 1, 2)
    assert max_abs_diff(pictures, expected) < 0.08  # the in-code colormap is viridis at 9 anchors
