"""ONNX export of speaker models, and onnxruntime as an engine for identify and serve.

The graph takes int16 waveforms (batch, samples), both dimensions dynamic, and computes the
features inside (torch.stft exports as ONNX's STFT operator); it answers `logits` (batch,
classes) and `embedding` (batch, dim). Its metadata holds what a deployment needs without
speakerid: the speaker labels, the chunking the model was trained on and the model config.

LSTM layers are exported as ONNX LSTM operators (torch.export would unroll them over a fixed
length). The export and the engine need the optional packages: `pip install 'speakerid[onnx]'`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from speakerid.audio import to_int16
from speakerid.errors import ModelError
from speakerid.models import SpeakerModel
from speakerid.rundir import ONNX_FILE, WEIGHTS_FILE, Run, load_run

__all__ = ["export_onnx", "export_run", "OnnxModel", "use_engine", "ONNX_FILE", "ENGINES"]

FORMAT = "speakerid-onnx/1"
OPSET = 18
ENGINES = ("torch", "onnx")
INSTALL_HINT = "install it with `pip install 'speakerid[onnx]'` (onnx, onnxscript and onnxruntime)"
MIN_SAMPLES = 400  # the shortest input the exported graph accepts: one 25-ms frame at 16 kHz


def _require(module: str, purpose: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModelError(f"{purpose} needs the {module} package, which is not installed; {INSTALL_HINT}") from None


# --- LSTM layers as ONNX operators ---------------------------------------------------------------


@torch.library.custom_op("speakerid::onnx_lstm", mutates_args=())
def _lstm_layer(x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor,
                hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM layer, batch first, with ONNX's weight layout (gates i, o, f, c): (outputs, final hidden states)."""
    directions = w.shape[0]
    params = []
    for d in range(directions):
        params += [_torch_gates(w[d]), _torch_gates(r[d]), _torch_gates(b[d, : 4 * hidden]), _torch_gates(b[d, 4 * hidden :])]
    zeros = x.new_zeros(directions, x.shape[0], hidden)
    outputs, h, _ = torch._VF.lstm(x, (zeros, zeros), params, True, 1, 0.0, False, directions == 2, True)
    return outputs, h


@_lstm_layer.register_fake
def _(x, w, r, b, hidden):
    directions = w.shape[0]
    return x.new_empty(x.shape[0], x.shape[1], directions * hidden), x.new_empty(directions, x.shape[0], hidden)


def _onnx_gates(t: torch.Tensor) -> torch.Tensor:
    i, f, g, o = t.chunk(4, 0)  # torch's gate order
    return torch.cat([i, o, f, g])


def _torch_gates(t: torch.Tensor) -> torch.Tensor:
    i, o, f, g = t.chunk(4, 0)  # ONNX's gate order
    return torch.cat([i, f, g, o])


class OnnxLstm(nn.Module):
    """A drop-in for an `nn.LSTM` (batch first, zero initial state) whose layers export as ONNX LSTM operators."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        if not lstm.batch_first or lstm.proj_size or not lstm.bias:
            raise ModelError("only batch-first LSTMs with biases and without projections export to ONNX")
        self.hidden, self.layers = lstm.hidden_size, lstm.num_layers
        suffixes = [""] + (["_reverse"] if lstm.bidirectional else [])
        for layer in range(lstm.num_layers):
            get = lambda name: [_onnx_gates(getattr(lstm, f"{name}_l{layer}{s}").detach()) for s in suffixes]
            self.register_buffer(f"w{layer}", torch.stack(get("weight_ih")))
            self.register_buffer(f"r{layer}", torch.stack(get("weight_hh")))
            self.register_buffer(f"b{layer}", torch.stack([torch.cat(p) for p in zip(get("bias_ih"), get("bias_hh"))]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, None]]:
        finals = []
        for layer in range(self.layers):
            x, h = torch.ops.speakerid.onnx_lstm(x, getattr(self, f"w{layer}"), getattr(self, f"r{layer}"),
                                                 getattr(self, f"b{layer}"), self.hidden)
            finals.append(h)
        return x, (torch.cat(finals), None)  # like nn.LSTM: (outputs, (h_n, c_n)); c_n is never used


def _translate_lstm(x, w, r, b, hidden: int):
    """onnxscript translation of speakerid::onnx_lstm: one ONNX LSTM node between transposes."""
    from onnxscript import opset18 as op

    bidirectional = w.shape[0] == 2
    y, h, _ = op.LSTM(op.Transpose(x, perm=[1, 0, 2]), w, r, b, hidden_size=hidden,
                      direction="bidirectional" if bidirectional else "forward")
    y = op.Transpose(y, perm=[2, 0, 1, 3])  # (seq, dirs, batch, hidden) -> (batch, seq, dirs, hidden)
    y = op.Reshape(y, op.Concat(op.Shape(y, start=0, end=2), op.Constant(value_ints=[-1]), axis=0))
    return y, h


# --- Export --------------------------------------------------------------------------------------


class _Exported(nn.Module):
    """Waves -> (logits, embedding): what the ONNX graph computes."""

    def __init__(self, model: SpeakerModel):
        super().__init__()
        self.model = model

    def forward(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.logits_and_embedding(waves)


def export_onnx(model: SpeakerModel, out: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write `model` (any family, trained or adapted) as an ONNX file with its frontend inside.

    `metadata` (JSON-ready values) is stored in the file's metadata as JSON strings, beside the
    model config. A layer that cannot be exported raises ModelError naming it.
    """
    import copy

    _require("onnxscript", "ONNX export")
    _require("onnx", "ONNX export")
    out = Path(out)
    graph_model = copy.deepcopy(model).cpu().eval()
    for name, module in list(graph_model.named_modules()):
        if isinstance(module, nn.LSTM):
            parent, _, attribute = name.rpartition(".")
            setattr(graph_model.get_submodule(parent), attribute, OnnxLstm(module))
    example = torch.zeros(2, max(MIN_SAMPLES, 16000), dtype=torch.int16)
    batch, samples = torch.export.Dim("batch"), torch.export.Dim("samples", min=MIN_SAMPLES)
    try:
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                _Exported(graph_model).eval(), (example,), dynamo=True, opset_version=OPSET, input_names=["waves"],
                output_names=["logits", "embedding"], dynamic_shapes={"waves": {0: batch, 1: samples}},
                custom_translation_table={torch.ops.speakerid.onnx_lstm.default: _translate_lstm}, verbose=False,
            )
    except Exception as err:  # the exporter raises many types; name the layer that failed
        raise ModelError(f"the {model.name} model cannot be exported to ONNX: {_failed_layer(err, graph_model)}") from None
    values = {"format": FORMAT, "model": model.config(), **(metadata or {})}
    for key, value in values.items():
        program.model.metadata_props[key] = json.dumps(value, ensure_ascii=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    program.save(str(tmp))
    os.replace(tmp, out)
    return out


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's warnings and log lines (torchvision missing, deprecations) say nothing to a user."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _failed_layer(err: BaseException, model: nn.Module) -> str:
    """'layer NAME (Type): first line of the error' for the innermost module of `model` running when it failed."""
    names = {id(module): name for name, module in model.named_modules() if name}
    layer, cause = None, err
    chain = []
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for exc in chain:
        for frame, _ in traceback.walk_tb(exc.__traceback__):
            module = frame.f_locals.get("self")
            if isinstance(module, nn.Module) and id(module) in names:
                layer = module
    message = next((str(e).strip().splitlines()[0] for e in reversed(chain) if str(e).strip()), type(err).__name__)
    if layer is None:
        return message
    return f"layer {names[id(layer)].removeprefix('model.')} ({type(layer).__name__}) failed: {message}"


def export_run(run: str | Path | Run, out: str | Path | None = None) -> Path:
    """Export a trained run to ONNX (default: RUN/model.onnx), with its labels and chunking in the metadata."""
    run = run if isinstance(run, Run) else load_run(run, "cpu")
    return export_onnx(run.model, out or run.path / ONNX_FILE, {
        "labels": run.labels, "chunking": run.config["chunking"], "weights_sha256": _sha256(run.path / WEIGHTS_FILE),
    })


def export_adapted(registry: str | Path, out: str | Path) -> Path:
    """Export a registry's adapted encoder (what `speakerid adapt` trained) to ONNX, with its chunking in the metadata."""
    from speakerid.encoders import RunEncoder
    from speakerid.errors import RegistryError
    from speakerid.registry import ADAPTED, Registry

    with Registry(registry, create=False) as store:
        record = next((e for e in store.encoders() if e.role == ADAPTED), None)
        if record is None:
            raise RegistryError(f"{registry} has no adapted encoder to export; run `speakerid adapt --registry {registry}` first")
        encoder = RunEncoder.from_bytes(store.encoder_weights(record.name), record.config, store.path, "cpu")
    return export_onnx(encoder.run.model, out, {"encoder": encoder.name, "labels": encoder.run.labels,
                                                "chunking": encoder.run.config["chunking"],
                                                "weights_sha256": encoder.spec["sha256"]})


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- The onnxruntime engine ----------------------------------------------------------------------


class OnnxModel(nn.Module):
    """An exported model run by onnxruntime, with the interface identify and the encoders use
    (`forward` -> logits, `embed` -> embedding, `logits_and_embedding`, `n_classes`, `embedding_dim`,
    `name`), on the CPU."""

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        ort = _require("onnxruntime", "the onnx engine")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()  # the same thread policy as torch
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable or foreign files
            raise ModelError(f"{path} is not a readable ONNX model ({str(err).strip().splitlines()[0]}); export it again") from None
        self.metadata = {k: json.loads(v) for k, v in self.session.get_modelmeta().custom_metadata_map.items()}
        if self.metadata.get("format") != FORMAT:
            raise ModelError(f"{path} was not exported by speakerid (no {FORMAT} metadata); export it with `speakerid export-onnx`")
        config = self.metadata["model"]
        self.name, self.n_classes = config["name"], config["n_classes"]
        self.embedding_dim = self.session.get_outputs()[1].shape[1]
        # callers find a model's device from its parameters: this one computes on the CPU
        self.device_marker = nn.Parameter(torch.zeros(0), requires_grad=False)

    def _run(self, waves: torch.Tensor, output: str) -> torch.Tensor:
        samples = waves.cpu().numpy()
        if samples.dtype != np.int16:
            samples = to_int16(samples)
        return torch.from_numpy(self.session.run([output], {"waves": np.ascontiguousarray(samples)})[0])

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self._run(waves, "logits")

    def embed(self, waves: torch.Tensor) -> torch.Tensor:
        return self._run(waves, "embedding")

    def logits_and_embedding(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        samples = waves.cpu().numpy()
        if samples.dtype != np.int16:
            samples = to_int16(samples)
        logits, embedding = self.session.run(["logits", "embedding"], {"waves": np.ascontiguousarray(samples)})
        return torch.from_numpy(logits), torch.from_numpy(embedding)


def use_engine(run: Run, engine: str, threads: int | None = None) -> Run:
    """The run, its model computed by `engine`: "torch" (as loaded), or "onnx": RUN/model.onnx with
    onnxruntime on the CPU, exported first when missing or made from other weights."""
    if engine not in ENGINES:
        raise ModelError(f"engine {engine!r} is unknown; use one of {', '.join(ENGINES)}")
    if engine == "torch":
        return run
    _require("onnxruntime", "--engine onnx")
    path = run.path / ONNX_FILE
    current = _sha256(run.path / WEIGHTS_FILE)
    try:
        model = OnnxModel(path, threads) if path.is_file() else None
    except ModelError:  # a torn or foreign file where the export belongs: export again
        model = None
    if model is None or model.metadata.get("weights_sha256") != current:
        export_run(run, path)
        model = OnnxModel(path, threads)
    run.model = model
    return run
