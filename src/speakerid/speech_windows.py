"""speech_windows: the windows diarization cuts from speech regions, embedded by a registry's encoders.

GE2E embeds each speech region once, as its 1.6-s partials (`Ge2eEncoder.partials`); a window is
a partial, or the mean of the partials inside it, so overlapping windows never embed the same
audio twice. It hears the speech twice: every partial as the recording has it (the voices keep
their levels, which tell them apart: clustering), and every other partial (with the default hop
of half a partial, they tile the speech once) brought to the speech level enrollment is heard at
(naming); a window is named by the levelled partials inside it, or the nearest one. Other
encoders (the adapted one, a trained run) embed each window's audio once: as a crop of the
window's length when they trained on crops that short (the adapted encoder does), else filled to
their whole chunk as identify fills a short clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from speakerid.audio import to_float32
from speakerid.clustering import unit

if TYPE_CHECKING:
    from speakerid.diarize import DiarizeConfig

__all__ = ["Embedded", "embed_windows", "windows_in"]

EMBEDDING_QUEUE = 2  # batches an encoder may have waiting for its thread


@dataclass
class Embedded:
    """A recording's speech as the encoders heard it (`embed_windows`)."""

    spans: list[tuple[float, float]]  # the windows, (start, end) seconds
    parts: list[np.ndarray]  # per encoder (base first), the windows' (windows, dim) L2-normalised embeddings
    named: list[np.ndarray]  # the same to score against enrolled speakers (GE2E's at the speech level)
    units: list[tuple[np.ndarray, np.ndarray]]  # per encoder, the finest pieces it embedded: (n, 2) spans and (n, dim)
    # embeddings (GE2E's partials; another encoder's windows); frames are labelled with these


def windows_in(regions: list[tuple[float, float]], config: DiarizeConfig) -> list[tuple[float, float]]:
    """(start, end) of the windows cut from speech regions; the last window of a region ends with it."""
    out = []
    for start, end in regions:
        length = end - start
        if length < config.min_window:
            continue
        if length <= config.window:
            out.append((start, end))
            continue
        count = int(np.ceil((length - config.window) / config.hop)) + 1
        out.extend((s, s + config.window) for s in np.linspace(start, end - config.window, count))
    return out


def embed_windows(voices, audio: np.ndarray, regions: list[tuple[float, float]], config: "DiarizeConfig",
                  advance: Callable[[int], None] = lambda n=1: None) -> Embedded:
    """The windows cut from speech `regions` of 16-kHz `audio` (float32 or int16; `windows_in`) and their embeddings
    by every encoder of a VoiceRegistry.

    GE2E embeds each region once, as partials of 1.6 s every `config.hop` seconds
    (`Ge2eEncoder.partials`), each at the level it has and every other one also at the speech
    level; a window's embedding is the mean of the partials lying inside it (the partial nearest
    its middle when none fits: a window shorter than a partial). Other encoders embed the windows'
    audio. Regions go in order, in batches of `config.batch` partials or windows. With several
    encoders, each embeds its batches on a thread of its own while this one cuts the next regions
    (torch computes outside the GIL: the GE2E LSTM ran 2.0x on two threads on two cores), with at
    most EMBEDDING_QUEUE batches waiting per encoder, so memory holds a few batches beside the
    embeddings; one encoder embeds on this thread (docs/benchmarks.md, "Diarization": a thread
    of its own was 6 % slower). `advance` is told each second of the recording done.
    """
    import torch
    from concurrent.futures import Future, ThreadPoolExecutor

    rate = voices.encoder.sample_rate
    encoders = voices.encoders
    spans: list[tuple[float, float]] = []
    partials: list[np.ndarray] = []  # (n, 2) spans of GE2E's partials, in seconds
    pending: list[list] = [[] for _ in encoders]  # per encoder: partials, or windows' audio, waiting for a batch
    waiting = [0] * len(encoders)  # how many partials or windows that is
    done: list[list[Future]] = [[] for _ in encoders]  # per encoder, its batches' (embeddings, levelled GE2E ones or None)
    levelled_pieces: list[np.ndarray] = []  # the (n, 2) spans of every other GE2E partial, heard at the speech level

    def embed(encoder, batch: list) -> tuple[np.ndarray, np.ndarray | None]:
        if hasattr(encoder, "partials"):
            units = torch.cat([u for u, _ in batch])
            naming = torch.cat([u[::2] * g[::2, None, None] for u, g in batch])  # every other one, levelled
            return encoder.embed_units(units).cpu().numpy(), encoder.embed_units(naming).cpu().numpy()
        if (getattr(encoder, "shortest_crop", None) or np.inf) <= config.window:
            return encoder.embed_crops(batch, config.window), None  # a crop's work, not a chunk's
        return encoder.embed_many(batch), None

    workers = ([ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"embed-{k}") for k in range(len(encoders))]
               if len(encoders) > 1 else [None])

    def flush(k: int) -> None:
        if pending[k]:
            if workers[k] is None:
                done[k].append(Future())
                done[k][-1].set_result(embed(encoders[k], pending[k]))
            else:
                if len(done[k]) >= EMBEDDING_QUEUE:
                    done[k][-EMBEDDING_QUEUE].result()  # let the encoder catch up before queueing more
                done[k].append(workers[k].submit(embed, encoders[k], pending[k]))
            pending[k], waiting[k] = [], 0

    try:
        reported = 0
        for start, end in regions:
            windows = windows_in([(start, end)], config)
            spans += windows
            for k, encoder in enumerate(encoders if windows else []):
                if hasattr(encoder, "partials"):
                    starts, units, gains = encoder.partials(to_float32(audio[round(start * rate) : round(end * rate)]), config.hop)
                    first = start + starts / rate
                    partials.append(np.stack([first, np.minimum(first + encoder.partial_samples / rate, end)], axis=1))
                    levelled_pieces.append(partials[-1][::2])
                    pending[k].append((units, gains))
                    waiting[k] += len(units)
                else:
                    pending[k] += [to_float32(audio[round(s * rate) : round(e * rate)]) for s, e in windows]
                    waiting[k] += len(windows)
                if waiting[k] >= config.batch:
                    flush(k)
            advance(int(end) - reported)
            reported = int(end)
        for k in range(len(encoders)):
            flush(k)
        results = [[future.result() for future in futures] for futures in done]
    finally:
        for worker in workers:
            if worker is not None:
                worker.shutdown(cancel_futures=True)
    advance(int(len(audio) / rate) - reported)
    window_spans = np.array(spans, dtype=np.float64).reshape(-1, 2)
    result = Embedded(spans, [], [], [])
    for k, encoder in enumerate(encoders):
        vectors = np.concatenate([v for v, _ in results[k]]) if results[k] else np.zeros((0, encoder.dim), np.float32)
        if hasattr(encoder, "partials") and spans:
            pieces = np.concatenate(partials)
            levelled = np.concatenate([v for _, v in results[k]])
            result.parts.append(_window_means(vectors, pieces, window_spans))
            result.named.append(_window_means(levelled, np.concatenate(levelled_pieces), window_spans))
            result.units.append((pieces, vectors))
        else:
            result.parts.append(vectors)
            result.named.append(vectors)
            result.units.append((window_spans, vectors))
    return result


def _window_means(partials: np.ndarray, pieces: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Each window's embedding: the L2-normalised mean of the partials (at `pieces`, in order) lying inside it,
    or of the one nearest its middle when none fits."""
    slack = 0.011  # partials start on 10-ms frames
    centres = pieces.mean(axis=1)
    out = np.empty((len(spans), partials.shape[1]), np.float32)
    for i, (s, e) in enumerate(spans):
        inside = np.arange(*np.searchsorted(centres, [s, e]))
        inside = inside[(pieces[inside, 0] >= s - slack) & (pieces[inside, 1] <= e + slack)]
        if not len(inside):
            inside = [int(np.argmin(np.abs(centres - (s + e) / 2)))]
        out[i] = unit(partials[inside].mean(axis=0))
    return out
