"""vad: where the speech is in a recording; the one voice-activity detector of speakerid.

The network is Silero VAD's (the `silero-vad` wheel ships its weights as plain safetensors,
`silero_vad/data/silero_vad_16k.safetensors`): an STFT as a fixed convolution, four
convolutions, an LSTM cell carried from frame to frame and a sigmoid, giving the probability
of speech in each 32-ms frame (512 samples at 16 kHz, each seen with the 64 samples before
it). It is rebuilt here from those weights, so loading it never runs code from a file; the
package itself is never imported (its `__init__` would change torch's thread count).

The network hears level: a recording is first raised (never lowered) so that its loud frames
(the 95th percentile of 32-ms frame levels) sit at `TARGET_DBFS`, by at most `MAX_GAIN_DB`. On
meetings 30 dB quieter than usual this misses a third less speech (8.8 % against 13.5 %), and
it adds no false alarm on noise alone (docs/benchmarks.md, "Voice activity").

Frames become regions as Silero's `get_speech_timestamps` makes them: speech starts at a frame
whose probability reaches `threshold`, and ends once the probability has stayed under
`neg_threshold` for `min_silence` seconds; regions shorter than `min_speech` are dropped, and
each region is widened by `pad` on both sides (never past its neighbours or the recording).
The defaults are more lenient than Silero's (0.5 / 0.35, 0.1 s, 0.03 s) and pad nothing: on
read speech they miss a fifth less speech (4.5 % against 5.7 %) for about the same false alarm
(same page); padding 0.1 s found a little more speech but added more false alarm in the dev
meetings of the diarization benchmark.

Long recordings run in blocks of `BLOCK_FRAMES` frames with the LSTM state carried across, so
memory stays bounded whatever the length. A detector is safe to share between threads.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speakerid.audio import SAMPLE_RATE
from speakerid.errors import ModelError

__all__ = ["VadConfig", "VoiceDetector", "speech_regions", "speech_seconds", "speech_probabilities", "level_gain_db", "FRAME_SECONDS"]

VAD_PACKAGE = "silero_vad"
VAD_WEIGHTS = "data/silero_vad_16k.safetensors"
FRAME = 512  # samples per decision at 16 kHz
CONTEXT = 64  # samples of the previous frame each frame is seen with
FRAME_SECONDS = FRAME / SAMPLE_RATE  # 0.032 s
TARGET_DBFS = -20.0
MAX_GAIN_DB = 40.0
BLOCK_FRAMES = 4096  # frames per block (131 s of audio): bounds memory on long recordings
HIDDEN = 128


@dataclass(frozen=True)
class VadConfig:
    """How frame probabilities become speech regions (Silero's defaults)."""

    threshold: float = 0.35  # a frame at or above this starts speech
    neg_threshold: float = 0.2  # speech ends after min_silence under this
    min_speech: float = 0.25  # seconds; shorter regions are dropped
    min_silence: float = 0.3  # seconds under neg_threshold that end a region
    pad: float = 0.0  # seconds added on each side of a region

    def __post_init__(self):
        if not 0 < self.neg_threshold <= self.threshold < 1:
            raise ValueError(f"need 0 < neg_threshold <= threshold < 1, got {self.neg_threshold} and {self.threshold}")
        if min(self.min_speech, self.min_silence, self.pad) < 0:
            raise ValueError("min_speech, min_silence and pad must not be negative")


def _weights() -> Path:
    # A top-level spec is found without running the package's __init__.
    spec = importlib.util.find_spec(VAD_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / VAD_WEIGHTS if locations else None
    if path is None or not path.is_file():
        raise ModelError(f"voice activity detection needs the weights shipped in the silero-vad package, which is not "
                         f"installed; install it with `pip install silero-vad==6.2.3`")
    return path


def _network():
    """Silero VAD's 16-kHz network as a torch module, with the wheel's weights."""
    import torch
    from safetensors.torch import load_file
    from torch import nn

    class SileroVad(nn.Module):
        """Frames (N, CONTEXT + FRAME) of one recording, in order -> speech probabilities (N,), with the LSTM state."""

        def __init__(self):
            super().__init__()
            self.stft_conv = nn.Conv1d(1, 258, 256, stride=128, bias=False)  # real and imaginary parts, 129 bins each
            self.conv1 = nn.Conv1d(129, 128, 3, padding=1)
            self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
            self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
            self.conv4 = nn.Conv1d(64, 128, 3, padding=1)
            self.lstm = nn.LSTM(HIDDEN, HIDDEN, batch_first=True)  # Silero's LSTMCell, run over the frames at once
            self.final_conv = nn.Conv1d(128, 1, 1)

        def forward(self, frames: torch.Tensor, state=None):
            x = nn.functional.pad(frames, (0, 64), mode="reflect").unsqueeze(1)
            x = self.stft_conv(x)
            x = (x[:, :129] ** 2 + x[:, 129:] ** 2).sqrt()
            for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
                x = torch.relu(conv(x))
            hidden, state = self.lstm(x[:, :, 0].unsqueeze(0), state)  # one frame of features per 512 samples
            out = torch.sigmoid(self.final_conv(torch.relu(hidden[0]).unsqueeze(-1)))
            return out[:, 0, 0], state

    path = _weights()
    try:
        state = load_file(path)
    except Exception as err:  # a torn or foreign file
        raise ModelError(f"{path} is not readable Silero VAD weights ({type(err).__name__}); reinstall silero-vad==6.2.3") from None
    renamed = {k.replace("lstm_cell.", "lstm.").replace("_ih", "_ih_l0").replace("_hh", "_hh_l0"): v for k, v in state.items()}
    network = SileroVad()
    try:
        network.load_state_dict(renamed, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{path} does not hold the Silero VAD network speakerid knows ({err}); install silero-vad==6.2.3") from None
    return network.eval()


class VoiceDetector:
    """Speech probabilities per 32-ms frame, and speech regions, of 16-kHz mono audio."""

    def __init__(self, config: VadConfig | None = None):
        self.config = config or VadConfig()
        self.network = _network()

    def probabilities(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """The probability of speech in each FRAME_SECONDS frame (the last frame zero-padded) of float or
        int16 audio; a block at a time is converted, so int16 audio is never copied whole."""
        import torch

        from speakerid.audio import to_float32

        audio = _at_16k(audio, sample_rate)
        gain = np.float32(10 ** (level_gain_db(audio) / 20))
        n_frames = -(-len(audio) // FRAME)
        if n_frames == 0:
            return np.zeros(0, dtype=np.float32)
        out, state = [], None
        with torch.inference_mode():
            for first in range(0, n_frames, BLOCK_FRAMES):
                last = min(first + BLOCK_FRAMES, n_frames)
                start = first * FRAME - CONTEXT
                block = to_float32(audio[max(0, start) : last * FRAME]) * gain
                block = np.pad(block, (max(0, -start), (last - first) * FRAME + CONTEXT - len(block) - max(0, -start)))
                frames = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).unfold(0, CONTEXT + FRAME, FRAME)
                probs, state = self.network(frames, state)
                out.append(probs.numpy())
        return np.concatenate(out)

    def regions(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[tuple[float, float]]:
        """Speech regions as (start, end) seconds, in order, not overlapping."""
        audio = _at_16k(audio, sample_rate)
        return regions_from_probabilities(self.probabilities(audio), len(audio) / SAMPLE_RATE, self.config)


def level_gain_db(audio: np.ndarray) -> float:
    """The gain (dB, 0 to MAX_GAIN_DB) that brings the loud frames of 16-kHz audio (float or int16) to TARGET_DBFS."""
    from speakerid.audio import to_float32

    n = len(audio) // FRAME
    if n == 0:
        return 0.0
    power = np.concatenate([np.mean(np.square(to_float32(audio[first * FRAME : min(first + BLOCK_FRAMES, n) * FRAME])
                                              .reshape(-1, FRAME), dtype=np.float64), axis=1)
                            for first in range(0, n, BLOCK_FRAMES)])
    loud = 10 * np.log10(np.percentile(power, 95) + 1e-20)
    return float(np.clip(TARGET_DBFS - loud, 0.0, MAX_GAIN_DB))


def regions_from_probabilities(probs: np.ndarray, duration: float, config: VadConfig = VadConfig()) -> list[tuple[float, float]]:
    """Speech regions (seconds) from frame probabilities, by the rules in the module's docstring."""
    regions: list[list[float]] = []
    start = None
    silence_from = None  # first frame of the current run under neg_threshold, while in speech
    min_silence_frames = config.min_silence / FRAME_SECONDS
    for i, p in enumerate(probs):
        if start is None:
            if p >= config.threshold:
                start, silence_from = i, None
            continue
        if p >= config.threshold:
            silence_from = None
        elif p < config.neg_threshold:
            if silence_from is None:
                silence_from = i
            if i + 1 - silence_from >= min_silence_frames:
                regions.append([start * FRAME_SECONDS, silence_from * FRAME_SECONDS])
                start = silence_from = None
    if start is not None:
        regions.append([start * FRAME_SECONDS, duration])
    regions = [r for r in regions if r[1] - r[0] >= config.min_speech]
    for k, region in enumerate(regions):  # pad, sharing a gap shorter than two pads halfway
        before = regions[k - 1][1] if k else 0.0
        after = regions[k + 1][0] if k + 1 < len(regions) else duration
        region[0] = max(region[0] - config.pad, (before + region[0]) / 2 if k else 0.0)
        region[1] = min(region[1] + config.pad, (region[1] + after) / 2 if k + 1 < len(regions) else duration)
    return [(round(a, 3), round(min(b, duration), 3)) for a, b in regions]


def _at_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono audio at 16 kHz: int16 stays int16 (converted a block at a time), anything else float32."""
    from speakerid.audio import resample, to_float32

    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (T,), got shape {audio.shape}")
    if sample_rate != SAMPLE_RATE:
        return resample(to_float32(audio), sample_rate, SAMPLE_RATE)
    return audio if audio.dtype == np.int16 else to_float32(audio)


_detector: VoiceDetector | None = None
_detector_lock = threading.Lock()


def _shared() -> VoiceDetector:
    """One detector per process, loaded on first use."""
    global _detector
    with _detector_lock:
        if _detector is None:
            _detector = VoiceDetector()
        return _detector


def speech_probabilities(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The probability of speech in each FRAME_SECONDS frame of mono audio."""
    return _shared().probabilities(audio, sample_rate)


def speech_regions(audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
                   config: VadConfig | None = None) -> list[tuple[float, float]]:
    """Speech regions of mono audio as (start, end) seconds, in order, not overlapping."""
    detector = _shared()
    audio = _at_16k(audio, sample_rate)
    return regions_from_probabilities(detector.probabilities(audio), len(audio) / SAMPLE_RATE, config or detector.config)


def speech_seconds(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, config: VadConfig | None = None) -> float:
    """How many seconds of speech mono audio holds (the total length of its speech regions)."""
    return float(sum(end - start for start, end in speech_regions(audio, sample_rate, config)))
