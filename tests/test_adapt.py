"""adapt: an encoder learnt from the enrolled voices (real so125 speech), fused with GE2E; resumable,
deterministic, one at a time, and the registry answers with its previous encoders meanwhile."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from speakerid.adapt import adapt
from speakerid.audio import load_audio
from speakerid.errors import RegistryError
from speakerid.registry import ADAPTED, Registry
from speakerid.voices import VoiceRegistry

SPEAKERS, SENTENCES, EPOCHS = 5, 6, 3


@pytest.fixture(scope="module")
def enrolled(so125, tmp_path_factory):
    """A registry of 5 so125 speakers x 6 sentences (GE2E), and each speaker's held-back sentences."""
    root = tmp_path_factory.mktemp("adapt")
    folders = sorted(p for p in so125.iterdir() if p.is_dir())[:SPEAKERS]
    voices = VoiceRegistry(root / "voices.db")
    for folder in folders:
        voices.enroll(folder.name, sorted(folder.glob("*.flac"))[:SENTENCES])
    voices.close()
    return root / "voices.db", {f.name: sorted(f.glob("*.flac"))[SENTENCES:] for f in folders}


@pytest.fixture(scope="module")
def adapted(enrolled, tmp_path_factory):
    path, _ = enrolled
    copy = tmp_path_factory.mktemp("adapted") / "voices.db"
    copy.write_bytes(path.read_bytes())
    return copy, adapt(copy, epochs=EPOCHS, progress=False)


def test_adapt_installs_a_second_encoder_and_scores_with_both(adapted, enrolled):
    path, result = adapted
    _, held_back = enrolled
    registry = Registry(path)
    records = registry.encoders()
    assert [r.role for r in records] == ["base", ADAPTED] and records[1].name == result.encoder
    assert (result.speakers, result.recordings, result.epochs) == (SPEAKERS, SPEAKERS * SENTENCES, EPOCHS)
    # one sentence in eight held out per speaker (at least one): never trained on, kept for calibration
    assert result.held_out == SPEAKERS and len(records[1].config["held_out"]) == SPEAKERS
    # every recording embedded by both encoders; a provisional scoring until calibrate meets strangers
    assert all(len(registry.embeddings(r.name)) == SPEAKERS * SENTENCES for r in records)
    assert registry.scoring["source"] == "adapt (uncalibrated)" and registry.scoring["encoders"] == [r.name for r in records]
    train = records[1].config["run"]["train"]  # the recipe: the tdnn at 128 channels, levels augmented
    assert (train["model"], train["options"], train["augment"]["gain"]) == ("tdnn", {"channels": 128}, 0.8)
    assert not path.with_name(path.name + ".adapt").exists()  # the work folder goes once the encoder is in

    voices = VoiceRegistry(path)
    answers = [(speaker, voices.identify(f)) for speaker, files in held_back.items() for f in files]
    assert all(a.encoders == [r.name for r in records] for _, a in answers)
    assert np.mean([a.ranking[0][0] == speaker for speaker, a in answers]) >= 0.8
    assert set(answers[0][1].ranking[0][2]) == {r.name for r in records}  # each encoder's cosine is reported
    # a speaker enrolled after adapt is embedded by both encoders
    newcomer = sorted(p for p in held_back.values())[0][:2]
    assert voices.enroll("later", newcomer).added == 2
    assert len(voices.registry.embeddings(result.encoder)) == SPEAKERS * SENTENCES + 2
    voices.close()


def test_adapt_is_deterministic_and_exports_to_onnx(adapted, enrolled, tmp_path):
    path, first = adapted
    original, held_back = enrolled
    again = tmp_path / "voices.db"
    again.write_bytes(original.read_bytes())
    assert adapt(again, epochs=EPOCHS, progress=False).encoder == first.encoder  # same weights, same name

    pytest.importorskip("onnxruntime")
    from speakerid.deploy import OnnxModel, export_adapted

    exported = OnnxModel(export_adapted(path, tmp_path / "adapted.onnx"))
    voices = VoiceRegistry(path)
    encoder = voices.encoders[1]
    import torch

    wave = torch.from_numpy((load_audio(next(iter(held_back.values()))[0])[: 3 * 16000] * 32767).astype(np.int16))[None]
    with torch.inference_mode():
        expected = encoder.run.model.embed(wave).numpy()
    assert np.abs(exported.embed(wave).numpy() - expected).max() < 1e-4
    voices.close()


def test_adapt_needs_two_speakers_with_enough_audio(enrolled, tmp_path):
    _, held_back = enrolled
    voices = VoiceRegistry(tmp_path / "one.db")
    voices.enroll("alone", next(iter(held_back.values())))
    voices.close()
    with pytest.raises(RegistryError, match=r"at least 2 speakers with 8 s or more of enrolled audio"):
        adapt(tmp_path / "one.db", progress=False)
    with pytest.raises(RegistryError, match="no such registry"):
        adapt(tmp_path / "missing.db", progress=False)


# Ctrl-C raises KeyboardInterrupt as in a terminal, even when the suite itself was started in the
# background (a shell's `&` makes it ignore SIGINT, and Python then leaves it ignored).
ADAPT = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
         "from speakerid.adapt import adapt; adapt(sys.argv[1], epochs=int(sys.argv[2]), progress=False)")


def test_an_interrupted_adapt_resumes_and_only_one_runs_at_a_time(adapted, enrolled, tmp_path):
    _, first = adapted
    original, held_back = enrolled
    path = tmp_path / "voices.db"
    path.write_bytes(original.read_bytes())
    checkpoint = path.with_name(path.name + ".adapt") / "run" / "checkpoint.pt"
    running = subprocess.Popen([sys.executable, "-c", ADAPT, str(path), str(EPOCHS)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not checkpoint.exists():  # its first epoch is done
        assert running.poll() is None and time.monotonic() < deadline, running.stderr.read()
        time.sleep(0.01)
    running.send_signal(signal.SIGSTOP)  # held in the middle of training, its lock taken
    with pytest.raises(RegistryError, match="another `speakerid adapt` is adapting"):
        adapt(path, epochs=EPOCHS, progress=False)
    # meanwhile the registry answers with its previous encoder
    voices = VoiceRegistry(path)
    answer = voices.identify(next(iter(held_back.values()))[0])
    assert len(answer.encoders) == 1 and answer.encoders[0].startswith("ge2e/")
    voices.close()
    running.send_signal(signal.SIGINT)  # Ctrl-C, delivered as it goes on
    running.send_signal(signal.SIGCONT)
    assert running.wait(timeout=120) != 0
    assert [r.role for r in Registry(path).encoders()] == ["base"]  # nothing half-installed
    resumed = adapt(path, epochs=EPOCHS, progress=False)
    assert resumed.resumed and resumed.encoder == first.encoder  # the same encoder as an uninterrupted adapt


def test_the_command_takes_train_s_recipe_flags_and_refuses_bad_ones(enrolled, tmp_path):
    original, _ = enrolled
    path = tmp_path / "voices.db"
    path.write_bytes(original.read_bytes())
    speakerid = [sys.executable, "-m", "speakerid", "adapt", "--registry", str(path), "--quiet", "--epochs", "1"]

    for flags, why in ((["--head", "cosface"], "head"), (["--model", "resnet50"], "adapt trains one of cnn, tdnn, lstm")):
        refused = subprocess.run([*speakerid, *flags], capture_output=True, text=True)
        assert refused.returncode == 1 and why in refused.stderr and "Traceback" not in refused.stderr
    assert [r.role for r in Registry(path).encoders()] == ["base"]
    assert not path.with_name(path.name + ".adapt").exists()  # nothing written for settings it refuses

    done = subprocess.run([*speakerid, "--model", "tdnn", "--head", "arcmargin", "--margin", "0.3", "--crop", "off",
                           "--augment", "--aug", "speed=0"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    adapted = Registry(path).encoders()[1]
    train = adapted.config["run"]["train"]
    assert (train["model"], train["head"], train["margin"], train["crop"]) == ("tdnn", "arcmargin", 0.3, None)
    assert train["augment"]["noise"] > 0 and train["augment"]["speed"] == 0


def test_aug_settings_change_the_recipe_s_augmentation_unless_augment_is_given():
    from speakerid.adapt import adapt_training
    from speakerid.cli import _recipe

    recipe = adapt_training().augment
    changed = _recipe(None, None, None, None, None, None, None, ["reverb=0.5"], recipe)["augment"]
    assert (changed.gain, changed.gain_db, changed.reverb) == (0.8, (-10.0, 10.0), 0.5)
    assert _recipe(None, None, None, None, None, None, False, [], recipe)["augment"].active is False  # --no-augment
    standard = _recipe(None, None, None, None, None, None, True, ["speed=0"], recipe)["augment"]
    assert standard.noise > 0 and standard.speed == 0
    assert "augment" not in _recipe(None, None, None, None, None, None, None, [], recipe)  # the recipe's own
