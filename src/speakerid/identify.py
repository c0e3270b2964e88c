"""identify: who speaks in recordings of any length, according to a trained run (closed set).

A recording is cut into chunks exactly as the training corpus was (a clip shorter than one chunk
is padded), the chunks are scored in batches, and the recording's score is the mean of its
chunks' log-probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from speakerid.audio import load_pcm16, to_int16
from speakerid.corpus import PrepareConfig, plan_chunks
from speakerid.errors import AudioError
from speakerid.models import SpeakerModel
from speakerid.rundir import Run, load_run


def chunk_windows(samples: np.ndarray, chunking: PrepareConfig) -> np.ndarray:
    """(n_chunks, chunk_samples) int16 windows of a recording, zero-padded past its end."""
    windows = plan_chunks(len(samples), chunking) or [(0, chunking.chunk_samples)]
    out = np.zeros((len(windows), chunking.chunk_samples), dtype=np.int16)
    for row, (start, end) in enumerate(windows):
        piece = samples[start:end]
        out[row, : len(piece)] = piece
    return out


def log_probs(model: SpeakerModel, waves: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Log-probabilities (N, n_classes) for int16 windows (N, T), scored in batches on the model's device."""
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for first in range(0, len(waves), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(waves[first : first + batch_size])).to(device)
            out.append(torch.log_softmax(model(batch).float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.n_classes), dtype=np.float32)


def recording_scores(chunk_log_probs: np.ndarray) -> np.ndarray:
    """Probabilities of a recording from its chunks: softmax of the mean chunk log-probability."""
    mean = chunk_log_probs.mean(axis=0)
    p = np.exp(mean - mean.max())
    return p / p.sum()


@dataclass
class Identification:
    """The answer for one recording: speakers ranked by probability."""

    source: str
    seconds: float
    chunks: int
    ranking: list[tuple[str, float]] = field(default_factory=list)

    @property
    def speaker(self) -> str:
        return self.ranking[0][0]

    @property
    def probability(self) -> float:
        return self.ranking[0][1]

    def to_dict(self) -> dict:
        return {"file": self.source, "seconds": round(self.seconds, 3), "chunks": self.chunks,
                "speaker": self.speaker, "probability": round(self.probability, 6),
                "ranking": [{"speaker": s, "probability": round(p, 6)} for s, p in self.ranking]}


class Identifier:
    """A trained run, ready to name the speakers of new recordings."""

    def __init__(self, run: Run, batch_size: int = 64):
        self.run = run
        self.batch_size = batch_size
        self.chunking = run.chunking

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
        windows = chunk_windows(samples, self.chunking)
        probabilities = recording_scores(log_probs(self.run.model, windows, self.batch_size))
        order = np.argsort(-probabilities)[: max(1, top_k)]
        ranking = [(self.run.labels[i], float(probabilities[i])) for i in order]
        return Identification(source, len(samples) / self.chunking.sample_rate, len(windows), ranking)
