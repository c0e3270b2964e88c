"""POST /diarize on a real loopback socket: a mixed meeting of real voices, and the answers to bad requests."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import fixed_threshold, live_server

from speakerid.audio import SAMPLE_RATE, to_int16
from speakerid.meetings import build_meeting, plan_meetings
from speakerid.voices import VoiceRegistry
from speakerid.server import create_app

MAX_SECONDS = 60.0


def encoded(audio: np.ndarray, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    samples = to_int16(audio)
    sf.write(buffer, np.stack([samples] * channels, axis=1) if channels > 1 else samples, SAMPLE_RATE, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def service(so125, tmp_path_factory):
    """The service over a registry of 2 enrolled so125 speakers, and a 55-s cut of a meeting with a stranger."""
    root = tmp_path_factory.mktemp("diarize-service")
    enrollment, [plan] = plan_meetings(so125, 1, enrolled=2, strangers=1, seed=4)
    voices = VoiceRegistry(root / "voices.db")
    for speaker, files in enrollment.items():
        voices.enroll(speaker, files)
    voices.registry.set_scoring(fixed_threshold(voices, 0.8))
    voices.close()
    meeting = build_meeting(plan)
    with live_server(create_app(root / "voices.db", max_seconds=MAX_SECONDS)) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client, meeting, plan


def test_diarize_a_meeting(service):
    client, meeting, plan = service
    answer = client.post("/diarize", files={"file": ("meeting.wav", encoded(meeting.audio[: 55 * SAMPLE_RATE]))})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    labels = {t["speaker"] for t in body["turns"]}
    assert labels & set(plan.enrolled) and len(labels) >= 2, labels
    assert body["file"] == "meeting.wav" and body["threshold_source"] == "calibrated"
    assert {s["speaker"] for s in body["speakers"]} == labels


def test_diarize_bad_requests(service):
    client, meeting, _ = service
    silence = encoded(np.zeros(5 * SAMPLE_RATE, dtype=np.float32))
    quiet = client.post("/diarize", files={"file": ("silence.wav", silence)})
    assert quiet.status_code == 200 and quiet.json()["turns"] == [] and "no speech found" in quiet.json()["notes"]
    stereo = client.post("/diarize", files={"file": ("call.wav", encoded(meeting.audio[: 20 * SAMPLE_RATE], channels=2))})
    assert stereo.status_code == 200 and "2 channels mixed down to one" in stereo.json()["notes"]
    long = client.post("/diarize", files={"file": ("long.wav", encoded(meeting.audio[: int((MAX_SECONDS + 5) * SAMPLE_RATE)]))})
    assert long.status_code == 413 and long.json()["error"] == "recording too long"
    corrupt = client.post("/diarize", files={"file": ("torn.wav", silence[:40])})
    assert corrupt.status_code == 422 and "torn.wav" in corrupt.json()["detail"]
    empty = client.post("/diarize", files={"file": ("empty.wav", b"")})
    assert empty.status_code == 400
    assert client.post("/diarize", data={"x": "1"}).status_code in (415, 422)
