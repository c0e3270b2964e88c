"""The service's choices where it could differ from the command line: enrolling into an existing
name, partial failures, which file of /verify failed, a missing registry, what /health shows to
anyone, and the page's icon. Real dsp20 clips and the GE2E encoder, on a loopback socket."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import soundfile as sf

from conftest import live_server

from speakerid.audio import SAMPLE_RATE, load_audio, to_int16
from speakerid.errors import RegistryError
from speakerid.registry import Registry
from speakerid.server import create_app, serve


def wav(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, to_int16(audio), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clips(dsp20) -> SimpleNamespace:
    folder = sorted(p for p in dsp20.iterdir() if p.is_dir())[0]
    take = load_audio(folder / "take01.flac")
    return SimpleNamespace(first=wav(take[2 * SAMPLE_RATE : 8 * SAMPLE_RATE]), second=wav(take[10 * SAMPLE_RATE : 16 * SAMPLE_RATE]),
                           silence=wav(np.zeros(3 * SAMPLE_RATE, dtype=np.float32)))


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    path = tmp_path_factory.mktemp("choices") / "voices.db"
    with live_server(create_app(path)) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield SimpleNamespace(client=client, path=path)


def test_enrolling_an_existing_name_adds_to_it_and_says_so(service, clips):
    first = service.client.post("/enroll", data={"name": "alice"}, files={"files": ("one.wav", clips.first)}).json()
    again = service.client.post("/enroll", data={"name": "alice"}, files={"files": ("two.wav", clips.second)}).json()
    assert (first["created"], first["recordings"]) == (True, 1)
    assert (again["created"], again["added"], again["recordings"]) == (False, 1, 2)


def test_good_files_enroll_beside_bad_ones_as_on_the_command_line(service, clips):
    files = [("files", ("good.wav", clips.first)), ("files", ("hush.wav", clips.silence)),
             ("files", ("notes.wav", b"not audio")), ("files", ("empty.wav", b""))]
    answer = service.client.post("/enroll", data={"name": "bob"}, files=files)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["added"], body["created"]) == (1, True)
    assert {f["file"]: f["reason"].split(" ")[0] for f in body["failed"]} == {"hush.wav": "holds", "notes.wav": "not",
                                                                              "empty.wav": "is"}
    # with no usable file at all, nothing is enrolled and every file's reason is given
    refused = service.client.post("/enroll", data={"name": "carol"}, files=files[1:])
    assert refused.status_code == 422
    assert all(name in refused.json()["detail"] for name in ("hush.wav", "notes.wav", "empty.wav"))
    assert "carol" not in {s["name"] for s in service.client.get("/speakers").json()["speakers"]}


def test_verify_names_the_file_that_failed(service, clips):
    answer = service.client.post("/verify", files={"a": ("talk.wav", clips.first), "b": ("quiet.wav", clips.silence)})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert detail.startswith("quiet.wav (b): ") and "talk.wav" not in detail
    both = service.client.post("/verify", files={"a": ("x.wav", clips.silence), "b": ("y.wav", clips.silence)})
    assert "x.wav (a)" in both.json()["detail"] and "y.wav (b)" in both.json()["detail"]


def test_health_tells_the_calibration_but_not_where_its_data_lay(service):
    registry = Registry(service.path)
    encoder = registry.encoders()[0].name
    registry.set_scoring({"encoders": [encoder], "fusion": {"encoders": [encoder], "weights": [1.0], "means": [0.0],
                                                            "stds": [1.0]},
                          "identify": [[3.0, 0.8]], "verify": [[3.0, 0.7]], "source": "calibrated",
                          "details": {"eer": 0.05, "data": "/home/someone/secret-voices",
                                      "calibrated_at": "2024-01-01T00:00:00+00:00"}})
    health = service.client.get("/health").json()
    assert (health["thresholds"], health["threshold_source"]) == ([[3.0, 0.8]], "calibrated")
    assert health["scoring"]["eer"] == 0.05 and "data" not in health["scoring"]
    assert "secret-voices" not in service.client.get("/health").text


def test_the_page_has_an_icon(service):
    icon = service.client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg") and 'href="favicon.ico"' in service.client.get("/").text


def test_a_missing_registry_is_not_served_empty_unless_asked(tmp_path):
    with pytest.raises(RegistryError, match="--create"):
        serve(tmp_path / "typo.db", port=0)
    with pytest.raises(RegistryError, match="no such registry"):
        create_app(tmp_path / "typo.db", create=False)
    assert not (tmp_path / "typo.db").exists()
    done = subprocess.run([str(Path(sys.executable).with_name("speakerid")), "serve", "--registry", str(tmp_path / "typo.db")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "--create" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "typo.db").exists()
