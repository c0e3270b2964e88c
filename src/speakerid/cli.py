"""The `speakerid` command line: parse options, call the public function of the same name, print.

Heavy modules are imported inside the commands so that `speakerid --help` stays fast.
Exit status: 0 done; 1 an error (one line on stderr, no traceback), or every input failed;
2 bad usage; 3 done, but some inputs were rejected or failed (each one reported).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
import typer.main
from typer.core import TyperArgument, TyperOption

from speakerid.errors import SpeakerIdError
from speakerid.threads import INFERENCE_THREADS, TRAIN_THREADS, quiet_openmp, use_threads

if TYPE_CHECKING:
    from speakerid.augment import AugmentConfig

EXIT_ERROR = 1
EXIT_PARTIAL = 3

app = typer.Typer(
    help="Tell who is speaking: prepare corpora, train and evaluate models, identify speakers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from speakerid import __version__

        typer.echo(f"speakerid {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    """Tell who is speaking: prepare corpora, train and evaluate models, identify speakers."""


def _threads(default: int | None, what: str) -> int | None:
    """The --threads option of a command that computes (see speakerid.threads and docs/benchmarks.md)."""
    return typer.Option(default, "--threads", min=1, metavar="N",
                        help=f"Torch threads {what} (default: {default or 'one per core'}).")


def _exit_status(failed: int, total: int) -> None:
    """Exit 1 when every input failed, 3 when some did; return when none did."""
    if failed:
        raise typer.Exit(EXIT_ERROR if failed >= total else EXIT_PARTIAL)


def _report_rejected(rejected, where: Path | None = None, limit: int = 10) -> None:
    """One line per rejected input (file and reason), on stderr."""
    for r in rejected[:limit]:
        typer.secho(f"rejected: {r.path}: {r.reason}", err=True, fg="yellow")
    if len(rejected) > limit:
        typer.secho(f"... and {len(rejected) - limit} more" + (f", all listed in {where}" if where else ""), err=True, fg="yellow")


@app.command()
def prepare(
    data_dir: Path = typer.Argument(..., help="Folder with one sub-folder of recordings per speaker."),
    out: Path = typer.Option(..., "--out", "-o", help="Corpus folder to create (or resume)."),
    chunk: float = typer.Option(3.0, help="Chunk length in seconds (3, 5 or 10 are typical)."),
    hop: Optional[float] = typer.Option(None, help="Seconds between chunk starts; less than --chunk overlaps. Default: --chunk."),
    tail: str = typer.Option("drop", help="End of a recording shorter than a chunk: 'drop' or 'pad' (zeros)."),
    short: str = typer.Option("pad", help="Recordings shorter than one chunk: 'pad' to one chunk, or 'reject'."),
    val: float = typer.Option(0.2, help="Fraction of each speaker's recordings for validation."),
    test: float = typer.Option(0.2, help="Fraction of each speaker's recordings for test."),
    seed: int = typer.Option(0, help="Seed of the split."),
    speech_check: bool = typer.Option(True, "--speech-check/--no-speech-check",
                                      help="Find the speech in every recording with the voice detector (slower)."),
    min_speech: float = typer.Option(1.0, help="Report recordings holding fewer seconds of speech than this."),
    drop_nonspeech: bool = typer.Option(False, "--drop-nonspeech", help="Leave out the recordings --min-speech reports."),
    chunk_speech: float = typer.Option(0.0, help="Leave out chunks less than this share speech (0: keep every chunk; e.g. 0.2)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Decoding threads (default: all cores)."),
    threads: Optional[int] = _threads(INFERENCE_THREADS, "per decoding thread, for the voice detector"),
    force: bool = typer.Option(False, "--force", help="Delete an existing corpus at --out and start over."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Decode, screen for speech, chunk and split DATA_DIR into a corpus (split by recording, stratified per speaker)."""
    from speakerid.corpus import REJECTED_FILE, PrepareConfig, prepare as run_prepare
    from speakerid.progress import print_table

    use_threads(threads)
    config = PrepareConfig(chunk_seconds=chunk, hop_seconds=hop, tail=tail, short=short,
                           val_fraction=val, test_fraction=test, seed=seed, speech_check=speech_check,
                           min_speech_seconds=min_speech, drop_nonspeech=drop_nonspeech, min_chunk_speech=chunk_speech)
    result = run_prepare(data_dir, out, config, workers=workers, force=force, progress=not quiet)
    s = result.summary
    rows = [[split, s["recordings_per_split"][split], s["chunks"][split]] for split in ("train", "validation", "test")]
    speech = f" ({s['speech_minutes']:.1f} min of speech)" if s.get("speech_minutes") is not None else ""
    typer.echo(f"{out}: {s['speakers']} speakers, {s['recordings']} recordings, {s['minutes']:.1f} min{speech}, "
               f"{chunk:g}-s chunks; {result.resumed} recordings were decoded already")
    print_table("", ["split", "recordings", "chunks"], rows)
    for note in s["notes"]:
        typer.secho(f"note: {note}", err=True)
    for little in s["little_speech"][:10] if not drop_nonspeech else []:
        typer.secho(f"little speech: {data_dir / little['recording']}: {little['speech_seconds']:.1f} s", err=True, fg="yellow")
    _report_rejected(result.rejected, out / REJECTED_FILE)
    _exit_status(len(result.rejected), len(result.rejected) + s["recordings"])


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Folder to write OUT/<speaker>/*.wav into."),
    speakers: int = typer.Option(10, help="Number of synthetic speakers."),
    minutes: float = typer.Option(2.0, help="Minutes of audio per speaker."),
    recording_seconds: float = typer.Option(30.0, help="Length of each recording in seconds."),
    seed: int = typer.Option(0, help="Seed: the same seed writes the same voices."),
    workers: Optional[int] = typer.Option(None, help="Processes (default: all cores)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Write a synthetic multi-speaker corpus (source-filter voices), for demos and tests."""
    from speakerid.synth import synthesize

    paths = synthesize(out, speakers=speakers, minutes=minutes, recording_seconds=recording_seconds,
                       seed=seed, workers=workers, progress=not quiet)
    typer.echo(f"wrote {len(paths)} recordings of {speakers} speakers to {out}")


@app.command()
def demo(
    work: Path = typer.Argument(Path("work/demo"), help="Folder for the demo (it owns it: rebuilt on every run)."),
    speakers: int = typer.Option(8, help="Synthetic speakers."),
    epochs: int = typer.Option(12, help="Most training epochs."),
    threads: Optional[int] = _threads(TRAIN_THREADS, "for training and scoring"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """The whole story on a built-in synthetic corpus: synth, prepare, train, evaluate, identify."""
    from speakerid.demo import demo as run_demo

    use_threads(threads)
    result = run_demo(work, speakers=speakers, epochs=epochs, progress=not quiet, say=typer.echo)
    m, answer = result.metrics, result.identification
    verdict = "right" if answer.speaker == result.truth else f"wrong: it was {result.truth}"
    typer.echo(f"\n{answer.source}: {answer.speaker} ({answer.probability:.2f}), {verdict}")
    typer.echo(f"test accuracy: {m['chunk_accuracy']:.1%} of {m['chunks']} chunks, "
               f"{m['recording_accuracy']:.1%} of {m['recordings']} recordings")
    typer.echo(f"report: {work / 'run' / 'report.md'}   MFCC figure: {work / 'mfcc.png'}")


def _refuse_existing(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise SpeakerIdError(f"{path} exists; pass --force to replace it")


@app.command("plot-mfcc")
def plot_mfcc(
    corpus: Path = typer.Argument(..., help="A corpus made by `speakerid prepare`."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write."),
    n_mfcc: int = typer.Option(40, help="Number of MFCC coefficients."),
    split: str = typer.Option("train", help="Split to draw chunks from."),
    seed: int = typer.Option(0, help="Seed of the random chunk choice."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    threads: Optional[int] = _threads(INFERENCE_THREADS, "for the features"),
) -> None:
    """Draw one MFCC panel of a random chunk per speaker, in a grid."""
    from speakerid.corpus import Corpus
    from speakerid.features import FeatureConfig
    from speakerid.plots import plot_mfcc_grid

    use_threads(threads)
    if out.suffix.lower() != ".png":
        raise SpeakerIdError(f"--out {out} must name a .png file")
    _refuse_existing(out, force)
    path = plot_mfcc_grid(Corpus.open(corpus), out, FeatureConfig(n_mfcc=n_mfcc), seed=seed, split=split)
    typer.echo(f"wrote {path}")


@app.command("export-onnx")
def export_onnx(
    source: Path = typer.Argument(..., help="A run directory made by `speakerid train`, or a registry file after `speakerid adapt`."),
    out: Path = typer.Argument(..., help="The .onnx file to write."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Export a trained run, or a registry's adapted encoder, as ONNX (features inside, dynamic batch and length)."""
    from speakerid.deploy import export_adapted, export_run

    _refuse_existing(out, force)
    typer.echo(f"wrote {export_adapted(source, out) if source.is_file() else export_run(source, out)}")


@app.command("export-chunks")
def export_chunks(
    corpus: Path = typer.Argument(..., help="A corpus made by `speakerid prepare`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for OUT/<split>/<speaker>/<recording>_<k>.wav."),
    split: Optional[str] = typer.Option(None, help="Only this split (train, validation, test)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Write every corpus chunk as a WAV file (the job of the original make_chunks script). Resumes; never overwrites."""
    from speakerid.corpus import Corpus
    from speakerid.export import export_chunks as run_export

    written = run_export(Corpus.open(corpus), out, split=split, progress=not quiet)
    typer.echo(f"wrote {written} chunk files to {out}")


@app.command("export-images")
def export_images(
    corpus: Path = typer.Argument(..., help="A corpus made by `speakerid prepare`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for OUT/<split>/<speaker>/<recording>_<k>.jpg."),
    n_mfcc: int = typer.Option(40, help="Number of MFCC coefficients."),
    size: int = typer.Option(300, help="Image width and height in pixels."),
    image_format: str = typer.Option("jpg", "--format", help="'jpg' (quality 95, as the original recipe) or 'png' (lossless)."),
    split: Optional[str] = typer.Option(None, help="Only this split (train, validation, test)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Threads making and encoding pictures (default: all cores)."),
    threads: Optional[int] = _threads(TRAIN_THREADS, "for the features"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Write each chunk's MFCC as a size x size RGB image (the ResNet50 recipe's input). Resumes; never overwrites."""
    from speakerid.corpus import Corpus
    from speakerid.export import export_images as run_export
    from speakerid.features import FeatureConfig

    use_threads(threads)
    written = run_export(Corpus.open(corpus), out, FeatureConfig(n_mfcc=n_mfcc), size=size,
                         image_format=image_format, split=split, workers=workers, progress=not quiet)
    typer.echo(f"wrote {written} images to {out}")


def _parse_options(pairs: list[str], flag: str = "--option") -> dict:
    """KEY=VALUE pairs; values are read as JSON where they parse (numbers, lists, true/false), else text."""
    import json

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpeakerIdError(f"{flag} wants KEY=VALUE, got {pair!r}")
        try:
            options[key.strip().replace("-", "_")] = json.loads(value)
        except ValueError:
            options[key.strip().replace("-", "_")] = value
    return options


def _parse_crop(text: str) -> tuple[float, float] | str | None:
    """'off', 'chunk', one length '2' or a range '1.5-3' (seconds)."""
    if text.strip().lower() in ("off", "chunk"):
        return None if text.strip().lower() == "off" else "chunk"
    try:
        low, _, high = text.partition("-")
        return float(low), float(high or low)
    except ValueError:
        raise SpeakerIdError(f"--crop wants MIN-MAX seconds (e.g. 1.5-3), one length (e.g. 2), chunk or off, got {text!r}") from None


HEAD_HELP = "softmax (cross-entropy) or arcmargin (additive angular margin softmax)."
MARGIN_HELP = "arcmargin: the margin in radians."
SCALE_HELP = "arcmargin: the scale of the cosine logits."
MARGIN_WARMUP_HELP = "arcmargin: epochs over which the margin rises from 0."
CROP_HELP = ("Random training crops: MIN-MAX seconds (a length per batch, e.g. 1.5-3), one length (2), "
             "chunk (from half a chunk to a whole one: 1.5-3 s on 3-s chunks), or off (whole chunks).")
CROP_SHORT_HELP = "A recording shorter than its crop: repeat it, or pad with silence."
AUGMENT_HELP = "Augment the training audio (the standard set: noise, babble, reverberation, gain, speed, SpecAugment masks)."
AUG_HELP = "One augmentation setting KEY=VALUE (repeatable), e.g. reverb=0.5 or noise_snr=[0,15]; see speakerid.augment.AugmentConfig."


def _recipe(head: str | None, margin: float | None, scale: float | None, margin_warmup: float | None, crop: str | None,
            crop_short: str | None, augment: bool | None, aug: list[str], recipe_augment: AugmentConfig | None = None) -> dict:
    """The TrainConfig fields of the training-recipe flags that `train` and `adapt` share (None: not given).
    `--aug` settings change the standard set with --augment, nothing with --no-augment, else the recipe's."""
    from speakerid.augment import STANDARD, AugmentConfig

    given = {"head": head, "margin": margin, "scale": scale, "margin_warmup": margin_warmup, "crop_short": crop_short}
    fields = {k: v for k, v in given.items() if v is not None}
    if crop is not None:
        fields["crop"] = _parse_crop(crop)  # None when "off"
    if augment is not None or aug:
        if augment:
            start = STANDARD
        elif augment is None and recipe_augment is not None:
            start = recipe_augment
        else:
            start = AugmentConfig()
        fields["augment"] = AugmentConfig.from_dict({**start.to_dict(), **_parse_options(aug, "--aug")})
    return fields


@app.command()
def train(
    corpus: Path = typer.Argument(..., help="A corpus made by `speakerid prepare`."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write."),
    model: str = typer.Option("tdnn", help="Model family: tdnn, cnn, lstm or resnet50."),
    features: str = typer.Option("mfcc", help="Features: mfcc, logmel or spectrogram."),
    n_mfcc: int = typer.Option(40, help="MFCC coefficients (features mfcc)."),
    n_mels: int = typer.Option(64, help="Mel bands (features mfcc and logmel)."),
    cmvn: bool = typer.Option(False, "--cmvn/--no-cmvn", help="Per-utterance mean/variance normalisation of the features."),
    epochs: int = typer.Option(60, help="Most epochs to train."),
    batch_size: int = typer.Option(32, help="Chunks per batch (per process under torchrun)."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    seed: int = typer.Option(0, help="Seed of initialisation, order and augmentation."),
    patience: int = typer.Option(20, help="Stop after this many epochs without a better validation accuracy (0: never)."),
    jitter: float = typer.Option(0.5, help="With --crop off: shift training chunks by up to this fraction of a chunk (0: off)."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop after the epoch that passes this much training time."),
    trainable: Optional[str] = typer.Option(None, help="resnet50: stages that train, e.g. stem,layer1,head (the rest freeze)."),
    pretrained: Optional[Path] = typer.Option(None, help="resnet50: local torchvision ImageNet weights (.pth) to start from."),
    option: list[str] = typer.Option([], "--option", metavar="KEY=VALUE", help="A model option KEY=VALUE (repeatable), e.g. hidden=128."),
    head: str = typer.Option("softmax", help=HEAD_HELP),
    margin: float = typer.Option(0.2, help=MARGIN_HELP),
    scale: float = typer.Option(32.0, help=SCALE_HELP),
    margin_warmup: float = typer.Option(0.0, help=MARGIN_WARMUP_HELP),
    lr_schedule: str = typer.Option("constant", help="constant, or cosine (decays to 0 at the last epoch)."),
    warmup_epochs: float = typer.Option(0.0, help="Epochs over which the learning rate rises from 0."),
    weight_decay: float = typer.Option(0.0, help="AdamW weight decay."),
    crop: str = typer.Option("chunk", help=CROP_HELP),
    crop_short: str = typer.Option("repeat", help=CROP_SHORT_HELP),
    augment: bool = typer.Option(False, "--augment/--no-augment", help=AUGMENT_HELP),
    aug: list[str] = typer.Option([], "--aug", metavar="KEY=VALUE", help=AUG_HELP),
    workers: Optional[int] = typer.Option(None, help="DataLoader worker processes (default: 0 on CPU, 4 on CUDA)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: Optional[int] = _threads(TRAIN_THREADS, "per process on CPU"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run at --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Delete an existing run at --out and start over."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Train a speaker model (AdamW; softmax or angular-margin head); keeps the best epoch by validation accuracy."""
    from speakerid.features import FeatureConfig
    from speakerid.training import TrainConfig, train as run_train

    import os

    use_threads(threads)
    options = _parse_options(option)
    if trainable is not None:
        options["trainable"] = [s.strip() for s in trainable.split(",") if s.strip()]
    quiet = quiet or int(os.environ.get("RANK", "0")) != 0  # under torchrun only rank 0 speaks
    if model == "resnet50" and trainable is None and resume:  # keep the freeze policy the run started with
        from speakerid import rundir

        previous = rundir.read_json(out / rundir.CONFIG_FILE, "run configuration")
        options["trainable"] = previous.get("model", {}).get("options", {}).get("trainable", options.get("trainable"))
    elif model == "resnet50" and pretrained is None and not resume:
        from speakerid.models.resnet50 import freeze_policy

        options = freeze_policy(options, pretrained=False)
        if not quiet:
            typer.secho("note: no --pretrained ImageNet weights: resnet50 trains from scratch"
                        + ("" if trainable else ", every stage"), err=True)
    config = TrainConfig(
        model=model, features=FeatureConfig(kind=features, n_mfcc=n_mfcc, n_mels=n_mels, normalize=cmvn),
        options=options, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, patience=patience, jitter=jitter,
        max_minutes=max_minutes, workers=workers, device=device, pretrained=str(pretrained) if pretrained else None,
        lr_schedule=lr_schedule, warmup_epochs=warmup_epochs, weight_decay=weight_decay,
        **_recipe(head, margin, scale, margin_warmup, crop, crop_short, augment, aug),
    )
    result = run_train(corpus, out, config, resume=resume, force=force, progress=not quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if result.stopped_by_time:
        typer.echo(f"stopped after epoch {result.epochs_run} of {epochs}: --max-minutes {max_minutes:g} reached")
    elif result.stopped_early:
        typer.echo(f"stopped after epoch {result.epochs_run} of {epochs}: no better validation accuracy "
                   f"for --patience {patience} epochs")
    if result.best_val_acc is None:
        typer.echo(f"trained {result.epochs_run} epochs (no validation split: kept the last); run in {out}")
    else:
        typer.echo(f"best validation accuracy {result.best_val_acc:.1%} at epoch {result.best_epoch} of "
                   f"{result.epochs_run}; run in {out}")


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="A run directory made by `speakerid train`."),
    corpus: Optional[Path] = typer.Option(None, help="Corpus to score (default: the one the run was trained on)."),
    split: str = typer.Option("test", help="Split to score: test, validation or train."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the report (default: the run directory)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: Optional[int] = _threads(TRAIN_THREADS, "for scoring on CPU"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score a run on held-out recordings: accuracy per chunk and per recording, per speaker, confusion."""
    from speakerid.evaluation import evaluate as run_evaluate
    from speakerid.progress import print_table

    use_threads(threads)
    metrics = run_evaluate(run, corpus, split=split, out=out, device=device, progress=not quiet)
    if as_json:
        import json

        typer.echo(json.dumps(metrics, indent=2, ensure_ascii=False))
        return
    print_table(f"{run} on the {split} split", ["level", "items", "accuracy"], [
        ["chunk", metrics["chunks"], f"{metrics['chunk_accuracy']:.1%}"],
        ["recording", metrics["recordings"], f"{metrics['recording_accuracy']:.1%}"],
    ])
    typer.echo(f"macro F1 {metrics['macro_f1']:.3f}; report in {Path(out or run) / 'report.md'}")


def _split_list(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise SpeakerIdError(f"--{what} wants a comma-separated list, got {text!r}")
    return items


@app.command()
def compare(
    data_dir: Path = typer.Argument(..., help="Folder with one sub-folder of recordings per speaker."),
    out: Path = typer.Option(..., "--out", "-o", help="Study folder to create (or continue)."),
    chunks: str = typer.Option("3,5,10", help="Chunk lengths in seconds, comma-separated."),
    features: str = typer.Option("mfcc,logmel,spectrogram", help="Features, comma-separated: mfcc, logmel, spectrogram."),
    models: str = typer.Option("cnn,lstm,tdnn", help="Models, comma-separated: cnn, tdnn, lstm, resnet50."),
    budget: str = typer.Option("5m", help="Training time per cell, e.g. 90s, 5m, 1h (patience may end a cell sooner)."),
    seed: int = typer.Option(0, help="Seed of the split and of every cell's training."),
    pretrained: Optional[Path] = typer.Option(None, help="resnet50 cells: local torchvision ImageNet weights (.pth)."),
    devices: Optional[str] = typer.Option(None, help="One cell at a time on each, comma-separated: e.g. cuda:0,cuda:1 "
                                                       "or cpu,cpu. Default: every visible GPU, else the CPU."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Train and score every chunk length x features x model cell on DATA_DIR under one budget; report the best."""
    from speakerid.compare import compare as run_compare, parse_budget
    from speakerid.progress import print_table

    try:
        lengths = [float(c) for c in _split_list(chunks, "chunks")]
    except ValueError:
        raise SpeakerIdError(f"--chunks wants numbers of seconds such as 3,5,10, got {chunks!r}") from None
    result = run_compare(data_dir, out, lengths, _split_list(features, "features"), _split_list(models, "models"),
                         parse_budget(budget), seed=seed, pretrained=pretrained,
                         devices=_split_list(devices, "devices") if devices else None,
                         progress=not quiet, say=(lambda line: None) if quiet else typer.echo)
    rows = sorted(result.rows, key=lambda r: (-r["recording_accuracy"], -r["chunk_accuracy"]))
    print_table(f"{out}: test accuracy, best first", ["cell", "chunks", "recordings", "worst speaker", "epochs", "time"],
                [[r["cell"], f"{r['chunk_accuracy']:.1%}", f"{r['recording_accuracy']:.1%}",
                  f"{r['worst_speaker_accuracy']:.1%}", r["epochs"], f"{r['train_seconds']:.0f} s"] for r in rows])
    for name, why in result.failed.items():
        typer.secho(f"failed: {name}: {why}", err=True, fg="yellow")
    typer.echo(f"report: {result.report}")
    if result.failed:
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def identify(
    paths: list[Path] = typer.Argument(..., metavar="[RUN] FILE...",
                                       help="A trained run, then recordings; or only recordings, with --registry."),
    registry: Optional[Path] = typer.Option(None, help="Identify among the speakers enrolled here (open set: may answer unknown)."),
    model: Optional[Path] = typer.Option(None, help="With --registry: the run whose embeddings the registry holds."),
    threshold: Optional[float] = typer.Option(None, help="With --registry: cosine threshold (default: the calibrated one)."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many speakers to list per file."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    engine: str = typer.Option("torch", help="With a run: 'torch', or 'onnx' (onnxruntime on the CPU; exports RUN/model.onnx once)."),
    threads: Optional[int] = _threads(INFERENCE_THREADS, "for each recording"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (a list, one entry per file)."),
) -> None:
    """Name the speaker of each recording (any length): with a trained run, or among enrolled speakers."""
    from speakerid.audio import is_audio_file

    use_threads(threads)
    if engine != "torch" and registry is not None:
        raise SpeakerIdError("--engine onnx scores with a trained run: speakerid identify RUN FILE... --engine onnx")
    if registry is None:
        if model is not None or threshold is not None:
            raise SpeakerIdError("--model and --threshold go with --registry; without it, give the run first: "
                                 "speakerid identify RUN FILE...")
        if is_audio_file(paths[0]) or paths[0].is_file():
            raise SpeakerIdError(f"{paths[0]} is a recording, not a run directory: give the run first "
                                 "(speakerid identify RUN FILE...), or identify among enrolled speakers with "
                                 "--registry REGISTRY")
        if len(paths) < 2:
            raise SpeakerIdError("give a run directory and at least one recording: speakerid identify RUN FILE...")
        from speakerid.identify import Identifier

        identifier = Identifier.load(paths[0], device=device, engine=engine)
        answer = lambda path: identifier.identify(path, top_k=top_k).to_dict()
        files = paths[1:]
    else:
        from speakerid.voices import VoiceRegistry

        voices = VoiceRegistry(registry, model, device, create=False)
        answer = lambda path: voices.identify(path, top_k=top_k, threshold=threshold).to_dict()
        files = paths
    _answer_each(files, answer, as_json, _open_set_line if registry else _closed_set_line)


def _closed_set_line(a: dict) -> str:
    others = "  ".join(f"{r['speaker']} ({r['probability']:.2f})" for r in a["ranking"][1:])
    warnings = []
    if a["out_of_set"]:
        similarity, threshold = score_and_threshold(a["similarity"], a["similarity_threshold"])
        warnings.append(f"unlike every training speaker: similarity {similarity} < {threshold}")
    if a["short"]:
        warnings.append(f"short: {a['seconds']:.1f} s, less than one training chunk")
    return (f"{a['file']}: {a['speaker']} ({a['probability']:.2f})" + (f"   then {others}" if others else "")
            + "".join(f"   [{w}]" for w in warnings))


def score_and_threshold(score: float, threshold: float) -> tuple[str, str]:
    """Both numbers with 3 decimals, or as many more as it takes for a score under the threshold to print under it."""
    for decimals in range(3, 7):
        shown = f"{score:.{decimals}f}", f"{threshold:.{decimals}f}"
        if (score < threshold) == (float(shown[0]) < float(shown[1])):
            return shown
    return shown


def _open_set_line(a: dict) -> str:
    best = a["ranking"][0]
    if a["known"] is False:
        score, threshold = score_and_threshold(a["score"], a["threshold"])
        head = f"unknown (closest {best['speaker']} {score} < {threshold}, {a['threshold_source']})"
    else:
        head = f"{a['speaker']} ({a['score']:.3f})"
        if a["known"] is None:
            head += " (no threshold: run `speakerid calibrate` to answer unknown)"
    others = "  ".join(f"{r['speaker']} ({r['score']:.3f})" for r in a["ranking"][1:])
    return f"{a['file']}: {head}" + (f"   then {others}" if others else "")


def _answer_each(files: list[Path], answer, as_json: bool, line) -> None:
    """Answer every file; an unreadable one is reported and the others still get answers (exit 3; 1 if none did)."""
    import json

    from speakerid.errors import AudioError

    answers, failed = [], 0
    for path in files:
        try:
            result = {"file": str(path), **answer(path)}
        except AudioError as err:
            failed += 1
            answers.append({"file": str(path), "error": err.reason})
            if not as_json:
                typer.secho(f"error: {err}", err=True, fg="red")
            continue
        answers.append(result)
        if not as_json:
            typer.echo(line(result))
    if as_json:
        typer.echo(json.dumps(answers, indent=2, ensure_ascii=False))
    _exit_status(failed, len(files))


@app.command()
def enroll(
    paths: list[Path] = typer.Argument(..., metavar="FILE...|FOLDER",
                                       help="Recordings of --name, or (without --name) a folder of <speaker>/ folders."),
    registry: Path = typer.Option(..., help="Registry file (SQLite), created if missing."),
    name: Optional[str] = typer.Option(None, help="Speaker to enroll the recordings as."),
    model: Optional[Path] = typer.Option(None, help="A trained run whose embedding layer to use (default: pretrained GE2E)."),
    replace: bool = typer.Option(False, "--replace", help="Re-enroll: replace the speaker's earlier recordings."),
    threads: Optional[int] = _threads(INFERENCE_THREADS, "for each recording"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Add speakers to a registry from a few recordings each, without retraining."""
    from speakerid.progress import print_table
    from speakerid.voices import VoiceRegistry

    use_threads(threads)
    voices = VoiceRegistry(registry, model)
    enrolled_before = {s["name"] for s in voices.speakers()}
    if name is not None:
        results = [voices.enroll(name, paths, replace=replace)]
    elif len(paths) == 1 and paths[0].is_dir():
        results = voices.enroll_folder(paths[0], replace=replace, progress=not quiet)
    else:
        raise SpeakerIdError("give --name NAME with its recordings, or one folder holding a sub-folder per speaker")
    print_table(f"{registry} ({', '.join(e.name for e in voices.encoders)})",
                ["speaker", "added", "already enrolled", "failed", "recordings"],
                [[r.speaker, r.added, len(r.skipped), len(r.failed), r.recordings] for r in results])
    for r in results:
        if r.speaker in enrolled_before and r.added:
            typer.secho(f"note: {r.speaker} was enrolled already; " + ("--replace replaced their recordings" if replace else
                        "these recordings were added to theirs (--replace replaces them)"), err=True)
    failed = [(f, why) for r in results for f, why in r.failed]
    for path, why in failed:
        typer.secho(f"rejected: {path}: {why}", err=True, fg="yellow")
    _exit_status(len(failed), sum(r.added + len(r.skipped) + len(r.failed) for r in results))


@app.command()
def verify(
    a: Path = typer.Argument(..., help="A recording."),
    b: Path = typer.Argument(..., help="Another recording."),
    registry: Optional[Path] = typer.Option(None, help="Use this registry's encoder and calibrated threshold."),
    model: Optional[Path] = typer.Option(None, help="A trained run whose embedding layer to use (default: pretrained GE2E)."),
    threshold: Optional[float] = typer.Option(None, help="Cosine threshold for 'same speaker'."),
    threads: Optional[int] = _threads(INFERENCE_THREADS, "for each recording"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score whether two recordings share a speaker, and decide same or different."""
    import json

    from speakerid.voices import verify as run_verify

    use_threads(threads)
    result = run_verify(a, b, model=model, registry=registry, threshold=threshold).to_dict()
    if as_json:
        typer.echo(json.dumps({"a": str(a), "b": str(b), **result}, indent=2))
        return
    if result["same"] is None:
        typer.echo(f"score {result['score']:.3f}: no threshold to decide with (pass --threshold or a calibrated --registry)")
    else:
        verdict = "same speaker" if result["same"] else "different speakers"
        score, threshold = score_and_threshold(result["score"], result["threshold"])
        typer.echo(f"score {score}: {verdict} (threshold {threshold}, {result['threshold_source']})")


@app.command()
def adapt(
    registry: Path = typer.Option(..., help="Registry whose enrolled voices to learn."),
    minutes: Optional[float] = typer.Option(None, help="Stop training after the epoch that passes this many minutes."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Most training epochs (default: the recipe's)."),
    seed: int = typer.Option(0, help="Seed of the held-out split, initialisation and augmentation."),
    model: Optional[str] = typer.Option(None, help="Model family to train: tdnn (ECAPA-style, 128 channels), cnn "
                                                   "(compact: half the training time, a little less accurate) or "
                                                   "lstm. [recipe: tdnn]"),
    head: Optional[str] = typer.Option(None, help=HEAD_HELP + " [recipe: softmax]"),
    margin: Optional[float] = typer.Option(None, help=MARGIN_HELP + " [0.2]"),
    scale: Optional[float] = typer.Option(None, help=SCALE_HELP + " [32]"),
    margin_warmup: Optional[float] = typer.Option(None, help=MARGIN_WARMUP_HELP + " [0]"),
    crop: Optional[str] = typer.Option(None, help=CROP_HELP + " [recipe: 1.5-3]"),
    crop_short: Optional[str] = typer.Option(None, help=CROP_SHORT_HELP + " [recipe: repeat]"),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help=AUGMENT_HELP + " [recipe: gain only, p 0.8, -10 to +10 dB]"),
    aug: list[str] = typer.Option([], "--aug", metavar="KEY=VALUE", help=AUG_HELP),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: Optional[int] = _threads(TRAIN_THREADS, "for training and embedding"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Train an encoder on the enrolled voices; from then on the registry scores with it and the pretrained one, fused."""
    from speakerid.adapt import adapt as run_adapt, adapt_training

    use_threads(threads)
    recipe = _recipe(head, margin, scale, margin_warmup, crop, crop_short, augment, aug, adapt_training().augment)
    if model is not None:
        recipe["model"] = model
    result = run_adapt(registry, minutes=minutes, epochs=epochs, seed=seed, device=device, progress=not quiet,
                       recipe=recipe)
    r = result.report
    typer.echo(f"adapted {registry}: {result.encoder} trained on {result.speakers} speakers for {result.epochs} epochs "
               f"({result.train_seconds:.0f} s, best epoch {result.best_epoch}){' (resumed)' if result.resumed else ''}")
    typer.echo(f"on {r['enrolled_trials']} held-out recordings, each also a stranger to the others: "
               f"{r['named_right']:.1%} named right, {r['strangers_rejected']:.1%} rejected (provisional threshold); "
               "calibrate on real strangers next: speakerid calibrate --registry "
               f"{registry} STRANGERS_DIR")
    for speaker, why in result.left_out:
        typer.secho(f"left out of training: {speaker}: {why}", err=True, fg="yellow")


@app.command()
def calibrate(
    data_dir: Path = typer.Argument(..., help="Folder of <speaker>/ folders: strangers, and held-out recordings of enrolled speakers."),
    registry: Path = typer.Option(..., help="Registry to calibrate (its speakers must be enrolled)."),
    model: Optional[Path] = typer.Option(None, help="The run the registry was enrolled with, if it moved."),
    far: Optional[float] = typer.Option(None, help="Share of stranger trials (simulated ones included) the threshold may let in (default: the balanced point)."),
    plot: Optional[Path] = typer.Option(None, help="Where to draw the figures (default: beside the registry)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Measure and report, but store nothing."),
    threads: Optional[int] = _threads(INFERENCE_THREADS, "for each recording"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Fit the registry's thresholds (and fusion weights) on the open-set task: name the enrolled, reject strangers."""
    from speakerid.calibration import calibrate as run_calibrate
    from speakerid.progress import print_table

    use_threads(threads)
    plot = plot or registry.with_name(registry.stem + "-calibration.png")
    result = run_calibrate(registry, data_dir, model=model, far=far, out=plot, store=not dry_run, progress=not quiet)
    if as_json:
        import json

        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    r = result.report
    simulated = r["simulated_stranger_trials"]
    real = f"{r['stranger_trials'] - simulated} of strangers and " if simulated < r["stranger_trials"] else ""
    strangers = f"stranger trials ({real}{simulated} simulated: each enrolled trial without its own speaker)"
    weights = ", ".join(f"{e} {w:.2f}" for e, w in r["weights"].items()) + f" ({r['weights_by']})"
    typer.echo(f"{r['speakers']} enrolled speakers ({result.enrolled_side}): {r['enrolled_trials']} enrolled and "
               f"{r['stranger_trials']} {strangers}, whole recordings and clips; weights: {weights}; "
               f"weight of the lead over the second speaker: {r['gap']:g}")
    print_table(f"thresholds by length ({r['operating_point']})",
                ["length", "enrolled trials", "named right", "stranger trials", "rejected", "identify", "verify"],
                [[f"{g['seconds']:.1f} s", g["enrolled_trials"], f"{g['named_right']:.1%}", g["stranger_trials"],
                  f"{g['strangers_rejected']:.1%}", f"{g['identify_threshold']:.3f}", f"{g['verify_threshold']:.3f}"]
                 for g in r["by_length"]])
    typer.echo(f"all trials: {r['named_right']:.1%} of enrolled voices named right, {r['strangers_rejected']:.1%} of "
               f"stranger trials rejected; closest speaker right {r['top1']:.1%}; pairwise EER {r['eer']:.2%}, "
               f"minDCF {r['min_dcf']:.3f}")
    for speaker, why in result.skipped:
        typer.secho(f"skipped: {speaker}: {why}", err=True, fg="yellow")
    for path, why in result.failed:
        typer.secho(f"rejected: {path}: {why}", err=True, fg="yellow")
    typer.echo(f"{'stored in ' + str(registry) if result.stored else 'not stored (--dry-run)'}; figures: {result.plot}")


@app.command("upgrade-registry")
def upgrade_registry(
    registry: Path = typer.Argument(..., help="A registry made by an earlier speakerid."),
    data_dirs: list[Path] = typer.Argument(None, help="For a registry of speakerid 0.1 (format 1): folders holding the "
                                                      "files its speakers were enrolled from."),
    drop_missing: bool = typer.Option(False, "--drop-missing", help="Upgrade without the enrolled files not found."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Upgrade an earlier registry in place: store the audio of a format-1 registry (keeps REGISTRY.v1), and
    re-embed the stored audio of one enrolled with an earlier GE2E."""
    from speakerid.upgrade import upgrade_registry as run_upgrade

    result = run_upgrade(registry, data_dirs or [], drop_missing=drop_missing, progress=not quiet)
    if result.backup is not None:
        typer.echo(f"upgraded {registry}: {result.speakers} speakers, {result.recordings} recordings with their audio; "
                   f"the old registry is {result.backup}")
    if result.reembedded:
        typer.echo(f"re-embedded {result.reembedded} recordings of {registry} with {result.encoder}")
    typer.echo(f"Calibrate again: speakerid calibrate --registry {registry} DIR")
    for speaker, source in result.missing:
        typer.secho(f"left out (not found): {speaker}/{source}", err=True, fg="yellow")
    for speaker in result.removed:
        typer.secho(f"removed (none of its files found): {speaker}", err=True, fg="yellow")
    if result.missing:
        raise typer.Exit(EXIT_PARTIAL)


speakers_app = typer.Typer(help="List, rename or remove enrolled speakers.", no_args_is_help=True)
app.add_typer(speakers_app, name="speakers")


@speakers_app.command("list")
def speakers_list(
    registry: Path = typer.Option(..., help="Registry file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The enrolled speakers, with their number of recordings."""
    from speakerid.progress import print_table
    from speakerid.registry import Registry

    store = Registry(registry, create=False)
    rows = store.speakers()
    encoders = [e.name for e in store.encoders()]
    scoring = store.scoring if store.scoring and store.scoring.get("encoders") == encoders else None
    if as_json:
        import json

        typer.echo(json.dumps({"encoders": encoders, "scoring": scoring, "speakers": rows}, indent=2))
        return
    decided = f"threshold {scoring['identify']:.3f}, {scoring['source']}" if scoring else "not calibrated"
    print_table(f"{registry}: {len(rows)} speakers ({' + '.join(encoders) or 'no encoder yet'}; {decided})",
                ["speaker", "recordings", "seconds", "enrolled", "updated"],
                [[r["name"], r["recordings"], f"{r['seconds']:.1f}", r["created"][:19], r["updated"][:19]] for r in rows])


@speakers_app.command("rename")
def speakers_rename(old: str, new: str, registry: Path = typer.Option(..., help="Registry file.")) -> None:
    """Rename an enrolled speaker."""
    from speakerid.registry import Registry

    Registry(registry, create=False).rename(old, new)
    typer.echo(f"renamed {old} to {new}")


@speakers_app.command("remove")
def speakers_remove(name: str, registry: Path = typer.Option(..., help="Registry file.")) -> None:
    """Remove an enrolled speaker, its recordings and their embeddings."""
    from speakerid.registry import Registry

    Registry(registry, create=False).remove(name)
    typer.echo(f"removed {name}")


# --- diarize (issue 9) ---------------------------------------------------------------------------


@app.command()
def diarize(
    files: list[Path] = typer.Argument(..., help="Recordings (meetings, calls)."),
    registry: Path = typer.Option(..., help="Registry whose enrolled speakers get their names; others are unknown-N."),
    model: Optional[Path] = typer.Option(None, help="The run whose embeddings the registry holds (default: the registry's)."),
    threshold: Optional[float] = typer.Option(None, help="Cosine threshold that names a voice (default: the calibrated one)."),
    reference: Optional[Path] = typer.Option(None, help="RTTM with the true turns: print DER and the named error."),
    rttm: Optional[Path] = typer.Option(None, help="Write the turns here as RTTM."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report here as JSON."),
    plot: Optional[Path] = typer.Option(None, help="Draw the timeline here (PNG)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: Optional[int] = _threads(INFERENCE_THREADS, "per encoder (each embeds on a thread of its own)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Who spoke when: turns with enrolled names, and unknown-1, unknown-2, ... for the voices nobody enrolled."""
    from speakerid.diarize import diarize as run_diarize
    from speakerid.progress import print_table

    use_threads(threads)
    report = run_diarize(registry, files, model=model, threshold=threshold, reference=reference, rttm=rttm,
                         json_out=json_out, plot=plot, device=device, progress=not quiet)
    for result in report.recordings:
        source = f"threshold {result.threshold:.3f}, {result.threshold_source}" if result.threshold is not None else "no threshold"
        print_table(f"{result.file}: {result.seconds:.1f} s, {result.speech_seconds:.1f} s of speech, "
                    f"{len(result.speakers)} speaker{'' if len(result.speakers) == 1 else 's'} ({source})",
                    ["start", "end", "speaker", "score"],
                    [[f"{t.start:.2f}", f"{t.end:.2f}", t.speaker, f"{t.score:.2f}"] for t in result.turns])
        for note in result.notes:
            typer.secho(f"note: {result.file}: {note}", err=True)
    if report.scores is not None:
        s = report.scores
        rate = lambda part: f"{part:.1%}"
        print_table(f"against {reference} ({len(s['files'])} recordings)",
                    ["measure", "error", "missed", "false alarm", "confusion"],
                    [[name, rate(s[key]["error"]), rate(s[key]["missed"]), rate(s[key]["false_alarm"]), rate(s[key]["confusion"])]
                     for name, key in (("DER", "der"), ("DER, 0.25-s collar", "der_collar"),
                                       ("named error", "named"), ("named error, 0.25-s collar", "named_collar"))])
    for kind, where in report.written.items():
        typer.echo(f"wrote {kind}: {where}")
    for path, why in report.failed:
        typer.secho(f"rejected: {path}: {why}", err=True, fg="yellow")
    if report.failed:
        raise typer.Exit(EXIT_PARTIAL if report.recordings else EXIT_ERROR)


# --- end of diarize --------------------------------------------------------------------------------


@app.command()
def serve(
    registry: Path = typer.Option(..., help="Registry file (SQLite); see --create."),
    create: bool = typer.Option(False, "--create", help="Start an empty registry when --registry does not exist."),
    model: Optional[Path] = typer.Option(None, help="A trained run whose embedding layer to use (default: the registry's, or GE2E)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 exposes the service to the network."),
    port: int = typer.Option(8000, help="TCP port."),
    token: Optional[str] = typer.Option(None, envvar="SPEAKERID_TOKEN", help="Token that enroll and delete require (or env SPEAKERID_TOKEN)."),
    max_mb: float = typer.Option(20.0, help="Largest upload in MiB."),
    max_seconds: float = typer.Option(300.0, help="Longest upload in seconds of audio."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: Optional[int] = _threads(INFERENCE_THREADS, "per request (requests run concurrently)"),
    engine: str = typer.Option("torch", help="'torch', or 'onnx' to run --model RUN with onnxruntime (exports RUN/model.onnx once)."),
) -> None:
    """Serve identify, verify, enroll and the speaker list over HTTP, with a web page at /."""
    from speakerid.server import serve as run_serve

    if token is None:
        typer.secho("note: no --token: anyone who can reach the service can enroll and remove speakers", err=True)
    run_serve(registry, model=model, host=host, port=port, token=token, max_bytes=int(max_mb * 2**20),
              max_seconds=max_seconds, device=device, threads=threads, create=create, engine=engine)


class _Argument(TyperArgument):
    """An argument shown as users type it: DATA_DIR, FILE... (newer typer writes {data_dir} and <list[Path]>)."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar or self.name.upper()

    def _usage_display_name(self) -> str:
        name = self.display_name_raw + ("..." if self.metavar is None and self.nargs != 1 else "")
        return name if self.required else f"[{name}]"

    def display_type_rich(self, ctx) -> None:
        return None


class _Flag(TyperOption):
    """A flag shown without a value type (newer typer writes <bool> after it)."""

    def display_type_rich(self, ctx) -> None:
        return None


def _plain(param):
    if type(param) is TyperArgument:
        param.__class__ = _Argument
    elif type(param) is TyperOption and param.is_flag and not param.count:
        param.__class__ = _Flag
    return param


def command():
    """The click command behind `app`, its help written the way users type the command."""
    root = typer.main.get_command(app)
    todo = [root]
    while todo:
        cmd = todo.pop()
        todo.extend(getattr(cmd, "commands", {}).values())
        for param in cmd.params:
            _plain(param)
        # -h/--help is made when help is asked for
        cmd.get_help_option = lambda ctx, made=cmd.get_help_option: _plain(made(ctx))
    return root


def main() -> None:
    quiet_openmp()  # before anything imports torch
    try:
        code = command()(standalone_mode=False)  # returns the code of a `typer.Exit` raised by a command
    except SpeakerIdError as err:
        typer.secho(f"error: {err}", err=True, fg="red")
        sys.exit(EXIT_ERROR)
    except OSError as err:  # a path the user gave that cannot be made or read: a folder that is a file, no permission
        where = f"{err.filename}: " if err.filename else ""
        typer.secho(f"error: {where}{err.strerror or err}", err=True, fg="red")
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True, fg="red")
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        sys.exit(EXIT_ERROR)
    except Exception as err:  # usage errors arrive here in non-standalone mode
        # click's ClickException, or the copy of it that newer typer bundles (typer._click), which does
        # not derive from click's: both print themselves with show() and carry their exit code.
        if hasattr(err, "show") and hasattr(err, "exit_code"):
            err.show()
            sys.exit(err.exit_code)
        raise
    if code == 130:  # typer turns Ctrl-C inside a command into this exit code
        typer.secho("interrupted", err=True, fg="red")
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
