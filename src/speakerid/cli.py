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
    workers: Optional[int] = typer.Option(None, help="Decoding threads (default: all cores)."),
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
    """Write every chunk as a WAV file (what pydub's make_chunks produced). Resumes; never overwrites."""
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


def main() -> None:
    try:
        code = app(standalone_mode=False)  # returns the code of a `typer.Exit` raised by a command
    except SpeakerIdError as err:
        typer.secho(f"error: {err}", err=True, fg="red")
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True, fg="red")
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except Exception as err:  # click usage errors and aborts arrive here in non-standalone mode
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            sys.exit(EXIT_ERROR)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
