"""voices: a registry with its encoders: enroll, identify among the enrolled voices (open set), verify.

A speaker's reference is, per encoder, the L2-normalised mean of its enrollment embeddings.
Identification scores a recording against every reference with every encoder of the registry,
fuses the scores (`speakerid.scoring`), and answers the best speaker, or "unknown" when the
fused score is under the identification threshold.

The references of every speaker are kept in memory, one matrix per encoder, and refreshed only
when the registry's generation changes (another thread or process enrolled, renamed, removed
or adapted): then only the speakers changed since are read again. A search is one matrix product.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from speakerid.audio import SAMPLE_RATE, decode_audio, load_audio
from speakerid.corpus import scan
from speakerid.errors import AudioError, RegistryError
from speakerid.registry import ADAPTED, UNKNOWN, Enrollment, Registry, check_name
from speakerid.scoring import Scoring, scoring_for

if TYPE_CHECKING:
    from speakerid.encoders import Encoder

__all__ = ["VoiceRegistry", "EnrollResult", "OpenSetAnswer", "Verification", "Scores", "verify", "UNKNOWN"]


@dataclass
class EnrollResult:
    """What enrolling one speaker did: files added, skipped (already enrolled) and failed (with why)."""

    speaker: str
    added: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    recordings: int = 0  # the speaker's enrolled recordings afterwards

    def to_dict(self) -> dict:
        return {"speaker": self.speaker, "added": self.added, "skipped": self.skipped,
                "failed": [{"file": f, "reason": r} for f, r in self.failed], "recordings": self.recordings}


@dataclass
class OpenSetAnswer:
    """Who speaks, among the enrolled speakers, or "unknown".

    `score` is the identification score (`Scoring.identification`: the best fused score, with its
    lead over the second best weighed in). `known` is True
    when it reaches the threshold, False when it does not (then `speaker` is "unknown"), and None
    when there is no threshold to decide with (then `speaker` is merely the closest enrolled
    voice). `ranking` holds (speaker, fused score, {encoder: cosine}) for the best speakers.
    """

    speaker: str
    score: float
    known: bool | None
    threshold: float | None  # for audio of this length
    threshold_source: str
    encoders: list[str]
    ranking: list[tuple[str, float, dict[str, float]]]
    seconds: float

    def to_dict(self) -> dict:
        return {"speaker": self.speaker, "score": round(self.score, 6), "known": self.known, "seconds": round(self.seconds, 3),
                "threshold": self.threshold, "threshold_source": self.threshold_source, "encoders": self.encoders,
                "ranking": [{"speaker": s, "score": round(v, 6), "scores": {e: round(c, 6) for e, c in per.items()}}
                            for s, v, per in self.ranking]}


@dataclass
class Verification:
    """Whether two recordings share a speaker: their fused score against a threshold (`same` None without one)."""

    score: float
    same: bool | None
    threshold: float | None
    threshold_source: str
    scores: dict[str, float]  # each encoder's cosine

    def to_dict(self) -> dict:
        return {"score": round(self.score, 6), "same": self.same, "threshold": self.threshold,
                "threshold_source": self.threshold_source, "scores": {e: round(c, 6) for e, c in self.scores.items()}}


@dataclass
class Scores:
    """Recordings scored against every enrolled speaker: fused (n, speakers) and per encoder (n, speakers, encoders)."""

    speakers: list[str]
    fused: np.ndarray
    cosines: np.ndarray
    encoders: list[str]
    scoring: Scoring


CANDIDATES = 256  # speakers re-scored exactly after the half-precision search over all of them


@dataclass
class _References:
    """A snapshot of every speaker's references, one matrix per encoder, as of `generation`.

    `halves` holds the same matrices in half precision (torch): a search over 100,000 speakers reads
    half the memory, and only the best `CANDIDATES` are then scored exactly in single precision.
    """

    generation: int
    encoders: tuple[str, ...]
    ids: list[int]
    names: list[str]
    matrices: list[np.ndarray]  # per encoder, (speakers, dim)
    scoring: Scoring
    halves: list = field(default_factory=list)

    def __post_init__(self) -> None:
        import torch

        self.halves = [torch.from_numpy(np.ascontiguousarray(m)).half() for m in self.matrices]

    def candidates(self, embedded: dict[str, np.ndarray]) -> np.ndarray:
        """Indices of the speakers whose fused half-precision scores against one recording are best."""
        import torch

        if len(self.names) <= CANDIDATES:
            return np.arange(len(self.names))
        coarse = np.stack([torch.mv(h, torch.from_numpy(embedded[e][0]).half()).float().numpy()
                           for e, h in zip(self.encoders, self.halves)], axis=-1)
        fused = self.scoring.fusion.fuse(coarse)
        return np.argpartition(-fused, CANDIDATES - 1)[:CANDIDATES]


class VoiceRegistry:
    """A registry with its encoders: enroll, identify (open set) and verify recordings.

    `model` None uses the base encoder the registry recorded, or GE2E for a new registry; a given
    model (a run directory) must be the one the registry recorded. Encoders load on first use, so
    listing, renaming and removing speakers need none. `create=False` refuses a registry file
    that does not exist yet.
    """

    def __init__(self, path: str | Path, model: str | Path | None = None, device: str = "auto", create: bool = True):
        self.registry = Registry(path, create=create)
        self.model = model
        self.device = device
        self._encoders: list[Encoder] = []
        self._references: _References | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ encoders

    @property
    def encoder(self) -> "Encoder":
        """The base encoder (GE2E, or the run the registry was enrolled with)."""
        return self.encoders[0]

    @property
    def encoders(self) -> list["Encoder"]:
        """The registry's encoders, base first; reloaded when `adapt` (here or elsewhere) changed them."""
        with self._lock:
            return self._current_encoders()

    def _current_encoders(self) -> list["Encoder"]:
        records = self.registry.encoders()
        wanted = [r.name for r in records]
        if not self._encoders or [e.name for e in self._encoders] != wanted and wanted:
            self._encoders = self._load_encoders(records)
        return self._encoders

    def _load_encoders(self, records) -> list["Encoder"]:
        from speakerid.encoders import RunEncoder, encoder_from_spec, load_encoder

        base_record = next((r for r in records if r.role != ADAPTED), None)
        if self.model is None:
            base = load_encoder(None, self.device) if base_record is None else encoder_from_spec(base_record.spec, self.device)
            if base_record is not None and base.name != base_record.name:
                raise RegistryError(f"{self.registry.path} was enrolled with {base_record.name}, which this speakerid replaced "
                                    f"with {base.name}; re-embed its stored audio with `speakerid upgrade-registry "
                                    f"{self.registry.path}`, then calibrate again")
        else:
            base = load_encoder(self.model, self.device)
            if base_record is not None and base.name != base_record.name:
                raise RegistryError(f"{self.registry.path} was enrolled with the encoder {base_record.name}, not {base.name} "
                                    f"({self.model}); leave out the model to use the registry's own")
        if self._encoders and self._encoders[0].name == base.name:
            base = self._encoders[0]  # keep the loaded one
        loaded = [base]
        for record in records:
            if record.role == ADAPTED:
                weights = self.registry.encoder_weights(record.name)
                loaded.append(RunEncoder.from_bytes(weights, record.config, self.registry.path, self.device))
        return loaded

    def embed(self, audios: Sequence[np.ndarray], names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Every encoder's (n, dim) embeddings of float32 16-kHz recordings: encoder name -> embeddings."""
        return {encoder.name: encoder.embed_many(audios, names) for encoder in self.encoders}

    # ------------------------------------------------------------ references

    def _snapshot(self) -> _References:
        """The references as of now: reused while the registry's generation stays, else brought up to date."""
        with self._lock:
            generation = self.registry.generation()
            cached = self._references
            if cached is not None and cached.generation == generation:
                return cached
            encoders = tuple(e.name for e in self._current_encoders())
            if cached is None or cached.encoders != encoders:
                cached = None
            generation, changed_ids, changed_names, changed, count = self.registry.references(
                -1 if cached is None else cached.generation)
            if cached is None or not len(cached.ids):
                ids, names, matrices = changed_ids, changed_names, [changed.get(e, np.zeros((0, 0), np.float32)) for e in encoders]
            else:
                ids, names, matrices = list(cached.ids), list(cached.names), list(cached.matrices)
                row = {speaker_id: i for i, speaker_id in enumerate(ids)}
                fresh = [i for i, speaker_id in enumerate(changed_ids) if speaker_id not in row]
                if fresh:  # a new array, so that readers of the old snapshot keep theirs
                    ids += [changed_ids[i] for i in fresh]
                    names += [changed_names[i] for i in fresh]
                    matrices = [np.concatenate([m, changed[e][fresh]]) for m, e in zip(matrices, encoders)]
                updated = [(row[speaker_id], i) for i, speaker_id in enumerate(changed_ids) if speaker_id in row]
                if updated:  # renamed, or enrolled again
                    if not fresh:
                        matrices = [m.copy() for m in matrices]
                    for at, i in updated:
                        names[at] = changed_names[i]
                        for k, e in enumerate(encoders):
                            matrices[k][at] = changed[e][i]
            if len(ids) != count:  # speakers were removed (or are caught between adapt's steps)
                present = self.registry.speaker_ids()
                keep = np.array([i in present for i in ids], dtype=bool)
                ids = [i for i, k in zip(ids, keep) if k]
                names = [n for n, k in zip(names, keep) if k]
                matrices = [m[keep] for m in matrices]
            scoring = scoring_for(self.registry.scoring, encoders)
            self._references = _References(generation, encoders, ids, names, matrices, scoring)
            return self._references

    def reference_matrices(self) -> tuple[list[str], list[np.ndarray]]:
        """The enrolled speakers' names and, per encoder (base first), their (speakers, dim) references."""
        refs = self._snapshot()
        return refs.names, refs.matrices

    @property
    def scoring(self) -> Scoring:
        """How this registry's scores become decisions, as of now."""
        return self._snapshot().scoring

    # ------------------------------------------------------------ enroll

    def enroll(self, name: str, files: list[Path], replace: bool = False) -> EnrollResult:
        """Enroll `name` from audio files; a file that cannot be read or embedded is reported, not fatal.

        Files whose content is already enrolled for this speaker are skipped without decoding.
        `replace` drops the speaker's previous recordings, once at least one new file embedded.
        """
        return self._enroll({check_name(name): [Path(f) for f in files]}, replace, advance=lambda n=1: None)[0]

    def enroll_folder(self, data_dir: str | Path, replace: bool = False, progress: bool = True) -> list[EnrollResult]:
        """Enroll every speaker folder of `data_dir` (`DATA_DIR/<speaker>/**/<audio>`) under the folder's name.

        Audio files lying directly in `data_dir` belong to no speaker and are left out.
        """
        from speakerid.progress import progress_bar

        sources, rejected = scan(data_dir)
        by_speaker: dict[str, list[Path]] = {}
        for source in sources:
            by_speaker.setdefault(source.speaker, []).append(source.path)
        results = [EnrollResult(Path(r.path).name, failed=[(r.path, r.reason)]) for r in rejected if Path(r.path).is_dir()]
        valid: dict[str, list[Path]] = {}
        for speaker, files in sorted(by_speaker.items()):
            try:
                valid[check_name(speaker)] = files
            except RegistryError as err:
                results.append(EnrollResult(speaker, failed=[(str(files[0].parent), str(err))]))
        with progress_bar("enrolling", total=len(sources), enabled=progress) as advance:
            advance(sum(len(files) for s, files in by_speaker.items() if s not in valid))
            results += self._enroll(valid, replace, advance)
        return sorted(results, key=lambda r: r.speaker)

    def enroll_audio(self, name: str, audio: np.ndarray, source_name: str, sha256: str,
                     replace: bool = False) -> EnrollResult:
        """Enroll `name` from decoded audio (an upload): float32 mono at 16 kHz, with its file's SHA-256."""
        name = check_name(name)
        result = EnrollResult(name)
        if not replace and sha256 in self.registry.enrolled_hashes(name):
            result.skipped.append(source_name)
        else:
            self._store(name, [(sha256, source_name, audio)], replace, result)
        result.recordings = self.registry.recording_count(name)
        return result

    def _enroll(self, by_speaker: dict[str, list[Path]], replace: bool, advance) -> list[EnrollResult]:
        """Enroll each speaker's files: decoding in threads overlapped with batched embedding by the base
        encoder (`speakerid.embedding.embed_files`), the other encoders on the decoded audio; each
        speaker's recordings are added in one transaction once all of its files are done."""
        from speakerid.audio import to_int16
        from speakerid.embedding import embed_files
        from speakerid.encoders import MIN_SECONDS
        from speakerid.identify import require_speech

        encoders = self.encoders
        owners = [(name, path) for name, files in by_speaker.items() for path in files]
        enrolled = {name: set() if replace else self.registry.enrolled_hashes(name) for name in by_speaker}
        results = {name: EnrollResult(name) for name in by_speaker}
        pending: dict[str, list[Enrollment]] = {name: [] for name in by_speaker}
        left = {name: len(files) for name, files in by_speaker.items()}

        def finish(name: str) -> None:
            if pending[name]:
                results[name].added = self.registry.add(name, pending[name], encoders[0], replace)
            results[name].recordings = self.registry.recording_count(name)

        for name in [n for n, count in left.items() if count == 0]:
            finish(name)
        skip = lambda index, sha256: sha256 in enrolled[owners[index][0]]
        for (name, path), found in zip(owners, embed_files(encoders[0], [p for _, p in owners], skip=skip, keep_audio=True)):
            result = results[name]
            if found.skipped:
                result.skipped.append(str(path))
            elif found.vector is None:
                result.failed += [(file, reason) for file, reason in found.failed]
            else:
                vectors = {encoders[0].name: found.vector}
                try:
                    require_speech(found.audio, SAMPLE_RATE, str(path), MIN_SECONDS)  # noise is no voice to enroll
                    vectors.update((e.name, e.embed(found.audio, str(path))) for e in encoders[1:])
                except AudioError as err:
                    result.failed.append((str(path), err.reason))
                else:
                    pending[name].append(Enrollment(found.sha256, path.name, to_int16(found.audio), vectors))
            advance()
            left[name] -= 1
            if left[name] == 0:
                finish(name)
        return [results[name] for name in by_speaker]

    def _store(self, name: str, items: list[tuple[str, str, np.ndarray]], replace: bool, result: EnrollResult,
               labels: list[str] | None = None) -> None:
        """Embed (sha256, source name, float32 audio) items with every encoder and add those that embed."""
        from speakerid.audio import to_int16
        from speakerid.encoders import MIN_SECONDS
        from speakerid.identify import require_speech

        labels = labels or [source for _, source, _ in items]
        encoders = self.encoders
        good: list[Enrollment] = []
        for (sha256, source, audio), label in zip(items, labels):
            try:
                require_speech(audio, SAMPLE_RATE, label, MIN_SECONDS)  # noise is no voice to enroll
                vectors = {e.name: e.embed(audio, label) for e in encoders}
            except AudioError as err:
                result.failed.append((label, err.reason))
                continue
            good.append(Enrollment(sha256, source, to_int16(audio), vectors))
        if good:
            result.added = self.registry.add(name, good, encoders[0], replace)

    # ------------------------------------------------------------ identify and verify

    def score(self, audios: Sequence[np.ndarray], names: Sequence[str] | None = None) -> Scores:
        """Float32 16-kHz recordings scored against every enrolled speaker, by every encoder and fused."""
        return self.score_embeddings(self.embed(audios, names))

    def score_embeddings(self, embedded: dict[str, np.ndarray]) -> Scores:
        """Embeddings (encoder name -> (n, dim), as `embed` returns them) scored against every enrolled speaker."""
        refs = self._snapshot()
        if not refs.names:
            raise RegistryError(f"{self.registry.path} has no enrolled speakers; enroll some first (speakerid enroll)")
        if tuple(embedded) != refs.encoders:
            raise RegistryError(f"{self.registry.path}: its encoders changed (adapt finished?) while scoring; try again")
        cosines = np.stack([embedded[e] @ m.T for e, m in zip(refs.encoders, refs.matrices)], axis=-1)
        return Scores(refs.names, refs.scoring.fusion.fuse(cosines), cosines, list(refs.encoders), refs.scoring)

    def identify(self, audio: str | Path | np.ndarray, top_k: int = 3, threshold: float | None = None) -> OpenSetAnswer:
        """The enrolled speaker whose references score highest against a recording, or "unknown" under the threshold.

        `audio` is a file, or float32 mono samples at 16 kHz. A recording in which the voice
        detector hears no speech is refused (AudioError), not answered. Each encoder averages a
        long recording's chunks into one embedding, which is scored against every reference.
        """
        from speakerid.encoders import MIN_SECONDS
        from speakerid.identify import require_speech

        samples, label = _input(audio)
        require_speech(samples, SAMPLE_RATE, label, MIN_SECONDS)  # non-speech is refused, not answered "unknown"
        return self.rank(self.embed([samples], [label]), len(samples) / SAMPLE_RATE, top_k, threshold)

    def rank(self, embedded: dict[str, np.ndarray], seconds: float, top_k: int = 3,
             threshold: float | None = None) -> OpenSetAnswer:
        """The open-set answer for the embeddings (encoder name -> (1, dim)) of one recording `seconds` long."""
        refs = self._snapshot()
        if not refs.names:
            raise RegistryError(f"{self.registry.path} has no enrolled speakers; enroll some first (speakerid enroll)")
        if tuple(embedded) != refs.encoders:
            raise RegistryError(f"{self.registry.path}: its encoders changed (adapt finished?) while scoring; try again")
        candidates = refs.candidates(embedded)
        cosines = np.stack([m[candidates] @ embedded[e][0] for e, m in zip(refs.encoders, refs.matrices)], axis=-1)
        fused = refs.scoring.fusion.fuse(cosines)
        k = min(max(1, top_k), len(fused))
        order = np.argsort(-fused, kind="stable")[:k]
        score = float(refs.scoring.identification(fused[None])[1][0])
        decision = refs.scoring.decision("identify", threshold, self.encoder.default_threshold, seconds)
        known = decision.accepts(score)
        return OpenSetAnswer(
            speaker=UNKNOWN if known is False else refs.names[candidates[order[0]]], score=score, known=known,
            threshold=decision.value, threshold_source=decision.source, encoders=list(refs.encoders),
            ranking=[(refs.names[candidates[i]], float(fused[i]), dict(zip(refs.encoders, map(float, cosines[i]))))
                     for i in order],
            seconds=seconds,
        )

    def verify(self, a: str | Path | np.ndarray, b: str | Path | np.ndarray, threshold: float | None = None) -> Verification:
        """Whether two recordings share a speaker, judged with the registry's encoders and verification threshold."""
        (audio_a, label_a), (audio_b, label_b) = _input(a), _input(b)
        scoring = self.scoring
        embedded = self.embed([audio_a, audio_b], [label_a, label_b])
        cosines = np.array([float(v[0] @ v[1]) for v in embedded.values()])
        fused = float(scoring.fusion.fuse(cosines)) if tuple(embedded) == scoring.fusion.encoders else float(cosines[0])
        seconds = min(len(audio_a), len(audio_b)) / SAMPLE_RATE
        decision = scoring.decision("verify", threshold, self.encoder.default_threshold, seconds)
        return Verification(fused, decision.accepts(fused), decision.value, decision.source, dict(zip(embedded, cosines)))

    # ------------------------------------------------------------ passthroughs

    def speakers(self) -> list[dict]:
        return self.registry.speakers()

    def rename(self, old: str, new: str) -> None:
        self.registry.rename(old, new)

    def remove(self, name: str) -> None:
        self.registry.remove(name)

    def close(self) -> None:
        self.registry.close()


def _input(audio: str | Path | np.ndarray) -> tuple[np.ndarray, str]:
    """(float32 16-kHz samples, a label for errors) of a file or of samples."""
    if isinstance(audio, np.ndarray):
        return audio, "<audio>"
    return load_audio(audio), str(audio)


def verify(a: str | Path | np.ndarray, b: str | Path | np.ndarray, model: str | Path | None = None,
           registry: str | Path | None = None, threshold: float | None = None, device: str = "auto") -> Verification:
    """Whether two recordings share a speaker.

    With a registry, its encoders and verification threshold are used; without one, `model` (or
    GE2E) and that encoder's default threshold, reported as "default (uncalibrated)".
    """
    if registry is not None:
        voices = VoiceRegistry(registry, model, device, create=False)
        try:
            return voices.verify(a, b, threshold)
        finally:
            voices.close()
    from speakerid.encoders import load_encoder

    encoder = load_encoder(model, device)
    (audio_a, label_a), (audio_b, label_b) = _input(a), _input(b)
    vectors = encoder.embed_many([audio_a, audio_b], [label_a, label_b])
    score = float(vectors[0] @ vectors[1])
    decision = scoring_for(None, [encoder.name]).decision("verify", threshold, encoder.default_threshold)  # one default: no length
    return Verification(score, decision.accepts(score), decision.value, decision.source, {encoder.name: score})
