"""Training on real speech: resume equals an uninterrupted run (with a margin head, crops and augmentation too),
DDP on two CPU processes, run-directory safety, and a margin run serving evaluate, identify and encoders."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from speakerid.augment import AugmentConfig
from speakerid.errors import RunError
from speakerid.training import TrainConfig, train

CONFIG = TrainConfig(model="cnn", epochs=4, patience=0, seed=3)


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def uninterrupted(small_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "whole"
    train(small_corpus, out, CONFIG, progress=False)
    return out


def test_training_learns_and_writes_a_run_directory(uninterrupted):
    rows = metrics(uninterrupted)
    assert len(rows) == 4
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[-1]["val_acc"]) >= 0.75  # 4 speakers: chance is 0.25
    assert {p.name for p in uninterrupted.iterdir()} >= {
        "config.json", "labels.json", "model.safetensors", "checkpoint.pt", "metrics.csv", "curves.png"}
    config = json.loads((uninterrupted / "config.json").read_text())
    assert config["model"]["name"] == "cnn" and config["chunking"]["chunk_seconds"] == 3
    assert config["result"]["epochs_run"] == 4


def test_resume_after_an_interruption_matches_an_uninterrupted_run(small_corpus, uninterrupted, tmp_path):
    out = tmp_path / "interrupted"

    def interrupt_after_second_epoch(epoch, row, model):
        if epoch == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived right after epoch 2 was checkpointed

    with pytest.raises(KeyboardInterrupt):
        train(small_corpus, out, CONFIG, progress=False, on_epoch=interrupt_after_second_epoch)
    assert len(metrics(out)) == 2
    with pytest.raises(RunError, match="--resume"):
        train(small_corpus, out, CONFIG, progress=False)

    result = train(small_corpus, out, CONFIG, resume=True, progress=False)
    assert result.epochs_run == 4
    assert metrics(out) == metrics(uninterrupted)
    resumed, whole = load_file(out / "model.safetensors"), load_file(uninterrupted / "model.safetensors")
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)


def test_resume_refuses_other_settings_and_force_restarts(small_corpus, uninterrupted, tmp_path):
    out = tmp_path / "run"
    train(small_corpus, out, TrainConfig(model="cnn", epochs=1), progress=False)
    with pytest.raises(RunError, match="other settings"):
        train(small_corpus, out, TrainConfig(model="cnn", epochs=2, lr=0.01), resume=True, progress=False)
    more = train(small_corpus, out, TrainConfig(model="cnn", epochs=2), resume=True, progress=False)
    assert more.epochs_run == 2  # raising --epochs is allowed
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="did not write"):
        train(small_corpus, out, TrainConfig(model="cnn", epochs=1), force=True, progress=False)
    (out / "notes.txt").unlink()
    assert train(small_corpus, out, TrainConfig(model="cnn", epochs=1), force=True, progress=False).epochs_run == 1


def test_ddp_on_two_cpu_processes(small_corpus, uninterrupted, tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "speakerid", "train", str(small_corpus),
         "--out", str(out), "--model", "cnn", "--epochs", "4", "--patience", "0", "--crop", "off", "-q"],
        capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == {p.name for p in uninterrupted.iterdir() if p.name != "checkpoint.pt.tmp"}
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2 and config["result"]["epochs_run"] == 4
    rows = metrics(out)
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[-1]["val_acc"]) >= 0.75
    assert done.stdout.count("best validation accuracy") == 1  # only rank 0 speaks


def test_sharding_gives_each_process_a_distinct_part_of_every_epoch(small_corpus):
    from torch.utils.data import DistributedSampler

    from speakerid.corpus import Corpus
    from speakerid.trainset import ChunkDataset

    dataset = ChunkDataset(Corpus.open(small_corpus), "train")
    shards = []
    for rank in (0, 1):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(5)
        shards.append(list(sampler))
    assert set(shards[0]) | set(shards[1]) == set(range(len(dataset)))
    assert len(set(shards[0]) & set(shards[1])) <= 1  # at most the one padding repeat


ADAPT_STYLE = TrainConfig(
    model="cnn", epochs=2, patience=0, seed=1, head="arcmargin", margin_warmup=1.5, crop=(1.5, 2.5),
    lr_schedule="cosine", warmup_epochs=0.5, weight_decay=1e-4,
    augment=AugmentConfig(noise=0.5, babble=0.5, reverb=0.5, gain=0.5, speed=0.5, time_mask=0.5, freq_mask=0.5))


def test_margin_head_with_crops_and_augmentation_resumes_exactly(small_corpus, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    train(small_corpus, whole, ADAPT_STYLE, progress=False)

    def interrupt(epoch, row, model):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(small_corpus, cut, ADAPT_STYLE, progress=False, on_epoch=interrupt)
    train(small_corpus, cut, ADAPT_STYLE, resume=True, progress=False)
    assert metrics(cut) == metrics(whole)
    resumed, uninterrupted = load_file(cut / "model.safetensors"), load_file(whole / "model.safetensors")
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    config = json.loads((whole / "config.json").read_text())
    assert config["model"]["head"] == {"kind": "arcmargin", "scale": 32.0, "margin": 0.2}
    assert config["train"]["crop"] == [1.5, 2.5] and config["train"]["augment"]["reverb"] == 0.5
    with pytest.raises(RunError, match="other settings"):  # the augmentation is part of the settings
        train(small_corpus, cut, replace(ADAPT_STYLE, augment=AugmentConfig()), resume=True, progress=False)


def test_a_margin_run_evaluates_identifies_and_embeds(small_corpus, dsp20, tmp_path):
    from speakerid.audio import load_audio
    from speakerid.encoders import RunEncoder
    from speakerid.evaluation import evaluate
    from speakerid.identify import Identifier

    run = tmp_path / "margin"
    train(small_corpus, run, replace(ADAPT_STYLE, epochs=4, augment=AugmentConfig()), progress=False)
    report = evaluate(run, progress=False)
    assert report["recording_accuracy"] >= 0.75  # 4 test takes of 4 speakers: chance is 0.25
    identifier = Identifier.load(run, device="cpu")  # a softmax over the scaled cosines
    speaker = identifier.speakers[2]
    answer = identifier.identify(dsp20 / speaker / "take05.flac", top_k=4)
    assert answer.speaker == speaker and abs(sum(p for _, p in answer.ranking) - 1) < 1e-5
    encoder = RunEncoder.from_dir(run, device="cpu")
    takes = [load_audio(dsp20 / s / t)[: 10 * 16000] for s in identifier.speakers[:2] for t in ("take04.flac", "take05.flac")]
    vectors = encoder.embed_many(takes)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    same, other = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert same > other


def test_bad_training_options_are_refused():
    with pytest.raises(RunError, match="head 'cosface' is unknown"):
        TrainConfig(head="cosface")
    with pytest.raises(RunError, match="crop"):
        TrainConfig(crop=(3.0, 1.5))
    with pytest.raises(RunError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(RunError, match="margin"):
        TrainConfig(head="arcmargin", margin=2.0)


def test_default_crops_follow_the_corpus_chunk():
    from speakerid.training import crop_samples

    assert TrainConfig().crop == "chunk"
    assert crop_samples("chunk", 3.0, 16000) == (24000, 48000)
    assert crop_samples("chunk", 10.0, 16000) == (80000, 160000)  # a 10-s corpus trains on 5-10 s, not 3
    assert crop_samples((1.5, 2.0), 10.0, 16000) == (24000, 32000) and crop_samples(None, 3.0, 16000) is None
    with pytest.raises(RunError, match="crop"):
        TrainConfig(crop="half")
