"""adapt: learn the enrolled voices, and score with the pretrained and the adapted encoder together.

`adapt` writes the registry's enrollment audio into an ordinary corpus (one folder per enrolled
speaker; one recording of each speaker that has three or more held out as the validation split),
trains an ordinary speakerid model on it with the recipe of `adapt_training()` (the one fit loop of
`speakerid.training`), embeds every enrolled recording with the trained model's embedding layer,
and installs that model in the registry as its adapted encoder, in one transaction with the new
embeddings, references and a provisional scoring (fusion weights and thresholds measured on the
held-out recordings, with each one doubling as a stranger to the other speakers). `calibrate`
on real strangers then replaces that provisional scoring.

The work lives in a folder beside the registry (`voices.db.adapt/`), locked while it runs: an
interrupted adapt resumes from its last epoch, and until it finishes the registry keeps scoring
with its previous encoders. The folder is removed once the adapted encoder is installed.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from speakerid.errors import RegistryError

__all__ = ["adapt", "AdaptResult", "adapt_training", "MIN_SPEAKER_SECONDS"]

MIN_SPEAKER_SECONDS = 8.0  # enrolled audio a speaker needs to be one of the classes adapt trains on
ADAPT_CHUNK_SECONDS = 3.0
ADAPT_MODELS = ("cnn", "tdnn", "lstm")  # families that embed waveforms from scratch (resnet50 is an ImageNet recipe)
ADAPT_VALIDATION = 0.125  # one recording in eight (at least one, for speakers with three or more)


def adapt_training(**changes):
    """The TrainConfig of adapt's recipe, with `changes` (TrainConfig fields) applied.

    Chosen by benchmarks/bench_adapt_recipe.py, bench_enroll.py and bench_diarize.py on so125 and
    dsp20 (docs/benchmarks.md, "The adapt recipe" and "Open-set identification"): the ECAPA-style
    TDNN at 128 channels with plain cross-entropy on random 1.5-3 s crops (short sentences repeated
    to fill a crop), 40 epochs, and one augmentation: gain, so that a voice's level, which a
    registry's recordings share but other recordings do not, is no cue (GE2E hears one level for
    the same reason). Fused with GE2E this TDNN (measured before the gain was added) named and
    rejected better than the compact CNN on every split, at twice the CNN's training time and less than half the 256-channel
    TDNN's. On a hundred speakers with a minute each, the angular margin and the other
    augmentations (noise, babble, reverberation, speed, masks) each lowered the open-set figures;
    they stay one option away. Another `model` starts from that family's own options.
    """
    from speakerid.augment import AugmentConfig
    from speakerid.training import TrainConfig

    recipe = TrainConfig(model="tdnn", options={"channels": 128}, epochs=40, patience=0, seed=0, crop=(1.5, 3.0),
                         crop_short="repeat", augment=AugmentConfig(gain=0.8, gain_db=(-10.0, 10.0)))
    if changes.get("model", recipe.model) != recipe.model:
        changes.setdefault("options", {})
    return replace(recipe, **changes)


@dataclass
class AdaptResult:
    """What `adapt` did."""

    registry: str
    encoder: str
    speakers: int  # trained on
    left_out: list[tuple[str, str]]  # speakers not trained on, and why
    recordings: int  # embedded
    held_out: int
    epochs: int
    best_epoch: int
    train_seconds: float
    report: dict  # the provisional scoring's figures (see calibration.fit_scoring)
    resumed: bool

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _work_dir(registry: Path) -> Path:
    return registry.with_name(registry.name + ".adapt")


def adapt(registry: str | Path, minutes: float | None = None, epochs: int | None = None, seed: int = 0,
          device: str = "auto", progress: bool = True, recipe: dict | None = None) -> AdaptResult:
    """Train an encoder on the registry's enrolled voices and score with it fused with the base encoder.

    `minutes` caps the training time (it stops after the epoch that passes it), `epochs` the
    number of epochs, `recipe` changes `adapt_training()`'s TrainConfig (head, margin, crop,
    augment, ...). Needs at least two speakers with `MIN_SPEAKER_SECONDS` of enrolled audio
    each; speakers with less are left out of training (and still scored). Refuses while another
    process adapts the same registry.
    """
    from speakerid.voices import VoiceRegistry

    config = adapt_training(**(recipe or {}))  # settings are checked before anything is written
    config = replace(config, seed=seed, device=device, max_minutes=minutes, epochs=epochs or config.epochs)
    if config.model not in ADAPT_MODELS:
        raise RegistryError(f"adapt trains one of {', '.join(ADAPT_MODELS)}, not {config.model!r}")
    registry = Path(registry)
    voices = VoiceRegistry(registry, device=device, create=False)
    work = _work_dir(registry)
    work.mkdir(exist_ok=True)
    lock = open(work / "lock", "w")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RegistryError(f"another `speakerid adapt` is adapting {registry} right now; wait for it to finish") from None
        return _adapt(voices, work, config, progress)
    finally:
        voices.close()
        lock.close()


def _adapt(voices, work: Path, config, progress: bool) -> AdaptResult:
    from speakerid.calibration import Trials, cross_validation_trials, fit_scoring
    from speakerid.corpus import PrepareConfig, prepare
    from speakerid.embedding import embed_stored
    from speakerid.encoders import RunEncoder, adapted_name
    from speakerid.rundir import CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE, read_json
    from speakerid.training import train

    store = voices.registry
    base = voices.encoder  # loads (and checks) the base encoder before any training
    recordings = store.recordings()
    seconds: dict[str, float] = {}
    for r in recordings:
        seconds[r["speaker"]] = seconds.get(r["speaker"], 0.0) + r["seconds"]
    trained = sorted(s for s, total in seconds.items() if total >= MIN_SPEAKER_SECONDS)
    left_out = [(s, f"{total:.1f} s of enrolled audio; adapt needs {MIN_SPEAKER_SECONDS:g} s") for s, total in
                sorted(seconds.items()) if total < MIN_SPEAKER_SECONDS]
    if len(trained) < 2:
        raise RegistryError(f"{store.path}: adapt needs at least 2 speakers with {MIN_SPEAKER_SECONDS:g} s or more of "
                            f"enrolled audio each; {len(trained)} have that much. Enroll more recordings first")

    # The corpus: the enrolled audio as files, named by id (speaker names may hold any character).
    # A changed recipe starts over; a changed time or epoch budget resumes.
    recipe = {k: v for k, v in config.to_dict().items() if k not in ("epochs", "max_minutes", "device", "workers")}
    plan = {"recordings": sorted(r["id"] for r in recordings if r["speaker"] in trained), "training": recipe}
    manifest = work / "manifest.json"
    resumed = manifest.is_file() and json.loads(manifest.read_text()) == plan
    if not resumed:
        for stale in ("data", "corpus", "run"):
            shutil.rmtree(work / stale, ignore_errors=True)
        _write_audio(store, [r for r in recordings if r["speaker"] in trained], work / "data", progress)
        manifest.write_text(json.dumps(plan))
    corpus_config = PrepareConfig(chunk_seconds=ADAPT_CHUNK_SECONDS, val_fraction=ADAPT_VALIDATION, test_fraction=0.0,
                                  seed=config.seed)
    prepare(work / "data", work / "corpus", corpus_config, progress=progress)
    run = work / "run"
    result = train(work / "corpus", run, config, resume=resumed and (run / "checkpoint.pt").is_file(), progress=progress)

    # Embed every enrolled recording (speakers left out of training too) with the adapted encoder.
    weights = (run / WEIGHTS_FILE).read_bytes()
    run_config = {"run": read_json(run / CONFIG_FILE, "run configuration"),
                  "labels": read_json(run / LABELS_FILE, "speaker labels")}
    encoder = RunEncoder.from_bytes(weights, run_config, store.path, config.device)
    held_out = _validation_recordings(work / "corpus")
    while True:
        recordings = store.recordings()
        vectors = embed_stored(store, encoder, recordings, progress)
        base_vectors = store.embeddings(base.name)
        by_speaker: dict[str, list[int]] = {}
        for r in recordings:
            by_speaker.setdefault(r["speaker"], []).append(r["id"])
        names = sorted(by_speaker)
        lengths = {r["id"]: r["seconds"] for r in recordings}
        enrolled, truth, seconds, _ = cross_validation_trials(names, by_speaker, [base_vectors, vectors], held_out, lengths)
        trials = Trials.simulating_strangers([base.name, encoder.name], names, enrolled, np.asarray(truth), seconds,
                                             from_enrollment=True)
        scoring, report = fit_scoring(trials, source="adapt (uncalibrated)")
        report.pop("curve")
        config_record = {**run_config, "held_out": sorted(held_out), "trained_speakers": len(trained),
                         "train": {"epochs": result.epochs_run, "best_epoch": result.best_epoch}}
        missing = store.install_adapted(encoder.name, encoder.spec, encoder.dim, weights, config_record, vectors,
                                        scoring.to_dict())
        if not missing:
            break  # else someone enrolled meanwhile: embed again, with them
    shutil.rmtree(work, ignore_errors=True)
    history = result.history
    return AdaptResult(str(store.path), adapted_name(encoder.spec["sha256"]), len(trained), left_out, len(vectors),
                       len(held_out), result.epochs_run, result.best_epoch,
                       float(history[-1]["seconds"]) if history else 0.0, report, resumed)


def _write_audio(store, recordings: list[dict], folder: Path, progress: bool) -> None:
    """Each recording's stored audio as folder/<speaker id>/<recording id>.wav."""
    from speakerid.audio import write_wav
    from speakerid.progress import progress_bar

    speaker_ids = {name: i for i, name in enumerate(sorted({r["speaker"] for r in recordings}))}
    with progress_bar("writing enrolled audio", total=len(recordings), enabled=progress) as advance:
        for r in recordings:
            target = folder / f"s{speaker_ids[r['speaker']]:06d}" / f"{r['id']}.wav"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_wav(target, store.audio(r["id"]))
            advance()


def _validation_recordings(corpus: Path) -> set[int]:
    """Ids of the recordings the corpus holds out for validation (never trained on)."""
    from speakerid.corpus import Corpus

    opened = Corpus.open(corpus)
    indices = opened.split_indices("validation")
    return {int(Path(opened.recording_ids[r]).stem) for r in set(opened.chunk_recording[indices].tolist())}
