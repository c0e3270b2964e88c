"""The whole story on a built-in synthetic corpus, top to bottom: the recipe a newcomer reads first.

synthesize voices -> prepare (chunk, split by recording) -> plot MFCCs -> train the default model
-> evaluate on held-out recordings -> identify one held-out recording.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from speakerid.corpus import Corpus, PrepareConfig, prepare
from speakerid.errors import SpeakerIdError
from speakerid.evaluation import evaluate
from speakerid.identify import Identification, Identifier
from speakerid.plots import plot_mfcc_grid
from speakerid.synth import synthesize
from speakerid.training import TrainConfig, train

MARKER = "speakerid-demo.json"


@dataclass
class DemoResult:
    work: Path
    metrics: dict
    identification: Identification
    truth: str


def demo(work: str | Path, speakers: int = 8, minutes: float = 2.0, epochs: int = 12, seed: int = 0,
         progress: bool = True, say=print) -> DemoResult:
    """Run the demo in `work` (a folder the demo owns: it is emptied and rebuilt on every run)."""
    work = Path(work)
    _claim(work)

    say(f"1/6 synthesising {speakers} voices x {minutes:g} min into {work / 'voices'}")
    synthesize(work / "voices", speakers=speakers, minutes=minutes, recording_seconds=20, seed=seed, progress=progress)

    say("2/6 preparing 3-s chunks, split by recording (60 % train, 20 % validation, 20 % test)")
    prepared = prepare(work / "voices", work / "corpus", PrepareConfig(chunk_seconds=3, seed=seed), progress=progress)
    say(f"    {prepared.summary['chunks']}")

    say(f"3/6 drawing one MFCC per speaker: {work / 'mfcc.png'}")
    corpus = Corpus.open(work / "corpus")
    plot_mfcc_grid(corpus, work / "mfcc.png", seed=seed)

    say(f"4/6 training the default model ({TrainConfig().model}) for up to {epochs} epochs")
    train(corpus, work / "run", TrainConfig(epochs=epochs, seed=seed, patience=4), progress=progress)

    say("5/6 evaluating on the held-out test recordings")
    metrics = evaluate(work / "run", split="test", progress=progress)

    held_out = metrics["per_recording"][0]
    source = Path(prepared.summary["data_dir"]) / held_out["recording"]
    say(f"6/6 identifying a held-out recording: {source}")
    answer = Identifier.load(work / "run").identify(source, top_k=3)
    return DemoResult(work, metrics, answer, held_out["speaker"])


def _claim(work: Path) -> None:
    if work.exists() and any(work.iterdir()):
        if not (work / MARKER).is_file():
            raise SpeakerIdError(f"{work} is not empty and holds no earlier demo; choose a new folder for the demo")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text(json.dumps({"what": "speakerid demo; this folder is rebuilt by every demo run"}) + "\n")
