"""server: the HTTP service on a real loopback socket (uvicorn in a thread), with short clips of real
dsp20 recordings and the GE2E encoder."""

from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import soundfile as sf

from speakerid.audio import SAMPLE_RATE, load_audio, to_int16
from speakerid.encoders import GE2E_DEFAULT_THRESHOLD
from speakerid.server import create_app

from conftest import live_server

TOKEN = "open-sesame"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BYTES = 2**20  # small, so that an oversized upload is quick to send
MAX_SECONDS = 30.0  # shorter than a whole dsp20 take (41 s)
SPEAKERS = 3


def wav(audio: np.ndarray) -> bytes:
    """16-bit mono 16-kHz WAV bytes."""
    buffer = io.BytesIO()
    sf.write(buffer, to_int16(audio), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def cut(path: Path, start: float, seconds: float) -> bytes:
    return wav(load_audio(path)[int(start * SAMPLE_RATE) : int((start + seconds) * SAMPLE_RATE)])


@pytest.fixture(scope="module")
def clips(dsp20) -> SimpleNamespace:
    """Clips of the first 4 dsp20 speakers: 2 x 10 s to enroll (takes 1-2), held-out 8-s and 5-s clips (takes 4-5)."""
    folders = sorted(p for p in dsp20.iterdir() if p.is_dir())
    enrolled, newcomer = folders[:SPEAKERS], folders[SPEAKERS]
    return SimpleNamespace(
        names=[f.name for f in enrolled],
        enroll={f.name: [cut(f / "take01.flac", 2, 10), cut(f / "take02.flac", 2, 10)] for f in enrolled},
        eight={f.name: cut(f / "take05.flac", 5, 8) for f in enrolled},
        five={f.name: cut(f / "take04.flac", 5, 5) for f in enrolled},
        newcomer=cut(newcomer / "take01.flac", 2, 20),
        whole_take=(enrolled[0] / "take03.flac").read_bytes(),  # 41 s of FLAC: under MAX_BYTES, over MAX_SECONDS
    )


@pytest.fixture(scope="module")
def service(clips, tmp_path_factory) -> Iterator[SimpleNamespace]:
    """The service with a token and small limits, 3 speakers enrolled through POST /enroll."""
    app = create_app(tmp_path_factory.mktemp("server") / "voices.db", token=TOKEN, max_bytes=MAX_BYTES,
                     max_seconds=MAX_SECONDS)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=120) as client:
        enrolled = {}
        for name in clips.names:
            files = [("files", (f"{name}-{i}.wav", data, "audio/wav")) for i, data in enumerate(clips.enroll[name])]
            enrolled[name] = client.post("/enroll", data={"name": name}, files=files, headers=AUTH)
        yield SimpleNamespace(url=url, client=client, enrolled=enrolled)


def assert_error(response: httpx.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] and body["detail"], body
    for word in words:
        assert word in body["detail"], body
    return body


def identify(client: httpx.Client, data: bytes, name: str = "clip.wav", **params) -> httpx.Response:
    return client.post("/identify", files={"file": (name, data, "audio/wav")}, params=params)


# ---------------------------------------------------------------- happy paths


def test_health_openapi_and_page(service):
    health = service.client.get("/health").json()
    assert health["status"] == "ok" and [e.split("/")[0] for e in health["encoders"]] == ["ge2e"]
    assert health["speakers"] == SPEAKERS
    assert (health["thresholds"], health["threshold_source"], health["scoring"]) == (
        [[None, GE2E_DEFAULT_THRESHOLD]], "default (uncalibrated)", {})
    assert (health["token_required"], health["max_bytes"], health["max_seconds"]) == (True, MAX_BYTES, MAX_SECONDS)

    schema = service.client.get("/openapi.json").json()
    assert {"/identify", "/verify", "/enroll", "/speakers", "/speakers/{name}", "/health"} <= set(schema["paths"])
    assert schema["paths"]["/enroll"]["post"]["security"] and schema["paths"]["/speakers/{name}"]["delete"]["security"]
    assert "security" not in schema["paths"]["/identify"]["post"]
    for path in ("/docs", "/redoc"):  # they would load their JavaScript from a CDN
        assert_error(service.client.get(path), 404)

    page = service.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="identify-file"' in page.text and 'id="enroll-form"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere


def test_enroll_lists_and_skips_what_is_enrolled(service, clips):
    for name, response in service.enrolled.items():
        assert response.status_code == 200, response.text
        assert response.json() == {"speaker": name, "added": 2, "skipped": [], "failed": [], "recordings": 2, "created": True}
    listed = service.client.get("/speakers").json()["speakers"]
    assert [(s["name"], s["recordings"], s["seconds"]) for s in listed] == [(n, 2, 20.0) for n in clips.names]

    name = clips.names[0]
    files = [("files", (f"again-{i}.wav", data)) for i, data in enumerate(clips.enroll[name])]
    again = service.client.post("/enroll", data={"name": name}, files=files, headers=AUTH).json()
    assert (again["added"], again["skipped"], again["recordings"]) == (0, ["again-0.wav", "again-1.wav"], 2)
    assert again["created"] is False


def test_identify_held_out_clips(service, clips):
    for name in clips.names:
        for seconds, data in ((8, clips.eight[name]), (5, clips.five[name])):
            response = identify(service.client, data, top_k=SPEAKERS)
            assert response.status_code == 200, response.text
            answer = response.json()
            print(f"\n{name} {seconds}-s clip: {answer['ranking']}")
            assert answer["ranking"][0]["speaker"] == name
            assert len(answer["ranking"]) == SPEAKERS
            assert answer["threshold"] == GE2E_DEFAULT_THRESHOLD
            assert answer["known"] == (answer["score"] >= GE2E_DEFAULT_THRESHOLD)
            assert answer["speaker"] == (name if answer["known"] else "unknown")
    # the 8-s clips of these speakers all clear the (uncalibrated) default threshold
    assert all(identify(service.client, clips.eight[n]).json()["speaker"] == n for n in clips.names)
    assert len(identify(service.client, clips.five[clips.names[0]], top_k=1).json()["ranking"]) == 1


def test_verify_same_and_different_speakers(service, clips):
    a, b = clips.names[:2]

    def verify(x: bytes, y: bytes) -> dict:
        response = service.client.post("/verify", files={"a": ("x.wav", x), "b": ("y.wav", y)})
        assert response.status_code == 200, response.text
        return response.json()

    same, different = verify(clips.eight[a], clips.five[a]), verify(clips.eight[a], clips.eight[b])
    assert same["score"] > different["score"] + 0.1
    assert different["same"] is False and same["threshold_source"] == "default (uncalibrated)"


def test_writes_need_the_token_and_reads_do_not(service, clips):
    files = {"files": ("x.wav", clips.five[clips.names[0]])}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"}):
        body = assert_error(service.client.post("/enroll", data={"name": "intruder"}, files=files, headers=headers), 401)
        assert body["error"] == "unauthorized"
        assert_error(service.client.delete(f"/speakers/{clips.names[0]}", headers=headers), 401)
    names = [s["name"] for s in service.client.get("/speakers").json()["speakers"]]
    assert "intruder" not in names and clips.names[0] in names
    assert identify(service.client, clips.five[clips.names[0]]).status_code == 200  # no token needed to read


def test_remove_a_speaker(service, clips):
    enrolled = service.client.post("/enroll", data={"name": "visitor"}, headers=AUTH,
                                    files={"files": ("v.wav", clips.newcomer)})
    assert enrolled.status_code == 200 and enrolled.json()["added"] == 1
    assert service.client.delete("/speakers/visitor", headers=AUTH).json() == {"removed": "visitor"}
    assert_error(service.client.delete("/speakers/visitor", headers=AUTH), 404, "'visitor'")
    assert "visitor" not in [s["name"] for s in service.client.get("/speakers").json()["speakers"]]


def test_identify_runs_concurrently_with_an_enrollment(service, clips):
    jobs = [(n, clips.eight[n] if i % 2 else clips.five[n]) for i, n in enumerate(clips.names * 3)][:8]
    with ThreadPoolExecutor(len(jobs) + 1) as pool:
        enrolling = pool.submit(service.client.post, "/enroll", data={"name": "newcomer"}, headers=AUTH,
                                files={"files": ("newcomer.wav", clips.newcomer)})
        answers = list(pool.map(lambda job: (job[0], identify(service.client, job[1])), jobs))
    assert enrolling.result().status_code == 200, enrolling.result().text
    for name, response in answers:
        assert response.status_code == 200, response.text
        assert response.json()["ranking"][0]["speaker"] == name
    assert service.client.delete("/speakers/newcomer", headers=AUTH).status_code == 200


def test_nobody_enrolled_is_a_conflict(clips, tmp_path):
    with live_server(create_app(tmp_path / "empty.db")) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert_error(identify(client, clips.five[clips.names[0]]), 409, "enroll")
        assert client.get("/health").json()["token_required"] is False


# ---------------------------------------------------------------- what clients get wrong


def flac_silence(sample_rate: int, channels: int, seconds: int) -> bytes:
    """FLAC silence: a few bytes per block, whatever its channels and rate."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", samplerate=sample_rate, channels=channels, format="FLAC", subtype="PCM_16") as f:
        for _ in range(seconds):
            f.write(np.zeros((sample_rate, channels), dtype=np.int16))
    return buffer.getvalue()


def test_bad_uploads_are_refused_with_a_reason(service, clips):
    client = service.client
    assert_error(identify(client, b"this is not audio at all", "notes.wav"), 422, "notes.wav", "not a readable audio file")
    assert_error(identify(client, wav(np.zeros(1600, dtype=np.float32)), "blip.wav"), 422, "blip.wav", "0.10 s long")
    assert_error(identify(client, wav(np.zeros(2 * SAMPLE_RATE, dtype=np.float32)), "hush.wav"), 422, "hush.wav", "speech")
    body = assert_error(identify(client, b"", "empty.wav"), 400, "empty.wav")
    assert body["error"] == "empty upload"
    # the header says 41 s: refused before decoding
    body = assert_error(identify(client, clips.whole_take, "take03.flac"), 413, "take03.flac", "41.0 s", "30 s")
    assert body["error"] == "recording too long"
    # a small file that would decode to far more than MAX_SECONDS of 48-kHz stereo: refused before decoding
    body = assert_error(identify(client, flac_silence(192_000, 8, 5), "wide.flac"), 413, "wide.flac", "8 channels at 192000 Hz")
    assert body["error"] == "recording too large"
    # over MAX_BYTES: refused on its Content-Length
    big = wav(np.zeros(MAX_BYTES // 2 + 1, dtype=np.float32))
    assert_error(identify(client, big, "big.wav"), 413, "1 MiB")
    # an enrollment with one undecodable file among good ones enrolls the good ones, as the CLI does
    files = [("files", ("good.wav", clips.newcomer)), ("files", ("bad.wav", b"garbage"))]
    mixed = client.post("/enroll", data={"name": "mixed"}, files=files, headers=AUTH)
    assert mixed.status_code == 200 and mixed.json()["added"] == 1
    assert [f["file"] for f in mixed.json()["failed"]] == ["bad.wav"]
    assert client.delete("/speakers/mixed", headers=AUTH).status_code == 200
    # one whose only file holds no speech enrolls nothing
    silence = {"files": ("hush.wav", wav(np.zeros(2 * SAMPLE_RATE, dtype=np.float32)))}
    assert_error(client.post("/enroll", data={"name": "mute"}, files=silence, headers=AUTH), 422, "hush.wav", "speech")
    names = [s["name"] for s in client.get("/speakers").json()["speakers"]]
    assert "mixed" not in names and "mute" not in names


def test_wrong_content_types_and_missing_fields(service, clips):
    client = service.client
    assert_error(client.post("/identify", json={"file": "clip.wav"}), 415, "multipart/form-data", "application/json")
    assert_error(client.post("/identify", data={"file": "clip.wav"}), 415, "application/x-www-form-urlencoded")
    assert_error(client.post("/verify", content=clips.five[clips.names[0]], headers={"Content-Type": "audio/wav"}), 415)
    assert_error(client.post("/identify", files={"recording": ("x.wav", clips.five[clips.names[0]])}), 422, "file")
    assert_error(client.post("/verify", files={"a": ("x.wav", clips.five[clips.names[0]])}), 422, "b")
    assert_error(client.post("/enroll", files={"files": ("x.wav", b"x")}, headers=AUTH), 422, "name")
    assert_error(client.post("/enroll", data={"name": "unknown"}, files={"files": ("x.wav", clips.newcomer)},
                             headers=AUTH), 422, "unknown")
    assert_error(identify(client, clips.five[clips.names[0]], top_k=0), 422, "top_k")


def raw_request(url: str, head: bytes, body_chunks: Iterator[bytes] = iter(())) -> tuple[int, dict]:
    """Send a request by hand, never finishing its body, and read the answer."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=60) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            sock.sendall(chunk)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def test_the_size_limit_holds_while_the_body_arrives(service):
    # a Content-Length over the limit is refused before any of the body is sent
    head = (b"POST /identify HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=B\r\n"
            b"Content-Length: 1000000000\r\n\r\n")
    status, body = raw_request(service.url, head)
    assert status == 413 and body["error"] == "upload too large"

    # a chunked body is counted as it arrives: refused once past the limit, though it never ends
    head = (b"POST /identify HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=B\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    part = b'--B\r\nContent-Disposition: form-data; name="file"; filename="endless.wav"\r\n\r\n'
    block = 64 * 1024

    def chunks() -> Iterator[bytes]:
        yield b"%x\r\n%s\r\n" % (len(part), part)
        for _ in range(MAX_BYTES // block + 2):
            yield b"%x\r\n%s\r\n" % (block, b"\1" * block)

    status, body = raw_request(service.url, head, chunks())
    assert status == 413 and body["error"] == "upload too large"
    assert service.client.get("/health").status_code == 200


def crafted_wav(sample_rate: int, channels: int, frames: int, data_size: int | None = None) -> bytes:
    """A 16-bit PCM WAV whose header says what it is told to, whatever follows."""
    data = b"\1\0" * (frames * channels)
    size = len(data) if data_size is None else data_size
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * channels * 2, channels * 2, 16)
    return (b"RIFF" + struct.pack("<I", (36 + size) & 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", size) + data)


def float_wav(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio.astype(np.float32), SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def test_garbage_never_makes_a_server_error(service, clips):
    client = service.client
    audio = clips.five[clips.names[0]]
    junk = bytes(range(256)) * 8

    def uploads(x: tuple, y: tuple, z: tuple) -> dict:
        """The three uploads in every file field of every endpoint; the name "unknown" is never enrolled."""
        fields = [("file", x), ("a", y), ("b", z), ("files", x), ("files", y), ("files", z)]
        return {"files": fields, "data": {"name": "unknown"}}

    bodies = [
        {},
        {"content": junk},
        {"json": {"file": None, "name": ["x"]}},
        {"data": {"name": "x", "file": "x", "a": "y", "files": "z"}},
        {"content": junk, "headers": {"Content-Type": "multipart/form-data"}},
        {"content": junk, "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
        {"content": b"--x\r\n\r\n--x--\r\n", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
        {"content": junk, "headers": {"Content-Type": "application/json"}},
        {"content": b"\xff\xfe{", "headers": {"Content-Type": "text/plain; charset=utf-16"}},
        {"data": {f"field{i}": "x" for i in range(1100)}, "files": {"file": ("x.wav", audio)}},
        {"files": {"file": ("x.wav", audio), "a": ("a.wav", audio)}, "data": {"b": "not a file", "files": "nor this"}},
        uploads(("x", junk), ("a", junk), ("b", b"")),
        uploads(("../../etc/passwd", audio), ("\u00e9\u0000.wav", audio), ("", audio)),
        uploads(("x.wav", crafted_wav(1, 1, 40)), ("x.wav", crafted_wav(8, 1, 200)),
                ("x.wav", crafted_wav(16000, 1, 16000, data_size=0xFFFFFFF0))),
        uploads(("x.wav", crafted_wav(16000, 255, 100)), ("x.wav", crafted_wav(192000, 2, 10)),
                ("x.wav", crafted_wav(0, 1, 10))),
        uploads(("x.wav", b"RIFF\xff\xff\xff\xffWAVE"), ("a.flac", b"fLaC" + junk), ("b.ogg", b"OggS" + junk)),
        uploads(("nan.wav", float_wav(np.full(SAMPLE_RATE, np.nan))), ("loud.wav", float_wav(np.full(SAMPLE_RATE, 1e30))),
                ("dc.wav", float_wav(np.ones(SAMPLE_RATE)))),
    ]
    requests = []
    for path in ("/identify", "/verify", "/enroll"):
        for body in bodies:  # with the token, so that the body is looked at
            requests.append(("POST", path, {**body, "headers": {**AUTH, **body.get("headers", {})}}))
        for top_k in ("abc", "-1", "0", str(10**30), "1e3"):
            requests.append(("POST", path, {**uploads(*[("x.wav", audio)] * 3), "params": {"top_k": top_k}}))
        requests.append(("PUT", path, {"content": junk}))
    for authorization in ("Bearer", "Bearer  x", "Bearer \xe9\xff", "Basic " + "x" * 10000):
        header = {"Authorization": authorization.encode("latin-1")}
        requests.append(("POST", "/enroll", {"files": {"files": ("x.wav", audio)}, "data": {"name": "x"}, "headers": header}))
        requests.append(("DELETE", f"/speakers/{clips.names[0]}", {"headers": header}))
    for name in ("%00", "%ff", "%2e%2e%2f%2e%2e", "x" * 5000, "\u00e9", "unknown", " "):
        requests.append(("DELETE", f"/speakers/{name}", {"headers": AUTH}))
    for path in ("/", "/health", "/speakers", "/openapi.json", "/nowhere", "/speakers/", "/static/../../etc/passwd"):
        requests.append(("GET", path, {"content": junk, "params": {"top_k": "-1", "x": "\u00e9"}}))
        requests.append(("PATCH", path, {}))

    for method, path, options in requests:
        response = client.request(method, path, **options)
        assert response.status_code < 500, (method, path, response.status_code, response.text)
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error", "detail"}, (method, path, body)
    # nothing got enrolled or removed on the way
    assert [s["name"] for s in client.get("/speakers").json()["speakers"]] == clips.names


def test_the_serve_command_applies_its_options(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    speakerid = Path(sys.executable).with_name("speakerid")
    command = [str(speakerid), "serve", "--registry", str(tmp_path / "voices.db"), "--create", "--port", str(port),
               "--threads", "3", "--max-mb", "1", "--max-seconds", "12", "--token", TOKEN]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None and time.monotonic() < deadline, f"serve did not start: {server.stdout.read()}"
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert (health["torch_threads"], health["max_bytes"], health["max_seconds"]) == (3, 2**20, 12.0)
        assert health["token_required"] and health["speakers"] == 0
        assert_error(httpx.delete(f"http://127.0.0.1:{port}/speakers/anyone"), 401)
    finally:
        server.terminate()
        server.wait(timeout=30)
