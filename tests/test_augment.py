"""speakerid.augment on real speech: each augmentation does what it says, at the asked level, the same for a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speakerid.audio import SAMPLE_RATE, load_audio
from speakerid.augment import (AugmentConfig, Augmentation, Babble, ColouredNoise, FeatureMasks, Gain, Reverb, Speed,
                               step_generator)
from speakerid.errors import RunError

SECONDS = 2


@pytest.fixture(scope="module")
def speech(dsp20) -> torch.Tensor:
    """Four 2-s float waves of real speech, one per dsp20 speaker."""
    speakers = sorted(p for p in dsp20.iterdir() if p.is_dir())[:4]
    waves = [load_audio(folder / "take01.flac")[SAMPLE_RATE : SAMPLE_RATE * (1 + SECONDS)] for folder in speakers]
    return torch.from_numpy(np.stack(waves))


def db(power_ratio: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(power_ratio)


def power(x: torch.Tensor) -> torch.Tensor:
    return x.square().mean(dim=-1)


MODULES = {
    "noise": lambda p: ColouredNoise(p, (5.0, 20.0)),
    "babble": lambda p: Babble(p, (13.0, 20.0), 3),
    "reverb": lambda p: Reverb(p, (0.2, 0.8), (0.0, 10.0), SAMPLE_RATE),
    "gain": lambda p: Gain(p, (-6.0, 6.0)),
    "speed": lambda p: Speed(p, (0.9, 1.1)),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_wave_augmentation_keeps_shape_and_is_reproducible_per_seed(name, speech):
    module = MODULES[name](1.0)
    first = module(speech, step_generator(0, 1, 2))
    again = module(speech, step_generator(0, 1, 2))
    other = module(speech, step_generator(0, 1, 3))
    assert first.shape == speech.shape and first.dtype == speech.dtype
    assert torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.allclose(first, speech)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_probability_zero_leaves_the_batch_alone_and_one_half_changes_some(name, speech):
    assert torch.equal(MODULES[name](0.0)(speech, step_generator(0)), speech)
    batch = speech.repeat(8, 1)  # 32 utterances: some picked, some not
    out = MODULES[name](0.5)(batch, step_generator(0))
    changed = [not torch.equal(a, b) for a, b in zip(out, batch)]
    assert 0 < sum(changed) < len(batch)


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_noise_is_added_at_the_requested_snr(speech, snr):
    out = ColouredNoise(1.0, (snr, snr))(speech, step_generator(5))
    np.testing.assert_allclose(db(power(speech) / power(out - speech)), snr, atol=1e-3)


def test_noise_colour_varies_from_white_to_brown(speech):
    noise = ColouredNoise(1.0, (0.0, 0.0))(torch.zeros(64, 16000) + 1e-3, step_generator(1)) - 1e-3
    spectrum = torch.fft.rfft(noise).abs().square()
    low_share = spectrum[:, 1:800].sum(dim=1) / spectrum[:, 1:].sum(dim=1)  # below 800 Hz
    assert low_share.min() < 0.2 and low_share.max() > 0.8  # some near white (0.1), some near brown


def test_babble_mixes_other_utterances_of_the_batch_at_the_requested_snr(speech):
    pair = speech[:2]
    out = Babble(1.0, (15.0, 15.0), voices=1)(pair, step_generator(0))
    added = out - pair
    np.testing.assert_allclose(db(power(pair) / power(added)), 15.0, atol=1e-3)
    # with two utterances, each one's crowd is the other one, scaled
    for row, other in ((0, 1), (1, 0)):
        scale = (added[row] @ pair[other]) / (pair[other] @ pair[other])
        torch.testing.assert_close(added[row], scale * pair[other], rtol=0, atol=1e-6)


def test_reverb_adds_a_decaying_tail_with_the_requested_direct_to_reverberant_ratio():
    impulse = torch.zeros(3, SAMPLE_RATE)
    impulse[:, 0] = 1.0
    rt60 = 0.4
    out = Reverb(1.0, (rt60, rt60), (5.0, 5.0), SAMPLE_RATE)(impulse, step_generator(2))
    np.testing.assert_allclose(db(out[:, 0] ** 2 / out[:, 1:].square().sum(dim=1)), 5.0, atol=1e-3)
    # energy falls 60 dB per rt60: the tail's first 0.1 s carries ~15 dB more than its next 0.1 s
    tenth = SAMPLE_RATE // 10
    step = db(out[:, 1 : tenth + 1].square().sum(dim=1) / out[:, tenth + 1 : 2 * tenth + 1].square().sum(dim=1))
    assert ((step > 12) & (step < 18)).all(), step
    assert out[:, int(rt60 * SAMPLE_RATE) + 1 :].abs().max() < 1e-6  # nothing after the response ends (FFT rounding)


def test_reverb_keeps_the_level_and_the_alignment(speech):
    out = Reverb(1.0, (0.3, 0.6), (0.0, 10.0), SAMPLE_RATE)(speech, step_generator(3))
    torch.testing.assert_close(power(out), power(speech), rtol=1e-4, atol=0)
    lag = [int(torch.argmax(torch.fft.irfft(torch.fft.rfft(o) * torch.fft.rfft(s).conj()))) for o, s in zip(out, speech)]
    assert lag == [0] * len(speech)  # the direct sound stays where it was


def test_gain_scales_within_its_range(speech):
    out = Gain(1.0, (-6.0, 6.0))(speech, step_generator(4))
    ratio = db(power(out) / power(speech))
    assert ((ratio >= -6.0 - 1e-4) & (ratio <= 6.0 + 1e-4)).all()
    assert ratio.std() > 0.5


def test_speed_moves_the_pitch_and_keeps_the_length():
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = torch.sin(2 * torch.pi * 400 * t)[None].repeat(2, 1)
    out = Speed(1.0, (1.25, 1.25))(tone, step_generator(0))
    assert out.shape == tone.shape
    played = round(SAMPLE_RATE / 1.25)
    assert out[:, played + 1 :].abs().max() == 0  # played faster: silence after the end
    peak = torch.fft.rfft(out[:, :played]).abs().argmax(dim=1) * SAMPLE_RATE / played
    torch.testing.assert_close(peak, torch.full((2,), 500.0), atol=2.0, rtol=0)


def test_feature_masks_set_bands_to_the_row_mean():
    features = torch.randn(16, 40, 200) + torch.arange(40.0)[None, :, None]
    masks = FeatureMasks(1.0, 20, 1.0, 8)
    out = masks(features, step_generator(0))
    assert torch.equal(out, masks(features, step_generator(0)))
    row_mean = features.mean(dim=(0, 2))
    changed = out != features
    assert changed.any()
    for b in range(16):
        frames = changed[b].all(dim=0).nonzero().squeeze(1)  # the time band: every row of some frames
        rows = changed[b].all(dim=1).nonzero().squeeze(1)  # the frequency band: every frame of some rows
        for band, widest in ((frames, 20), (rows, 8)):
            assert len(band) <= widest and (len(band) == 0 or band[-1] - band[0] == len(band) - 1)
        torch.testing.assert_close(out[b][changed[b]], row_mean[:, None].expand(40, 200)[changed[b]])
    assert torch.equal(FeatureMasks(0.0, 20, 0.0, 8)(features, step_generator(0)), features)


def test_augmentation_takes_int16_batches_and_is_reproducible(speech):
    config = AugmentConfig(noise=0.5, babble=0.5, reverb=0.5, gain=0.5, speed=0.5)
    augment = Augmentation(config, SAMPLE_RATE)
    int16 = (speech * 32767).to(torch.int16)
    out = augment.waves(int16, step_generator(9))
    assert out.dtype == torch.float32 and out.shape == speech.shape
    assert torch.equal(out, augment.waves(int16, step_generator(9)))
    plain = Augmentation(AugmentConfig(), SAMPLE_RATE)
    assert not AugmentConfig().active and plain.waves(int16, step_generator(9)) is int16


def test_config_round_trips_and_refuses_bad_values():
    config = AugmentConfig(noise=0.4, noise_snr=(3.0, 9.0), time_mask=1.0)
    assert AugmentConfig.from_dict(config.to_dict()) == config and config.active
    with pytest.raises(RunError, match="noise is a probability"):
        AugmentConfig(noise=1.5)
    with pytest.raises(RunError, match="rt60"):
        AugmentConfig(rt60=(0.8, 0.2))
    with pytest.raises(RunError, match="unknown keys"):
        AugmentConfig.from_dict({"echo": 1.0})
