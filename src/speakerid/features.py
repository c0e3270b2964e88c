"""Feature frontends as torch modules: the first layer of every speakerid model.

A frontend turns a batch of waveforms into features on whatever device the model lives on,
so training, evaluation, identification and the server share one definition.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from speakerid.errors import ModelError

__all__ = ["FeatureConfig", "build_frontend", "Frontend", "MfccImage"]

KINDS = ("mfcc", "logmel", "spectrogram", "mel")
LOG_RULES = ("ln", "db")
PAD_MODES = ("constant", "reflect", "replicate", "circular")

LN_FLOOR = 1e-6
DB_AMIN = 1e-10
CMVN_EPS = 1e-5
CPU_BLOCK_SAMPLES = 2**18


@dataclass(frozen=True)
class FeatureConfig:
    """How waveforms become features; stored as JSON with every trained model."""

    kind: str = "mfcc"  # "mfcc" | "logmel" | "spectrogram" | "mel" (power mel, no log: the GE2E encoder's input)
    sample_rate: int = 16000
    n_fft: int = 400  # = win_length: 12 % faster than padding to 512 points (docs/benchmarks.md)
    win_length: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms
    center: bool = True
    pad_mode: str = "constant"
    power: float = 2.0
    n_mels: int = 64
    n_mfcc: int = 40
    fmin: float = 20.0
    fmax: float | None = 7600.0  # None: sample_rate / 2
    log: str = "ln"  # "ln": log(x + 1e-6); "db": librosa.power_to_db(ref=1.0, amin=1e-10, top_db)
    top_db: float | None = 80.0  # log="db" only; clips each utterance below its own max
    normalize: bool = False  # per-utterance mean/variance normalisation over time (CMVN)
    float64: bool = False  # compute in double precision: float32 FFTs miss librosa by up to ~1.1e-3 in MFCC

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ModelError(f"feature kind {self.kind!r} is unknown; use one of {', '.join(KINDS)}")
        if self.log not in LOG_RULES:
            raise ModelError(f"feature log {self.log!r} is unknown; use one of {', '.join(LOG_RULES)}")
        if self.pad_mode not in PAD_MODES:
            raise ModelError(f"feature pad_mode {self.pad_mode!r} is unknown; use one of {', '.join(PAD_MODES)}")
        if not 0 < self.win_length <= self.n_fft:
            raise ModelError(f"feature win_length={self.win_length} must lie in 1..n_fft ({self.n_fft})")
        if self.hop_length < 1:
            raise ModelError(f"feature hop_length={self.hop_length} must be at least 1")
        if self.kind == "mfcc" and not 0 < self.n_mfcc <= self.n_mels:
            raise ModelError(f"feature n_mfcc={self.n_mfcc} must lie in 1..n_mels ({self.n_mels})")
        if self.mel_fmax <= self.fmin:
            raise ModelError(f"feature fmin={self.fmin} must lie below fmax={self.mel_fmax}")

    @classmethod
    def librosa(
        cls, kind: str = "mfcc", n_mfcc: int = 20, sample_rate: int = 16000, **overrides: Any
    ) -> FeatureConfig:
        """The defaults of librosa.feature.mfcc / melspectrogram (power_to_db with top_db=80 for the log kinds).

        Computed in float64, which keeps MFCCs within 1e-3 of librosa's; win_length follows n_fft unless given.
        """
        n_fft = overrides.pop("n_fft", 2048)
        values: dict[str, Any] = {
            "kind": kind,
            "sample_rate": sample_rate,
            "n_fft": n_fft,
            "win_length": n_fft,
            "hop_length": 512,
            "center": True,
            "pad_mode": "constant",
            "power": 2.0,
            "n_mels": 128,
            "n_mfcc": n_mfcc,
            "fmin": 0.0,
            "fmax": None,
            "log": "db",
            "top_db": 80.0,
            "normalize": False,
            "float64": True,
        }
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureConfig:
        """The config that `to_dict` wrote; missing keys take their defaults."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ModelError(f"feature settings hold unknown keys {unknown}; remove them or update speakerid")
        return cls(**values)

    @property
    def mel_fmax(self) -> float:
        """Upper edge of the mel filterbank in Hz."""
        return float(self.sample_rate) / 2 if self.fmax is None else float(self.fmax)

    @property
    def n_features(self) -> int:
        """Feature rows per frame."""
        if self.kind == "mfcc":
            return self.n_mfcc
        if self.kind == "spectrogram":
            return self.n_fft // 2 + 1
        return self.n_mels

    def n_frames(self, n_samples: int) -> int:
        """Frames the frontend makes from `n_samples` samples."""
        if self.center:
            return 1 + n_samples // self.hop_length
        return max(0, 1 + (n_samples - self.n_fft) // self.hop_length)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa, htk=False): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, logarithmic, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3)
    logarithmic = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, logarithmic, linear)


def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular mel filters (n_mels, n_fft // 2 + 1): librosa.filters.mel with Slaney scale and norm, in float64."""
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]


def _dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Rows of the orthonormal DCT-II (scipy's dct(norm="ortho")), (n_out, n_in) float64."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis


def _hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window zero-padded to n_fft and centred, as librosa's stft builds it."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(window, (left, n_fft - win_length - left))


class Frontend(torch.nn.Module):
    """Waveforms (B, T) or (T,), int16 or float in [-1, 1] -> float32 features (B, n_features, n_frames).

    Computes in float32 (float64 when `config.float64`) whatever dtype the surrounding model is cast to.
    """

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.compute_dtype = torch.float64 if config.float64 else torch.float32
        self._add_constant("window", _hann_window(config.win_length, config.n_fft))
        if config.kind != "spectrogram":
            fbank = _mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.mel_fmax)
            # Transposed: frames (B, N, F) @ (F, n_mels) is one large matrix product.
            self._add_constant("mel_weights", fbank.T)
        if config.kind == "mfcc":
            self._add_constant("dct_weights", _dct_matrix(config.n_mfcc, config.n_mels).T)

    def _add_constant(self, name: str, values: np.ndarray) -> None:
        # Not saved with the weights: the config rebuilds it.
        self.register_buffer(name, torch.tensor(values, dtype=self.compute_dtype), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        if wave.dim() != 2:
            raise ValueError(f"expected a waveform (T,) or a batch (B, T), got shape {tuple(wave.shape)}")
        if wave.shape[1] == 0 or self.config.n_frames(wave.shape[1]) == 0:
            raise ValueError(f"{wave.shape[1]} samples make no frame with n_fft={self.config.n_fft}, center={self.config.center}")
        with _full_precision(wave.device):
            if wave.device.type != "cpu" or torch.compiler.is_exporting():
                return self._features(_as_float(wave, self.compute_dtype))
            # On CPU, work in blocks of ~16 s of audio that stay in the CPU cache, converting int16 block by
            # block: 19 % faster than converting the batch up front (benchmarks/bench_features.py).
            rows = max(1, CPU_BLOCK_SAMPLES // wave.shape[1])
            return torch.cat([self._features(_as_float(block, self.compute_dtype)) for block in wave.split(rows)])

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if torch.compiler.is_exporting() and self.compute_dtype == torch.float32:
            real, imaginary = self._dft(x)
            feats = real.square() + imaginary.square()
            if c.power != 2.0:
                feats = feats.sqrt().pow(c.power)
        else:
            window = self.window.to(self.compute_dtype)
            spec = torch.stft(
                x, c.n_fft, c.hop_length, window=window, center=c.center, pad_mode=c.pad_mode, return_complex=True
            )
            spec = spec.transpose(1, 2)  # (B, frames, F), contiguous in memory
            if c.power == 2.0:  # skips abs()'s square root: 4x faster on CPU
                parts = torch.view_as_real(spec)
                feats = parts[..., 0].square() + parts[..., 1].square()
            else:
                feats = spec.abs().pow(c.power)
        if c.kind != "spectrogram":
            feats = feats @ self.mel_weights.to(self.compute_dtype)
        if c.kind != "mel":
            feats = self._log(feats)
        if c.kind == "mfcc":
            feats = feats @ self.dct_weights.to(self.compute_dtype)
        if c.normalize:
            mean = feats.mean(dim=1, keepdim=True)
            std = feats.std(dim=1, keepdim=True, correction=0)
            feats = (feats - mean) / (std + CMVN_EPS)
        return feats.transpose(1, 2).float().contiguous()

    def _dft(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """torch.stft's real and imaginary parts (B, frames, F) as one strided convolution with the windowed
        DFT basis: how exported graphs compute it (onnxruntime's STFT operator is ~30x slower than this)."""
        c = self.config
        frames = x.unsqueeze(1)
        if c.center:
            frames = F.pad(frames, (c.n_fft // 2, c.n_fft // 2), mode=c.pad_mode)
        n = torch.arange(c.n_fft, dtype=torch.float64)
        k = torch.arange(c.n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * ((k * n) % c.n_fft) / c.n_fft  # the modulo keeps the angle exact for large k * n
        window = self.window.to(torch.float64)
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window]).to(x.dtype).unsqueeze(1)
        spec = F.conv1d(frames, basis, stride=c.hop_length).transpose(1, 2)  # (B, frames, 2F)
        return spec[..., : c.n_fft // 2 + 1], spec[..., c.n_fft // 2 + 1 :]

    def _log(self, power: torch.Tensor) -> torch.Tensor:
        if self.config.log == "ln":
            return torch.log(power + LN_FLOOR)
        db = 10.0 * torch.log10(power.clamp_min(DB_AMIN))
        if self.config.top_db is not None:
            db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - self.config.top_db)
        return db


def _full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off: in 16-bit floats speech power overflows and the librosa match is lost."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def _as_float(wave: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if wave.dtype == torch.int16:
        return wave.to(dtype).mul_(1.0 / 32768.0)
    return wave.to(dtype)


def build_frontend(config: FeatureConfig) -> Frontend:
    """The torch module that computes `config`'s features."""
    return Frontend(config)


# Viridis at 0, 1/8, ..., 1; linear interpolation between anchors stays within 0.07 of matplotlib's table.
VIRIDIS_ANCHORS = (
    (0.2670, 0.0049, 0.3294),
    (0.2788, 0.1755, 0.4834),
    (0.2297, 0.3224, 0.5457),
    (0.1727, 0.4488, 0.5579),
    (0.1276, 0.5669, 0.5506),
    (0.1579, 0.6838, 0.5017),
    (0.3692, 0.7889, 0.3829),
    (0.6785, 0.8637, 0.1895),
    (0.9932, 0.9062, 0.1439),
)


class MfccImage(torch.nn.Module):
    """Waveforms -> MFCC pictures (B, 3, H, W) in [0, 1]: the input of the ResNet50 recipe.

    Like the recipe's autoscaled specshow pictures, each utterance's MFCCs are min-max scaled on their
    own and drawn with coefficient 0 at the bottom row; then coloured with viridis and resized bilinearly.
    """

    def __init__(self, config: FeatureConfig, size: int | tuple[int, int] = 300):
        super().__init__()
        if config.kind != "mfcc":
            raise ModelError(f"an MFCC image needs feature kind 'mfcc', not {config.kind!r}")
        self.config = config
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.frontend = Frontend(config)
        self.register_buffer("colormap", torch.tensor(VIRIDIS_ANCHORS, dtype=torch.float32), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        mfcc = self.frontend(wave)
        low = mfcc.amin(dim=(1, 2), keepdim=True)
        high = mfcc.amax(dim=(1, 2), keepdim=True)
        scaled = (mfcc - low) / (high - low).clamp_min(1e-12)
        picture = scaled.flip(1)  # row 0 is the top of an image; specshow puts coefficient 0 at the bottom
        position = picture * (len(VIRIDIS_ANCHORS) - 1)
        lower = position.floor().clamp(max=len(VIRIDIS_ANCHORS) - 2).long()
        fraction = (position - lower).unsqueeze(-1)
        rgb = self.colormap[lower] * (1 - fraction) + self.colormap[lower + 1] * fraction  # (B, H, W, 3)
        image = F.interpolate(rgb.permute(0, 3, 1, 2), size=self.size, mode="bilinear", align_corners=False)
        return image.clamp(0.0, 1.0)
