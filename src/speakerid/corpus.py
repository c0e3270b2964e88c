"""prepare: from a folder of speaker folders to a corpus of chunk views over one decoded-audio cache.

A corpus directory holds:

    corpus.json      what was asked (data folder, chunking and split settings)
    audio.i16        every accepted recording, decoded once to 16 kHz mono int16, end to end
    recordings.csv   where each recording lies in audio.i16, and its speech regions (a journal: appended as decoding goes)
    chunks.csv       speaker, label, recording, start, end, split (samples, relative to the recording)
    labels.json      speaker names; a speaker's label is its index
    rejected.csv     files that were skipped, and why
    summary.json     counts per split and per speaker; written last, it marks the corpus complete

Chunks are windows into the cache, never files. The split is by recording, stratified per speaker.
The voice detector screens every recording (`speakerid.screening`): recordings with little or no
speech are reported, and dropped when asked; chunks with too little speech can be dropped too.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from speakerid import screening
from speakerid.audio import SAMPLE_RATE, is_audio_file, load_pcm16
from speakerid.errors import AudioError, CorpusError
from speakerid.locks import sole_writer

FORMAT = "speakerid-corpus/1"
SPLITS = ("train", "validation", "test")

CONFIG_FILE = "corpus.json"
AUDIO_FILE = "audio.i16"
RECORDINGS_FILE = "recordings.csv"
CHUNKS_FILE = "chunks.csv"
LABELS_FILE = "labels.json"
REJECTED_FILE = "rejected.csv"
SUMMARY_FILE = "summary.json"
CORPUS_FILES = (CONFIG_FILE, AUDIO_FILE, RECORDINGS_FILE, CHUNKS_FILE, LABELS_FILE, REJECTED_FILE, SUMMARY_FILE)

RECORDING_FIELDS = ("recording", "speaker", "offset", "samples", "source_rate", "channels", "size", "mtime_ns", "speech")
INT_FIELDS = RECORDING_FIELDS[2:8]
CHUNK_FIELDS = ("speaker", "label", "recording", "start", "end", "split")


@dataclass(frozen=True)
class PrepareConfig:
    """How recordings are cut into chunks and split. Lengths are in seconds."""

    chunk_seconds: float = 3.0
    hop_seconds: float | None = None  # None: chunks follow each other without overlap
    tail: str = "drop"  # "drop" | "pad": what to do with the end of a recording shorter than a chunk
    short: str = "pad"  # "pad" | "reject": recordings shorter than one chunk
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    sample_rate: int = SAMPLE_RATE
    speech_check: bool = True  # run the voice detector over every recording
    min_speech_seconds: float = 1.0  # a recording with less speech is reported ("little or no speech")
    drop_nonspeech: bool = False  # and left out of the corpus (listed in rejected.csv)
    min_chunk_speech: float = 0.0  # fraction of a chunk that must be speech for the chunk to be kept; 0 keeps all

    def __post_init__(self):
        if not (math.isfinite(self.chunk_seconds) and self.chunk_samples >= 1):
            raise CorpusError(f"chunk length must be a positive number of seconds, got {self.chunk_seconds}")
        if self.hop_seconds is not None and not (0 < self.hop_seconds <= self.chunk_seconds and self.hop_samples >= 1):
            raise CorpusError(f"hop must lie in (0, chunk length], got {self.hop_seconds} s")
        if self.tail not in ("drop", "pad"):
            raise CorpusError(f"tail policy must be 'drop' or 'pad', got {self.tail!r}")
        if self.short not in ("pad", "reject"):
            raise CorpusError(f"short-recording policy must be 'pad' or 'reject', got {self.short!r}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise CorpusError(f"{name.replace('_', ' ')} must lie in [0, 1), got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise CorpusError("validation and test fractions must leave something to train on")
        if not (math.isfinite(self.min_speech_seconds) and self.min_speech_seconds >= 0):
            raise CorpusError(f"the least speech a recording must hold is a number of seconds, 0 or more, got {self.min_speech_seconds}")
        if not 0 <= self.min_chunk_speech <= 1:
            raise CorpusError(f"the share of speech a chunk must hold lies in [0, 1], got {self.min_chunk_speech}")
        if (self.drop_nonspeech or self.min_chunk_speech > 0) and not self.speech_check:
            raise CorpusError("dropping recordings or chunks without speech needs the speech check; leave it on")

    @property
    def chunk_samples(self) -> int:
        return round(self.chunk_seconds * self.sample_rate)

    @property
    def hop_samples(self) -> int:
        return round((self.hop_seconds or self.chunk_seconds) * self.sample_rate)


@dataclass(frozen=True)
class Source:
    """An audio file found in the data folder."""

    recording: str  # path relative to the data folder, POSIX style: the recording's id
    speaker: str
    path: Path


@dataclass(frozen=True)
class Rejection:
    path: str
    reason: str


@dataclass
class PrepareResult:
    corpus: Path
    summary: dict
    rejected: list[Rejection] = field(default_factory=list)
    resumed: int = 0  # recordings found already decoded


# ---------------------------------------------------------------- scanning


def scan(data_dir: str | Path) -> tuple[list[Source], list[Rejection]]:
    """Find `DATA_DIR/<speaker>/**/<audio file>`; report speaker folders without audio and stray files."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        what = "is not a folder" if data_dir.exists() else "does not exist"
        raise CorpusError(f"{data_dir} {what}; give a folder holding one sub-folder of recordings per speaker")
    sources: list[Source] = []
    rejected: list[Rejection] = []
    for entry in sorted(data_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            if is_audio_file(entry):
                rejected.append(Rejection(str(entry), "audio file outside a speaker folder"))
            continue
        found = [
            Source(path.relative_to(data_dir).as_posix(), entry.name, path)
            for path in sorted(entry.rglob("*"))
            if path.is_file() and is_audio_file(path) and not _hidden(path.relative_to(entry))
        ]
        if not found:
            rejected.append(Rejection(str(entry), "speaker folder holds no audio files"))
        sources.extend(found)
    if not sources:
        raise CorpusError(
            f"{data_dir} holds no speaker folders with audio; expected DATA_DIR/<speaker>/<recording>.wav|flac|ogg|mp3"
        )
    return sources, rejected


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


# ---------------------------------------------------------------- chunking and splitting


def plan_chunks(n_samples: int, config: PrepareConfig) -> list[tuple[int, int]]:
    """(start, end) windows over a recording of `n_samples`; `end` may pass the recording's end (zero padding)."""
    size, hop = config.chunk_samples, config.hop_samples
    if n_samples < size:
        return [(0, size)] if config.short == "pad" else []
    starts = list(range(0, n_samples - size + 1, hop))
    if config.tail == "pad" and starts[-1] + size < n_samples:
        starts.append(starts[-1] + hop)
    return [(s, s + size) for s in starts]


def split_recordings(recordings_by_speaker: dict[str, list[str]], config: PrepareConfig) -> dict[str, str]:
    """Assign each recording to a split, stratified per speaker, stable under adding other speakers.

    A speaker with one recording keeps it in train; with two, one trains and one tests; with three
    or more, validation and test each get their fraction (rounded, at least one) and train keeps
    at least one.
    """
    split_of: dict[str, str] = {}
    for speaker, recordings in recordings_by_speaker.items():
        n = len(recordings)
        order = sorted(recordings)
        rng = np.random.default_rng([config.seed, zlib.crc32(speaker.encode("utf-8"))])
        order = [order[i] for i in rng.permutation(n)]
        n_test, n_val = _split_sizes(n, config)
        for i, recording in enumerate(order):
            split_of[recording] = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
    return split_of


def _split_sizes(n: int, config: PrepareConfig) -> tuple[int, int]:
    if n == 1:
        return 0, 0
    want_test = max(1, round(n * config.test_fraction)) if config.test_fraction > 0 else 0
    want_val = max(1, round(n * config.val_fraction)) if config.val_fraction > 0 else 0
    if n == 2:
        return min(want_test, 1), 0 if want_test else min(want_val, 1)
    n_test = min(want_test, n - 1)
    n_val = min(want_val, n - 1 - n_test)
    return n_test, n_val


# ---------------------------------------------------------------- prepare


def prepare(
    data_dir: str | Path,
    out: str | Path,
    config: PrepareConfig | None = None,
    *,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Scan, decode (in parallel, once), chunk and split `data_dir` into a corpus at `out`.

    Re-running on the same `out` with the same settings resumes: recordings already decoded
    (and unchanged on disk) are kept. Different settings are refused unless `force`, which
    deletes this corpus's files (never anything else) and starts over. A prepare into `out`
    while another one writes there is refused.
    """
    config = config or PrepareConfig()
    data_dir, out = Path(data_dir).resolve(), Path(out)
    sources, rejected = scan(data_dir)
    started = time.perf_counter()

    asked = {"format": FORMAT, "data_dir": str(data_dir), "config": asdict(config)}
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out} exists and is not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    with sole_writer(out, CorpusError(f"another `speakerid prepare` is writing {out} right now; wait for it to finish")):
        _claim_output(out, asked, force)

        journal = _read_journal(out, sources)
        done = {row["recording"] for row in journal}
        pending = [s for s in sources if s.recording not in done]
        _write_journal_header(out, journal)

        with open(out / AUDIO_FILE, "ab") as cache, open(out / RECORDINGS_FILE, "a", newline="", encoding="utf-8") as log:
            writer = csv.DictWriter(log, RECORDING_FIELDS, lineterminator="\n")
            offset = cache.tell() // 2
            for source, decoded in _decode_all(pending, config.sample_rate, workers, progress, config.speech_check):
                if isinstance(decoded, Rejection):
                    rejected.append(decoded)
                    continue
                samples, source_rate, channels, speech = decoded
                if len(samples) < config.chunk_samples and config.short == "reject":
                    seconds = len(samples) / config.sample_rate
                    rejected.append(Rejection(str(source.path), f"shorter than one chunk ({seconds:.2f} s < {config.chunk_seconds:g} s)"))
                    continue
                cache.write(samples.tobytes())
                cache.flush()
                stat = source.path.stat()
                row = {
                    "recording": source.recording, "speaker": source.speaker, "offset": offset, "samples": len(samples),
                    "source_rate": source_rate, "channels": channels, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                    "speech": speech,
                }
                writer.writerow(row)
                log.flush()
                journal.append(row)
                offset += len(samples)

        summary = _finish(out, data_dir, config, journal, rejected, time.perf_counter() - started, resumed=len(done))
    return PrepareResult(out, summary, rejected, resumed=len(done))


def _claim_output(out: Path, asked: dict, force: bool) -> None:
    """Make the folder `out` ours: resume it, or refuse to touch it."""
    if any(out.iterdir()):
        config_file = out / CONFIG_FILE
        if not config_file.is_file():
            raise CorpusError(f"{out} is not empty and is not a speakerid corpus; choose an empty or new --out")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in CORPUS_FILES and not p.name.endswith(".tmp"))
        try:
            previous = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if force:
            if foreign:
                raise CorpusError(f"{out} holds files speakerid did not write ({', '.join(foreign[:3])}); not deleting them")
            for name in CORPUS_FILES:
                (out / name).unlink(missing_ok=True)
        elif _with_new_settings(previous) != asked:
            raise CorpusError(
                f"{out} was prepared from other data or with other settings; "
                "pass --force to delete it and start over, or choose another --out"
            )
        else:
            (out / SUMMARY_FILE).unlink(missing_ok=True)  # incomplete again until this run finishes
    write_json(out / CONFIG_FILE, asked)


def _with_new_settings(previous):
    """A corpus.json as written before the speech screening: its settings with the new ones at their
    defaults, so that a corpus prepared with the same settings resumes (its recordings are screened)."""
    if isinstance(previous, dict) and isinstance(previous.get("config"), dict):
        return {**previous, "config": {**asdict(PrepareConfig()), **previous["config"]}}
    return previous


def _read_journal(out: Path, sources: list[Source]) -> list[dict]:
    """Recordings already decoded into the cache whose source files are unchanged; trims a torn tail."""
    log, cache = out / RECORDINGS_FILE, out / AUDIO_FILE
    if not log.is_file() or not cache.is_file():
        cache.unlink(missing_ok=True)
        log.unlink(missing_ok=True)
        return []
    by_id = {s.recording: s for s in sources}
    cache_samples = cache.stat().st_size // 2
    kept, end = [], 0
    with open(log, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                row = {**row, **{k: int(row[k]) for k in INT_FIELDS}, "speech": row["speech"] or ""}
                screening.decode(row["speech"])
            except (TypeError, ValueError, KeyError):
                break  # a line torn by an interruption: everything after it is redone
            if row["offset"] + row["samples"] > cache_samples:
                break
            end = max(end, row["offset"] + row["samples"])
            source = by_id.get(row["recording"])
            if source is None or not source.path.is_file():
                continue
            stat = source.path.stat()
            if (stat.st_size, stat.st_mtime_ns) == (row["size"], row["mtime_ns"]):
                kept.append(row)
    with open(cache, "r+b") as f:
        f.truncate(end * 2)
    return kept


def _write_journal_header(out: Path, rows: list[dict]) -> None:
    tmp = out / (RECORDINGS_FILE + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, RECORDING_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / RECORDINGS_FILE)


def _decode_all(pending: list[Source], sample_rate: int, workers: int | None, progress: bool,
                speech_check: bool = False) -> Iterator:
    """Yield (source, (samples, rate, channels, speech regions as text) | Rejection) in order, decoding
    (and screening for speech) on a thread pool."""
    from speakerid.progress import progress_bar

    def work(source: Source):
        try:
            samples, rate, channels = load_pcm16(source.path, sample_rate)
            return samples, rate, channels, screening.encode(screening.detect(samples, sample_rate)) if speech_check else ""
        except AudioError as err:
            return Rejection(str(source.path), err.reason)
        except Exception as err:  # a decoder bug must not lose the rest of the job
            return Rejection(str(source.path), f"{type(err).__name__}: {err}")

    workers = max(1, workers or os.cpu_count() or 1)
    with progress_bar("decoding and screening" if speech_check else "decoding", total=len(pending), enabled=progress) as advance:
        if workers == 1 or len(pending) < 2:
            results = map(work, pending)
            for source in pending:
                yield source, next(results)
                advance()
            return
        with ThreadPoolExecutor(workers) as pool:
            # A bounded window keeps memory flat however many files there are.
            window = workers * 4
            futures = [pool.submit(work, s) for s in pending[:window]]
            for i, source in enumerate(pending):
                result = futures[i].result()
                futures[i] = None
                if i + window < len(pending):
                    futures.append(pool.submit(work, pending[i + window]))
                yield source, result
                advance()


def _finish(out: Path, data_dir: Path, config: PrepareConfig, journal: list[dict], rejected: list[Rejection],
            seconds: float, resumed: int) -> dict:
    """Plan chunks, split, and write the manifest, labels, rejections and summary."""
    regions = {row["recording"]: screening.decode(row["speech"]) for row in journal}
    speech = {r: screening.seconds(found) for r, found in regions.items()}
    little = [row for row in journal if config.speech_check and speech[row["recording"]] < config.min_speech_seconds]
    if config.drop_nonspeech:
        for row in little:
            rejected.append(Rejection(str(data_dir / row["recording"]), f"holds {speech[row['recording']]:.1f} s of speech, "
                                      f"less than {config.min_speech_seconds:g} s (left out: --drop-nonspeech)"))
        dropped = {row["recording"] for row in little}
        journal = [row for row in journal if row["recording"] not in dropped]
    by_speaker: dict[str, list[str]] = {}
    for row in journal:
        by_speaker.setdefault(row["speaker"], []).append(row["recording"])
    speakers = sorted(by_speaker)
    label_of = {s: i for i, s in enumerate(speakers)}
    split_of = split_recordings(by_speaker, config)

    chunk_rows = []
    silent_chunks = 0
    per_speaker = {s: {"recordings": {k: 0 for k in SPLITS}, "chunks": {k: 0 for k in SPLITS}} for s in speakers}
    for row in sorted(journal, key=lambda r: r["recording"]):
        split = split_of[row["recording"]]
        windows = plan_chunks(row["samples"], config)
        if config.min_chunk_speech > 0:
            rate, found = config.sample_rate, regions[row["recording"]]
            kept = [(a, b) for a, b in windows
                    if screening.covered(found, a / rate, min(b, row["samples"]) / rate) >= config.min_chunk_speech * config.chunk_seconds]
            silent_chunks += len(windows) - len(kept)
            windows = kept
        per_speaker[row["speaker"]]["recordings"][split] += 1
        per_speaker[row["speaker"]]["chunks"][split] += len(windows)
        for start, end in windows:
            chunk_rows.append((row["speaker"], label_of[row["speaker"]], row["recording"], start, end, split))

    write_csv(out / CHUNKS_FILE, CHUNK_FIELDS, chunk_rows)
    write_csv(out / REJECTED_FILE, ("path", "reason"), [(r.path, r.reason) for r in rejected])
    write_json(out / LABELS_FILE, speakers)

    notes = []
    for speaker in speakers:
        n = len(by_speaker[speaker])
        if n == 1:
            notes.append(f"{speaker}: one recording, used for training only (no validation or test chunks)")
        elif n == 2:
            notes.append(f"{speaker}: two recordings, one for training and one for test (none for validation)")
        if sum(per_speaker[speaker]["chunks"].values()) == 0:
            notes.append(f"{speaker}: no chunks (every recording shorter than one chunk" +
                         (", or without enough speech)" if config.min_chunk_speech > 0 else ")"))
    if little and not config.drop_nonspeech:
        notes.append(f"{len(little)} recordings hold less than {config.min_speech_seconds:g} s of speech (summary.json lists "
                     "them under little_speech); --drop-nonspeech leaves them out")
    if silent_chunks:
        notes.append(f"{silent_chunks} chunks with less than {config.min_chunk_speech:.0%} speech were left out")
    total_samples = sum(row["samples"] for row in journal)
    summary = {
        "format": FORMAT,
        "data_dir": str(data_dir),
        "config": asdict(config),
        "speakers": len(speakers),
        "recordings": len(journal),
        "minutes": round(total_samples / config.sample_rate / 60, 3),
        "speech_minutes": round(sum(speech[row["recording"]] for row in journal) / 60, 3) if config.speech_check else None,
        "little_speech": [{"recording": row["recording"], "speech_seconds": round(speech[row["recording"]], 3)}
                          for row in little],
        "chunks_without_speech": silent_chunks,
        "chunks": {k: sum(p["chunks"][k] for p in per_speaker.values()) for k in SPLITS},
        "recordings_per_split": {k: sum(p["recordings"][k] for p in per_speaker.values()) for k in SPLITS},
        "rejected": len(rejected),
        "resumed": resumed,
        "seconds": round(seconds, 3),
        "notes": notes,
        "per_speaker": per_speaker,
    }
    write_json(out / SUMMARY_FILE, summary)
    return summary


def write_csv(path: Path, header: tuple[str, ...], rows) -> None:
    """Write a CSV file atomically with Unix line endings: rows are sequences, or dicts keyed by `header`."""
    tmp = path.with_name(path.name + ".tmp")
    rows = list(rows)
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        if rows and isinstance(rows[0], dict):
            writer = csv.DictWriter(f, header, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
        else:
            writer = csv.writer(f, lineterminator="\n")  # the csv module writes CRLF by default
            writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------- reading a corpus


@dataclass(frozen=True)
class Recording:
    recording: str
    speaker: str
    offset: int
    samples: int


class Corpus:
    """A prepared corpus: labels, recordings and chunk windows over one memory-mapped cache."""

    def __init__(self, path: Path, config: PrepareConfig, labels: list[str], recordings: dict[str, Recording],
                 chunks: dict[str, np.ndarray], summary: dict):
        self.path = path
        self.config = config
        self.labels = labels
        self.recordings = recordings
        self.summary = summary
        # Chunk table as parallel arrays: label, recording (index into recording_ids), start, end, split.
        self.recording_ids: list[str] = list(recordings)
        self.chunk_label = chunks["label"]
        self.chunk_recording = chunks["recording"]
        self.chunk_start = chunks["start"]
        self.chunk_end = chunks["end"]
        self.chunk_split = chunks["split"]
        self._offsets = np.array([r.offset for r in recordings.values()], dtype=np.int64)
        self._lengths = np.array([r.samples for r in recordings.values()], dtype=np.int64)
        size = (path / AUDIO_FILE).stat().st_size // 2
        self.audio = np.memmap(path / AUDIO_FILE, dtype=np.int16, mode="r", shape=(size,)) if size else np.zeros(0, np.int16)

    @classmethod
    def open(cls, path: str | Path) -> "Corpus":
        path = Path(path)
        if not (path / SUMMARY_FILE).is_file():
            raise CorpusError(_not_a_corpus(path))
        try:
            summary = json.loads((path / SUMMARY_FILE).read_text(encoding="utf-8"))
            config = PrepareConfig(**summary["config"])
            labels = json.loads((path / LABELS_FILE).read_text(encoding="utf-8"))
            with open(path / RECORDINGS_FILE, newline="", encoding="utf-8") as f:
                recordings = {
                    row["recording"]: Recording(row["recording"], row["speaker"], int(row["offset"]), int(row["samples"]))
                    for row in csv.DictReader(f)
                }
            chunks = _read_chunks(path / CHUNKS_FILE, recordings)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CorpusError(f"{path} is a damaged corpus ({type(err).__name__}: {err}); prepare it again with --force") from None
        return cls(path, config, labels, recordings, chunks, summary)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def chunk_samples(self) -> int:
        return self.config.chunk_samples

    def split_indices(self, split: str) -> np.ndarray:
        """Indices of the chunks in one split ("train", "validation", "test")."""
        if split not in SPLITS:
            raise CorpusError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return np.flatnonzero(self.chunk_split == SPLITS.index(split))

    def chunk_audio(self, index: int, shift: int = 0, fill: str = "pad") -> np.ndarray:
        """One chunk's int16 samples (always `chunk_samples` long, zero-padded past the recording's end).

        `shift` moves the window within its recording (training-time jitter); it is clipped so the
        window stays inside the recording where the recording is long enough. `fill="repeat"`
        fills the chunk of a recording shorter than one chunk with the recording repeated end to
        end instead (as a model trained on repeated crops expects: `Run.short_fill`).
        """
        r = self.chunk_recording[index]
        length = self._lengths[r]
        start, end = int(self.chunk_start[index]), int(self.chunk_end[index])
        if fill == "repeat" and 0 < length < end - start:
            return np.resize(np.array(self.audio[self._offsets[r] : self._offsets[r] + length]), end - start)
        if shift:
            start = int(np.clip(start + shift, 0, max(0, length - (end - start))))
            end = start + (self.chunk_end[index] - self.chunk_start[index])
        stop = min(end, length)
        piece = self.audio[self._offsets[r] + start : self._offsets[r] + stop]
        if stop - start == end - start:
            return np.array(piece)
        window = np.zeros(end - start, dtype=np.int16)
        window[: stop - start] = piece
        return window

    def crop_audio(self, index: int, samples: int, rng: np.random.Generator, short: str = "pad") -> np.ndarray:
        """`samples` int16 samples from anywhere inside chunk `index`'s recording (training crops).

        A recording shorter than the crop is used whole, then zero-padded (`short="pad"`) or
        repeated end to end (`short="repeat"`) to the crop's length.
        """
        r = self.chunk_recording[index]
        offset, length = self._offsets[r], int(self._lengths[r])
        if length >= samples:
            start = offset + int(rng.integers(0, length - samples + 1))
            return np.array(self.audio[start : start + samples])
        whole = self.audio[offset : offset + length]
        if short == "repeat" and length:
            return np.resize(whole, samples)
        window = np.zeros(samples, dtype=np.int16)
        window[:length] = whole
        return window

    def recording_audio(self, recording: str) -> np.ndarray:
        """A whole recording's int16 samples."""
        r = self.recordings[recording]
        return np.array(self.audio[r.offset : r.offset + r.samples])


def _not_a_corpus(path: Path) -> str:
    """Why `path` is no corpus, and the command that makes one without writing into the user's data."""
    if (path / CONFIG_FILE).is_file():
        return f"{path} is an unfinished corpus; run `speakerid prepare` again to complete it"
    if not path.exists():
        return f"{path} does not exist; make a corpus there first: speakerid prepare DATA_DIR --out {path}"
    if not path.is_dir():
        return f"{path} is a file, not a corpus folder; give the folder `speakerid prepare` wrote"
    if any(is_audio_file(p) for p in path.rglob("*")):
        corpus = f"{path.resolve().name}-corpus"
        return (f"{path} holds recordings but is not a prepared corpus; prepare it first: "
                f"speakerid prepare {path} --out {corpus}, then use {corpus}")
    return f"{path} is not a prepared corpus (no {SUMMARY_FILE}); make one with: speakerid prepare DATA_DIR --out CORPUS"


def _read_chunks(path: Path, recordings: dict[str, Recording]) -> dict[str, np.ndarray]:
    index_of = {rec: i for i, rec in enumerate(recordings)}
    split_code = {s: i for i, s in enumerate(SPLITS)}
    labels, recs, starts, ends, splits = [], [], [], [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            labels.append(int(row["label"]))
            recs.append(index_of[row["recording"]])
            starts.append(int(row["start"]))
            ends.append(int(row["end"]))
            splits.append(split_code[row["split"]])
    return {
        "label": np.array(labels, dtype=np.int64),
        "recording": np.array(recs, dtype=np.int64),
        "start": np.array(starts, dtype=np.int64),
        "end": np.array(ends, dtype=np.int64),
        "split": np.array(splits, dtype=np.int8),
    }
