"""Training-time augmentation as torch modules: what teaches a speaker model to hear past the room.

Waveform augmentations work on float batches (B, T) in [-1, 1]: additive coloured noise at a
random SNR, babble (other utterances of the batch mixed in low), simulated room reverberation
(exponentially decaying noise as the impulse response, convolved by FFT), gain and speed
perturbation. `FeatureMasks` is SpecAugment: a time mask and a frequency mask on the features,
between the model's frontend and its backbone. Each module acts on each utterance with its own
probability, and draws every random number from the `torch.Generator` it is given on the CPU, so
the same seed gives the same batch on any device (see `step_generator`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from speakerid.errors import RunError

__all__ = ["AugmentConfig", "STANDARD", "Augmentation", "ColouredNoise", "Babble", "Reverb", "Gain", "Speed", "FeatureMasks",
           "step_generator"]

DECAY_60DB = math.log(1000.0)  # an amplitude falls by 60 dB when its exponent reaches -ln(1000)
EPS = 1e-10


@dataclass(frozen=True)
class AugmentConfig:
    """Probability (per utterance) and range of each augmentation. All probabilities 0: no augmentation."""

    noise: float = 0.0  # additive noise, its spectrum 1/f^b with b uniform in [0, 2] (white to brown)
    noise_snr: tuple[float, float] = (5.0, 20.0)  # dB
    babble: float = 0.0  # 1 to `babble_voices` other utterances of the batch mixed in
    babble_snr: tuple[float, float] = (13.0, 20.0)  # dB
    babble_voices: int = 3
    reverb: float = 0.0  # a synthetic room impulse response
    rt60: tuple[float, float] = (0.2, 0.8)  # seconds for the reverberation to fall by 60 dB
    drr: tuple[float, float] = (0.0, 10.0)  # dB, direct sound over reverberation
    gain: float = 0.0
    gain_db: tuple[float, float] = (-6.0, 6.0)
    speed: float = 0.0  # resampled: tempo and pitch change together, as sox's `speed`
    speed_range: tuple[float, float] = (0.9, 1.1)
    time_mask: float = 0.0  # SpecAugment: one band of frames set to the utterance's mean
    time_mask_frames: int = 20  # widest time mask
    freq_mask: float = 0.0  # one band of feature rows set to the utterance's mean
    freq_mask_bins: int = 8  # widest frequency mask

    def __post_init__(self) -> None:
        for name in ("noise", "babble", "reverb", "gain", "speed", "time_mask", "freq_mask"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise RunError(f"augmentation {name} is a probability and must lie in [0, 1], not {value}")
        ranges = {"noise_snr": (-math.inf, math.inf), "babble_snr": (-math.inf, math.inf), "rt60": (0.0, 5.0),
                  "drr": (-math.inf, math.inf), "gain_db": (-60.0, 60.0), "speed_range": (0.5, 2.0)}
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            ok = isinstance(value, tuple) and len(value) == 2 and all(math.isfinite(v) for v in value)
            if not ok or not low <= value[0] <= value[1] <= high or (name == "rt60" and value[0] <= 0):
                raise RunError(f"augmentation {name} must be a range [low, high] within ({low}, {high}), not {value}")
        for name in ("babble_voices", "time_mask_frames", "freq_mask_bins"):
            if getattr(self, name) < 1:
                raise RunError(f"augmentation {name} must be at least 1, not {getattr(self, name)}")

    @property
    def active(self) -> bool:
        return any(getattr(self, name) > 0 for name in ("noise", "babble", "reverb", "gain", "speed", "time_mask", "freq_mask"))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AugmentConfig:
        """What `to_dict` wrote (lists become ranges); missing keys take their defaults."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise RunError(f"augmentation settings hold unknown keys {unknown}; known: {', '.join(f.name for f in fields(cls))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# The standard set (`speakerid train --augment`), chosen by benchmarks/bench_adapt_recipe.py.
STANDARD = AugmentConfig(noise=0.3, babble=0.2, reverb=0.3, gain=0.3, speed=0.3, time_mask=0.5, freq_mask=0.5)


def step_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from integers such as (seed, epoch, step, rank)."""
    seed = int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(seed)


def _uniform(n: int, bounds: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def _power(x: torch.Tensor) -> torch.Tensor:
    """Mean square per row, (n, 1)."""
    return x.square().mean(dim=-1, keepdim=True).clamp_min(EPS)


class _PerUtterance(nn.Module):
    """Applies `transform` to the utterances a coin with probability `p` picks; leaves the others untouched."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, waves: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        picked = torch.rand(len(waves), generator=generator) < self.p
        if self.p == 0 or not picked.any():
            return waves
        index = picked.nonzero().squeeze(1).to(waves.device)
        out = waves.clone()
        out[index] = self.transform(waves, index, generator)
        return out

    def transform(self, waves: torch.Tensor, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class ColouredNoise(_PerUtterance):
    """Gaussian noise shaped to a 1/f^b spectrum (b uniform in [0, 2]) at an SNR drawn from `snr` dB."""

    def __init__(self, p: float, snr: tuple[float, float]):
        super().__init__(p)
        self.snr = snr

    def transform(self, waves, index, generator):
        x = waves[index]
        n, length = x.shape
        bins = length // 2 + 1
        white = torch.view_as_complex(torch.randn(n, bins, 2, generator=generator))  # white noise's spectrum
        slope = _uniform(n, (0.0, 2.0), generator).float()
        shape = torch.arange(bins, dtype=torch.float32).clamp_min(1.0).pow(-slope[:, None] / 2)
        noise = torch.fft.irfft((white * shape).to(x.device), n=length).to(x.dtype)
        snr = _uniform(n, self.snr, generator)[:, None].to(x.device, x.dtype)
        return x + noise * (_power(x) / (_power(noise) * 10 ** (snr / 10))).sqrt()


class Babble(_PerUtterance):
    """1 to `voices` other utterances of the batch, summed, mixed in at an SNR drawn from `snr` dB."""

    def __init__(self, p: float, snr: tuple[float, float], voices: int):
        super().__init__(p)
        self.snr = snr
        self.voices = voices

    def forward(self, waves, generator):
        return waves if len(waves) < 2 else super().forward(waves, generator)

    def transform(self, waves, index, generator):
        x = waves[index]
        crowd = torch.zeros_like(x)
        for row, i in enumerate(index.tolist()):
            count = int(torch.randint(1, min(self.voices, len(waves) - 1) + 1, (1,), generator=generator))
            others = (i + 1 + torch.randperm(len(waves) - 1, generator=generator)[:count]) % len(waves)
            voices = waves[others.to(waves.device)]
            crowd[row] = (voices / _power(voices).sqrt()).sum(dim=0)  # each voice at the same level
        snr = _uniform(len(x), self.snr, generator)[:, None].to(x.device, x.dtype)
        return x + crowd * (_power(x) / (_power(crowd) * 10 ** (snr / 10))).sqrt()


class Reverb(_PerUtterance):
    """Convolution with a synthetic room: a direct impulse plus exponentially decaying noise.

    The tail falls by 60 dB in a reverberation time drawn from `rt60` seconds and carries the
    energy a direct-to-reverberant ratio drawn from `drr` dB gives it. The output keeps the
    input's alignment (the direct sound stays at time 0) and its level.
    """

    def __init__(self, p: float, rt60: tuple[float, float], drr: tuple[float, float], sample_rate: int):
        super().__init__(p)
        self.rt60 = rt60
        self.drr = drr
        self.sample_rate = sample_rate

    def transform(self, waves, index, generator):
        x = waves[index]
        n, length = x.shape
        taps = max(2, int(self.rt60[1] * self.sample_rate))
        rt60 = _uniform(n, self.rt60, generator)[:, None]
        t = torch.arange(taps, dtype=torch.float64)[None, :] / self.sample_rate
        tail = torch.randn(n, taps, generator=generator, dtype=torch.float64) * torch.exp(-DECAY_60DB * t / rt60)
        tail[:, 0] = 0.0
        drr = _uniform(n, self.drr, generator)[:, None]
        tail = tail / tail.square().sum(dim=1, keepdim=True).sqrt() * 10 ** (-drr / 20)
        tail[:, 0] = 1.0
        size = 1 << (length + taps - 1).bit_length()
        rir = torch.fft.rfft(tail.to(x.device, x.dtype), n=size)
        wet = torch.fft.irfft(torch.fft.rfft(x, n=size) * rir, n=size)[:, :length]
        return wet * (_power(x) / _power(wet)).sqrt()


class Gain(_PerUtterance):
    """Louder or quieter by a gain drawn from `gain_db`."""

    def __init__(self, p: float, gain_db: tuple[float, float]):
        super().__init__(p)
        self.gain_db = gain_db

    def transform(self, waves, index, generator):
        gain = 10 ** (_uniform(len(index), self.gain_db, generator) / 20)
        return waves[index] * gain[:, None].to(waves.device, waves.dtype)


class Speed(_PerUtterance):
    """Played faster or slower by a factor drawn from `factors` (linear resampling: tempo and pitch move
    together). The result keeps the batch's length: cut at the end, or padded with silence."""

    def __init__(self, p: float, factors: tuple[float, float]):
        super().__init__(p)
        self.factors = factors

    def transform(self, waves, index, generator):
        x = waves[index]
        length = x.shape[1]
        out = torch.zeros_like(x)
        for row, factor in enumerate(_uniform(len(x), self.factors, generator).tolist()):
            size = max(2, round(length / factor))
            resampled = F.interpolate(x[row][None, None], size=size, mode="linear", align_corners=False)[0, 0]
            out[row, : min(size, length)] = resampled[:length]
        return out


class FeatureMasks(nn.Module):
    """SpecAugment on features (B, F, T) (or pictures (B, C, F, T)): with probability `time_p` one band of
    up to `max_frames` frames, with probability `freq_p` one band of up to `max_bins` rows, each value
    set to its row's mean over the batch (what a batch-normalised input reads as zero)."""

    def __init__(self, time_p: float, max_frames: int, freq_p: float, max_bins: int):
        super().__init__()
        self.time_p, self.max_frames = time_p, max_frames
        self.freq_p, self.max_bins = freq_p, max_bins

    def forward(self, features: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        masked = torch.zeros(features.shape[0], *features.shape[-2:], dtype=torch.bool)
        for dim, p, widest in ((2, self.time_p, self.max_frames), (1, self.freq_p, self.max_bins)):
            size = features.shape[-3 + dim]
            picked = torch.rand(len(features), generator=generator) < p
            width = torch.randint(0, min(widest, size) + 1, (len(features),), generator=generator) * picked
            start = (torch.rand(len(features), generator=generator) * (size - width + 1)).long()
            position = torch.arange(size)[None, :]
            band = (position >= start[:, None]) & (position < (start + width)[:, None])  # (B, size)
            masked |= band[:, None, :] if dim == 2 else band[:, :, None]
        if not masked.any():
            return features
        masked = masked.to(features.device)
        if features.dim() == 4:
            masked = masked[:, None]
        mean = features.mean(dim=(0, -1), keepdim=True)
        return torch.where(masked, mean, features)


class Augmentation(nn.Module):
    """Every augmentation of an `AugmentConfig`, in a fixed order: babble, speed, reverberation (of the
    speaker and the crowd alike: one room), noise, gain on the waves; masks on the features."""

    def __init__(self, config: AugmentConfig, sample_rate: int):
        super().__init__()
        c = config
        self.config = config
        self.speed = Speed(c.speed, c.speed_range)
        self.reverb = Reverb(c.reverb, c.rt60, c.drr, sample_rate)
        self.babble = Babble(c.babble, c.babble_snr, c.babble_voices)
        self.noise = ColouredNoise(c.noise, c.noise_snr)
        self.gain = Gain(c.gain, c.gain_db)
        self.masks = FeatureMasks(c.time_mask, c.time_mask_frames, c.freq_mask, c.freq_mask_bins)
        self.on_waves = any(p > 0 for p in (c.speed, c.reverb, c.babble, c.noise, c.gain))
        self.on_features = c.time_mask > 0 or c.freq_mask > 0

    def waves(self, waves: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Float waves (B, T) in [-1, 1] (int16 is converted) -> augmented float waves."""
        if not self.on_waves:
            return waves
        x = waves.float() / 32768.0 if waves.dtype == torch.int16 else waves.float()
        for step in (self.babble, self.speed, self.reverb, self.noise, self.gain):
            x = step(x, generator)
        return x

    def features(self, features: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.masks(features, generator) if self.on_features else features
