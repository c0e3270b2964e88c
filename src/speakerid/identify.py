"""identify: who speaks in recordings of any length, according to a trained run (closed set).

A recording is cut into chunks exactly as the training corpus was (a clip shorter than one chunk
is padded), the chunks are scored in batches, and the recording's score is the mean of its
chunks' log-probabilities.

A closed-set model names one of its speakers for anything, silence and noise included, so the
answer is guarded (docs/benchmarks.md, "Non-speech and strangers"):
- a recording in which the voice detector (`speakerid.vad`) hears no speech, or shorter than a
  tenth of a training chunk (0.3 s for 3-s chunks, where answers were right 8 % of the time on
  14 speakers: chance), is refused (AudioError), on every identify path (`require_speech`);
- an answer for a recording shorter than one training chunk (zero-padded to one) says so (`short`);
- an answer whose embedding lies far from every training speaker says so (`out_of_set`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from speakerid.audio import load_audio, load_pcm16, to_int16
from speakerid.corpus import PrepareConfig, plan_chunks
from speakerid.errors import AudioError
from speakerid.models import SpeakerModel
from speakerid.rundir import Run, load_run

if TYPE_CHECKING:
    from speakerid.voices import OpenSetAnswer, VoiceRegistry


MIN_VOICED_SECONDS = 0.1  # frames the voice detector calls speech: silence, tones and noise have none
MIN_CHUNK_SHARE = 0.1  # a recording shorter than this share of a training chunk is refused


def require_speech(audio: np.ndarray, sample_rate: int, name: str, min_seconds: float) -> float:
    """The seconds of speech in mono audio (float, or int16): its frames the voice detector calls speech.

    AudioError naming `name` for a recording shorter than `min_seconds`, or in which the
    detector hears less than MIN_VOICED_SECONDS of speech. Frames, not the detector's regions,
    are counted: a spoken digit (0.2-0.4 s) is shorter than the shortest region.
    """
    from speakerid.vad import FRAME_SECONDS, VadConfig, speech_probabilities

    samples = audio.astype(np.float32) / 32768 if audio.dtype == np.int16 else audio
    seconds = len(samples) / sample_rate
    if seconds < min_seconds:
        raise AudioError(name, f"is {seconds:.2f} s long; at least {min_seconds:.2g} s is needed to tell a voice")
    voiced = float((speech_probabilities(samples, sample_rate) >= VadConfig().threshold).sum() * FRAME_SECONDS)
    if voiced < MIN_VOICED_SECONDS:
        raise AudioError(name, "holds no speech (the voice detector heard none)")
    return voiced


def chunk_windows(samples: np.ndarray, chunking: PrepareConfig, fill: str = "pad") -> np.ndarray:
    """(n_chunks, chunk_samples) int16 windows of a recording. A recording shorter than one chunk
    fills it as the model's training filled short crops (`Run.short_fill`): repeated end to end
    (`fill="repeat"`), or zero-padded."""
    if fill == "repeat" and 0 < len(samples) < chunking.chunk_samples:
        return np.resize(samples.astype(np.int16, copy=False), chunking.chunk_samples)[None]
    windows = plan_chunks(len(samples), chunking) or [(0, chunking.chunk_samples)]
    out = np.zeros((len(windows), chunking.chunk_samples), dtype=np.int16)
    for row, (start, end) in enumerate(windows):
        piece = samples[start:end]
        out[row, : len(piece)] = piece
    return out


def log_probs(model: SpeakerModel, waves: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Log-probabilities (N, n_classes) for int16 windows (N, T), scored in batches on the model's device."""
    return scores_and_embeddings(model, waves, batch_size)[0]


def scores_and_embeddings(model: SpeakerModel, waves: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Log-probabilities (N, n_classes) and L2-normalised embeddings (N, embedding_dim) of int16 windows
    (N, T), from one pass of the model in batches on its device."""
    device = next(model.parameters()).device
    scores, embeddings = [], []
    with torch.no_grad():
        for first in range(0, len(waves), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(waves[first : first + batch_size])).to(device)
            logits, embedded = model.logits_and_embedding(batch)
            scores.append(torch.log_softmax(logits.float(), dim=1).cpu().numpy())
            embedded = embedded.float()
            embeddings.append((embedded / embedded.norm(dim=1, keepdim=True).clamp_min(1e-12)).cpu().numpy())
    if not scores:
        return np.zeros((0, model.n_classes), dtype=np.float32), np.zeros((0, model.embedding_dim), dtype=np.float32)
    return np.concatenate(scores), np.concatenate(embeddings)


def recording_scores(chunk_log_probs: np.ndarray) -> np.ndarray:
    """Probabilities of a recording from its chunks: softmax of the mean chunk log-probability."""
    mean = chunk_log_probs.mean(axis=0)
    p = np.exp(mean - mean.max())
    return p / p.sum()


@dataclass
class Identification:
    """The answer for one recording: speakers ranked by probability, and how far to trust it.

    `short` is True when the recording is shorter than one training chunk. `out_of_set` is
    True when its embedding is less similar to every training speaker than 95 % of the run's
    held-out recordings of its length are (`speakerid.profile`); None when the run has no profile.
    """

    source: str
    seconds: float
    chunks: int
    ranking: list[tuple[str, float]] = field(default_factory=list)
    speech_seconds: float = 0.0
    short: bool = False
    similarity: float | None = None  # cosine to the closest training speaker's centroid
    similarity_threshold: float | None = None
    out_of_set: bool | None = None

    @property
    def speaker(self) -> str:
        return self.ranking[0][0]

    @property
    def probability(self) -> float:
        return self.ranking[0][1]

    def to_dict(self) -> dict:
        return {"file": self.source, "seconds": round(self.seconds, 3), "speech_seconds": round(self.speech_seconds, 3),
                "chunks": self.chunks, "speaker": self.speaker, "probability": round(self.probability, 6),
                "short": self.short, "out_of_set": self.out_of_set,
                "similarity": None if self.similarity is None else round(self.similarity, 6),
                "similarity_threshold": None if self.similarity_threshold is None else round(self.similarity_threshold, 6),
                "ranking": [{"speaker": s, "probability": round(p, 6)} for s, p in self.ranking]}


class Identifier:
    """A trained run, ready to name the speakers of new recordings."""

    def __init__(self, run: Run, batch_size: int = 64):
        from speakerid.profile import load_profile

        self.run = run
        self.batch_size = batch_size
        self.chunking = run.chunking
        self.profile = load_profile(run)

    @classmethod
    def load(cls, run: str | Path, device: str = "auto", batch_size: int = 64, engine: str = "torch") -> "Identifier":
        """A run ready to identify with; engine "onnx" runs its ONNX export with onnxruntime (on the CPU)."""
        from speakerid.deploy import use_engine

        return cls(use_engine(load_run(run, "cpu" if engine == "onnx" else device), engine), batch_size)

    @property
    def speakers(self) -> list[str]:
        return self.run.labels

    def identify(self, audio: str | Path | np.ndarray, top_k: int = 5, name: str | None = None) -> Identification:
        """Rank the run's speakers for a file, or for samples already at the run's rate (int16 or float)."""
        if isinstance(audio, np.ndarray):
            samples = audio if audio.dtype == np.int16 else to_int16(audio)
            source = name or "<audio>"
        else:
            samples, _, _ = load_pcm16(audio, self.chunking.sample_rate)
            source = name or str(audio)
        if len(samples) == 0:
            raise AudioError(source, "contains no audio samples")
        speech = require_speech(samples, self.chunking.sample_rate, source, MIN_CHUNK_SHARE * self.chunking.chunk_seconds)
        windows = chunk_windows(samples, self.chunking, self.run.short_fill)
        scores, embeddings = scores_and_embeddings(self.run.model, windows, self.batch_size)
        probabilities = recording_scores(scores)
        order = np.argsort(-probabilities)[: max(1, top_k)]
        ranking = [(self.run.labels[i], float(probabilities[i])) for i in order]
        seconds = len(samples) / self.chunking.sample_rate
        answer = Identification(source, seconds, len(windows), ranking, speech_seconds=speech,
                                short=seconds < self.chunking.chunk_seconds)
        if self.profile is not None:
            from speakerid.profile import mean_embedding

            answer.similarity = self.profile.similarity(mean_embedding(embeddings))
            answer.similarity_threshold = self.profile.threshold(len(windows))
            answer.out_of_set = answer.similarity < answer.similarity_threshold
        return answer
