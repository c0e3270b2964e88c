"""Which training recipe makes `adapt` learn the enrolled voices so that fused scores tell them from strangers.

The issue-12 protocol, on real speech. Speakers sorted by name are split with a seed into
enrolled speakers, calibration strangers and test strangers; each enrolled speaker's recordings
(sorted) are split with the seed into enrolled and test recordings:

    so125   100 enrolled (8 sentences enrolled, 4 test), 10 calibration and 15 test strangers
    dsp20   14 enrolled (3 takes enrolled, 2 test), 2 calibration and 4 test strangers;
            probes are the takes cut into 4-s clips (whole takes are too easy to tell apart)

Each recipe trains `speakerid.train` on a corpus of the enrolled recordings only, prepared from
a folder of symbolic links with one recording per speaker as the validation split and no test
split (as `adapt` will). Encoders: GE2E alone, the trained run's embedding layer alone
(`RunEncoder`), and both fused. A speaker's reference is the L2-normalised mean of its enrolled
recordings' embeddings. Fusion z-normalises each encoder's cosine scores with the mean and
standard deviation of its non-target calibration scores and adds them with a weight; weight and
threshold are chosen on calibration data (each enrolled speaker's validation recording, scored
against a reference that leaves it out, and the calibration strangers) to maximise the smaller
of the two open-set rates. Reported on the test data:

    top-1     closed set: test recordings of enrolled speakers named right among all enrolled
    enrolled  open set at the calibrated threshold: enrolled test recordings named right and accepted
    rejected  open set: test strangers' recordings rejected
    EER       pairwise verification over every test probe x reference score
    best balanced  the smaller open-set rate at the threshold best for the test data itself (an
              oracle: what a perfect calibration would give; the gap to the calibrated pair is
              what calibration on ten strangers costs)

Every recipe trains for a fixed number of epochs (no wall-clock budget: the machine is shared);
the training time is reported beside it. Trained runs are cached under benchmarks/.cache/adapt
and reused while their settings are unchanged (--retrain trains again).

    OMP_NUM_THREADS=1 python benchmarks/bench_adapt_recipe.py                  # every recipe, both data sets
    OMP_NUM_THREADS=1 python benchmarks/bench_adapt_recipe.py --data so125 --only cnn-arc --errors

--joins also scores every pair (and larger group) of the recipes run as one encoder, an ensemble:
each recording's embeddings by the members, L2-normalised and side by side (its cosine is the
mean of the members' cosines), fused with GE2E like a single recipe.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from speakerid import rundir
from speakerid.audio import load_audio
from speakerid.augment import STANDARD, AugmentConfig
from speakerid.calibration import eer
from speakerid.corpus import Corpus, PrepareConfig, prepare
from speakerid.encoders import Ge2eEncoder, RunEncoder
from speakerid.features import FeatureConfig
from speakerid.registry import reference
from speakerid.training import TrainConfig, train

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
CACHE = HERE / ".cache" / "adapt"
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Protocol:
    path: Path
    enrolled: int
    calibration: int
    strangers: int
    enroll_per_speaker: int
    clip_seconds: float | None = None  # probes cut into clips of this length; None: whole recordings
    seed: int = 0


PROTOCOLS = {
    "so125": Protocol(DATA / "so125", enrolled=100, calibration=10, strangers=15, enroll_per_speaker=8),
    "dsp20": Protocol(DATA / "dsp20", enrolled=14, calibration=2, strangers=4, enroll_per_speaker=3, clip_seconds=4.0),
}

ROOM = AugmentConfig(noise=0.3, reverb=0.3, gain=0.3)  # what changes the room, not the voice
LIGHT = AugmentConfig(noise=0.2, reverb=0.2, gain=0.2, speed=0.2)
STRONG = STANDARD


@dataclass(frozen=True)
class Recipe:
    config: TrainConfig
    chunk_seconds: float = 3.0  # the adapt corpus's chunks: the windows validation and the encoder use
    hop_seconds: float | None = None
    tail: str = "drop"


LOGMEL = FeatureConfig(kind="logmel", n_mels=64, normalize=True)
ARC = {"head": "arcmargin", "margin_warmup": 10}

RECIPES = {
    # the baseline: a compact CNN, plain cross-entropy, no augmentation
    "cnn-ce": Recipe(TrainConfig(model="cnn", epochs=40, patience=0)),
    "cnn-ce-crop": Recipe(TrainConfig(model="cnn", epochs=40, patience=0, crop=(1.5, 3.0))),
    "cnn-ce-crop-80": Recipe(TrainConfig(model="cnn", epochs=80, patience=0, crop=(1.5, 3.0))),
    "cnn-ce-crop-repeat": Recipe(TrainConfig(model="cnn", epochs=40, patience=0, crop=(1.5, 3.0), crop_short="repeat")),
    # the same with other seeds (initial weights, order, crops): how far one training differs from
    # another, and members to join (--joins)
    "cnn-ce-crop-repeat-seed1": Recipe(TrainConfig(model="cnn", epochs=40, patience=0, crop=(1.5, 3.0), crop_short="repeat",
                                                   seed=1)),
    "cnn-ce-crop-repeat-seed2": Recipe(TrainConfig(model="cnn", epochs=40, patience=0, crop=(1.5, 3.0), crop_short="repeat",
                                                   seed=2)),
    "tdnn-ce-crop-repeat": Recipe(TrainConfig(model="tdnn", epochs=40, patience=0, crop=(1.5, 3.0), crop_short="repeat")),
    "tdnn128-ce-crop-repeat": Recipe(TrainConfig(model="tdnn", options={"channels": 128}, epochs=40, patience=0, crop=(1.5, 3.0),
                                                 crop_short="repeat")),
    "cnn-ce-crop-room": Recipe(TrainConfig(model="cnn", epochs=40, patience=0, crop=(1.5, 3.0), augment=ROOM)),
    "cnn-ce-crop-repeat-80": Recipe(TrainConfig(model="cnn", epochs=80, patience=0, crop=(1.5, 3.0), crop_short="repeat")),
    "cnn-wide-ce-crop-repeat-60": Recipe(TrainConfig(model="cnn", options={"channels": [32, 64, 128, 256], "embedding_dim": 256},
                                                     epochs=60, patience=0, crop=(1.5, 3.0), crop_short="repeat")),
    "cnn-arc-crop-aug-120": Recipe(TrainConfig(model="cnn", epochs=120, patience=0, lr_schedule="cosine", crop=(1.5, 3.0),
                                               augment=STRONG, head="arcmargin", margin_warmup=20)),
    "cnn-ce-crop-light-80": Recipe(TrainConfig(model="cnn", epochs=80, patience=0, lr_schedule="cosine", crop=(1.5, 3.0),
                                               augment=LIGHT)),
    "cnn-arc": Recipe(TrainConfig(model="cnn", epochs=40, patience=0, **ARC)),
    "cnn-arc-crop": Recipe(TrainConfig(model="cnn", epochs=40, patience=0, crop=(1.5, 3.0), **ARC)),
    "cnn-arc-crop-aug": Recipe(TrainConfig(model="cnn", epochs=40, patience=0, crop=(1.5, 3.0), augment=STRONG, **ARC)),
    "cnn-logmel-arc-crop-aug": Recipe(TrainConfig(model="cnn", features=LOGMEL, epochs=40, patience=0, crop=(1.5, 3.0),
                                                  augment=STRONG, **ARC)),
}


@dataclass
class Split:
    enrolled: dict[str, list[Path]] = field(default_factory=dict)  # speaker -> enrolled recordings
    tests: dict[str, list[Path]] = field(default_factory=dict)  # speaker -> test recordings
    calibration: list[Path] = field(default_factory=list)  # calibration strangers' recordings
    strangers: list[Path] = field(default_factory=list)  # test strangers' recordings


def split(protocol: Protocol) -> Split:
    speakers = sorted(p for p in protocol.path.iterdir() if p.is_dir())
    order = [speakers[i] for i in np.random.default_rng(protocol.seed).permutation(len(speakers))]
    enrolled = sorted(order[: protocol.enrolled])
    calibration = sorted(order[protocol.enrolled : protocol.enrolled + protocol.calibration])
    strangers = sorted(order[protocol.enrolled + protocol.calibration :][: protocol.strangers])
    result = Split()
    for number, folder in enumerate(enrolled):
        files = sorted(folder.glob("*.flac"))
        chosen = set(np.random.default_rng([protocol.seed, number]).permutation(len(files))[: protocol.enroll_per_speaker])
        result.enrolled[folder.name] = [f for i, f in enumerate(files) if i in chosen]
        result.tests[folder.name] = [f for i, f in enumerate(files) if i not in chosen]
    result.calibration = [f for folder in calibration for f in sorted(folder.glob("*.flac"))]
    result.strangers = [f for folder in strangers for f in sorted(folder.glob("*.flac"))]
    return result


def adapt_corpus(name: str, data: Split, recipe: Recipe) -> Corpus:
    """The enrolled recordings as `adapt` would write them: one per speaker validates, none tests."""
    links = CACHE / name / "enrolled"
    if not links.exists():
        for speaker, files in data.enrolled.items():
            (links / speaker).mkdir(parents=True)
            for f in files:
                (links / speaker / f.name).symlink_to(f)
    per_speaker = len(next(iter(data.enrolled.values())))
    config = PrepareConfig(chunk_seconds=recipe.chunk_seconds, hop_seconds=recipe.hop_seconds, tail=recipe.tail,
                           val_fraction=1 / per_speaker, test_fraction=0.0)
    out = CACHE / name / f"corpus-{recipe.chunk_seconds:g}-{recipe.hop_seconds}-{recipe.tail}"
    prepare(links, out, config, progress=False)
    return Corpus.open(out)


def trained(name: str, recipe_name: str, corpus: Corpus, recipe: Recipe, retrain: bool) -> Path:
    out = CACHE / name / "runs" / recipe_name
    wanted = recipe.config.to_dict()
    if not retrain and (out / rundir.WEIGHTS_FILE).exists():
        previous = rundir.read_json(out / rundir.CONFIG_FILE, "run configuration")
        settings = {**TrainConfig().to_dict(), **previous["train"]}  # settings added since it ran: their defaults
        if previous.get("result") and settings == wanted and previous["corpus"] == str(corpus.path.resolve()):
            return out
    print(f"  training {recipe_name} on {name} ...", flush=True)
    train(corpus, out, recipe.config, force=True, progress=False)
    return out


def probes(files: list[Path], clip_seconds: float | None) -> tuple[list[str], list[np.ndarray]]:
    """(keys, audio): whole recordings, or their consecutive clips of `clip_seconds`."""
    keys, audio = [], []
    for f in files:
        wave = load_audio(f, SAMPLE_RATE)
        if clip_seconds is None:
            keys.append(str(f))
            audio.append(wave)
            continue
        size = int(clip_seconds * SAMPLE_RATE)
        for k in range(len(wave) // size):
            keys.append(f"{f}#{k}")
            audio.append(wave[k * size : (k + 1) * size])
    return keys, audio


class Embeddings:
    """Every recording and probe of a split embedded by one encoder (GE2E's cached on disk)."""

    def __init__(self, encoder, data: Split, protocol: Protocol, cache: Path | None = None):
        self.vectors: dict[str, np.ndarray] = {}
        if cache is not None and cache.exists():
            stored = np.load(cache)
            self.vectors = dict(zip(stored["keys"].tolist(), stored["vectors"]))
        wanted = [f for files in data.enrolled.values() for f in files]
        groups = [probes(wanted, None)]
        groups.append(probes([f for files in data.tests.values() for f in files] + data.calibration + data.strangers,
                             protocol.clip_seconds))
        for keys, audio in groups:
            missing = [i for i, k in enumerate(keys) if k not in self.vectors]
            for first in range(0, len(missing), 64):
                chunk = missing[first : first + 64]
                vectors = encoder.embed_many([audio[i] for i in chunk], [keys[i] for i in chunk])
                self.vectors.update(zip([keys[i] for i in chunk], vectors))
        if cache is not None:
            np.savez(cache, keys=np.array(list(self.vectors)), vectors=np.stack(list(self.vectors.values())))

    def of(self, keys: list[str]) -> np.ndarray:
        return np.stack([self.vectors[k] for k in keys])


class Joined:
    """Several encoders' embeddings as one ensemble's: each L2-normalised, side by side, over sqrt(count)."""

    def __init__(self, members: list[Embeddings]):
        self.members = members

    def of(self, keys: list[str]) -> np.ndarray:
        parts = [m.of(keys) for m in self.members]
        return np.concatenate([p / np.linalg.norm(p, axis=1, keepdims=True) for p in parts], axis=1) / np.sqrt(len(parts))


@dataclass
class Trials:
    """Probe x reference cosine scores with the probes' true speakers (-1: a stranger)."""

    scores: np.ndarray
    truth: np.ndarray
    keys: list[str]


def trials(emb: Embeddings, data: Split, validation: dict[str, str], protocol: Protocol) -> tuple[Trials, Trials]:
    """(calibration trials, test trials)."""
    speakers = list(data.enrolled)
    refs = np.stack([reference(emb.of([str(f) for f in data.enrolled[s]])) for s in speakers])
    # calibration: each speaker's validation recording against a reference that leaves it out
    cal_keys = [validation[s] for s in speakers]
    cal_scores = emb.of(cal_keys) @ refs.T
    for i, s in enumerate(speakers):
        rest = [str(f) for f in data.enrolled[s] if str(f) != validation[s]]
        cal_scores[i, i] = float(emb.of([validation[s]])[0] @ reference(emb.of(rest)))
    stranger_keys = probes(data.calibration, protocol.clip_seconds)[0]
    cal = Trials(np.concatenate([cal_scores, emb.of(stranger_keys) @ refs.T]),
                 np.array(list(range(len(speakers))) + [-1] * len(stranger_keys)), cal_keys + stranger_keys)
    test_keys, truth = [], []
    for i, s in enumerate(speakers):
        keys = probes(data.tests[s], protocol.clip_seconds)[0]
        test_keys += keys
        truth += [i] * len(keys)
    stranger_keys = probes(data.strangers, protocol.clip_seconds)[0]
    keys = test_keys + stranger_keys
    test = Trials(emb.of(keys) @ refs.T, np.array(truth + [-1] * len(stranger_keys)), keys)
    return cal, test


def znorm(t: Trials, cal: Trials) -> Trials:
    nontarget = cal.scores[np.arange(cal.scores.shape[1])[None, :] != cal.truth[:, None]]
    return Trials((t.scores - nontarget.mean()) / nontarget.std(), t.truth, t.keys)


def open_set(t: Trials, threshold: float) -> tuple[float, float]:
    """(share of enrolled probes named right and accepted, share of strangers rejected)."""
    best, top = t.scores.max(axis=1), t.scores.argmax(axis=1)
    enrolled = t.truth >= 0
    right = ((top == t.truth) & (best >= threshold))[enrolled].mean()
    rejected = (best < threshold)[~enrolled].mean()
    return float(right), float(rejected)


def calibrated_threshold(cal: Trials) -> tuple[float, float]:
    """The threshold that maximises the smaller open-set rate on calibration data (then their mean), and that rate."""
    best = cal.scores.max(axis=1)
    candidates = np.unique(best)
    candidates = np.concatenate([candidates[:1] - 1e-6, (candidates[:-1] + candidates[1:]) / 2, candidates[-1:] + 1e-6])
    rated = [(min(r), sum(r), th) for th in candidates for r in [open_set(cal, th)]]
    low, _, threshold = max(rated)
    return float(threshold), low


def fuse(a: Trials, b: Trials, weight: float) -> Trials:
    return Trials(weight * a.scores + (1 - weight) * b.scores, a.truth, a.keys)


def report(t: Trials, threshold: float) -> dict:
    enrolled = t.truth >= 0
    top1 = float((t.scores.argmax(axis=1) == t.truth)[enrolled].mean())
    right, rejected = open_set(t, threshold)
    target = t.scores[np.flatnonzero(enrolled), t.truth[enrolled]]
    mask = np.ones_like(t.scores, dtype=bool)
    mask[np.flatnonzero(enrolled), t.truth[enrolled]] = False
    return {"top1": top1, "enrolled": right, "rejected": rejected, "eer": eer(target, t.scores[mask])[0],
            "best": calibrated_threshold(t)[1]}


def evaluate(ge2e: tuple[Trials, Trials], run: tuple[Trials, Trials]) -> dict[str, dict]:
    """Metrics of GE2E alone, the run alone and fused, with weights and thresholds from calibration."""
    cal_g, test_g = znorm(ge2e[0], ge2e[0]), znorm(ge2e[1], ge2e[0])
    cal_r, test_r = znorm(run[0], run[0]), znorm(run[1], run[0])
    results = {}
    for name, cal, test, weight in (("ge2e", cal_g, test_g, 1.0), ("adapted", cal_r, test_r, 0.0)):
        threshold, _ = calibrated_threshold(cal)
        results[name] = report(test, threshold) | {"weight": weight}
    choices = []
    for weight in np.round(np.arange(0.0, 1.0001, 0.05), 2):
        threshold, low = calibrated_threshold(fuse(cal_g, cal_r, weight))
        choices.append((low, -abs(weight - 0.5), weight, threshold))
    _, _, weight, threshold = max(choices)
    fused = fuse(test_g, test_r, weight)
    results["fused"] = report(fused, threshold) | {"weight": float(weight), "threshold": threshold, "test": fused}
    return results


def validation_recordings(corpus: Corpus, data: Split) -> dict[str, str]:
    """Each speaker's validation recording (as a key of its source file)."""
    chosen = {}
    for index in corpus.split_indices("validation"):
        recording = corpus.recording_ids[corpus.chunk_recording[index]]
        speaker, name = recording.split("/", 1)
        chosen[speaker] = str(next(f for f in data.enrolled[speaker] if f.name == name))
    return chosen


def median_f0(wave: np.ndarray) -> float:
    """A rough median pitch (Hz) over voiced 40-ms frames, by autocorrelation (60-500 Hz)."""
    size, values = 640, []
    for start in range(0, len(wave) - size, size // 2):
        frame = wave[start : start + size] - wave[start : start + size].mean()
        if np.sqrt(np.mean(frame**2)) < 0.01:
            continue
        ac = np.correlate(frame, frame, "full")[size - 1 :]
        low, high = SAMPLE_RATE // 500, SAMPLE_RATE // 60
        lag = low + int(np.argmax(ac[low:high]))
        if ac[lag] > 0.5 * ac[0]:
            values.append(SAMPLE_RATE / lag)
    return float(np.median(values)) if values else float("nan")


def errors(name: str, data: Split, fused: Trials) -> None:
    """Where the fused system errs at its calibrated threshold: speakers, pitch, duration."""
    speakers = list(data.enrolled)
    pitch = {}
    for folder in sorted({Path(k.split("#")[0]).parent for k in fused.keys}):
        pitch[folder.name] = np.nanmedian([median_f0(load_audio(f, SAMPLE_RATE)) for f in sorted(folder.glob("*.flac"))[:4]])
    seconds = {k: len(load_audio(k.split("#")[0], SAMPLE_RATE)) / SAMPLE_RATE for k in fused.keys}
    threshold = fused.threshold
    best, top = fused.scores.max(axis=1), fused.scores.argmax(axis=1)
    enrolled = fused.truth >= 0
    wrong = enrolled & ((top != fused.truth) | (best < threshold))
    print(f"\nErrors of the fused system on {name} (threshold {threshold:.2f}):")
    print("| probe | speaker | pitch Hz | seconds | answer | score |")
    print("|---|---|---:|---:|---|---:|")
    for i in np.flatnonzero(wrong):
        s = speakers[fused.truth[i]]
        answer = "rejected" if best[i] < threshold else speakers[top[i]]
        print(f"| {Path(fused.keys[i]).name} | {s} | {pitch[s]:.0f} | {seconds[fused.keys[i]]:.1f} | {answer} | {best[i]:.2f} |")
    let_in = ~enrolled & (best >= threshold)
    print("\nStrangers let in:")
    print("| probe | stranger | pitch Hz | seconds | taken for | score |")
    print("|---|---|---:|---:|---|---:|")
    for i in np.flatnonzero(let_in):
        key = fused.keys[i]
        who = Path(key.split("#")[0]).parent.name
        print(f"| {Path(key).name} | {who} | {pitch[who]:.0f} | {seconds[key]:.1f} | {speakers[top[i]]} | {best[i]:.2f} |")
    high = np.array([pitch[s] >= 250 for s in speakers])
    per_probe_high = high[fused.truth[enrolled]]
    miss = wrong[enrolled]
    short = np.array([seconds[k] < 3.0 for k, e in zip(fused.keys, enrolled) if e])
    print(f"\nEnrolled probes wrong: {miss.sum()} of {enrolled.sum()}; speakers with pitch >= 250 Hz (children, mostly): "
          f"{miss[per_probe_high].sum()} of {per_probe_high.sum()}, others {miss[~per_probe_high].sum()} of {(~per_probe_high).sum()}; "
          f"probes under 3 s: {miss[short].sum()} of {short.sum()}, others {miss[~short].sum()} of {(~short).sum()}")


def augmentation_cost(repeat: int = 3, steps: int = 10) -> None:
    """Seconds per training step of a cnn (batch 32 x 3 s), without and with each augmentation set (median of `repeat`)."""
    import statistics

    from speakerid.augment import Augmentation, step_generator
    from speakerid.models import build_model

    waves = torch.from_numpy(np.stack([(load_audio(f, SAMPLE_RATE)[: 3 * SAMPLE_RATE] * 32767).astype(np.int16)
                                       for f in sorted((DATA / "dsp20").glob("*/take0[12].flac"))[:32]]))
    labels = torch.arange(32) % 20
    print(f"\nAugmentation cost: one cnn training step on 32 x 3 s (median of {repeat} x {steps} steps)\n")
    print("| augmentation | augment ms | step ms | vs none |")
    print("|---|---:|---:|---:|")
    base = None
    for name, config in (("none", AugmentConfig()), ("light", LIGHT), ("standard", STANDARD)):
        torch.manual_seed(0)
        model = build_model("cnn", 20, FeatureConfig())
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        augmentation = Augmentation(config, SAMPLE_RATE)
        augment_ms, step_ms = [], []
        for _ in range(repeat):
            spent, began = 0.0, time.perf_counter()
            for step in range(steps):
                generator = step_generator(0, 1, step)
                started = time.perf_counter()
                batch = augmentation.waves(waves, generator)
                masks = (lambda f, g=generator: augmentation.features(f, g)) if augmentation.on_features else None
                spent += time.perf_counter() - started
                loss = torch.nn.functional.cross_entropy(model(batch, labels, masks), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            augment_ms.append(1000 * spent / steps)
            step_ms.append(1000 * (time.perf_counter() - began) / steps)
        step = statistics.median(step_ms)
        base = base or step
        print(f"| {name} | {statistics.median(augment_ms):.0f} | {step:.0f} | {step / base:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", choices=list(PROTOCOLS), default=list(PROTOCOLS))
    parser.add_argument("--only", nargs="+", choices=list(RECIPES), help="recipes to run (default: all)")
    parser.add_argument("--retrain", action="store_true", help="train again even where a cached run matches")
    parser.add_argument("--errors", action="store_true", help="list the fused system's errors (last recipe)")
    parser.add_argument("--joins", action="store_true", help="also score every group of two or more recipes as one encoder")
    parser.add_argument("--aug-cost", action="store_true", help="only measure what augmentation costs per step")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), {gpu}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s)")
    if args.aug_cost:
        augmentation_cost()
        return

    for name in args.data:
        protocol = PROTOCOLS[name]
        data = split(protocol)
        (CACHE / name).mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        pretrained = Ge2eEncoder("cpu")
        ge2e = Embeddings(pretrained, data, protocol, CACHE / name / f"{pretrained.name.replace('/', '_')}.npz")
        print(f"{name}: GE2E embeddings ready ({time.perf_counter() - started:.0f} s)", flush=True)
        rows = []
        last = None
        runs: dict[str, Embeddings] = {}
        for recipe_name in args.only or list(RECIPES):
            recipe = RECIPES[recipe_name]
            corpus = adapt_corpus(name, data, recipe)
            validation = validation_recordings(corpus, data)
            run = trained(name, recipe_name, corpus, recipe, args.retrain)
            result = rundir.read_json(run / rundir.CONFIG_FILE, "run configuration")["result"]
            started = time.perf_counter()
            adapted = Embeddings(RunEncoder.from_dir(run, "cpu"), data, protocol)
            embed_seconds = time.perf_counter() - started
            runs[recipe_name] = adapted
            metrics = evaluate(trials(ge2e, data, validation, protocol), trials(adapted, data, validation, protocol))
            rows.append((recipe_name, result, embed_seconds, metrics))
            last = metrics["fused"]
            print(f"  {recipe_name}: fused {metrics['fused']['enrolled']:.1%} / {metrics['fused']['rejected']:.1%}", flush=True)
        if args.joins:
            for size in range(2, len(runs) + 1):
                for group in itertools.combinations(runs, size):
                    metrics = evaluate(trials(ge2e, data, validation, protocol),
                                       trials(Joined([runs[r] for r in group]), data, validation, protocol))
                    rows.append((" + ".join(group), None, None, metrics))
        print(f"\n{name}: {protocol.enrolled} enrolled x {protocol.enroll_per_speaker} recordings, "
              f"{protocol.calibration} calibration and {protocol.strangers} test strangers"
              + (f", probes cut into {protocol.clip_seconds:g}-s clips" if protocol.clip_seconds else "") + "\n")
        print("| recipe | encoder | top-1 | enrolled named | strangers rejected | EER | best balanced | GE2E weight | epochs (best) | train time | embed time |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        if rows:
            g = rows[0][3]["ge2e"]
            print(f"| - | ge2e | {g['top1']:.1%} | {g['enrolled']:.1%} | {g['rejected']:.1%} | {g['eer']:.1%} | {g['best']:.1%} | 1.00 | | | |")
        for recipe_name, result, embed_seconds, metrics in rows:
            for encoder in ("adapted", "fused"):
                m = metrics[encoder]
                extra = (f"{result['epochs_run']} ({result['best_epoch']}) | {result['train_seconds']:.0f} s | {embed_seconds:.0f} s"
                         if encoder == "adapted" and result is not None else " | | ")
                print(f"| {recipe_name} | {encoder} | {m['top1']:.1%} | {m['enrolled']:.1%} | {m['rejected']:.1%} | "
                      f"{m['eer']:.1%} | {m['best']:.1%} | {m['weight']:.2f} | {extra} |")
        if args.errors and last is not None:
            fused = last["test"]
            fused.threshold = last["threshold"]
            errors(name, data, fused)


if __name__ == "__main__":
    main()
