"""ONNX export and the onnxruntime engine: parity with PyTorch on real speech for every family, metadata,
identify and serve with --engine onnx, and the refusals (a layer that does not export, no onnxruntime)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import write_run
from speakerid.audio import load_pcm16
from speakerid.deploy import ONNX_FILE, OnnxLstm, OnnxModel, export_onnx, export_run, use_engine
from speakerid.errors import ModelError
from speakerid.features import FeatureConfig
from speakerid.identify import Identifier
from speakerid.models import SpeakerModel, build_model
from speakerid.rundir import load_run

SPEAKERID = str(Path(sys.executable).with_name("speakerid"))


@pytest.fixture(scope="module")
def speech(dsp20) -> torch.Tensor:
    """Four real 3-s windows from two speakers, int16."""
    speakers = sorted(p for p in dsp20.iterdir() if p.is_dir())[:2]
    samples = [load_pcm16(s / "take02.flac")[0] for s in speakers]
    return torch.from_numpy(np.stack([x[start : start + 48000] for x in samples for start in (16000, 160000)]))


def trained_like(model: SpeakerModel) -> SpeakerModel:
    """Batch-norm statistics of real use (not the 0/1 of a new model), so every layer's scale matters."""
    torch.manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def assert_parity(model: SpeakerModel, path: Path, speech: torch.Tensor) -> None:
    engine = OnnxModel(path)
    for waves in (speech, speech[:3, :40000]):  # another batch size and length than the export's example
        with torch.no_grad():
            assert (engine(waves) - model(waves)).abs().max() < 1e-4
            assert (engine.embed(waves) - model.embed(waves)).abs().max() < 1e-4


@pytest.mark.parametrize("family, options", [
    ("cnn", {}), ("tdnn", {}), ("lstm", {"bidirectional": True}), ("resnet50", {"image_size": 64, "trainable": []}),
])
def test_every_family_matches_pytorch_on_real_speech(family, options, speech, tmp_path):
    torch.manual_seed(0)
    model = trained_like(build_model(family, 3, FeatureConfig(), **options))
    assert_parity(model, export_onnx(model, tmp_path / "m.onnx"), speech)


@pytest.mark.parametrize("features", [
    FeatureConfig(kind="logmel", normalize=True), FeatureConfig(kind="spectrogram", n_fft=512, win_length=400),
    FeatureConfig.librosa(n_mfcc=20, n_fft=512),  # float64 frontend, dB with top_db
])
def test_the_stft_frontend_inside_the_graph_matches_torch(features, speech, tmp_path):
    torch.manual_seed(0)
    model = trained_like(build_model("cnn", 2, features))
    assert_parity(model, export_onnx(model, tmp_path / "m.onnx"), speech)


def test_onnx_lstm_layers_equal_torch_lstm():
    torch.manual_seed(0)
    lstm = nn.LSTM(40, 32, num_layers=2, batch_first=True, bidirectional=True)
    x = torch.randn(3, 17, 40)
    (expected, (h, _)), (got, (h_got, _)) = lstm(x), OnnxLstm(lstm)(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(h_got, h, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return write_run(trained_like(build_model("tdnn", 4, FeatureConfig(), channels=64)),
                     tmp_path_factory.mktemp("deploy") / "run", labels=["ann", "bob", "cy", "dee"])


def test_export_run_stores_labels_and_chunking(run_dir, tmp_path):
    engine = OnnxModel(export_run(run_dir, tmp_path / "tdnn.onnx"))
    assert engine.metadata["labels"] == ["ann", "bob", "cy", "dee"]
    assert engine.metadata["chunking"]["chunk_seconds"] == 3.0 and engine.metadata["model"]["name"] == "tdnn"
    assert (engine.n_classes, engine.embedding_dim) == (4, 192)


def test_identify_with_the_onnx_engine_answers_as_torch(run_dir, dsp20):
    files = [sorted(p for p in dsp20.iterdir() if p.is_dir())[i] / "take05.flac" for i in (0, 3)]
    torch_engine, onnx_engine = Identifier.load(run_dir, "cpu"), Identifier.load(run_dir, "cpu", engine="onnx")
    assert isinstance(onnx_engine.run.model, OnnxModel) and (run_dir / ONNX_FILE).is_file()
    for path in files:
        a, b = torch_engine.identify(path, top_k=4), onnx_engine.identify(path, top_k=4)
        assert [s for s, _ in a.ranking] == [s for s, _ in b.ranking]
        np.testing.assert_allclose([p for _, p in a.ranking], [p for _, p in b.ranking], atol=1e-5)


def test_an_export_from_other_weights_is_replaced(run_dir):
    use_engine(load_run(run_dir), "onnx")
    stale = run_dir / ONNX_FILE
    before = stale.stat().st_mtime_ns
    stale.write_bytes(b"torn")  # a half-written or foreign file where the export belongs
    assert isinstance(use_engine(load_run(run_dir), "onnx").model, OnnxModel) and stale.stat().st_mtime_ns != before


class DataDependent(nn.Module):
    """A layer whose Python control flow depends on the values: torch.export cannot follow it."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean(dim=-1)
        return pooled if float(pooled.sum()) > 0 else -pooled


def test_a_layer_that_does_not_export_is_named(tmp_path):
    features = FeatureConfig()
    model = SpeakerModel("custom", 2, features, {}, build_model("cnn", 2, features).frontend, DataDependent(),
                         nn.Linear(features.n_mfcc, 2), features.n_mfcc)
    with pytest.raises(ModelError, match=r"cannot be exported to ONNX: layer backbone \(DataDependent\) failed") as err:
        export_onnx(model, tmp_path / "m.onnx")
    assert "\n" not in str(err.value) and not (tmp_path / "m.onnx").exists()


def test_without_onnxruntime_the_engine_says_how_to_install_it(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` meets where it is not installed
    with pytest.raises(ModelError, match=r"pip install 'speakerid\[onnx\]'"):
        use_engine(load_run(run_dir), "onnx")
    with pytest.raises(ModelError, match="engine 'tensorrt' is unknown"):
        use_engine(load_run(run_dir), "tensorrt")


def test_cli_export_and_identify_with_onnx(run_dir, dsp20, tmp_path):
    out = tmp_path / "model.onnx"
    done = subprocess.run([SPEAKERID, "export-onnx", str(run_dir), str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and out.is_file(), done.stderr
    again = subprocess.run([SPEAKERID, "export-onnx", str(run_dir), str(out)], capture_output=True, text=True, timeout=600)
    assert again.returncode == 1 and "exists; pass --force" in again.stderr
    take = sorted(p for p in dsp20.iterdir() if p.is_dir())[1] / "take04.flac"
    answers = [json.loads(subprocess.run([SPEAKERID, "identify", str(run_dir), str(take), "--engine", engine, "--json"],
                                         capture_output=True, text=True, timeout=600, check=True).stdout)[0]
               for engine in ("torch", "onnx")]
    assert answers[0]["speaker"] == answers[1]["speaker"]
    assert abs(answers[0]["probability"] - answers[1]["probability"]) < 1e-4


def test_serve_scores_a_trained_run_with_onnx(run_dir, dsp20, tmp_path):
    import httpx

    from conftest import live_server
    from speakerid.server import create_app

    speakers = sorted(p for p in dsp20.iterdir() if p.is_dir())[:2]
    scores = {}
    for engine in ("torch", "onnx"):
        app = create_app(tmp_path / f"{engine}.db", model=run_dir, device="cpu", engine=engine)
        with live_server(app) as url, httpx.Client(base_url=url, timeout=120) as client:
            for s in speakers:
                enrolled = client.post("/enroll", data={"name": s.name}, files={"files": ("t1.flac", (s / "take01.flac").read_bytes())})
                assert enrolled.status_code == 200, enrolled.text
            answer = client.post("/identify", files={"file": ("t5.flac", (speakers[1] / "take05.flac").read_bytes())}).json()
            scores[engine] = {r["speaker"]: r["score"] for r in answer["ranking"]}
    assert scores["torch"].keys() == scores["onnx"].keys()
    assert all(abs(scores["torch"][s] - scores["onnx"][s]) < 1e-4 for s in scores["torch"])
    with pytest.raises(ModelError, match="--model RUN"):
        create_app(tmp_path / "ge2e.db", device="cpu", engine="onnx")


@pytest.mark.parametrize("features", [FeatureConfig(), FeatureConfig(n_fft=512, win_length=400, pad_mode="reflect"),
                                      FeatureConfig(center=False, hop_length=100)])
def test_the_exported_dft_equals_torch_stft(features, speech):
    """Exported graphs compute the STFT as a convolution with the windowed DFT basis (onnxruntime's STFT is slow)."""
    from speakerid.features import Frontend

    frontend = Frontend(features)
    x = speech.float() / 32768
    spec = torch.stft(x, features.n_fft, features.hop_length, window=frontend.window, center=features.center,
                      pad_mode=features.pad_mode, return_complex=True).transpose(1, 2)
    real, imaginary = frontend._dft(x)
    scale = spec.abs().max()
    assert (real - spec.real).abs().max() < 1e-5 * scale and (imaginary - spec.imag).abs().max() < 1e-5 * scale
