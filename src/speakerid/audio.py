"""Decode audio files into 16 kHz mono: the one way every part of speakerid reads sound."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from speakerid.errors import AudioError

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})

__all__ = [
    "SAMPLE_RATE",
    "AUDIO_EXTENSIONS",
    "AudioError",
    "is_audio_file",
    "load_audio",
    "load_pcm16",
    "decode_audio",
    "read_file",
    "resample",
    "to_float32",
    "to_int16",
    "write_wav",
]


def is_audio_file(path: Path) -> bool:
    """True when the file name has one of the audio extensions speakerid reads."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a file to mono float32 in [-1, 1] at `sample_rate`. Raises AudioError naming the file."""
    return _decode(_existing(path), str(path), sample_rate, pcm16=False)[0]


def load_pcm16(path: str | Path, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, int, int]:
    """Decode a file to mono int16 at `sample_rate`: (samples, source sample rate, source channels).

    A file that already is 16-bit mono at `sample_rate` is read as is, without a float round trip.
    """
    return _decode(_existing(path), str(path), sample_rate, pcm16=True)


def decode_audio(data: bytes | BinaryIO, sample_rate: int = SAMPLE_RATE, name: str = "<upload>") -> np.ndarray:
    """Decode audio held in memory (an upload, say) like `load_audio` decodes a file."""
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    return _decode(source, name, sample_rate, pcm16=False)[0]


def read_file(path: str | Path) -> bytes:
    """A recording's bytes (to hash, or decode with `decode_audio`); AudioError naming the file when it cannot be read."""
    try:
        return Path(_existing(path)).read_bytes()
    except OSError as err:
        raise AudioError(path, f"cannot read ({err.strerror or err})") from None


def _existing(path: str | Path) -> str:
    if Path(path).is_dir():
        raise AudioError(path, "is a folder, not an audio file; give the recordings inside it")
    if not Path(path).is_file():
        raise AudioError(path, "no such file")
    return str(path)


def _decode(source, name: str, sample_rate: int, pcm16: bool) -> tuple[np.ndarray, int, int]:
    try:
        with sf.SoundFile(source) as f:
            native_rate, channels = f.samplerate, f.channels
            as_is = pcm16 and native_rate == sample_rate and channels == 1 and f.subtype == "PCM_16"
            audio = f.read(dtype="int16" if as_is else "float32", always_2d=not as_is)
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as err:
        raise AudioError(name, f"not a readable audio file ({_reason(err)})") from None
    except OSError as err:
        raise AudioError(name, f"cannot read ({err.strerror or err})") from None
    if audio.shape[0] == 0:
        raise AudioError(name, "contains no audio samples")
    if as_is:
        return audio, native_rate, channels
    mono = audio.mean(axis=1) if channels > 1 else audio[:, 0]
    if not np.isfinite(mono).all():
        raise AudioError(name, "contains NaN or infinite samples")
    if native_rate != sample_rate:
        mono = _resample(mono, native_rate, sample_rate)
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    return (to_int16(mono) if pcm16 else mono), native_rate, channels


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Mono float32 audio at `rate_in` resampled to `rate_out` (as the loaders resample)."""
    return audio if rate_in == rate_out else _resample(np.asarray(audio, dtype=np.float32), rate_in, rate_out)


def _resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    import soxr  # imported here so that `speakerid --help` does not load it

    return soxr.resample(audio, rate_in, rate_out, quality="HQ")


def _reason(err: Exception) -> str:
    text = str(err)
    # libsndfile says "Error opening 'path': Format not recognised." (or "<_io.BytesIO ...>: ..."): keep the reason.
    if text.startswith("Error opening"):
        text = text.rsplit(": ", 1)[-1]
    return text.strip().rstrip(".") or type(err).__name__


def to_float32(samples: np.ndarray) -> np.ndarray:
    """int16 samples as float32 in [-1, 1); float audio as float32 (not copied when it already is)."""
    samples = np.asarray(samples)
    return samples.astype(np.float32) / np.float32(32768.0) if samples.dtype == np.int16 else samples.astype(np.float32, copy=False)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] to int16 samples, clipping what lies outside."""
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono audio (float in [-1, 1] or int16) as a 16-bit PCM WAV file."""
    samples = audio if audio.dtype == np.int16 else to_int16(audio)
    sf.write(str(path), samples, sample_rate, subtype="PCM_16", format="WAV")
