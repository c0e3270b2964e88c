"""How many /identify requests per second does `speakerid serve` answer, and how fast?

A registry is enrolled from dsp20 (every speaker, from two 10-s clips of takes 1-2). The server
runs in its own process (`speakerid.server.serve` on a free loopback port); clients in this
process post 5-s WAV clips cut from held-out takes (4-5) to /identify over keep-alive
connections, for a bounded time per run. Two servers, `serve(threads=1)` (the default) and
`serve(threads=None)` (torch's default: every core), each under one client (the latency of a lone
request) and N concurrent clients, run in turn within each repeat. FastAPI runs the sync
endpoints in a thread pool, so N requests embed at once, each with `threads` torch threads.

    .venv/bin/python benchmarks/bench_serve.py [--seconds 20] [--repeat 3] [--clients 8]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import torch

from speakerid.audio import SAMPLE_RATE, load_audio, to_int16
from speakerid.voices import VoiceRegistry

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsp20"
CLIP_SECONDS = 5.0
SERVER = """
import sys
from speakerid.server import serve
serve(sys.argv[1], port=int(sys.argv[2]), threads=int(sys.argv[3]) or None)
"""


def wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, to_int16(audio), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def clip(path: Path, start: float, seconds: float) -> np.ndarray:
    return load_audio(path)[int(start * SAMPLE_RATE) : int((start + seconds) * SAMPLE_RATE)]


def enroll_registry(path: Path) -> list[tuple[str, bytes]]:
    """Enroll every dsp20 speaker into `path`; returns (speaker, 5-s WAV) questions from held-out takes."""
    voices = VoiceRegistry(path)
    questions = []
    for folder in sorted(p for p in DATA.iterdir() if p.is_dir()):
        for k in (1, 2):
            audio = clip(folder / f"take0{k}.flac", 2, 10)
            voices.enroll_audio(folder.name, audio, f"take0{k}", hashlib.sha256(audio.tobytes()).hexdigest())
        questions += [(folder.name, wav_bytes(clip(folder / f"take0{k}.flac", 10, CLIP_SECONDS))) for k in (4, 5)]
    voices.close()
    return questions


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    torch_threads: int  # 0: torch's default, every core
    registry: Path
    log: Path
    port: int = field(default_factory=free_port)

    def __enter__(self) -> "Server":
        self._log = open(self.log, "w")
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, str(self.registry), str(self.port),
                                         str(self.torch_threads)], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; its log:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._log.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Run:
    requests: int
    errors: int
    wrong: int
    seconds: float
    latencies_ms: np.ndarray

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else float("nan")


def load(url: str, questions: list[tuple[str, bytes]], clients: int, seconds: float) -> Run:
    """`clients` threads post questions to /identify back to back until `seconds` have passed."""
    latencies: list[float] = []
    counts = {"errors": 0, "wrong": 0}
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds

    def client(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            i = offset
            while time.perf_counter() < deadline:
                speaker, data = questions[i % len(questions)]
                i += clients
                sent = time.perf_counter()
                try:
                    response = http.post("/identify", files={"file": ("q.wav", data, "audio/wav")})
                    ok, right = response.status_code == 200, response.status_code == 200 and \
                        response.json()["ranking"][0]["speaker"] == speaker
                except httpx.HTTPError:
                    ok = right = False
                took = (time.perf_counter() - sent) * 1000
                with lock:
                    if ok:
                        latencies.append(took)
                        counts["wrong"] += not right
                    else:
                        counts["errors"] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start  # includes the requests in flight at the deadline
    return Run(len(latencies), counts["errors"], counts["wrong"], elapsed, np.array(latencies))


def row(label: str, run: Run, base: float | None = None) -> str:
    ratio = f"{run.rate / base:5.2f}x" if base else "      "
    return (f"{label:<22} {run.requests:>8} {run.rate:>7.2f} {ratio} {run.percentile(50):>8.0f} "
            f"{run.percentile(90):>8.0f} {run.percentile(99):>8.0f} {run.errors:>6} {run.wrong:>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each load run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"machine: {os.cpu_count()} cores, GPU {gpu}, torch default threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        questions = enroll_registry(Path(tmp) / "voices.db")
        print(f"registry: {len(questions) // 2} dsp20 speakers enrolled in {time.perf_counter() - began:.0f} s; "
              f"{len(questions)} held-out {CLIP_SECONDS:g}-s questions; {args.seconds:g} s per run\n")
        contenders = [("1 client, all thr", 0, 1), ("1 client, 1 thr", 1, 1),
                      (f"{args.clients} clients, all thr", 0, args.clients), (f"{args.clients} clients, 1 thr", 1, args.clients)]
        runs: dict[str, list[Run]] = {label: [] for label, _, _ in contenders}
        header = (f"{'contender':<22} {'requests':>8} {'req/s':>7} {'':6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
                  f"{'errors':>6} {'wrong':>6}")
        with Server(0, Path(tmp) / "voices.db", Path(tmp) / "all-threads.log") as all_threads, \
                Server(1, Path(tmp) / "voices.db", Path(tmp) / "one-thread.log") as one_thread:
            servers = {0: all_threads, 1: one_thread}
            for server in servers.values():  # warm up: first requests pay for lazy initialisation
                load(server.url, questions, 2, 2.0)
            for repeat in range(args.repeat):
                print(f"repeat {repeat + 1}/{args.repeat}\n{header}")
                for label, threads, clients in contenders:
                    run = load(servers[threads].url, questions, clients, args.seconds)
                    runs[label].append(run)
                    print(row(label, run))
                print()
        print(f"median of {args.repeat} (ratio: req/s over 1 client, all threads)\n{header}")
        medians = {label: sorted(rs, key=lambda r: r.rate)[len(rs) // 2] for label, rs in runs.items()}
        base = medians["1 client, all thr"].rate
        for label, run in medians.items():
            print(row(label, run, base))


if __name__ == "__main__":
    main()
