"""Speaker embeddings behind one interface: the pretrained GE2E encoder, or a trained run's embedding layer.

An encoder turns a recording (float32 mono at its sample rate) into one L2-normalised vector;
cosine similarity between two of them says how alike the voices are. `name` identifies the
encoder that made an embedding (registries refuse to mix encoders) and `spec` is enough to
load that encoder again.

The GE2E encoder is the one of Resemblyzer 0.1.4 (a 3-layer LSTM trained on ~1800 speakers).
Its weights are read from the installed `resemblyzer` package without importing it: its
`__init__` imports `webrtcvad`, which needs the `pkg_resources` that current setuptools no
longer ships. The preprocessing it was trained with is reproduced here, calling webrtcvad's
C extension `_webrtcvad` directly, and one step is added: Resemblyzer raises quiet recordings to
-30 dBFS but leaves louder ones as they are, and its network (fed mel power, not its log) hears
level; so the speech is then brought to GE2E_SPEECH_DBFS, louder or quieter. On so125 with every
sentence at a random level within +-10 dB this keeps the EER at 2.9 % where Resemblyzer's own
preprocessing goes from 2.6 % to 3.8 % (docs/benchmarks.md, "One level for GE2E").
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from speakerid.audio import SAMPLE_RATE, to_int16
from speakerid.errors import AudioError, ModelError, RegistryError, RunError
from speakerid.features import FeatureConfig, build_frontend
from speakerid.identify import chunk_windows
from speakerid.rundir import WEIGHTS_FILE, Run, build_run, load_run, resolve_device

__all__ = ["Encoder", "Ge2eEncoder", "RunEncoder", "load_encoder", "encoder_from_spec", "ge2e_preprocess", "ge2e_name",
           "at_speech_level", "MIN_SECONDS"]

MIN_SECONDS = 0.3  # the shortest stretch of audio (of speech, for GE2E) an encoder embeds

# Resemblyzer's hparams.py: the settings its encoder was trained with.
GE2E_PACKAGE = "resemblyzer"
GE2E_WEIGHTS_FILE = "pretrained.pt"
GE2E_TARGET_DBFS = -30.0
GE2E_SPEECH_DBFS = -25.0  # the level every stretch of speech is brought to, up or down, before the LSTM hears it
GE2E_VAD_WINDOW = 480  # samples: 30 ms at 16 kHz
GE2E_VAD_MODE = 3  # webrtcvad's most aggressive mode
GE2E_VAD_AVERAGE_WIDTH = 8  # VAD windows in the moving average that smooths the voice flags
GE2E_VAD_MAX_SILENCE = 6  # the longest silence kept, in VAD windows (half of it on each side of speech)
GE2E_FEATURES = FeatureConfig(kind="mel", n_fft=400, win_length=400, hop_length=160, n_mels=40, fmin=0.0, fmax=None)
GE2E_PARTIAL_FRAMES = 160  # 1.6 s
GE2E_PARTIAL_RATE = 1.3  # partials per second
GE2E_MIN_COVERAGE = 0.75  # the last partial is kept when at least this much of it is audio
GE2E_HIDDEN = 256
GE2E_CPU_BATCH = 32  # partials per LSTM batch
GE2E_GPU_BATCH = 512
GE2E_LAYERS = 3
# The fallback for a registry not yet calibrated on its own recordings: the equal-error-rate threshold
# (0.747) of identify trials of ordinary lengths pooled (a reference of 3-8 recordings against one
# trial: so125 read sentences of ~3.6 s, dsp20 clips of 3, 5 and 10 s; 1,500 target and 81,000
# non-target trials; benchmarks/bench_default_threshold.py, docs/benchmarks.md). Scores grow with
# duration, so no one value fits every length: at 0.75 misses are 2 % on sentences and 15 % on 3-s
# clips, false accepts 4-7 % on sentences and 5-s clips and 20 % on 10-s clips; single clips scored
# against each other (verify) miss more (22 % on sentences). Calibrating (`speakerid calibrate`) on
# recordings as long as those identified replaces it. (The old 0.87 was the EER of whole 41-s takes,
# and called 46 % of genuine sentences "unknown".)
GE2E_DEFAULT_THRESHOLD = 0.75
INT16_MAX = 32767  # resemblyzer scales by 2**15 - 1, not 2**15


class Encoder(ABC):
    """Recordings -> L2-normalised speaker embeddings. Safe to call from several threads at once."""

    name: str  # identity stored with every embedding: "ge2e/resemblyzer-0.1.4/speech-25dBFS" or "run/<16 hex of sha256>"
    spec: dict[str, Any]  # plain JSON that `encoder_from_spec` loads this encoder from again
    dim: int
    sample_rate: int
    default_threshold: float | None  # an uncalibrated fallback cosine threshold, when one is known

    def embed(self, audio: np.ndarray, name: str = "<audio>") -> np.ndarray:
        """The (dim,) float32 embedding of float32 mono audio at `sample_rate`; `name` labels errors."""
        return self.embed_many([audio], [name])[0]

    @abstractmethod
    def embed_many(self, audios: Sequence[np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
        """(n, dim) float32 embeddings, one per recording, computed in batches."""


def _names(audios: Sequence[np.ndarray], names: Sequence[str] | None) -> list[str]:
    if names is None:
        return [f"<audio {i}>" for i in range(len(audios))]
    if len(names) != len(audios):
        raise ValueError(f"got {len(names)} names for {len(audios)} recordings")
    return list(names)


def _unit(rows: torch.Tensor) -> torch.Tensor:
    return rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _checked(audio: np.ndarray, sample_rate: int, name: str) -> np.ndarray:
    """Mono float32 audio long enough to embed, or AudioError naming `name`."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (T,), got shape {audio.shape}")
    if len(audio) < MIN_SECONDS * sample_rate:
        raise AudioError(name, f"is {len(audio) / sample_rate:.2f} s long; at least {MIN_SECONDS} s is needed to embed a voice")
    return audio


def _mean_embeddings(chunk_embeddings: torch.Tensor, owners: list[int], n: int) -> np.ndarray:
    """Each recording's embedding: the L2-normalised mean of its chunks' L2-normalised embeddings."""
    owner = torch.tensor(owners, device=chunk_embeddings.device)
    sums = torch.zeros(n, chunk_embeddings.shape[1], dtype=chunk_embeddings.dtype, device=chunk_embeddings.device)
    sums.index_add_(0, owner, _unit(chunk_embeddings))
    return _unit(sums).cpu().numpy().astype(np.float32)


# --- GE2E (Resemblyzer) --------------------------------------------------------------------------


def _ge2e_weights() -> tuple[Path, str]:
    """The pretrained weights inside the installed resemblyzer package, and the package's version."""
    # A top-level spec is found without running the package's __init__ (which would import webrtcvad).
    spec = importlib.util.find_spec(GE2E_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    weights = Path(locations[0]) / GE2E_WEIGHTS_FILE if locations else None
    try:
        version = importlib.metadata.version(GE2E_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = None
    if weights is None or not weights.is_file() or version is None:
        raise ModelError(
            f"the GE2E speaker encoder needs the weights shipped in the {GE2E_PACKAGE} package, which is not installed; "
            f"install it with `pip install {GE2E_PACKAGE}==0.1.4`, or pass --model RUN to use a trained run"
        )
    return weights, version


def _normalize_volume(wav: np.ndarray) -> np.ndarray:
    """Raise quiet audio to GE2E_TARGET_DBFS; louder audio stays as it is."""
    rms = np.sqrt(np.mean(np.square(wav, dtype=np.float64))) * INT16_MAX  # float64: uploads may hold huge values
    if rms == 0:
        return wav
    change_db = GE2E_TARGET_DBFS - 20 * np.log10(rms / INT16_MAX)
    return wav * (10 ** (change_db / 20)) if change_db > 0 else wav


def _voice_flags(pcm: np.ndarray) -> np.ndarray:
    """webrtcvad's speech decision for each GE2E_VAD_WINDOW of int16 samples."""
    import _webrtcvad  # the C extension of webrtcvad; `import webrtcvad` fails without pkg_resources

    vad = _webrtcvad.create()  # a VAD carries state from window to window: one per recording, never shared
    _webrtcvad.init(vad)
    _webrtcvad.set_mode(vad, GE2E_VAD_MODE)
    buffer = pcm.astype("<i2").tobytes()
    step = 2 * GE2E_VAD_WINDOW
    return np.array(
        [_webrtcvad.process(vad, SAMPLE_RATE, buffer[i : i + step], GE2E_VAD_WINDOW) for i in range(0, len(buffer), step)],
        dtype=bool,
    )


def _trim_long_silences(wav: np.ndarray) -> np.ndarray:
    """Drop silences longer than GE2E_VAD_MAX_SILENCE VAD windows, as Resemblyzer's trim_long_silences does."""
    wav = wav[: len(wav) - len(wav) % GE2E_VAD_WINDOW]
    if len(wav) == 0:
        return wav
    # Resemblyzer casts without clipping; clipping only differs where its cast would wrap around.
    pcm = np.clip(np.round(wav * INT16_MAX), -32768, 32767).astype(np.int16)
    flags = _voice_flags(pcm).astype(np.float64)
    width = GE2E_VAD_AVERAGE_WIDTH
    padded = np.concatenate([np.zeros((width - 1) // 2), flags, np.zeros(width // 2)])
    average = np.convolve(padded, np.ones(width), mode="valid") / width
    voiced = np.round(average).astype(int)
    # binary dilation by an odd-width window, centred: voice spreads GE2E_VAD_MAX_SILENCE // 2 windows each way
    kept = np.convolve(voiced, np.ones(GE2E_VAD_MAX_SILENCE + 1, dtype=int), mode="same") > 0
    return wav[np.repeat(kept, GE2E_VAD_WINDOW)]


def at_speech_level(wav: np.ndarray) -> np.ndarray:
    """`wav` brought to GE2E_SPEECH_DBFS, louder or quieter."""
    rms = np.sqrt(np.mean(np.square(wav, dtype=np.float64))) if len(wav) else 0.0
    return wav if rms == 0 else (wav * (10 ** (GE2E_SPEECH_DBFS / 20) / rms)).astype(np.float32)


def ge2e_name(version: str) -> str:
    """The GE2E encoder's name: the package's weights, and the level its speech is heard at (registries
    enrolled under another name re-embed their audio with `speakerid upgrade-registry`)."""
    return f"ge2e/{GE2E_PACKAGE}-{version}/speech{GE2E_SPEECH_DBFS:+g}dBFS"


def ge2e_preprocess(audio: np.ndarray) -> np.ndarray:
    """16 kHz float32 audio as the GE2E encoder hears it: volume raised to -30 dBFS and long silences cut
    (Resemblyzer's preprocessing), then the speech left brought to GE2E_SPEECH_DBFS."""
    return at_speech_level(_trim_long_silences(_normalize_volume(np.asarray(audio, dtype=np.float32))))


def _partial_starts(n_samples: int) -> list[int]:
    """First frames of the GE2E_PARTIAL_FRAMES-long partials that cover `n_samples` (Resemblyzer's compute_partial_slices)."""
    hop = GE2E_FEATURES.hop_length
    n_frames = int(np.ceil((n_samples + 1) / hop))
    frame_step = int(np.round((SAMPLE_RATE / GE2E_PARTIAL_RATE) / hop))
    starts = list(range(0, max(1, n_frames - GE2E_PARTIAL_FRAMES + frame_step + 1), frame_step))
    coverage = (n_samples - starts[-1] * hop) / (GE2E_PARTIAL_FRAMES * hop)
    if coverage < GE2E_MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


class _Ge2eNetwork(nn.Module):
    """Mel partials (B, frames, 40) -> L2-normalised embeddings (B, 256): LSTM, last hidden state, linear, ReLU."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(GE2E_FEATURES.n_mels, GE2E_HIDDEN, GE2E_LAYERS, batch_first=True)
        self.linear = nn.Linear(GE2E_HIDDEN, GE2E_HIDDEN)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        return _unit(torch.relu(self.linear(hidden[-1])))


class Ge2eEncoder(Encoder):
    """The pretrained GE2E speaker encoder shipped with Resemblyzer 0.1.4 (256 dimensions, 16 kHz).

    Embedding runs in two stages, which `speakerid.embedding.embed_files` overlaps across files:
    `units` (volume, voice detection, mel partials: per recording, in any thread) and
    `embed_units` (the LSTM over a batch of partials, from any number of recordings).
    """

    dim = GE2E_HIDDEN
    sample_rate = SAMPLE_RATE
    default_threshold = GE2E_DEFAULT_THRESHOLD
    partial_samples = GE2E_PARTIAL_FRAMES * GE2E_FEATURES.hop_length  # the audio one partial hears

    def __init__(self, device: str | torch.device = "auto", batch_size: int | None = None):
        weights, version = _ge2e_weights()
        self.name = ge2e_name(version)
        self.spec = {"kind": "ge2e"}
        self.device = resolve_device(device)
        # On CPU the LSTM is fastest on batches of ~32 partials (they stay in cache; docs/benchmarks.md).
        self.batch_size = batch_size or (GE2E_CPU_BATCH if self.device.type == "cpu" else GE2E_GPU_BATCH)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)["model_state"]
        except Exception as err:  # torch raises many types for a torn or foreign file
            raise ModelError(f"{weights} is not readable GE2E weights ({type(err).__name__}); reinstall {GE2E_PACKAGE}==0.1.4") from None
        self.network = _Ge2eNetwork()
        # similarity_weight/bias only served the GE2E training loss
        self.network.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")}, strict=True)
        self.network.to(self.device).eval()
        self.frontend = build_frontend(GE2E_FEATURES).to(self.device)

    def units(self, audio: np.ndarray, name: str = "<audio>") -> torch.Tensor:
        """A recording's mel partials (k, GE2E_PARTIAL_FRAMES, n_mels) on the encoder's device, as Resemblyzer cuts them.

        AudioError (naming `name`) for a recording too short or with too little speech.
        """
        wav = ge2e_preprocess(_checked(audio, self.sample_rate, name))
        if len(wav) < MIN_SECONDS * self.sample_rate:
            raise AudioError(name, f"holds {len(wav) / self.sample_rate:.2f} s of speech the voice detector accepts; "
                                   f"at least {MIN_SECONDS} s is needed to embed a voice")
        starts = _partial_starts(len(wav))
        end = (starts[-1] + GE2E_PARTIAL_FRAMES) * GE2E_FEATURES.hop_length
        wav = np.pad(wav, (0, max(0, end - len(wav))))
        with torch.inference_mode():
            mel = self.frontend(torch.from_numpy(wav).to(self.device))[0].T  # (frames, n_mels)
            return torch.stack([mel[s : s + GE2E_PARTIAL_FRAMES] for s in starts])

    def partials(self, speech: np.ndarray, step: float) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """Mel partials laid over a stretch of speech as it is, for diarization: (k,) their first samples,
        the partials (k, GE2E_PARTIAL_FRAMES, n_mels) on the encoder's device, and (k,) the power gain that
        brings each to GE2E_SPEECH_DBFS.

        Unlike `units`, nothing is trimmed (a voice-activity detector already chose the speech, and the
        times must stay true): partials of 1.6 s start every `step` seconds, the last one ending with the
        speech; speech shorter than one partial gives one, zero-padded. Each partial is raised to
        GE2E_TARGET_DBFS on its own when quieter, as Resemblyzer raises a whole recording: heard so, the
        voices of one recording keep their levels, which tell them apart. Multiplied by the gains, each
        is heard as a recording's speech is (the level its enrollment was heard at), which names them.
        `embed_units` embeds either.
        """
        hop, size = GE2E_FEATURES.hop_length, self.partial_samples
        speech = np.asarray(speech, dtype=np.float32)
        if len(speech) == 0:
            return (np.zeros(0, dtype=int), torch.zeros((0, GE2E_PARTIAL_FRAMES, GE2E_FEATURES.n_mels), device=self.device),
                    torch.zeros(0, device=self.device))
        last = max(0, len(speech) - size) // hop  # in frames: partials start on frame boundaries
        count = int(np.ceil(last * hop / (step * self.sample_rate))) + 1 if last else 1
        starts = np.unique(np.round(np.linspace(0, last, count)).astype(int))
        padded = np.pad(speech, (0, max(0, starts[-1] * hop + size - len(speech))))
        pieces = np.stack([padded[s * hop : s * hop + size] for s in starts]).astype(np.float64)
        rms = np.sqrt(np.mean(np.square(pieces), axis=1))
        level = 20 * np.log10(np.maximum(rms, 1e-12))  # dBFS; a silent partial gains nothing either way
        raised = np.where(rms > 0, np.maximum(GE2E_TARGET_DBFS - level, 0.0), 0.0)  # dB: Resemblyzer's rule, per partial
        to_speech = np.where(rms > 0, GE2E_SPEECH_DBFS - np.maximum(level, GE2E_TARGET_DBFS), 0.0)  # dB on to the speech level
        gains = lambda db: torch.from_numpy(10 ** (db / 10)).float().to(self.device)  # power, as the mel is
        with torch.inference_mode():
            mel = self.frontend(torch.from_numpy(padded).to(self.device))[0].T  # (frames, n_mels): power, no log
            units = torch.stack([mel[s : s + GE2E_PARTIAL_FRAMES] for s in starts])
            return starts * hop, units * gains(raised)[:, None, None], gains(to_speech)

    def embed_units(self, units: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings (n, dim) of partials (n, frames, n_mels), computed in batches of `batch_size`."""
        with torch.inference_mode():
            return torch.cat([self.network(units[first : first + self.batch_size].to(self.device))
                              for first in range(0, len(units), self.batch_size)])

    def embed_many(self, audios: Sequence[np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
        partials = [self.units(audio, name) for audio, name in zip(audios, _names(audios, names))]
        if not partials:
            return np.zeros((0, self.dim), dtype=np.float32)
        owners = [index for index, units in enumerate(partials) for _ in range(len(units))]
        with torch.inference_mode():
            return _mean_embeddings(self.embed_units(torch.cat(partials)), owners, len(audios))


# --- A trained run's embedding layer ------------------------------------------------------------


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RunEncoder(Encoder):
    """The embedding layer of a model trained by `speakerid train` (or by `speakerid adapt`).

    A recording's embedding is the L2-normalised mean of the L2-normalised embeddings of its
    training-length chunks (a recording shorter than one chunk fills one as training filled short
    crops: `Run.short_fill`).
    """

    default_threshold = None

    def __init__(self, run: Run, name: str, spec: dict[str, Any], batch_size: int = 64):
        self.run = run
        self.name = name
        self.spec = spec
        self.dim = run.model.embedding_dim
        self.sample_rate = run.sample_rate
        self.chunking = run.chunking
        self.batch_size = batch_size

    @classmethod
    def from_dir(cls, run_dir: str | Path, device: str | torch.device = "auto", batch_size: int = 64) -> "RunEncoder":
        """The embedding layer of the run directory `run_dir`, named by its weights' SHA-256."""
        run = load_run(run_dir, device)
        sha256 = _file_sha256(run.path / WEIGHTS_FILE)
        return cls(run, f"run/{sha256[:16]}", {"kind": "run", "path": str(run.path.resolve()), "sha256": sha256}, batch_size)

    @classmethod
    def from_bytes(cls, weights: bytes, config: dict[str, Any], where: Path, device: str | torch.device = "auto",
                   batch_size: int = 64) -> "RunEncoder":
        """An adapted encoder stored in a registry: safetensors `weights` and the run `config` (with its labels)."""
        from safetensors import SafetensorError
        from safetensors.torch import load as load_safetensors

        try:
            state = load_safetensors(weights)
        except (SafetensorError, ValueError) as err:
            raise RegistryError(f"{where}: the adapted encoder's weights are damaged ({err}); run `speakerid adapt` again") from None
        sha256 = weights_digest(state)
        try:
            run = build_run(where, config["run"], config["labels"], state, device)
        except (RunError, KeyError, TypeError) as err:
            raise RegistryError(f"{where}: the adapted encoder does not load ({err}); run `speakerid adapt` again") from None
        return cls(run, adapted_name(sha256), {"kind": "adapted", "sha256": sha256}, batch_size)

    def embed_many(self, audios: Sequence[np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
        windows, owners = [], []
        for index, (audio, name) in enumerate(zip(audios, _names(audios, names))):
            chunks = chunk_windows(to_int16(_checked(audio, self.sample_rate, name)), self.chunking, self.run.short_fill)
            windows.append(chunks)
            owners.extend([index] * len(chunks))
        if not windows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _mean_embeddings(self._embed_waves(np.concatenate(windows)), owners, len(audios))

    @property
    def shortest_crop(self) -> float | None:
        """Seconds of the shortest crop the model trained on (None: whole chunks only)."""
        return self.run.shortest_crop

    def embed_crops(self, audios: Sequence[np.ndarray], seconds: float) -> np.ndarray:
        """(N, dim) L2-normalised embeddings of clips no longer than `seconds`, each embedded as one
        crop of that length (a shorter clip filled as training filled short crops: `Run.short_fill`):
        for windows at least as long as `shortest_crop`, lengths the model learnt from, at a fraction
        of a whole chunk's work."""
        size = round(seconds * self.sample_rate)
        repeat = self.run.short_fill == "repeat"
        filled = []
        for audio, name in zip(audios, _names(audios, None)):
            samples = to_int16(_checked(audio, self.sample_rate, name))[:size]
            filled.append(np.resize(samples, size) if repeat else np.pad(samples, (0, size - len(samples))))
        if not filled:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _unit(self._embed_waves(np.stack(filled))).cpu().numpy()

    def _embed_waves(self, waves: np.ndarray) -> torch.Tensor:
        """(N, dim) float embeddings of (N, T) int16 waves, in batches on the model's device."""
        waves = torch.from_numpy(waves)
        device = next(self.run.model.parameters()).device
        with torch.inference_mode():
            return torch.cat([self.run.model.embed(waves[first : first + self.batch_size].to(device)).float()
                              for first in range(0, len(waves), self.batch_size)])


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and values: the same weights, the same digest
    (a safetensors file's bytes are not: it writes its metadata in no fixed order)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def adapted_name(sha256: str) -> str:
    """The identity of an adapted encoder: its weights' SHA-256, shortened."""
    return f"adapted/{sha256[:16]}"


# --- Loading -------------------------------------------------------------------------------------


def load_encoder(model: str | Path | None = None, device: str = "auto") -> Encoder:
    """The GE2E encoder when `model` is None, else the embedding layer of the run directory `model`."""
    return Ge2eEncoder(device) if model is None else RunEncoder.from_dir(model, device)


def encoder_from_spec(spec: dict[str, Any], device: str = "auto") -> Encoder:
    """Load again the encoder a registry recorded; a run whose weights changed or vanished is refused."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "ge2e":
        return Ge2eEncoder(device)
    if kind != "run" or not {"path", "sha256"} <= set(spec):
        raise RegistryError(f"the registry records an encoder speakerid does not know ({spec!r}); enroll the speakers again")
    path = Path(spec["path"])
    fix = "pass --model with the run directory it was enrolled with (if it moved), or enroll the speakers again"
    try:
        encoder = RunEncoder.from_dir(path, device)
    except RunError as err:
        raise RegistryError(f"the registry's speakers were enrolled with the run {path}, which no longer loads ({err}); {fix}") from None
    if encoder.spec["sha256"] != spec["sha256"]:
        raise RegistryError(f"the run {path} has changed since the registry's speakers were enrolled ({WEIGHTS_FILE} differs); {fix}")
    return encoder
