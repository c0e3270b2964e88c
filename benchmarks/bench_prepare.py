"""How long does it take to go from speaker folders to MFCCs of every chunk?

Contenders, side by side in one run, each in its own process (so its peak memory is its own):

  original   the student report's recipe: pydub `make_chunks` + a WAV export of every chunk,
             `librosa.feature.mfcc` per chunk, a matplotlib `specshow` JPG per chunk; each chunk
             read back with `librosa.load(chunk)`, which resamples to librosa's default 22050 Hz
  original, native rate   the same, read back with `librosa.load(chunk, sr=None)`: no resampling
  speakerid  `speakerid.prepare` (decode once into a cache, chunk views, split) + the MFCC
             frontend over every chunk, in batches
  speakerid + images jpg / png   `prepare` + `export-images` (what the original's JPGs are for):
             pictures made in batches and encoded in threads, one per core
  ... 1 worker               the same in one thread (what export-images did before)
  ... processes              the same work in a process pool instead of threads (one per core)

Data: ../shared/data/dsp20 (20 speakers x 5 FLAC takes, 68 min), and with --scale a synthetic
corpus of the seed's size (50 speakers x 60 one-minute WAV files = 50 h, generated once into
benchmarks/.cache and reused). At that scale the original recipe runs on --sample files and is
quoted per audio-hour. Favouring the original: librosa's numba compilation is warmed up outside
the clock, and FLAC is decoded with libsndfile (the recipe's pydub would need ffmpeg, slower).

    python benchmarks/bench_prepare.py                 # dsp20, 3 repeats
    python benchmarks/bench_prepare.py --scale         # and the 50-hour corpus
    python benchmarks/bench_prepare.py --contenders original,images-jpg,images-png,images-jpg-1,images-jpg-proc
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DSP20 = HERE.parent.parent / "shared" / "data" / "dsp20"
SEED_CORPUS = HERE / ".cache" / "seed50"
CHUNK_SECONDS = 3.0


def audio_files(data: Path) -> list[Path]:
    return sorted(p for p in data.glob("*/*") if p.suffix.lower() in (".wav", ".flac"))


# ---------------------------------------------------------------- contenders (run in a child process)


def run_original(files: list[Path], work: Path, native_rate: bool) -> dict:
    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import soundfile as sf
    from pydub import AudioSegment
    from pydub.utils import make_chunks

    def warm_up():  # numba compiles on the first call: keep that out of the clock
        y = np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32)
        fig = plt.figure(figsize=(3, 3))
        librosa.display.specshow(librosa.feature.mfcc(y=y, sr=16000, n_mfcc=40))
        plt.close(fig)

    def segment(path: Path) -> AudioSegment:
        if path.suffix.lower() == ".wav":
            return AudioSegment.from_wav(path)
        samples, rate = sf.read(path, dtype="int16")
        return AudioSegment(samples.tobytes(), sample_width=2, frame_rate=rate, channels=1)

    warm_up()
    started = time.perf_counter()
    audio_seconds, chunks = 0.0, 0
    for i, path in enumerate(files):
        audio = segment(path)
        audio_seconds += audio.duration_seconds
        folder = work / path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        for k, chunk in enumerate(make_chunks(audio, int(CHUNK_SECONDS * 1000))):
            wav = folder / f"{path.stem}_{i}_chunk{k}.wav"
            chunk.export(wav, format="wav")
            y, sr = librosa.load(wav, sr=None) if native_rate else librosa.load(wav)
            mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40)
            fig = plt.figure(figsize=(3, 3))
            librosa.display.specshow(mfcc)
            plt.axis("off")
            fig.savefig(wav.with_suffix(".jpg"), dpi=100)
            plt.close(fig)
            chunks += 1
    return {"seconds": time.perf_counter() - started, "audio_seconds": audio_seconds, "chunks": chunks}


def same_work():
    """prepare's settings for the work the original recipe does: chunks, no voice screening (its
    cost has its own benchmark, bench_screening.py)."""
    from speakerid.corpus import PrepareConfig

    return PrepareConfig(chunk_seconds=CHUNK_SECONDS, speech_check=False)


def run_speakerid(data: Path, work: Path) -> dict:
    import numpy as np
    import torch

    from speakerid.corpus import Corpus, prepare
    from speakerid.features import FeatureConfig, build_frontend

    frontend = build_frontend(FeatureConfig())
    started = time.perf_counter()
    result = prepare(data, work / "corpus", same_work(), progress=False)
    prepared = time.perf_counter() - started
    corpus = Corpus.open(work / "corpus")
    n = len(corpus.chunk_label)
    frames = 0
    with torch.inference_mode():
        for first in range(0, n, 256):
            batch = np.stack([corpus.chunk_audio(i) for i in range(first, min(n, first + 256))])
            frames += frontend(torch.from_numpy(batch)).shape[-1] * len(batch)
    return {"seconds": time.perf_counter() - started, "prepare_seconds": prepared,
            "audio_seconds": result.summary["minutes"] * 60, "chunks": n, "mfcc_frames": frames}


def run_images(data: Path, work: Path, image_format: str, workers: int | None, processes: bool) -> dict:
    from concurrent.futures import ProcessPoolExecutor

    from speakerid.corpus import Corpus, prepare
    from speakerid.export import _plan, export_images

    started = time.perf_counter()
    result = prepare(data, work / "corpus", same_work(), progress=False)
    prepared = time.perf_counter() - started
    corpus = Corpus.open(work / "corpus")
    if processes:
        todo = _plan(corpus, work / "images", image_format, None)
        batches = [todo[first : first + 32] for first in range(0, len(todo), 32)]
        cores = os.cpu_count() or 1
        with ProcessPoolExecutor(cores) as pool:  # forked before torch ran anything: safe
            written = sum(pool.map(_image_batches, [(str(corpus.path), batches[k::cores], image_format) for k in range(cores)]))
    else:
        written = export_images(corpus, work / "images", image_format=image_format, workers=workers, progress=False)
    return {"seconds": time.perf_counter() - started, "prepare_seconds": prepared,
            "audio_seconds": result.summary["minutes"] * 60, "chunks": written}


def _image_batches(job) -> int:
    """One worker process of the process-pool contender: its share of the batches, one torch thread."""
    import torch

    from speakerid.corpus import Corpus
    from speakerid.export import _write_images
    from speakerid.features import FeatureConfig, MfccImage

    torch.set_num_threads(1)
    path, batches, image_format = job
    corpus, to_image = Corpus.open(path), MfccImage(FeatureConfig(), size=300)
    return sum(_write_images(corpus, to_image, batch, image_format) for batch in batches)


def child(args) -> None:
    work = Path(args.work)
    if args.contender.startswith("original"):
        files = [Path(f) for f in json.loads(Path(args.files).read_text())]
        out = run_original(files, work, native_rate=args.contender == "original-native")
    elif args.contender.startswith("images-"):
        _, image_format, *variant = args.contender.split("-")
        out = run_images(Path(args.data), work, image_format, 1 if variant == ["1"] else None, variant == ["proc"])
    else:
        out = run_speakerid(Path(args.data), work)
    print(json.dumps(out))


# ---------------------------------------------------------------- the parent: run, measure, tabulate


def measure(contender: str, data: Path, files: list[Path]) -> dict:
    """Run one contender in a fresh process; adds its peak resident memory (MiB)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{contender}-", dir=HERE / ".cache") as tmp:
        listing = Path(tmp) / "files.json"
        listing.write_text(json.dumps([str(f) for f in files]))
        command = [sys.executable, __file__, "--child", contender, "--data", str(data), "--files", str(listing),
                   "--work", str(Path(tmp) / "work")]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        if status != 0:
            raise SystemExit(f"{contender} failed (status {status})")
        result = json.loads(output.strip().splitlines()[-1])
        result["peak_mib"] = usage.ru_maxrss / 1024
        return result


def seed_corpus() -> Path:
    from speakerid.synth import synthesize

    if not (SEED_CORPUS / "done").exists():
        print(f"generating the seed-scale corpus (50 speakers x 60 one-minute files) in {SEED_CORPUS} ...", flush=True)
        synthesize(SEED_CORPUS / "voices", speakers=50, minutes=60, recording_seconds=60, seed=0, progress=True)
        (SEED_CORPUS / "done").write_text("ok\n")
    return SEED_CORPUS / "voices"


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} cores, {gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads)"


LABELS = {
    "original": "original (librosa.load default 22.05 kHz)",
    "original-native": "original, native rate",
    "speakerid": "speakerid prepare + MFCC",
    "images-jpg": "speakerid prepare + export-images jpg",
    "images-png": "speakerid prepare + export-images png",
    "images-jpg-1": "speakerid prepare + export-images jpg, 1 worker",
    "images-jpg-proc": "speakerid prepare + export-images jpg, processes",
}
DEFAULT_CONTENDERS = "original,original-native,speakerid,images-jpg,images-png"


def bench(name: str, data: Path, sample: int | None, repeat: int, contenders: list[str]) -> list[str]:
    files = audio_files(data)
    original_files = files[:: max(1, len(files) // sample)][:sample] if sample else files
    runs = {c: [] for c in contenders}
    for r in range(repeat):
        for contender in runs:
            result = measure(contender, data, original_files if contender.startswith("original") else files)
            result["per_hour"] = result["seconds"] / (result["audio_seconds"] / 3600)
            runs[contender].append(result)
            print(f"  {name} run {r + 1}/{repeat} {contender}: {result['seconds']:.2f} s for "
                  f"{result['audio_seconds'] / 3600:.3f} h ({result['per_hour']:.2f} s per audio-hour), "
                  f"peak {result['peak_mib']:.0f} MiB", flush=True)
    per_hour = {c: statistics.median(r["per_hour"] for r in rs) for c, rs in runs.items()}
    base = per_hour.get("original", per_hour[contenders[0]])
    rows = []
    for contender, results in runs.items():
        first = results[0]
        extra = ""
        if not contender.startswith("original"):
            prep = statistics.median(r["prepare_seconds"] / (r["audio_seconds"] / 3600) for r in results)
            extra = f" (prepare alone {prep:.2f})"
        rows.append(f"| {name} | {LABELS[contender]} | {len(original_files if contender.startswith('original') else files)} | "
                    f"{first['audio_seconds'] / 3600:.3f} | {first['chunks']} | "
                    f"{statistics.median(r['seconds'] for r in results):.2f} | {per_hour[contender]:.2f}{extra} | "
                    f"{max(r['peak_mib'] for r in results):.0f} | {base / per_hour[contender]:.1f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", action="store_true", help="also run the 50-hour synthetic corpus")
    parser.add_argument("--sample", type=int, default=30, help="files the original recipe runs on at seed scale")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--contenders", default=DEFAULT_CONTENDERS, help=f"comma-separated, from {', '.join(LABELS)}")
    parser.add_argument("--child", choices=tuple(LABELS), dest="contender",
                        help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        return child(args)

    (HERE / ".cache").mkdir(exist_ok=True)
    print(f"machine: {machine()}; {CHUNK_SECONDS:g}-s chunks; medians of {args.repeat} runs")
    contenders = args.contenders.split(",")
    unknown = sorted(set(contenders) - set(LABELS))
    if unknown:
        raise SystemExit(f"unknown contenders {unknown}; choose from {', '.join(LABELS)}")
    rows = bench("dsp20", DSP20, None, args.repeat, contenders)
    if args.scale:
        rows += bench("seed scale (synthetic)", seed_corpus(), args.sample, args.repeat, contenders)
    print("\n| data | contender | files | audio h | chunks | seconds | s per audio-hour | peak MiB | speed vs original |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
