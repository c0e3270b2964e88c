"""speakerid.models: every registered model on real speech, and the ResNet-50 recipe's contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from speakerid.audio import SAMPLE_RATE, load_audio, to_int16
from speakerid.errors import ModelError
from speakerid.features import FeatureConfig
from speakerid.models import SpeakerModel, build_model, load_pretrained, model_from_config, model_names
from speakerid.models.resnet50 import STAGES

CHUNK = 3 * SAMPLE_RATE
FEATURES = FeatureConfig()
N_SPEAKERS = 4
# A small picture keeps each ResNet-50 test to seconds; the architecture is the same at any size.
OPTIONS = {"cnn": {}, "tdnn": {}, "lstm": {}, "resnet50": {"image_size": 64}}
FAMILIES = sorted(OPTIONS)
# Without ImageNet weights (none can be downloaded here) ResNet-50 learns from scratch: every stage trains.
FROM_SCRATCH = {"resnet50": {"trainable": list(STAGES), "dropout": 0.0}}


@pytest.fixture(scope="module")
def chunks(dsp20: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 3-s int16 chunks from the first recording of each of four dsp20 speakers, and their labels."""
    speakers = sorted(p for p in dsp20.iterdir() if p.is_dir())[:N_SPEAKERS]
    waves, labels = [], []
    for label, folder in enumerate(speakers):
        audio = to_int16(load_audio(folder / "take01.flac"))
        for start in (SAMPLE_RATE, SAMPLE_RATE + CHUNK):
            waves.append(audio[start : start + CHUNK])
            labels.append(label)
    return torch.from_numpy(np.stack(waves)), torch.tensor(labels)


def build(name: str, **options) -> SpeakerModel:
    return build_model(name, N_SPEAKERS, FEATURES, **(OPTIONS[name] | options))


def test_registry_knows_every_family():
    assert sorted(model_names()) == FAMILIES


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_and_embed_shapes(name, chunks):
    waves, _ = chunks
    torch.manual_seed(0)
    model = build(name).eval()
    with torch.no_grad():
        logits = model(waves[:3])
        embeddings = model.embed(waves[:3])
    assert logits.shape == (3, N_SPEAKERS)
    assert embeddings.shape == (3, model.embedding_dim)
    assert logits.dtype == embeddings.dtype == torch.float32
    assert torch.isfinite(logits).all() and torch.isfinite(embeddings).all()
    # chunks of different speakers must not collapse onto one embedding
    assert not torch.allclose(embeddings[0], embeddings[2])


@pytest.mark.parametrize("name", FAMILIES)
def test_config_round_trip_rebuilds_the_same_model(name, chunks):
    torch.manual_seed(1)
    model = build(name)
    config = json.loads(json.dumps(model.config()))
    assert config["name"] == name and config["n_classes"] == N_SPEAKERS
    assert config["features"] == FEATURES.to_dict()
    assert config["options"] and config["options"].items() >= OPTIONS[name].items()  # defaults filled in
    torch.manual_seed(1)
    rebuilt = model_from_config(config)
    assert rebuilt.config() == model.config()
    original, copy = model.state_dict(), rebuilt.state_dict()
    assert list(copy) == list(original)
    for key, value in original.items():
        assert torch.equal(copy[key], value), key
    waves, _ = chunks
    with torch.no_grad():
        assert torch.equal(model.eval()(waves[:2]), rebuilt.eval()(waves[:2]))


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ModelError, match="unknown model 'vgg'") as caught:
        build_model("vgg", N_SPEAKERS, FEATURES)
    for name in FAMILIES:
        assert name in str(caught.value)


@pytest.mark.parametrize("name", FAMILIES)
def test_unknown_option_is_refused(name):
    with pytest.raises(ModelError, match="no option 'colour'"):
        build(name, colour="red")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("cnn", {"channels": []}, "channels"),
        ("cnn", {"channels": 128}, "channels"),
        ("tdnn", {"dilations": [2, 0]}, "dilations"),
        ("lstm", {"pool": "max"}, "pool='max'"),
        ("resnet50", {"trainable": ["stem", "layer5"]}, "layer5"),
        ("resnet50", {"pool": "max"}, "pool='max'"),
    ],
)
def test_bad_option_values_are_refused(name, options, message):
    with pytest.raises(ModelError, match=message):
        build(name, **options)


def test_class_count_must_be_positive():
    with pytest.raises(ModelError, match="positive number of classes"):
        build_model("cnn", 0, FEATURES)


def test_config_without_features_is_refused():
    config = build("cnn").config()
    del config["features"]
    with pytest.raises(ModelError, match="lacks features"):
        model_from_config(config)


@pytest.mark.parametrize("name", FAMILIES)
def test_training_lowers_the_loss(name, chunks):
    waves, labels = chunks
    torch.manual_seed(0)
    model = build(name, **FROM_SCRATCH.get(name, {})).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(waves), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3]), losses


def test_batch_norm_statistics_average_the_first_batches(chunks):
    waves, _ = chunks
    model = build("cnn").train()
    batches = [waves[:3], waves[3:6], waves[6:]]
    with torch.no_grad():
        for batch in batches:
            model(batch)
        feature_means = torch.stack([model.frontend(batch).mean(dim=(0, 2)) for batch in batches])
    # the first BatchNorm sees the features themselves; after three batches it holds their plain mean
    assert torch.allclose(model.backbone.input_norm.running_mean, feature_means.mean(dim=0), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("cnn", {"channels": [8, 16, 32], "blocks": 2}),
        ("tdnn", {"attention": False}),
        ("lstm", {"bidirectional": True, "pool": "last", "projection": 0}),
    ],
)
def test_options_change_the_architecture(name, options, chunks):
    waves, _ = chunks
    default, variant = build(name), build(name, **options)
    assert set(variant.state_dict()) != set(default.state_dict())
    assert variant.eval()(waves[:2]).shape == (2, N_SPEAKERS)


# --- ResNet-50 -------------------------------------------------------------------------------


def torchvision_resnet50_shapes(with_batch_counts: bool) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer names and shapes of torchvision's resnet50(), written out from its architecture."""
    shapes: dict[str, tuple[int, ...]] = {}

    def batch_norm(prefix: str, channels: int) -> None:
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{suffix}"] = (channels,)
        if with_batch_counts:
            shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 7, 7)
    batch_norm("bn1", 64)
    in_channels = 64
    for layer, blocks in enumerate([3, 4, 6, 3], start=1):
        width = 64 * 2 ** (layer - 1)
        for block in range(blocks):
            prefix = f"layer{layer}.{block}"
            shapes[f"{prefix}.conv1.weight"] = (width, in_channels, 1, 1)
            batch_norm(f"{prefix}.bn1", width)
            shapes[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
            batch_norm(f"{prefix}.bn2", width)
            shapes[f"{prefix}.conv3.weight"] = (4 * width, width, 1, 1)
            batch_norm(f"{prefix}.bn3", 4 * width)
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (4 * width, in_channels, 1, 1)
                batch_norm(f"{prefix}.downsample.1", 4 * width)
            in_channels = 4 * width
    shapes["fc.weight"] = (1000, 2048)
    shapes["fc.bias"] = (1000,)
    return shapes


def trunk(model: SpeakerModel) -> dict[str, torch.Tensor]:
    """The ResNet-50 trunk's parameters and buffers, under their own names."""
    return {k: v for k, v in model.backbone.state_dict().items() if not k.startswith("head.")}


@pytest.fixture(scope="module")
def resnet() -> SpeakerModel:
    torch.manual_seed(0)
    return build("resnet50")


def test_resnet50_uses_torchvision_names(resnet):
    expected = torchvision_resnet50_shapes(with_batch_counts=True)
    del expected["fc.weight"], expected["fc.bias"]
    assert {k: tuple(v.shape) for k, v in trunk(resnet).items()} == expected
    names = resnet.backbone.state_dict()
    assert "layer3.5.bn3.running_var" in names and "layer1.0.downsample.1.weight" in names
    blocks = [len({k.split(".")[1] for k in names if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
    assert blocks == [3, 4, 6, 3]


def test_resnet50_freezes_what_is_not_trainable(chunks):
    waves, labels = chunks
    torch.manual_seed(0)
    model = build("resnet50", trainable=["layer1"])
    frozen_prefixes = ("conv1.", "bn1.", "layer2.", "layer3.", "layer4.", "head.")
    for key, param in model.backbone.named_parameters():
        assert param.requires_grad == (not key.startswith(frozen_prefixes)), key
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    classifier_before = model.classifier[1].weight.clone()

    # straight after building, as after .train(), frozen BatchNorms keep their running statistics;
    # the optimizer is handed every parameter, as a naive trainer would
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    F.cross_entropy(model(waves), labels).backward()
    optimizer.step()

    after = model.backbone.state_dict()
    for key, value in before.items():
        if key.startswith(frozen_prefixes):
            assert torch.equal(after[key], value), f"frozen {key} changed"
        elif not key.endswith("num_batches_tracked"):
            assert not torch.equal(after[key], value), f"trainable {key} did not change"
    # the classifier is new for every set of speakers: it trains even when the head is frozen
    assert not torch.equal(model.classifier[1].weight, classifier_before)

    model.train()
    assert not model.backbone.bn1.training and not model.backbone.layer4[2].bn3.training
    assert model.backbone.layer1[0].bn1.training and model.classifier.training
    model.eval()
    assert not model.backbone.layer1[0].bn1.training


def test_resnet50_default_trains_stem_layer1_and_head(resnet):
    assert resnet.config()["options"]["trainable"] == ["stem", "layer1", "head"]
    trainable = {k.split(".")[0] for k, p in resnet.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"conv1", "bn1", "layer1", "head"}


def test_resnet50_flatten_pool_feeds_every_position(chunks):
    waves, _ = chunks
    model = build("resnet50", pool="flatten")
    # a 64-pixel picture leaves a 2x2 map of 2048 channels
    assert model.backbone.head[2].in_features == 2048 * 2 * 2
    assert model.eval()(waves[:2]).shape == (2, N_SPEAKERS)


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    """A stand-in for torchvision's ImageNet file: random values under the real names and shapes."""
    generator = torch.Generator().manual_seed(0)
    return {
        key: torch.randn(shape, generator=generator) if shape else torch.tensor(7)
        for key, shape in torchvision_resnet50_shapes(with_batch_counts=False).items()
    }


@pytest.mark.parametrize("with_batch_counts", [False, True])
def test_load_pretrained_fills_the_trunk(resnet, imagenet_state, tmp_path, with_batch_counts):
    state = dict(imagenet_state)
    if with_batch_counts:
        state |= {k: torch.tensor(7) for k in torchvision_resnet50_shapes(True) if k.endswith("num_batches_tracked")}
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(state, path)
    head_before = {k: v.clone() for k, v in resnet.backbone.head.state_dict().items()}
    classifier_before = resnet.classifier[1].weight.clone()

    load_pretrained(resnet, path)

    loaded = trunk(resnet)
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    for key, value in resnet.backbone.head.state_dict().items():
        assert torch.equal(value, head_before[key]), key
    assert torch.equal(resnet.classifier[1].weight, classifier_before)


def test_load_pretrained_refuses_a_missing_file(resnet, tmp_path):
    path = tmp_path / "nowhere.pth"
    with pytest.raises(ModelError, match="nowhere.pth: no such file"):
        load_pretrained(resnet, path)


@pytest.mark.parametrize("content", ["text", "tensor list"])
def test_load_pretrained_refuses_a_file_that_is_no_state_dict(resnet, tmp_path, content):
    path = tmp_path / "weights.pth"
    if content == "text":
        path.write_text("not weights\n")
    else:
        torch.save([torch.zeros(3)], path)
    with pytest.raises(ModelError, match="weights.pth: (not a torch state-dict file|does not hold a state dict)"):
        load_pretrained(resnet, path)


def test_load_pretrained_names_keys_that_do_not_fit(resnet, imagenet_state, tmp_path):
    state = dict(imagenet_state)
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    del state["layer4.2.bn3.weight"]
    state["layer3.6.conv1.weight"] = torch.zeros(256, 1024, 1, 1)  # a ResNet-101 block
    path = tmp_path / "other-net.pth"
    torch.save(state, path)
    before = {k: v.clone() for k, v in trunk(resnet).items()}
    with pytest.raises(ModelError) as caught:
        load_pretrained(resnet, path)
    message = str(caught.value)
    assert "other-net.pth" in message
    assert "missing layer4.2.bn3.weight" in message
    assert "unexpected layer3.6.conv1.weight" in message
    assert "wrong shape conv1.weight (64, 1, 7, 7) != (64, 3, 7, 7)" in message
    # nothing was loaded
    for key, value in trunk(resnet).items():
        assert torch.equal(value, before[key]), key


def test_load_pretrained_refuses_other_families(tmp_path):
    with pytest.raises(ModelError, match="only a 'resnet50' model"):
        load_pretrained(build("cnn"), tmp_path / "resnet50.pth")
