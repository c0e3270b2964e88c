"""The `speakerid` command line: parse options, call the public function of the same name, print.

Heavy modules are imported inside the commands so that `speakerid --help` stays fast.
Exit status: 0 done; 1 an error (one line on stderr, no traceback); 2 bad usage;
3 done, but some inputs were rejected or failed (each one reported).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from speakerid.errors import SpeakerIdError

EXIT_ERROR = 1
EXIT_PARTIAL = 3

app = typer.Typer(
    help="Tell who is speaking: prepare corpora, train and evaluate models, identify speakers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
    workers: Optional[int] = typer.Option(None, min=1, help="Decoding threads (default: all cores)."),
    force: bool = typer.Option(False, "--force", help="Delete an existing corpus at --out and start over."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Decode, chunk and split DATA_DIR into a corpus (split by recording, stratified per speaker)."""
    from speakerid.corpus import REJECTED_FILE, PrepareConfig, prepare as run_prepare
    from speakerid.progress import print_table

    config = PrepareConfig(chunk_seconds=chunk, hop_seconds=hop, tail=tail, short=short,
                           val_fraction=val, test_fraction=test, seed=seed)
    result = run_prepare(data_dir, out, config, workers=workers, force=force, progress=not quiet)
    s = result.summary
    rows = [[split, s["recordings_per_split"][split], s["chunks"][split]] for split in ("train", "validation", "test")]
    typer.echo(f"{out}: {s['speakers']} speakers, {s['recordings']} recordings, {s['minutes']:.1f} min, "
               f"{chunk:g}-s chunks; {result.resumed} recordings were decoded already")
    print_table("", ["split", "recordings", "chunks"], rows)
    for note in s["notes"]:
        typer.secho(f"note: {note}", err=True)
    _report_rejected(result.rejected, out / REJECTED_FILE)
    if result.rejected:
        raise typer.Exit(EXIT_PARTIAL)


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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """The whole story on a built-in synthetic corpus: synth, prepare, train, evaluate, identify."""
    from speakerid.demo import demo as run_demo

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
) -> None:
    """Draw one MFCC panel of a random chunk per speaker, in a grid."""
    from speakerid.corpus import Corpus
    from speakerid.features import FeatureConfig
    from speakerid.plots import plot_mfcc_grid

    if out.suffix.lower() != ".png":
        raise SpeakerIdError(f"--out {out} must name a .png file")
    _refuse_existing(out, force)
    path = plot_mfcc_grid(Corpus.open(corpus), out, FeatureConfig(n_mfcc=n_mfcc), seed=seed, split=split)
    typer.echo(f"wrote {path}")


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
    out: Path = typer.Option(..., "--out", "-o", help="Folder for OUT/<split>/<speaker>/<recording>_<k>.png."),
    n_mfcc: int = typer.Option(40, help="Number of MFCC coefficients."),
    size: int = typer.Option(300, help="Image width and height in pixels."),
    image_format: str = typer.Option("png", "--format", help="'png' (lossless) or 'jpg'."),
    split: Optional[str] = typer.Option(None, help="Only this split (train, validation, test)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Write each chunk's MFCC as a size x size RGB image (the ResNet50 recipe's input). Resumes; never overwrites."""
    from speakerid.corpus import Corpus
    from speakerid.export import export_images as run_export
    from speakerid.features import FeatureConfig

    written = run_export(Corpus.open(corpus), out, FeatureConfig(n_mfcc=n_mfcc), size=size,
                         image_format=image_format, split=split, progress=not quiet)
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


def _parse_crop(text: str) -> tuple[float, float] | None:
    """'off', one length '2' or a range '1.5-3' (seconds)."""
    if text.strip().lower() == "off":
        return None
    try:
        low, _, high = text.partition("-")
        return float(low), float(high or low)
    except ValueError:
        raise SpeakerIdError(f"--crop wants MIN-MAX seconds (e.g. 1.5-3), one length (e.g. 2) or off, got {text!r}") from None


@app.command()
def train(
    corpus: Path = typer.Argument(..., help="A corpus made by `speakerid prepare`."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write."),
    model: str = typer.Option("cnn", help="Model family: cnn, tdnn, lstm or resnet50."),
    features: str = typer.Option("mfcc", help="Features: mfcc, logmel or spectrogram."),
    n_mfcc: int = typer.Option(40, help="MFCC coefficients (features mfcc)."),
    n_mels: int = typer.Option(64, help="Mel bands (features mfcc and logmel)."),
    cmvn: bool = typer.Option(False, "--cmvn/--no-cmvn", help="Per-utterance mean/variance normalisation of the features."),
    epochs: int = typer.Option(30, help="Most epochs to train."),
    batch_size: int = typer.Option(32, help="Chunks per batch (per process under torchrun)."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    seed: int = typer.Option(0, help="Seed of initialisation, order and augmentation."),
    patience: int = typer.Option(10, help="Stop after this many epochs without a better validation accuracy (0: never)."),
    jitter: float = typer.Option(0.5, help="Shift training windows by up to this fraction of a chunk (0: off)."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop after the epoch that passes this much training time."),
    trainable: Optional[str] = typer.Option(None, help="resnet50: stages that train, e.g. stem,layer1,head (the rest freeze)."),
    pretrained: Optional[Path] = typer.Option(None, help="resnet50: local torchvision ImageNet weights (.pth) to start from."),
    option: list[str] = typer.Option([], "--option", help="A model option KEY=VALUE (repeatable), e.g. hidden=128."),
    head: str = typer.Option("softmax", help="softmax (cross-entropy) or arcmargin (additive angular margin softmax)."),
    margin: float = typer.Option(0.2, help="arcmargin: the margin in radians."),
    scale: float = typer.Option(32.0, help="arcmargin: the scale of the cosine logits."),
    margin_warmup: float = typer.Option(0.0, help="arcmargin: epochs over which the margin rises from 0."),
    lr_schedule: str = typer.Option("constant", help="constant, or cosine (decays to 0 at the last epoch)."),
    warmup_epochs: float = typer.Option(0.0, help="Epochs over which the learning rate rises from 0."),
    weight_decay: float = typer.Option(0.0, help="AdamW weight decay."),
    crop: str = typer.Option("off", help="Random training crops: MIN-MAX seconds (a length per batch, e.g. 1.5-3), "
                                         "one length (2), or off (whole chunks)."),
    crop_short: str = typer.Option("pad", help="A recording shorter than its crop: pad (silence) or repeat."),
    augment: bool = typer.Option(False, "--augment/--no-augment", help="Augment the training audio (the standard set: "
                                 "noise, babble, reverberation, gain, speed, SpecAugment masks)."),
    aug: list[str] = typer.Option([], "--aug", help="One augmentation setting KEY=VALUE (repeatable), e.g. reverb=0.5 "
                                  "or noise_snr=[0,15]; see speakerid.augment.AugmentConfig."),
    workers: Optional[int] = typer.Option(None, help="DataLoader worker processes (default: 0 on CPU, 4 on CUDA)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run at --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Delete an existing run at --out and start over."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Train a speaker model (AdamW; softmax or angular-margin head); keeps the best epoch by validation accuracy."""
    from speakerid.augment import STANDARD, AugmentConfig
    from speakerid.features import FeatureConfig
    from speakerid.training import TrainConfig, train as run_train

    import os

    options = _parse_options(option)
    if trainable is not None:
        options["trainable"] = [s.strip() for s in trainable.split(",") if s.strip()]
    quiet = quiet or int(os.environ.get("RANK", "0")) != 0  # under torchrun only rank 0 speaks
    if model == "resnet50" and trainable is None and resume:  # keep the freeze policy the run started with
        from speakerid import rundir

        previous = rundir.read_json(out / rundir.CONFIG_FILE, "run configuration")
        options["trainable"] = previous.get("model", {}).get("options", {}).get("trainable", options.get("trainable"))
    elif model == "resnet50" and pretrained is None and not resume:
        if trainable is None:
            from speakerid.models.resnet50 import STAGES

            options["trainable"] = list(STAGES)  # frozen random stages would only scramble the input
        if not quiet:
            typer.secho("note: no --pretrained ImageNet weights: resnet50 trains from scratch"
                        + ("" if trainable else ", every stage"), err=True)
    config = TrainConfig(
        model=model, features=FeatureConfig(kind=features, n_mfcc=n_mfcc, n_mels=n_mels, normalize=cmvn),
        options=options, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, patience=patience, jitter=jitter,
        max_minutes=max_minutes, workers=workers, device=device, pretrained=str(pretrained) if pretrained else None,
        head=head, margin=margin, scale=scale, margin_warmup=margin_warmup, lr_schedule=lr_schedule,
        warmup_epochs=warmup_epochs, weight_decay=weight_decay, crop=_parse_crop(crop), crop_short=crop_short,
        augment=AugmentConfig.from_dict({**(STANDARD.to_dict() if augment else {}), **_parse_options(aug, "--aug")}),
    )
    result = run_train(corpus, out, config, resume=resume, force=force, progress=not quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if result.best_val_acc is None:
        typer.echo(f"trained {result.epochs_run} epochs (no validation split: kept the last); run in {out}")
    else:
        typer.echo(f"best validation accuracy {result.best_val_acc:.1%} at epoch {result.best_epoch} of "
                   f"{result.epochs_run}{' (stopped early)' if result.stopped_early else ''}; run in {out}")


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="A run directory made by `speakerid train`."),
    corpus: Optional[Path] = typer.Option(None, help="Corpus to score (default: the one the run was trained on)."),
    split: str = typer.Option("test", help="Split to score: test, validation or train."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the report (default: the run directory)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score a run on held-out recordings: accuracy per chunk and per recording, per speaker, confusion."""
    from speakerid.evaluation import evaluate as run_evaluate
    from speakerid.progress import print_table

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


@app.command()
def identify(
    paths: list[Path] = typer.Argument(..., help="RUN FILE... (a trained run, then recordings), or FILE... with --registry."),
    registry: Optional[Path] = typer.Option(None, help="Identify among the speakers enrolled here (open set: may answer unknown)."),
    model: Optional[Path] = typer.Option(None, help="With --registry: the run whose embeddings the registry holds."),
    threshold: Optional[float] = typer.Option(None, help="With --registry: cosine threshold (default: the calibrated one)."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many speakers to list per file."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (a list, one entry per file)."),
) -> None:
    """Name the speaker of each recording (any length): with a trained run, or among enrolled speakers."""
    if registry is None:
        if model is not None or threshold is not None:
            raise SpeakerIdError("--model and --threshold go with --registry; without it, give the run first: "
                                 "speakerid identify RUN FILE...")
        if len(paths) < 2:
            raise SpeakerIdError("give a run directory and at least one recording: speakerid identify RUN FILE...")
        from speakerid.identify import Identifier

        identifier = Identifier.load(paths[0], device=device)
        answer = lambda path: identifier.identify(path, top_k=top_k).to_dict()
        files = paths[1:]
    else:
        from speakerid.registry import VoiceRegistry

        voices = VoiceRegistry(registry, model, device, create=False)
        answer = lambda path: voices.identify(path, top_k=top_k, threshold=threshold).to_dict()
        files = paths
    _answer_each(files, answer, as_json, _open_set_line if registry else _closed_set_line)


def _closed_set_line(a: dict) -> str:
    others = "  ".join(f"{r['speaker']} ({r['probability']:.2f})" for r in a["ranking"][1:])
    return f"{a['file']}: {a['speaker']} ({a['probability']:.2f})" + (f"   then {others}" if others else "")


def _open_set_line(a: dict) -> str:
    best = a["ranking"][0]
    if a["known"] is False:
        head = f"unknown (closest {best['speaker']} {best['score']:.2f} < {a['threshold']:.2f}, {a['threshold_source']})"
    else:
        head = f"{a['speaker']} ({a['score']:.2f})"
        if a["known"] is None:
            head += " (no threshold: run `speakerid calibrate` to answer unknown)"
    others = "  ".join(f"{r['speaker']} ({r['score']:.2f})" for r in a["ranking"][1:])
    return f"{a['file']}: {head}" + (f"   then {others}" if others else "")


def _answer_each(files: list[Path], answer, as_json: bool, line) -> None:
    """Answer every file; an unreadable one is reported and the others still get answers (exit 3)."""
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
    if failed:
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def enroll(
    paths: list[Path] = typer.Argument(..., help="Recordings of --name, or (without --name) a folder of <speaker>/ folders."),
    registry: Path = typer.Option(..., help="Registry file (SQLite), created if missing."),
    name: Optional[str] = typer.Option(None, help="Speaker to enroll the recordings as."),
    model: Optional[Path] = typer.Option(None, help="A trained run whose embedding layer to use (default: pretrained GE2E)."),
    replace: bool = typer.Option(False, "--replace", help="Re-enroll: replace the speaker's earlier recordings."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Add speakers to a registry from a few recordings each, without retraining."""
    from speakerid.progress import print_table
    from speakerid.registry import VoiceRegistry

    voices = VoiceRegistry(registry, model)
    if name is not None:
        results = [voices.enroll(name, paths, replace=replace)]
    elif len(paths) == 1 and paths[0].is_dir():
        results = voices.enroll_folder(paths[0], replace=replace, progress=not quiet)
    else:
        raise SpeakerIdError("give --name NAME with its recordings, or one folder holding a sub-folder per speaker")
    print_table(f"{registry} ({voices.registry.encoder_name})", ["speaker", "added", "already enrolled", "failed", "embeddings"],
                [[r.speaker, r.added, len(r.skipped), len(r.failed), r.embeddings] for r in results])
    failed = [(f, why) for r in results for f, why in r.failed]
    for path, why in failed:
        typer.secho(f"rejected: {path}: {why}", err=True, fg="yellow")
    if failed:
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def verify(
    a: Path = typer.Argument(..., help="A recording."),
    b: Path = typer.Argument(..., help="Another recording."),
    registry: Optional[Path] = typer.Option(None, help="Use this registry's encoder and calibrated threshold."),
    model: Optional[Path] = typer.Option(None, help="A trained run whose embedding layer to use (default: pretrained GE2E)."),
    threshold: Optional[float] = typer.Option(None, help="Cosine threshold for 'same speaker'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score whether two recordings share a speaker, and decide same or different."""
    import json

    from speakerid.registry import verify as run_verify

    result = run_verify(a, b, model=model, registry=registry, threshold=threshold).to_dict()
    if as_json:
        typer.echo(json.dumps({"a": str(a), "b": str(b), **result}, indent=2))
        return
    if result["same"] is None:
        typer.echo(f"score {result['score']:.3f}: no threshold to decide with (pass --threshold or a calibrated --registry)")
    else:
        verdict = "same speaker" if result["same"] else "different speakers"
        typer.echo(f"score {result['score']:.3f}: {verdict} (threshold {result['threshold']:.3f}, {result['threshold_source']})")


@app.command()
def calibrate(
    data_dir: Path = typer.Argument(..., help="Folder of <speaker>/ folders, two or more recordings each."),
    registry: Path = typer.Option(..., help="Registry to store the threshold in (created if missing)."),
    model: Optional[Path] = typer.Option(None, help="A trained run whose embedding layer to use (default: the registry's, or GE2E)."),
    enroll_recordings: int = typer.Option(3, "--enroll", help="Recordings per speaker that build its temporary reference."),
    trial_seconds: Optional[float] = typer.Option(None, help="Cut trials into clips this long (default: whole recordings)."),
    far: float = typer.Option(0.01, help="False-accept rate the stored threshold keeps to."),
    p_target: float = typer.Option(0.01, help="Target prior of the detection cost (minDCF)."),
    seed: int = typer.Option(0, help="Seed of the enrollment/trial split."),
    plot: Optional[Path] = typer.Option(None, help="Where to draw the DET curve (default: beside the registry)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Measure EER and minDCF on your own recordings and store the threshold at a chosen false-accept rate."""
    from speakerid.calibration import calibrate as run_calibrate
    from speakerid.progress import print_table

    plot = plot or registry.with_name(registry.stem + "-det.png")
    result = run_calibrate(registry, data_dir, model=model, enroll_per_speaker=enroll_recordings,
                           trial_seconds=trial_seconds, far=far, p_target=p_target, seed=seed, out=plot,
                           progress=not quiet)
    if as_json:
        import json

        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    print_table(f"{len(result.speakers)} speakers, {len(result.target_scores)} target and "
                f"{len(result.nontarget_scores)} non-target trials ({result.encoder})", ["measure", "value", "threshold"], [
        ["EER", f"{result.eer:.2%}", f"{result.eer_threshold:.3f}"],
        [f"minDCF (p_target {result.p_target:g})", f"{result.min_dcf:.3f}", f"{result.min_dcf_threshold:.3f}"],
        [f"FAR at the stored threshold (asked {result.far:g})", f"{result.far_measured:.2%}", f"{result.threshold:.3f}"],
        ["miss rate at the stored threshold", f"{result.frr:.2%}", ""],
    ])
    for speaker, why in result.skipped:
        typer.secho(f"skipped: {speaker}: {why}", err=True, fg="yellow")
    for path, why in result.failed:
        typer.secho(f"rejected: {path}: {why}", err=True, fg="yellow")
    typer.echo(f"stored threshold {result.threshold:.3f} in {registry}; DET curve: {result.plot}")


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
    if as_json:
        import json

        typer.echo(json.dumps({"encoder": store.encoder_name, "threshold": store.threshold, "speakers": rows}, indent=2))
        return
    threshold = store.threshold
    print_table(f"{registry}: {len(rows)} speakers ({store.encoder_name or 'no encoder yet'}; threshold "
                f"{'%.3f calibrated' % threshold['value'] if threshold else 'not calibrated'})",
                ["speaker", "recordings", "enrolled", "updated"],
                [[r["name"], r["embeddings"], r["created"][:19], r["updated"][:19]] for r in rows])


@speakers_app.command("rename")
def speakers_rename(old: str, new: str, registry: Path = typer.Option(..., help="Registry file.")) -> None:
    """Rename an enrolled speaker."""
    from speakerid.registry import Registry

    Registry(registry, create=False).rename(old, new)
    typer.echo(f"renamed {old} to {new}")


@speakers_app.command("remove")
def speakers_remove(name: str, registry: Path = typer.Option(..., help="Registry file.")) -> None:
    """Remove an enrolled speaker and its recordings' embeddings."""
    from speakerid.registry import Registry

    Registry(registry, create=False).remove(name)
    typer.echo(f"removed {name}")


@app.command()
def serve(
    registry: Path = typer.Option(..., help="Registry file (SQLite), created if missing."),
    model: Optional[Path] = typer.Option(None, help="A trained run whose embedding layer to use (default: the registry's, or GE2E)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 exposes the service to the network."),
    port: int = typer.Option(8000, help="TCP port."),
    token: Optional[str] = typer.Option(None, envvar="SPEAKERID_TOKEN", help="Token that enroll and delete require (or env SPEAKERID_TOKEN)."),
    max_mb: float = typer.Option(20.0, help="Largest upload in MiB."),
    max_seconds: float = typer.Option(300.0, help="Longest upload in seconds of audio."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: int = typer.Option(1, min=1, help="Torch threads per request (requests run concurrently)."),
) -> None:
    """Serve identify, verify, enroll and the speaker list over HTTP, with a web page at /."""
    from speakerid.server import serve as run_serve

    if token is None:
        typer.secho("note: no --token: anyone who can reach the service can enroll and remove speakers", err=True)
    run_serve(registry, model=model, host=host, port=port, token=token, max_bytes=int(max_mb * 2**20),
              max_seconds=max_seconds, device=device, threads=threads)


def main() -> None:
    try:
        code = app(standalone_mode=False)  # returns the code of a `typer.Exit` raised by a command
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
